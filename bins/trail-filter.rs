//! trail-filter: select events from a stream (see `trail::filter`).
use std::path::PathBuf;

use clap::Parser;

/// Select events of a trail stream by fields, packets (pcap filters) or whole journeys.
#[derive(Parser)]
#[command(
    version,
    override_usage = "trail-filter [OPTIONS] EXPR [FILE]...\n       trail-filter [OPTIONS] (-e EXPR | --probe PATTERN)... [FILE]...",
    long_about = trail::filter::HELP
)]
struct Args {
    /// EXPR then the input files (stdin when none, or `-`). With -e or --probe every
    /// argument is a file, as with grep -e.
    #[arg(value_name = "EXPR|FILE")]
    args: Vec<String>,
    /// The expression (then every positional argument is a file).
    #[arg(short = 'e', long = "expr", value_name = "EXPR")]
    expr: Option<String>,
    /// Keep events whose probe spec matches this glob (e.g. 'tp:skb:*'); repeatable (any may
    /// match); combined with EXPR by `and`.
    #[arg(long, value_name = "PATTERN")]
    probe: Vec<String>,
    /// Keep every event of each journey (tracking id) that has a matching event.
    #[arg(long)]
    journey: bool,
    /// Journey mode on unsorted input: how long an event waits for its journey to match, in
    /// event time (2s, 500ms) or in events (100000).
    #[arg(long, default_value = "1s", value_name = "TIME|EVENTS")]
    window: trail::filter::Window,
    /// Journey mode: most records held at once (the memory bound: about 1 KB per record); older
    /// ones leave early.
    #[arg(long, default_value_t = 250_000, value_name = "N")]
    max_buffered: usize,
    /// Select the events that do not match (with --journey: drop matching journeys).
    #[arg(short = 'v', long)]
    invert: bool,
    /// Print only the number of selected events.
    #[arg(short = 'c', long)]
    count: bool,
    /// Stop after N selected events.
    #[arg(short = 'n', long, value_name = "N")]
    limit: Option<u64>,
    /// Write the stream to FILE (always binary) instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    trail::cli::run_tool("trail-filter", || {
        let mut positional = args.args.into_iter();
        let expression = match (args.expr, args.probe.is_empty()) {
            (Some(expr), _) => Some(expr),
            (None, false) => None,
            (None, true) => Some(positional.next().ok_or_else(|| {
                trail::model::error::UsageError("missing EXPR (see trail-filter --help)".into())
            })?),
        };
        trail::filter::run(trail::filter::Options {
            expression,
            probes: args.probe,
            files: positional.map(PathBuf::from).collect(),
            output: args.output,
            journey: args.journey,
            window: args.window,
            max_buffered: args.max_buffered,
            invert: args.invert,
            count: args.count,
            limit: args.limit,
        })
    })
}
