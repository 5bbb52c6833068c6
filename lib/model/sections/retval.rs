//! `retval`: the return value of the probed function (kretprobe, fexit). A bare integer, not a
//! map: the one section that is a value.

use arrow::datatypes::{DataType, Int64Type};

use super::json::int;
use super::parquet::{col, prim, Column};
use super::text::{push_hex, push_int};
use crate::model::view::Cursor;

pub type Retval = i64;
pub type RetvalView<'a> = i64;

pub fn view(v: &Retval) -> RetvalView<'_> {
    *v
}

pub(crate) fn parse(c: &mut Cursor<'_>) -> Option<i64> {
    c.int()
}

pub fn json(out: &mut Vec<u8>, v: &i64) {
    int(out, *v);
}

/// Text of the detail line: `retval N (0xN)`.
pub fn text(line: &mut String, retval: i64) {
    line.push_str("retval ");
    push_int(line, retval);
    line.push_str(" (");
    push_hex(line, retval as u64, 1, true);
    line.push(')');
}

pub const COLUMNS: &[Column] = &[col!("retval", DataType::Int64, true, |rows| prim::<
    Int64Type,
>(rows, |r| r
    .event
    .retval))];
