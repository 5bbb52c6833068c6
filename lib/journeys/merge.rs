//! What trail-sort and trail-track share: reading several inputs as one stream of records on one
//! clock, the one header that describes the merged result, and journey ids in their raw form.
//!
//! Contract (normative text in `schemas/journeys.md`):
//! - Output is one section. Its header is the first input section's header, byte for byte, with
//!   this stage appended to `pipeline` and, when more than one section was known when it was
//!   written, a `sources` list naming every such section (host, tool, kernel, clock, started_ns).
//! - The output clock is the first section's clock. Records of a section on another clock are
//!   rebased onto it (`t + offset_k − offset_first`), so wall-clock time is kept; this touches
//!   `common.timestamp`, `tracking.first_seen`, `tracking.parent` and a lost record's
//!   `first_ns`/`last_ns`, each spliced in place. Records of a section on the same clock are not
//!   touched at all.
//! - Events of a section whose host differs from the output header's host get `common.host`
//!   (unless they already carry one): an event without it comes from the header's host.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::cli;
use crate::model::codec::{self, Frame, FrameKind, RawMap};
use crate::model::error::{ErrorKind, StreamError, UsageError};
use crate::model::event::{Clock, Header, Stage};
use crate::model::msgpack::Cursor;

/// A journey id in raw form: (`first_seen`, `orig_head`), as in [`crate::model::event::Tracking`].
pub type JourneyId = (u64, u64);

/// Parses the text form of a journey id (`<first_seen hex>-<orig_head hex>`).
pub fn parse_id(text: &str) -> Option<JourneyId> {
    let (a, b) = text.split_once('-')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

pub fn format_id(id: JourneyId) -> String {
    format!("{:x}-{:x}", id.0, id.1)
}

/// One record read from the inputs, already on the output clock.
pub struct Record {
    pub kind: FrameKind,
    /// Timestamp on the output clock. Events: `common.timestamp` (an event without one takes
    /// the latest timestamp read from its input, keeping its place); lost records: `first_ns`;
    /// other records: the latest timestamp read from their input.
    pub ts: u64,
    /// Arrival order over all inputs: a tie-breaker that keeps equal timestamps stable.
    pub seq: u64,
    /// Host of the record's section, as an index into [`Inputs::hosts`].
    pub host: u32,
    /// The payload, rebased if its section needed it.
    pub payload: Vec<u8>,
    /// For events: the index of `payload`.
    pub map: Option<RawMap>,
    /// Where the record came from, for messages.
    pub input: usize,
    pub offset: u64,
}

/// Entry of the `sources` list of a merged header.
#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    pub host: String,
    pub tool: String,
    pub kernel: String,
    pub clock: Clock,
    pub started_ns: u64,
}

impl SourceInfo {
    fn of(header: &Header) -> SourceInfo {
        SourceInfo {
            host: header.host.clone(),
            tool: header.tool.clone(),
            kernel: header.kernel.clone(),
            clock: header.clock.clone(),
            started_ns: header.started_ns,
        }
    }
}

/// How a section's records map onto the output.
struct Section {
    /// Added to the section's timestamps to put them on the output clock.
    delta: i128,
    host: u32,
    /// `common.host` to set on its events (host differs from the output header's).
    set_host: Option<String>,
}

struct Input {
    reader: cli::InputReader,
    section: Section,
    /// Latest (largest) timestamp read from this input, on the output clock.
    latest: u64,
    done: bool,
}

/// All inputs of a stage, read as records on one clock (see the module header).
pub struct Inputs {
    inputs: Vec<Input>,
    first_payload: Vec<u8>,
    first_version: (u8, u8),
    base_offset: i64,
    base_host: String,
    hosts: Vec<String>,
    host_ids: HashMap<String, u32>,
    /// Headers of every section seen so far, in the order seen.
    sections: Vec<SourceInfo>,
    /// Headers known before any record was read (first section of each input).
    initial_sections: usize,
    seq: u64,
    frame: Frame,
    /// Timestamps clamped because rebasing took them below zero.
    pub clamped: u64,
}

