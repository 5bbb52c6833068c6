//! Packet fingerprints for trail-track: what stays the same while a packet travels.
//!
//! Contract: [`fingerprint`] reads captured bytes (any link type trail produces) down through
//! tunnels (VXLAN, Geneve, GRE, IPIP/SIT, at most [`MAX_DEPTH`] levels) and returns two hashes
//! of the innermost packet, or `None` when there is nothing to fingerprint:
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

use crate::event::{linktype, Layer, Packet};

/// Tunnel levels decoded at most.
pub const MAX_DEPTH: u8 = 4;
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

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_BRIDGED: u16 = 0x6558;

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
    let data = &packet.data.0;
    if data.is_empty() {
        return None;
    }
    let mut outer = Hasher::new();
    let found = match (packet.layer, packet.linktype) {
        (Layer::L3, _) | (_, linktype::RAW) => ip(data, 0, &mut outer, 0),
        (_, linktype::IPV4) | (_, linktype::IPV6) => ip(data, 0, &mut outer, 0),
        (_, linktype::LINUX_SLL) => ether_payload(data, 16, be16(data, 14)?, &mut outer, 0),
        (_, linktype::LINUX_SLL2) => ether_payload(data, 20, be16(data, 0)?, &mut outer, 0),
        _ => ethernet(data, 0, &mut outer, 0),
    };
    match found {
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

/// Returns (identity of the innermost packet, tunnel depth).
fn ethernet(data: &[u8], at: usize, outer: &mut Hasher, level: u8) -> Option<(u64, u8)> {
    let mut ethertype = be16(data, at + 12)?;
    let mut next = at + 14;
    // VLAN tags (802.1Q, 802.1ad, 9100) in the bytes.
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        ethertype = be16(data, next + 2)?;
        next += 4;
    }
    ether_payload(data, next, ethertype, outer, level)
}

fn ether_payload(
    data: &[u8],
    at: usize,
    ethertype: u16,
    outer: &mut Hasher,
    level: u8,
) -> Option<(u64, u8)> {
    match ethertype {
        ETH_IPV4 | ETH_IPV6 => ip(data, at, outer, level),
        _ => None,
    }
}

/// Decodes an IP packet at `at`; descends into tunnels (`level` of them so far).
fn ip(data: &[u8], at: usize, outer: &mut Hasher, level: u8) -> Option<(u64, u8)> {
    if level > MAX_DEPTH {
        return None;
    }
    let version = data.get(at)? >> 4;
    let mut id = Hasher::new();
    let (proto, l4, fragment_rest) = match version {
        4 => {
            let ihl = usize::from(data[at] & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let total = be16(data, at + 2)?;
            let ip_id = be16(data, at + 4)?;
            let frag = be16(data, at + 6)?;
            let proto = *data.get(at + 9)?;
            outer.bytes(data.get(at + 12..at + 20)?);
            id.bytes(&[4, proto]);
            id.u64(u64::from(total));
            id.u64(u64::from(ip_id));
            id.u64(u64::from(frag & 0x3fff));
            (proto, at + ihl, frag & 0x1fff != 0)
        }
        6 => {
            let payload_len = be16(data, at + 4)?;
            outer.bytes(data.get(at + 8..at + 40)?);
            let mut proto = *data.get(at + 6)?;
            let mut next = at + 40;
            let mut fragment_rest = false;
            // Extension headers: hop-by-hop, routing, destination options, fragment.
            for _ in 0..8 {
                match proto {
                    0 | 43 | 60 => {
                        let len = (usize::from(*data.get(next + 1)?) + 1) * 8;
                        proto = *data.get(next)?;
                        next += len;
                    }
                    44 => {
                        let offset = be16(data, next + 2)?;
                        id.u64(u64::from(be32(data, next + 4)?));
                        id.u64(u64::from(offset));
                        fragment_rest = offset & 0xfff8 != 0;
                        proto = *data.get(next)?;
                        next += 8;
                    }
                    _ => break,
                }
            }
            id.bytes(&[6, proto]);
            id.u64(u64::from(payload_len));
            (proto, next, fragment_rest)
        }
        _ => return None,
    };
    outer.bytes(&[proto]);
    if fragment_rest {
        // A later fragment: no L4 header, the payload is all there is.
        id.bytes(payload(data, l4));
        return Some((id.0, 0));
    }
    match proto {
        // IPIP, SIT (IPv6 in IPv4 / IPv6 in IPv6).
        4 | 41 => return tunnel(ip(data, l4, outer, level + 1)),
        47 => {
            if let Some(inner) = gre(data, l4, outer, level + 1) {
                return Some(inner);
            }
        }
        17 => {
            let dport = be16(data, l4 + 2)?;
            outer.u64(u64::from(be32(data, l4)?));
            if dport == 4789 {
                // VXLAN: 8-byte header, then an Ethernet frame.
                return tunnel(ethernet(data, l4 + 16, outer, level + 1));
            }
            if dport == 6081 {
                // Geneve: 8 bytes + options, protocol type like GRE.
                let options = usize::from(*data.get(l4 + 8)? & 0x3f) * 4;
                let protocol = be16(data, l4 + 10)?;
                let start = l4 + 16 + options;
                let inner = if protocol == ETH_BRIDGED {
                    ethernet(data, start, outer, level + 1)
                } else {
                    ether_payload(data, start, protocol, outer, level + 1)
                };
                return tunnel(inner);
            }
            id.u64(u64::from(be16(data, l4 + 4)?));
            id.bytes(payload(data, l4 + 8));
        }
        6 => {
            let offset = usize::from(*data.get(l4 + 12)? >> 4) * 4;
            let flags = *data.get(l4 + 13)?;
            outer.u64(u64::from(be32(data, l4)?));
            id.bytes(data.get(l4 + 4..l4 + 12)?);
            id.bytes(&[flags]);
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

fn tunnel(inner: Option<(u64, u8)>) -> Option<(u64, u8)> {
    inner.map(|(id, depth)| (id, (depth + 1).min(MAX_DEPTH)))
}

fn gre(data: &[u8], at: usize, outer: &mut Hasher, level: u8) -> Option<(u64, u8)> {
    let flags = be16(data, at)?;
    let protocol = be16(data, at + 2)?;
    let mut next = at + 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            next += 4;
        }
    }
    let inner = if protocol == ETH_BRIDGED {
        ethernet(data, next, outer, level)
    } else {
        ether_payload(data, next, protocol, outer, level)
    };
    tunnel(inner)
}

fn payload(data: &[u8], at: usize) -> &[u8] {
    data.get(at..)
        .map_or(&[], |rest| &rest[..rest.len().min(PAYLOAD_BYTES)])
}
