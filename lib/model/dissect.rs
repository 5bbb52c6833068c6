//! Packet dissection for display and analysis: what the captured bytes of an event say.
//!
//! Contract: [`dissect`] never fails and never panics; it decodes as many layers as the bytes
//! allow and says in `error` why it stopped early (a header cut by the snap length, a malformed
//! header, an unknown link type). A payload cut by the snap length is normal and not an error.
//! Lengths (`IpInfo::len`, `L4Info::payload_len`, `Dissection::len`) come from the headers and
//! the packet's original length, never from the number of captured bytes. Fields are those people
//! filter and group on (tcpdump's view), shared by `trail-print`, `trail-to-parquet` and
//! `trail-track`; [`Dissection::summary`] renders them as one `tcpdump -n` style line.
//!
//! etherparse decodes the standard headers; this module adds what it lacks: Linux cooked
//! capture headers (SLL, SLL2), VXLAN (UDP 4789) and Geneve (UDP 6081, with options and
//! protocol type) with their inner packets, the first fragment's transport header, and TCP
//! fields from a header whose options were cut.

use std::net::Ipv6Addr;

use etherparse::err::{ip_auth, ipv4, ipv6, ipv6_exts};
use etherparse::{
    ArpPacketSlice, Ethernet2HeaderSlice, LaxIpPayloadSlice, LaxIpv4Slice, LaxIpv6Slice,
    SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::model::event::{linktype, Layer, Packet};

/// VXLAN's IANA port (RFC 7348); tcpdump and Wireshark match it as source or destination.
pub const VXLAN_PORT: u16 = 4789;
/// Geneve's IANA port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// Tunnels nested deeper than this are not opened: crafted packets could otherwise recurse once
/// per 50 bytes.
pub const MAX_TUNNEL_DEPTH: u8 = 4;
/// VLAN tags decoded at most (QinQ has two; more is unusual but legal).
const MAX_VLAN_TAGS: usize = 8;

/// EtherType of an Ethernet frame inside Geneve ("Transparent Ethernet Bridging").
const ETHERTYPE_TEB: u16 = 0x6558;

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct Dissection {
    /// Original length of the dissected bytes: the packet's length for the outermost packet,
    /// the length given by the tunnel's headers for an inner one.
    #[serde(skip_serializing_if = "is_zero")]
    pub len: u32,
    /// Linux cooked capture header (link types 113 and 276).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sll: Option<SllInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth: Option<EthInfo>,
    /// VLAN ids, outermost first (802.1Q / 802.1ad tags in the bytes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp: Option<ArpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4: Option<L4Info>,
    /// Tunnel header (VXLAN, Geneve) and the packet it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<Box<Dissection>>,
    /// Why decoding stopped early, if it did (e.g. `truncated ipv4 header`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the layers lie in the captured bytes (for [`crate::model::fingerprint`]; not shown).
    #[serde(skip)]
    pub layout: Layout,
}

/// Where the IP layer of a dissection lies in the packet's captured bytes: what
/// [`crate::model::fingerprint`] hashes, found by the same parser that fills the fields. Offsets
/// count from the first captured byte of the packet, inner packets included.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Start of the IP header.
    pub ip: Option<usize>,
    /// Start of the IP payload: the transport header, or a later fragment's data.
    pub ip_payload: usize,
    /// IPv6 fragment header's identification (0 without one).
    pub frag_id: u32,
    /// Address of the packet's first byte: turns the sub-slices the parser walks into offsets.
    base: usize,
    /// [`dissect_layout`]: also open IP-in-IP, SIT and GRE tunnels, and leave address text
    /// empty (formatting it would cost trail-track more than the rest of the dissection).
    bare: bool,
}

