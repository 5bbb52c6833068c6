//! Packet dissection: hand-checked layers, truncation at every length, random bytes, and two
//! oracles: tshark's fields for a pcap of varied packets, tcpdump's line for the plain cases.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etherparse::{Ipv4Header, PacketBuilder};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use proptest::prelude::*;
use trail::model::dissect::{dissect, Dissection};
use trail::model::event::{linktype, Bytes, Layer, Packet};

const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
const IP_A: [u8; 4] = [192, 0, 2, 1];
const IP_B: [u8; 4] = [192, 0, 2, 2];
const IP6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const IP6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn packet(linktype: u32, data: &[u8]) -> Packet {
    Packet {
        data: Bytes(data.to_vec()),
        len: data.len() as u32,
        layer: Layer::L2,
        linktype,
    }
}

fn eth(data: &[u8]) -> Dissection {
    dissect(&packet(linktype::ETHERNET, data))
}

fn build(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    builder(&mut out);
    out
}

fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .udp(sport, dport)
            .write(out, payload)
            .expect("build udp")
    })
}

fn tcp4(flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .tcp(34567, 45678, seq, 65535);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                'U' => b.urg(0),
                'E' => b.ece(),
                'W' => b.cwr(),
                _ => b,
            };
        }
        if flags.contains('.') {
            b = b.ack(ack);
        }
        b.write(out, payload).expect("build tcp")
    })
}

fn tcp6(sport: u16, flags_syn_ack: bool, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        let mut b = PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv6(IP6_A, IP6_B, 64)
            .tcp(sport, 5555, 1, 65535)
            .syn();
        if flags_syn_ack {
            b = b.ack(2);
        }
        b.write(out, payload).expect("build tcp6")
    })
}

fn icmp4_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .icmpv4_echo_request(id, seq)
            .write(out, payload)
            .expect("build icmp")
    })
}

fn icmp6_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(IP6_A, IP6_B, 64)
            .icmpv6_echo_request(id, seq)
            .write(out, payload)
            .expect("build icmp6")
    })
}

/// An ARP request or reply over Ethernet, padded to the 60-byte minimum frame if `pad`.
fn arp(op: u16, pad: bool) -> Vec<u8> {
    let (dst, tha) = if op == 1 {
        ([0xff; 6], [0; 6])
    } else {
        (MAC_A, MAC_A)
    };
    let (sha, spa, tpa) = if op == 1 {
        (MAC_A, IP_A, IP_B)
    } else {
        (MAC_B, IP_B, IP_A)
    };
    let mut out = Vec::new();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&sha);
    out.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sha);
    out.extend_from_slice(&spa);
    out.extend_from_slice(&tha);
    out.extend_from_slice(&tpa);
    if pad {
        out.resize(60, 0);
    }
    out
}

fn vlan_udp(outer: Option<u16>, inner: u16) -> Vec<u8> {
    build(|out| {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let b = match outer {
            Some(o) => b.double_vlan(o.try_into().expect("vlan"), inner.try_into().expect("vlan")),
            None => b.single_vlan(inner.try_into().expect("vlan")),
        };
        b.ipv4(IP_A, IP_B, 64)
            .udp(34567, 45678)
            .write(out, b"hello vlan")
            .expect("build vlan")
    })
}

/// An outer IPv4/UDP packet to `dport` carrying `tunnel_header` then `inner`.
fn tunnel(dport: u16, tunnel_header: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut payload = tunnel_header.to_vec();
    payload.extend_from_slice(inner);
    build(|out| {
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv4([198, 51, 100, 1], [198, 51, 100, 2], 63)
            .udp(40000, dport)
            .write(out, &payload)
            .expect("build tunnel")
    })
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    tunnel(4789, &[0x08, 0, 0, 0, v[1], v[2], v[3], 0], inner)
}

/// Geneve with `options` (a multiple of 4 bytes) and protocol type `proto`.
fn geneve(vni: u32, proto: u16, options: &[u8], inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let p = proto.to_be_bytes();
    let mut header = vec![
        (options.len() / 4) as u8,
        0,
        p[0],
        p[1],
        v[1],
        v[2],
        v[3],
        0,
    ];
    header.extend_from_slice(options);
    tunnel(6081, &header, inner)
}

/// One Geneve option: class 0x0102, type 0x80, 4 bytes of data.
const GENEVE_OPTION: [u8; 8] = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];

