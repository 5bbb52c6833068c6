//! trail-sort: groups events into journeys and orders them.
//!
//! Contract (normative text in `schemas/journeys.md`):
//! - Output is a stream of the input events (not new records): journeys one after the other,
//!   ordered by first sighting (smallest timestamp of the journey's events), events within a
//!   journey by timestamp (ties: input order). Each event of a journey gets `tracking.index`
//!   (0 first), spliced into its `tracking` section; every other byte of the event is kept.
//! - A journey is the set of events whose `tracking.parent` (when set, by trail-track: the root
//!   of a chain of linked journeys) or else own id (`first_seen`, `orig_head`) is equal. Events
//!   without a tracking id pass through, in time order among the journeys.
//! - Several inputs (and concatenated sections) merge onto one clock: see [`crate::journeys::merge`].
//! - Exact mode (inputs are files, or `--exact`): everything is read, then output; memory is
//!   bounded by `--memory` with an external merge sort ([`crate::journeys::extsort`]) run twice (by
//!   journey, then by journey start). Streaming mode (a pipe, or `--window`): a journey is
//!   emitted once it has been idle for `--window` of event time past the inputs' newest
//!   timestamp and every journey that started before it has been emitted; if more than
//!   `--memory` bytes are buffered the oldest journey is emitted early. Events arriving after
//!   their journey was emitted start a continuation (index counting on) and are counted.
//! - `--summary` prints one line per journey instead of the events (text or JSON lines).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Write};
use std::ops::Range;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::cli::parse::{parse_duration, parse_size};
use crate::cli::{self, Output};
use crate::journeys::extsort::{ExternalSort, Item, SortKey};
use crate::journeys::merge::{self, format_id, parse_id, Inputs, JourneyId, Record};
use crate::model::codec::{self, Frame, FrameKind, RawMap};
use crate::model::event::{Drop, Probe};
use crate::model::msgpack::Cursor;
use crate::model::probe::is_end_of_life;
use crate::print;

/// Group events into journeys: journeys by first sighting, events by time, each event's
/// `tracking.index` set. Several inputs merge on wall-clock time. Files are sorted exactly
/// (spilling to temporary files beyond --memory); a pipe is sorted with a reorder --window.
#[derive(Clone, Debug, clap::Parser)]
#[command(version)]
pub struct Args {
    /// Input streams (default: stdin; `-` is stdin).
    pub inputs: Vec<PathBuf>,
    /// Write the stream to FILE (created only on success).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stream with this reorder window of event time (e.g. 1s, 200ms): a journey is emitted once
    /// idle this long past the newest timestamp. Default for pipes: 1s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub window: Option<u64>,
    /// Sort exactly even when reading a pipe (output starts at end of input).
    #[arg(long, conflicts_with = "window")]
    pub exact: bool,
    /// Memory for buffered events: beyond it, exact mode spills sorted runs to temporary files
    /// and streaming mode emits the oldest journey early.
    #[arg(long, value_parser = parse_size, default_value = DEFAULT_MEMORY, value_name = "SIZE")]
    pub memory: usize,
    /// Directory for temporary spill files (default: $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Print one line per journey (first/last probe, duration, events, fate) instead of events.
    #[arg(long)]
    pub summary: bool,
    /// Format of --summary lines.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text, requires = "summary")]
    pub format: SummaryFormat,
}

/// Default streaming window: 1 s of event time.
pub const DEFAULT_WINDOW_NS: u64 = 1_000_000_000;
/// Default `--memory`.
pub const DEFAULT_MEMORY: &str = "256M";
/// How many emitted journeys streaming mode remembers, to continue their index numbering.
const EMITTED_MEMORY: usize = 65_536;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    #[default]
    Text,
    Json,
}

/// What groups an item with others: a journey, or a record of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Group {
    Journey(u64, u64),
    /// An untracked event or a non-event record, identified by its arrival number.
    Single(u64),
}

