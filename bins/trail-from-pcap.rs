//! trail-from-pcap: import pcap/pcapng captures as a trail stream.
use clap::Parser;

/// Convert pcap or pcapng captures (files or stdin) into a trail event stream, so that offline
/// captures work with every trail stage. Each packet becomes a `pcap-import` event.
#[derive(Parser)]
#[command(name = "trail-from-pcap", version)]
struct Cli {
    #[command(flatten)]
    args: trail::pcap::import::ImportArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    trail::cli::run_tool("trail-from-pcap", || trail::pcap::import::run(&cli.args))
}
