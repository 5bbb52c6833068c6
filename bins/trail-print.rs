//! trail-print: render a trail stream as text or JSON lines.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::print::Args::parse();
    trail::cli::run_tool("trail-print", || trail::print::run(&args))
}