/// An IPv4 fragment of a UDP datagram: `offset` in bytes, `payload` the fragment's bytes.
fn ipv4_fragment(id: u16, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4Header::new(payload.len() as u16, 64, 17.into(), IP_A, IP_B).expect("ipv4");
    ip.identification = id;
    ip.more_fragments = more;
    ip.fragment_offset = (offset / 8).try_into().expect("offset");
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&[0x08, 0x00]);
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// The first fragment of a 1000-byte UDP datagram (UDP header says 1008, 504 bytes here).
fn udp_first_fragment() -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&34567u16.to_be_bytes());
    payload.extend_from_slice(&45678u16.to_be_bytes());
    payload.extend_from_slice(&1008u16.to_be_bytes());
    payload.extend_from_slice(&[0, 0]);
    payload.resize(504, 0x55);
    ipv4_fragment(0x4242, 0, true, &payload)
}

/// IPv6 with hop-by-hop options, a fragment header (`offset`, `more`) and, if first, UDP.
fn ipv6_ext(offset: u16, more: bool) -> Vec<u8> {
    let mut ext = vec![
        44, 0, 1, 4, 0, 0, 0, 0, // hop-by-hop: next fragment, PadN
        17, 0, // fragment: next UDP
    ];
    ext.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    ext.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    if offset == 0 {
        // UDP header claiming 200 bytes of which this fragment holds 24.
        ext.extend_from_slice(&[0x87, 0x07, 0xb2, 0x6e, 0, 200, 0, 0]);
    }
    ext.resize(ext.len() + 24, 0x66);
    let mut out = Vec::new();
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
    out.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 64]); // next header hop-by-hop, hop limit
    out.extend_from_slice(&IP6_A);
    out.extend_from_slice(&IP6_B);
    out.extend_from_slice(&ext);
    out
}

fn ip4_udp_raw() -> Vec<u8> {
    build(|out| {
        PacketBuilder::ipv4(IP_A, IP_B, 9)
            .udp(34567, 45678)
            .write(out, &[7; 32])
            .expect("build raw udp")
    })
}

fn ip6_tcp_raw() -> Vec<u8> {
    build(|out| {
        PacketBuilder::ipv6(IP6_A, IP6_B, 9)
            .tcp(80, 5555, 1, 65535)
            .syn()
            .ack(2)
            .write(out, &[])
            .expect("build raw tcp")
    })
}

/// Named packets: captured bytes and original length.
type Corpus = Vec<(&'static str, Vec<u8>, u32)>;

/// The varied Ethernet packets the oracles see, with the original length of each (larger
/// than the bytes for the snaplen-cut ones).
fn ethernet_corpus() -> Corpus {
    let whole = |name, data: Vec<u8>| {
        let len = data.len() as u32;
        (name, data, len)
    };
    let cut = |name, data: Vec<u8>, keep: usize| {
        let len = data.len() as u32;
        (name, data[..keep].to_vec(), len)
    };
    let inner_udp = udp4(34567, 45678, b"inner payload");
    let inner_icmp = icmp4_echo(7, 1, &[0xab; 56]);
    let inner_ip6 = ip6_tcp_raw();
    vec![
        whole("udp", udp4(34567, 45678, &[1; 32])),
        whole("udp empty", udp4(40001, 40002, &[])),
        whole("tcp syn", tcp4("S", 1000, 0, &[])),
        whole("tcp syn-ack", tcp4("S.", 5000, 1001, &[])),
        whole("tcp ack", tcp4(".", 1001, 5001, &[])),
        whole(
            "tcp psh-ack data",
            tcp4("P.", 1001, 5001, b"GET / HTTP/1.0\r\n\r\n"),
        ),
        whole("tcp fin-ack", tcp4("F.", 1019, 5001, &[])),
        whole("tcp rst", tcp4("R", 1019, 0, &[])),
        whole("tcp ecn syn", tcp4("SEW", 1, 0, &[])),
        whole("tcp6 syn-ack", tcp6(80, true, &[])),
        // Not port 80: tcpdump would add its HTTP guess.
        whole("tcp6 syn data", tcp6(34567, false, &[9; 100])),
        whole("icmp echo", icmp4_echo(7, 1, &[0xab; 56])),
        whole("icmp6 echo", icmp6_echo(9, 3, &[0xcd; 56])),
        whole("arp request", arp(1, false)),
        whole("arp reply padded", arp(2, true)),
        whole("vlan udp", vlan_udp(None, 100)),
        whole("qinq udp", vlan_udp(Some(300), 100)),
        whole("vxlan udp", vxlan(42, &inner_udp)),
        whole("vxlan icmp", vxlan(0x00ab_cdef, &inner_icmp)),
        whole("geneve teb", geneve(77, 0x6558, &[], &inner_udp)),
        whole(
            "geneve options",
            geneve(78, 0x6558, &GENEVE_OPTION, &inner_icmp),
        ),
        whole(
            "geneve ipv6",
            geneve(79, 0x86dd, &GENEVE_OPTION, &inner_ip6),
        ),
        whole("ipv4 first fragment", udp_first_fragment()),
        whole(
            "ipv4 later fragment",
            ipv4_fragment(0x4242, 504, false, &[0x55; 504]),
        ),
        whole("ipv6 ext first fragment", ipv6_ext(0, true)),
        whole("ipv6 ext later fragment", ipv6_ext(32, false)),
        cut("tcp cut in payload", tcp4("P.", 1, 1, &[3; 400]), 80),
        cut("udp cut in payload", udp4(34567, 45678, &[4; 400]), 60),
        cut("icmp cut in payload", icmp4_echo(1, 2, &[5; 1000]), 64),
        cut("vxlan cut in inner payload", vxlan(5, &inner_udp), 100),
    ]
}

/// Cooked-capture v1 header: direction, ARPHRD_ETHER, a 6-byte address, protocol.
fn sll_header(packet_type: u16, protocol: u16) -> Vec<u8> {
    let mut out = vec![0, packet_type as u8, 0, 1, 0, 6];
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&protocol.to_be_bytes());
    out
}