impl Group {
    fn write(&self, out: &mut Vec<u8>) {
        let (tag, a, b) = match *self {
            Group::Journey(a, b) => (0u8, a, b),
            Group::Single(a) => (1u8, a, 0),
        };
        out.push(tag);
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }

    fn read(bytes: &[u8]) -> Group {
        let a = be64(&bytes[1..9]);
        let b = be64(&bytes[9..17]);
        if bytes[0] == 0 {
            Group::Journey(a, b)
        } else {
            Group::Single(a)
        }
    }

    fn journey(&self) -> Option<JourneyId> {
        match *self {
            Group::Journey(a, b) => Some((a, b)),
            Group::Single(_) => None,
        }
    }
}

fn be64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// Where an event's `tracking` value lies in its payload (`start << 32 | end`; 0: nowhere), so
/// that setting `tracking.index` on output splices that range without indexing the event again.
type Span = u64;

fn span_of(range: &Range<usize>) -> Span {
    (range.start as u64) << 32 | range.end as u64
}

fn span_range(span: Span) -> Range<usize> {
    (span >> 32) as usize..(span & 0xffff_ffff) as usize
}

/// First pass key: groups journeys together.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ByJourney {
    group: Group,
    ts: u64,
    seq: u64,
    /// Not an ordering criterion (`seq` is unique): carried along for the output.
    span: Span,
}

impl SortKey for ByJourney {
    const SIZE: usize = 17 + 24;
    fn write(&self, out: &mut Vec<u8>) {
        self.group.write(out);
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.span.to_be_bytes());
    }
    fn read(bytes: &[u8]) -> Self {
        ByJourney {
            group: Group::read(&bytes[..17]),
            ts: be64(&bytes[17..25]),
            seq: be64(&bytes[25..33]),
            span: be64(&bytes[33..41]),
        }
    }
}

/// Second pass key: journeys by first sighting; carries the index found in the first pass.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ByStart {
    start: u64,
    group: Group,
    ts: u64,
    seq: u64,
    index: u32,
    span: Span,
}

impl SortKey for ByStart {
    const SIZE: usize = 8 + 17 + 16 + 4 + 8;
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.start.to_be_bytes());
        self.group.write(out);
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.span.to_be_bytes());
    }
    fn read(bytes: &[u8]) -> Self {
        ByStart {
            start: be64(&bytes[..8]),
            group: Group::read(&bytes[8..25]),
            ts: be64(&bytes[25..33]),
            seq: be64(&bytes[33..41]),
            index: u32::from_be_bytes([bytes[41], bytes[42], bytes[43], bytes[44]]),
            span: be64(&bytes[45..53]),
        }
    }
}

/// The journey an event belongs to: its `tracking.parent` (a chain's root) or its own id; and
/// where its `tracking` section lies. Reads the raw bytes: no event is decoded to be sorted.
pub fn journey_of(
    payload: &[u8],
    map: &RawMap,
) -> Result<Option<(JourneyId, Range<usize>)>, String> {
    let Some(range) = map.range(payload, "tracking") else {
        return Ok(None);
    };
    let value = &payload[range.clone()];
    let field =
        |key: &str| codec::map_value(value, key).map_err(|why| format!("section tracking: {why}"));
    if let Some(parent) = field("parent")? {
        let text = Cursor::new(parent)
            .str()
            .map_err(|_| "tracking.parent is not a string".to_string())?;
        if let Some(root) = parse_id(text) {
            return Ok(Some((root, range)));
        }
    }
    let number = |key: &str| match field(key)? {
        None => Ok(0),
        Some(bytes) => merge::read_u64(bytes)
            .ok_or_else(|| format!("tracking.{key} is not an unsigned integer")),
    };
    let id = (number("first_seen")?, number("orig_head")?);
    Ok((id != (0, 0)).then_some((id, range)))
}

