//! trail-filter through the real binary: selections checked against predicates computed here on
//! the typed events, pcap() verdicts against tcpdump, journeys, byte-exact pass-through, errors.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use trail::model::codec::{self, Frame, FrameKind, RawMap, Writer};
use trail::model::event::{
    linktype, Common, Conntrack, Dev, Drop, Event, Header, Layer, Lost, Netns, Probe, ProbeKind,
    Skb, Stack, StackFrame, Stage, Tracking, Trailer,
};

use crate::common::{self, run, run_ok};

/// A deterministic pseudo-random sequence (xorshift), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const PROBES: &[(ProbeKind, &str)] = &[
    (ProbeKind::Tracepoint, "skb:kfree_skb"),
    (ProbeKind::Tracepoint, "net:netif_receive_skb"),
    (ProbeKind::Tracepoint, "net:net_dev_start_xmit"),
    (ProbeKind::Kprobe, "ip_rcv"),
    (ProbeKind::Kretprobe, "ip_rcv"),
];

/// Varied events: every section present or not, values drawn from small sets so that each
/// predicate selects some events and not others.
fn varied_events(n: usize) -> Vec<Event> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    (0..n)
        .map(|i| {
            let (kind, name) = *rng.pick(PROBES);
            let mut event = Event {
                common: Some(Common {
                    timestamp: 1_000_000_000 + i as u64 * 100_000_000,
                    cpu: (rng.next() % 4) as u32,
                    pid: *rng.pick(&[1, 42, 4242]),
                    tid: *rng.pick(&[1, 42, 43]),
                    comm: rng
                        .pick(&["curl", "nginx", "swapper/0", "ksoftirqd/1"])
                        .to_string(),
                    host: None,
                }),
                probe: Some(Probe {
                    kind,
                    name: name.into(),
                }),
                ..Event::default()
            };
            if rng.next() % 3 == 0 {
                event.drop = Some(Drop {
                    reason: rng
                        .pick(&["NETFILTER_DROP", "NO_SOCKET", "NOT_SPECIFIED"])
                        .to_string(),
                    code: (rng.next() % 80) as u32,
                    subsystem: None,
                });
            }
            if rng.next() % 4 != 0 {
                event.dev = Some(Dev {
                    ifindex: (rng.next() % 5) as u32,
                    name: rng.pick(&["veth0", "veth1", "lo", "eth0"]).to_string(),
                    rx_ifindex: None,
                });
            }
            if rng.next() % 2 == 0 {
                event.skb = Some(Skb {
                    mark: *rng.pick(&[0, 1, 0x101, 0x2ff, 0xdead_beef]),
                    len: (rng.next() % 1500) as u32,
                    cloned: rng.next() % 2 == 0,
                    vlan_tci: (rng.next() % 3 == 0).then_some(100),
                    ..Skb::default()
                });
            }
            if rng.next() % 2 == 0 {
                event.netns = Some(Netns {
                    inum: *rng.pick(&[4026531840, 4026532000, 4026532001]),
                    cookie: None,
                });
            }
            if rng.next() % 3 == 0 {
                event.ct = Some(Conntrack {
                    state: rng.pick(&["new", "established", "related"]).to_string(),
                    ..Conntrack::default()
                });
                event.ct.as_mut().unwrap().orig.dport = Some(*rng.pick(&[53, 443, 8080]));
            }
            if rng.next() % 4 == 0 {
                event.stack = Some(Stack {
                    frames: vec![
                        StackFrame {
                            addr: 1,
                            symbol: Some(
                                rng.pick(&["kfree_skb_reason+0x10", "ip_rcv+0x4"])
                                    .to_string(),
                            ),
                        },
                        StackFrame {
                            addr: 2,
                            symbol: Some("netif_receive_skb+0x20".into()),
                        },
                    ],
                });
            }
            if rng.next() % 2 == 0 {
                event.tracking = Some(Tracking {
                    first_seen: 0xabc + rng.next() % 3,
                    orig_head: 0xffff_8880_0000_0000,
                    ..Tracking::default()
                });
            }
            if kind == ProbeKind::Kretprobe {
                event.retval = Some(*rng.pick(&[-1, 0, 1]));
            }
            event
        })
        .collect()
}

/// Filters `input` with `args` and returns the selected events.
fn filtered(args: &[&str], input: &[u8]) -> Vec<Event> {
    common::events(&run_ok("trail-filter", args, input))
}

