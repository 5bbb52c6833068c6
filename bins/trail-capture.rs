//! trail-capture: see `trail::capture`.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::capture::Args::parse();
    trail::cli::run_tool("trail-capture", || trail::capture::run(args))
}
