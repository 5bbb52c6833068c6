//! `common`: when and where (cpu, task) a probe fired.

use arrow::datatypes::{DataType, UInt32Type, UInt64Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{col, dict, dict_type, prim, Column, Row};
use super::text::push_int;
#[cfg(doc)]
use crate::model::event::Clock;
use crate::model::view::{walk_map, Cursor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Common {
    /// ns on the section's clock (see [`Clock`]).
    pub timestamp: u64,
    pub cpu: u32,
    /// Process (thread group) id and thread id current when the probe fired.
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Host the event came from, set only by stages that merge sections of several hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommonView<'a> {
    pub timestamp: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: &'a str,
    pub host: Option<&'a str>,
}

pub fn view(c: &Common) -> CommonView<'_> {
    let Common {
        timestamp,
        cpu,
        pid,
        tid,
        comm,
        host,
    } = c;
    CommonView {
        timestamp: *timestamp,
        cpu: *cpu,
        pid: *pid,
        tid: *tid,
        comm,
        host: host.as_deref(),
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<CommonView<'a>> {
    let mut v = CommonView::default();
    walk_map!(c, {
        b"timestamp" => v.timestamp = c.uint()?,
        b"cpu" => v.cpu = c.num()?,
        b"pid" => v.pid = c.num()?,
        b"tid" => v.tid = c.num()?,
        b"comm" => v.comm = c.str()?,
        b"host" => v.host = c.option(Cursor::str)?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, c: &CommonView) {
    let CommonView {
        timestamp,
        cpu,
        pid,
        tid,
        comm,
        host,
    } = c;
    let mut o = Object::new(out);
    o.str("comm", comm);
    o.int("cpu", *cpu);
    if let Some(host) = host {
        o.str("host", host);
    }
    o.int("pid", *pid);
    o.int("tid", *tid);
    o.int("timestamp", *timestamp);
    o.end();
}

/// Text, after the time on an event's first line: ` (cpu) [comm] pid/tid @host`.
pub fn text(line: &mut String, common: &CommonView) {
    line.push_str(" (");
    push_int(line, common.cpu);
    line.push(')');
    if !common.comm.is_empty() {
        line.push_str(" [");
        line.push_str(common.comm);
        line.push(']');
    }
    if common.pid != 0 || common.tid != 0 {
        line.push(' ');
        push_int(line, common.pid);
        if common.pid != common.tid {
            line.push('/');
            push_int(line, common.tid);
        }
    }
    if let Some(host) = common.host {
        line.push_str(" @");
        line.push_str(host);
    }
}

fn common(r: &Row) -> Option<&Common> {
    r.event.common.as_ref()
}

/// The monotonic timestamp column (placed second in the file, after `time`).
pub const CLOCK_COLUMNS: &[Column] =
    &[col!("timestamp_mono_ns", DataType::UInt64, false, |rows| {
        prim::<UInt64Type>(rows, |r| common(r).map(|c| c.timestamp))
    })];

/// The task columns.
pub const COLUMNS: &[Column] = &[
    col!("cpu", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| common(r).map(|c| c.cpu)
    )),
    col!("pid", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| common(r).map(|c| c.pid)
    )),
    col!("tid", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| common(r).map(|c| c.tid)
    )),
    col!("comm", dict_type(), true, |rows| dict(rows, |r| common(r)
        .map(|c| c.comm.as_str()))),
];
