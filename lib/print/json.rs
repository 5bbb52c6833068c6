//! JSON lines of events, written straight into a buffer.
//!
//! Contract: the bytes are those `serde_json` writes for a `serde_json::Value` made from the
//! owned event (`serde_json::to_value`), with `time`, `parsed` and unknown sections added: every
//! object's keys in sorted order (the `Value` map's order), optional fields left out where serde
//! skips them, byte strings as lowercase hex, strings escaped as serde_json escapes them. Each
//! writer names every field of its type (no `..`), so a field added to the event model or the
//! dissection does not compile until it is written here too; `tests/print.rs` compares the
//! output with serde's.
//!
//! Each section's object is written by its own file (`model::sections::*::json`), with the
//! primitives of `model::sections::json`; this module merges them with `time`, `parsed` and the
//! unknown sections in sorted key order, and writes the dissected packet (`parsed`).

use std::sync::LazyLock;

use super::{Shown, Unknown};
use crate::model::dissect::{ArpInfo, Dissection, EthInfo, IpInfo, L4Info, SllInfo, TunnelInfo};
use crate::model::event::SECTIONS;
pub(super) use crate::model::sections::json::string;
use crate::model::sections::json::{int, Object};
use crate::model::sections::with_sections;
use crate::model::view::EventView;

/// Top-level keys the printer knows (the sections, `time` and `parsed`), sorted.
static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut keys: Vec<&'static str> = SECTIONS.to_vec();
    keys.extend(["time", "parsed"]);
    keys.sort_unstable();
    keys
});

/// Writes one event's JSON object (no newline). `time` is the event time as text shows it;
/// `shows` says whether `--fields` keeps an unknown section.
pub(super) fn event(
    out: &mut Vec<u8>,
    event: &EventView,
    unknown: &[Unknown],
    time: Option<&str>,
    shown: &Shown,
    shows: impl Fn(&str) -> bool,
) {
    // Unknown sections merge into the sorted keys; a repeated one shows its first value (which
    // is what the raw index gives for every repeat).
    let mut extra: Vec<&Unknown> = unknown
        .iter()
        .filter(|(name, _)| shows(name) || (*name == "parsed" && shown.packet))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    extra.dedup_by(|a, b| a.0 == b.0);
    let mut extra = extra.into_iter().peekable();
    let mut object = Object::new(out);
    for key in KEYS.iter().copied() {
        while let Some((name, value)) = extra.next_if(|(name, _)| *name < key) {
            let _ = serde_json::to_writer(object.key(name), value);
        }
        let collides = extra.next_if(|(name, _)| *name == key);
        if !known(&mut object, key, event, time, shown) {
            // `time` and `parsed` are added after unknown sections: theirs win a collision.
            if let Some((name, value)) = collides {
                let _ = serde_json::to_writer(object.key(name), value);
            }
        }
    }
    for (name, value) in extra {
        let _ = serde_json::to_writer(object.key(name), value);
    }
    object.end();
}

/// Writes the known top-level entry `key` if the event has it and `--fields` keeps it.
fn known(
    object: &mut Object,
    key: &str,
    event: &EventView,
    time: Option<&str>,
    shown: &Shown,
) -> bool {
    match key {
        "parsed" => write_if(
            object,
            key,
            shown.parsed,
            event.packet.as_ref(),
            |out, p| {
                let parsed =
                    crate::model::dissect::dissect_bytes(p.data, p.len, p.layer, p.linktype);
                dissection(out, &parsed);
            },
        ),
        "time" => write_if(object, key, shown.time, time, string),
        _ => section(object, key, event, shown),
    }
}

