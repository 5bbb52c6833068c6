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
use crate::model::view::{ConntrackView, CtTupleView, EventView};

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
    Ok(printer.flush()?)
}

/// Which of the known keys `--fields` lets through (all without it): looked up once, not per
/// event. JSON keeps `parsed` with `packet`.
#[derive(Clone, Copy, Debug)]
struct Shown {
    time: bool,
    common: bool,
    probe: bool,
    packet: bool,
    parsed: bool,
    skb: bool,
    dev: bool,
    netns: bool,
    drop: bool,
    tracking: bool,
    ct: bool,
    nft: bool,
    stack: bool,
    retval: bool,
}

impl Shown {
    fn new(fields: Option<&BTreeSet<String>>) -> Shown {
        let has = |name: &str| fields.is_none_or(|f| f.contains(name));
        Shown {
            time: has("time"),
            common: has("common"),
            probe: has("probe"),
            packet: has("packet"),
            parsed: has("parsed") || has("packet"),
            skb: has("skb"),
            dev: has("dev"),
            netns: has("netns"),
            drop: has("drop"),
            tracking: has("tracking"),
            ct: has("ct"),
            nft: has("nft"),
            stack: has("stack"),
            retval: has("retval"),
        }
    }
}

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

    pub fn flush(&mut self) -> io::Result<()> {
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

    fn text_event(&mut self, event: &EventView, unknown: &[Unknown], line: &mut String) {
        let child = event
            .tracking
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
            if let Some(packet) = &event.packet {
                self.summary.clear();
                dissect::dissect_bytes(packet.data, packet.len, packet.layer, packet.linktype)
                    .write_summary(&mut self.summary);
                let start = details.open(line);
                line.push_str(&self.summary);
                details.close(line, start);
            }
        }
        if shown.netns || shown.dev {
            // One line for both; left out when neither section is there.
            let mark = line.len();
            let start = details.open(line);
            if let Some(ns) = event.netns.as_ref().filter(|_| shown.netns) {
                line.push_str("ns ");
                push_int(line, ns.inum);
                if let Some(cookie) = ns.cookie {
                    line.push_str(" (cookie ");
                    push_hex(line, cookie, 1, true);
                    line.push(')');
                }
            }
            if let Some(dev) = event.dev.as_ref().filter(|_| shown.dev) {
                if line.len() > start && !line.ends_with(' ') {
                    line.push(' ');
                }
                line.push_str("if ");
                push_int(line, dev.ifindex);
                if !dev.name.is_empty() {
                    line.push_str(" (");
                    line.push_str(dev.name);
                    line.push(')');
                }
                if let Some(rx) = dev.rx_ifindex {
                    line.push_str(" rxif ");
                    push_int(line, rx);
                }
            }
            if line.len() == start {
                line.truncate(mark);
            } else {
                details.close(line, start);
            }
        }
        if let Some(skb) = event.skb.as_ref().filter(|_| shown.skb) {
            let start = details.open(line);
            line.push_str("skb len ");
            push_int(line, skb.len);
            line.push_str(" data_len ");
            push_int(line, skb.data_len);
            line.push_str(" proto ");
            push_hex(line, u64::from(skb.protocol), 4, true);
            line.push_str(" pkt_type ");
            line.push_str(pkt_type_name(skb.pkt_type));
            line.push_str(" mark ");
            push_hex(line, u64::from(skb.mark), 1, true);
            line.push_str(" hash ");
            push_hex(line, u64::from(skb.hash), 1, true);
            line.push_str(" prio ");
            push_int(line, skb.priority);
            line.push_str(" csum ");
            line.push_str(csum_name(skb.ip_summed));
            line.push_str(" users ");
            push_int(line, skb.users);
            line.push_str(" dataref ");
            push_int(line, skb.dataref);
            if skb.cloned {
                line.push_str(" cloned");
            }
            if skb.gso_size != 0 || skb.gso_segs != 0 {
                line.push_str(" gso size ");
                push_int(line, skb.gso_size);
                line.push_str(" segs ");
                push_int(line, skb.gso_segs);
                line.push_str(" type ");
                push_hex(line, u64::from(skb.gso_type), 1, true);
            }
            if let Some(tci) = skb.vlan_tci {
                line.push_str(" vlan ");
                push_int(line, tci & 0x0fff);
                line.push_str(" prio ");
                push_int(line, tci >> 13);
            }
            details.close(line, start);
        }
        if let Some(ct) = event.ct.as_ref().filter(|_| shown.ct) {
            let start = details.open(line);
            ct_line(line, ct);
            details.close(line, start);
        }
        if let Some(nft) = event.nft.as_ref().filter(|_| shown.nft) {
            let start = details.open(line);
            line.push_str("nft table ");
            line.push_str(nft.table);
            line.push_str(" chain ");
            line.push_str(nft.chain);
            if let Some(handle) = nft.rule_handle {
                line.push_str(" handle ");
                push_int(line, handle);
            }
            line.push(' ');
            line.push_str(nft.verdict);
            if let Some(chain) = nft.verdict_chain {
                line.push(' ');
                line.push_str(chain);
            }
            if nft.policy {
                line.push_str(" (policy)");
            }
            details.close(line, start);
        }
        if let Some(retval) = event.retval.filter(|_| shown.retval) {
            let start = details.open(line);
            line.push_str("retval ");
            push_int(line, retval);
            line.push_str(" (");
            push_hex(line, retval as u64, 1, true);
            line.push(')');
            details.close(line, start);
        }
        for (name, value) in unknown {
            if self.shows(name) {
                let start = details.open(line);
                let _ = write!(line, "{name} {value}");
                details.close(line, start);
            }
        }
        if let Some(stack) = event.stack.as_ref().filter(|_| shown.stack) {
            for frame in &stack.frames {
                let start = details.open(line);
                line.push_str("  ");
                match frame.symbol {
                    Some(symbol) => line.push_str(symbol),
                    None => push_hex(line, frame.addr, 1, true),
                }
                details.close(line, start);
            }
        }
        line.push('\n');
    }

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
                line.push_str(" (");
                push_int(line, common.cpu);
                line.push(')');
                if !common.comm.is_empty() {
                    line.push_str(" [");
                    line.push_str(common.comm);
                    line.push(']');
                }
                if common.pid != 0 || common.tid != 0 {
                    line.push(' ');
                    push_int(line, common.pid);
                    if common.pid != common.tid {
                        line.push('/');
                        push_int(line, common.tid);
                    }
                }
                if let Some(host) = common.host {
                    line.push_str(" @");
                    line.push_str(host);
                }
            }
        }
        if let Some(probe) = event.probe.as_ref().filter(|_| shown.probe) {
            sep(line);
            line.push('[');
            line.push_str(probe.kind.marker());
            line.push_str("] ");
            line.push_str(probe.name);
        }
        let tracking = event.tracking.as_ref().filter(|_| shown.tracking);
        if let Some(tracking) = tracking {
            sep(line);
            line.push('#');
            push_hex(line, tracking.first_seen, 1, false);
            line.push('-');
            push_hex(line, tracking.orig_head, 1, false);
        }
        if let Some(skb) = &event.skb {
            if skb.addr != 0 {
                sep(line);
                line.push_str("(skb ");
                push_hex(line, skb.addr, 1, false);
                line.push(')');
            }
        }
        if let Some(tracking) = tracking {
            if let Some(index) = tracking.index {
                line.push_str(" n ");
                push_int(line, index);
            }
            if let (Some(parent), Some(link)) = (tracking.parent, tracking.link) {
                line.push_str(" (");
                line.push_str(link);
                line.push_str(" of #");
                line.push_str(parent);
                line.push(')');
            }
        }
        if let Some(drop) = event.drop.as_ref().filter(|_| shown.drop) {
            sep(line);
            line.push_str("drop (reason ");
            line.push_str(drop.reason);
            line.push(')');
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

/// Appends an integer in decimal.
fn push_int(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Appends `value` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Appends `value` in lowercase hex of at least `min_digits` digits (zero-padded), after `0x`
/// with `prefix`: `{:x}`, `{:#x}` and `{:#06x}` without `core::fmt`.
fn push_hex(out: &mut String, value: u64, min_digits: usize, prefix: bool) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut start = buf.len();
    let mut rest = value;
    while rest != 0 || buf.len() - start < min_digits.max(1) {
        start -= 1;
        buf[start] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
    if prefix {
        out.push_str("0x");
    }
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
}

fn sep(line: &mut String) {
    if !line.is_empty() && !line.ends_with(' ') {
        line.push(' ');
    }
}

fn pkt_type_name(pkt_type: u8) -> &'static str {
    match pkt_type {
        0 => "host",
        1 => "broadcast",
        2 => "multicast",
        3 => "otherhost",
        4 => "outgoing",
        5 => "loopback",
        _ => "other",
    }
}

fn csum_name(ip_summed: u8) -> &'static str {
    match ip_summed {
        0 => "none",
        1 => "unnecessary",
        2 => "complete",
        3 => "partial",
        _ => "?",
    }
}