/// A layout says where things are, not what the packet is: dissections compare by their fields.
impl PartialEq for Layout {
    fn eq(&self, _: &Layout) -> bool {
        true
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct SllInfo {
    /// 0 to us, 1 broadcast, 2 multicast, 3 to someone else, 4 sent by us.
    pub packet_type: u16,
    /// ARPHRD_ type of the interface (1 Ethernet, 772 loopback, ...).
    pub hatype: u16,
    /// Link-layer source address (as long as the header says, at most 8 bytes).
    pub addr: String,
    /// Protocol of the payload (an EtherType for Ethernet-like interfaces).
    pub protocol: u16,
    /// Interface index (SLL2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct EthInfo {
    pub src: String,
    pub dst: String,
    /// EtherType of the payload after any VLAN tags.
    pub ethertype: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ArpInfo {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_ip: String,
    pub target_ip: String,
    pub sender_mac: String,
    pub target_mac: String,
    /// Length of the ARP message on the wire (rest of the frame, padding included).
    pub len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct IpInfo {
    pub version: u8,
    pub src: String,
    pub dst: String,
    /// Protocol of the payload (after IPv6 extension headers).
    pub proto: u8,
    pub ttl: u8,
    pub tos: u8,
    /// Total length from the header (IPv6: payload length + 40).
    pub len: u32,
    /// IPv4 id / IPv6 flow label.
    pub id: u32,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (IPv4 header or IPv6 fragment header).
    pub frag_offset: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct L4Info {
    /// `tcp`, `udp`, `icmp`, `icmp6`, or the protocol number.
    pub proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// TCP flags byte (FIN 0x01 … CWR 0x80).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Identifier and sequence number of ICMP/ICMPv6 echo (and timestamp) messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_seq: Option<u16>,
    /// Length of the L4 payload, from the headers: bytes after the TCP or UDP header; for ICMP,
    /// ICMPv6 and other protocols the whole L4 message (what tcpdump prints as `length`).
    pub payload_len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct TunnelInfo {
    /// `vxlan` or `geneve`.
    // trail-track's bare dissection ([`dissect_layout`]) also opens `ipip`, `sit` and `gre`
    // (the GRE key, if any, in `vni`); those never reach display or export.
    pub kind: String,
    pub vni: u32,
    /// EtherType of the carried packet (0x6558: Ethernet frame; always so for VXLAN).
    pub proto: u16,
    /// Length of the Geneve options in bytes.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub options_len: u16,
}

fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

/// Decodes a captured packet according to its link type and layer.
pub fn dissect(packet: &Packet) -> Dissection {
    dissect_bytes(&packet.data.0, packet.len, packet.layer, packet.linktype)
}

/// [`dissect`] of a packet given by its parts (`data` captured of `len` bytes, starting at
/// `layer`, of `linktype`), for readers that borrow them from the payload.
pub fn dissect_bytes(data: &[u8], len: u32, layer: Layer, linktype: u32) -> Dissection {
    dissect_with(data, len, layer, linktype, false)
}

/// The dissection [`crate::model::fingerprint`] works from, of a packet given by its parts (`data`
/// captured of `len` bytes, starting at `layer`, of `linktype`): like [`dissect`], and it also
/// opens IP-in-IP, SIT and GRE tunnels (as `ipip`, `sit`, `gre` tunnels with an inner
/// dissection: trail-track follows a packet into every kind of tunnel, while display leaves
/// these closed as tcpdump does by default); address fields (MACs, IPs) are left empty.
pub fn dissect_layout(data: &[u8], len: u32, layer: Layer, linktype: u32) -> Dissection {
    dissect_with(data, len, layer, linktype, true)
}

fn dissect_with(data: &[u8], len: u32, layer: Layer, linktype: u32, bare: bool) -> Dissection {
    let mut d = Dissection {
        len: len.max(data.len() as u32),
        layout: Layout {
            base: data.as_ptr() as usize,
            bare,
            ..Layout::default()
        },
        ..Dissection::default()
    };
    match (layer, linktype) {
        (_, linktype::IPV4) => ipv4_layer(&mut d, data, 0),
        (_, linktype::IPV6) => ipv6_layer(&mut d, data, 0),
        (Layer::L3, _) | (_, linktype::RAW) => ip_by_version(&mut d, data, 0),
        (_, linktype::ETHERNET) => ethernet(&mut d, data, 0),
        (_, linktype::LINUX_SLL) => sll(&mut d, data),
        (_, linktype::LINUX_SLL2) => sll2(&mut d, data),
        (_, other) => d.error = Some(format!("unknown link type {other}")),
    }
    d
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be24(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]])
}

/// `aa:bb:cc:dd:ee:ff` for any address length, without going through the formatter.
fn mac(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    // Hex digits and colons are ASCII: the conversion cannot fail.
    String::from_utf8(out).unwrap_or_default()
}

/// Offset of `bytes` (a sub-slice of the packet's data) from the packet's first byte.
fn offset_of(d: &Dissection, bytes: &[u8]) -> usize {
    (bytes.as_ptr() as usize).saturating_sub(d.layout.base)
}

/// An empty dissection for the packet inside a tunnel of `d`, `len` bytes long.
fn inner_of(d: &Dissection, len: u32) -> Dissection {
    Dissection {
        len,
        layout: Layout {
            base: d.layout.base,
            bare: d.layout.bare,
            ..Layout::default()
        },
        ..Dissection::default()
    }
}

/// Address text, unless the dissection is bare ([`dissect_layout`]).
fn text(d: &Dissection, make: impl FnOnce() -> String) -> String {
    if d.layout.bare {
        String::new()
    } else {
        make()
    }
}

fn fail(d: &mut Dissection, why: &str) {
    d.error = Some(why.to_string());
}

fn ip_by_version(d: &mut Dissection, data: &[u8], depth: u8) {
    match data.first().map(|b| b >> 4) {
        None => fail(d, "truncated ip header"),
        Some(4) => ipv4_layer(d, data, depth),
        Some(6) => ipv6_layer(d, data, depth),
        Some(v) => d.error = Some(format!("unknown ip version {v}")),
    }
}

fn ethernet(d: &mut Dissection, data: &[u8], depth: u8) {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(data) else {
        return fail(d, "truncated ethernet header");
    };
    let ethertype = eth.ether_type().0;
    d.eth = Some(EthInfo {
        src: text(d, || mac(&eth.source())),
        dst: text(d, || mac(&eth.destination())),
        ethertype,
    });
    let rest = &data[eth.slice().len()..];
    ether_payload(d, ethertype, rest, d.len.saturating_sub(14), depth);
}

/// Linux cooked capture v1: type, ARPHRD, address length, 8 address bytes, protocol.
fn sll(d: &mut Dissection, data: &[u8]) {
    if data.len() < 16 {
        return fail(d, "truncated sll header");
    }
    let addr_len = usize::from(be16(data, 4)).min(8);
    let protocol = be16(data, 14);
    d.sll = Some(SllInfo {
        packet_type: be16(data, 0),
        hatype: be16(data, 2),
        addr: mac(&data[6..6 + addr_len]),
        protocol,
        ifindex: None,
    });
    sll_payload(d, protocol, &data[16..], 16);
}

/// Linux cooked capture v2: protocol, reserved, ifindex, ARPHRD, type, address length, address.
fn sll2(d: &mut Dissection, data: &[u8]) {
    if data.len() < 20 {
        return fail(d, "truncated sll2 header");
    }
    let addr_len = usize::from(data[11]).min(8);
    let protocol = be16(data, 0);
    d.sll = Some(SllInfo {
        packet_type: u16::from(data[10]),
        hatype: be16(data, 8),
        addr: mac(&data[12..12 + addr_len]),
        protocol,
        ifindex: Some(u32::from_be_bytes([data[4], data[5], data[6], data[7]])),
    });
    sll_payload(d, protocol, &data[20..], 20);
}

fn sll_payload(d: &mut Dissection, protocol: u16, rest: &[u8], header_len: u32) {
    // Values below 0x0600 are Linux pseudo-protocols (802.2, 802.3 raw, CAN ...), not EtherTypes.
    if protocol >= 0x0600 {
        ether_payload(d, protocol, rest, d.len.saturating_sub(header_len), 0);
    }
}

/// Walks VLAN tags, then decodes the network layer named by `ethertype`. `len` is the original
/// length of `bytes`.
fn ether_payload(
    d: &mut Dissection,
    mut ethertype: u16,
    mut bytes: &[u8],
    mut len: u32,
    depth: u8,
) {
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && d.vlans.len() < MAX_VLAN_TAGS {
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(bytes) else {
            return fail(d, "truncated vlan tag");
        };
        d.vlans.push(tag.vlan_identifier().value());
        ethertype = tag.ether_type().0;
        bytes = &bytes[4..];
        len = len.saturating_sub(4);
        if let Some(eth) = &mut d.eth {
            eth.ethertype = ethertype;
        }
    }
    match ethertype {
        0x0800 => ipv4_layer(d, bytes, depth),
        0x86dd => ipv6_layer(d, bytes, depth),
        0x0806 => arp(d, bytes, len),
        _ => {}
    }
}

fn arp(d: &mut Dissection, bytes: &[u8], len: u32) {
    let Ok(arp) = ArpPacketSlice::from_slice(bytes) else {
        return fail(d, "truncated arp");
    };
    let ipv4 = arp.proto_addr_type().0 == 0x0800;
    let proto_addr = |a: &[u8]| match <[u8; 4]>::try_from(a) {
        Ok(v4) if ipv4 => ipv4_text(v4),
        _ => mac(a),
    };
    d.arp = Some(ArpInfo {
        op: arp.operation().0,
        sender_ip: proto_addr(arp.sender_protocol_addr()),
        target_ip: proto_addr(arp.target_protocol_addr()),
        sender_mac: mac(arp.sender_hw_addr()),
        target_mac: mac(arp.target_hw_addr()),
        len,
    });
}

/// Length of the IP payload according to the headers: the captured payload when complete,
/// else the declared total minus the captured headers (`consumed`).
fn ip_payload_len(payload: &LaxIpPayloadSlice, declared_total: u32, consumed: usize) -> u32 {
    if payload.incomplete {
        declared_total.saturating_sub(consumed as u32)
    } else {
        payload.payload.len() as u32
    }
}

fn ipv4_layer(d: &mut Dissection, bytes: &[u8], depth: u8) {
    let (ip, auth_err) = match LaxIpv4Slice::from_slice(bytes) {
        Ok(ok) => ok,
        Err(ipv4::HeaderSliceError::Len(_)) => return fail(d, "truncated ipv4 header"),
        Err(ipv4::HeaderSliceError::Content(e)) => {
            d.error = Some(match e {
                ipv4::HeaderError::UnexpectedVersion { version_number } => {
                    format!("bad ipv4 header: version {version_number}")
                }
                ipv4::HeaderError::HeaderLengthSmallerThanHeader { ihl } => {
                    format!("bad ipv4 header: ihl {ihl}")
                }
            });
            return;
        }
    };
    let h = ip.header();
    let payload = ip.payload();
    let frag_offset = h.fragments_offset().byte_offset();
    d.ip = Some(IpInfo {
        version: 4,
        src: text(d, || ipv4_text(h.source())),
        dst: text(d, || ipv4_text(h.destination())),
        proto: payload.ip_number.0,
        ttl: h.ttl(),
        tos: h.slice()[1],
        len: u32::from(h.total_len()),
        id: u32::from(h.identification()),
        dont_fragment: h.dont_fragment(),
        more_fragments: h.more_fragments(),
        frag_offset,
    });
    if let Some(err) = auth_err {
        return fail(
            d,
            match err {
                ip_auth::HeaderSliceError::Len(_) => "truncated ip auth header",
                ip_auth::HeaderSliceError::Content(_) => "bad ip auth header",
            },
        );
    }
    d.layout.ip = Some(offset_of(d, bytes));
    d.layout.ip_payload = offset_of(d, payload.payload);
    let consumed = bytes.len() - payload.payload.len();
    let len = ip_payload_len(payload, u32::from(h.total_len()), consumed);
    let first = (frag_offset == 0).then_some(h.more_fragments());
    transport(d, payload.ip_number.0, payload.payload, len, first, depth);
}

fn ipv6_layer(d: &mut Dissection, bytes: &[u8], depth: u8) {
    let (ip, ext_err) = match LaxIpv6Slice::from_slice(bytes) {
        Ok(ok) => ok,
        Err(ipv6::HeaderSliceError::Len(_)) => return fail(d, "truncated ipv6 header"),
        Err(ipv6::HeaderSliceError::Content(ipv6::HeaderError::UnexpectedVersion {
            version_number,
        })) => {
            d.error = Some(format!("bad ipv6 header: version {version_number}"));
            return;
        }
    };
    let h = ip.header();
    let payload = ip.payload();
    let exts = ip.extensions();
    let (more_fragments, frag_offset, frag_id) = exts
        .first_header()
        .map_or((false, 0, 0), |first| fragment_of(first.0, exts.slice()));
    let total = 40 + u32::from(h.payload_length());
    d.ip = Some(IpInfo {
        version: 6,
        src: text(d, || Ipv6Addr::from(h.source()).to_string()),
        dst: text(d, || Ipv6Addr::from(h.destination()).to_string()),
        proto: payload.ip_number.0,
        ttl: h.hop_limit(),
        tos: h.traffic_class(),
        len: total,
        id: h.flow_label().value(),
        dont_fragment: false,
        more_fragments,
        frag_offset,
    });
    if let Some((err, _)) = ext_err {
        return fail(
            d,
            match err {
                ipv6_exts::HeaderSliceError::Len(_) => "truncated ipv6 extension header",
                ipv6_exts::HeaderSliceError::Content(_) => "bad ipv6 extension header",
            },
        );
    }
    d.layout.ip = Some(offset_of(d, bytes));
    d.layout.ip_payload = offset_of(d, payload.payload);
    d.layout.frag_id = frag_id;
    let consumed = bytes.len() - payload.payload.len();
    let len = ip_payload_len(payload, total, consumed);
    let first = (frag_offset == 0).then_some(more_fragments);
    transport(d, payload.ip_number.0, payload.payload, len, first, depth);
}

/// More-fragments flag, byte offset and identification of the fragment header among the IPv6 extension headers
/// that etherparse validated (`exts`, starting with a header of type `next`).
///
/// etherparse's own iterator over these headers must not be used: after a lax parse stopped
/// on a truncated header it walks on past the validated bytes (debug assertion, undefined
/// behaviour in release builds; etherparse 0.21).
fn fragment_of(mut next: u8, mut exts: &[u8]) -> (bool, u16, u32) {
    while exts.len() >= 8 {
        let len = match next {
            44 => {
                let field = be16(exts, 2);
                let id = u32::from_be_bytes([exts[4], exts[5], exts[6], exts[7]]);
                return (field & 1 != 0, field & 0xfff8, id);
            }
            51 => (usize::from(exts[1]) + 2) * 4,
            _ => (usize::from(exts[1]) + 1) * 8,
        };
        next = exts[0];
        exts = exts.get(len..).unwrap_or_default();
    }
    (false, 0, 0)
}

/// Decodes the transport header of an IP payload of `len` bytes (from the headers), of which
/// `bytes` were captured. `fragmented` is `None` for a later fragment (no transport header:
/// nothing to decode), else whether more fragments follow.
fn transport(
    d: &mut Dissection,
    proto: u8,
    bytes: &[u8],
    len: u32,
    fragmented: Option<bool>,
    depth: u8,
) {
    let Some(fragmented) = fragmented else {
        return;
    };
    match proto {
        6 => tcp(d, bytes, len),
        17 => udp(d, bytes, len, fragmented, depth),
        1 => icmp(d, "icmp", bytes, len, &[0, 8, 13, 14, 15, 16, 17, 18]),
        58 => icmp(d, "icmp6", bytes, len, &[128, 129]),
        _ => {
            d.l4 = Some(L4Info {
                proto: proto.to_string(),
                payload_len: len,
                ..L4Info::default()
            });
            if d.layout.bare && depth < MAX_TUNNEL_DEPTH {
                ip_tunnel(d, proto, bytes, len, depth);
            }
        }
    }
}

/// IP-in-IP (4), SIT (41) and GRE (47, RFC 2784/2890: flags and version, protocol type, then
/// checksum, key and sequence number when their flags are set), only in a bare dissection ([`dissect_layout`]).
fn ip_tunnel(d: &mut Dissection, proto: u8, bytes: &[u8], len: u32, depth: u8) {
    let (kind, ethertype, header_len, key) = match proto {
        4 => ("ipip", 0x0800, 0, 0),
        41 => ("sit", 0x86dd, 0, 0),
        47 => {
            if bytes.len() < 4 {
                return fail(d, "truncated gre header");
            }
            let flags = be16(bytes, 0);
            let key_at = 4 + if flags & 0x8000 != 0 { 4 } else { 0 };
            let key = if flags & 0x2000 != 0 && bytes.len() >= key_at + 4 {
                u32::from_be_bytes([
                    bytes[key_at],
                    bytes[key_at + 1],
                    bytes[key_at + 2],
                    bytes[key_at + 3],
                ])
            } else {
                0
            };
            let options = [0x8000u16, 0x2000, 0x1000]
                .iter()
                .filter(|&&bit| flags & bit != 0)
                .count();
            ("gre", be16(bytes, 2), 4 + 4 * options, key)
        }
        _ => return,
    };
    let Some(rest) = bytes.get(header_len..) else {
        return fail(d, "truncated gre header");
    };
    d.tunnel = Some(TunnelInfo {
        kind: kind.into(),
        vni: key,
        proto: ethertype,
        options_len: 0,
    });
    let mut inner = inner_of(d, len.saturating_sub(header_len as u32));
    if ethertype == ETHERTYPE_TEB {
        ethernet(&mut inner, rest, depth + 1);
    } else {
        let inner_len = inner.len;
        ether_payload(&mut inner, ethertype, rest, inner_len, depth + 1);
    }
    d.inner = Some(Box::new(inner));
}

fn tcp(d: &mut Dissection, bytes: &[u8], len: u32) {
    let mut l4 = L4Info {
        proto: "tcp".into(),
        payload_len: len.saturating_sub(20),
        ..L4Info::default()
    };
    // A header whose options were cut by the snap length still has its fixed part: decode that
    // from a copy claiming no options.
    let mut fixed = [0u8; 20];
    let (header, header_len) = match TcpHeaderSlice::from_slice(bytes) {
        Ok(h) => {
            let header_len = h.slice().len();
            (Some(h), header_len)
        }
        Err(_) if bytes.len() >= 20 => {
            let header_len = usize::from(bytes[12] >> 4) * 4;
            if header_len < 20 {
                d.error = Some(format!("bad tcp header: data offset {}", header_len / 4));
            } else {
                d.error = Some("truncated tcp options".into());
            }
            fixed.copy_from_slice(&bytes[..20]);
            fixed[12] = 0x50 | (fixed[12] & 0x0f);
            (TcpHeaderSlice::from_slice(&fixed).ok(), header_len.max(20))
        }
        Err(_) => {
            d.error = Some("truncated tcp header".into());
            (None, 20)
        }
    };
    if let Some(h) = header {
        l4.sport = Some(h.source_port());
        l4.dport = Some(h.destination_port());
        l4.seq = Some(h.sequence_number());
        l4.ack = Some(h.acknowledgment_number());
        l4.win = Some(h.window_size());
        l4.tcp_flags = Some(h.slice()[13]);
        l4.payload_len = len.saturating_sub(header_len as u32);
    }
    d.l4 = Some(l4);
}

fn udp(d: &mut Dissection, bytes: &[u8], len: u32, fragmented: bool, depth: u8) {
    let Ok(h) = UdpHeaderSlice::from_slice(bytes) else {
        d.l4 = Some(L4Info {
            proto: "udp".into(),
            payload_len: len.saturating_sub(8),
            ..L4Info::default()
        });
        return fail(d, "truncated udp header");
    };
    // Like tcpdump: the UDP length field (the whole datagram for a first fragment), unless the
    // IP header says the packet holds less, or the field is below the header size.
    let udp_len = u32::from(h.length());
    let payload_len = match udp_len {
        0..8 => len,
        _ if fragmented => udp_len,
        _ => udp_len.min(len),
    }
    .saturating_sub(8);
    let (sport, dport) = (h.source_port(), h.destination_port());
    d.l4 = Some(L4Info {
        proto: "udp".into(),
        sport: Some(sport),
        dport: Some(dport),
        payload_len,
        ..L4Info::default()
    });
    let rest = &bytes[8..];
    if depth >= MAX_TUNNEL_DEPTH {
        return;
    }
    let is = |port| dport == port || sport == port;
    if is(VXLAN_PORT) {
        vxlan(d, rest, payload_len, depth);
    } else if is(GENEVE_PORT) {
        geneve(d, rest, payload_len, depth);
    }
}

fn icmp(d: &mut Dissection, proto: &str, bytes: &[u8], len: u32, echo_types: &[u8]) {
    let mut l4 = L4Info {
        proto: proto.into(),
        payload_len: len,
        ..L4Info::default()
    };
    if bytes.len() >= 2 {
        l4.icmp_type = Some(bytes[0]);
        l4.icmp_code = Some(bytes[1]);
    }
    if bytes.len() >= 8 {
        if echo_types.contains(&bytes[0]) {
            l4.icmp_id = Some(be16(bytes, 4));
            l4.icmp_seq = Some(be16(bytes, 6));
        }
    } else if proto == "icmp" {
        fail(d, "truncated icmp header");
    } else {
        fail(d, "truncated icmp6 header");
    }
    d.l4 = Some(l4);
}

/// VXLAN (RFC 7348): flags, 3 reserved bytes, 24-bit VNI, 1 reserved byte; an Ethernet frame.
fn vxlan(d: &mut Dissection, bytes: &[u8], len: u32, depth: u8) {
    if bytes.len() < 8 {
        return fail(d, "truncated vxlan header");
    }
    d.tunnel = Some(TunnelInfo {
        kind: "vxlan".into(),
        vni: be24(bytes, 4),
        proto: ETHERTYPE_TEB,
        options_len: 0,
    });
    let mut inner = inner_of(d, len.saturating_sub(8));
    ethernet(&mut inner, &bytes[8..], depth + 1);
    d.inner = Some(Box::new(inner));
}

/// Geneve (RFC 8926): version and options length (in 4-byte words), flags, protocol type,
/// 24-bit VNI, reserved byte, then the options; the payload is named by the protocol type.
fn geneve(d: &mut Dissection, bytes: &[u8], len: u32, depth: u8) {
    if bytes.len() < 8 {
        return fail(d, "truncated geneve header");
    }
    let header_len = 8 + usize::from(bytes[0] & 0x3f) * 4;
    let proto = be16(bytes, 2);
    d.tunnel = Some(TunnelInfo {
        kind: "geneve".into(),
        vni: be24(bytes, 4),
        proto,
        options_len: (header_len - 8) as u16,
    });
    let Some(rest) = bytes.get(header_len..) else {
        return fail(d, "truncated geneve options");
    };
    let mut inner = inner_of(d, len.saturating_sub(header_len as u32));
    if proto == ETHERTYPE_TEB {
        ethernet(&mut inner, rest, depth + 1);
    } else {
        let inner_len = inner.len;
        ether_payload(&mut inner, proto, rest, inner_len, depth + 1);
    }
    d.inner = Some(Box::new(inner));
}

/// tcpdump's name for an EtherType in `-e` output.
fn ethertype_name(ethertype: u16) -> &'static str {
    match ethertype {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8035 => "Reverse ARP",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        0x9100 => "802.1Q-9100",
        0x8847 => "MPLS unicast",
        0x8848 => "MPLS multicast",
        0x888e => "EAPOL",
        0x88cc => "LLDP",
        0x8864 => "PPPoE S",
        0x8863 => "PPPoE D",
        0x6558 => "TEB",
        _ => "Unknown",
    }
}

/// Appends to the summary line without going through `fmt` (a third of the time otherwise):
/// text, decimal and hex numbers.
struct Line<'a>(&'a mut String);

impl Line<'_> {
    fn s(&mut self, text: &str) -> &mut Self {
        self.0.push_str(text);
        self
    }

    fn n(&mut self, value: impl Into<u32>) -> &mut Self {
        push_decimal(self.0, value.into());
        self
    }

    /// `0x0800`.
    fn hex4(&mut self, value: u16) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.0.push_str("0x");
        for shift in [12, 8, 4, 0] {
            self.0
                .push(HEX[usize::from((value >> shift) & 0xf)] as char);
        }
        self
    }
}

