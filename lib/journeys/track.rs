//! trail-track: gives every event a journey id and links journeys that continue one another.
//!
//! Contract (normative text, rules and failure modes in `schemas/journeys.md`):
//! - Inputs merge onto one clock ([`crate::journeys::merge`]); records are reordered by timestamp within
//!   `--window` and written in that order, every byte kept except the spliced `tracking` section.
//! - An event that carries a tracking id keeps it. Otherwise its id comes from its skb (the
//!   address and `head`, with `kfree_skb`/`consume_skb` ending a buffer's life, and a change of
//!   the packet's identity fingerprint revealing a reused buffer), or, with no skb data, from
//!   its packet fingerprint ([`crate::model::fingerprint`]). Events with neither pass unchanged.
//! - A journey that starts while a journey with the same packet identity is recent is linked to
//!   it: `tracking.parent` = the root of the chain it continues (so trail-sort groups chains
//!   without state), `tracking.link` = why: `clone` (same buffer, new skb), `copy` (same packet,
//!   new buffer), `nat` (same packet, other addresses/ports), `encap`/`decap` (one tunnel level
//!   more/less), `host` (same packet seen on another host within `--host-window`).
//! - Memory is bounded: a journey idle for `--idle` of event time is forgotten, at most
//!   `--max-journeys` are kept (the least recently seen are forgotten first, counted, and
//!   reported on stderr), and the reorder buffer holds `--window` of events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;

use crate::cli::parse::parse_duration;
use crate::cli::{self, Output};
use crate::journeys::merge::{self, format_id, Inputs, JourneyId, Record};
use crate::model::codec::{self, Frame, FrameKind, RawMap};
use crate::model::error::{ErrorKind, StreamError};
use crate::model::event::Layer;
use crate::model::fingerprint::{fingerprint_parts, Fingerprint};
use crate::model::msgpack::{Cursor, Problem};
use crate::print;

/// Add or complete each event's `tracking` section: ids from skb addresses or packet
/// fingerprints, and links (clone, copy, nat, encap, decap, host) between journeys. Several
/// inputs (e.g. one per host) merge in wall-clock order.
#[derive(Clone, Debug, clap::Parser)]
#[command(version)]
pub struct Args {
    /// Input streams (default: stdin; `-` is stdin).
    pub inputs: Vec<PathBuf>,
    /// Write the stream to FILE (created only on success).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Reorder events by timestamp within this much event time before tracking them.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_WINDOW, value_name = "DURATION")]
    pub window: u64,
    /// Forget a journey after this much event time without events.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_IDLE, value_name = "DURATION")]
    pub idle: u64,
    /// Keep at most this many journeys; beyond, the least recently seen are forgotten (counted).
    #[arg(long, default_value_t = DEFAULT_MAX_JOURNEYS, value_name = "N")]
    pub max_journeys: usize,
    /// Link a journey to a same-host one (copy, nat, encap, decap) only this close in time.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_LINK_WINDOW, value_name = "DURATION")]
    pub link_window: u64,
    /// Link the same packet seen on two hosts only this close in wall-clock time (covers clock
    /// error plus transit time).
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_HOST_WINDOW, value_name = "DURATION")]
    pub host_window: u64,
}

pub const DEFAULT_WINDOW: &str = "100ms";
pub const DEFAULT_IDLE: &str = "10s";
pub const DEFAULT_MAX_JOURNEYS: usize = 1_000_000;
pub const DEFAULT_LINK_WINDOW: &str = "100ms";
pub const DEFAULT_HOST_WINDOW: &str = "1s";
/// Journeys remembered per packet identity (the most recent ones).
const PER_IDENTITY: usize = 8;

/// Where an id came from (`tracking.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Given by the input (capture's kernel-side id, or an earlier trail-track).
    Given,
    Head,
    Fingerprint,
}