/// Cooked-capture v2 header: protocol, ifindex, ARPHRD_ETHER, direction, a 6-byte address.
fn sll2_header(packet_type: u8, protocol: u16, ifindex: u32) -> Vec<u8> {
    let mut out = protocol.to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&ifindex.to_be_bytes());
    out.extend_from_slice(&[0, 1, packet_type, 6]);
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&[0, 0]);
    out
}

/// The IP packets of the Ethernet corpus, for link types without an Ethernet header: each
/// with the header `link(ethertype)` in front (nothing for raw IP).
fn ip_corpus(link: impl Fn(u16) -> Vec<u8>) -> Corpus {
    let mut out = Vec::new();
    for (name, data, len) in ethernet_corpus() {
        let ethertype = u16::from_be_bytes([data[12], data[13]]);
        if ethertype == 0x0800 || ethertype == 0x86dd {
            let mut bytes = link(ethertype);
            let extra = bytes.len() as u32;
            bytes.extend_from_slice(&data[14..]);
            out.push((name, bytes, len - 14 + extra));
        }
    }
    out
}

/// Every corpus with the link type it is written in.
fn corpora() -> Vec<(u32, DataLink, Corpus)> {
    vec![
        (linktype::ETHERNET, DataLink::ETHERNET, ethernet_corpus()),
        (linktype::RAW, DataLink::RAW, ip_corpus(|_| Vec::new())),
        (
            linktype::LINUX_SLL,
            DataLink::LINUX_SLL,
            ip_corpus(|et| sll_header(4, et)),
        ),
        (
            linktype::LINUX_SLL2,
            DataLink::LINUX_SLL2,
            ip_corpus(|et| sll2_header(0, et, 7)),
        ),
    ]
}

fn write_pcap(path: &Path, datalink: DataLink, packets: &[(&str, Vec<u8>, u32)]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let header = PcapHeader {
        datalink,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header).expect("pcap header");
    for (i, (_, data, len)) in packets.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_secs(1_700_000_000 + i as u64), *len, data);
        writer.write_packet(&packet).expect("write packet");
    }
}

/// `TRAIL_DISSECT_PCAP=path cargo test --test tests dissect::write_corpus` writes the corpus for
/// a look with tcpdump or Wireshark.
#[test]
fn write_corpus() {
    if let Ok(path) = std::env::var("TRAIL_DISSECT_PCAP") {
        write_pcap(Path::new(&path), DataLink::ETHERNET, &ethernet_corpus());
        for (name, data, len) in ethernet_corpus() {
            let mut p = packet(linktype::ETHERNET, &data);
            p.len = len;
            println!("{name}: {}", dissect(&p).summary());
        }
    }
}