/// Writes the section `key` with its own writer, from the list of sections.
macro_rules! define_section {
    ($($(#[$doc:meta])* $field:ident in $module:ident: $Owned:ident, $View:ident;)*) => {
        fn section(object: &mut Object, key: &str, event: &EventView, shown: &Shown) -> bool {
            $(
                if key == stringify!($field) {
                    return write_if(
                        object,
                        key,
                        shown.$field,
                        event.$field.as_ref(),
                        $crate::model::sections::$module::json,
                    );
                }
            )*
            false
        }
    };
}
with_sections!(define_section);

fn write_if<T>(
    object: &mut Object,
    key: &str,
    shown: bool,
    value: Option<T>,
    write: impl FnOnce(&mut Vec<u8>, T),
) -> bool {
    match value.filter(|_| shown) {
        Some(value) => {
            write(object.key(key), value);
            true
        }
        None => false,
    }
}

fn dissection(out: &mut Vec<u8>, d: &Dissection) {
    let Dissection {
        len,
        sll,
        eth,
        vlans,
        arp,
        ip,
        l4,
        tunnel,
        inner,
        error,
        layout: _,
    } = d;
    let mut o = Object::new(out);
    if let Some(arp) = arp {
        let ArpInfo {
            op,
            sender_ip,
            target_ip,
            sender_mac,
            target_mac,
            len,
        } = arp;
        let mut a = Object::new(o.key("arp"));
        a.int("len", *len);
        a.int("op", *op);
        a.str("sender_ip", sender_ip);
        a.str("sender_mac", sender_mac);
        a.str("target_ip", target_ip);
        a.str("target_mac", target_mac);
        a.end();
    }
    if let Some(error) = error {
        o.str("error", error);
    }
    if let Some(eth) = eth {
        let EthInfo {
            src,
            dst,
            ethertype,
        } = eth;
        let mut e = Object::new(o.key("eth"));
        e.str("dst", dst);
        e.int("ethertype", *ethertype);
        e.str("src", src);
        e.end();
    }
    if let Some(inner) = inner {
        dissection(o.key("inner"), inner);
    }
    if let Some(ip) = ip {
        let IpInfo {
            version,
            src,
            dst,
            proto,
            ttl,
            tos,
            len,
            id,
            dont_fragment,
            more_fragments,
            frag_offset,
        } = ip;
        let mut i = Object::new(o.key("ip"));
        i.bool("dont_fragment", *dont_fragment);
        i.str("dst", dst);
        i.int("frag_offset", *frag_offset);
        i.int("id", *id);
        i.int("len", *len);
        i.bool("more_fragments", *more_fragments);
        i.int("proto", *proto);
        i.str("src", src);
        i.int("tos", *tos);
        i.int("ttl", *ttl);
        i.int("version", *version);
        i.end();
    }
    if let Some(l4) = l4 {
        let L4Info {
            proto,
            sport,
            dport,
            tcp_flags,
            seq,
            ack,
            win,
            icmp_type,
            icmp_code,
            icmp_id,
            icmp_seq,
            payload_len,
        } = l4;
        let mut l = Object::new(o.key("l4"));
        l.opt_int("ack", *ack);
        l.opt_int("dport", *dport);
        l.opt_int("icmp_code", *icmp_code);
        l.opt_int("icmp_id", *icmp_id);
        l.opt_int("icmp_seq", *icmp_seq);
        l.opt_int("icmp_type", *icmp_type);
        l.int("payload_len", *payload_len);
        l.str("proto", proto);
        l.opt_int("seq", *seq);
        l.opt_int("sport", *sport);
        l.opt_int("tcp_flags", *tcp_flags);
        l.opt_int("win", *win);
        l.end();
    }
    if *len != 0 {
        o.int("len", *len);
    }
    if let Some(sll) = sll {
        let SllInfo {
            packet_type,
            hatype,
            addr,
            protocol,
            ifindex,
        } = sll;
        let mut s = Object::new(o.key("sll"));
        s.str("addr", addr);
        s.int("hatype", *hatype);
        s.opt_int("ifindex", *ifindex);
        s.int("packet_type", *packet_type);
        s.int("protocol", *protocol);
        s.end();
    }
    if let Some(tunnel) = tunnel {
        let TunnelInfo {
            kind,
            vni,
            proto,
            options_len,
        } = tunnel;
        let mut t = Object::new(o.key("tunnel"));
        t.str("kind", kind);
        if *options_len != 0 {
            t.int("options_len", *options_len);
        }
        t.int("proto", *proto);
        t.int("vni", *vni);
        t.end();
    }
    if !vlans.is_empty() {
        let out = o.key("vlans");
        out.push(b'[');
        for (i, vlan) in vlans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            int(out, *vlan);
        }
        out.push(b']');
    }
    o.end();
}
