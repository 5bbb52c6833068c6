//! trail-sort: group events into journeys and order them (see `schemas/journeys.md`).
use std::path::PathBuf;

use clap::Parser;
use trail::journeys::merge::{parse_duration, parse_size};
use trail::journeys::sort::{Options, SummaryFormat, DEFAULT_MEMORY};

/// Group events into journeys: journeys by first sighting, events by time, each event's
/// `tracking.index` set. Several inputs merge on wall-clock time. Files are sorted exactly
/// (spilling to temporary files beyond --memory); a pipe is sorted with a reorder --window.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Input streams (default: stdin; `-` is stdin).
    inputs: Vec<PathBuf>,
    /// Write the stream to FILE (created only on success).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Stream with this reorder window of event time (e.g. 1s, 200ms): a journey is emitted once
    /// idle this long past the newest timestamp. Default for pipes: 1s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    window: Option<u64>,
    /// Sort exactly even when reading a pipe (output starts at end of input).
    #[arg(long, conflicts_with = "window")]
    exact: bool,
    /// Memory for buffered events: beyond it, exact mode spills sorted runs to temporary files
    /// and streaming mode emits the oldest journey early.
    #[arg(long, value_parser = parse_size, default_value = DEFAULT_MEMORY, value_name = "SIZE")]
    memory: usize,
    /// Directory for temporary spill files (default: $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Print one line per journey (first/last probe, duration, events, fate) instead of events.
    #[arg(long)]
    summary: bool,
    /// Format of --summary lines.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text, requires = "summary")]
    format: SummaryFormat,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    trail::cli::run_tool("trail-sort", || {
        trail::journeys::sort::run(Options {
            inputs: args.inputs,
            output: args.output,
            window: args.window,
            exact: args.exact,
            memory: args.memory,
            temp_dir: args.temp_dir,
            summary: args.summary,
            format: args.format,
        })
    })
}
