//! `trail-filter`: select events from a stream by an expression over their sections and
//! packets, optionally widening each match to its whole journey.
//!
//! Contract:
//! - Selected event frames are forwarded byte for byte (never re-encoded), so sections and
//!   fields this build does not know survive. Headers pass with this stage appended to their
//!   `pipeline`; `lost`, trailer and unknown records always pass, in their input position.
//! - An expression is checked before any input is read: syntax, known field names and value
//!   types, and `pcap()` filters (compiled for Ethernet). Errors name the column.
//! - `time` is event time minus the section's start: the header's `started_ns` mapped onto the
//!   section clock (`started_ns - clock.realtime_offset_ns`) when the header has one, otherwise
//!   the timestamp of the section's first event. `common.timestamp` compares absolute times.
//! - Memory is bounded: plain filtering holds one record; journey mode holds at most
//!   `--max-buffered` records (see [`journey`]).
//!
//! The language is documented in [`HELP`] (`--help`) and `docs/filter.md`.

mod eval;
mod journey;
mod parse;
mod pcap;
mod raw;
mod schema;

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{self, Output};
use crate::model::codec::{self, Frame, FrameKind};
use crate::model::error::{ErrorKind, StreamError, UsageError};
use crate::model::event::Header;
use crate::print;

pub use crate::expr::SyntaxError;
pub use eval::{EvalError, Matcher, SectionContext};
pub use journey::Window;
pub use parse::{parse, Expr, Literal, Op, Parsed, Target};

/// The language, for `trail-filter --help`.
pub const HELP: &str = r#"Writes the events of the input streams that match EXPR, unchanged byte for byte. Headers
(with this stage added to their pipeline), lost and trailer records always pass.

EXPRESSIONS
  Field predicates on any section, by dotted path:
      drop.reason == "NETFILTER_DROP"      dev.name == "veth0"      netns.inum == 4026532000
      ct.state == "new"                    skb.mark & 0xff == 1     tracking.id == "1a2b-ffff8880"
      ct.orig.dport == 443                 stack.frames.symbol ~ "kfree_skb*"  (lists: any element)
  Operators: == != < <= > >=, ~ and !~ (glob: * ? [a-z] [!x]), & (bit mask before comparing).
  Values: "strings" or 'strings', integers (42, -1, 0xff), decimals (2.5), true, false,
  durations (12.5s, 300ms, 40us, 100ns; in ns when compared with a field).
  Shorthands: probe (the probe spec, e.g. probe == "tp:skb:kfree_skb", probe ~ "tp:net:*"),
      comm, pid, tid, cpu (fields of common), time (see below),
      drop (the event has a drop section; any bare section name works the same way).
  has PATH: the section or field is present (has ct, has skb.vlan_tci).
  pcap("FILTER"): full pcap-filter syntax, evaluated by libpcap on the event's captured bytes
      with the event's link type (Ethernet, or raw IP for captures that start at L3): exactly
      tcpdump's verdict. An event without packet bytes does not match.
  Combine with and/&&, or/||, not/!, and parentheses; not binds tightest, then and, then or.
  A field that is absent, or holds another type than the value, makes its comparison false
  (also for !=): `not dev.name == "lo"` also selects events without a dev section.
  Paths into sections this build does not know are evaluated on whatever the stream holds;
  a misspelt field of a known section is an error.

