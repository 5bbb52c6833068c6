//! trail-sort: group events into journeys and order them (see `schemas/journeys.md`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::journeys::sort::Args::parse();
    trail::cli::run_tool("trail-sort", || trail::journeys::sort::run(args))
}