// ---------------------------------------------------------------- layer by layer

#[test]
fn udp_over_ethernet() {
    let d = eth(&udp4(34567, 45678, &[1; 32]));
    let e = d.eth.as_ref().expect("ethernet");
    assert_eq!(
        (e.src.as_str(), e.dst.as_str()),
        ("02:00:00:00:00:0a", "02:00:00:00:00:0b")
    );
    assert_eq!(e.ethertype, 0x0800);
    let ip = d.ip.as_ref().expect("ip");
    assert_eq!(
        (ip.version, ip.src.as_str(), ip.dst.as_str()),
        (4, "192.0.2.1", "192.0.2.2")
    );
    assert_eq!((ip.proto, ip.ttl, ip.len), (17, 64, 60));
    let l4 = d.l4.as_ref().expect("udp");
    assert_eq!(l4.proto, "udp");
    assert_eq!(
        (l4.sport, l4.dport, l4.payload_len),
        (Some(34567), Some(45678), 32)
    );
    assert_eq!(d.error, None);
    assert_eq!(d.len, 74);
}

#[test]
fn tcp_fields() {
    let d = eth(&tcp4("P.", 1001, 5001, b"0123456789"));
    let l4 = d.l4.expect("tcp");
    assert_eq!(l4.tcp_flags, Some(0x18));
    assert_eq!(
        (l4.seq, l4.ack, l4.win),
        (Some(1001), Some(5001), Some(65535))
    );
    assert_eq!(l4.payload_len, 10);
}

#[test]
fn tcp_header_with_options_cut() {
    let whole = build(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .tcp(34567, 45678, 7, 1000)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .expect("tcp options")
            .write(out, &[])
            .expect("build tcp")
    });
    let d = eth(&whole[..14 + 20 + 22]);
    let l4 = d.l4.as_ref().expect("fixed part decoded");
    assert_eq!(
        (l4.sport, l4.seq, l4.tcp_flags),
        (Some(34567), Some(7), Some(0x02))
    );
    assert_eq!(
        l4.payload_len, 0,
        "header length from the data offset, options included"
    );
    assert_eq!(d.error.as_deref(), Some("truncated tcp options"));
    assert_eq!(eth(&whole).error, None);
}

#[test]
fn qinq_ids_outermost_first() {
    let d = eth(&vlan_udp(Some(300), 100));
    assert_eq!(d.vlans, vec![300, 100]);
    assert_eq!(d.eth.expect("eth").ethertype, 0x0800);
    assert_eq!(d.l4.expect("udp").dport, Some(45678));
}

#[test]
fn arp_request_and_padded_reply() {
    let d = eth(&arp(1, false));
    let a = d.arp.expect("arp");
    assert_eq!(
        (a.op, a.sender_ip.as_str(), a.target_ip.as_str()),
        (1, "192.0.2.1", "192.0.2.2")
    );
    assert_eq!(a.len, 28);
    let d = eth(&arp(2, true));
    let a = d.arp.expect("arp");
    assert_eq!((a.op, a.sender_mac.as_str()), (2, "02:00:00:00:00:0b"));
    assert_eq!(a.len, 46, "padding counts, as tcpdump prints it");
}

#[test]
fn vxlan_inner_packet() {
    let d = eth(&vxlan(42, &udp4(1111, 2222, b"abc")));
    let t = d.tunnel.as_ref().expect("tunnel");
    assert_eq!((t.kind.as_str(), t.vni), ("vxlan", 42));
    let inner = d.inner.as_ref().expect("inner");
    assert_eq!(inner.l4.as_ref().and_then(|l| l.dport), Some(2222));
    assert_eq!(inner.len, 14 + 20 + 8 + 3);
    assert_eq!(d.error, None);
    assert_eq!(inner.error, None);
}

#[test]
fn geneve_options_and_protocol_type() {
    let d = eth(&geneve(79, 0x86dd, &GENEVE_OPTION, &ip6_tcp_raw()));
    let t = d.tunnel.as_ref().expect("tunnel");
    assert_eq!((t.kind.as_str(), t.vni, t.proto), ("geneve", 79, 0x86dd));
    let inner = d.inner.as_ref().expect("inner");
    assert!(inner.eth.is_none());
    assert_eq!(inner.ip.as_ref().map(|i| i.version), Some(6));
    assert_eq!(inner.l4.as_ref().and_then(|l| l.tcp_flags), Some(0x12));
    // Options cut off: the tunnel is known, the inner packet is not.
    let whole = geneve(80, 0x6558, &GENEVE_OPTION, &udp4(1, 2, &[]));
    let d = eth(&whole[..14 + 20 + 8 + 12]);
    assert_eq!(d.tunnel.map(|t| t.vni), Some(80));
    assert_eq!(d.error.as_deref(), Some("truncated geneve options"));
    assert!(d.inner.is_none());
}

