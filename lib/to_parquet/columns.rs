//! The Arrow schema of `trail-to-parquet` and how each column is computed from an event.
//!
//! One table, [`COLUMNS`], names every column once: its Arrow type and the function that builds
//! the column for a slice of rows. The schema, the partition columns left out of dataset files,
//! and the per-column encoding settings all derive from it, so adding a column touches one entry.
//! The normative description, with the reason for each choice, is `schemas/parquet.md`;
//! [`SCHEMA_VERSION`] changes with it.
//!
//! Conventions: every column is nullable, and null means "the section is absent" (an event
//! without `skb` has null `skb_*` columns), never "zero". Unsigned stream fields keep their
//! unsigned Arrow types so values round-trip exactly. Low-cardinality strings are
//! `Dictionary(Int32, Utf8)`, which Parquet stores dictionary-encoded.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, ListArray, PrimitiveArray, StringArray,
    StringDictionaryBuilder, StructArray, TimestampNanosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Fields, Int32Type, Int64Type, TimeUnit, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};

use crate::model::dissect::Dissection;
use crate::model::event::{Conntrack, CtTuple, Event};

/// Version of the Parquet layout (`schemas/parquet.md`), stored in every file's key-value
/// metadata as `trail.parquet_schema`. Additions bump the minor part, anything else the major.
pub const SCHEMA_VERSION: &str = "1.0";

/// What a row is built from: one decoded event and the context its section gives it.
pub struct Row {
    pub event: Event,
    /// Wall-clock ns since the Unix epoch (`common.timestamp` + the section's clock offset);
    /// `None` without a `common` section or when the sum leaves the i64 range.
    pub time: Option<i64>,
    /// `common.host` when set, else the section header's host; `None` when empty.
    pub host: Option<Arc<str>>,
    pub kernel: Option<Arc<str>>,
    /// The probe kind as written in the stream (kept even when this build does not know it).
    pub probe_kind: Option<std::borrow::Cow<'static, str>>,
    pub dissection: Option<Dissection>,
    /// Unknown sections as one JSON object, `None` when there are none.
    pub extra: Option<String>,
}

impl Row {
    fn common(&self) -> Option<&crate::model::event::Common> {
        self.event.common.as_ref()
    }
    fn skb(&self) -> Option<&crate::model::event::Skb> {
        self.event.skb.as_ref()
    }
    fn ct(&self) -> Option<&Conntrack> {
        self.event.ct.as_ref()
    }
    fn ip(&self) -> Option<&crate::model::dissect::IpInfo> {
        self.dissection.as_ref()?.ip.as_ref()
    }
    fn l4(&self) -> Option<&crate::model::dissect::L4Info> {
        self.dissection.as_ref()?.l4.as_ref()
    }
    fn inner(&self) -> Option<&Dissection> {
        self.dissection.as_ref()?.inner.as_deref()
    }
}

/// Builds one column for a slice of rows.
pub type Build = fn(&[Row]) -> ArrayRef;

/// One column of the schema.
pub struct Column {
    pub name: &'static str,
    pub data_type: fn() -> DataType,
    pub build: Build,
    /// Whether Parquet dictionary encoding is worth trying (off for values that rarely repeat:
    /// the writer would build a dictionary only to fall back to plain encoding).
    pub dictionary: bool,
}

impl Column {
    pub fn field(&self) -> Field {
        Field::new(self.name, (self.data_type)(), true)
    }
}

// ---- column builders: generic helpers -------------------------------------------------------

fn prim<T: ArrowPrimitiveType>(rows: &[Row], f: impl Fn(&Row) -> Option<T::Native>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<PrimitiveArray<T>>())
}

fn string<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn dict<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a str>) -> ArrayRef {
    let mut builder = StringDictionaryBuilder::<Int32Type>::new();
    for row in rows {
        builder.append_option(f(row));
    }
    Arc::new(builder.finish())
}