struct Journey {
    /// First journey of the chain this one belongs to (itself when not linked).
    root: JourneyId,
    link: Option<&'static str>,
    source: Source,
    last_ts: u64,
    host: u32,
    fp: Option<Fingerprint>,
}

/// What trail-track knows about one event.
struct Observation {
    ts: u64,
    host: u32,
    /// (skb address, head)
    skb: Option<(u64, u64)>,
    fp: Option<Fingerprint>,
    given: Option<JourneyId>,
    end_of_life: bool,
}

/// Journey state and its indexes (see the module header for the bounds).
#[derive(Default)]
pub struct Tracker {
    journeys: HashMap<JourneyId, Journey>,
    /// (host, skb address) → (journey, head)
    by_addr: HashMap<(u32, u64), (JourneyId, u64)>,
    /// (host, head) → (journey that owns the buffer, live skbs using it)
    by_head: HashMap<(u32, u64), (JourneyId, u32)>,
    /// packet identity → recent journeys, oldest first
    by_identity: HashMap<u64, Vec<JourneyId>>,
    idle: u64,
    max_journeys: usize,
    link_window: u64,
    host_window: u64,
    last_sweep: u64,
    /// Journeys forgotten early because of `--max-journeys`.
    pub evicted: u64,
}

impl Tracker {
    pub fn new(idle: u64, max_journeys: usize, link_window: u64, host_window: u64) -> Tracker {
        Tracker {
            idle,
            max_journeys: max_journeys.max(1),
            link_window,
            host_window,
            ..Tracker::default()
        }
    }

    /// Whether the buffer of `id` now carries another packet (same head, other identity).
    fn reused(&self, id: JourneyId, fp: Option<Fingerprint>) -> bool {
        match (self.journeys.get(&id).and_then(|j| j.fp), fp) {
            (Some(old), Some(new)) => old.identity != new.identity,
            _ => false,
        }
    }

    /// The journey an observation continues or is linked to: (candidate, continue?).
    fn related(&self, obs: &Observation) -> Option<JourneyId> {
        let fp = obs.fp?;
        let candidates = self.by_identity.get(&fp.identity)?;
        let recent = |same_host: bool| {
            candidates
                .iter()
                .filter_map(|id| Some((*id, self.journeys.get(id)?)))
                .filter(|(_, j)| (j.host == obs.host) == same_host)
                .filter(|(_, j)| {
                    let window = if same_host {
                        self.link_window
                    } else {
                        self.host_window
                    };
                    obs.ts.abs_diff(j.last_ts) <= window
                })
                .max_by_key(|(_, j)| j.last_ts)
                .map(|(id, _)| id)
        };
        recent(true).or_else(|| recent(false))
    }

