//! `skb`: the socket buffer's metadata. Numbers only, so the view is the owned type.

use arrow::datatypes::{DataType, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{boolean, col, prim, Column, Row};
use super::text::{push_hex, push_int, sep};
use crate::model::view::{walk_map, Cursor};

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

pub type SkbView<'a> = Skb;

pub fn view(s: &Skb) -> SkbView<'_> {
    s.clone()
}

pub(crate) fn parse(c: &mut Cursor<'_>) -> Option<Skb> {
    let mut v = Skb::default();
    walk_map!(c, {
        b"addr" => v.addr = c.uint()?,
        b"head" => v.head = c.uint()?,
        b"len" => v.len = c.num()?,
        b"data_len" => v.data_len = c.num()?,
        b"mark" => v.mark = c.num()?,
        b"hash" => v.hash = c.num()?,
        b"protocol" => v.protocol = c.num()?,
        b"pkt_type" => v.pkt_type = c.num()?,
        b"priority" => v.priority = c.num()?,
        b"ip_summed" => v.ip_summed = c.num()?,
        b"cloned" => v.cloned = c.bool()?,
        b"users" => v.users = c.num()?,
        b"dataref" => v.dataref = c.num()?,
        b"gso_size" => v.gso_size = c.num()?,
        b"gso_segs" => v.gso_segs = c.num()?,
        b"gso_type" => v.gso_type = c.num()?,
        b"vlan_tci" => v.vlan_tci = c.option(Cursor::num)?,
        b"vlan_proto" => v.vlan_proto = c.option(Cursor::num)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, s: &Skb) {
    let Skb {
        addr,
        head,
        len,
        data_len,
        mark,
        hash,
        protocol,
        pkt_type,
        priority,
        ip_summed,
        cloned,
        users,
        dataref,
        gso_size,
        gso_segs,
        gso_type,
        vlan_tci,
        vlan_proto,
    } = s;
    let mut o = Object::new(out);
    o.int("addr", *addr);
    o.bool("cloned", *cloned);
    o.int("data_len", *data_len);
    o.int("dataref", *dataref);
    o.int("gso_segs", *gso_segs);
    o.int("gso_size", *gso_size);
    o.int("gso_type", *gso_type);
    o.int("hash", *hash);
    o.int("head", *head);
    o.int("ip_summed", *ip_summed);
    o.int("len", *len);
    o.int("mark", *mark);
    o.int("pkt_type", *pkt_type);
    o.int("priority", *priority);
    o.int("protocol", *protocol);
    o.int("users", *users);
    o.opt_int("vlan_proto", *vlan_proto);
    o.opt_int("vlan_tci", *vlan_tci);
    o.end();
}

/// Text on an event's first line: `(skb ADDR)`, when the address is known.
pub fn text_addr(line: &mut String, skb: &Skb) {
    if skb.addr != 0 {
        sep(line);
        line.push_str("(skb ");
        push_hex(line, skb.addr, 1, false);
        line.push(')');
    }
}

/// Text of the detail line: `skb len ... data_len ... proto ...`.
pub fn text(line: &mut String, skb: &Skb) {
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

fn skb(r: &Row) -> Option<&Skb> {
    r.event.skb.as_ref()
}

/// Every scalar of the section, flattened (cheap, and what people filter on).
pub const COLUMNS: &[Column] = &[
    col!(
        "skb_addr",
        DataType::UInt64,
        false,
        |rows| prim::<UInt64Type>(rows, |r| skb(r).map(|s| s.addr))
    ),
    col!(
        "skb_head",
        DataType::UInt64,
        false,
        |rows| prim::<UInt64Type>(rows, |r| skb(r).map(|s| s.head))
    ),
    col!(
        "skb_len",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| skb(r).map(|s| s.len))
    ),
    col!("skb_data_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| skb(r).map(|s| s.data_len)
    )),
    col!(
        "skb_mark",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| skb(r).map(|s| s.mark))
    ),
    col!(
        "skb_hash",
        DataType::UInt32,
        false,
        |rows| prim::<UInt32Type>(rows, |r| skb(r).map(|s| s.hash))
    ),
    col!("skb_protocol", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| skb(r).map(|s| s.protocol)
    )),
    col!("skb_pkt_type", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| skb(r).map(|s| s.pkt_type)
    )),
    col!("skb_priority", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| skb(r).map(|s| s.priority)
    )),
    col!("skb_ip_summed", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| skb(r).map(|s| s.ip_summed)
    )),
    col!("skb_cloned", DataType::Boolean, true, |rows| boolean(
        rows,
        |r| skb(r).map(|s| s.cloned)
    )),
    col!(
        "skb_users",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| skb(r).map(|s| s.users))
    ),
    col!("skb_dataref", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| skb(r).map(|s| s.dataref)
    )),
    col!("skb_gso_size", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| skb(r).map(|s| s.gso_size)
    )),
    col!("skb_gso_segs", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| skb(r).map(|s| s.gso_segs)
    )),
    col!("skb_gso_type", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| skb(r).map(|s| s.gso_type)
    )),
    col!("skb_vlan_tci", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| skb(r).and_then(|s| s.vlan_tci)
    )),
    col!("skb_vlan_proto", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| skb(r).and_then(|s| s.vlan_proto)
    )),
];
