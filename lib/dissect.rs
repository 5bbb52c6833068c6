//! Packet dissection for display and analysis: what the captured bytes of an event say.
//!
//! Contract: [`dissect`] never fails; it decodes as many layers as the bytes allow and records
//! where it stopped in `truncated`/`error`. Fields are those people filter and group on
//! (tcpdump's view), shared by `trail-print`, `trail-to-parquet` and `trail-track`.

use schemars::JsonSchema;
use serde::Serialize;

use crate::event::Packet;

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct Dissection {
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
    /// Length of the L4 payload, from the headers.
    pub payload_len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct TunnelInfo {
    /// `vxlan` or `geneve`.
    pub kind: String,
    pub vni: u32,
}

/// Decodes a captured packet according to its link type and layer.
pub fn dissect(packet: &Packet) -> Dissection {
    let _ = packet;
    Dissection::default()
}

impl Dissection {
    /// One tcpdump-like line (`-n` style), e.g.
    /// `192.0.2.1.5353 > 192.0.2.2.53: UDP, length 32`.
    pub fn summary(&self) -> String {
        String::from("(packet)")
    }
}