fn tuple_text(line: &mut String, t: &CtTupleView) {
    line.push_str(t.src);
    if let (Some(sport), Some(dport)) = (t.sport, t.dport) {
        line.push('.');
        push_int(line, sport);
        line.push_str(" > ");
        line.push_str(t.dst);
        line.push('.');
        push_int(line, dport);
    } else {
        line.push_str(" > ");
        line.push_str(t.dst);
    }
    if let Some(kind) = t.icmp_type {
        line.push_str(" type ");
        push_int(line, kind);
        line.push_str(" code ");
        push_int(line, t.icmp_code.unwrap_or(0));
    }
    if let Some(id) = t.icmp_id {
        line.push_str(" id ");
        push_int(line, id);
    }
}

fn push_proto(line: &mut String, proto: u8) {
    match proto {
        1 => line.push_str("icmp"),
        6 => line.push_str("tcp"),
        17 => line.push_str("udp"),
        58 => line.push_str("icmp6"),
        132 => line.push_str("sctp"),
        other => {
            line.push_str("proto ");
            push_int(line, other);
        }
    }
}

fn ct_line(line: &mut String, ct: &ConntrackView) {
    line.push_str("ct_state ");
    if ct.state.is_ascii() {
        line.extend(ct.state.bytes().map(|b| char::from(b.to_ascii_uppercase())));
    } else {
        line.push_str(&ct.state.to_uppercase());
    }
    line.push_str(" status ");
    push_hex(line, u64::from(ct.status), 1, true);
    line.push(' ');
    push_proto(line, ct.orig.proto);
    line.push_str(" orig [");
    tuple_text(line, &ct.orig);
    line.push_str("] reply [");
    tuple_text(line, &ct.reply);
    line.push_str("] zone ");
    push_int(line, ct.zone);
    line.push_str(" mark ");
    push_int(line, ct.mark);
    if let Some(state) = ct.proto_state {
        line.push(' ');
        push_proto(line, ct.orig.proto);
        line.push_str(" state ");
        line.push_str(state);
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
    /// The dissected packet (see `lib/dissect.rs`).
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
