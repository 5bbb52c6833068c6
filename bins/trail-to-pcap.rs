//! trail-to-pcap: a trail stream as pcapng or pcap (see `trail::pcap_export`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::pcap_export::Args::parse();
    trail::cli::run_tool("trail-to-pcap", || trail::pcap_export::run(args))
}
