//! Differential test of the cBPF→eBPF translator (lib/capture/kfilter): every expression of
//! `tests/fixtures/filters.txt` × a corpus of synthesized and captured packets, the translated
//! eBPF run in user space by the `rbpf` interpreter against libpcap's own verdict
//! (`pcap_offline_filter`), for the Ethernet (L2) and raw-IP (L3) variants.
//!
//! rbpf, not BPF_PROG_TEST_RUN: it needs no root, runs the program as a plain function with the
//! same arguments the probes pass (data pointer, caplen, wirelen), and lets the test provide
//! helper 113 itself, which checks that every copy stays inside the packet. rbpf is an
//! independent implementation of the eBPF semantics, so a misreading of the specification in
//! the translator does not cancel out. The kernel verifier's view is in tests/kernel/kfilter.rs.

use std::cell::Cell;
use std::collections::BTreeMap;

use etherparse::PacketBuilder;
use pcap_file::pcap::PcapReader;
use trail::capture::kfilter::{self, ebpf, Insn, Layer, PacketFilter};

/// The corpus shared with the kernel test.
pub fn expressions() -> Vec<String> {
    let text = include_str!("fixtures/filters.txt");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect()
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const BROADCAST: [u8; 6] = [0xff; 6];
const MULTICAST: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const V4: [[u8; 4]; 4] = [
    [192, 0, 2, 1],
    [192, 0, 2, 2],
    [198, 51, 100, 7],
    [10, 1, 2, 3],
];
const V6: [[u8; 16]; 4] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
];

fn write(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    builder(&mut out);
    out
}

