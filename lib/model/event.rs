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
//!
//! The sections are defined one file each in [`crate::model::sections`] (re-exported here under
//! their usual names); [`Event`] and [`SECTIONS`] are expanded from its list of sections. This
//! module keeps what is not a section: byte strings, and the header, lost and trailer records.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::sections::with_sections;

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

pub use crate::model::sections::common::Common;
pub use crate::model::sections::conntrack::{Conntrack, CtTuple};
pub use crate::model::sections::dev::Dev;
pub use crate::model::sections::drop::Drop;
pub use crate::model::sections::netns::Netns;
pub use crate::model::sections::nft::Nft;
pub use crate::model::sections::packet::{linktype, Layer, Packet};
pub use crate::model::sections::probe::{Probe, ProbeKind};
pub use crate::model::sections::skb::Skb;
pub use crate::model::sections::stack::{Stack, StackFrame};
pub use crate::model::sections::tracking::Tracking;

/// `Event`, [`SECTIONS`] and [`Event::section_count`] from the list of sections.
macro_rules! define_event {
    ($($(#[$doc:meta])* $field:ident in $module:ident: $Owned:ident, $View:ident;)*) => {
        /// One event: a map of named sections, all optional. Unknown sections are ignored here and kept
        /// by pass-through stages (see the module header).
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(default)]
        pub struct Event {
            $(
                $(#[$doc])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$crate::model::sections::$module::$Owned>,
            )*
        }

        impl Event {
            /// How many sections this event has (its map's entry count when it holds no unknown ones).
            pub fn section_count(&self) -> usize {
                [$(self.$field.is_some()),*]
                    .iter()
                    .filter(|&&present| present)
                    .count()
            }
        }

        /// Section names of [`Event`], in stream order. Stages that index raw events use these.
        pub const SECTIONS: &[&str] = &[$(stringify!($field)),*];
    };
}
with_sections!(define_event);