TIME
  time is the event's time since its section started: the header's started_ns (capture start)
  when set, otherwise the first event of the section. It needs a unit: time >= 12.5s. For
  absolute times compare common.timestamp (ns on the section's clock): common.timestamp > 5s.

JOURNEYS
  --journey keeps every event of each journey (tracking id) with at least one matching event,
  e.g. the whole path of every dropped packet: trail-filter --journey drop. Sorted input
  (trail-sort in the header's pipeline) is exact, holding one journey in memory. Unsorted
  input is judged within --window (default 1s of event time; or a number of events): an event
  that left the window before its journey matched is lost to the output, and the count of
  such events is reported on stderr. At most --max-buffered records (default 250000) wait at
  once. Events without a tracking id are judged alone.
  --invert with --journey drops every journey that has a matching event.

EXAMPLES
  trail-filter drop trace.trail | trail-print
  trail-filter 'pcap("tcp port 443 and host 192.0.2.1") and not comm == "curl"' trace.trail
  trail-filter --journey 'drop.reason == "NETFILTER_DROP"' sorted.trail
  trail-filter --probe 'tp:net:*' --count trace.trail"#;

/// Select events of a trail stream by fields, packets (pcap filters) or whole journeys.
#[derive(clap::Parser, Debug)]
#[command(
    version,
    override_usage = "trail-filter [OPTIONS] EXPR [FILE]...\n       trail-filter [OPTIONS] (-e EXPR | --probe PATTERN)... [FILE]...",
    long_about = HELP
)]
pub struct Args {
    /// EXPR then the input files (stdin when none, or `-`). With -e or --probe every
    /// argument is a file, as with grep -e.
    #[arg(value_name = "EXPR|FILE")]
    pub args: Vec<String>,
    /// The expression (then every positional argument is a file).
    #[arg(short = 'e', long = "expr", value_name = "EXPR")]
    pub expr: Option<String>,
    /// Keep events whose probe spec matches this glob (e.g. 'tp:skb:*'); repeatable (any may
    /// match); combined with EXPR by `and`.
    #[arg(long, value_name = "PATTERN")]
    pub probe: Vec<String>,
    /// Keep every event of each journey (tracking id) that has a matching event.
    #[arg(long)]
    pub journey: bool,
    /// Journey mode on unsorted input: how long an event waits for its journey to match, in
    /// event time (2s, 500ms) or in events (100000).
    #[arg(long, default_value = "1s", value_name = "TIME|EVENTS")]
    pub window: Window,
    /// Journey mode: most records held at once (the memory bound: about 1 KB per record); older
    /// ones leave early.
    #[arg(long, default_value_t = 250_000, value_name = "N")]
    pub max_buffered: usize,
    /// Select the events that do not match (with --journey: drop matching journeys).
    #[arg(short = 'v', long)]
    pub invert: bool,
    /// Print only the number of selected events.
    #[arg(short = 'c', long)]
    pub count: bool,
    /// Stop after N selected events.
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<u64>,
    /// Write the stream to FILE (always binary) instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl Options {
    /// Resolves the command line: with `-e` or `--probe` every positional argument is a file,
    /// otherwise the first one is the expression.
    pub fn from_args(args: Args) -> Result<Options, UsageError> {
        let mut positional = args.args.into_iter();
        let expression = match (args.expr, args.probe.is_empty()) {
            (Some(expr), _) => Some(expr),
            (None, false) => None,
            (None, true) => Some(
                positional
                    .next()
                    .ok_or_else(|| UsageError("missing EXPR (see trail-filter --help)".into()))?,
            ),
        };
        Ok(Options {
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
    }
}

/// Everything `trail-filter` is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The expression; `None` when only `--probe` selects.
    pub expression: Option<String>,
    /// `--probe` patterns (globs on the probe spec), any of which may match.
    pub probes: Vec<String>,
    pub files: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    pub journey: bool,
    pub window: Window,
    pub max_buffered: usize,
    pub invert: bool,
    pub count: bool,
    pub limit: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            expression: None,
            probes: Vec::new(),
            files: Vec::new(),
            output: None,
            journey: false,
            window: Window::Time(1_000_000_000),
            max_buffered: 250_000,
            invert: false,
            count: false,
            limit: None,
        }
    }
}

/// Parses the expression and `--probe` patterns into one expression, reporting warnings.
pub fn expression(options: &Options) -> Result<Expr, UsageError> {
    let mut expr = match &options.expression {
        Some(text) => {
            let parsed = parse(text).map_err(|e| UsageError(e.to_string()))?;
            for warning in &parsed.warnings {
                eprintln!("trail-filter: warning: {warning}");
            }
            Some(parsed.expr)
        }
        None => None,
    };
    let probes = options
        .probes
        .iter()
        .map(|pattern| Expr::Compare {
            target: Target::ProbeSpec,
            mask: None,
            op: Op::Glob,
            value: Literal::Str(pattern.clone()),
        })
        .reduce(|a, b| Expr::Or(Box::new(a), Box::new(b)));
    if let Some(probes) = probes {
        expr = Some(match expr {
            Some(expr) => Expr::And(Box::new(probes), Box::new(expr)),
            None => probes,
        });
    }
    expr.ok_or_else(|| UsageError("no expression given (EXPR, -e or --probe)".into()))
}

/// Where selected records go, counting events and honouring `--limit`.
struct Sink {
    out: Option<Output>,
    events: u64,
    limit: Option<u64>,
}

impl Sink {
    /// Writes an event; returns `false` once the limit is reached (stop reading).
    fn event(&mut self, frame: &Frame, input: &str) -> anyhow::Result<bool> {
        if self.limit.is_some_and(|limit| self.events >= limit) {
            return Ok(false);
        }
        self.events += 1;
        if let Some(out) = &mut self.out {
            out.forward(frame, input)?;
            if out.is_text() {
                out.flush()?;
            }
        }
        Ok(self.limit.is_none_or(|limit| self.events < limit))
    }