/// Ethernet frames of many kinds: each transport over v4 and v6, TCP flag sets, ports around
/// the corpus's ranges, VLAN and QinQ, IPv4 options and fragments, IPv6 extension headers,
/// ARP, several ICMP types, lengths from empty to 1400 bytes of payload.
fn synthesized() -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let payloads: [&[u8]; 4] = [b"", b"GET / HTTP/1.1\r\n", &[0u8; 100], &[0x47u8; 1400]];
    let ports = [
        (1234u16, 80u16),
        (80, 1234),
        (5000, 53),
        (53, 5000),
        (22, 50001),
        (1500, 0),
        (65535, 2000),
    ];
    for (n, &(sport, dport)) in ports.iter().enumerate() {
        let payload = payloads[n % payloads.len()];
        let (s4, d4) = (V4[n % 4], V4[(n + 1) % 4]);
        let (s6, d6) = (V6[n % 4], V6[(n + 1) % 4]);
        let ttl = [1u8, 64, 128, 255][n % 4];
        let (smac, dmac) = match n % 3 {
            0 => (MAC_A, MAC_B),
            1 => (MAC_B, MAC_A),
            _ => (MAC_A, BROADCAST),
        };
        packets.push(write(|out| {
            PacketBuilder::ethernet2(smac, dmac)
                .ipv4(s4, d4, ttl)
                .udp(sport, dport)
                .write(out, payload)
                .unwrap()
        }));
        packets.push(write(|out| {
            PacketBuilder::ethernet2(smac, dmac)
                .ipv6(s6, d6, ttl)
                .udp(sport, dport)
                .write(out, payload)
                .unwrap()
        }));
        for flags in 0..7 {
            let tcp = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>| match flags {
                0 => b.syn(),
                1 => b.syn().ack(1),
                2 => b.ack(7),
                3 => b.fin().ack(9),
                4 => b.rst(),
                5 => b.psh().ack(3),
                _ => b.urg(5).ack(1),
            };
            packets.push(write(|out| {
                tcp(PacketBuilder::ethernet2(smac, dmac)
                    .ipv4(s4, d4, ttl)
                    .tcp(sport, dport, 1000, 512))
                .write(out, payload)
                .unwrap()
            }));
            if flags % 2 == 0 {
                packets.push(write(|out| {
                    tcp(PacketBuilder::ethernet2(smac, dmac)
                        .ipv6(s6, d6, ttl)
                        .tcp(sport, dport, 1000, 512))
                    .write(out, payload)
                    .unwrap()
                }));
            }
        }
        let vlan = |id: u16| id.try_into().unwrap();
        packets.push(write(|out| {
            PacketBuilder::ethernet2(smac, dmac)
                .single_vlan(vlan([10, 20, 100][n % 3]))
                .ipv4(s4, d4, ttl)
                .udp(sport, dport)
                .write(out, payload)
                .unwrap()
        }));
        packets.push(write(|out| {
            PacketBuilder::ethernet2(smac, dmac)
                .double_vlan(vlan(100), vlan([200, 10][n % 2]))
                .ipv6(s6, d6, ttl)
                .tcp(sport, dport, 1, 1)
                .syn()
                .write(out, payload)
                .unwrap()
        }));
        packets.push(write(|out| {
            PacketBuilder::ethernet2(smac, dmac)
                .single_vlan(vlan(10))
                .ipv4(s4, d4, ttl)
                .tcp(sport, dport, 1, 1)
                .ack(1)
                .write(out, payload)
                .unwrap()
        }));
    }
    for (n, icmp_type) in [8u8, 0, 3, 11].into_iter().enumerate() {
        let mut packet = write(|out| {
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(V4[n % 4], V4[(n + 2) % 4], 64)
                .icmpv4_echo_request(1, n as u16)
                .write(out, b"ping")
                .unwrap()
        });
        packet[34] = icmp_type;
        packet[35] = n as u8 % 2;
        packets.push(packet);
    }
    for (n, icmp_type) in [128u8, 129, 135, 1].into_iter().enumerate() {
        let mut packet = write(|out| {
            PacketBuilder::ethernet2(MAC_A, MULTICAST)
                .ipv6(V6[n % 4], V6[(n + 3) % 4], 255)
                .icmpv6_echo_request(1, n as u16)
                .write(out, b"ping6")
                .unwrap()
        });
        packet[54] = icmp_type;
        packets.push(packet);
    }
    // IPv4 fragments: first (MF, offset 0) and a later one (offset 185 * 8).
    let udp = write(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4[0], V4[1], 64)
            .udp(5000, 53)
            .write(out, &[1u8; 64])
            .unwrap()
    });
    let mut first = udp.clone();
    first[20] = 0x20;
    packets.push(first);
    let mut later = udp.clone();
    later[20] = 0x00;
    later[21] = 185;
    packets.push(later);
    // IPv4 with 4 bytes of options (IHL 6): the transport header moves by 4.
    let mut options = udp[..34].to_vec();
    options.extend_from_slice(&[1, 1, 1, 0]);
    options.extend_from_slice(&udp[34..]);
    options[14] = 0x46;
    let total = u16::from_be_bytes([options[16], options[17]]) + 4;
    options[16..18].copy_from_slice(&total.to_be_bytes());
    packets.push(options);
    // IPv6 with a hop-by-hop header, and with a fragment header, before UDP.
    let udp6 = write(|out| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6[0], V6[1], 64)
            .udp(5000, 53)
            .write(out, &[2u8; 32])
            .unwrap()
    });
    for (next, ext) in [
        (0u8, [17u8, 0, 1, 4, 0, 0, 0, 0]),
        (44, [17, 0, 0, 1, 0, 0, 0, 7]),
    ] {
        let mut packet = udp6[..54].to_vec();
        packet.extend_from_slice(&ext);
        packet.extend_from_slice(&udp6[54..]);
        packet[20] = next;
        let len = u16::from_be_bytes([packet[18], packet[19]]) + 8;
        packet[18..20].copy_from_slice(&len.to_be_bytes());
        packets.push(packet);
    }
    // ARP request and reply (who-has 192.0.2.1 tell 192.0.2.2).
    for (op, dst) in [(1u8, BROADCAST), (2, MAC_B)] {
        let mut arp = Vec::new();
        arp.extend_from_slice(&dst);
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&V4[1]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&V4[0]);
        arp.resize(60, 0);
        packets.push(arp);
    }
    // Non-IP ethertypes libpcap has keywords for: 802.3 length field (LLC), MPLS, PPPoE.
    for ethertype in [[0x00u8, 0x40], [0x88, 0x47], [0x88, 0x64], [0x81, 0x00]] {
        let mut frame = [MAC_B, MAC_A].concat();
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(&udp[14..]);
        packets.push(frame);
    }
    packets
}

