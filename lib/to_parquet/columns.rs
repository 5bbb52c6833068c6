//! The Arrow schema of `trail-to-parquet` and how each column is computed from an event.
//!
//! One table, [`COLUMNS`], names every column once: its Arrow type and the function that builds
//! the column for a slice of rows. The schema, the partition columns left out of dataset files,
//! and the per-column encoding settings all derive from it, so adding a column touches one entry.
//! A section's columns are defined in its own file (`model::sections::*::COLUMNS`); this module
//! defines the columns that are no section's (the row's context and the dissected packet) and
//! [`LAYOUT`], the order of the groups in the file.
//! The normative description, with the reason for each choice, is `schemas/parquet.md`;
//! [`SCHEMA_VERSION`] changes with it.
//!
//! Conventions: every column is nullable, and null means "the section is absent" (an event
//! without `skb` has null `skb_*` columns), never "zero". Unsigned stream fields keep their
//! unsigned Arrow types so values round-trip exactly. Low-cardinality strings are
//! `Dictionary(Int32, Utf8)`, which Parquet stores dictionary-encoded.

use std::sync::{Arc, LazyLock};

use arrow::array::TimestampNanosecondArray;
use arrow::datatypes::{DataType, TimeUnit, UInt16Type, UInt32Type, UInt8Type};

use crate::model::dissect::Dissection;
use crate::model::sections::parquet::{col, dict, dict_type, prim, string};
pub use crate::model::sections::parquet::{Build, Column, Row};
use crate::model::sections::{
    common, conntrack, dev, drop, netns, nft, packet, probe, retval, skb, stack, tracking,
};

/// Version of the Parquet layout (`schemas/parquet.md`), stored in every file's key-value
/// metadata as `trail.parquet_schema`. Additions bump the minor part, anything else the major.
pub const SCHEMA_VERSION: &str = "1.0";

fn ip(r: &Row) -> Option<&crate::model::dissect::IpInfo> {
    r.dissection.as_ref()?.ip.as_ref()
}

fn l4(r: &Row) -> Option<&crate::model::dissect::L4Info> {
    r.dissection.as_ref()?.l4.as_ref()
}

fn inner(r: &Row) -> Option<&Dissection> {
    r.dissection.as_ref()?.inner.as_deref()
}

/// Wall-clock time, the declared sort column: first in the file.
const TIME: &[Column] = &[col!(
    "time",
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
    false,
    |rows| Arc::new(
        rows.iter()
            .map(|r| r.time)
            .collect::<TimestampNanosecondArray>()
            .with_timezone("UTC")
    )
)];

/// Where the event comes from, from the row's context.
const ORIGIN: &[Column] = &[
    col!("host", dict_type(), true, |rows| dict(rows, |r| r
        .host
        .as_deref())),
    col!("kernel", dict_type(), true, |rows| dict(rows, |r| r
        .kernel
        .as_deref())),
];

/// Dissected packet fields (`model::dissect`): the outermost packet, then the tunnel and the
/// packet it carries.
const DISSECTED: &[Column] = &[
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
        |rows| prim::<UInt8Type>(rows, |r| ip(r).map(|ip| ip.version))
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
        |r| ip(r).map(|ip| ip.proto)
    )),
    col!("ttl", DataType::UInt8, true, |rows| prim::<UInt8Type>(
        rows,
        |r| ip(r).map(|ip| ip.ttl)
    )),
    col!("ip_len", DataType::UInt32, true, |rows| prim::<UInt32Type>(
        rows,
        |r| ip(r).map(|ip| ip.len)
    )),
    col!("sport", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| l4(r)?.sport
    )),
    col!("dport", DataType::UInt16, true, |rows| prim::<UInt16Type>(
        rows,
        |r| l4(r)?.dport
    )),
    col!(
        "tcp_flags",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| l4(r)?.tcp_flags)
    ),
    col!(
        "icmp_type",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| l4(r)?.icmp_type)
    ),
    col!(
        "icmp_code",
        DataType::UInt8,
        true,
        |rows| prim::<UInt8Type>(rows, |r| l4(r)?.icmp_code)
    ),
    col!("payload_len", DataType::UInt32, true, |rows| prim::<
        UInt32Type,
    >(
        rows,
        |r| l4(r).map(|l4| l4.payload_len)
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
        |r| inner(r)?.ip.as_ref().map(|ip| ip.src.as_str())
    )),
    col!("inner_dst", DataType::Utf8, true, |rows| string(
        rows,
        |r| inner(r)?.ip.as_ref().map(|ip| ip.dst.as_str())
    )),
    col!("inner_ip_proto", DataType::UInt8, true, |rows| prim::<
        UInt8Type,
    >(
        rows,
        |r| inner(r)?.ip.as_ref().map(|ip| ip.proto)
    )),
    col!("inner_sport", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| inner(r)?.l4.as_ref()?.sport
    )),
    col!("inner_dport", DataType::UInt16, true, |rows| prim::<
        UInt16Type,
    >(
        rows,
        |r| inner(r)?.l4.as_ref()?.dport
    )),
    col!("dissect_error", dict_type(), true, |rows| dict(rows, |r| r
        .dissection
        .as_ref()?
        .error
        .as_deref())),
];

/// Unknown sections, as one JSON object.
const EXTRA: &[Column] = &[col!("extra", DataType::Utf8, true, |rows| string(
    rows,
    |r| r.extra.as_deref()
))];

/// The file's columns, group by group, in order (`schemas/parquet.md`). New columns go at the
/// end of the section groups, before `extra`, with a minor [`SCHEMA_VERSION`] bump.
pub const LAYOUT: &[&[Column]] = &[
    TIME,
    common::CLOCK_COLUMNS,
    ORIGIN,
    probe::COLUMNS,
    common::COLUMNS,
    dev::COLUMNS,
    netns::COLUMNS,
    tracking::COLUMNS,
    drop::COLUMNS,
    retval::COLUMNS,
    skb::COLUMNS,
    packet::COLUMNS,
    DISSECTED,
    conntrack::COLUMNS,
    nft::COLUMNS,
    stack::COLUMNS,
    EXTRA,
    packet::DATA_COLUMNS,
];

/// Every column, in file order. `time` must stay first: it is the declared sort column.
pub static COLUMNS: LazyLock<Vec<Column>> = LazyLock::new(|| {
    LAYOUT
        .iter()
        .flat_map(|group| group.iter().copied())
        .collect()
});

/// Position of `name` in [`COLUMNS`].
pub fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sections::with_sections;

    /// Every section's columns are in the file, and no name is there twice.
    macro_rules! check_sections {
        ($($(#[$doc:meta])* $field:ident in $module:ident: $Owned:ident, $View:ident;)*) => {
            $(
                for c in $module::COLUMNS {
                    assert!(
                        COLUMNS.iter().any(|placed| placed.name == c.name),
                        "column {} of section {} has no place in LAYOUT",
                        c.name,
                        stringify!($field),
                    );
                }
            )*
        };
    }

    #[test]
    fn every_section_has_its_columns_in_the_file() {
        with_sections!(check_sections);
        let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names[0], "time");
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a column name is there twice");
    }
}