    fn link_kind(&self, to: &Journey, obs: &Observation) -> &'static str {
        let (Some(old), Some(new)) = (to.fp, obs.fp) else {
            return "copy";
        };
        if to.host != obs.host {
            "host"
        } else if new.depth > old.depth {
            "encap"
        } else if new.depth < old.depth {
            "decap"
        } else if new.exact != old.exact {
            "nat"
        } else {
            "copy"
        }
    }

    /// A free id near `(ts, head)`: two journeys may start at the same time on the same head.
    fn fresh_id(&self, ts: u64, head: u64) -> JourneyId {
        let mut id = (ts, head);
        while self.journeys.contains_key(&id) {
            id.0 = id.0.wrapping_add(1);
        }
        id
    }

    /// Creates journey `id`, linked to `parent` (or to a related journey found by fingerprint).
    fn start(
        &mut self,
        id: JourneyId,
        source: Source,
        obs: &Observation,
        parent: Option<(JourneyId, &'static str)>,
    ) {
        let parent = parent.or_else(|| {
            let related = self.related(obs)?;
            let journey = self.journeys.get(&related)?;
            Some((related, self.link_kind(journey, obs)))
        });
        let (root, link) = match parent {
            Some((parent, link)) => (
                self.journeys.get(&parent).map_or(parent, |j| j.root),
                Some(link),
            ),
            None => (id, None),
        };
        self.journeys.insert(
            id,
            Journey {
                root,
                link,
                source,
                last_ts: obs.ts,
                host: obs.host,
                fp: None,
            },
        );
        if self.journeys.len() > self.max_journeys {
            self.evict(id);
        }
    }

    /// Forgets the least recently seen eighth of the journeys (never `keep`).
    fn evict(&mut self, keep: JourneyId) {
        let count = (self.journeys.len() / 8).max(1);
        let mut ages: Vec<u64> = self.journeys.values().map(|j| j.last_ts).collect();
        let (_, &mut cutoff, _) = ages.select_nth_unstable(count - 1);
        let before = self.journeys.len();
        let mut left = count;
        self.journeys.retain(|id, j| {
            if left > 0 && j.last_ts <= cutoff && *id != keep {
                left -= 1;
                return false;
            }
            true
        });
        self.evicted += (before - self.journeys.len()) as u64;
        self.prune_indexes();
    }

    fn prune_indexes(&mut self) {
        let journeys = &self.journeys;
        self.by_addr.retain(|_, (id, _)| journeys.contains_key(id));
        self.by_head.retain(|_, (id, _)| journeys.contains_key(id));
        self.by_identity.retain(|_, ids| {
            ids.retain(|id| journeys.contains_key(id));
            !ids.is_empty()
        });
    }

    /// Forgets journeys idle for longer than `--idle` at time `now`.
    fn sweep(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) < self.idle / 4 + 1 {
            return;
        }
        self.last_sweep = now;
        let idle = self.idle;
        self.journeys
            .retain(|_, j| j.last_ts.saturating_add(idle) >= now);
        self.prune_indexes();
    }

    fn release_addr(&mut self, host: u32, addr: u64) {
        if let Some((_, head)) = self.by_addr.remove(&(host, addr)) {
            if let Some(entry) = self.by_head.get_mut(&(host, head)) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    self.by_head.remove(&(host, head));
                }
            }
        }
    }

    /// The journey of one observation (see the module header), or `None` when untrackable.
    fn assign(&mut self, obs: &Observation) -> Option<JourneyId> {
        self.sweep(obs.ts);
        if let Some(id) = obs.given {
            if !self.journeys.contains_key(&id) {
                self.start(id, Source::Given, obs, None);
            }
            return Some(id);
        }
        if let Some((addr, head)) = obs.skb.filter(|&(_, head)| head != 0) {
            let host = obs.host;
            if let Some(&(id, old_head)) = self.by_addr.get(&(host, addr)) {
                if self.journeys.contains_key(&id) && !self.reused(id, obs.fp) {
                    if old_head == head {
                        return Some(id);
                    }
                    // Same skb, new buffer (copy on write, headroom expansion).
                    self.release_addr(host, addr);
                    let new = self.fresh_id(obs.ts, head);
                    self.start(new, Source::Head, obs, Some((id, "copy")));
                    self.by_addr.insert((host, addr), (new, head));
                    self.by_head.entry((host, head)).or_insert((new, 0)).1 += 1;
                    return Some(new);
                }
                self.release_addr(host, addr);
            }
            if let Some(&(id, _)) = self.by_head.get(&(host, head)) {
                if self.journeys.contains_key(&id) && !self.reused(id, obs.fp) {
                    let new = self.fresh_id(obs.ts, head);
                    self.start(new, Source::Head, obs, Some((id, "clone")));
                    self.by_addr.insert((host, addr), (new, head));
                    if let Some(entry) = self.by_head.get_mut(&(host, head)) {
                        entry.1 += 1;
                    }
                    return Some(new);
                }
                // A buffer reused by another packet without a visible free.
                self.by_head.remove(&(host, head));
            }
            let new = self.fresh_id(obs.ts, head);
            self.start(new, Source::Head, obs, None);
            self.by_addr.insert((host, addr), (new, head));
            self.by_head.insert((host, head), (new, 1));
            return Some(new);
        }
        let fp = obs.fp?;
        if let Some(id) = self.related(obs) {
            let journey = &self.journeys[&id];
            if journey.host == obs.host
                && journey.source == Source::Fingerprint
                && journey.fp.is_some_and(|old| old.exact == fp.exact)
            {
                return Some(id);
            }
        }
        let new = self.fresh_id(obs.ts, 0);
        self.start(new, Source::Fingerprint, obs, None);
        Some(new)
    }

    /// Assigns the journey and updates its state; returns what to write into `tracking`.
    fn observe(&mut self, obs: &Observation) -> Option<(JourneyId, &Journey)> {
        let id = self.assign(obs)?;
        // The journey may have just been evicted by a sweep inside `assign` only if it was not
        // touched; `start` never evicts the journey it creates.
        let journey = self.journeys.get_mut(&id)?;
        journey.last_ts = journey.last_ts.max(obs.ts);
        if let Some(fp) = obs.fp {
            journey.fp = Some(fp);
            let ids = self.by_identity.entry(fp.identity).or_default();
            if ids.last() != Some(&id) {
                ids.retain(|other| *other != id);
                ids.push(id);
                if ids.len() > PER_IDENTITY {
                    ids.remove(0);
                }
            }
        }
        if obs.end_of_life {
            if let Some((addr, _)) = obs.skb {
                self.release_addr(obs.host, addr);
            }
        }
        self.journeys.get(&id).map(|j| (id, j))
    }

    pub fn live(&self) -> usize {
        self.journeys.len()
    }
}

