//! `ct`: the packet's conntrack entry.

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Fields, UInt16Type, UInt32Type, UInt8Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::{hex, Object};
use super::parquet::{
    binary, col, dict, dict_type, nullable, prim, string, struct_array, Column, Row,
};
use super::text::{push_hex, push_int};
use crate::model::event::Bytes;
use crate::model::view::{walk_map, Cursor};

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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CtTupleView<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_id: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConntrackView<'a> {
    pub state: &'a str,
    pub status: u32,
    pub zone: u16,
    pub mark: u32,
    pub labels: Option<&'a [u8]>,
    pub orig: CtTupleView<'a>,
    pub reply: CtTupleView<'a>,
    pub proto_state: Option<&'a str>,
}

pub fn view(c: &Conntrack) -> ConntrackView<'_> {
    let Conntrack {
        state,
        status,
        zone,
        mark,
        labels,
        orig,
        reply,
        proto_state,
    } = c;
    ConntrackView {
        state,
        status: *status,
        zone: *zone,
        mark: *mark,
        labels: labels.as_ref().map(|l| &l.0[..]),
        orig: tuple_view(orig),
        reply: tuple_view(reply),
        proto_state: proto_state.as_deref(),
    }
}

fn tuple_view(t: &CtTuple) -> CtTupleView<'_> {
    let CtTuple {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
    } = t;
    CtTupleView {
        src,
        dst,
        proto: *proto,
        sport: *sport,
        dport: *dport,
        icmp_type: *icmp_type,
        icmp_code: *icmp_code,
        icmp_id: *icmp_id,
    }
}

fn tuple<'a>(c: &mut Cursor<'a>) -> Option<CtTupleView<'a>> {
    let mut v = CtTupleView::default();
    walk_map!(c, {
        b"src" => v.src = c.str()?,
        b"dst" => v.dst = c.str()?,
        b"proto" => v.proto = c.num()?,
        b"sport" => v.sport = c.option(Cursor::num)?,
        b"dport" => v.dport = c.option(Cursor::num)?,
        b"icmp_type" => v.icmp_type = c.option(Cursor::num)?,
        b"icmp_code" => v.icmp_code = c.option(Cursor::num)?,
        b"icmp_id" => v.icmp_id = c.option(Cursor::num)?,
    });
    Some(v)
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<ConntrackView<'a>> {
    let mut v = ConntrackView::default();
    walk_map!(c, {
        b"state" => v.state = c.str()?,
        b"status" => v.status = c.num()?,
        b"zone" => v.zone = c.num()?,
        b"mark" => v.mark = c.num()?,
        b"labels" => v.labels = c.option(Cursor::bin)?,
        b"orig" => v.orig = tuple(c)?,
        b"reply" => v.reply = tuple(c)?,
        b"proto_state" => v.proto_state = c.option(Cursor::str)?,
    });
    Some(v)
}

fn tuple_json(out: &mut Vec<u8>, t: &CtTupleView) {
    let CtTupleView {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
    } = t;
    let mut o = Object::new(out);
    o.opt_int("dport", *dport);
    o.str("dst", dst);
    o.opt_int("icmp_code", *icmp_code);
    o.opt_int("icmp_id", *icmp_id);
    o.opt_int("icmp_type", *icmp_type);
    o.int("proto", *proto);
    o.opt_int("sport", *sport);
    o.str("src", src);
    o.end();
}

pub fn json(out: &mut Vec<u8>, c: &ConntrackView) {
    let ConntrackView {
        state,
        status,
        zone,
        mark,
        labels,
        orig,
        reply,
        proto_state,
    } = c;
    let mut o = Object::new(out);
    if let Some(labels) = labels {
        hex(o.key("labels"), labels);
    }
    o.int("mark", *mark);
    tuple_json(o.key("orig"), orig);
    if let Some(proto_state) = proto_state {
        o.str("proto_state", proto_state);
    }
    tuple_json(o.key("reply"), reply);
    o.str("state", state);
    o.int("status", *status);
    o.int("zone", *zone);
    o.end();
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

/// Text of the detail line: `ct_state STATE status ... orig [...] reply [...] zone ... mark ...`.
pub fn text(line: &mut String, ct: &ConntrackView) {
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

fn ct(r: &Row) -> Option<&Conntrack> {
    r.event.ct.as_ref()
}

fn ct_tuple_fields() -> Fields {
    Fields::from(vec![
        nullable("src", DataType::Utf8),
        nullable("dst", DataType::Utf8),
        nullable("proto", DataType::UInt8),
        nullable("sport", DataType::UInt16),
        nullable("dport", DataType::UInt16),
        nullable("icmp_type", DataType::UInt8),
        nullable("icmp_code", DataType::UInt8),
        nullable("icmp_id", DataType::UInt16),
    ])
}

fn ct_fields() -> Fields {
    Fields::from(vec![
        nullable("state", dict_type()),
        nullable("status", DataType::UInt32),
        nullable("zone", DataType::UInt16),
        nullable("mark", DataType::UInt32),
        nullable("labels", DataType::Binary),
        nullable("orig", DataType::Struct(ct_tuple_fields())),
        nullable("reply", DataType::Struct(ct_tuple_fields())),
        nullable("proto_state", dict_type()),
    ])
}

fn build_ct_tuple(rows: &[Row], tuple: fn(&Conntrack) -> &CtTuple) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        string(rows, move |r| ct(r).map(tuple).map(|t| t.src.as_str())),
        string(rows, move |r| ct(r).map(tuple).map(|t| t.dst.as_str())),
        prim::<UInt8Type>(rows, move |r| ct(r).map(tuple).map(|t| t.proto)),
        prim::<UInt16Type>(rows, move |r| ct(r).map(tuple).and_then(|t| t.sport)),
        prim::<UInt16Type>(rows, move |r| ct(r).map(tuple).and_then(|t| t.dport)),
        prim::<UInt8Type>(rows, move |r| ct(r).map(tuple).and_then(|t| t.icmp_type)),
        prim::<UInt8Type>(rows, move |r| ct(r).map(tuple).and_then(|t| t.icmp_code)),
        prim::<UInt16Type>(rows, move |r| ct(r).map(tuple).and_then(|t| t.icmp_id)),
    ];
    let present = rows.iter().map(|r| ct(r).is_some()).collect();
    struct_array(ct_tuple_fields(), children, present)
}

fn build_ct(rows: &[Row]) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        dict(rows, |r| ct(r).map(|c| c.state.as_str())),
        prim::<UInt32Type>(rows, |r| ct(r).map(|c| c.status)),
        prim::<UInt16Type>(rows, |r| ct(r).map(|c| c.zone)),
        prim::<UInt32Type>(rows, |r| ct(r).map(|c| c.mark)),
        binary(rows, |r| ct(r)?.labels.as_ref().map(|l| l.0.as_slice())),
        build_ct_tuple(rows, |c| &c.orig),
        build_ct_tuple(rows, |c| &c.reply),
        dict(rows, |r| ct(r)?.proto_state.as_deref()),
    ];
    let present = rows.iter().map(|r| ct(r).is_some()).collect();
    struct_array(ct_fields(), children, present)
}

pub const COLUMNS: &[Column] = &[col!("ct", DataType::Struct(ct_fields()), true, build_ct)];
