//! The event model: what one stream record means, as Rust types.
//!
//! Every record of a trail stream is a MessagePack map with string keys (see
//! `schemas/stream.md`). These types are the typed view of those maps. Contract:
//! - Every section of an [`Event`] is optional; a producer fills in only what it collected.
//! - Every field of a section defaults when absent (`#[serde(default)]`), so a reader accepts
//!   records written by an older producer; unknown keys are ignored by the typed view, so it also
//!   accepts records from a newer one. Stages that forward records use the raw frame bytes (the
//!   payload of a codec `Frame`), never a re-encoding of these types, so nothing they do not
//!   understand is lost.
//! - The same types serialize to JSON for `trail-print --json`; [`Bytes`] renders as hex there
//!   and as MessagePack `bin` in the stream. The JSON Schema in `schemas/event.schema.json` is
//!   generated from these types (`make schemas`) and a test keeps it current.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Major version of the stream format this build reads and writes. A reader refuses any other
/// major version; see `schemas/stream.md` for the compatibility rules.
pub const FORMAT_MAJOR: u8 = 1;
/// Minor version: additions that older readers can ignore.
pub const FORMAT_MINOR: u8 = 0;

/// Byte string: MessagePack `bin` in the stream, lowercase hex in JSON.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", hex(&self.0))
    }
}

/// Lowercase hex of `bytes`, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not `write!` per byte: JSON output of packet bytes spent a third of its time
    // in the formatting machinery (bench/results.md).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string (msgpack bin) or a hex string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                unhex(v)
                    .map(Bytes)
                    .ok_or_else(|| E::custom("invalid hex string"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(65536));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bytes".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9a-f]{2})*$",
            "description": "Bytes as lowercase hex (MessagePack bin in the binary stream)."
        })
    }
}

/// First record of every stream section: where the events come from and how to read their clock.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Header {
    /// Stream format version `[major, minor]`, repeated from the magic for readers of the map alone.
    pub version: (u8, u8),
    /// Tool that produced the events (e.g. `trail-capture`).
    pub tool: String,
    pub tool_version: String,
    /// Host name of the machine whose kernel was traced (or that imported the pcap).
    pub host: String,
    /// Kernel release (`uname -r`) of that machine; empty for imports.
    pub kernel: String,
    pub clock: Clock,
    /// The producer's command line, as argv.
    pub command: Vec<String>,
    /// Probes requested, in the producer's syntax (e.g. `tp:net:netif_receive_skb`).
    pub probes: Vec<String>,
    /// Maximum packet bytes kept per event (0: not applicable or unlimited).
    pub snaplen: u32,
    /// Wall-clock time the producer started, ns since the Unix epoch (0 when unknown).
    pub started_ns: u64,
    /// Every stage the section went through, producer first. Each stage appends itself.
    pub pipeline: Vec<Stage>,
}

/// How an event's `common.timestamp` maps to wall-clock time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Clock {
    /// `monotonic` (CLOCK_MONOTONIC, what `bpf_ktime_get_ns` returns) or `realtime` (ns since
    /// the Unix epoch, e.g. pcap timestamps).
    pub source: String,
    /// Add to a timestamp to get ns since the Unix epoch (0 for `realtime`).
    pub realtime_offset_ns: i64,
}

/// One stage of a pipeline, for provenance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Stage {
    pub tool: String,
    pub version: String,
    pub args: Vec<String>,
}

/// `lost` record: the producer knows that `count` events from `probe` were not delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Lost {
    /// The probe whose events were lost, in the producer's syntax (empty: unknown probe).
    pub probe: String,
    pub count: u64,
    /// The losses happened between these two timestamps (same clock as events).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Why: `ringbuf-full`, `filter-state-full`, `truncated-input`, ...
    pub reason: String,
}