#[test]
fn field_predicates_select_exactly_the_matching_events() {
    let events = varied_events(400);
    let input = common::stream(&common::header("trail-test", "h", 0), &events);
    type Predicate = fn(&Event) -> bool;
    let spec = |e: &Event| e.probe.as_ref().map(|p| p.spec()).unwrap_or_default();
    let common_of = |e: &Event| e.common.clone().unwrap_or_default();
    let cases: Vec<(&str, Predicate)> = vec![
        (r#"probe == "tp:skb:kfree_skb""#, |e| {
            e.probe.as_ref().unwrap().spec() == "tp:skb:kfree_skb"
        }),
        (r#"probe ~ "tp:net:*""#, |e| {
            e.probe.as_ref().unwrap().spec().starts_with("tp:net:")
        }),
        (r#"probe !~ "tp:*""#, |e| {
            !e.probe.as_ref().unwrap().spec().starts_with("tp:")
        }),
        (r#"drop.reason == "NETFILTER_DROP""#, |e| {
            e.drop
                .as_ref()
                .is_some_and(|d| d.reason == "NETFILTER_DROP")
        }),
        ("drop", |e| e.drop.is_some()),
        ("has drop and not has dev", |e| {
            e.drop.is_some() && e.dev.is_none()
        }),
        (r#"dev.name == "veth0""#, |e| {
            e.dev.as_ref().is_some_and(|d| d.name == "veth0")
        }),
        (r#"dev.name != "veth0""#, |e| {
            e.dev.as_ref().is_some_and(|d| d.name != "veth0")
        }),
        (r#"not dev.name == "veth0""#, |e| {
            e.dev.as_ref().is_none_or(|d| d.name != "veth0")
        }),
        (r#"dev.name ~ "veth[0-9]""#, |e| {
            e.dev.as_ref().is_some_and(|d| d.name.starts_with("veth"))
        }),
        ("skb.mark & 0xff == 1", |e| {
            e.skb.as_ref().is_some_and(|s| s.mark & 0xff == 1)
        }),
        ("skb.mark > 0x100", |e| {
            e.skb.as_ref().is_some_and(|s| s.mark > 0x100)
        }),
        ("skb.cloned == true", |e| {
            e.skb.as_ref().is_some_and(|s| s.cloned)
        }),
        ("has skb.vlan_tci", |e| {
            e.skb.as_ref().is_some_and(|s| s.vlan_tci.is_some())
        }),
        ("netns.inum == 4026532000", |e| {
            e.netns.as_ref().is_some_and(|n| n.inum == 4026532000)
        }),
        ("netns.inum >= 4026532000 && cpu <= 1", |e| {
            e.netns.as_ref().is_some_and(|n| n.inum >= 4026532000)
                && e.common.as_ref().unwrap().cpu <= 1
        }),
        (r#"comm == "curl""#, |e| {
            e.common.as_ref().unwrap().comm == "curl"
        }),
        (r#"comm ~ "*/?""#, |e| {
            e.common.as_ref().unwrap().comm.contains('/')
        }),
        ("pid == 42 || tid == 43", |e| {
            let c = e.common.as_ref().unwrap();
            c.pid == 42 || c.tid == 43
        }),
        ("!(pid == 42) and (cpu == 0 or cpu == 3)", |e| {
            let c = e.common.as_ref().unwrap();
            c.pid != 42 && (c.cpu == 0 || c.cpu == 3)
        }),
        (r#"ct.state == "new""#, |e| {
            e.ct.as_ref().is_some_and(|c| c.state == "new")
        }),
        ("ct.orig.dport == 443", |e| {
            e.ct.as_ref().is_some_and(|c| c.orig.dport == Some(443))
        }),
        (r#"stack.frames.symbol ~ "kfree_skb*""#, |e| {
            e.stack.as_ref().is_some_and(|s| {
                s.frames
                    .iter()
                    .any(|f| f.symbol.as_deref().unwrap_or("").starts_with("kfree_skb"))
            })
        }),
        ("retval < 0", |e| e.retval.is_some_and(|r| r < 0)),
        (r#"tracking.id == "abd-ffff888000000000""#, |e| {
            e.tracking
                .as_ref()
                .is_some_and(|t| t.id() == "abd-ffff888000000000")
        }),
        ("common.timestamp >= 20.5s", |e| {
            e.common.as_ref().unwrap().timestamp >= 20_500_000_000
        }),
        ("true", |_| true),
        ("false", |_| false),
    ];
    for (expr, predicate) in &cases {
        let expected: Vec<Event> = events.iter().filter(|e| predicate(e)).cloned().collect();
        let got = filtered(&[expr], &input);
        assert!(
            !expected.is_empty() || *expr == "false",
            "{expr}: the fixture should select something"
        );
        assert!(
            expected.len() < events.len() || *expr == "true",
            "{expr}: the fixture should reject something"
        );
        assert_eq!(
            got.len(),
            expected.len(),
            "{expr}: number of selected events"
        );
        assert!(got == expected, "{expr}: wrong selection");
        // --invert selects the complement, --count counts, --limit truncates.
        let rest: Vec<Event> = events.iter().filter(|e| !predicate(e)).cloned().collect();
        assert!(
            filtered(&["--invert", expr], &input) == rest,
            "{expr}: --invert"
        );
        let count = run_ok("trail-filter", &["--count", expr], &input);
        assert_eq!(
            String::from_utf8(count).unwrap().trim(),
            expected.len().to_string(),
            "{expr}: --count"
        );
        let limited = filtered(&["--limit", "3", expr], &input);
        assert!(
            limited[..] == expected[..expected.len().min(3)],
            "{expr}: --limit"
        );
    }
    // --probe is an `or` of globs on the spec, combined with -e by `and`.
    let by_probe = filtered(
        &["--probe", "k:*", "--probe", "kr:*", "-e", "pid == 42"],
        &input,
    );
    let expected: Vec<Event> = events
        .iter()
        .filter(|e| spec(e).starts_with("k:") || spec(e).starts_with("kr:"))
        .filter(|e| common_of(e).pid == 42)
        .cloned()
        .collect();
    assert!(!expected.is_empty() && by_probe == expected, "--probe");
}

