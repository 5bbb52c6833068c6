//! trail-print: render a trail stream as text or JSON lines.
use clap::Parser;

/// Render trail streams for people (Retis-like text) or for jq (JSON lines).
#[derive(Parser)]
#[command(name = "trail-print", version)]
struct Cli {
    #[command(flatten)]
    args: trail::print::PrintArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    trail::cli::run_tool("trail-print", || trail::print::run(&cli.args))
}
