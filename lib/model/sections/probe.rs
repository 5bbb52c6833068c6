//! `probe`: which probe produced the event.

use std::sync::Arc;

use arrow::array::StringDictionaryBuilder;
use arrow::datatypes::Int32Type;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, dict, dict_type, Column};
use super::text::sep;
use crate::model::view::{walk_map, Cursor};

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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeView<'a> {
    pub kind: ProbeKind,
    pub name: &'a str,
}

pub fn view(p: &Probe) -> ProbeView<'_> {
    let Probe { kind, name } = p;
    ProbeView { kind: *kind, name }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<ProbeView<'a>> {
    let mut v = ProbeView::default();
    walk_map!(c, {
        b"kind" => v.kind = match c.str()? {
            "tracepoint" => ProbeKind::Tracepoint,
            "kprobe" => ProbeKind::Kprobe,
            "kretprobe" => ProbeKind::Kretprobe,
            "fentry" => ProbeKind::Fentry,
            "fexit" => ProbeKind::Fexit,
            "pcap-import" => ProbeKind::PcapImport,
            // `#[serde(other)]`: any other name is a kind from a newer producer.
            _ => ProbeKind::Unknown,
        },
        b"name" => v.name = c.str()?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, p: &ProbeView) {
    let ProbeView { kind, name } = p;
    let mut o = Object::new(out);
    o.str("kind", kind.serde_name());
    o.str("name", name);
    o.end();
}

/// Text on an event's first line: `[marker] name`.
pub fn text(line: &mut String, probe: &ProbeView) {
    sep(line);
    line.push('[');
    line.push_str(probe.kind.marker());
    line.push_str("] ");
    line.push_str(probe.name);
}

pub const COLUMNS: &[Column] = &[
    col!("probe_kind", dict_type(), true, |rows| dict(rows, |r| r
        .probe_kind
        .as_deref())),
    col!("probe", dict_type(), true, |rows| dict(rows, |r| r
        .event
        .probe
        .as_ref()
        .map(|p| p.name.as_str()))),
    col!("probe_spec", dict_type(), true, |rows| {
        let mut builder = StringDictionaryBuilder::<Int32Type>::new();
        let mut spec = String::new();
        for row in rows {
            match (&row.event.probe, &row.probe_kind) {
                (Some(probe), kind) => {
                    spec.clear();
                    let marker = match probe.kind {
                        ProbeKind::Unknown => kind.as_deref().unwrap_or("?"),
                        known => known.marker(),
                    };
                    spec.push_str(marker);
                    spec.push(':');
                    spec.push_str(&probe.name);
                    builder.append_value(&spec);
                }
                (None, _) => builder.append_null(),
            }
        }
        Arc::new(builder.finish())
    }),
];

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
