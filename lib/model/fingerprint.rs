//! Packet fingerprints for trail-track: what stays the same while a packet travels.
//!
//! Contract: [`fingerprint`] reads captured bytes (any link type trail produces) down through
//! tunnels (VXLAN, Geneve, GRE, IPIP/SIT, at most [`MAX_DEPTH`] levels) and returns two hashes
//! of the innermost packet, or `None` when there is nothing to fingerprint. The layers are found
//! by [`crate::model::dissect`] (one parser for display, filters, export and tracking); this module only
//! chooses which of their bytes to hash:
//! - `identity` ignores everything that forwarding, NAT and encapsulation change: addresses,
//!   ports, ICMP echo id, TTL/hop limit, checksums, TOS, link headers, tunnel headers. It covers
//!   the IP protocol, IPv4 id, IP length, TCP seq/ack/flags/options (options not on SYN, which
//!   MSS clamping rewrites), UDP length, ICMP type/code/sequence, and the first
//!   [`PAYLOAD_BYTES`] bytes of L4 payload.
//! - `exact` adds every layer's addresses and ports, and the tunnel depth.
//!
//! Both are only as good as the captured bytes: two captures truncated at different points
//! within the first `PAYLOAD_BYTES` of payload disagree, and identical packets (e.g. IPv6 pure
//! ACKs with equal seq/ack/options) agree. `schemas/journeys.md` lists the consequences.

use crate::model::dissect::{dissect_layout, Dissection};
use crate::model::event::{Layer, Packet};

/// Tunnel levels decoded at most.
pub const MAX_DEPTH: u8 = crate::model::dissect::MAX_TUNNEL_DEPTH;
/// L4 payload bytes hashed.
pub const PAYLOAD_BYTES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub identity: u64,
    pub exact: u64,
    /// Number of tunnel headers around the innermost packet.
    pub depth: u8,
}

/// FNV-1a: deterministic across runs and builds, fast on short inputs.
struct Hasher(u64);

impl Hasher {
    fn new() -> Hasher {
        Hasher(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Fingerprints an event's packet.
pub fn fingerprint(packet: &Packet) -> Option<Fingerprint> {
    fingerprint_parts(&packet.data.0, packet.len, packet.layer, packet.linktype)
}

/// Fingerprints a packet given by its parts, as [`dissect_layout`] takes them.
pub fn fingerprint_parts(
    data: &[u8],
    len: u32,
    layer: Layer,
    linktype: u32,
) -> Option<Fingerprint> {
    if data.is_empty() {
        return None;
    }
    let dissection = dissect_layout(data, len, layer, linktype);
    let mut outer = Hasher::new();
    match identity(&dissection, data, &mut outer) {
        Some((identity, depth)) => {
            outer.u64(identity);
            outer.u64(u64::from(depth));
            Some(Fingerprint {
                identity,
                exact: outer.0,
                depth,
            })
        }
        None => {
            // Not IP (ARP, LLDP, ...): the whole frame is the best identity there is.
            let mut h = Hasher::new();
            h.bytes(&data[..data.len().min(128)]);
            Some(Fingerprint {
                identity: h.0,
                exact: h.0,
                depth: 0,
            })
        }
    }
}

/// Returns (identity of the innermost packet, tunnel depth); hashes what identifies each level
/// of tunnel (addresses, ports, ICMP echo id) into `outer`.
fn identity(d: &Dissection, data: &[u8], outer: &mut Hasher) -> Option<(u64, u8)> {
    let ip = d.ip.as_ref()?;
    let at = d.layout.ip?;
    let l4 = d.layout.ip_payload;
    let mut id = Hasher::new();
    id.bytes(&[ip.version, ip.proto]);
    id.u64(u64::from(ip.len));
    if ip.version == 4 {
        outer.bytes(data.get(at + 12..at + 20)?);
        id.u64(u64::from(ip.id));
    } else {
        outer.bytes(data.get(at + 8..at + 40)?);
        id.u64(u64::from(d.layout.frag_id));
    }
    // Fragment offset and more-fragments flag, not don't-fragment (which PMTU probing flips).
    id.u64(u64::from(ip.frag_offset) | u64::from(ip.more_fragments));
    outer.bytes(&[ip.proto]);
    if ip.frag_offset != 0 {
        // A later fragment: no L4 header, the payload is all there is.
        id.bytes(payload(data, l4));
        return Some((id.0, 0));
    }
    if let Some(inner) = &d.inner {
        if let Some((sport, dport)) = d.l4.as_ref().and_then(|l4| Some((l4.sport?, l4.dport?))) {
            outer.u64(u64::from(sport) << 16 | u64::from(dport));
        }
        let (identity, depth) = identity(inner, data, outer)?;
        return Some((identity, (depth + 1).min(MAX_DEPTH)));
    }
    match ip.proto {
        17 => {
            outer.u64(u64::from(be32(data, l4)?));
            id.u64(u64::from(be16(data, l4 + 4)?));
            id.bytes(payload(data, l4 + 8));
        }
        6 => {
            let offset = usize::from(*data.get(l4 + 12)? >> 4) * 4;
            let flags = *data.get(l4 + 13)?;
            outer.u64(u64::from(be32(data, l4)?));
            id.bytes(data.get(l4 + 4..l4 + 12)?);
            id.bytes(&[flags]);
            // Options, except on SYN (MSS clamping rewrites them).
            if flags & 0x02 == 0 {
                id.bytes(
                    data.get(l4 + 20..(l4 + offset).min(data.len()))
                        .unwrap_or(&[]),
                );
            }
            id.bytes(payload(data, l4 + offset.max(20)));
        }
        1 | 58 => {
            // Type, code, and for echo the sequence (the id is what NAT rewrites).
            id.bytes(data.get(l4..l4 + 2)?);
            id.bytes(data.get(l4 + 6..l4 + 8).unwrap_or(&[]));
            outer.bytes(data.get(l4 + 4..l4 + 6).unwrap_or(&[]));
            id.bytes(payload(data, l4 + 8));
        }
        _ => id.bytes(payload(data, l4)),
    }
    Some((id.0, 0))
}

fn payload(data: &[u8], at: usize) -> &[u8] {
    data.get(at..)
        .map_or(&[], |rest| &rest[..rest.len().min(PAYLOAD_BYTES)])
}