#[test]
fn time_is_relative_to_the_section_start() {
    let events = varied_events(50);
    // started_ns on the wall clock, realtime_offset_ns mapping the monotonic timestamps onto it:
    // the section started at monotonic 0.5 s.
    let mut header = common::header("trail-test", "h", 1_700_000_000_000_000_000);
    header.started_ns = 1_700_000_000_500_000_000;
    let input = common::stream(&header, &events);
    let got = filtered(&["time >= 2s and time < 3500ms"], &input);
    let expected: Vec<Event> = events
        .iter()
        .filter(|e| (2_500_000_000..4_000_000_000).contains(&e.common.as_ref().unwrap().timestamp))
        .cloned()
        .collect();
    assert_eq!(expected.len(), 15);
    assert!(got == expected, "time from started_ns");
    // Without started_ns, time counts from the section's first event (1 s here); a second
    // section restarts the count.
    let plain = common::stream(&common::header("trail-test", "h", 0), &events);
    let both = [plain.clone(), plain].concat();
    let got = filtered(&["time < 300ms"], &both);
    let first_three: Vec<Event> = events[..3].to_vec();
    assert!(
        got == [first_three.clone(), first_three].concat(),
        "time from the first event"
    );
}

/// Packets of many kinds, as (Ethernet frame, wire length); some captured short.
fn packets() -> Vec<(Vec<u8>, u32)> {
    use etherparse::PacketBuilder;
    let mut out = Vec::new();
    let hosts = [[192, 0, 2, 1], [192, 0, 2, 2], [198, 51, 100, 7]];
    let v6 = [
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    ];
    for (i, (src, dst)) in [(0, 1), (1, 0), (2, 1), (0, 2)].into_iter().enumerate() {
        for port in [53u16, 443, 8080] {
            let payload = vec![0u8; 20 + 150 * i];
            let mut tcp = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(hosts[src], hosts[dst], 64)
                .tcp(40000 + port, port, 1, 1000)
                .syn()
                .write(&mut tcp, &payload)
                .unwrap();
            out.push(tcp);
            let mut udp = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(hosts[src], hosts[dst], 64)
                .udp(5000, port)
                .write(&mut udp, &payload)
                .unwrap();
            out.push(udp);
        }
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(hosts[src], hosts[dst], 64)
            .icmpv4_echo_request(1, i as u16)
            .write(&mut icmp, &[0u8; 8])
            .unwrap();
        out.push(icmp);
        let mut six = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(v6[i % 2], v6[(i + 1) % 2], 64)
            .tcp(1234, 443, 1, 1000)
            .ack(7)
            .write(&mut six, &vec![0u8; 40 * i])
            .unwrap();
        out.push(six);
        let mut vlan = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(etherparse::VlanId::try_new(100 + i as u16).unwrap())
            .ipv4(hosts[src], hosts[dst], 64)
            .udp(5000, 53)
            .write(&mut vlan, &[0u8; 12])
            .unwrap();
        out.push(vlan);
    }
    // An ARP request (ethertype 0x0806), written by hand.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2; 6]);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[2; 6]);
    arp.extend_from_slice(&[192, 0, 2, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[192, 0, 2, 2]);
    out.push(arp);
    // Every fifth packet captured at 64 bytes, so that `len`/`greater` see the wire length.
    out.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let wire = p.len() as u32;
            let kept = if i % 5 == 4 {
                p[..p.len().min(64)].to_vec()
            } else {
                p
            };
            (kept, wire)
        })
        .collect()
}

