//! `netns`: the network namespace. Numbers only, so the view is the owned type.

use arrow::datatypes::{DataType, UInt32Type, UInt64Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, prim, Column, Row};
use super::text::{push_hex, push_int};
use crate::model::view::{walk_map, Cursor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Netns {
    /// Inode number of the namespace (`ls -l /proc/PID/ns/net`).
    pub inum: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
}

pub type NetnsView<'a> = Netns;

pub fn view(n: &Netns) -> NetnsView<'_> {
    n.clone()
}

pub(crate) fn parse(c: &mut Cursor<'_>) -> Option<Netns> {
    let mut v = Netns::default();
    walk_map!(c, {
        b"inum" => v.inum = c.num()?,
        b"cookie" => v.cookie = c.option(Cursor::uint)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, n: &Netns) {
    let Netns { inum, cookie } = n;
    let mut o = Object::new(out);
    o.opt_int("cookie", *cookie);
    o.int("inum", *inum);
    o.end();
}

/// Text, on the detail line it shares with `dev`: `ns INUM (cookie 0x...)`.
pub fn text(line: &mut String, ns: &Netns) {
    line.push_str("ns ");
    push_int(line, ns.inum);
    if let Some(cookie) = ns.cookie {
        line.push_str(" (cookie ");
        push_hex(line, cookie, 1, true);
        line.push(')');
    }
}

fn netns(r: &Row) -> Option<&Netns> {
    r.event.netns.as_ref()
}

pub const COLUMNS: &[Column] = &[
    col!("netns_inum", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| netns(r).map(|n| n.inum)
    )),
    col!("netns_cookie", DataType::UInt64, true, |rows| prim::<
        UInt64Type,
    >(
        rows,
        |r| netns(r).and_then(|n| n.cookie)
    )),
];
