//! trail-filter: select events from a stream (see `trail::filter`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::filter::Args::parse();
    trail::cli::run_tool("trail-filter", || trail::filter::run(args))
}
