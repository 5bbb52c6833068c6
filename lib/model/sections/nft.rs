//! `nft`: the nftables rule or chain policy that gave a verdict.

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Fields, UInt64Type};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json::Object;
use super::parquet::{boolean, col, dict, dict_type, nullable, prim, struct_array, Column, Row};
use super::text::push_int;
use crate::model::view::{walk_map, Cursor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Nft {
    pub table: String,
    pub chain: String,
    pub table_handle: u64,
    pub chain_handle: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_handle: Option<u64>,
    /// `accept`, `drop`, `continue`, `jump`, `goto`, `return`, `queue`, `stolen`, ...
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_chain: Option<String>,
    /// Whether the verdict came from the chain's policy rather than a rule.
    pub policy: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NftView<'a> {
    pub table: &'a str,
    pub chain: &'a str,
    pub table_handle: u64,
    pub chain_handle: u64,
    pub rule_handle: Option<u64>,
    pub verdict: &'a str,
    pub verdict_chain: Option<&'a str>,
    pub policy: bool,
}

pub fn view(n: &Nft) -> NftView<'_> {
    let Nft {
        table,
        chain,
        table_handle,
        chain_handle,
        rule_handle,
        verdict,
        verdict_chain,
        policy,
    } = n;
    NftView {
        table,
        chain,
        table_handle: *table_handle,
        chain_handle: *chain_handle,
        rule_handle: *rule_handle,
        verdict,
        verdict_chain: verdict_chain.as_deref(),
        policy: *policy,
    }
}

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> Option<NftView<'a>> {
    let mut v = NftView::default();
    walk_map!(c, {
        b"table" => v.table = c.str()?,
        b"chain" => v.chain = c.str()?,
        b"table_handle" => v.table_handle = c.uint()?,
        b"chain_handle" => v.chain_handle = c.uint()?,
        b"rule_handle" => v.rule_handle = c.option(Cursor::uint)?,
        b"verdict" => v.verdict = c.str()?,
        b"verdict_chain" => v.verdict_chain = c.option(Cursor::str)?,
        b"policy" => v.policy = c.bool()?,
    });
    Some(v)
}

pub fn json(out: &mut Vec<u8>, n: &NftView) {
    let NftView {
        table,
        chain,
        table_handle,
        chain_handle,
        rule_handle,
        verdict,
        verdict_chain,
        policy,
    } = n;
    let mut o = Object::new(out);
    o.str("chain", chain);
    o.int("chain_handle", *chain_handle);
    o.bool("policy", *policy);
    o.opt_int("rule_handle", *rule_handle);
    o.str("table", table);
    o.int("table_handle", *table_handle);
    o.str("verdict", verdict);
    if let Some(verdict_chain) = verdict_chain {
        o.str("verdict_chain", verdict_chain);
    }
    o.end();
}

/// Text of the detail line: `nft table T chain C handle H VERDICT [CHAIN] (policy)`.
pub fn text(line: &mut String, nft: &NftView) {
    line.push_str("nft table ");
    line.push_str(nft.table);
    line.push_str(" chain ");
    line.push_str(nft.chain);
    if let Some(handle) = nft.rule_handle {
        line.push_str(" handle ");
        push_int(line, handle);
    }
    line.push(' ');
    line.push_str(nft.verdict);
    if let Some(chain) = nft.verdict_chain {
        line.push(' ');
        line.push_str(chain);
    }
    if nft.policy {
        line.push_str(" (policy)");
    }
}

fn nft(r: &Row) -> Option<&Nft> {
    r.event.nft.as_ref()
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

pub const COLUMNS: &[Column] = &[col!("nft", DataType::Struct(nft_fields()), true, build_nft)];