/// What groups a record with others, and where its `tracking` section lies (see [`Span`]).
fn group_of(inputs: &Inputs, record: &Record) -> anyhow::Result<(Group, Span)> {
    if record.kind == FrameKind::Event {
        if let Some(map) = &record.map {
            let journey = journey_of(&record.payload, map).map_err(|why| {
                crate::model::error::StreamError {
                    input: inputs.input_name(record.input).to_string(),
                    offset: record.offset,
                    kind: crate::model::error::ErrorKind::Corrupt(why),
                }
            })?;
            if let Some(((a, b), range)) = journey {
                return Ok((Group::Journey(a, b), span_of(&range)));
            }
        }
    }
    Ok((Group::Single(record.seq), 0))
}

pub fn run(options: Args) -> anyhow::Result<()> {
    if options.summary && options.output.is_some() {
        return Err(crate::model::error::UsageError(
            "--summary writes to stdout; -o is for streams".into(),
        )
        .into());
    }
    let exact = options.window.is_none() && (options.exact || inputs_are_files(&options.inputs));
    let mut inputs = Inputs::open(&options.inputs)?;
    let stage = cli::this_stage("trail-sort");
    let mut emitter = Emitter::new(&options)?;
    if exact {
        sort_exact(&mut inputs, &options, &stage, &mut emitter)?;
    } else {
        emitter.header(&inputs.header_frame(&stage, false)?)?;
        sort_streaming(&mut inputs, &options, &mut emitter)?;
    }
    if inputs.clamped > 0 {
        merge::warn(
            "trail-sort",
            format_args!(
                "{} timestamps fell outside the range of the output clock and were clamped",
                inputs.clamped
            ),
        );
    }
    emitter.finish()
}

/// Whether every input is a regular file (stdin included, when redirected from one).
fn inputs_are_files(paths: &[PathBuf]) -> bool {
    let stdin = PathBuf::from("/dev/stdin");
    let paths: Vec<&PathBuf> = if paths.is_empty() {
        vec![&stdin]
    } else {
        paths.iter().collect()
    };
    paths.iter().all(|path| {
        let path = if path.as_os_str() == "-" {
            &stdin
        } else {
            *path
        };
        std::fs::metadata(path).is_ok_and(|m| m.is_file())
    })
}

fn sort_exact(
    inputs: &mut Inputs,
    options: &Args,
    stage: &crate::model::event::Stage,
    emitter: &mut Emitter,
) -> anyhow::Result<()> {
    let temp =
        |e: io::Error| anyhow::Error::new(e).context("cannot use temporary files for sorting");
    let mut by_journey = ExternalSort::<ByJourney>::new(options.memory, options.temp_dir.clone());
    let mut trailers = Vec::new();
    while let Some(record) = inputs.next_sequential()? {
        if record.kind == FrameKind::Trailer {
            // Totals of a producer: after everything else.
            trailers.push(record.payload);
            continue;
        }
        let (group, span) = group_of(inputs, &record)?;
        by_journey
            .push(Item {
                key: ByJourney {
                    group,
                    ts: record.ts,
                    seq: record.seq,
                    span,
                },
                tag: record.kind.tag(),
                payload: record.payload,
            })
            .map_err(temp)?;
    }
    let (mut grouped, first_stats) = by_journey.finish().map_err(temp)?;
    let mut by_start = ExternalSort::<ByStart>::new(options.memory, options.temp_dir.clone());
    let mut current: Option<(Group, u64)> = None;
    let mut index = 0u32;
    while let Some(item) = grouped.next_item().map_err(temp)? {
        let key = item.key;
        let start = match current {
            Some((group, start)) if group == key.group => {
                index += 1;
                start
            }
            _ => {
                index = 0;
                current = Some((key.group, key.ts));
                key.ts
            }
        };
        by_start
            .push(Item {
                key: ByStart {
                    start,
                    group: key.group,
                    ts: key.ts,
                    seq: key.seq,
                    index,
                    span: key.span,
                },
                tag: item.tag,
                payload: item.payload,
            })
            .map_err(temp)?;
    }
    drop(grouped);
    let (mut ordered, second_stats) = by_start.finish().map_err(temp)?;
    emitter.spill_runs = first_stats.runs + second_stats.runs;
    emitter.header(&inputs.header_frame(stage, true)?)?;
    while let Some(item) = ordered.next_item().map_err(temp)? {
        let index = item.key.group.journey().map(|_| item.key.index);
        emitter.item(item.key.group, index, item.key.span, item.tag, item.payload)?;
    }
    for payload in trailers {
        emitter.item(Group::Single(u64::MAX), None, 0, b'T', payload)?;
    }
    Ok(())
}

