//! `drop`: why the kernel dropped the packet.

use arrow::datatypes::{DataType, UInt32Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, dict, dict_type, prim, Column, Row};
use super::text::sep;
use crate::model::view::{walk_map, Cursor};

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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropView<'a> {
    pub reason: &'a str,
    pub code: u32,
    pub subsystem: Option<&'a str>,
}

pub fn view(d: &Drop) -> DropView<'_> {
    let Drop {
        reason,
        code,
        subsystem,
    } = d;
    DropView {
        reason,
        code: *code,
        subsystem: subsystem.as_deref(),
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<DropView<'a>> {
    let mut v = DropView::default();
    walk_map!(c, {
        b"reason" => v.reason = c.str()?,
        b"code" => v.code = c.num()?,
        b"subsystem" => v.subsystem = c.option(Cursor::str)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, d: &DropView) {
    let DropView {
        reason,
        code,
        subsystem,
    } = d;
    let mut o = Object::new(out);
    o.int("code", *code);
    o.str("reason", reason);
    if let Some(subsystem) = subsystem {
        o.str("subsystem", subsystem);
    }
    o.end();
}

/// Text at the end of an event's first line: `drop (reason REASON)`.
pub fn text(line: &mut String, drop: &DropView) {
    sep(line);
    line.push_str("drop (reason ");
    line.push_str(drop.reason);
    line.push(')');
}

fn drop(r: &Row) -> Option<&Drop> {
    r.event.drop.as_ref()
}

pub const COLUMNS: &[Column] = &[
    col!("drop_reason", dict_type(), true, |rows| dict(rows, |r| {
        drop(r).map(|d| d.reason.as_str())
    })),
    col!(
        "drop_code",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| drop(r).map(|d| d.code))
    ),
    col!("drop_subsystem", dict_type(), true, |rows| dict(
        rows,
        |r| drop(r)?.subsystem.as_deref()
    )),
];