/// Orders records by (timestamp, arrival) in the reorder heap.
struct Pending(Record);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.0.ts, self.0.seq) == (other.0.ts, other.0.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.ts, self.0.seq).cmp(&(other.0.ts, other.0.seq))
    }
}

pub fn run(options: Args) -> anyhow::Result<()> {
    let mut inputs = Inputs::open(&options.inputs)?;
    let mut output = Output::create(options.output.as_deref(), print::terminal)?;
    let header = inputs.header_frame(&cli::this_stage("trail-track"), false)?;
    output.forward(&header, "trail-track")?;
    let mut state = Stage {
        tracker: Tracker::new(
            options.idle,
            options.max_journeys,
            options.link_window,
            options.host_window,
        ),
        hosts: HashMap::new(),
        version: header.version,
        scratch: Vec::new(),
        tracking: Vec::new(),
        released: 0,
        late: 0,
    };
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    loop {
        if inputs.next_may_block() {
            output.flush()?;
        }
        let Some(record) = inputs.next_interleaved()? else {
            break;
        };
        heap.push(Reverse(Pending(record)));
        let watermark = inputs.watermark();
        while heap
            .peek()
            .is_some_and(|Reverse(p)| p.0.ts.saturating_add(options.window) < watermark)
        {
            if let Some(Reverse(Pending(record))) = heap.pop() {
                state.record(&inputs, record, &mut output)?;
            }
        }
    }
    while let Some(Reverse(Pending(record))) = heap.pop() {
        state.record(&inputs, record, &mut output)?;
    }
    if state.late > 0 {
        merge::warn(
            "trail-track",
            format_args!(
                "{} events arrived later than --window allows and were tracked out of order",
                state.late
            ),
        );
    }
    if state.tracker.evicted > 0 {
        merge::warn(
            "trail-track",
            format_args!(
                "{} journeys forgotten before --idle because more than --max-journeys ({}) were live; \
                 their later events start new journeys",
                state.tracker.evicted, options.max_journeys
            ),
        );
    }
    if inputs.clamped > 0 {
        merge::warn(
            "trail-track",
            format_args!(
                "{} timestamps fell outside the range of the output clock and were clamped",
                inputs.clamped
            ),
        );
    }
    output.finish()
}