struct OpenJourney {
    start: u64,
    last: u64,
    /// Index of the first event not yet emitted (a continuation of an emitted journey).
    base_index: u32,
    events: Vec<Held>,
}

/// A buffered item: (timestamp, arrival, tracking span, tag, payload).
type Held = (u64, u64, Span, u8, Vec<u8>);

/// Streaming mode's state: the journeys held back until their window closes, and enough about
/// the emitted ones to number a continuation on.
struct Window {
    /// Event time (ns) a journey must stay idle, behind the inputs' watermark, to be emitted.
    length: u64,
    open: HashMap<Group, OpenJourney>,
    /// Open journeys by first sighting: the front is the next one out.
    order: BTreeSet<(u64, Group)>,
    /// Journeys already emitted: next index and generation (for the bounded FIFO that forgets them).
    emitted: HashMap<Group, (u32, u64)>,
    emitted_fifo: VecDeque<(Group, u64)>,
    generation: u64,
    /// Bytes held (payloads plus per-item overhead, as the exact mode counts them): `--memory`.
    buffered: usize,
}

impl Window {
    fn new(length: u64) -> Window {
        Window {
            length,
            open: HashMap::new(),
            order: BTreeSet::new(),
            emitted: HashMap::new(),
            emitted_fifo: VecDeque::new(),
            generation: 0,
            buffered: 0,
        }
    }

    /// Whether something at `ts` is older than the window behind `watermark`.
    fn is_past(&self, ts: u64, watermark: u64) -> bool {
        ts.saturating_add(self.length) < watermark
    }

    /// Holds an event of `group`; true when it continues a journey already emitted.
    fn add(&mut self, group: Group, event: Held) -> bool {
        let ts = event.0;
        self.buffered += event.4.len() + crate::journeys::extsort::ITEM_OVERHEAD;
        match self.open.get_mut(&group) {
            Some(journey) => {
                if ts < journey.start {
                    self.order.remove(&(journey.start, group));
                    journey.start = ts;
                    self.order.insert((journey.start, group));
                }
                journey.last = journey.last.max(ts);
                journey.events.push(event);
                false
            }
            None => {
                let base_index = self.emitted.remove(&group).map_or(0, |e| e.0);
                self.order.insert((ts, group));
                self.open.insert(
                    group,
                    OpenJourney {
                        start: ts,
                        last: ts,
                        base_index,
                        events: vec![event],
                    },
                );
                base_index > 0
            }
        }
    }

    /// Whether the front journey has been idle for the window; `None` when nothing is held.
    fn front_is_idle(&self, watermark: u64) -> Option<bool> {
        let &(_, front) = self.order.first()?;
        Some(
            self.open
                .get(&front)
                .is_none_or(|j| self.is_past(j.last, watermark)),
        )
    }