/// Tiny deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Cut and corrupted copies: every load's bounds check and odd header values get exercised.
fn damaged(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rng = Lcg(0x0074_7261_696c);
    for (n, packet) in packets.iter().enumerate().step_by(3) {
        for cut in [
            0usize, 1, 13, 14, 15, 20, 23, 33, 34, 37, 41, 47, 54, 55, 61,
        ] {
            if cut < packet.len() && (cut + n) % 4 == 0 {
                out.push(packet[..cut].to_vec());
            }
        }
        out.push(packet[..packet.len() - 1].to_vec());
        let mut mutated = packet.clone();
        for _ in 0..4 {
            let at = rng.next() as usize % mutated.len();
            mutated[at] = rng.next() as u8;
        }
        out.push(mutated);
    }
    out
}

fn veth_capture() -> Vec<Vec<u8>> {
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/veth.pcap"
    ))
    .expect("open veth.pcap");
    let mut reader = PcapReader::new(file).expect("read veth.pcap header");
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet() {
        packets.push(packet.expect("veth.pcap packet").data.into_owned());
    }
    packets
}

/// The network-layer part of an Ethernet frame carrying IPv4 or IPv6, past any VLAN tags.
fn network_part(frame: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    loop {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ethertype {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            0x0800 | 0x86dd => return Some(&frame[at + 2..]),
            _ => return None,
        }
    }
}

struct Corpus {
    l2: Vec<Vec<u8>>,
    l3: Vec<Vec<u8>>,
}

fn packets() -> Corpus {
    let mut l2 = synthesized();
    let damaged = damaged(&l2);
    l2.extend(damaged);
    l2.extend(veth_capture());
    let mut l3: Vec<Vec<u8>> = l2
        .iter()
        .filter_map(|f| network_part(f))
        .map(<[u8]>::to_vec)
        .collect();
    l3.extend([vec![], vec![0x45], vec![0x60, 0, 0], vec![0x12; 40]]);
    Corpus { l2, l3 }
}

thread_local! {
    /// The packet the current run may read: (address, length).
    static PACKET: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// Helper calls that asked for bytes outside the packet.
    static STRAY_READS: Cell<u64> = const { Cell::new(0) };
}

/// Helper 113 as the test's "kernel": copies from the packet buffer only.
fn probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    let (start, len) = PACKET.with(Cell::get);
    let inside =
        size <= 8 && src >= start && src.checked_add(size).is_some_and(|end| end <= start + len);
    if !inside {
        STRAY_READS.with(|count| count.set(count.get() + 1));
        return (-14i64) as u64; // -EFAULT
    }
    // SAFETY: [src, src + size) lies inside the packet slice registered in PACKET for this run
    // (checked above); dst is the 8-byte stack buffer (r10 - 8) the translator passes, inside
    // rbpf's 512-byte stack, and size <= 8.
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, size as usize) };
    0
}

/// The translated function behind a prologue that loads its three arguments from rbpf's
/// metadata buffer: `{ u64 data, u64 caplen, u64 wirelen }`.
struct Runner {
    program: Vec<u8>,
}

impl Runner {
    fn new(body: &[Insn]) -> Runner {
        const LDX_DW: u8 = 0x79;
        let mut insns = vec![
            Insn::new(LDX_DW, ebpf::R2, ebpf::R1, 8, 0),
            Insn::new(LDX_DW, ebpf::R3, ebpf::R1, 16, 0),
            Insn::new(LDX_DW, ebpf::R1, ebpf::R1, 0, 0),
        ];
        insns.extend_from_slice(body);
        Runner {
            program: ebpf::to_bytes(&insns),
        }
    }