    fn other(&mut self, frame: &Frame, input: &str) -> anyhow::Result<()> {
        if let Some(out) = &mut self.out {
            out.forward(frame, input)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// What a header says that evaluation needs.
struct Section {
    context: SectionContext,
    sorted: bool,
}

fn section(frame: &Frame, input: &str) -> Result<Section, StreamError> {
    let header: Header = codec::decode(frame, input)?;
    let start = (header.started_ns != 0)
        .then(|| i128::from(header.started_ns) - i128::from(header.clock.realtime_offset_ns));
    Ok(Section {
        context: SectionContext { start_ns: start },
        sorted: header
            .pipeline
            .iter()
            .any(|stage| stage.tool == "trail-sort"),
    })
}

fn located(input: &str, frame: &Frame, err: EvalError) -> anyhow::Error {
    match err {
        EvalError::Corrupt(why) => StreamError {
            input: input.to_string(),
            offset: frame.offset,
            kind: ErrorKind::Corrupt(why.to_string()),
        }
        .into(),
        EvalError::Pcap(message) => anyhow::Error::new(UsageError(message))
            .context(format!("{input}: byte {}", frame.offset)),
    }
}

/// Evaluates one event: locates its sections, fixes the section's time zero if this is its
/// first event, and returns the expression's verdict.
fn judge(
    matcher: &mut Matcher,
    frame: &Frame,
    input: &str,
    context: &mut SectionContext,
) -> anyhow::Result<bool> {
    let payload = &frame.payload;
    matcher
        .locate(payload)
        .map_err(|e| located(input, frame, e))?;
    if context.start_ns.is_none() && matcher.uses_time() {
        context.start_ns = matcher
            .timestamp(payload)
            .map_err(|e| located(input, frame, e))?;
    }
    matcher
        .matches(payload, *context)
        .map_err(|e| located(input, frame, e))
}

/// `trail-filter`: resolves the command line, then selects.
pub fn run(args: Args) -> anyhow::Result<()> {
    select_events(Options::from_args(args)?)
}

/// Selects events as `options` ask.
pub fn select_events(options: Options) -> anyhow::Result<()> {
    let expr = expression(&options)?;
    let extra: &[&str] = if options.journey {
        &["tracking", "common"]
    } else {
        &[]
    };
    let mut matcher = Matcher::new(&expr, extra).map_err(|(column, message)| {
        UsageError(format!("expression column {column}: {message}"))
    })?;
    if let Window::Events(n) = options.window {
        if n > options.max_buffered {
            return Err(UsageError(format!(
                "--window {n} is larger than --max-buffered {}",
                options.max_buffered
            ))
            .into());
        }
    }
    let out = if options.count {
        None
    } else {
        Some(Output::create(options.output.as_deref(), print::terminal)?)
    };
    let mut sink = Sink {
        out,
        events: 0,
        limit: options.limit,
    };
    let inputs = cli::Inputs::new(&options.files);
    if options.journey {
        select_journeys(&options, &mut matcher, &inputs, &mut sink)?;
    } else {
        select(&options, &mut matcher, &inputs, &mut sink)?;
    }
    if options.count {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", sink.events)?;
        stdout.flush()?;
    }
    match sink.out {
        Some(out) => out.finish(),
        None => Ok(()),
    }
}

fn select(
    options: &Options,
    matcher: &mut Matcher,
    inputs: &cli::Inputs,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    let stage = cli::this_stage("trail-filter");
    let mut frame = Frame::default();
    let mut context = SectionContext::default();
    for reader in inputs.readers() {
        let mut reader = reader?;
        loop {
            // Flush before a read that may block, so a live pipeline sees matches at once.
            if reader.input_drained() {
                sink.flush()?;
            }
            if !reader.next_frame(&mut frame)? {
                break;
            }
            let input = reader.name();
            match frame.kind {
                FrameKind::Header => {
                    context = section(&frame, input)?.context;
                    let staged = cli::stage_header(&frame, &stage)
                        .with_context(|| format!("{input}: byte {}", frame.offset))?;
                    sink.other(&staged, input)?;
                }
                FrameKind::Event => {
                    if judge(matcher, &frame, input, &mut context)? != options.invert
                        && !sink.event(&frame, input)?
                    {
                        return Ok(());
                    }
                }
                _ => sink.other(&frame, input)?,
            }
        }
    }
    Ok(())
}

fn select_journeys(
    options: &Options,
    matcher: &mut Matcher,
    inputs: &cli::Inputs,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    use journey::Journeys;
    let stage = cli::this_stage("trail-filter");
    let mut journeys = Journeys::new(options.window, options.max_buffered, options.invert);
    let mut names: Vec<String> = Vec::new();
    // Payload buffers of released records, reused for the next ones.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut context = SectionContext::default();
    let mut frame = Frame::default();
    'inputs: for reader in inputs.readers() {
        let mut reader = reader?;
        names.push(reader.name().to_string());
        let input_index = names.len() - 1;
        while reader.next_frame(&mut frame)? {
            let input = reader.name();
            let go_on = match frame.kind {
                FrameKind::Header => {
                    let go_on = journeys.drain(&mut |r| release(r, sink, &names, &mut spare))?;
                    let info = section(&frame, input)?;
                    context = info.context;
                    journeys.section(info.sorted);
                    let staged = cli::stage_header(&frame, &stage)
                        .with_context(|| format!("{input}: byte {}", frame.offset))?;
                    sink.other(&staged, input)?;
                    go_on
                }
                FrameKind::Event => {
                    let own = judge(matcher, &frame, input, &mut context)?;
                    let payload = &frame.payload;
                    let tracking = matcher.section(payload, "tracking");
                    let (key, index) = match tracking {
                        Some(bytes) => {
                            let field = |name: &[u8]| {
                                raw::get_int(bytes, name)
                                    .map_err(|e| located(input, &frame, EvalError::Corrupt(e)))
                            };
                            let first_seen = field(b"first_seen")?.unwrap_or(0) as u64;
                            let orig_head = field(b"orig_head")?.unwrap_or(0) as u64;
                            (
                                Some((first_seen, orig_head)),
                                field(b"index")?.map(|i| i as u64),
                            )
                        }
                        None => (None, None),
                    };
                    let time = matcher
                        .timestamp(payload)
                        .map_err(|e| located(input, &frame, e))?
                        .map(|t| t as u64);
                    let queued = take_frame(&frame, &mut spare);
                    let arrival = journey::Arrival {
                        key,
                        own,
                        time,
                        index,
                    };
                    journeys.event(queued, input_index, arrival, &mut |r| {
                        release(r, sink, &names, &mut spare)
                    })?
                }
                _ => {
                    let queued = take_frame(&frame, &mut spare);
                    journeys.always(queued, input_index, &mut |r| {
                        release(r, sink, &names, &mut spare)
                    })?
                }
            };
            if !go_on {
                break 'inputs;
            }
        }
    }
    journeys.drain(&mut |r| release(r, sink, &names, &mut spare))?;
    report(options, &journeys);
    Ok(())
}

/// Writes a record leaving the journey queue if it is kept; recycles its buffer.
fn release(
    released: journey::Released,
    sink: &mut Sink,
    names: &[String],
    spare: &mut Vec<Vec<u8>>,
) -> anyhow::Result<bool> {
    let (pending, keep) = match released {
        journey::Released::Keep(p) => (p, true),
        journey::Released::Drop(p) => (p, false),
    };
    let input = &names[pending.input];
    let go_on = match (keep, pending.frame.kind) {
        (false, _) => true,
        (true, FrameKind::Event) => sink.event(&pending.frame, input)?,
        (true, _) => {
            sink.other(&pending.frame, input)?;
            true
        }
    };
    if spare.len() < 1024 {
        spare.push(pending.frame.payload);
    }
    Ok(go_on)
}

/// A copy of `frame` for the queue, in a recycled buffer.
fn take_frame(frame: &Frame, spare: &mut Vec<Vec<u8>>) -> Frame {
    let mut payload = spare.pop().unwrap_or_default();
    payload.clear();
    payload.extend_from_slice(&frame.payload);
    Frame {
        kind: frame.kind,
        offset: frame.offset,
        version: frame.version,
        payload,
    }
}

fn report(options: &Options, journeys: &journey::Journeys) {
    if journeys.late > 0 {
        let window = match options.window {
            Window::Time(ns) => format!("{}s", ns as f64 / 1e9),
            Window::Events(n) => format!("{n} events"),
        };
        let fate = if options.invert {
            "were kept"
        } else {
            "were not kept"
        };
        eprintln!(
            "trail-filter: warning: {} events of matching journeys had left the window ({window}) \
             before their journey matched and {fate}; widen --window or sort the input with trail-sort",
            journeys.late
        );
    }
    if journeys.overflow > 0 {
        eprintln!(
            "trail-filter: warning: the journey buffer reached --max-buffered {} records {} times \
             and released records early",
            options.max_buffered, journeys.overflow
        );
    }
    if journeys.split > 0 {
        eprintln!(
            "trail-filter: warning: {} journeys of sorted input did not start at their first event \
             (tracking.index > 0): the input is not grouped by journey, so those were judged in pieces",
            journeys.split
        );
    }
}