    /// Emits the journey that started first, its events in time order.
    fn emit_front(&mut self, emitter: &mut Emitter) -> anyhow::Result<()> {
        let Some((_, group)) = self.order.pop_first() else {
            return Ok(());
        };
        let Some(mut journey) = self.open.remove(&group) else {
            return Ok(());
        };
        journey.events.sort_unstable_by_key(|e| (e.0, e.1));
        let mut index = journey.base_index;
        for (_, _, span, tag, payload) in journey.events {
            self.buffered -= payload.len() + crate::journeys::extsort::ITEM_OVERHEAD;
            emitter.item(group, group.journey().map(|_| index), span, tag, payload)?;
            index += 1;
        }
        emitter.journey_done()?;
        if group.journey().is_some() {
            self.generation += 1;
            self.emitted.insert(group, (index, self.generation));
            self.emitted_fifo.push_back((group, self.generation));
            if self.emitted_fifo.len() > EMITTED_MEMORY {
                if let Some((old, old_generation)) = self.emitted_fifo.pop_front() {
                    // Forget it unless it was emitted again since (a newer entry is queued).
                    if self
                        .emitted
                        .get(&old)
                        .is_some_and(|e| e.1 == old_generation)
                    {
                        self.emitted.remove(&old);
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits every journey still held (end of input).
    fn emit_all(&mut self, emitter: &mut Emitter) -> anyhow::Result<()> {
        while !self.order.is_empty() {
            self.emit_front(emitter)?;
        }
        Ok(())
    }
}

fn sort_streaming(
    inputs: &mut Inputs,
    options: &Args,
    emitter: &mut Emitter,
) -> anyhow::Result<()> {
    let mut window = Window::new(options.window.unwrap_or(DEFAULT_WINDOW_NS));
    let mut trailers = Vec::new();
    let (mut late, mut forced) = (0u64, 0u64);
    loop {
        if inputs.next_may_block() {
            emitter.flush()?;
        }
        let Some(record) = inputs.next_interleaved()? else {
            break;
        };
        if record.kind == FrameKind::Trailer {
            trailers.push(record.payload);
            continue;
        }
        let (group, span) = group_of(inputs, &record)?;
        let watermark = inputs.watermark();
        let behind = window.is_past(record.ts, watermark);
        let event = (
            record.ts,
            record.seq,
            span,
            record.kind.tag(),
            record.payload,
        );
        let continuation = window.add(group, event);
        late += u64::from(behind || continuation);
        while let Some(idle) = window.front_is_idle(watermark) {
            let over = window.buffered > options.memory;
            if !idle && !over {
                break;
            }
            if !idle {
                forced += 1;
            }
            window.emit_front(emitter)?;
        }
    }
    window.emit_all(emitter)?;
    for payload in trailers {
        emitter.item(Group::Single(u64::MAX), None, 0, b'T', payload)?;
    }
    if late > 0 {
        merge::warn(
            "trail-sort",
            format_args!("{late} events arrived later than the --window allows; their journeys may be split or out of order"),
        );
    }
    if forced > 0 {
        merge::warn(
            "trail-sort",
            format_args!("{forced} journeys emitted before they were idle because more than --memory was buffered"),
        );
    }
    Ok(())
}

/// Where sorted items go: the output stream, or per-journey summary lines.
struct Emitter {
    sink: Sink,
    version: (u8, u8),
    scratch: Vec<u8>,
    /// Runs spilled in exact mode (for the summary on stderr with `TRAIL_SORT_STATS`).
    spill_runs: u64,
}

enum Sink {
    Stream(Output),
    Summary {
        out: io::BufWriter<io::StdoutLock<'static>>,
        format: SummaryFormat,
        current: Option<Summary>,
    },
}

impl Emitter {
    fn new(options: &Args) -> anyhow::Result<Emitter> {
        let sink = if options.summary {
            Sink::Summary {
                out: io::BufWriter::with_capacity(256 * 1024, io::stdout().lock()),
                format: options.format,
                current: None,
            }
        } else {
            Sink::Stream(Output::create(options.output.as_deref(), print::terminal)?)
        };
        Ok(Emitter {
            sink,
            version: (
                crate::model::event::FORMAT_MAJOR,
                crate::model::event::FORMAT_MINOR,
            ),
            scratch: Vec::new(),
            spill_runs: 0,
        })
    }

    fn header(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.version = frame.version;
        if let Sink::Stream(output) = &mut self.sink {
            output.forward(frame, "trail-sort")?;
        }
        Ok(())
    }

    fn item(
        &mut self,
        group: Group,
        index: Option<u32>,
        span: Span,
        tag: u8,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Stream(output) => {
                let payload = match index {
                    Some(index) if tag == b'E' && span != 0 => {
                        splice_index(&payload, span_range(span), index, &mut self.scratch)
                            .map_err(anyhow::Error::msg)
                            .context("cannot set tracking.index")?;
                        std::mem::take(&mut self.scratch)
                    }
                    _ => payload,
                };
                let frame = Frame {
                    kind: kind_of(tag),
                    offset: 0,
                    version: self.version,
                    payload,
                };
                let result = output.forward(&frame, "trail-sort");
                self.scratch = frame.payload;
                result
            }
            Sink::Summary {
                out,
                format,
                current,
            } => {
                let Some(id) = group.journey().filter(|_| tag == b'E') else {
                    return Ok(());
                };
                if current.as_ref().is_some_and(|s| s.id != id) {
                    if let Some(done) = current.take() {
                        write_summary(out, *format, &done)?;
                    }
                }
                current
                    .get_or_insert_with(|| Summary::new(id))
                    .add(&payload);
                Ok(())
            }
        }
    }

    /// A journey was emitted whole (streaming mode): its summary line need not wait for the next.
    fn journey_done(&mut self) -> anyhow::Result<()> {
        if let Sink::Summary {
            out,
            format,
            current,
        } = &mut self.sink
        {
            if let Some(done) = current.take() {
                write_summary(out, *format, &done)?;
            }
        }
        Ok(())
    }

    /// Writes out what is buffered (streaming mode, when the input runs dry).
    fn flush(&mut self) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Stream(output) => output.flush(),
            Sink::Summary { out, .. } => merge::write_context(out.flush()),
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        if std::env::var_os("TRAIL_SORT_STATS").is_some() {
            merge::warn(
                "trail-sort",
                format_args!("stats: {} spill runs", self.spill_runs),
            );
        }
        match self.sink {
            Sink::Stream(output) => output.finish(),
            Sink::Summary {
                mut out,
                format,
                current,
            } => {
                if let Some(done) = current {
                    write_summary(&mut out, format, &done)?;
                }
                merge::write_context(out.flush())
            }
        }
    }
}

fn kind_of(tag: u8) -> FrameKind {
    match tag {
        b'E' => FrameKind::Event,
        b'L' => FrameKind::Lost,
        b'T' => FrameKind::Trailer,
        b'H' => FrameKind::Header,
        other => FrameKind::Other(other),
    }
}

/// Splices `tracking.index = index` into an event (see the module header).
pub fn set_index(payload: &[u8], index: u32, out: &mut Vec<u8>) -> Result<(), String> {
    let map = RawMap::parse(payload)?;
    let range = map
        .range(payload, "tracking")
        .ok_or("event has no tracking section")?;
    splice_index(payload, range, index, out)
}

/// [`set_index`] for an event whose `tracking` value lies at `range`: only that value is
/// re-encoded; the bytes before and after it are copied as they are (the top-level map keeps
/// its entries, so its header does not change).
fn splice_index(
    payload: &[u8],
    range: Range<usize>,
    index: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let tracking = payload
        .get(range.clone())
        .ok_or("tracking section out of range")?;
    let mut index_value = [0u8; 9];
    let index_value = {
        let mut cursor = &mut index_value[..];
        // Writing into a 9-byte slice cannot fail for a u32.
        let _ = rmp::encode::write_uint(&mut cursor, u64::from(index));
        let left = cursor.len();
        &index_value[..9 - left]
    };
    out.clear();
    out.reserve(payload.len() + 16);
    out.extend_from_slice(&payload[..range.start]);
    match codec::map_value(tracking, "index")? {
        Some(old) => {
            // Replace the value in place: bytes before it, the new value, bytes after it.
            let at = old.as_ptr() as usize - tracking.as_ptr() as usize;
            out.extend_from_slice(&tracking[..at]);
            out.extend_from_slice(index_value);
            out.extend_from_slice(&tracking[at + old.len()..]);
        }
        None => {
            // Append the entry: a map header one entry longer, then the entries as they are.
            let mut cursor = Cursor::new(tracking);
            let count = cursor
                .map_len()
                .map_err(|e| format!("section tracking is not a map: {}", e.rmp_text()))?;
            let _ = rmp::encode::write_map_len(out, count + 1);
            out.extend_from_slice(cursor.rest());
            let _ = rmp::encode::write_str(out, "index");
            out.extend_from_slice(index_value);
        }
    }
    out.extend_from_slice(&payload[range.end..]);
    Ok(())
}

/// One journey seen as a whole: the `--summary` line.
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "journey")]
    pub id_text: String,
    #[serde(skip)]
    id: JourneyId,
    pub first_ns: u64,
    pub last_ns: u64,
    pub duration_ns: u64,
    pub first_probe: String,
    pub last_probe: String,
    /// Number of events (hops).
    pub events: u64,
    /// `dropped`, `delivered`, `transmitted` or `unknown` (rules in `schemas/journeys.md`).
    pub fate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    delivered: bool,
    /// Last probe that is not an end-of-life probe.
    #[serde(skip)]
    last_live_probe: String,
}

