//! JSON lines of events, written straight into a buffer.
//!
//! Contract: the bytes are those `serde_json` writes for a `serde_json::Value` made from the
//! owned event (`serde_json::to_value`), with `time`, `parsed` and unknown sections added: every
//! object's keys in sorted order (the `Value` map's order), optional fields left out where serde
//! skips them, byte strings as lowercase hex, strings escaped as serde_json escapes them. Each
//! writer names every field of its type (no `..`), so a field added to the event model or the
//! dissection does not compile until it is written here too; `tests/print.rs` compares the
//! output with serde's.

use super::{Shown, Unknown};
use crate::model::dissect::{ArpInfo, Dissection, EthInfo, IpInfo, L4Info, SllInfo, TunnelInfo};
use crate::model::event::{Layer, Netns, Skb};
use crate::model::view::{
    CommonView, ConntrackView, CtTupleView, DevView, DropView, EventView, NftView, PacketView,
    ProbeView, StackView, TrackingView,
};

/// Top-level keys the printer knows, sorted.
const KEYS: [&str; 14] = [
    "common", "ct", "dev", "drop", "netns", "nft", "packet", "parsed", "probe", "retval", "skb",
    "stack", "time", "tracking",
];

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
    for key in KEYS {
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
        "common" => write_if(object, key, shown.common, event.common.as_ref(), common),
        "ct" => write_if(object, key, shown.ct, event.ct.as_ref(), conntrack),
        "dev" => write_if(object, key, shown.dev, event.dev.as_ref(), dev),
        "drop" => write_if(object, key, shown.drop, event.drop.as_ref(), drop_section),
        "netns" => write_if(object, key, shown.netns, event.netns.as_ref(), netns),
        "nft" => write_if(object, key, shown.nft, event.nft.as_ref(), nft),
        "packet" => write_if(object, key, shown.packet, event.packet.as_ref(), packet),
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
        "probe" => write_if(object, key, shown.probe, event.probe.as_ref(), probe),
        "retval" => write_if(object, key, shown.retval, event.retval, |out, v| {
            int(out, v);
        }),
        "skb" => write_if(object, key, shown.skb, event.skb.as_ref(), skb),
        "stack" => write_if(object, key, shown.stack, event.stack.as_ref(), stack),
        "time" => write_if(object, key, shown.time, time, string),
        "tracking" => write_if(
            object,
            key,
            shown.tracking,
            event.tracking.as_ref(),
            tracking,
        ),
        _ => false,
    }
}

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

fn common(out: &mut Vec<u8>, c: &CommonView) {
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

fn probe(out: &mut Vec<u8>, p: &ProbeView) {
    let ProbeView { kind, name } = p;
    let mut o = Object::new(out);
    o.str("kind", kind.serde_name());
    o.str("name", name);
    o.end();
}

fn packet(out: &mut Vec<u8>, p: &PacketView) {
    let PacketView {
        data,
        len,
        layer,
        linktype,
    } = p;
    let mut o = Object::new(out);
    hex(o.key("data"), data);
    o.str(
        "layer",
        match layer {
            Layer::L2 => "l2",
            Layer::L3 => "l3",
        },
    );
    o.int("len", *len);
    o.int("linktype", *linktype);
    o.end();
}

fn skb(out: &mut Vec<u8>, s: &Skb) {
    let Skb {
        addr,
        head,
        len,
        data_len,
        mark,
        hash,
        protocol,
        pkt_type,
        priority,
        ip_summed,
        cloned,
        users,
        dataref,
        gso_size,
        gso_segs,
        gso_type,
        vlan_tci,
        vlan_proto,
    } = s;
    let mut o = Object::new(out);
    o.int("addr", *addr);
    o.bool("cloned", *cloned);
    o.int("data_len", *data_len);
    o.int("dataref", *dataref);
    o.int("gso_segs", *gso_segs);
    o.int("gso_size", *gso_size);
    o.int("gso_type", *gso_type);
    o.int("hash", *hash);
    o.int("head", *head);
    o.int("ip_summed", *ip_summed);
    o.int("len", *len);
    o.int("mark", *mark);
    o.int("pkt_type", *pkt_type);
    o.int("priority", *priority);
    o.int("protocol", *protocol);
    o.int("users", *users);
    o.opt_int("vlan_proto", *vlan_proto);
    o.opt_int("vlan_tci", *vlan_tci);
    o.end();
}

fn dev(out: &mut Vec<u8>, d: &DevView) {
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

fn netns(out: &mut Vec<u8>, n: &Netns) {
    let Netns { inum, cookie } = n;
    let mut o = Object::new(out);
    o.opt_int("cookie", *cookie);
    o.int("inum", *inum);
    o.end();
}

fn drop_section(out: &mut Vec<u8>, d: &DropView) {
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

fn tracking(out: &mut Vec<u8>, t: &TrackingView) {
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

fn tuple(out: &mut Vec<u8>, t: &CtTupleView) {
    let CtTupleView {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
    } = t;
    let mut o = Object::new(out);
    o.opt_int("dport", *dport);
    o.str("dst", dst);
    o.opt_int("icmp_code", *icmp_code);
    o.opt_int("icmp_id", *icmp_id);
    o.opt_int("icmp_type", *icmp_type);
    o.int("proto", *proto);
    o.opt_int("sport", *sport);
    o.str("src", src);
    o.end();
}

fn conntrack(out: &mut Vec<u8>, c: &ConntrackView) {
    let ConntrackView {
        state,
        status,
        zone,
        mark,
        labels,
        orig,
        reply,
        proto_state,
    } = c;
    let mut o = Object::new(out);
    if let Some(labels) = labels {
        hex(o.key("labels"), labels);
    }
    o.int("mark", *mark);
    tuple(o.key("orig"), orig);
    if let Some(proto_state) = proto_state {
        o.str("proto_state", proto_state);
    }
    tuple(o.key("reply"), reply);
    o.str("state", state);
    o.int("status", *status);
    o.int("zone", *zone);
    o.end();
}

fn nft(out: &mut Vec<u8>, n: &NftView) {
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

fn stack(out: &mut Vec<u8>, s: &StackView) {
    let StackView { frames } = s;
    let mut o = Object::new(out);
    let out = o.key("frames");
    out.push(b'[');
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let crate::model::view::StackFrameView { addr, symbol } = frame;
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

/// A JSON object being written: keys must come in sorted order (callers' duty).
struct Object<'b> {
    out: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> Object<'b> {
    fn new(out: &'b mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"key":` (after a comma if needed) and returns the buffer for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn int(&mut self, key: &str, value: impl itoa::Integer) {
        int(self.key(key), value);
    }

    /// An optional number, left out when `None` (serde's `skip_serializing_if`).
    fn opt_int(&mut self, key: &str, value: Option<impl itoa::Integer>) {
        if let Some(value) = value {
            self.int(key, value);
        }
    }

    fn str(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A JSON string as serde_json writes it: copied as is unless it holds a character JSON
/// requires escaping (control characters, `"` and `\`), then serde_json's own escaping.
pub(super) fn string(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Bytes as a string of lowercase hex ([`crate::model::event::Bytes`] in JSON).
fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 2);
    out.push(b'"');
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}