struct Stage {
    tracker: Tracker,
    hosts: HashMap<String, u32>,
    version: (u8, u8),
    scratch: Vec<u8>,
    /// The `tracking` value being built (reused: no allocation per event).
    tracking: Vec<u8>,
    released: u64,
    late: u64,
}

impl Stage {
    fn host_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.hosts.get(name) {
            return id;
        }
        let next = self.hosts.len() as u32;
        self.hosts.insert(name.to_string(), next);
        next
    }

    fn record(
        &mut self,
        inputs: &Inputs,
        record: Record,
        output: &mut Output,
    ) -> anyhow::Result<()> {
        if record.ts < self.released {
            self.late += 1;
        }
        self.released = self.released.max(record.ts);
        let mut payload = record.payload;
        if let (FrameKind::Event, Some(map)) = (record.kind, &record.map) {
            let corrupt = |why: String| StreamError {
                input: inputs.input_name(record.input).to_string(),
                offset: record.offset,
                kind: ErrorKind::Corrupt(why),
            };
            let host = match event_host(&payload, map) {
                Some(name) => self.host_id(name),
                None => self.host_id(&inputs.hosts()[record.host as usize]),
            };
            let mut tracking = std::mem::take(&mut self.tracking);
            let changed = self
                .track(&payload, map, record.ts, host, &mut tracking)
                .map_err(corrupt)?;
            if changed {
                map.with_entry(&payload, "tracking", &tracking, &mut self.scratch);
                std::mem::swap(&mut payload, &mut self.scratch);
            }
            self.tracking = tracking;
        }
        let frame = Frame {
            kind: record.kind,
            offset: record.offset,
            version: self.version,
            payload,
        };
        output.forward(&frame, "trail-track")
    }

    /// Writes the new `tracking` value for an event into `out`; false: leave the event as it is.
    fn track(
        &mut self,
        payload: &[u8],
        map: &RawMap,
        ts: u64,
        host: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        // The few fields tracking needs, read in place: decoding whole sections would cost more
        // than everything else trail-track does.
        let tracking = map.get(payload, "tracking");
        let given = match tracking {
            Some(t) => Some((
                uint(t, "tracking", "first_seen")?,
                uint(t, "tracking", "orig_head")?,
            ))
            .filter(|&id| id != (0, 0)),
            None => None,
        };
        let already_linked = match tracking {
            Some(t) => field(t, "tracking", "parent")?.is_some(),
            None => false,
        };
        let skb = match map.get(payload, "skb") {
            Some(s) => Some((uint(s, "skb", "addr")?, uint(s, "skb", "head")?)),
            None => None,
        };
        let fp = match map.get(payload, "packet") {
            Some(p) => packet_fingerprint(p)?,
            None => None,
        };
        let end_of_life = match map.get(payload, "probe") {
            Some(p) => text(p, "probe", "name")?.is_some_and(crate::model::probe::is_end_of_life),
            None => false,
        };
        let obs = Observation {
            ts,
            host,
            skb,
            fp,
            given,
            end_of_life,
        };
        let Some((id, journey)) = self.tracker.observe(&obs) else {
            return Ok(false);
        };
        // The entries to set, their values encoded one after the other in `values`. Writing
        // into it cannot fail: the longest set takes 9 + 9 + 12 + 34 + 6 bytes.
        let mut values = [0u8; 128];
        let mut cursor = &mut values[..];
        let mut set: [(&str, usize); 5] = [("", 0); 5];
        let mut count = 0;
        let mut entry = |key: &'static str, cursor: &mut &mut [u8]| {
            set[count] = (key, cursor.len());
            count += 1;
        };
        if given.is_none() {
            let source = match journey.source {
                Source::Head => "head",
                Source::Fingerprint => "fingerprint",
                Source::Given => "kernel",
            };
            let _ = rmp::encode::write_uint(&mut cursor, id.0);
            entry("first_seen", &mut cursor);
            let _ = rmp::encode::write_uint(&mut cursor, id.1);
            entry("orig_head", &mut cursor);
            let _ = rmp::encode::write_str(&mut cursor, source);
            entry("source", &mut cursor);
        }
        if let Some(link) = journey.link.filter(|_| !already_linked) {
            let _ = rmp::encode::write_str(&mut cursor, &format_id(journey.root));
            entry("parent", &mut cursor);
            let _ = rmp::encode::write_str(&mut cursor, link);
            entry("link", &mut cursor);
        }
        if count == 0 {
            return Ok(false);
        }
        // (key, encoded value) of every entry to set.
        let mut entries: [(&str, &[u8]); 5] = [("", &[]); 5];
        let mut start = 0;
        for (slot, &(key, left)) in entries.iter_mut().zip(&set[..count]) {
            let end = values.len() - left;
            *slot = (key, &values[start..end]);
            start = end;
        }
        let entries = &entries[..count];
        match map.get(payload, "tracking") {
            Some(existing) => {
                let existing_map =
                    RawMap::parse(existing).map_err(|why| format!("section tracking: {why}"))?;
                existing_map.splice(
                    existing,
                    out,
                    |key, _, out| match entries.iter().find(|(k, _)| *k == key) {
                        Some((_, value)) => {
                            out.extend_from_slice(value);
                            true
                        }
                        None => false,
                    },
                    entries,
                );
            }
            None => {
                out.clear();
                let _ = rmp::encode::write_map_len(out, entries.len() as u32);
                for (key, value) in entries {
                    let _ = rmp::encode::write_str(out, key);
                    out.extend_from_slice(value);
                }
            }
        }
        Ok(true)
    }
}