/// Writes a pcap of `packets` (packet `i` stamped at second `i + 1`) with `datalink`.
fn write_pcap(path: &std::path::Path, packets: &[(Vec<u8>, u32)], datalink: pcap_file::DataLink) {
    let header = pcap_file::pcap::PcapHeader {
        datalink,
        ..Default::default()
    };
    let file = std::fs::File::create(path).unwrap();
    let mut writer = pcap_file::pcap::PcapWriter::with_header(file, header).unwrap();
    for (i, (data, wire)) in packets.iter().enumerate() {
        let packet =
            pcap_file::pcap::PcapPacket::new(Duration::from_secs(i as u64 + 1), *wire, data);
        writer.write_packet(&packet).unwrap();
    }
}

/// Indexes of the packets tcpdump selects with `filter` (by their timestamps).
fn tcpdump_selects(path: &std::path::Path, filter: &str) -> BTreeSet<u64> {
    let output = Command::new("tcpdump")
        .args(["-n", "-tt", "-r"])
        .arg(path)
        .arg(filter)
        .output()
        .expect("tcpdump runs");
    assert!(
        output.status.success(),
        "tcpdump {filter}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let secs = line.split('.').next().unwrap();
            secs.parse::<u64>().unwrap() - 1
        })
        .collect()
}

fn check_against_tcpdump(
    datalink: pcap_file::DataLink,
    packets: &[(Vec<u8>, u32)],
    filters: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pcap");
    write_pcap(&path, packets, datalink);
    let stream = run_ok("trail-from-pcap", &[path.to_str().unwrap()], &[]);
    let events = common::events(&stream);
    assert_eq!(events.len(), packets.len(), "every packet imported");
    for filter in filters {
        let expected = tcpdump_selects(&path, filter);
        assert!(
            !expected.is_empty() && expected.len() < packets.len(),
            "{filter}: the fixture should split"
        );
        let expr = format!("pcap(\"{filter}\")");
        let got: BTreeSet<u64> = filtered(&[&expr], &stream)
            .iter()
            .map(|e| e.common.as_ref().unwrap().timestamp / 1_000_000_000 - 1)
            .collect();
        assert_eq!(
            got, expected,
            "pcap(\"{filter}\") vs tcpdump on {datalink:?}"
        );
    }
}

#[test]
fn pcap_verdicts_equal_tcpdump_on_ethernet() {
    let filters = [
        "tcp",
        "udp port 53",
        "host 192.0.2.1",
        "tcp port 443 and host 192.0.2.1",
        "ip6",
        "icmp",
        "greater 200",
        "less 100",
        "tcp[tcpflags] & tcp-syn != 0",
        "vlan",
        "vlan and udp",
        "arp",
        "net 198.51.100.0/24",
        "ip6 and tcp port 443",
        "not ip",
        "ether src 02:02:02:02:02:02 and src host 198.51.100.7",
    ];
    check_against_tcpdump(pcap_file::DataLink::ETHERNET, &packets(), &filters);
}