impl Inputs {
    /// Opens every input (stdin for none or `-`) and reads its first header.
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Inputs> {
        let paths = if paths.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            paths.to_vec()
        };
        if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
            return Err(UsageError("stdin (-) given more than once".into()).into());
        }
        let mut this = Inputs {
            inputs: Vec::new(),
            first_payload: Vec::new(),
            first_version: (0, 0),
            base_offset: 0,
            base_host: String::new(),
            hosts: Vec::new(),
            host_ids: HashMap::new(),
            sections: Vec::new(),
            initial_sections: 0,
            seq: 0,
            frame: Frame::default(),
            clamped: 0,
        };
        for (i, path) in paths.iter().enumerate() {
            let mut reader = cli::open_reader(path)?;
            let mut frame = Frame::default();
            // A reader returns a header first or fails (empty input, not a stream).
            reader.next_frame(&mut frame)?;
            let header: Header = codec::decode(&frame, reader.name())?;
            if i == 0 {
                this.first_payload = frame.payload.clone();
                this.first_version = frame.version;
                this.base_offset = header.clock.realtime_offset_ns;
                this.base_host = header.host.clone();
            }
            let section = this.section(&header);
            this.inputs.push(Input {
                reader,
                section,
                latest: 0,
                done: false,
            });
        }
        this.initial_sections = this.sections.len();
        Ok(this)
    }

    fn section(&mut self, header: &Header) -> Section {
        self.sections.push(SourceInfo::of(header));
        let next = self.hosts.len() as u32;
        let host = *self.host_ids.entry(header.host.clone()).or_insert(next);
        if host == next {
            self.hosts.push(header.host.clone());
        }
        Section {
            delta: i128::from(header.clock.realtime_offset_ns) - i128::from(self.base_offset),
            host,
            set_host: (header.host != self.base_host).then(|| header.host.clone()),
        }
    }

    /// Host names, indexed by [`Record::host`].
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn input_name(&self, input: usize) -> &str {
        self.inputs[input].reader.name()
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// The output header: see the module header. `all_sections`: list every section seen so far
    /// (exact mode, after reading everything) rather than those known at open.
    pub fn header_frame(&self, stage: &Stage, all_sections: bool) -> anyhow::Result<Frame> {
        let mut payload = cli::append_stage(&self.first_payload, stage)?;
        let known = if all_sections {
            &self.sections[..]
        } else {
            &self.sections[..self.initial_sections]
        };
        if known.len() > 1 {
            let index = RawMap::parse(&payload).map_err(anyhow::Error::msg)?;
            let mut value = Vec::new();
            codec::encode(&known.to_vec(), &mut value);
            let mut out = Vec::with_capacity(payload.len() + value.len());
            index.with_entry(&payload, "sources", &value, &mut out);
            payload = out;
        }
        Ok(Frame {
            kind: FrameKind::Header,
            offset: 0,
            version: self.first_version,
            payload,
        })
    }

    /// The next record of input `i`, or `None` at its end.
    pub fn next_from(&mut self, i: usize) -> anyhow::Result<Option<Record>> {
        loop {
            let input = &mut self.inputs[i];
            if input.done {
                return Ok(None);
            }
            if !input.reader.next_frame(&mut self.frame)? {
                input.done = true;
                return Ok(None);
            }
            let offset = self.frame.offset;
            let kind = self.frame.kind;
            if kind == FrameKind::Header {
                let header: Header = codec::decode(&self.frame, self.inputs[i].reader.name())?;
                let section = self.section(&header);
                self.inputs[i].section = section;
                continue;
            }
            let payload = std::mem::take(&mut self.frame.payload);
            let record = self.adjust(i, kind, payload, offset)?;
            let input = &mut self.inputs[i];
            input.latest = input.latest.max(record.ts);
            self.seq += 1;
            return Ok(Some(record));
        }
    }

    /// Reads from the input that lags most (smallest latest timestamp), so that inputs advance
    /// together in time. Returns `None` when every input is exhausted.
    pub fn next_interleaved(&mut self) -> anyhow::Result<Option<Record>> {
        loop {
            let lagging = (0..self.inputs.len())
                .filter(|&i| !self.inputs[i].done)
                .min_by_key(|&i| (self.inputs[i].latest, i));
            let Some(i) = lagging else { return Ok(None) };
            if let Some(record) = self.next_from(i)? {
                return Ok(Some(record));
            }
        }
    }

    /// Whether the next [`Inputs::next_interleaved`] may block: the input it reads next has
    /// nothing buffered. Live stages flush their output then, so that a pipe from a capture
    /// shows what is ready (`trail-capture | trail-sort | trail-print`).
    pub fn next_may_block(&self) -> bool {
        (0..self.inputs.len())
            .filter(|&i| !self.inputs[i].done)
            .min_by_key(|&i| (self.inputs[i].latest, i))
            .is_some_and(|i| self.inputs[i].reader.input_drained())
    }

    /// Reads every input in turn, first to last.
    pub fn next_sequential(&mut self) -> anyhow::Result<Option<Record>> {
        for i in 0..self.inputs.len() {
            if let Some(record) = self.next_from(i)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// No input can deliver a record older than this any more, up to the input's own disorder:
    /// the smallest latest timestamp over inputs not yet exhausted (`u64::MAX` when all are).
    pub fn watermark(&self) -> u64 {
        self.inputs
            .iter()
            .filter(|input| !input.done)
            .map(|input| input.latest)
            .min()
            .unwrap_or(u64::MAX)
    }

    fn corrupt(&self, i: usize, offset: u64, why: String) -> anyhow::Error {
        StreamError {
            input: self.inputs[i].reader.name().to_string(),
            offset,
            kind: ErrorKind::Corrupt(why),
        }
        .into()
    }

    fn adjust(
        &mut self,
        i: usize,
        kind: FrameKind,
        payload: Vec<u8>,
        offset: u64,
    ) -> anyhow::Result<Record> {
        let input = &self.inputs[i];
        let delta = input.section.delta;
        let host = input.section.host;
        let latest = input.latest;
        let mut record = Record {
            kind,
            ts: latest,
            seq: self.seq,
            host,
            payload,
            map: None,
            input: i,
            offset,
        };
        match kind {
            FrameKind::Event => {
                let map =
                    RawMap::parse(&record.payload).map_err(|why| self.corrupt(i, offset, why))?;
                let set_host = self.inputs[i].section.set_host.clone();
                let (payload, map) = if delta != 0 || set_host.is_some() {
                    let mut clamped = false;
                    let payload = rebase_event(
                        &record.payload,
                        &map,
                        delta,
                        set_host.as_deref(),
                        &mut clamped,
                    )
                    .map_err(|why| self.corrupt(i, offset, why))?;
                    self.clamped += u64::from(clamped);
                    let map =
                        RawMap::parse(&payload).map_err(|why| self.corrupt(i, offset, why))?;
                    (payload, map)
                } else {
                    (std::mem::take(&mut record.payload), map)
                };
                if let Some(ts) =
                    event_timestamp(&payload, &map).map_err(|why| self.corrupt(i, offset, why))?
                {
                    record.ts = ts;
                }
                record.payload = payload;
                record.map = Some(map);
            }
            FrameKind::Lost => {
                let map =
                    RawMap::parse(&record.payload).map_err(|why| self.corrupt(i, offset, why))?;
                if delta != 0 {
                    let mut clamped = false;
                    let mut out = Vec::new();
                    splice_map(
                        &record.payload,
                        &map,
                        &mut out,
                        |key, value| match key {
                            "first_ns" | "last_ns" => {
                                Some(encode_u64(shift(read_u64(value)?, delta, &mut clamped)))
                            }
                            _ => None,
                        },
                        &[],
                    );
                    record.payload = out;
                }
                let map =
                    RawMap::parse(&record.payload).map_err(|why| self.corrupt(i, offset, why))?;
                if let Some(first) = map.get(&record.payload, "first_ns").and_then(read_u64) {
                    record.ts = first;
                }
            }
            _ => {}
        }
        Ok(record)
    }
}

/// Moves a timestamp by `delta`, clamping to the u64 range (and noting when it had to).
fn shift(ts: u64, delta: i128, clamped: &mut bool) -> u64 {
    let moved = i128::from(ts) + delta;
    if moved < 0 || moved > i128::from(u64::MAX) {
        *clamped = true;
    }
    moved.clamp(0, i128::from(u64::MAX)) as u64
}

/// Reads an encoded MessagePack unsigned integer (any width or sign marker that fits).
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Cursor::new(bytes).uint().ok()
}

pub fn encode_u64(value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_uint(&mut out, value);
    out
}

pub fn encode_str(value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    let _ = rmp::encode::write_str(&mut out, value);
    out
}

/// Re-encodes the map `payload` (indexed by `map`) into `out`: `replace` may give a new value for
/// an existing key; `add` lists keys appended when absent. Every other byte is copied.
pub fn splice_map(
    payload: &[u8],
    map: &RawMap,
    out: &mut Vec<u8>,
    mut replace: impl FnMut(&str, &[u8]) -> Option<Vec<u8>>,
    add: &[(&str, Vec<u8>)],
) {
    let add: Vec<(&str, &[u8])> = add.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    map.splice(
        payload,
        out,
        |key, value, out| match replace(key, value) {
            Some(new) => {
                out.extend_from_slice(&new);
                true
            }
            None => false,
        },
        &add,
    );
}

/// `common.timestamp` of an event, if it has one.
pub fn event_timestamp(payload: &[u8], map: &RawMap) -> Result<Option<u64>, String> {
    let Some(common) = map.get(payload, "common") else {
        return Ok(None);
    };
    let timestamp =
        codec::map_value(common, "timestamp").map_err(|why| format!("section common: {why}"))?;
    match timestamp {
        None => Ok(None),
        Some(value) => read_u64(value)
            .map(Some)
            .ok_or_else(|| "common.timestamp is not an unsigned integer".to_string()),
    }
}

/// Rebases an event's clock-bearing fields by `delta` and sets `common.host` if asked.
fn rebase_event(
    payload: &[u8],
    map: &RawMap,
    delta: i128,
    host: Option<&str>,
    clamped: &mut bool,
) -> Result<Vec<u8>, String> {
    let mut error = None;
    let mut out = Vec::with_capacity(payload.len() + 32);
    splice_map(
        payload,
        map,
        &mut out,
        |key, value| {
            let result = match key {
                "common" => rebase_common(value, delta, host, clamped),
                "tracking" if delta != 0 => rebase_tracking(value, delta, clamped),
                _ => return None,
            };
            match result {
                Ok(bytes) => Some(bytes),
                Err(why) => {
                    error = Some(why);
                    None
                }
            }
        },
        &[],
    );
    match error {
        Some(why) => Err(why),
        None => Ok(out),
    }
}

fn rebase_common(
    value: &[u8],
    delta: i128,
    host: Option<&str>,
    clamped: &mut bool,
) -> Result<Vec<u8>, String> {
    let map = RawMap::parse(value).map_err(|why| format!("section common: {why}"))?;
    let add = match host {
        Some(host) => vec![("host", encode_str(host))],
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(value.len() + 32);
    splice_map(
        value,
        &map,
        &mut out,
        |key, value| match key {
            "timestamp" if delta != 0 => Some(encode_u64(shift(read_u64(value)?, delta, clamped))),
            _ => None,
        },
        &add,
    );
    Ok(out)
}

fn rebase_tracking(value: &[u8], delta: i128, clamped: &mut bool) -> Result<Vec<u8>, String> {
    let map = RawMap::parse(value).map_err(|why| format!("section tracking: {why}"))?;
    let mut out = Vec::with_capacity(value.len() + 16);
    splice_map(
        value,
        &map,
        &mut out,
        |key, value| match key {
            "first_seen" => {
                let ts = read_u64(value)?;
                // 0 means "no id" for fingerprint-less records: keep it meaningless.
                (ts != 0).then(|| encode_u64(shift(ts, delta, clamped)))
            }
            "parent" => {
                let text: String = rmp_serde::from_slice(value).ok()?;
                let (first, head) = parse_id(&text)?;
                Some(encode_str(&format_id((shift(first, delta, clamped), head))))
            }
            _ => None,
        },
        &[],
    );
    Ok(out)
}

/// Warns on stderr, one line, as every stage does for counted conditions.
pub fn warn(tool: &str, message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{tool}: warning: {message}");
}

/// Context for errors writing the output.
pub fn write_context<T>(result: std::io::Result<T>) -> anyhow::Result<T> {
    result.context("cannot write output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(
            parse_id(&format_id((0x1234, 0xffff8880))),
            Some((0x1234, 0xffff8880))
        );
        assert_eq!(parse_id("zz-1"), None);
    }
}