/// `trailer` record: totals, written by a producer that ends cleanly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Trailer {
    pub events: u64,
    pub lost: u64,
    pub duration_ns: u64,
    /// Per probe: hits seen in the kernel, events delivered, events lost.
    pub probes: BTreeMap<String, ProbeTotals>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ProbeTotals {
    pub hits: u64,
    pub events: u64,
    pub lost: u64,
}

/// One event: a map of named sections, all optional. Unknown sections are ignored here and kept
/// by pass-through stages (see the module header).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common: Option<Common>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<Packet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skb: Option<Skb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<Dev>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<Drop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct: Option<Conntrack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft: Option<Nft>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
    /// Return value of the probed function (kretprobe, fexit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retval: Option<i64>,
}

impl Event {
    /// How many sections this event has (its map's entry count when it holds no unknown ones).
    pub fn section_count(&self) -> usize {
        [
            self.common.is_some(),
            self.probe.is_some(),
            self.packet.is_some(),
            self.skb.is_some(),
            self.dev.is_some(),
            self.netns.is_some(),
            self.drop.is_some(),
            self.tracking.is_some(),
            self.ct.is_some(),
            self.nft.is_some(),
            self.stack.is_some(),
            self.retval.is_some(),
        ]
        .iter()
        .filter(|&&present| present)
        .count()
    }
}

/// Section names of [`Event`], in stream order. Stages that index raw events use these.
pub const SECTIONS: &[&str] = &[
    "common", "probe", "packet", "skb", "dev", "netns", "drop", "tracking", "ct", "nft", "stack",
    "retval",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Common {
    /// ns on the section's clock (see [`Clock`]).
    pub timestamp: u64,
    pub cpu: u32,
    /// Process (thread group) id and thread id current when the probe fired.
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Host the event came from, set only by stages that merge sections of several hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Kind of probe that produced an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    #[default]
    Tracepoint,
    Kprobe,
    Kretprobe,
    Fentry,
    Fexit,
    PcapImport,
    /// A kind this build does not know (written by a newer producer).
    #[serde(other)]
    Unknown,
}

impl ProbeKind {
    /// Short marker used in probe specs and text output (`tp`, `k`, ...).
    pub fn marker(self) -> &'static str {
        match self {
            ProbeKind::Tracepoint => "tp",
            ProbeKind::Kprobe => "k",
            ProbeKind::Kretprobe => "kr",
            ProbeKind::Fentry => "f",
            ProbeKind::Fexit => "fx",
            ProbeKind::PcapImport => "pcap",
            ProbeKind::Unknown => "?",
        }
    }

    /// The name serde gives the kind in streams and JSON (`kebab-case`), for writers that do
    /// not go through serde.
    pub fn serde_name(self) -> &'static str {
        match self {
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Kretprobe => "kretprobe",
            ProbeKind::Fentry => "fentry",
            ProbeKind::Fexit => "fexit",
            ProbeKind::PcapImport => "pcap-import",
            ProbeKind::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Probe {
    pub kind: ProbeKind,
    /// Tracepoint `group:name`, function name, or for imports the interface name.
    pub name: String,
}

impl Probe {
    /// The probe as a user writes it: `tp:net:netif_receive_skb`, `k:ip_rcv`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.kind.marker(), self.name)
    }
}

/// Where the captured bytes start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// At the link-layer header (for `linktype` 1: an Ethernet header).
    #[default]
    L2,
    /// At the network header (IPv4 or IPv6; the MAC header was not valid yet).
    L3,
}