#[test]
fn ipv4_fragments() {
    let d = eth(&udp_first_fragment());
    let ip = d.ip.as_ref().expect("ip");
    assert!(ip.more_fragments && ip.frag_offset == 0 && ip.id == 0x4242);
    let l4 = d.l4.as_ref().expect("first fragment has udp");
    // The UDP header's length is the whole datagram's, as tcpdump prints it.
    assert_eq!((l4.dport, l4.payload_len), (Some(45678), 1000));
    let d = eth(&ipv4_fragment(0x4242, 504, false, &[0x55; 504]));
    let ip = d.ip.as_ref().expect("ip");
    assert_eq!(
        (ip.frag_offset, ip.more_fragments, ip.proto),
        (504, false, 17)
    );
    assert!(d.l4.is_none(), "later fragments carry no transport header");
    assert_eq!(d.error, None);
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    let d = eth(&ipv6_ext(0, true));
    let ip = d.ip.as_ref().expect("ip");
    assert_eq!((ip.proto, ip.id, ip.more_fragments), (17, 0x12345, true));
    assert_eq!(d.l4.as_ref().and_then(|l| l.dport), Some(45678));
    assert_eq!(d.l4.as_ref().map(|l| l.payload_len), Some(192));
    let d = eth(&ipv6_ext(32, false));
    let ip = d.ip.as_ref().expect("ip");
    assert_eq!((ip.proto, ip.frag_offset), (17, 32));
    assert!(d.l4.is_none());
}

#[test]
fn link_types() {
    let raw4 = ip4_udp_raw();
    let raw6 = ip6_tcp_raw();
    for (lt, data, version) in [
        (linktype::RAW, &raw4, 4),
        (linktype::RAW, &raw6, 6),
        (linktype::IPV4, &raw4, 4),
        (linktype::IPV6, &raw6, 6),
    ] {
        let d = dissect(&packet(lt, data));
        assert_eq!(d.ip.map(|i| i.version), Some(version), "link type {lt}");
        assert!(d.l4.is_some() && d.eth.is_none() && d.error.is_none());
    }
    // L3 capture whatever the link type says.
    let mut p = packet(linktype::ETHERNET, &raw6);
    p.layer = Layer::L3;
    assert_eq!(dissect(&p).ip.map(|i| i.version), Some(6));

    // SLL: outgoing packet, Ethernet address.
    let mut sll = vec![0, 4, 0, 1, 0, 6];
    sll.extend_from_slice(&MAC_A);
    sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
    sll.extend_from_slice(&raw4);
    let d = dissect(&packet(linktype::LINUX_SLL, &sll));
    let s = d.sll.as_ref().expect("sll");
    assert_eq!(
        (s.packet_type, s.protocol, s.addr.as_str()),
        (4, 0x0800, "02:00:00:00:00:0a")
    );
    assert_eq!(d.l4.and_then(|l| l.dport), Some(45678));

    // SLL2: incoming on ifindex 7.
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6];
    sll2.extend_from_slice(&MAC_B);
    sll2.extend_from_slice(&[0, 0]);
    sll2.extend_from_slice(&raw6);
    let d = dissect(&packet(linktype::LINUX_SLL2, &sll2));
    let s = d.sll.as_ref().expect("sll2");
    assert_eq!((s.ifindex, s.packet_type, s.protocol), (Some(7), 0, 0x86dd));
    assert_eq!(d.l4.and_then(|l| l.sport), Some(80));

    let d = dissect(&packet(147, &raw4));
    assert!(d.ip.is_none() && d.eth.is_none());
    assert_eq!(d.error.as_deref(), Some("unknown link type 147"));
}