impl Summary {
    fn new(id: JourneyId) -> Summary {
        Summary {
            id_text: format_id(id),
            id,
            first_ns: u64::MAX,
            last_ns: 0,
            duration_ns: 0,
            first_probe: String::new(),
            last_probe: String::new(),
            events: 0,
            fate: String::new(),
            reason: None,
            delivered: false,
            last_live_probe: String::new(),
        }
    }

    fn add(&mut self, payload: &[u8]) {
        let Ok(map) = RawMap::parse(payload) else {
            return;
        };
        let ts = merge::event_timestamp(payload, &map)
            .ok()
            .flatten()
            .unwrap_or(self.last_ns);
        let probe = codec::decode_section::<Probe>(payload, &map, "probe")
            .and_then(Result::ok)
            .map(|p| p.spec())
            .unwrap_or_default();
        if let Some(Ok(drop)) = codec::decode_section::<Drop>(payload, &map, "drop") {
            self.reason = Some(drop.reason);
        }
        if is_delivery(&probe) {
            self.delivered = true;
        }
        if !is_end_of_life(&probe) {
            self.last_live_probe.clone_from(&probe);
        }
        // Events come in timestamp order within a journey.
        if self.events == 0 {
            self.first_ns = ts;
            self.first_probe.clone_from(&probe);
        }
        self.last_ns = ts;
        self.last_probe = probe;
        self.events += 1;
        self.duration_ns = self.last_ns.saturating_sub(self.first_ns);
        self.fate = if self.reason.is_some() {
            "dropped"
        } else if self.delivered {
            "delivered"
        } else if is_transmit(&self.last_live_probe) {
            "transmitted"
        } else {
            "unknown"
        }
        .into();
    }
}