fn push_decimal(out: &mut String, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // Digits are ASCII: the conversion cannot fail.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Dotted quad; faster than `Ipv4Addr`'s `Display`, which pads through the formatter.
fn ipv4_text(addr: [u8; 4]) -> String {
    let mut out = String::with_capacity(15);
    for (i, octet) in addr.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u32::from(octet));
    }
    out
}

/// tcpdump's wording of an ICMP type/code (the common ones; others as `type-#N`).
fn icmp_text(line: &mut Line, t: u8, code: u8) {
    let text = match t {
        0 => "echo reply",
        8 => "echo request",
        3 => match code {
            0 => "net unreachable",
            1 => "host unreachable",
            2 => "protocol unreachable",
            3 => "port unreachable",
            4 => "need to frag",
            9 | 10 => "host prohibited",
            13 => "administratively prohibited",
            _ => "unreachable",
        },
        4 => "source quench",
        5 => "redirect",
        9 => "router advertisement",
        10 => "router solicitation",
        11 if code == 1 => "ip reassembly time exceeded",
        11 => "time exceeded in-transit",
        12 => "parameter problem",
        13 => "time stamp request",
        14 => "time stamp reply",
        _ => {
            line.s("type-#").n(t);
            return;
        }
    };
    line.s(text);
}