/// The encoded value of `key` in the section `section` (named `name` for errors).
fn field<'p>(section: &'p [u8], name: &str, key: &str) -> Result<Option<&'p [u8]>, String> {
    codec::map_value(section, key).map_err(|why| format!("section {name}: {why}"))
}

/// An unsigned integer field; absent is 0, as in the section's type.
fn uint(section: &[u8], name: &str, key: &str) -> Result<u64, String> {
    match field(section, name, key)? {
        None => Ok(0),
        Some(value) => {
            merge::read_u64(value).ok_or_else(|| format!("{name}.{key} is not an unsigned integer"))
        }
    }
}

/// A string field.
fn text<'p>(section: &'p [u8], name: &str, key: &str) -> Result<Option<&'p str>, String> {
    match field(section, name, key)? {
        None => Ok(None),
        Some(value) => Cursor::new(value)
            .str()
            .map(Some)
            .map_err(|_| format!("{name}.{key} is not a string")),
    }
}

/// The fingerprint of a `packet` section (see [`crate::model::event::Packet`]), its bytes borrowed.
fn packet_fingerprint(section: &[u8]) -> Result<Option<Fingerprint>, String> {
    let data = match field(section, "packet", "data")? {
        None => &[][..],
        Some(value) => Cursor::new(value).bin().map_err(|e| match e.problem {
            Problem::PastEnd => "packet.data runs past its section".to_string(),
            _ => "packet.data is not a byte string".to_string(),
        })?,
    };
    let layer = match text(section, "packet", "layer")? {
        None | Some("l2") => Layer::L2,
        Some("l3") => Layer::L3,
        Some(other) => return Err(format!("packet.layer: unknown layer {other:?}")),
    };
    let len = uint(section, "packet", "len")?;
    let linktype = uint(section, "packet", "linktype")?;
    Ok(fingerprint_parts(
        data,
        u32::try_from(len).unwrap_or(u32::MAX),
        layer,
        u32::try_from(linktype).map_err(|_| "packet.linktype is out of range".to_string())?,
    ))
}

/// `common.host` of an event (set by an earlier merge), if any.
fn event_host<'p>(payload: &'p [u8], map: &RawMap) -> Option<&'p str> {
    let common = map.get(payload, "common")?;
    text(common, "common", "host").ok().flatten()
}
