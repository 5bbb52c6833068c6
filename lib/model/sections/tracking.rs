//! `tracking`: the packet's identity across events (see `schemas/tracking.md`).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Fields, UInt32Type, UInt64Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, dict, dict_type, nullable, prim, string, struct_array, Column, Row};
use super::text::{push_hex, push_int, sep};
use crate::model::view::{walk_map, Cursor};

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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackingView<'a> {
    pub first_seen: u64,
    pub orig_head: u64,
    pub source: &'a str,
    pub index: Option<u32>,
    pub parent: Option<&'a str>,
    pub link: Option<&'a str>,
}

impl TrackingView<'_> {
    /// Text form of the id, as [`Tracking::id`] writes it.
    pub fn id(&self) -> String {
        format!("{:x}-{:x}", self.first_seen, self.orig_head)
    }
}

pub fn view(t: &Tracking) -> TrackingView<'_> {
    let Tracking {
        first_seen,
        orig_head,
        source,
        index,
        parent,
        link,
    } = t;
    TrackingView {
        first_seen: *first_seen,
        orig_head: *orig_head,
        source,
        index: *index,
        parent: parent.as_deref(),
        link: link.as_deref(),
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<TrackingView<'a>> {
    let mut v = TrackingView::default();
    walk_map!(c, {
        b"first_seen" => v.first_seen = c.uint()?,
        b"orig_head" => v.orig_head = c.uint()?,
        b"source" => v.source = c.str()?,
        b"index" => v.index = c.option(Cursor::num)?,
        b"parent" => v.parent = c.option(Cursor::str)?,
        b"link" => v.link = c.option(Cursor::str)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, t: &TrackingView) {
    let TrackingView {
        first_seen,
        orig_head,
        source,
        index,
        parent,
        link,
    } = t;
    let mut o = Object::new(out);
    o.int("first_seen", *first_seen);
    o.opt_int("index", *index);
    if let Some(link) = link {
        o.str("link", link);
    }
    o.int("orig_head", *orig_head);
    if let Some(parent) = parent {
        o.str("parent", parent);
    }
    if !source.is_empty() {
        o.str("source", source);
    }
    o.end();
}

/// Text on an event's first line, before the skb address: `#ID`.
pub fn text_id(line: &mut String, tracking: &TrackingView) {
    sep(line);
    line.push('#');
    push_hex(line, tracking.first_seen, 1, false);
    line.push('-');
    push_hex(line, tracking.orig_head, 1, false);
}

/// Text on an event's first line, after the skb address: ` n INDEX (LINK of #PARENT)`.
pub fn text_journey(line: &mut String, tracking: &TrackingView) {
    if let Some(index) = tracking.index {
        line.push_str(" n ");
        push_int(line, index);
    }
    if let (Some(parent), Some(link)) = (tracking.parent, tracking.link) {
        line.push_str(" (");
        line.push_str(link);
        line.push_str(" of #");
        line.push_str(parent);
        line.push(')');
    }
}

fn t(r: &Row) -> Option<&Tracking> {
    r.event.tracking.as_ref()
}

fn tracking_fields() -> Fields {
    Fields::from(vec![
        nullable("first_seen", DataType::UInt64),
        nullable("orig_head", DataType::UInt64),
        nullable("source", dict_type()),
        nullable("parent", DataType::Utf8),
        nullable("link", dict_type()),
    ])
}

fn build_tracking(rows: &[Row]) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        prim::<UInt64Type>(rows, |r| t(r).map(|t| t.first_seen)),
        prim::<UInt64Type>(rows, |r| t(r).map(|t| t.orig_head)),
        dict(rows, |r| t(r).map(|t| t.source.as_str())),
        string(rows, |r| t(r)?.parent.as_deref()),
        dict(rows, |r| t(r)?.link.as_deref()),
    ];
    let present = rows.iter().map(|r| t(r).is_some()).collect();
    struct_array(tracking_fields(), children, present)
}

pub const COLUMNS: &[Column] = &[
    col!("tracking_id", DataType::Utf8, false, |rows| {
        let ids: Vec<Option<String>> = rows.iter().map(|r| t(r).map(|t| t.id())).collect();
        Arc::new(StringArray::from(ids))
    }),
    col!("journey_index", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| t(r).and_then(|t| t.index)
    )),
    col!(
        "tracking",
        DataType::Struct(tracking_fields()),
        true,
        build_tracking
    ),
];