/// pcap link types used by trail (see <https://www.tcpdump.org/linktypes.html>).
pub mod linktype {
    pub const ETHERNET: u32 = 1;
    /// Raw IPv4 or IPv6, version taken from the first nibble.
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Packet {
    /// Captured bytes (at most the snap length).
    pub data: Bytes,
    /// Original length of the packet (the whole skb from `layer` on), ≥ `data.len()`.
    pub len: u32,
    pub layer: Layer,
    /// pcap link type of `data` (1 Ethernet for L2 captures, 101 raw IP for L3 captures).
    pub linktype: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Skb {
    /// Address of the `struct sk_buff` (tells clones apart).
    pub addr: u64,
    /// `skb->head`: address of the data buffer.
    pub head: u64,
    pub len: u32,
    pub data_len: u32,
    pub mark: u32,
    pub hash: u32,
    /// `skb->protocol`, host byte order (e.g. 0x0800).
    pub protocol: u16,
    pub pkt_type: u8,
    pub priority: u32,
    /// `skb->ip_summed`: 0 none, 1 unnecessary, 2 complete, 3 partial.
    pub ip_summed: u8,
    pub cloned: bool,
    /// `skb->users` and `skb_shinfo(skb)->dataref`.
    pub users: u32,
    pub dataref: u32,
    pub gso_size: u16,
    pub gso_segs: u16,
    pub gso_type: u32,
    /// Offloaded (hardware-accelerated) VLAN tag, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_tci: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_proto: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Dev {
    pub ifindex: u32,
    pub name: String,
    /// `skb->skb_iif`: the interface the packet arrived on, when different from `ifindex`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_ifindex: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Netns {
    /// Inode number of the namespace (`ls -l /proc/PID/ns/net`).
    pub inum: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Drop {
    /// Reason name without the `SKB_DROP_REASON_` prefix, e.g. `NETFILTER_DROP`.
    pub reason: String,
    /// Raw value of `enum skb_drop_reason` on the traced kernel.
    pub code: u32,
    /// Subsystem from the reason's high 16 bits (`CORE`, `MAC80211_UNUSABLE`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
}

/// Identity of the packet across events (see `schemas/tracking.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Tracking {
    /// Timestamp of the packet's first sighting (same clock as `common.timestamp`).
    pub first_seen: u64,
    /// `skb->head` at the first sighting (0 for fingerprint-based ids).
    pub orig_head: u64,
    /// How the id was made: `kernel`, `head` (trail-track from addresses), `fingerprint`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Position of the event within its journey, set by trail-sort (0 first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Journey this one continues (its id in text form), set by trail-track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Why it continues `parent`: `clone`, `copy`, `nat`, `encap`, `decap`, `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Tracking {
    /// Text form of the id: `<first_seen hex>-<orig_head hex>`, as filters and JSON show it.
    pub fn id(&self) -> String {
        format!("{:x}-{:x}", self.first_seen, self.orig_head)
    }
}

/// A connection tuple as conntrack stores it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CtTuple {
    /// Addresses in text form (`192.0.2.1`, `2001:db8::1`).
    pub src: String,
    pub dst: String,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP).
    pub proto: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Conntrack {
    /// `ctinfo` as a word: `new`, `established`, `related`, `reply` (established reply),
    /// `related-reply`, `untracked`.
    pub state: String,
    /// `ct->status` bits (IPS_*).
    pub status: u32,
    pub zone: u16,
    pub mark: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Bytes>,
    pub orig: CtTuple,
    pub reply: CtTuple,
    /// Protocol state, e.g. the TCP state `SYN_SENT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto_state: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Nft {
    pub table: String,
    pub chain: String,
    pub table_handle: u64,
    pub chain_handle: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_handle: Option<u64>,
    /// `accept`, `drop`, `continue`, `jump`, `goto`, `return`, `queue`, `stolen`, ...
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_chain: Option<String>,
    /// Whether the verdict came from the chain's policy rather than a rule.
    pub policy: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Stack {
    /// Innermost frame first.
    pub frames: Vec<StackFrame>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StackFrame {
    pub addr: u64,
    /// `symbol+0xoff`, when the address could be symbolized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::ProbeKind;

    #[test]
    fn serde_names_are_what_serde_writes() {
        for kind in [
            ProbeKind::Tracepoint,
            ProbeKind::Kprobe,
            ProbeKind::Kretprobe,
            ProbeKind::Fentry,
            ProbeKind::Fexit,
            ProbeKind::PcapImport,
        ] {
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.serde_name()));
        }
    }
}