#[test]
fn payload_len_from_headers_not_bytes() {
    let whole = tcp4("P.", 1, 1, &[3; 400]);
    let mut p = packet(linktype::ETHERNET, &whole[..80]);
    p.len = whole.len() as u32;
    let d = dissect(&p);
    assert_eq!(
        d.error, None,
        "a payload cut by the snaplen is not an error"
    );
    assert_eq!(d.ip.as_ref().map(|i| i.len), Some(440));
    assert_eq!(d.l4.as_ref().map(|l| l.payload_len), Some(400));
    assert_eq!(d.len, whole.len() as u32);
}

/// Cutting a packet anywhere never panics; a cut inside a header is reported, a cut in the
/// last payload is not, and the layers decoded only grow with the length.
#[test]
fn truncated_at_every_length() {
    for (lt, name, data, len) in corpora()
        .into_iter()
        .flat_map(|(lt, _, corpus)| corpus.into_iter().map(move |(n, d, l)| (lt, n, d, l)))
    {
        let mut p = packet(lt, &data);
        p.len = len;
        let full = dissect(&p);
        assert!(!has_error(&full), "{name}: {:?}", full.error);
        let mut layers_before = 0;
        for keep in 0..=data.len() {
            p.data = Bytes(data[..keep].to_vec());
            let d = dissect(&p);
            let _ = d.summary();
            let layers = layer_count(&d);
            assert!(
                layers >= layers_before,
                "{name} ({lt}): fewer layers at {keep} bytes"
            );
            layers_before = layers;
            // Every header present: same fields as the whole packet and no error; a header
            // missing, even one that would start right at the cut: an error says so.
            let complete = without_errors(d.clone()) == full;
            assert_eq!(
                !has_error(&d),
                complete,
                "{name} ({lt}) cut at {keep}: {d:?}"
            );
        }
    }
}

fn has_error(d: &Dissection) -> bool {
    d.error.is_some() || d.inner.as_deref().is_some_and(has_error)
}

fn without_errors(mut d: Dissection) -> Dissection {
    d.error = None;
    d.inner = d.inner.map(|inner| Box::new(without_errors(*inner)));
    d
}

fn layer_count(d: &Dissection) -> usize {
    let own = [
        d.sll.is_some(),
        d.eth.is_some(),
        d.arp.is_some(),
        d.ip.is_some(),
        d.l4.is_some(),
        d.tunnel.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
        + d.vlans.len();
    own + d.inner.as_deref().map_or(0, layer_count)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        lt in prop_oneof![Just(1u32), Just(101), Just(113), Just(228), Just(229), Just(276), any::<u32>()],
        l3 in any::<bool>(),
        len in any::<u32>(),
    ) {
        let p = Packet {
            data: Bytes(data),
            len,
            layer: if l3 { Layer::L3 } else { Layer::L2 },
            linktype: lt,
        };
        let d = dissect(&p);
        prop_assert!(!d.summary().is_empty());
    }

    /// Random bytes after valid headers, so that the deeper layers get exercised too.
    #[test]
    fn random_tails_never_panic(
        base in 0usize..30,
        keep in 0usize..120,
        tail in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let corpus = ethernet_corpus();
        let (_, data, _) = &corpus[base % corpus.len()];
        let mut bytes = data[..keep.min(data.len())].to_vec();
        bytes.extend_from_slice(&tail);
        let d = eth(&bytes);
        prop_assert!(!d.summary().is_empty());
    }
}

// ---------------------------------------------------------------- oracles

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tshark's fields, all occurrences (outer first) joined by commas, one row per packet.
const TSHARK_FIELDS: &[&str] = &[
    "sll.pkttype",
    "sll.ifindex",
    "sll.etype",
    "eth.src",
    "eth.dst",
    "ieee8021ad.id",
    "vlan.id",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
    "arp.src.hw_mac",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.len",
    "ip.id",
    "ip.flags.df",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "ipv6.plen",
    "ipv6.flow",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.window_size_value",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "icmp.ident",
    "icmp.seq",
    "icmpv6.type",
    "icmpv6.code",
    "icmpv6.echo.identifier",
    "icmpv6.echo.sequence_number",
    "vxlan.vni",
    "geneve.vni",
];