fn boolean(rows: &[Row], f: impl Fn(&Row) -> Option<bool>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<BooleanArray>())
}

fn binary<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a [u8]>) -> ArrayRef {
    let mut builder = BinaryBuilder::new();
    for row in rows {
        builder.append_option(f(row));
    }
    Arc::new(builder.finish())
}

fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn nullable(name: &str, data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new(name, data_type, true))
}

/// A struct column from child arrays, null where `present` is false.
fn struct_array(fields: Fields, children: Vec<ArrayRef>, present: Vec<bool>) -> ArrayRef {
    let nulls = NullBuffer::from(present);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    // The children are built from the same rows as `present`: lengths and types agree by
    // construction, so this cannot fail.
    Arc::new(
        StructArray::try_new(fields, children, nulls)
            .expect("struct children built from the same rows"),
    )
}

// ---- nested types ---------------------------------------------------------------------------

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

fn nft_fields() -> Fields {
    Fields::from(vec![
        nullable("table", dict_type()),
        nullable("chain", dict_type()),
        nullable("table_handle", DataType::UInt64),
        nullable("chain_handle", DataType::UInt64),
        nullable("rule_handle", DataType::UInt64),
        nullable("verdict", dict_type()),
        nullable("verdict_chain", dict_type()),
        nullable("policy", DataType::Boolean),
    ])
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

fn tracking_fields() -> Fields {
    Fields::from(vec![
        nullable("first_seen", DataType::UInt64),
        nullable("orig_head", DataType::UInt64),
        nullable("source", dict_type()),
        nullable("parent", DataType::Utf8),
        nullable("link", dict_type()),
    ])
}

fn build_ct_tuple(rows: &[Row], tuple: fn(&Conntrack) -> &CtTuple) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        string(rows, move |r| r.ct().map(tuple).map(|t| t.src.as_str())),
        string(rows, move |r| r.ct().map(tuple).map(|t| t.dst.as_str())),
        prim::<UInt8Type>(rows, move |r| r.ct().map(tuple).map(|t| t.proto)),
        prim::<UInt16Type>(rows, move |r| r.ct().map(tuple).and_then(|t| t.sport)),
        prim::<UInt16Type>(rows, move |r| r.ct().map(tuple).and_then(|t| t.dport)),
        prim::<UInt8Type>(rows, move |r| r.ct().map(tuple).and_then(|t| t.icmp_type)),
        prim::<UInt8Type>(rows, move |r| r.ct().map(tuple).and_then(|t| t.icmp_code)),
        prim::<UInt16Type>(rows, move |r| r.ct().map(tuple).and_then(|t| t.icmp_id)),
    ];
    let present = rows.iter().map(|r| r.ct().is_some()).collect();
    struct_array(ct_tuple_fields(), children, present)
}

fn build_ct(rows: &[Row]) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        dict(rows, |r| r.ct().map(|c| c.state.as_str())),
        prim::<UInt32Type>(rows, |r| r.ct().map(|c| c.status)),
        prim::<UInt16Type>(rows, |r| r.ct().map(|c| c.zone)),
        prim::<UInt32Type>(rows, |r| r.ct().map(|c| c.mark)),
        binary(rows, |r| r.ct()?.labels.as_ref().map(|l| l.0.as_slice())),
        build_ct_tuple(rows, |c| &c.orig),
        build_ct_tuple(rows, |c| &c.reply),
        dict(rows, |r| r.ct()?.proto_state.as_deref()),
    ];
    let present = rows.iter().map(|r| r.ct().is_some()).collect();
    struct_array(ct_fields(), children, present)
}

fn nft(r: &Row) -> Option<&crate::model::event::Nft> {
    r.event.nft.as_ref()
}

