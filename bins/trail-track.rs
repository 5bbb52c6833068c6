//! trail-track: give events journey ids and link journeys (see `schemas/journeys.md`).
use std::path::PathBuf;

use clap::Parser;
use trail::journeys::merge::parse_duration;
use trail::journeys::track::{
    Options, DEFAULT_HOST_WINDOW, DEFAULT_IDLE, DEFAULT_LINK_WINDOW, DEFAULT_MAX_JOURNEYS,
    DEFAULT_WINDOW,
};

/// Add or complete each event's `tracking` section: ids from skb addresses or packet
/// fingerprints, and links (clone, copy, nat, encap, decap, host) between journeys. Several
/// inputs (e.g. one per host) merge in wall-clock order.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Input streams (default: stdin; `-` is stdin).
    inputs: Vec<PathBuf>,
    /// Write the stream to FILE (created only on success).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Reorder events by timestamp within this much event time before tracking them.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_WINDOW, value_name = "DURATION")]
    window: u64,
    /// Forget a journey after this much event time without events.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_IDLE, value_name = "DURATION")]
    idle: u64,
    /// Keep at most this many journeys; beyond, the least recently seen are forgotten (counted).
    #[arg(long, default_value_t = DEFAULT_MAX_JOURNEYS, value_name = "N")]
    max_journeys: usize,
    /// Link a journey to a same-host one (copy, nat, encap, decap) only this close in time.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_LINK_WINDOW, value_name = "DURATION")]
    link_window: u64,
    /// Link the same packet seen on two hosts only this close in wall-clock time (covers clock
    /// error plus transit time).
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_HOST_WINDOW, value_name = "DURATION")]
    host_window: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    trail::cli::run_tool("trail-track", || {
        trail::journeys::track::run(Options {
            inputs: args.inputs,
            output: args.output,
            window: args.window,
            idle: args.idle,
            max_journeys: args.max_journeys,
            link_window: args.link_window,
            host_window: args.host_window,
        })
    })
}