/// The same fields from our dissection, in tshark's notation (numbers compared as numbers).
fn our_fields(d: &Dissection) -> Vec<Vec<String>> {
    let mut fields = vec![Vec::new(); TSHARK_FIELDS.len()];
    let mut level = Some(d);
    while let Some(d) = level {
        let mut put = |name: &str, value: String| {
            let i = TSHARK_FIELDS
                .iter()
                .position(|f| *f == name)
                .expect("field");
            fields[i].push(value);
        };
        if let Some(sll) = &d.sll {
            put("sll.pkttype", sll.packet_type.to_string());
            if let Some(ifindex) = sll.ifindex {
                put("sll.ifindex", ifindex.to_string());
            }
            put("sll.etype", sll.protocol.to_string());
        }
        if let Some(e) = &d.eth {
            put("eth.src", e.src.clone());
            put("eth.dst", e.dst.clone());
        }
        // tshark names an 802.1ad outer tag differently; the corpus only puts one outside one
        // 802.1Q tag.
        for (i, id) in d.vlans.iter().enumerate() {
            let name = if d.vlans.len() == 2 && i == 0 {
                "ieee8021ad.id"
            } else {
                "vlan.id"
            };
            put(name, id.to_string());
        }
        if let Some(a) = &d.arp {
            put("arp.opcode", a.op.to_string());
            put("arp.src.proto_ipv4", a.sender_ip.clone());
            put("arp.dst.proto_ipv4", a.target_ip.clone());
            put("arp.src.hw_mac", a.sender_mac.clone());
        }
        if let Some(ip) = &d.ip {
            if ip.version == 4 {
                put("ip.src", ip.src.clone());
                put("ip.dst", ip.dst.clone());
                put("ip.proto", ip.proto.to_string());
                put("ip.ttl", ip.ttl.to_string());
                put("ip.len", ip.len.to_string());
                put("ip.id", ip.id.to_string());
                put("ip.flags.df", u8::from(ip.dont_fragment).to_string());
                put("ip.flags.mf", u8::from(ip.more_fragments).to_string());
                // tshark 4.0 counts in 8-byte units, we count bytes like tcpdump -v.
                put("ip.frag_offset", (ip.frag_offset / 8).to_string());
            } else {
                put("ipv6.src", ip.src.clone());
                put("ipv6.dst", ip.dst.clone());
                put("ipv6.hlim", ip.ttl.to_string());
                put("ipv6.plen", (ip.len - 40).to_string());
                put("ipv6.flow", ip.id.to_string());
                if ip.frag_offset != 0 || ip.more_fragments {
                    put("ipv6.fraghdr.offset", (ip.frag_offset / 8).to_string());
                    put("ipv6.fraghdr.more", u8::from(ip.more_fragments).to_string());
                }
            }
        }
        if let Some(l4) = &d.l4 {
            let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
            match l4.proto.as_str() {
                "tcp" => {
                    put("tcp.srcport", opt(l4.sport.map(u32::from)));
                    put("tcp.dstport", opt(l4.dport.map(u32::from)));
                    put("tcp.flags", opt(l4.tcp_flags.map(u32::from)));
                    put("tcp.seq_raw", opt(l4.seq));
                    put("tcp.ack_raw", opt(l4.ack));
                    put("tcp.window_size_value", opt(l4.win.map(u32::from)));
                    put("tcp.len", l4.payload_len.to_string());
                }
                "udp" => {
                    put("udp.srcport", opt(l4.sport.map(u32::from)));
                    put("udp.dstport", opt(l4.dport.map(u32::from)));
                }
                "icmp" => {
                    put("icmp.type", opt(l4.icmp_type.map(u32::from)));
                    put("icmp.code", opt(l4.icmp_code.map(u32::from)));
                    if let (Some(id), Some(seq)) = (l4.icmp_id, l4.icmp_seq) {
                        put("icmp.ident", id.to_string());
                        put("icmp.seq", seq.to_string());
                    }
                }
                "icmp6" => {
                    put("icmpv6.type", opt(l4.icmp_type.map(u32::from)));
                    put("icmpv6.code", opt(l4.icmp_code.map(u32::from)));
                    if let (Some(id), Some(seq)) = (l4.icmp_id, l4.icmp_seq) {
                        put("icmpv6.echo.identifier", id.to_string());
                        put("icmpv6.echo.sequence_number", seq.to_string());
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = &d.tunnel {
            put(
                if t.kind == "vxlan" {
                    "vxlan.vni"
                } else {
                    "geneve.vni"
                },
                t.vni.to_string(),
            );
        }
        level = d.inner.as_deref();
    }
    fields
}

/// tshark prints some numbers in hex and booleans as True/False; bring them to decimal.
fn normalize(value: &str) -> String {
    if let Some(hex) = value.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return n.to_string();
        }
    }
    match value {
        "True" => "1".into(),
        "False" => "0".into(),
        _ => value.to_string(),
    }
}

#[test]
fn tshark_agrees_field_by_field() {
    if !tool_available("tshark") {
        panic!("tshark is the oracle of this test and must be installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mismatches = Vec::new();
    for (lt, datalink, corpus) in corpora() {
        let path = dir.path().join(format!("corpus-{lt}.pcap"));
        write_pcap(&path, datalink, &corpus);
        let mut cmd = Command::new("tshark");
        cmd.arg("-n").arg("-r").arg(&path);
        // Each packet on its own: no reassembly.
        for pref in ["ip.defragment:FALSE", "ipv6.defragment:FALSE"] {
            cmd.args(["-o", pref]);
        }
        cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
        for f in TSHARK_FIELDS {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("run tshark");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(
            rows.len(),
            corpus.len(),
            "one row per packet (link type {lt})"
        );
        for ((name, data, len), row) in corpus.iter().zip(&rows) {
            let mut p = packet(lt, data);
            p.len = *len;
            let ours = our_fields(&dissect(&p));
            let theirs: Vec<&str> = row.split('\t').collect();
            assert_eq!(
                theirs.len(),
                TSHARK_FIELDS.len(),
                "{name}: tshark row {row:?}"
            );
            for (i, field) in TSHARK_FIELDS.iter().enumerate() {
                let theirs: Vec<String> = theirs[i]
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(normalize)
                    .collect();
                if theirs != ours[i] {
                    mismatches.push(format!(
                        "{name} (link type {lt}): {field}: tshark {theirs:?}, trail {:?}",
                        ours[i]
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "differences with tshark:\n{}",
        mismatches.join("\n")
    );
}

/// For the plain UDP/TCP/ICMP/ARP cases (snaplen-cut ones included) our line is tcpdump's
/// line after the timestamp: with `-e` for a link-layer header. `-S` because tcpdump
/// otherwise prints sequence numbers relative to the first packet of each connection.
/// VLAN tags, tunnels and later fragments are shown differently on purpose (shorter).
#[test]
fn tcpdump_agrees_on_plain_packets() {
    if !tool_available("tcpdump") {
        panic!("tcpdump is the oracle of this test and must be installed");
    }
    let plain = [
        "udp",
        "udp empty",
        "tcp syn",
        "tcp syn-ack",
        "tcp ack",
        "tcp psh-ack data",
        "tcp fin-ack",
        "tcp rst",
        "tcp ecn syn",
        "tcp6 syn-ack",
        "tcp6 syn data",
        "icmp echo",
        "icmp6 echo",
        "arp request",
        "arp reply padded",
        "ipv4 first fragment",
        "tcp cut in payload",
        "udp cut in payload",
        "icmp cut in payload",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (lt, datalink, corpus) in corpora() {
        let corpus: Vec<_> = corpus
            .into_iter()
            .filter(|(name, _, _)| plain.contains(name))
            .collect();
        let path = dir.path().join(format!("plain-{lt}.pcap"));
        write_pcap(&path, datalink, &corpus);
        // Raw IP has no link-layer header: its natural form is without -e (which would
        // print `ip: ` in place of `IP `).
        let flags = if lt == linktype::RAW { "-nS" } else { "-nSe" };
        let out = Command::new("tcpdump")
            .args([flags, "-r"])
            .arg(&path)
            .output()
            .expect("run tcpdump");
        assert!(
            out.status.success(),
            "tcpdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), corpus.len(), "link type {lt}");
        for ((name, data, len), line) in corpus.iter().zip(&lines) {
            // Drop the timestamp (and for SLL2 the interface name, which tcpdump looks up on
            // this machine); tcpdump pads the direction with spaces.
            let skip = if lt == linktype::LINUX_SLL2 { 2 } else { 1 };
            let theirs = line
                .split_whitespace()
                .skip(skip)
                .collect::<Vec<_>>()
                .join(" ");
            let mut p = packet(lt, data);
            p.len = *len;
            let ours = dissect(&p).summary();
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{name} (link type {lt}):\n  tcpdump {theirs}\n  trail   {ours}"
                ));
            }
        }
    }
    assert!(compared > 50, "only {compared} packets compared");
    assert!(
        mismatches.is_empty(),
        "differences with tcpdump:\n{}",
        mismatches.join("\n")
    );
}
