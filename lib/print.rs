//! Rendering a stream for people (text) and for jq (JSON lines).
//!
//! Text follows Retis's layout so its users feel at home: a first line with timestamp, cpu,
//! command, pid/tid, probe, tracking id, skb address, journey index and drop reason, then
//! indented lines for the packet, netns/device, skb metadata, conntrack, nft and stack. Events of
//! a sorted journey (those with `tracking.index` > 0) render under their first event with `↳`.
//!
//! With [`PrintOptions::journeys`], JSON output is one line per journey of a sorted stream
//! (`{"journey": ID, "events": [...]}`, events as in per-event JSON): an event with
//! `tracking.index` 0 or none starts a line, one with index > 0 joins the current one, and the
//! line is written when the next starts or on [`Printer::flush`]. Untracked events make their
//! own line with `"journey": null`.
//!
//! Contract: the printer never fails on content it does not know. Unknown sections are shown
//! generically (text) or kept as JSON values (JSON); unknown record kinds are skipped.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use crate::codec::{self, Frame, FrameKind, RawMap};
use crate::dissect;
use crate::event::{Clock, Conntrack, CtTuple, Event, Header, Lost, ProbeKind, Trailer, SECTIONS};

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

/// Command-line arguments of `trail-print`.
#[derive(Debug, clap::Args)]
pub struct PrintArgs {
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
pub fn run(args: &PrintArgs) -> anyhow::Result<()> {
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
    crate::cli::Inputs::new(&args.inputs).for_each_frame_live(
        |frame, input| printer.borrow_mut().frame(frame, input),
        // A live pipe (`trail-capture | trail-print`) shows events as they arrive.
        || Ok(printer.borrow_mut().flush()?),
    )?;
    let mut printer = printer.into_inner();
    Ok(printer.flush()?)
}

/// Renders records to `out` through one buffered writer.
pub struct Printer<W: Write> {
    out: io::BufWriter<W>,
    options: PrintOptions,
    clock: Clock,
    line: String,
    /// JSON journey being collected with `journeys`: (journey id, events).
    journey: Option<(serde_json::Value, Vec<serde_json::Value>)>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, options: PrintOptions) -> Self {
        Printer {
            out: io::BufWriter::with_capacity(256 * 1024, out),
            options,
            clock: Clock::default(),
            line: String::with_capacity(1024),
            journey: None,
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
                let event: Event = codec::decode(frame, input)?;
                // Index the raw map only when it holds more entries than the typed view knows:
                // most events have no unknown section, and indexing costs a second pass.
                let entries = rmp::decode::read_map_len(&mut &frame.payload[..]).unwrap_or(0);
                let unknown: Vec<(&str, serde_json::Value)> = if entries as usize
                    > event.section_count()
                {
                    let index =
                        RawMap::parse(&frame.payload).map_err(|why| crate::error::StreamError {
                            input: input.to_string(),
                            offset: frame.offset,
                            kind: crate::error::ErrorKind::Corrupt(why),
                        })?;
                    index
                        .keys(&frame.payload)
                        .filter(|key| !SECTIONS.contains(key))
                        .filter_map(|key| {
                            let bytes = index.get(&frame.payload, key)?;
                            Some((
                                key,
                                rmp_serde::from_slice(bytes).unwrap_or(serde_json::Value::Null),
                            ))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                self.event_with(&event, &unknown)?
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
        self.event_with(event, &[])
    }

    fn event_with(
        &mut self,
        event: &Event,
        unknown: &[(&str, serde_json::Value)],
    ) -> io::Result<()> {
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
        if self.options.utc || self.clock.source == "realtime" {
            let wall = i128::from(ns) + i128::from(self.clock.realtime_offset_ns);
            let secs = wall.div_euclid(1_000_000_000) as i64;
            let nanos = wall.rem_euclid(1_000_000_000) as u32;
            if let Some(time) = chrono::DateTime::from_timestamp(secs, nanos) {
                return time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
            }
        }
        format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
    }

    fn text_event(&self, event: &Event, unknown: &[(&str, serde_json::Value)], line: &mut String) {
        let child = event
            .tracking
            .as_ref()
            .and_then(|t| t.index)
            .is_some_and(|i| i > 0);
        let single = self.options.format == Format::SingleLine;
        // Detail lines: two spaces under a journey's first event, six under its children.
        let indent = if child { "      " } else { "  " };
        if child {
            line.push_str("  ↳ ");
        }
        self.first_line(event, line);
        let mut details: Vec<String> = Vec::new();
        if self.shows("packet") {
            if let Some(packet) = &event.packet {
                details.push(dissect::dissect(packet).summary());
            }
        }
        if self.shows("netns") || self.shows("dev") {
            let mut where_ = String::new();
            if let Some(ns) = event.netns.as_ref().filter(|_| self.shows("netns")) {
                let _ = write!(where_, "ns {}", ns.inum);
                if let Some(cookie) = ns.cookie {
                    let _ = write!(where_, " (cookie {cookie:#x})");
                }
            }
            if let Some(dev) = event.dev.as_ref().filter(|_| self.shows("dev")) {
                sep(&mut where_);
                let _ = write!(where_, "if {}", dev.ifindex);
                if !dev.name.is_empty() {
                    let _ = write!(where_, " ({})", dev.name);
                }
                if let Some(rx) = dev.rx_ifindex {
                    let _ = write!(where_, " rxif {rx}");
                }
            }
            if !where_.is_empty() {
                details.push(where_);
            }
        }
        if let Some(skb) = event.skb.as_ref().filter(|_| self.shows("skb")) {
            let mut s = format!(
                "skb len {} data_len {} proto {:#06x} pkt_type {} mark {:#x} hash {:#x} prio {} csum {}",
                skb.len,
                skb.data_len,
                skb.protocol,
                pkt_type_name(skb.pkt_type),
                skb.mark,
                skb.hash,
                skb.priority,
                csum_name(skb.ip_summed)
            );
            let _ = write!(s, " users {} dataref {}", skb.users, skb.dataref);
            if skb.cloned {
                s.push_str(" cloned");
            }
            if skb.gso_size != 0 || skb.gso_segs != 0 {
                let _ = write!(
                    s,
                    " gso size {} segs {} type {:#x}",
                    skb.gso_size, skb.gso_segs, skb.gso_type
                );
            }
            if let Some(tci) = skb.vlan_tci {
                let _ = write!(s, " vlan {} prio {}", tci & 0x0fff, tci >> 13);
            }
            details.push(s);
        }
        if let Some(ct) = event.ct.as_ref().filter(|_| self.shows("ct")) {
            details.push(ct_line(ct));
        }
        if let Some(nft) = event.nft.as_ref().filter(|_| self.shows("nft")) {
            let mut s = format!("nft table {} chain {}", nft.table, nft.chain);
            if let Some(handle) = nft.rule_handle {
                let _ = write!(s, " handle {handle}");
            }
            let _ = write!(s, " {}", nft.verdict);
            if let Some(chain) = &nft.verdict_chain {
                let _ = write!(s, " {chain}");
            }
            if nft.policy {
                s.push_str(" (policy)");
            }
            details.push(s);
        }
        if let Some(retval) = event.retval.filter(|_| self.shows("retval")) {
            details.push(format!("retval {retval} ({retval:#x})"));
        }
        for (name, value) in unknown {
            if self.shows(name) {
                details.push(format!("{name} {value}"));
            }
        }
        if let Some(stack) = event.stack.as_ref().filter(|_| self.shows("stack")) {
            for frame in &stack.frames {
                details.push(match &frame.symbol {
                    Some(symbol) => format!("  {symbol}"),
                    None => format!("  {:#x}", frame.addr),
                });
            }
        }
        for detail in details {
            if single {
                line.push_str(" | ");
                line.push_str(detail.trim_start());
            } else {
                line.push('\n');
                line.push_str(indent);
                line.push_str(&detail);
            }
        }
        line.push('\n');
    }

    fn first_line(&self, event: &Event, line: &mut String) {
        if let Some(common) = &event.common {
            if self.shows("time") || self.shows("common") {
                line.push_str(&self.time(common.timestamp));
            }
            // Imported packets have no cpu or task: do not print made-up zeros.
            let imported = event
                .probe
                .as_ref()
                .is_some_and(|p| p.kind == ProbeKind::PcapImport);
            if self.shows("common") && !imported {
                let _ = write!(line, " ({})", common.cpu);
                if !common.comm.is_empty() {
                    let _ = write!(line, " [{}]", common.comm);
                }
                if common.pid != 0 || common.tid != 0 {
                    if common.pid == common.tid {
                        let _ = write!(line, " {}", common.pid);
                    } else {
                        let _ = write!(line, " {}/{}", common.pid, common.tid);
                    }
                }
                if let Some(host) = &common.host {
                    let _ = write!(line, " @{host}");
                }
            }
        }
        if let Some(probe) = event.probe.as_ref().filter(|_| self.shows("probe")) {
            sep(line);
            let _ = write!(line, "[{}] {}", probe.kind.marker(), probe.name);
        }
        if let Some(tracking) = event.tracking.as_ref().filter(|_| self.shows("tracking")) {
            sep(line);
            let _ = write!(line, "#{}", tracking.id());
        }
        if let Some(skb) = &event.skb {
            if skb.addr != 0 {
                sep(line);
                let _ = write!(line, "(skb {:x})", skb.addr);
            }
        }
        if let Some(tracking) = event.tracking.as_ref().filter(|_| self.shows("tracking")) {
            if let Some(index) = tracking.index {
                let _ = write!(line, " n {index}");
            }
            if let (Some(parent), Some(link)) = (&tracking.parent, &tracking.link) {
                let _ = write!(line, " ({link} of #{parent})");
            }
        }
        if let Some(drop) = event.drop.as_ref().filter(|_| self.shows("drop")) {
            sep(line);
            let _ = write!(line, "drop (reason {})", drop.reason);
        }
    }

    fn json_event(
        &mut self,
        event: &Event,
        unknown: &[(&str, serde_json::Value)],
    ) -> io::Result<()> {
        let mut object = match serde_json::to_value(event) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for (name, value) in unknown {
            object.insert((*name).to_string(), value.clone());
        }
        if let Some(common) = &event.common {
            object.insert(
                "time".into(),
                serde_json::Value::String(self.time(common.timestamp)),
            );
        }
        if let Some(packet) = &event.packet {
            if let Ok(parsed) = serde_json::to_value(dissect::dissect(packet)) {
                object.insert("parsed".into(), parsed);
            }
        }
        if let Some(fields) = &self.options.fields {
            object.retain(|key, _| {
                fields.contains(key) || (key == "parsed" && fields.contains("packet"))
            });
        }
        if !self.options.journeys {
            return write_json_line(&mut self.out, &object);
        }
        let tracking = event.tracking.as_ref();
        if tracking.and_then(|t| t.index).unwrap_or(0) == 0 {
            self.end_journey()?;
            let id = tracking
                .filter(|t| (t.first_seen, t.orig_head) != (0, 0))
                .map(|t| serde_json::Value::String(t.parent.clone().unwrap_or_else(|| t.id())));
            self.journey = Some((id.unwrap_or(serde_json::Value::Null), Vec::new()));
        }
        if let Some((_, events)) = self.journey.as_mut() {
            events.push(serde_json::Value::Object(object));
        }
        Ok(())
    }

    /// Writes the journey being collected, if any.
    fn end_journey(&mut self) -> io::Result<()> {
        match self.journey.take() {
            Some((id, events)) => write_json_line(
                &mut self.out,
                &serde_json::json!({ "journey": id, "events": events }),
            ),
            None => Ok(()),
        }
    }
}

fn write_json_line<W: Write>(out: &mut W, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
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

fn tuple_text(t: &CtTuple) -> String {
    let mut s = String::new();
    match (t.sport, t.dport) {
        (Some(sport), Some(dport)) => {
            let _ = write!(s, "{}.{} > {}.{}", t.src, sport, t.dst, dport);
        }
        _ => {
            let _ = write!(s, "{} > {}", t.src, t.dst);
        }
    }
    if let Some(kind) = t.icmp_type {
        let _ = write!(s, " type {} code {}", kind, t.icmp_code.unwrap_or(0));
    }
    if let Some(id) = t.icmp_id {
        let _ = write!(s, " id {id}");
    }
    s
}

fn ct_line(ct: &Conntrack) -> String {
    let proto = match ct.orig.proto {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        58 => "icmp6".to_string(),
        132 => "sctp".to_string(),
        other => format!("proto {other}"),
    };
    let mut s = format!(
        "ct_state {} status {:#x} {} orig [{}] reply [{}] zone {} mark {}",
        ct.state.to_uppercase(),
        ct.status,
        proto,
        tuple_text(&ct.orig),
        tuple_text(&ct.reply),
        ct.zone,
        ct.mark
    );
    if let Some(state) = &ct.proto_state {
        let _ = write!(s, " {proto} state {state}");
    }
    s
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