/// Probes at which a packet reaches a socket.
fn is_delivery(probe: &str) -> bool {
    [
        "skb_copy_datagram_iovec",
        "sock_queue_rcv",
        "udp_queue_rcv",
        "tcp_queue_rcv",
        "tcp_data_queue",
    ]
    .iter()
    .any(|name| probe.contains(name))
}

fn is_transmit(probe: &str) -> bool {
    probe.contains("xmit")
}

fn write_summary(
    out: &mut impl Write,
    format: SummaryFormat,
    summary: &Summary,
) -> anyhow::Result<()> {
    let result = match format {
        SummaryFormat::Json => serde_json::to_writer(&mut *out, summary)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n")),
        SummaryFormat::Text => {
            let fate = match &summary.reason {
                Some(reason) => format!("dropped ({reason})"),
                None => summary.fate.clone(),
            };
            writeln!(
                out,
                "#{} {}.{:09} {} events {} -> {} in {} {}",
                summary.id_text,
                summary.first_ns / 1_000_000_000,
                summary.first_ns % 1_000_000_000,
                summary.events,
                summary.first_probe,
                summary.last_probe,
                duration_text(summary.duration_ns),
                fate
            )
        }
    };
    merge::write_context(result)
}

fn duration_text(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns}ns"),
        10_000..=9_999_999 => format!("{:.1}us", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.3}s", ns as f64 / 1e9),
    }
}
