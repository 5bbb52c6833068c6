//! Rendering a stream for people (text) and for jq (JSON lines).
//!
//! Text follows Retis's layout so its users feel at home: a first line with timestamp, cpu,
//! command, pid/tid, probe, tracking id, skb address, journey index and drop reason, then
//! indented lines for the packet, netns/device, skb metadata, conntrack, nft and stack. Events of
//! a sorted journey (those with `tracking.index` > 0) render under their first event with `↳`.
//!
//! JSON lines: one object per event, the sections as serde serializes them plus `time` (as text
//! shows it) and `parsed` (the dissected packet), keys sorted at every level (the order jq and
//! earlier versions show). With [`PrintOptions::journeys`], JSON output is one line per journey
//! of a sorted stream (`{"events": [...], "journey": ID}`, events as in per-event JSON): an event
//! with `tracking.index` 0 or none starts a line, one with index > 0 joins the current one, and
//! the line is written when the next starts or on [`Printer::flush`]. Untracked events make their
//! own line with `"journey": null`.
//!
//! Speed: events are read as borrowed views ([`crate::model::view`]) and written into reused buffers,
//! text and JSON alike, without `core::fmt` or a `serde_json::Value` per event; the JSON
//! writers are in `json.rs`, checked against serde's output by `tests/print.rs`.
//!
//! Contract: the printer never fails on content it does not know. Unknown sections are shown
//! generically (text) or kept as JSON values (JSON); unknown record kinds are skipped.

mod json;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::cli::{self, TextSink};
use crate::model::codec::{self, Frame, FrameKind, RawMap};
use crate::model::dissect;
use crate::model::event::{Clock, Event, Header, Lost, ProbeKind, Trailer, SECTIONS};
use crate::model::sections::text::{push_int, push_padded};
use crate::model::sections::{self, with_sections};
use crate::model::view::EventView;

/// Output layouts of `trail-print`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Retis-like: a first line per event, details indented below it.
    #[default]
    Multi,
    /// One line per event.
    SingleLine,
    /// JSON lines: one object per event (and per lost/trailer record), for jq.
    Json,
}

#[derive(Clone, Debug, Default)]
pub struct PrintOptions {
    pub format: Format,
    /// Show wall-clock UTC times (from the section header's clock offset).
    pub utc: bool,
    /// Sections to show (names as in the stream, plus `time`); `None`: all.
    pub fields: Option<BTreeSet<String>>,
    /// Also print section headers (text: a `#` comment line; JSON: a `{"header": …}` object).
    pub headers: bool,
    /// JSON: one line per journey of a sorted stream instead of one per event (module header).
    pub journeys: bool,
}

/// Render trail streams for people (Retis-like text) or for jq (JSON lines).
#[derive(Debug, clap::Parser)]
#[command(name = "trail-print", version)]
pub struct Args {
    /// Trail streams to print (default: stdin; `-` for stdin). Sections may be concatenated.
    pub inputs: Vec<std::path::PathBuf>,
    /// Output layout.
    #[arg(long, value_enum, default_value = "multi")]
    pub format: Format,
    /// Shorthand for `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Show wall-clock UTC times instead of monotonic seconds.
    #[arg(long)]
    pub utc: bool,
    /// Comma-separated sections to show: time, common, probe, packet, skb, dev, netns, drop,
    /// tracking, ct, nft, stack, retval, or an unknown section's name.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub fields: Option<Vec<String>>,
    /// Also show section headers and trailers (text: `#` lines; JSON: header/trailer objects).
    #[arg(long)]
    pub headers: bool,
    /// With JSON: one line per journey of a sorted stream (`{"journey": ID, "events": [...]}`).
    #[arg(long)]
    pub journeys: bool,
}

/// `trail-print`: renders every input to stdout.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let options = PrintOptions {
        format: if args.json { Format::Json } else { args.format },
        utc: args.utc,
        fields: args
            .fields
            .as_ref()
            .map(|f| f.iter().map(|s| s.trim().to_string()).collect()),
        headers: args.headers,
        journeys: args.journeys,
    };
    let printer = std::cell::RefCell::new(Printer::new(io::stdout().lock(), options));
    cli::Inputs::new(&args.inputs).for_each_frame_live(
        |frame, input| printer.borrow_mut().frame(frame, input),
        // A live pipe (`trail-capture | trail-print`) shows events as they arrive.
        || Ok(printer.borrow_mut().flush()?),
    )?;
    let mut printer = printer.into_inner();
    Ok(printer.finish()?)
}