fn icmp6_text(line: &mut Line, t: u8) {
    let text = match t {
        1 => "destination unreachable",
        2 => "packet too big",
        3 => "time exceeded in-transit",
        4 => "parameter problem",
        128 => "echo request",
        129 => "echo reply",
        130 => "multicast listener query",
        131 => "multicast listener report",
        132 => "multicast listener done",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        137 => "redirect",
        143 => "multicast listener report v2",
        _ => {
            line.s("type-#").n(t);
            return;
        }
    };
    line.s(text);
}

/// tcpdump's TCP flag letters, in its order; ACK is `.`.
fn tcp_flags_text(out: &mut String, flags: u8) {
    const LETTERS: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    if flags == 0 {
        out.push_str("none");
    }
    for (bit, letter) in LETTERS {
        if flags & bit != 0 {
            out.push(letter);
        }
    }
}

fn direction(packet_type: u16) -> &'static str {
    match packet_type {
        0 => "In ",
        1 => "B ",
        2 => "M ",
        3 => "P ",
        4 => "Out ",
        _ => "? ",
    }
}

impl Dissection {
    /// One tcpdump-like line (`-n` style), e.g. `IP 192.0.2.1.34567 > 192.0.2.2.53: UDP,
    /// length 32` for raw IP, or for an Ethernet frame `02:00:00:00:00:0a > 02:00:00:00:00:0b,
    /// ethertype IPv4 (0x0800), length 74: 192.0.2.1.34567 > 192.0.2.2.53: UDP, length 32`.
    ///
    /// With a link-layer header it starts like `tcpdump -e` (MAC addresses, EtherType and
    /// frame length, then the network layer without its `IP` word); VLAN tags are shown as
    /// `vlan 100,` before the EtherType; tunnels show the outer headers, then the inner packet.
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(160);
        self.write_summary(&mut out);
        out
    }

    /// [`Dissection::summary`] appended to `out`, for callers that reuse a buffer.
    pub fn write_summary(&self, out: &mut String) {
        let mut line = Line(out);
        // tcpdump -e leaves out the protocol word that the EtherType already says.
        let mut named = false;
        if let Some(sll) = &self.sll {
            line.s(direction(sll.packet_type));
            if let Some(ifindex) = sll.ifindex {
                line.s("ifindex ").n(ifindex).s(" ");
            }
            line.s(&sll.addr)
                .s(" ethertype ")
                .s(ethertype_name(sll.protocol))
                .s(" (");
            line.hex4(sll.protocol).s("), length ").n(self.len).s(": ");
            named = true;
        }
        if let Some(eth) = &self.eth {
            line.s(&eth.src).s(" > ").s(&eth.dst).s(", ");
            for &id in &self.vlans {
                line.s("vlan ").n(id).s(", ");
            }
            line.s("ethertype ")
                .s(ethertype_name(eth.ethertype))
                .s(" (");
            line.hex4(eth.ethertype).s("), length ").n(self.len).s(": ");
            named = true;
        }
        if let Some(arp) = &self.arp {
            if !named {
                line.s("ARP, ");
            }
            match arp.op {
                1 => line
                    .s("Request who-has ")
                    .s(&arp.target_ip)
                    .s(" tell ")
                    .s(&arp.sender_ip),
                2 => line
                    .s("Reply ")
                    .s(&arp.sender_ip)
                    .s(" is-at ")
                    .s(&arp.sender_mac),
                op => line
                    .s("op ")
                    .n(op)
                    .s(" ")
                    .s(&arp.sender_ip)
                    .s(" > ")
                    .s(&arp.target_ip),
            };
            line.s(", length ").n(arp.len);
        } else if let Some(ip) = &self.ip {
            self.write_ip(&mut line, ip, named);
        } else if self.eth.is_none() && self.sll.is_none() && self.error.is_none() {
            line.s("(no packet)");
        }
        if let Some(error) = &self.error {
            if !line.0.is_empty() && !line.0.ends_with(' ') {
                line.s(" ");
            }
            line.s("[").s(error).s("]");
        }
    }

    fn write_ip(&self, line: &mut Line, ip: &IpInfo, named: bool) {
        if !named {
            line.s(if ip.version == 4 { "IP " } else { "IP6 " });
        }
        let ports = self.l4.as_ref().and_then(|l4| l4.sport.zip(l4.dport));
        match ports {
            Some((sport, dport)) => line
                .s(&ip.src)
                .s(".")
                .n(sport)
                .s(" > ")
                .s(&ip.dst)
                .s(".")
                .n(dport)
                .s(":"),
            None => line.s(&ip.src).s(" > ").s(&ip.dst).s(":"),
        };
        let Some(l4) = &self.l4 else {
            if ip.frag_offset != 0 {
                // tcpdump says only `ip-proto-17`; the offset is worth the few extra words.
                line.s(" ip-proto-")
                    .n(ip.proto)
                    .s(", frag offset ")
                    .n(ip.frag_offset);
                if ip.more_fragments {
                    line.s(", flags [+]");
                }
            }
            return;
        };
        match l4.proto.as_str() {
            "tcp" => {
                if let Some(flags) = l4.tcp_flags {
                    line.s(" Flags [");
                    tcp_flags_text(line.0, flags);
                    line.s("]");
                    // Like tcpdump: a bare ACK has no sequence number worth showing.
                    if let Some(seq) = l4.seq {
                        if l4.payload_len > 0 {
                            let end = seq.wrapping_add(l4.payload_len);
                            line.s(", seq ").n(seq).s(":").n(end);
                        } else if flags & 0x07 != 0 {
                            line.s(", seq ").n(seq);
                        }
                    }
                    if let Some(ack) = l4.ack.filter(|_| flags & 0x10 != 0) {
                        line.s(", ack ").n(ack);
                    }
                    if let Some(win) = l4.win {
                        line.s(", win ").n(win);
                    }
                    line.s(",");
                } else {
                    line.s(" TCP,");
                }
                line.s(" length ").n(l4.payload_len);
            }
            // Like tcpdump, a tunnel replaces the UDP words.
            "udp" => match &self.tunnel {
                Some(tunnel) => {
                    if tunnel.kind == "vxlan" {
                        line.s(" VXLAN, vni ").n(tunnel.vni);
                    } else {
                        line.s(" Geneve, vni ").n(tunnel.vni).s(", proto ");
                        line.s(ethertype_name(tunnel.proto))
                            .s(" (")
                            .hex4(tunnel.proto)
                            .s(")");
                        if tunnel.options_len > 0 {
                            line.s(", options [").n(tunnel.options_len).s(" bytes]");
                        }
                    }
                    if let Some(inner) = &self.inner {
                        line.s(": ");
                        inner.write_summary(line.0);
                    }
                }
                None => {
                    line.s(" UDP, length ").n(l4.payload_len);
                }
            },
            "icmp" | "icmp6" => {
                let v4 = l4.proto == "icmp";
                line.s(if v4 { " ICMP " } else { " ICMP6, " });
                match (l4.icmp_type, l4.icmp_code) {
                    (Some(t), Some(code)) if v4 => icmp_text(line, t, code),
                    (Some(t), _) => icmp6_text(line, t),
                    _ => {}
                }
                if let (Some(id), Some(seq)) = (l4.icmp_id, l4.icmp_seq) {
                    line.s(", id ").n(id).s(", seq ").n(seq);
                }
                line.s(", length ").n(l4.payload_len);
            }
            proto => {
                line.s(" ip-proto-").s(proto).s(" ").n(l4.payload_len);
            }
        }
    }
}
