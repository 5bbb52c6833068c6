//! trail-track: give events journey ids and link journeys (see `schemas/journeys.md`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::journeys::track::Args::parse();
    trail::cli::run_tool("trail-track", || trail::journeys::track::run(args))
}