    fn run(&self, packet: &[u8]) -> Result<u64, String> {
        let mut vm = rbpf::EbpfVmMbuff::new(Some(&self.program)).map_err(|e| e.to_string())?;
        vm.register_helper(ebpf::HELPER_PROBE_READ_KERNEL as u32, probe_read_kernel)
            .map_err(|e| e.to_string())?;
        let mut meta = Vec::with_capacity(24);
        meta.extend_from_slice(&(packet.as_ptr() as u64).to_le_bytes());
        meta.extend_from_slice(&(packet.len() as u64).to_le_bytes());
        meta.extend_from_slice(&(packet.len() as u64).to_le_bytes());
        PACKET.with(|p| p.set((packet.as_ptr() as u64, packet.len() as u64)));
        // The packet is not passed as rbpf memory: a direct load from it would fault, as
        // the kernel verifier would refuse it in a tracing program.
        vm.execute_program(&[], &meta).map_err(|e| e.to_string())
    }
}

#[test]
fn translated_filters_agree_with_libpcap() {
    let expressions = expressions();
    assert!(
        expressions.len() >= 200,
        "corpus has {} expressions",
        expressions.len()
    );
    let corpus = packets();
    assert!(
        corpus.l2.len() >= 150 && corpus.l3.len() >= 100,
        "{} L2, {} L3 packets",
        corpus.l2.len(),
        corpus.l3.len()
    );

    let mut mismatches = Vec::new();
    let mut checks = 0usize;
    let mut accepted = 0usize;
    // Expressions whose L2 verdicts are not all the same: the corpus must discriminate.
    let mut discriminating = 0usize;
    let mut sizes = BTreeMap::new();
    for expr in &expressions {
        let filter = PacketFilter::new(expr).unwrap_or_else(|e| panic!("{e}"));
        let mut l2_verdicts = [false, false];
        for (layer, packets) in [(Layer::L2, &corpus.l2), (Layer::L3, &corpus.l3)] {
            let oracle = kfilter::libpcap_program(expr, layer);
            assert_eq!(
                oracle.is_err(),
                filter.l3_note.is_some() && layer == Layer::L3,
                "{expr:?}: libpcap and the translator disagree on whether it compiles for {layer}"
            );
            let runner = Runner::new(filter.variant(layer));
            sizes.insert(
                (expr.clone(), layer == Layer::L2),
                filter.variant(layer).len(),
            );
            for (index, packet) in packets.iter().enumerate() {
                let expected = oracle.as_ref().is_ok_and(|program| program.filter(packet));
                let got = runner.run(packet);
                checks += 1;
                accepted += usize::from(expected);
                if layer == Layer::L2 {
                    l2_verdicts[usize::from(expected)] = true;
                }
                if got.as_ref().map(|&verdict| verdict != 0) != Ok(expected) {
                    mismatches.push(format!(
                        "{expr:?} {layer} packet #{index} ({} bytes {}): libpcap {expected}, eBPF {got:?}",
                        packet.len(),
                        packet.iter().take(64).map(|b| format!("{b:02x}")).collect::<String>()
                    ));
                }
            }
        }
        discriminating += usize::from(l2_verdicts == [true, true]);
    }
    let stray = STRAY_READS.with(Cell::get);
    let l2_sizes: Vec<usize> = sizes
        .iter()
        .filter(|((_, l2), _)| *l2)
        .map(|(_, &n)| n)
        .collect();
    eprintln!(
        "kfilter differential: {} expressions x ({} L2 + {} L3 packets) = {checks} verdicts, \
         {accepted} accepts; {discriminating} expressions split the L2 corpus; L2 eBPF sizes \
         min {} median {} max {}",
        expressions.len(),
        corpus.l2.len(),
        corpus.l3.len(),
        l2_sizes.iter().min().unwrap(),
        {
            let mut sorted = l2_sizes.clone();
            sorted.sort_unstable();
            sorted[sorted.len() / 2]
        },
        l2_sizes.iter().max().unwrap(),
    );
    assert!(
        mismatches.is_empty(),
        "{} of {checks} verdicts differ; first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(25)].join("\n")
    );
    assert_eq!(
        stray, 0,
        "helper 113 was asked for bytes outside the packet"
    );
    assert!(
        accepted > checks / 20 && accepted < checks / 2,
        "{accepted} of {checks} accepted"
    );
    assert!(
        discriminating * 10 >= expressions.len() * 9,
        "only {discriminating} of {} expressions both accept and reject some L2 packet",
        expressions.len()
    );
}