#[test]
fn pcap_verdicts_equal_tcpdump_on_raw_ip() {
    // The same IP packets without their Ethernet header (no VLAN or ARP frames).
    let raw: Vec<(Vec<u8>, u32)> = packets()
        .into_iter()
        .filter(|(p, _)| matches!(u16::from_be_bytes([p[12], p[13]]), 0x0800 | 0x86dd))
        .map(|(p, wire)| (p[14..].to_vec(), wire - 14))
        .collect();
    let filters = [
        "tcp",
        "udp port 53",
        "host 192.0.2.1",
        "tcp port 443 and host 192.0.2.1",
        "ip6",
        "greater 200",
        "tcp[tcpflags] & tcp-syn != 0",
        "not ip",
    ];
    check_against_tcpdump(pcap_file::DataLink::RAW, &raw, &filters);
}

#[test]
fn pcap_on_events_without_packets_and_per_event_link_types() {
    let (eth, _) = packets().into_iter().next().unwrap();
    let mut raw_event = common::event(3, "net:netif_rx", Some(&eth[14..]));
    let packet = raw_event.packet.as_mut().unwrap();
    packet.layer = Layer::L3;
    packet.linktype = linktype::RAW;
    let events = vec![
        common::event(1, "net:netif_rx", Some(&eth)),
        common::event(2, "net:netif_rx", None),
        raw_event,
    ];
    let input = common::stream(&common::header("trail-test", "h", 0), &events);
    let got = filtered(&[r#"pcap("tcp")"#], &input);
    assert!(
        got == vec![events[0].clone(), events[2].clone()],
        "both link types, no packet: no match"
    );
    // A filter that compiles for Ethernet but not for raw IP fails on the raw event (exit 2).
    let output = run(
        "trail-filter",
        &[r#"pcap("ether host 02:02:02:02:02:02")"#],
        &input,
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("raw IP") && stderr.starts_with("trail-filter: error: stdin: byte"),
        "{stderr}"
    );
}

/// Events of several journeys, interleaved; the drop is the last event of journeys 1 and 3.
fn journey_events() -> Vec<Event> {
    let journey = |id: u64, ts: u64, probe: &str, dropped: bool| {
        let mut e = common::event(ts, probe, None);
        e.tracking = Some(Tracking {
            first_seen: id,
            orig_head: 0xffff_0000 + id,
            ..Tracking::default()
        });
        if dropped {
            e.drop = Some(Drop {
                reason: "NETFILTER_DROP".into(),
                ..Drop::default()
            });
        }
        e
    };
    vec![
        journey(1, 1_000, "net:netif_receive_skb", false),
        journey(2, 2_000, "net:netif_receive_skb", false),
        common::event(2_500, "net:netif_rx", None),
        journey(1, 3_000, "net:ip_rcv", false),
        journey(3, 4_000, "net:netif_receive_skb", false),
        journey(2, 5_000, "skb:consume_skb", false),
        journey(3, 6_000, "net:ip_rcv", false),
        journey(1, 7_000_000, "skb:kfree_skb", true),
        journey(3, 8_000_000, "skb:kfree_skb", true),
        journey(4, 9_000_000, "skb:consume_skb", false),
    ]
}

#[test]
fn journey_mode_keeps_whole_journeys_when_the_match_comes_last() {
    let events = journey_events();
    let input = common::stream(&common::header("trail-test", "h", 0), &events);
    let dropped: BTreeSet<String> = events
        .iter()
        .filter(|e| e.drop.is_some())
        .map(|e| e.tracking.as_ref().unwrap().id())
        .collect();
    let in_dropped = |e: &&Event| {
        e.tracking
            .as_ref()
            .is_some_and(|t| dropped.contains(&t.id()))
    };
    let expected: Vec<Event> = events.iter().filter(in_dropped).cloned().collect();
    assert_eq!(expected.len(), 6);
    let output = run("trail-filter", &["--journey", "drop"], &input);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        common::events(&output.stdout) == expected,
        "journeys within the window"
    );
    // --invert drops matching journeys and keeps the rest (including events without an id).
    let rest: Vec<Event> = events.iter().filter(|e| !in_dropped(e)).cloned().collect();
    assert!(
        filtered(&["--journey", "--invert", "drop"], &input) == rest,
        "--invert"
    );
    assert_eq!(
        String::from_utf8(run_ok(
            "trail-filter",
            &["--journey", "--count", "drop"],
            &input
        ))
        .unwrap(),
        "6\n"
    );
    // A 1 ms window: journey 1's first two events and journey 3's first two left before their
    // drops (at 7 and 8 ms) arrived. They are lost, and counted on stderr.
    let output = run(
        "trail-filter",
        &["--journey", "--window", "1ms", "drop"],
        &input,
    );
    assert!(output.status.success());
    let late = |e: &&Event| e.drop.is_some();
    assert!(
        common::events(&output.stdout) == events.iter().filter(late).cloned().collect::<Vec<_>>()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: 4 events of matching journeys"),
        "{stderr}"
    );
    // A window of 4 events: journey 1 matches at position 7, when its event 0 has left but
    // event 3 has not; journey 3 (positions 4, 6, 8) fits.
    let output = run(
        "trail-filter",
        &["--journey", "--window", "4", "drop"],
        &input,
    );
    let expected: Vec<Event> = [3, 4, 6, 7, 8].iter().map(|&i| events[i].clone()).collect();
    assert!(
        common::events(&output.stdout) == expected,
        "window in events"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: 1 events of matching journeys"),
        "{stderr}"
    );
}

#[test]
fn journey_mode_on_sorted_input_is_exact() {
    // What trail-sort produces: events grouped by journey, index set, trail-sort in the pipeline.
    let mut events = journey_events();
    events.sort_by_key(|e| {
        e.tracking
            .as_ref()
            .map(|t| t.first_seen)
            .unwrap_or(u64::MAX)
    });
    let mut index = 0;
    for i in 0..events.len() {
        let id = events[i].tracking.as_ref().map(|t| t.id());
        index = if i > 0 && events[i - 1].tracking.as_ref().map(|t| t.id()) == id {
            index + 1
        } else {
            0
        };
        if let Some(t) = events[i].tracking.as_mut() {
            t.index = Some(index);
        }
    }
    let mut header = common::header("trail-test", "h", 0);
    header.pipeline.push(Stage {
        tool: "trail-sort".into(),
        version: "test".into(),
        args: vec![],
    });
    let input = common::stream(&header, &events);
    let expected: Vec<Event> = events
        .iter()
        .filter(|e| {
            e.tracking
                .as_ref()
                .is_some_and(|t| t.first_seen == 1 || t.first_seen == 3)
        })
        .cloned()
        .collect();
    // Even a one-event window cannot lose anything: sorted input is judged per journey.
    let output = run(
        "trail-filter",
        &["--journey", "--window", "1", "drop"],
        &input,
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(common::events(&output.stdout) == expected);
}

/// Encodes `event` and adds an entry the event model does not know.
fn with_unknown(event: &Event, key: &str, value: &serde_json::Value) -> Vec<u8> {
    let mut payload = Vec::new();
    codec::encode(event, &mut payload);
    let mut encoded = Vec::new();
    codec::encode(value, &mut encoded);
    let index = RawMap::parse(&payload).unwrap();
    let mut out = Vec::new();
    index.with_entry(&payload, key, &encoded, &mut out);
    out
}

#[test]
fn selected_records_pass_through_byte_for_byte() {
    let header = common::header("trail-test", "h", 0);
    let mut writer = Writer::new(Vec::new());
    writer.write_header(&header).unwrap();
    let gre = serde_json::json!({"key": 5, "flags": ["k", "s"], "inner": {"proto": 2048}});
    let unknown = with_unknown(
        &common::event(1, "net:netif_rx", Some(&[1, 2, 3])),
        "gre",
        &gre,
    );
    writer.write_frame(FrameKind::Event, &unknown).unwrap();
    // A known section with a field this build does not know.
    let mut drop = common::event(2, "skb:kfree_skb", None);
    drop.drop = Some(Drop {
        reason: "NO_SOCKET".into(),
        ..Drop::default()
    });
    let drop_payload = with_unknown(&drop, "extra", &serde_json::json!([1, {"a": null}]));
    writer.write_frame(FrameKind::Event, &drop_payload).unwrap();
    writer
        .write_event(&common::event(3, "net:netif_rx", None))
        .unwrap();
    writer
        .write_lost(&Lost {
            probe: "tp:net:netif_rx".into(),
            count: 7,
            ..Lost::default()
        })
        .unwrap();
    writer.write_frame(FrameKind::Other(b'X'), &[0x80]).unwrap();
    writer
        .write_trailer(&Trailer {
            events: 3,
            ..Trailer::default()
        })
        .unwrap();
    let input = writer.into_inner().unwrap();
    let in_frames = common::frames(&input);

    let payloads = |out: &[Frame]| -> Vec<(FrameKind, Vec<u8>)> {
        out.iter()
            .filter(|f| f.kind != FrameKind::Header)
            .map(|f| (f.kind, f.payload.clone()))
            .collect()
    };
    let check_header = |out: &[Frame], args: &[&str]| {
        let got: Header = codec::decode(&out[0], "out").unwrap();
        let stage = got.pipeline.last().unwrap();
        assert_eq!(stage.tool, "trail-filter");
        assert_eq!(stage.args, args);
        assert_eq!(
            Header {
                pipeline: header.pipeline.clone(),
                ..got.clone()
            },
            header
        );
    };
    // Everything passes unchanged.
    let out = common::frames(&run_ok("trail-filter", &["true"], &input));
    check_header(&out, &["true"]);
    assert_eq!(payloads(&out), payloads(&in_frames));
    // Unknown sections can be filtered on; lost, unknown and trailer records always pass.
    for (expr, kept) in [
        ("gre.key == 5", 1),
        ("gre.flags ~ \"s\"", 1),
        ("gre.inner.proto == 0x800", 1),
        ("has extra", 2),
        ("drop.reason == \"NO_SOCKET\"", 2),
        ("gre.key == 6", 99),
    ] {
        let out = common::frames(&run_ok("trail-filter", &[expr], &input));
        let expected: Vec<(FrameKind, Vec<u8>)> = payloads(&in_frames)
            .into_iter()
            .enumerate()
            .filter(|(i, (kind, _))| *kind != FrameKind::Event || *i + 1 == kept)
            .map(|(_, f)| f)
            .collect();
        assert_eq!(payloads(&out), expected, "{expr}");
    }
    // Journey mode forwards the same bytes.
    let out = common::frames(&run_ok("trail-filter", &["--journey", "true"], &input));
    assert_eq!(payloads(&out), payloads(&in_frames));
}

#[test]
fn bad_expressions_are_usage_errors_with_a_column() {
    let input = common::stream(
        &common::header("trail-test", "h", 0),
        &[common::event(1, "x", None)],
    );
    let cases = [
        ("drop.reason ==", "trail-filter: error: expression column 15: expected a value after '=='"),
        ("dev.nmae == \"x\"", "trail-filter: error: expression column 5: 'dev' has no field 'nmae'; did you mean 'name'?"),
        ("pid == 'x'", "trail-filter: error: expression column 8: 'pid' is an integer: compare with a number"),
        ("(drop", "trail-filter: error: expression column 6: expected ')' to close the '(' at column 1"),
        ("pcap(\"tcp prot 80\")", "trail-filter: error: expression column 6: pcap(\"tcp prot 80\") does not compile: "),
    ];
    for (expr, message) in cases {
        let output = run("trail-filter", &[expr], &input);
        assert_eq!(output.status.code(), Some(2), "{expr}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(message) && stderr.lines().count() == 1,
            "{expr}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{expr}: no output");
    }
    let output = run("trail-filter", &[], &input);
    assert_eq!(output.status.code(), Some(2));
    let output = run(
        "trail-filter",
        &["--journey", "--window", "2x", "drop"],
        &input,
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_input_is_a_clean_error() {
    // Not a stream at all.
    let output = run("trail-filter", &["drop"], b"\xd4\xc3\xb2\xa1rest of a pcap");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("pcap file"));
    // An event whose payload is not a map, after a valid one.
    let header = common::header("trail-test", "h", 0);
    let mut writer = Writer::new(Vec::new());
    writer.write_header(&header).unwrap();
    writer.write_event(&common::event(1, "x", None)).unwrap();
    let offset = writer.into_inner().unwrap().len();
    let mut writer = Writer::new(Vec::new());
    writer.write_header(&header).unwrap();
    writer.write_event(&common::event(1, "x", None)).unwrap();
    writer
        .write_frame(FrameKind::Event, &[0x93, 1, 2, 3])
        .unwrap();
    let input = writer.into_inner().unwrap();
    for args in [&["pid == 42"][..], &["--journey", "pid == 42"]] {
        let output = run("trail-filter", args, &input);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "trail-filter: error: stdin: byte {offset}: corrupt record"
            )),
            "{args:?}: {stderr}"
        );
    }
    // A truncated stream.
    let output = run("trail-filter", &["true"], &input[..input.len() - 2]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("truncated"));
}