/// `Shown`: which of the known keys `--fields` lets through (all without it), looked up once,
/// not per event: one switch per section (from the list of sections), `time`, and `parsed`,
/// which JSON keeps with `packet`.
macro_rules! define_shown {
    ($($(#[$doc:meta])* $field:ident in $module:ident: $Owned:ident, $View:ident;)*) => {
        #[derive(Clone, Copy, Debug)]
        struct Shown {
            time: bool,
            parsed: bool,
            $($field: bool,)*
        }

        impl Shown {
            fn new(fields: Option<&BTreeSet<String>>) -> Shown {
                let has = |name: &str| fields.is_none_or(|f| f.contains(name));
                Shown {
                    time: has("time"),
                    parsed: has("parsed") || has("packet"),
                    $($field: has(stringify!($field)),)*
                }
            }
        }
    };
}
with_sections!(define_shown);

/// An unknown section of an event: its name and its value as JSON.
type Unknown<'p> = (&'p str, serde_json::Value);

/// Renders records to `out` through one buffered writer.
pub struct Printer<W: Write> {
    out: io::BufWriter<W>,
    options: PrintOptions,
    shown: Shown,
    clock: Clock,
    /// Text of the event being rendered.
    line: String,
    /// A packet summary being rendered (its writer looks at what precedes it in the string).
    summary: String,
    /// JSON of the event being rendered.
    json: Vec<u8>,
    /// JSON journey being collected with `journeys`: its id (`None`: untracked), and its events
    /// so far in `journey_events`, separated by commas.
    journey: Option<Option<String>>,
    journey_events: Vec<u8>,
}

/// A text renderer for [`cli::Output`]: how stream-producing stages show their output on a
/// terminal (the default options of `trail-print`).
pub fn terminal(out: Box<dyn Write>) -> Box<dyn TextSink> {
    Box::new(Printer::new(out, PrintOptions::default()))
}

impl<W: Write> TextSink for Printer<W> {
    fn frame(&mut self, frame: &Frame, input: &str) -> anyhow::Result<()> {
        Printer::frame(self, frame, input)
    }
    fn header(&mut self, header: &Header) -> io::Result<()> {
        Printer::header(self, header)
    }
    fn event(&mut self, event: &Event) -> io::Result<()> {
        Printer::event(self, event)
    }
    fn lost(&mut self, lost: &Lost) -> io::Result<()> {
        Printer::lost(self, lost)
    }
    fn trailer(&mut self, trailer: &Trailer) -> io::Result<()> {
        Printer::trailer(self, trailer)
    }
    fn flush(&mut self) -> io::Result<()> {
        Printer::flush(self)
    }
    fn finish(&mut self) -> io::Result<()> {
        Printer::finish(self)
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, options: PrintOptions) -> Self {
        Printer {
            out: io::BufWriter::with_capacity(256 * 1024, out),
            shown: Shown::new(options.fields.as_ref()),
            options,
            clock: Clock::default(),
            line: String::with_capacity(1024),
            summary: String::with_capacity(256),
            json: Vec::with_capacity(4096),
            journey: None,
            journey_events: Vec::new(),
        }
    }

    fn shows(&self, section: &str) -> bool {
        self.options
            .fields
            .as_ref()
            .is_none_or(|f| f.contains(section))
    }

    /// Renders one frame as read from `input` (named in error messages).
    pub fn frame(&mut self, frame: &Frame, input: &str) -> anyhow::Result<()> {
        match frame.kind {
            FrameKind::Header => self.header(&codec::decode(frame, input)?)?,
            FrameKind::Event => {
                // The common case: an event in the canonical encoding, read in place.
                if let Some(view) = EventView::parse(&frame.payload) {
                    return Ok(self.event_view(&view, &[])?);
                }
                // Anything else (unknown sections, other encodings, corruption): serde decides.
                let event: Event = codec::decode(frame, input)?;
                let unknown = unknown_sections(frame, input, &event)?;
                self.event_view(&EventView::from(&event), &unknown)?
            }
            FrameKind::Lost => self.lost(&codec::decode(frame, input)?)?,
            FrameKind::Trailer => self.trailer(&codec::decode(frame, input)?)?,
            FrameKind::Other(_) => {}
        }
        Ok(())
    }

    pub fn header(&mut self, header: &Header) -> io::Result<()> {
        self.clock = header.clock.clone();
        if !self.options.headers {
            return Ok(());
        }
        match self.options.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, &serde_json::json!({ "header": header }))?;
                self.out.write_all(b"\n")
            }
            _ => writeln!(
                self.out,
                "# {} {} on {} ({}) probes {} snaplen {}",
                header.tool,
                header.tool_version,
                header.host,
                if header.kernel.is_empty() {
                    "-"
                } else {
                    &header.kernel
                },
                header.probes.join(","),
                header.snaplen
            ),
        }
    }

    pub fn event(&mut self, event: &Event) -> io::Result<()> {
        self.event_view(&EventView::from(event), &[])
    }

    /// Renders one event given as a view, with its unknown sections.
    pub fn event_view(&mut self, event: &EventView, unknown: &[Unknown]) -> io::Result<()> {
        match self.options.format {
            Format::Json => self.json_event(event, unknown),
            Format::Multi | Format::SingleLine => {
                let mut line = std::mem::take(&mut self.line);
                line.clear();
                self.text_event(event, unknown, &mut line);
                let result = self.out.write_all(line.as_bytes());
                self.line = line;
                result
            }
        }
    }

    pub fn lost(&mut self, lost: &Lost) -> io::Result<()> {
        match self.options.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, &serde_json::json!({ "lost": lost }))?;
                self.out.write_all(b"\n")
            }
            _ => writeln!(
                self.out,
                "!! lost {} events from {} between {} and {} ({})",
                lost.count,
                if lost.probe.is_empty() {
                    "unknown probe"
                } else {
                    &lost.probe
                },
                self.time(lost.first_ns),
                self.time(lost.last_ns),
                lost.reason
            ),
        }
    }

    pub fn trailer(&mut self, trailer: &Trailer) -> io::Result<()> {
        match self.options.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, &serde_json::json!({ "trailer": trailer }))?;
                self.out.write_all(b"\n")
            }
            _ if self.options.headers => writeln!(
                self.out,
                "# end: {} events, {} lost, {:.3} s",
                trailer.events,
                trailer.lost,
                trailer.duration_ns as f64 / 1e9
            ),
            _ => Ok(()),
        }
    }

    /// Writes out what is buffered. A journey being collected (`--journeys`) stays open: more of
    /// its events may follow once the input has more to read.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// At the end of the input: writes the journey being collected, then flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        self.end_journey()?;
        self.out.flush()
    }

    /// Formats a timestamp of the current section: monotonic `secs.nanos`, or UTC with `--utc`.
    fn time(&self, ns: u64) -> String {
        let mut out = String::with_capacity(32);
        self.push_time(&mut out, ns);
        out
    }

    /// [`Printer::time`] appended to `out`.
    fn push_time(&self, out: &mut String, ns: u64) {
        if self.options.utc || self.clock.source == "realtime" {
            let wall = i128::from(ns) + i128::from(self.clock.realtime_offset_ns);
            let secs = wall.div_euclid(1_000_000_000) as i64;
            let nanos = wall.rem_euclid(1_000_000_000) as u32;
            if let Some(time) = chrono::DateTime::from_timestamp(secs, nanos) {
                let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S%.9fZ"));
                return;
            }
        }
        push_int(out, ns / 1_000_000_000);
        out.push('.');
        push_padded(out, ns % 1_000_000_000, 9);
    }

    /// The text layout of an event: which section's piece goes where. The pieces are the
    /// sections' own (`model::sections::*::text*`). `EventView` is destructured without `..`: a
    /// new section does not compile until it has a place here.
    fn text_event(&mut self, event: &EventView, unknown: &[Unknown], line: &mut String) {
        let EventView {
            common: _,
            probe: _,
            packet,
            skb,
            dev,
            netns,
            drop: _,
            tracking,
            ct,
            nft,
            stack,
            retval,
        } = event;
        let child = tracking
            .as_ref()
            .and_then(|t| t.index)
            .is_some_and(|i| i > 0);
        let shown = self.shown;
        let details = Details {
            single: self.options.format == Format::SingleLine,
            // Detail lines: two spaces under a journey's first event, six under its children.
            indent: if child { "      " } else { "  " },
        };
        if child {
            line.push_str("  ↳ ");
        }
        self.first_line(event, line);
        if shown.packet {
            if let Some(packet) = packet {
                sections::packet::text(&mut self.summary, packet);
                let start = details.open(line);
                line.push_str(&self.summary);
                details.close(line, start);
            }
        }
        if shown.netns || shown.dev {
            // One line for both; left out when neither section is there.
            let mark = line.len();
            let start = details.open(line);
            if let Some(ns) = netns.as_ref().filter(|_| shown.netns) {
                sections::netns::text(line, ns);
            }
            if let Some(dev) = dev.as_ref().filter(|_| shown.dev) {
                if line.len() > start && !line.ends_with(' ') {
                    line.push(' ');
                }
                sections::dev::text(line, dev);
            }
            if line.len() == start {
                line.truncate(mark);
            } else {
                details.close(line, start);
            }
        }
        if let Some(skb) = skb.as_ref().filter(|_| shown.skb) {
            let start = details.open(line);
            sections::skb::text(line, skb);
            details.close(line, start);
        }
        if let Some(ct) = ct.as_ref().filter(|_| shown.ct) {
            let start = details.open(line);
            sections::conntrack::text(line, ct);
            details.close(line, start);
        }
        if let Some(nft) = nft.as_ref().filter(|_| shown.nft) {
            let start = details.open(line);
            sections::nft::text(line, nft);
            details.close(line, start);
        }
        if let Some(retval) = retval.filter(|_| shown.retval) {
            let start = details.open(line);
            sections::retval::text(line, retval);
            details.close(line, start);
        }
        for (name, value) in unknown {
            if self.shows(name) {
                let start = details.open(line);
                let _ = write!(line, "{name} {value}");
                details.close(line, start);
            }
        }
        if let Some(stack) = stack.as_ref().filter(|_| shown.stack) {
            for frame in &stack.frames {
                let start = details.open(line);
                sections::stack::frame_text(line, frame);
                details.close(line, start);
            }
        }
        line.push('\n');
    }

    /// An event's first line: time, task, probe, tracking id, skb address, journey, drop.
    fn first_line(&self, event: &EventView, line: &mut String) {
        let shown = self.shown;
        if let Some(common) = &event.common {
            if shown.time || shown.common {
                self.push_time(line, common.timestamp);
            }
            // Imported packets have no cpu or task: do not print made-up zeros.
            let imported = event
                .probe
                .as_ref()
                .is_some_and(|p| p.kind == ProbeKind::PcapImport);
            if shown.common && !imported {
                sections::common::text(line, common);
            }
        }
        if let Some(probe) = event.probe.as_ref().filter(|_| shown.probe) {
            sections::probe::text(line, probe);
        }
        let tracking = event.tracking.as_ref().filter(|_| shown.tracking);
        if let Some(tracking) = tracking {
            sections::tracking::text_id(line, tracking);
        }
        if let Some(skb) = &event.skb {
            sections::skb::text_addr(line, skb);
        }
        if let Some(tracking) = tracking {
            sections::tracking::text_journey(line, tracking);
        }
        if let Some(drop) = event.drop.as_ref().filter(|_| shown.drop) {
            sections::drop::text(line, drop);
        }
    }

    fn json_event(&mut self, event: &EventView, unknown: &[Unknown]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.json);
        buf.clear();
        let time = event.common.as_ref().map(|c| self.time(c.timestamp));
        json::event(
            &mut buf,
            event,
            unknown,
            time.as_deref(),
            &self.shown,
            |name| self.shows(name),
        );
        let result = if self.options.journeys {
            self.journey_event(event, &buf)
        } else {
            buf.push(b'\n');
            self.out.write_all(&buf)
        };
        self.json = buf;
        result
    }

    /// Adds an event's JSON to the journey being collected, after writing the previous journey
    /// if this event starts a new one.
    fn journey_event(&mut self, event: &EventView, json: &[u8]) -> io::Result<()> {
        let tracking = event.tracking.as_ref();
        if tracking.and_then(|t| t.index).unwrap_or(0) == 0 {
            self.end_journey()?;
            let id = tracking
                .filter(|t| (t.first_seen, t.orig_head) != (0, 0))
                .map(|t| t.parent.map_or_else(|| t.id(), str::to_string));
            self.journey = Some(id);
        }
        if self.journey.is_some() {
            if !self.journey_events.is_empty() {
                self.journey_events.push(b',');
            }
            self.journey_events.extend_from_slice(json);
        }
        Ok(())
    }

    /// Writes the journey being collected, if any.
    fn end_journey(&mut self) -> io::Result<()> {
        let Some(id) = self.journey.take() else {
            return Ok(());
        };
        // Keys in sorted order, as every JSON object here.
        self.out.write_all(b"{\"events\":[")?;
        self.out.write_all(&self.journey_events)?;
        self.journey_events.clear();
        self.out.write_all(b"],\"journey\":")?;
        let mut tail = Vec::with_capacity(64);
        match id {
            Some(id) => json::string(&mut tail, &id),
            None => tail.extend_from_slice(b"null"),
        }
        tail.extend_from_slice(b"}\n");
        self.out.write_all(&tail)
    }
}

