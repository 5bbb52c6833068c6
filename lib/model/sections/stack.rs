//! `stack`: the kernel stack when the probe fired.

use std::sync::Arc;

use arrow::array::{ArrayRef, ListArray, PrimitiveArray, StringArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, UInt64Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, nullable, struct_array, Column, Row};
use super::text::push_hex;
use crate::model::view::{walk_map, Cursor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Stack {
    /// Innermost frame first.
    pub frames: Vec<StackFrame>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StackFrame {
    pub addr: u64,
    /// `symbol+0xoff`, when the address could be symbolized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackView<'a> {
    pub frames: Vec<StackFrameView<'a>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackFrameView<'a> {
    pub addr: u64,
    pub symbol: Option<&'a str>,
}

pub fn view(s: &Stack) -> StackView<'_> {
    let Stack { frames } = s;
    StackView {
        frames: frames
            .iter()
            .map(|f| {
                let StackFrame { addr, symbol } = f;
                StackFrameView {
                    addr: *addr,
                    symbol: symbol.as_deref(),
                }
            })
            .collect(),
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<StackView<'a>> {
    let mut v = StackView::default();
    walk_map!(c, {
        b"frames" => {
            let count = c.array_len()?;
            // Every frame takes at least a byte: a larger count is not worth reserving for.
            let mut frames = Vec::with_capacity(count.min(c.left()));
            for _ in 0..count {
                frames.push(stack_frame(c)?);
            }
            v.frames = frames;
        },
    });
    Some(v)
}

fn stack_frame<'a>(c: &mut Cursor<'a>) -> Option<StackFrameView<'a>> {
    let mut v = StackFrameView::default();
    walk_map!(c, {
        b"addr" => v.addr = c.uint()?,
        b"symbol" => v.symbol = c.option(Cursor::str)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, s: &StackView) {
    let StackView { frames } = s;
    let mut o = Object::new(out);
    let out = o.key("frames");
    out.push(b'[');
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let StackFrameView { addr, symbol } = frame;
        let mut f = Object::new(out);
        f.int("addr", *addr);
        if let Some(symbol) = symbol {
            f.str("symbol", symbol);
        }
        f.end();
    }
    out.push(b']');
    o.end();
}

/// Text of a frame's detail line (one per frame): `  SYMBOL`, or the address.
pub fn frame_text(line: &mut String, frame: &StackFrameView) {
    line.push_str("  ");
    match frame.symbol {
        Some(symbol) => line.push_str(symbol),
        None => push_hex(line, frame.addr, 1, true),
    }
}

fn frame_fields() -> Fields {
    Fields::from(vec![
        nullable("addr", DataType::UInt64),
        nullable("symbol", DataType::Utf8),
    ])
}

fn stack_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(frame_fields()), true))
}

fn build_stack(rows: &[Row]) -> ArrayRef {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    let mut addrs: Vec<Option<u64>> = Vec::new();
    let mut symbols: Vec<Option<&str>> = Vec::new();
    let mut present = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(stack) = &row.event.stack {
            for frame in &stack.frames {
                addrs.push(Some(frame.addr));
                symbols.push(frame.symbol.as_deref());
            }
        }
        present.push(row.event.stack.is_some());
        // A row group holds far fewer than 2^31 frames (events are bounded by MAX_FRAME), but
        // saturate rather than wrap if a pathological input tried.
        offsets.push(i32::try_from(addrs.len()).unwrap_or(i32::MAX));
    }
    let frame_count = addrs.len();
    let frames = struct_array(
        frame_fields(),
        vec![
            Arc::new(PrimitiveArray::<UInt64Type>::from(addrs)),
            Arc::new(StringArray::from(symbols)),
        ],
        vec![true; frame_count],
    );
    let nulls = NullBuffer::from(present);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Arc::new(
        ListArray::try_new(
            stack_item(),
            OffsetBuffer::new(offsets.into()),
            frames,
            nulls,
        )
        .expect("stack offsets built from the frames"),
    )
}

pub const COLUMNS: &[Column] = &[col!(
    "stack",
    DataType::List(stack_item()),
    true,
    build_stack
)];
