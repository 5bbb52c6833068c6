//! trail-to-pcap: a trail stream as pcapng or pcap (see `trail::pcap::export`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::pcap::export::Args::parse();
    trail::cli::run_tool("trail-to-pcap", || trail::pcap::export::run(args))
}
