//! `dev`: the network device the packet was on.

use arrow::datatypes::{DataType, UInt32Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, dict, dict_type, prim, Column, Row};
use super::text::push_int;
use crate::model::view::{walk_map, Cursor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Dev {
    pub ifindex: u32,
    pub name: String,
    /// `skb->skb_iif`: the interface the packet arrived on, when different from `ifindex`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_ifindex: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DevView<'a> {
    pub ifindex: u32,
    pub name: &'a str,
    pub rx_ifindex: Option<u32>,
}

pub fn view(d: &Dev) -> DevView<'_> {
    let Dev {
        ifindex,
        name,
        rx_ifindex,
    } = d;
    DevView {
        ifindex: *ifindex,
        name,
        rx_ifindex: *rx_ifindex,
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<DevView<'a>> {
    let mut v = DevView::default();
    walk_map!(c, {
        b"ifindex" => v.ifindex = c.num()?,
        b"name" => v.name = c.str()?,
        b"rx_ifindex" => v.rx_ifindex = c.option(Cursor::num)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, d: &DevView) {
    let DevView {
        ifindex,
        name,
        rx_ifindex,
    } = d;
    let mut o = Object::new(out);
    o.int("ifindex", *ifindex);
    o.str("name", name);
    o.opt_int("rx_ifindex", *rx_ifindex);
    o.end();
}

/// Text, on the detail line it shares with `netns`: `if IFINDEX (NAME) rxif IFINDEX`.
pub fn text(line: &mut String, dev: &DevView) {
    line.push_str("if ");
    push_int(line, dev.ifindex);
    if !dev.name.is_empty() {
        line.push_str(" (");
        line.push_str(dev.name);
        line.push(')');
    }
    if let Some(rx) = dev.rx_ifindex {
        line.push_str(" rxif ");
        push_int(line, rx);
    }
}

fn dev(r: &Row) -> Option<&Dev> {
    r.event.dev.as_ref()
}

pub const COLUMNS: &[Column] = &[
    col!(
        "ifindex",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| dev(r).map(|d| d.ifindex))
    ),
    col!("dev", dict_type(), true, |rows| dict(rows, |r| dev(r)
        .map(|d| d.name.as_str()))),
    col!("rx_ifindex", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| dev(r).and_then(|d| d.rx_ifindex)
    )),
];