/// The unknown sections of an event decoded by serde, as JSON values.
fn unknown_sections<'p>(
    frame: &'p Frame,
    input: &str,
    event: &Event,
) -> Result<Vec<Unknown<'p>>, crate::model::error::StreamError> {
    // Index the raw map only when it holds more entries than the typed view knows.
    let entries = rmp::decode::read_map_len(&mut &frame.payload[..]).unwrap_or(0);
    if entries as usize <= event.section_count() {
        return Ok(Vec::new());
    }
    let index = RawMap::parse(&frame.payload).map_err(|why| crate::model::error::StreamError {
        input: input.to_string(),
        offset: frame.offset,
        kind: crate::model::error::ErrorKind::Corrupt(why),
    })?;
    Ok(index
        .keys(&frame.payload)
        .filter(|key| !SECTIONS.contains(key))
        .filter_map(|key| {
            let bytes = index.get(&frame.payload, key)?;
            Some((
                key,
                rmp_serde::from_slice(bytes).unwrap_or(serde_json::Value::Null),
            ))
        })
        .collect())
}

/// Where the detail lines of an event go: each on its own indented line, or all after ` | ` on
/// the event's single line (without their leading spaces).
struct Details {
    single: bool,
    indent: &'static str,
}

impl Details {
    /// Starts a detail; returns where its text starts.
    fn open(&self, line: &mut String) -> usize {
        if self.single {
            line.push_str(" | ");
        } else {
            line.push('\n');
            line.push_str(self.indent);
        }
        line.len()
    }

    /// Ends the detail whose text started at `start`.
    fn close(&self, line: &mut String, start: usize) {
        if self.single {
            let text = &line[start..];
            let blank = text.len() - text.trim_start().len();
            if blank > 0 {
                line.replace_range(start..start + blank, "");
            }
        }
    }
}

/// Shape of one JSON line of `trail-print --format json`, for the published JSON Schema.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct JsonLine {
    #[serde(flatten)]
    event: Event,
    /// The event time as printed (monotonic `secs.nanos`, or UTC with `--utc`).
    time: Option<String>,
    /// The dissected packet (see `lib/model/dissect.rs`).
    parsed: Option<dissect::Dissection>,
}

/// JSON Schema of one event line of `trail-print --format json` (`schemas/event.schema.json`).
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(JsonLine)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "title".into(),
            "trail event (JSON lines form), stream format 1.x".into(),
        );
    }
    schema
}
