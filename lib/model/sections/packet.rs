//! `packet`: the captured bytes.

use arrow::datatypes::{DataType, UInt32Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::{hex, Object};
use super::parquet::{binary, col, dict, dict_type, prim, Column, Row};
use crate::model::dissect;
use crate::model::event::Bytes;
use crate::model::view::{walk_map, Cursor};

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

impl Layer {
    /// The name serde gives the layer in streams and JSON.
    pub fn serde_name(self) -> &'static str {
        match self {
            Layer::L2 => "l2",
            Layer::L3 => "l3",
        }
    }
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PacketView<'a> {
    pub data: &'a [u8],
    pub len: u32,
    pub layer: Layer,
    pub linktype: u32,
}

pub fn view(p: &Packet) -> PacketView<'_> {
    let Packet {
        data,
        len,
        layer,
        linktype,
    } = p;
    PacketView {
        data: &data.0,
        len: *len,
        layer: *layer,
        linktype: *linktype,
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<PacketView<'a>> {
    let mut v = PacketView::default();
    walk_map!(c, {
        b"data" => v.data = c.bin()?,
        b"len" => v.len = c.num()?,
        b"layer" => v.layer = match c.str()? {
            "l2" => Layer::L2,
            "l3" => Layer::L3,
            _ => return None,
        },
        b"linktype" => v.linktype = c.num()?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, p: &PacketView) {
    let PacketView {
        data,
        len,
        layer,
        linktype,
    } = p;
    let mut o = Object::new(out);
    hex(o.key("data"), data);
    o.str("layer", layer.serde_name());
    o.int("len", *len);
    o.int("linktype", *linktype);
    o.end();
}

/// Text: the packet's one-line summary, into `out` (cleared first: the summary writer looks at
/// what precedes it in the string, so it gets a string of its own).
pub fn text(out: &mut String, packet: &PacketView) {
    out.clear();
    dissect::dissect_bytes(packet.data, packet.len, packet.layer, packet.linktype)
        .write_summary(out);
}

fn packet(r: &Row) -> Option<&Packet> {
    r.event.packet.as_ref()
}

/// The section's scalars (the dissected fields follow them in the file).
pub const COLUMNS: &[Column] = &[
    col!("packet_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| packet(r).map(|p| p.len)
    )),
    col!("packet_caplen", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| packet(r).map(|p| p.data.0.len() as u32)
    )),
    col!("packet_layer", dict_type(), true, |rows| dict(rows, |r| {
        packet(r).map(|p| p.layer.serde_name())
    })),
    col!("packet_linktype", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| packet(r).map(|p| p.linktype)
    )),
];

/// The bytes, the file's last column (the bulk of it, away from the columns people scan).
pub const DATA_COLUMNS: &[Column] = &[col!("packet", DataType::Binary, false, |rows| binary(
    rows,
    |r| packet(r).map(|p| p.data.0.as_slice())
))];

#[cfg(test)]
mod tests {
    use super::Layer;

    #[test]
    fn serde_names_are_what_serde_writes() {
        for layer in [Layer::L2, Layer::L3] {
            let json = serde_json::to_string(&layer).expect("serializes");
            assert_eq!(json, format!("\"{}\"", layer.serde_name()));
        }
    }
}
