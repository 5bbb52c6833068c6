//! trail-from-pcap: import pcap/pcapng captures as a trail stream.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::pcap::import::Args::parse();
    trail::cli::run_tool("trail-from-pcap", || trail::pcap::import::run(&args))
}