fn build_nft(rows: &[Row]) -> ArrayRef {
    let children: Vec<ArrayRef> = vec![
        dict(rows, |r| nft(r).map(|n| n.table.as_str())),
        dict(rows, |r| nft(r).map(|n| n.chain.as_str())),
        prim::<UInt64Type>(rows, |r| nft(r).map(|n| n.table_handle)),
        prim::<UInt64Type>(rows, |r| nft(r).map(|n| n.chain_handle)),
        prim::<UInt64Type>(rows, |r| nft(r).and_then(|n| n.rule_handle)),
        dict(rows, |r| nft(r).map(|n| n.verdict.as_str())),
        dict(rows, |r| nft(r).and_then(|n| n.verdict_chain.as_deref())),
        boolean(rows, |r| nft(r).map(|n| n.policy)),
    ];
    let present = rows.iter().map(|r| nft(r).is_some()).collect();
    struct_array(nft_fields(), children, present)
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

fn t(r: &Row) -> Option<&crate::model::event::Tracking> {
    r.event.tracking.as_ref()
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

// ---- the table ------------------------------------------------------------------------------

macro_rules! col {
    ($name:literal, $ty:expr, $dict:expr, $build:expr) => {
        Column {
            name: $name,
            data_type: || $ty,
            build: $build,
            dictionary: $dict,
        }
    };
}

/// Every column, in file order. `time` must stay first: it is the declared sort column.
pub static COLUMNS: &[Column] = &[
    col!(
        "time",
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        false,
        |rows| Arc::new(
            rows.iter()
                .map(|r| r.time)
                .collect::<TimestampNanosecondArray>()
                .with_timezone("UTC")
        )
    ),
    col!("timestamp_mono_ns", DataType::UInt64, false, |rows| prim::<
        UInt64Type,
    >(
        rows,
        |r| r.common().map(|c| c.timestamp)
    )),
    col!("host", dict_type(), true, |rows| dict(rows, |r| r
        .host
        .as_deref())),
    col!("kernel", dict_type(), true, |rows| dict(rows, |r| r
        .kernel
        .as_deref())),
    col!("probe_kind", dict_type(), true, |rows| dict(rows, |r| r
        .probe_kind
        .as_deref())),
    col!("probe", dict_type(), true, |rows| dict(rows, |r| r
        .event
        .probe
        .as_ref()
        .map(|p| p.name.as_str()))),
    col!("probe_spec", dict_type(), true, |rows| {
        let mut builder = StringDictionaryBuilder::<Int32Type>::new();
        let mut spec = String::new();
        for row in rows {
            match (&row.event.probe, &row.probe_kind) {
                (Some(probe), kind) => {
                    spec.clear();
                    let marker = match probe.kind {
                        crate::model::event::ProbeKind::Unknown => kind.as_deref().unwrap_or("?"),
                        known => known.marker(),
                    };
                    spec.push_str(marker);
                    spec.push(':');
                    spec.push_str(&probe.name);
                    builder.append_value(&spec);
                }
                (None, _) => builder.append_null(),
            }
        }
        Arc::new(builder.finish())
    }),
    col!("cpu", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| r.common().map(|c| c.cpu)
    )),
    col!("pid", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| r.common().map(|c| c.pid)
    )),
    col!("tid", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| r.common().map(|c| c.tid)
    )),
    col!("comm", dict_type(), true, |rows| dict(rows, |r| r
        .common()
        .map(|c| c.comm.as_str()))),
    col!(
        "ifindex",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| r.event.dev.as_ref().map(|d| d.ifindex))
    ),
    col!("dev", dict_type(), true, |rows| dict(rows, |r| r
        .event
        .dev
        .as_ref()
        .map(|d| d.name.as_str()))),
    col!("rx_ifindex", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.dev.as_ref().and_then(|d| d.rx_ifindex)
    )),
    col!("netns_inum", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.netns.as_ref().map(|n| n.inum)
    )),
    col!("netns_cookie", DataType::UInt64, true, |rows| prim::<
        UInt64Type,
    >(
        rows,
        |r| r.event.netns.as_ref().and_then(|n| n.cookie)
    )),
    col!("tracking_id", DataType::Utf8, false, |rows| {
        let ids: Vec<Option<String>> = rows
            .iter()
            .map(|r| r.event.tracking.as_ref().map(|t| t.id()))
            .collect();
        Arc::new(StringArray::from(ids))
    }),
    col!("journey_index", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.tracking.as_ref().and_then(|t| t.index)
    )),
    col!(
        "tracking",
        DataType::Struct(tracking_fields()),
        true,
        build_tracking
    ),
    col!("drop_reason", dict_type(), true, |rows| dict(rows, |r| r
        .event
        .drop
        .as_ref()
        .map(|d| d.reason.as_str()))),
    col!(
        "drop_code",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| r.event.drop.as_ref().map(|d| d.code))
    ),
    col!("drop_subsystem", dict_type(), true, |rows| dict(
        rows,
        |r| r.event.drop.as_ref()?.subsystem.as_deref()
    )),
    col!("retval", DataType::Int64, true, |rows| prim::<Int64Type>(
        rows,
        |r| r.event.retval
    )),
    // skb: every scalar of the section, flattened (cheap, and what people filter on).
    col!(
        "skb_addr",
        DataType::UInt64,
        false,
        |rows| prim::<UInt64Type>(rows, |r| r.skb().map(|s| s.addr))
    ),
    col!(
        "skb_head",
        DataType::UInt64,
        false,
        |rows| prim::<UInt64Type>(rows, |r| r.skb().map(|s| s.head))
    ),
    col!(
        "skb_len",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| r.skb().map(|s| s.len))
    ),
    col!("skb_data_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.skb().map(|s| s.data_len)
    )),
    col!(
        "skb_mark",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| r.skb().map(|s| s.mark))
    ),
    col!(
        "skb_hash",
        DataType::UInt32,
        false,
        |rows| prim::<UInt32Type>(rows, |r| r.skb().map(|s| s.hash))
    ),
    col!("skb_protocol", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.skb().map(|s| s.protocol)
    )),
    col!("skb_pkt_type", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| r.skb().map(|s| s.pkt_type)
    )),
    col!("skb_priority", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.skb().map(|s| s.priority)
    )),
    col!("skb_ip_summed", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| r.skb().map(|s| s.ip_summed)
    )),
    col!("skb_cloned", DataType::Boolean, true, |rows| boolean(
        rows,
        |r| r.skb().map(|s| s.cloned)
    )),
    col!(
        "skb_users",
        DataType::UInt32,
        true,
        |rows| prim::<UInt32Type>(rows, |r| r.skb().map(|s| s.users))
    ),
    col!("skb_dataref", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.skb().map(|s| s.dataref)
    )),
    col!("skb_gso_size", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.skb().map(|s| s.gso_size)
    )),
    col!("skb_gso_segs", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.skb().map(|s| s.gso_segs)
    )),
    col!("skb_gso_type", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.skb().map(|s| s.gso_type)
    )),
    col!("skb_vlan_tci", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.skb().and_then(|s| s.vlan_tci)
    )),
    col!("skb_vlan_proto", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.skb().and_then(|s| s.vlan_proto)
    )),
    // packet section.
    col!("packet_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.packet.as_ref().map(|p| p.len)
    )),
    col!("packet_caplen", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.packet.as_ref().map(|p| p.data.0.len() as u32)
    )),
    col!("packet_layer", dict_type(), true, |rows| dict(rows, |r| r
        .event
        .packet
        .as_ref()
        .map(|p| match p.layer {
            crate::model::event::Layer::L2 => "l2",
            crate::model::event::Layer::L3 => "l3",
        }))),
    col!("packet_linktype", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.event.packet.as_ref().map(|p| p.linktype)
    )),
    // Dissected packet fields (lib/dissect.rs): the outermost packet, then the tunnel and the
    // packet it carries.
    col!("eth_src", DataType::Utf8, true, |rows| string(rows, |r| r
        .dissection
        .as_ref()?
        .eth
        .as_ref()
        .map(|e| e.src.as_str()))),
    col!("eth_dst", DataType::Utf8, true, |rows| string(rows, |r| r
        .dissection
        .as_ref()?
        .eth
        .as_ref()
        .map(|e| e.dst.as_str()))),
    col!(
        "ethertype",
        DataType::UInt16,
        true,
        |rows| prim::<UInt16Type>(rows, |r| r
            .dissection
            .as_ref()?
            .eth
            .as_ref()
            .map(|e| e.ethertype))
    ),
    col!("vlan", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| r.dissection.as_ref()?.vlans.first().copied()
    )),
    col!("arp_op", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| r.dissection.as_ref()?.arp.as_ref().map(|a| a.op)
    )),
    col!(
        "ip_version",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| r.ip().map(|ip| ip.version))
    ),
    col!("src", DataType::Utf8, true, |rows| string(rows, |r| {
        let d = r.dissection.as_ref()?;
        d.ip.as_ref()
            .map(|ip| ip.src.as_str())
            .or_else(|| d.arp.as_ref().map(|a| a.sender_ip.as_str()))
    })),
    col!("dst", DataType::Utf8, true, |rows| string(rows, |r| {
        let d = r.dissection.as_ref()?;
        d.ip.as_ref()
            .map(|ip| ip.dst.as_str())
            .or_else(|| d.arp.as_ref().map(|a| a.target_ip.as_str()))
    })),
    col!("ip_proto", DataType::UInt8, true, |rows| prim::<UInt8Type>(
        rows,
        |r| r.ip().map(|ip| ip.proto)
    )),
    col!("ttl", DataType::UInt8, true, |rows| prim::<UInt8Type>(
        rows,
        |r| r.ip().map(|ip| ip.ttl)
    )),
    col!("ip_len", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| r.ip().map(|ip| ip.len)
    )),
    col!("sport", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| r.l4()?.sport
    )),
    col!("dport", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| r.l4()?.dport
    )),
    col!(
        "tcp_flags",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| r.l4()?.tcp_flags)
    ),
    col!(
        "icmp_type",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| r.l4()?.icmp_type)
    ),
    col!(
        "icmp_code",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| r.l4()?.icmp_code)
    ),
    col!("payload_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.l4().map(|l4| l4.payload_len)
    )),
    col!("tunnel", dict_type(), true, |rows| dict(rows, |r| r
        .dissection
        .as_ref()?
        .tunnel
        .as_ref()
        .map(|t| t.kind.as_str()))),
    col!("tunnel_vni", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| r.dissection.as_ref()?.tunnel.as_ref().map(|t| t.vni)
    )),
    col!("inner_src", DataType::Utf8, true, |rows| string(
        rows,
        |r| r.inner()?.ip.as_ref().map(|ip| ip.src.as_str())
    )),
    col!("inner_dst", DataType::Utf8, true, |rows| string(
        rows,
        |r| r.inner()?.ip.as_ref().map(|ip| ip.dst.as_str())
    )),
    col!("inner_ip_proto", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| r.inner()?.ip.as_ref().map(|ip| ip.proto)
    )),
    col!("inner_sport", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.inner()?.l4.as_ref()?.sport
    )),
    col!("inner_dport", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| r.inner()?.l4.as_ref()?.dport
    )),
    col!("dissect_error", dict_type(), true, |rows| dict(rows, |r| r
        .dissection
        .as_ref()?
        .error
        .as_deref())),
    col!("ct", DataType::Struct(ct_fields()), true, build_ct),
    col!("nft", DataType::Struct(nft_fields()), true, build_nft),
    col!("stack", DataType::List(stack_item()), true, build_stack),
    col!("extra", DataType::Utf8, true, |rows| string(rows, |r| r
        .extra
        .as_deref())),
    col!("packet", DataType::Binary, false, |rows| binary(
        rows,
        |r| r.event.packet.as_ref().map(|p| p.data.0.as_slice())
    )),
];

/// Position of `name` in [`COLUMNS`].
pub fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}
