//! trail-to-pcap through the real readers: tcpdump/libpcap and tshark are the oracles for bytes,
//! times, filters, comments and directions; trail-from-pcap for the way back.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use etherparse::PacketBuilder;
use trail::model::event::{self, Bytes, Dev, Drop, Event, Layer, Netns, Packet, Skb, Tracking};

use crate::common::{self, header, run, run_ok, stream};

const OFFSET_A: i64 = 1_700_000_000_000_000_000;
const OFFSET_B: i64 = 1_700_000_100_123_000_000;

/// A captured packet and how the test expects it in the pcap.
struct Case {
    event: Event,
    /// Wall-clock ns.
    time: u64,
    /// Bytes as written with the default link type (Ethernet).
    ether: Vec<u8>,
    /// Whether it is a DNS-port packet (for the filter test).
    dns: bool,
    /// Host of its section.
    host: &'static str,
}

fn udp4(sport: u16, dport: u16, l2: bool) -> Vec<u8> {
    let payload = [0xab; 12];
    let mut out = Vec::new();
    if l2 {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(sport, dport)
            .write(&mut out, &payload)
    } else {
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(sport, dport)
            .write(&mut out, &payload)
    }
    .expect("build udp4");
    out
}

fn udp6(sport: u16, dport: u16, l2: bool) -> Vec<u8> {
    let payload = [0xcd; 7];
    let (src, dst) = ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], {
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[0x20, 1, 0xd, 0xb8]);
        d[15] = 2;
        d
    });
    let mut out = Vec::new();
    if l2 {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
            .ipv6(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, &payload)
    } else {
        PacketBuilder::ipv6(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, &payload)
    }
    .expect("build udp6");
    out
}

fn tcp4(l2: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if l2 {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 5], [2, 0, 0, 0, 0, 6])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(40000, 80, 1, 1000)
            .write(&mut out, b"GET /")
    } else {
        PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(40000, 80, 1, 1000)
            .write(&mut out, b"GET /")
    }
    .expect("build tcp4");
    out
}

/// An event with `bytes` starting at L2 (Ethernet) or L3, on a device.
fn packet_event(
    ts: u64,
    probe: &str,
    bytes: &[u8],
    l2: bool,
    dev: Option<(u32, &str, u32)>,
) -> Event {
    let mut e = common::event(ts, probe, Some(bytes));
    if !l2 {
        e.packet = Some(Packet {
            data: Bytes(bytes.to_vec()),
            len: bytes.len() as u32,
            layer: Layer::L3,
            linktype: event::linktype::RAW,
        });
    }
    if let Some((ifindex, name, netns)) = dev {
        e.dev = Some(Dev {
            ifindex,
            name: name.into(),
            rx_ifindex: None,
        });
        e.netns = Some(Netns {
            inum: netns,
            cookie: None,
        });
    }
    e
}

fn ether_of(bytes: &[u8], l2: bool) -> Vec<u8> {
    if l2 {
        return bytes.to_vec();
    }
    let mut out = vec![0u8; 12];
    out.extend_from_slice(if bytes[0] >> 4 == 4 {
        &[0x08, 0x00]
    } else {
        &[0x86, 0xdd]
    });
    out.extend_from_slice(bytes);
    out
}

fn case(
    offset: i64,
    ts: u64,
    probe: &str,
    bytes: Vec<u8>,
    l2: bool,
    dev: Option<(u32, &str, u32)>,
    dns: bool,
) -> Case {
    Case {
        event: packet_event(ts, probe, &bytes, l2, dev),
        time: (ts as i64 + offset) as u64,
        ether: ether_of(&bytes, l2),
        dns,
        host: if offset == OFFSET_A {
            "host-a"
        } else {
            "host-b"
        },
    }
}

/// Two sections with different clock offsets, L2 and L3 packets, IPv4 and IPv6, several
/// interfaces and namespaces, one event without packet bytes.
fn fixture() -> (Vec<u8>, Vec<Case>) {
    let mut a = vec![
        case(
            OFFSET_A,
            1_000,
            "net:netif_receive_skb",
            udp4(3333, 53, true),
            true,
            Some((2, "eth0", 4026531840)),
            true,
        ),
        case(
            OFFSET_A,
            2_500,
            "net:net_dev_start_xmit",
            udp4(53, 3333, false),
            false,
            Some((5, "veth0", 4026532000)),
            true,
        ),
        case(
            OFFSET_A,
            3_001,
            "skb:kfree_skb",
            udp6(4444, 53, false),
            false,
            Some((1, "lo", 4026531840)),
            true,
        ),
        case(
            OFFSET_A,
            4_000_000_007,
            "net:netif_receive_skb",
            tcp4(true),
            true,
            None,
            false,
        ),
        case(
            OFFSET_A,
            5_000_000_000,
            "net:net_dev_xmit",
            udp6(5555, 5353, true),
            true,
            Some((2, "eth0", 4026531840)),
            false,
        ),
        case(
            OFFSET_A,
            6_000_000_000,
            "net:netif_receive_skb",
            tcp4(false),
            false,
            Some((2, "eth0", 4026531840)),
            false,
        ),
    ];
    a[0].event.skb = Some(Skb {
        pkt_type: 0,
        addr: 0xffff_8880_0000_1000,
        ..Skb::default()
    });
    a[0].event.tracking = Some(Tracking {
        first_seen: 1_000,
        orig_head: 0xffff_8880_0abc_0000,
        index: Some(0),
        ..Tracking::default()
    });
    a[2].event.drop = Some(Drop {
        reason: "NETFILTER_DROP".into(),
        code: 17,
        subsystem: None,
    });
    let b = vec![
        case(
            OFFSET_B,
            77,
            "net:netif_receive_skb",
            udp4(1000, 53, true),
            true,
            Some((2, "eth0", 4026531840)),
            true,
        ),
        case(
            OFFSET_B,
            99,
            "net:net_dev_queue",
            udp4(1000, 2000, false),
            false,
            Some((7, "br0", 4026531840)),
            false,
        ),
    ];
    let no_packet = common::event(3_500, "skb:consume_skb", None);
    let mut events_a: Vec<Event> = a.iter().map(|c| c.event.clone()).collect();
    events_a.insert(3, no_packet);
    let mut bytes = stream(&header("trail-capture", "host-a", OFFSET_A), &events_a);
    bytes.extend(stream(
        &header("trail-capture", "host-b", OFFSET_B),
        &b.iter().map(|c| c.event.clone()).collect::<Vec<_>>(),
    ));
    a.extend(b);
    (bytes, a)
}

fn epoch(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// Runs an external reader on `input` (stdin), returns stdout; panics with stderr on failure.
fn reader(program: &str, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// tcpdump's view: (timestamp, bytes) per packet, from `-tt --nano -xx`.
fn tcpdump_packets(pcap: &[u8], filter: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut args = vec!["-nn", "-tt", "--nano", "-xx", "-r", "-"];
    args.extend_from_slice(filter);
    let text = reader("tcpdump", &args, pcap);
    let mut packets: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(hex) = line.strip_prefix('\t') {
            let (_, groups) = hex.split_once(":  ").expect("hex dump line");
            let bytes = packets.last_mut().expect("hex after a packet line");
            for group in groups.split_whitespace() {
                for i in (0..group.len()).step_by(2) {
                    bytes
                        .1
                        .push(u8::from_str_radix(&group[i..i + 2], 16).expect("hex byte"));
                }
            }
        } else {
            let time = line
                .split_whitespace()
                .next()
                .expect("timestamp")
                .to_string();
            packets.push((time, Vec::new()));
        }
    }
    packets
}

fn tshark_fields(pcap: &[u8], fields: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", "-", "-T", "fields", "-E", "separator=|"];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    args.extend_from_slice(extra);
    reader("tshark", &args, pcap)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn tcpdump_reads_bytes_and_times_of_both_sections() {
    let (input, cases) = fixture();
    let out = run("trail-to-pcap", &[], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 1 events without packet bytes"),
        "stderr: {stderr}"
    );
    assert_eq!(
        &out.stdout[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "pcapng section header first"
    );
    let packets = tcpdump_packets(&out.stdout, &[]);
    assert_eq!(
        packets.len(),
        cases.len(),
        "one packet per event with bytes"
    );
    for (i, (case, (time, bytes))) in cases.iter().zip(&packets).enumerate() {
        assert_eq!(*time, epoch(case.time), "packet {i} timestamp");
        assert_eq!(*bytes, case.ether, "packet {i} bytes");
    }
}

#[test]
fn tshark_sees_lengths_times_interfaces_comments_and_directions() {
    let (input, cases) = fixture();
    let pcap = run_ok("trail-to-pcap", &[], &input);
    let rows = tshark_fields(
        &pcap,
        &[
            "frame.time_epoch",
            "frame.len",
            "frame.cap_len",
            "frame.interface_name",
            "frame.interface_description",
            "frame.comment",
            "frame.packet_flags_direction",
        ],
        &[],
    );
    assert_eq!(rows.len(), cases.len());
    for (i, (case, row)) in cases.iter().zip(&rows).enumerate() {
        assert_eq!(row[0], epoch(case.time), "packet {i} time");
        assert_eq!(row[1], case.ether.len().to_string(), "packet {i} frame.len");
        assert_eq!(row[2], case.ether.len().to_string(), "packet {i} cap_len");
        let dev = case.event.dev.as_ref();
        assert_eq!(
            row[3],
            dev.map_or("unknown", |d| d.name.as_str()),
            "packet {i} interface"
        );
        if let (Some(dev), Some(ns)) = (dev, case.event.netns.as_ref()) {
            let want = format!(
                "trail: host {} netns {} ifindex {}",
                case.host, ns.inum, dev.ifindex
            );
            assert_eq!(row[4], want, "packet {i}");
        }
        let probe = case.event.probe.as_ref().expect("probe").spec();
        assert!(
            row[5].starts_with(&probe),
            "packet {i} comment {:?} names {probe}",
            row[5]
        );
        let synthesized = case.event.packet.as_ref().expect("packet").layer == Layer::L3;
        assert_eq!(
            row[5].contains("[ethernet header synthesized]"),
            synthesized,
            "packet {i}: {}",
            row[5]
        );
        let expected_direction = match probe.as_str() {
            "tp:net:netif_receive_skb" => "0x00000001",
            "tp:net:net_dev_start_xmit" | "tp:net:net_dev_xmit" | "tp:net:net_dev_queue" => {
                "0x00000002"
            }
            _ => "",
        };
        assert_eq!(row[6], expected_direction, "packet {i} ({probe}) direction");
    }
    let first = &rows[0][5];
    let tracking = cases[0].event.tracking.as_ref().expect("tracking");
    assert!(
        first.contains(&format!("#{} n 0", tracking.id()))
            && first.contains("skb ffff888000001000"),
        "comment {first}"
    );
    assert!(
        rows[2][5].contains("drop NETFILTER_DROP"),
        "comment {}",
        rows[2][5]
    );
}

#[test]
fn udp_port_53_filter_selects_l2_and_l3_packets() {
    let (input, cases) = fixture();
    let pcap = run_ok("trail-to-pcap", &[], &input);
    let got: Vec<String> = tcpdump_packets(&pcap, &["udp port 53"])
        .into_iter()
        .map(|p| p.0)
        .collect();
    let want: Vec<String> = cases
        .iter()
        .filter(|c| c.dns)
        .map(|c| epoch(c.time))
        .collect();
    assert_eq!(got.len(), 4, "fixture has DNS packets at L2 and L3");
    assert_eq!(got, want);
    // The same with SLL2 headers, which libpcap filters through a different path.
    let sll2 = run_ok("trail-to-pcap", &["--link", "sll2"], &input);
    let got: Vec<String> = tcpdump_packets(&sll2, &["udp port 53"])
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(got, want, "sll2");
}

#[test]
fn sll2_records_ifindex_direction_and_protocol() {
    let (input, cases) = fixture();
    let pcap = run_ok("trail-to-pcap", &["--link", "sll2"], &input);
    let rows = tshark_fields(
        &pcap,
        &["sll.ifindex", "sll.pkttype", "sll.etype", "frame.len"],
        &[],
    );
    assert_eq!(rows.len(), cases.len());
    for (i, (case, row)) in cases.iter().zip(&rows).enumerate() {
        let ifindex = case.event.dev.as_ref().map_or(0, |d| d.ifindex);
        assert_eq!(row[0], ifindex.to_string(), "packet {i} ifindex");
        let outgoing = case
            .event
            .probe
            .as_ref()
            .expect("probe")
            .name
            .contains("net_dev_");
        assert_eq!(
            row[1],
            if outgoing { "4" } else { "0" },
            "packet {i} pkttype"
        );
        let ethertype = u16::from_be_bytes([case.ether[12], case.ether[13]]);
        assert_eq!(row[2], format!("0x{ethertype:04x}"), "packet {i} protocol");
        // 20-byte SLL2 header instead of the 14-byte Ethernet one.
        assert_eq!(
            row[3],
            (case.ether.len() + 6).to_string(),
            "packet {i} length"
        );
    }
    // tcpdump sees the same bytes after the cooked header.
    for (i, (case, (_, bytes))) in cases.iter().zip(tcpdump_packets(&pcap, &[])).enumerate() {
        assert_eq!(bytes[20..], case.ether[14..], "packet {i} payload");
    }
}

#[test]
fn classic_pcap_has_nanosecond_times_and_same_bytes() {
    let (input, cases) = fixture();
    let pcap = run_ok("trail-to-pcap", &["--format", "pcap"], &input);
    assert_eq!(
        u32::from_le_bytes(pcap[..4].try_into().expect("magic")),
        0xa1b2_3c4d,
        "nanosecond pcap magic"
    );
    let packets = tcpdump_packets(&pcap, &[]);
    assert_eq!(packets.len(), cases.len());
    for (i, (case, (time, bytes))) in cases.iter().zip(&packets).enumerate() {
        assert_eq!(*time, epoch(case.time), "packet {i} time");
        assert_eq!(*bytes, case.ether, "packet {i} bytes");
    }
    let rows = tshark_fields(&pcap, &["frame.time_epoch"], &[]);
    assert_eq!(rows.len(), cases.len(), "tshark reads it too");
}

#[test]
fn output_file_appears_only_on_success() {
    let (input, cases) = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.pcapng");
    let path_str = path.to_str().expect("utf-8 path");
    run_ok("trail-to-pcap", &["-o", path_str], &input);
    let written = std::fs::read(&path).expect("output file");
    assert_eq!(tcpdump_packets(&written, &[]).len(), cases.len());
    std::fs::remove_file(&path).expect("remove");

    // A truncated stream, garbage, and a pcap given as input: exit 2, no file, no temp file.
    let truncated = &input[..input.len() - 3];
    for (what, bad) in [
        ("truncated", truncated.to_vec()),
        ("garbage", b"hello world".to_vec()),
        ("empty", Vec::new()),
        ("pcap", written.clone()),
    ] {
        let out = run("trail-to-pcap", &["-o", path_str], &bad);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("trail-to-pcap: error: stdin: byte "),
            "{what}: {stderr}"
        );
        assert!(!path.exists(), "{what}: no output file");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "{what}: no temp file"
        );
    }
}

/// Comments of a pcapng, as tshark shows them.
fn comments(pcap: &[u8]) -> Vec<String> {
    tshark_fields(pcap, &["frame.comment"], &[])
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn journey_event(ts: u64, probe: &str, journey: Option<u64>) -> Event {
    let mut e = packet_event(ts, probe, &udp4(1, 2, true), true, Some((2, "eth0", 1)));
    e.tracking = journey.map(|j| Tracking {
        first_seen: j,
        orig_head: 0xab00 + j,
        ..Tracking::default()
    });
    e
}

#[test]
fn selection_by_probe_and_journey() {
    let events = vec![
        journey_event(10, "net:netif_receive_skb", Some(1)),
        journey_event(11, "net:netif_receive_skb", Some(2)),
        journey_event(12, "skb:kfree_skb", Some(1)),
        journey_event(13, "net:net_dev_start_xmit", None),
        journey_event(14, "net:net_dev_start_xmit", Some(2)),
        journey_event(15, "skb:consume_skb", Some(2)),
    ];
    let input = stream(&header("trail-capture", "h", 0), &events);
    let probes_of = |args: &[&str]| -> Vec<String> {
        comments(&run_ok("trail-to-pcap", args, &input))
            .into_iter()
            .map(|c| c.split(' ').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        probes_of(&["--probe", "tp:net:*xmit*"]),
        ["tp:net:net_dev_start_xmit", "tp:net:net_dev_start_xmit"]
    );
    assert_eq!(
        probes_of(&["--probe", "skb:*", "--probe", "net:netif_receive_skb"]),
        [
            "tp:net:netif_receive_skb",
            "tp:net:netif_receive_skb",
            "tp:skb:kfree_skb",
            "tp:skb:consume_skb"
        ]
    );
    let times_of = |args: &[&str]| -> Vec<String> {
        tshark_fields(
            &run_ok("trail-to-pcap", args, &input),
            &["frame.time_epoch"],
            &[],
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
    };
    let t = |ns: u64| epoch(ns);
    assert_eq!(times_of(&["--first-per-journey"]), [t(10), t(11), t(13)]);
    // Last: each journey at the position of its last event; the untracked one stays in place.
    assert_eq!(times_of(&["--last-per-journey"]), [t(12), t(13), t(15)]);
    // A limit of one pending journey writes journey 1 early, when journey 2 arrives, etc.
    let out = run(
        "trail-to-pcap",
        &["--last-per-journey", "--journey-limit", "1"],
        &input,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("before their last event"), "{stderr}");
    let rows = tshark_fields(&out.stdout, &["frame.time_epoch"], &[]);
    assert_eq!(
        rows.len(),
        5,
        "1@10 early, 2@11 early, 1@12, untracked, 2@15"
    );
}

#[test]
fn interface_per_probe() {
    let (input, cases) = fixture();
    let pcap = run_ok("trail-to-pcap", &["--interface-per", "probe"], &input);
    let rows = tshark_fields(&pcap, &["frame.interface_name"], &[]);
    let want: Vec<String> = cases
        .iter()
        .map(|c| c.event.probe.as_ref().expect("probe").spec())
        .collect();
    assert_eq!(
        rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        want
    );
}

#[test]
fn other_link_types_are_converted_skipped_or_kept() {
    let ip = udp4(9, 53, false);
    // An imported cooked capture (LINKTYPE_LINUX_SLL): outgoing, source MAC 02:..:09.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 9, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    let mut cooked = common::event(1, "eth9", Some(&sll));
    cooked.packet.as_mut().expect("packet").linktype = event::linktype::LINUX_SLL;
    // 802.11 (105): nothing to convert to.
    let mut wifi = common::event(2, "wlan0", Some(&[0x08, 0x01, 0, 0, 1, 2, 3, 4]));
    wifi.packet.as_mut().expect("packet").linktype = 105;
    let input = stream(&header("trail-from-pcap", "h", 0), &[cooked, wifi]);

    let out = run("trail-to-pcap", &[], &input);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 1 packets of link type 105"),
        "{stderr}"
    );
    let packets = tcpdump_packets(&out.stdout, &[]);
    assert_eq!(packets.len(), 1);
    let mut want = vec![0u8; 6];
    want.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    want.extend_from_slice(&ip);
    assert_eq!(
        packets[0].1, want,
        "ethernet header rebuilt from the SLL header"
    );
    let rows = tshark_fields(
        &out.stdout,
        &["frame.packet_flags_direction", "frame.comment"],
        &[],
    );
    assert_eq!(rows[0][0], "0x00000002", "SLL packet type 4 is outbound");
    assert!(rows[0][1].contains("rebuilt from a cooked header"));

    let kept = run_ok("trail-to-pcap", &["--other-links", "keep"], &input);
    let rows = tshark_fields(&kept, &["frame.interface_id", "frame.len"], &[]);
    assert_eq!(rows.len(), 2, "tshark reads mixed link types");
    assert_ne!(
        rows[0][0], rows[1][0],
        "the 802.11 packet has its own interface"
    );
    let refused = Command::new("tcpdump")
        .args(["-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            let _ = child.stdin.take().expect("stdin").write_all(&kept);
            child.wait()
        })
        .expect("tcpdump");
    assert!(
        !refused.success(),
        "libpcap refuses mixed link types, as documented"
    );
}

/// The first packet reaches tcpdump while trail-to-pcap's input is still open.
#[test]
fn live_pipe_delivers_packets_before_input_ends() {
    let mut to_pcap = Command::new(common::bin("trail-to-pcap"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start trail-to-pcap");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-l", "-nn", "-tt", "--nano", "-r", "-"])
        .stdin(to_pcap.stdout.take().expect("pipe"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tcpdump");
    let mut input = to_pcap.stdin.take().expect("stdin");
    let first = packet_event(5, "net:netif_receive_skb", &udp4(1, 53, true), true, None);
    input
        .write_all(&stream(&header("trail-capture", "h", 0), &[first]))
        .expect("write");
    input.flush().expect("flush");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = tcpdump.stdout.take().expect("tcpdump stdout");
    let lines = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump printed the packet while the input was open");
    assert!(line.starts_with(&epoch(5)), "{line}");
    drop(input);
    assert!(to_pcap.wait().expect("wait").success());
    assert!(tcpdump.wait().expect("wait").success());
    lines.join().expect("reader thread");
}

#[test]
fn large_packets_and_events_survive() {
    // A 64 KiB packet makes an event larger than one custom option.
    let big: Vec<u8> = {
        let payload = vec![0x5a; 65_000];
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(7, 53)
            .write(&mut out, &payload)
            .expect("build");
        out
    };
    let input = stream(
        &header("trail-capture", "h", OFFSET_A),
        &[packet_event(1, "net:netif_receive_skb", &big, true, None)],
    );
    let pcap = run_ok("trail-to-pcap", &[], &input);
    let packets = tcpdump_packets(&pcap, &["udp port 53"]);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].1, big);
    assert!(
        pcap.len() > 2 * big.len(),
        "the event rides along with the packet"
    );
}

/// `to-pcap | from-pcap` gives back every event with packet bytes byte for byte, in sections
/// whose headers are the originals with both stages appended.
#[test]
fn round_trip_through_from_pcap_is_lossless() {
    let (input, _) = fixture();
    let original = common::frames(&input);
    for args in [
        &[][..],
        &["--link", "sll2"][..],
        &["--interface-per", "probe"][..],
    ] {
        let pcap = run_ok("trail-to-pcap", args, &input);
        let back = common::frames(&run_ok("trail-from-pcap", &[], &pcap));
        let kinds = |frames: &[trail::model::codec::Frame]| -> Vec<trail::model::codec::FrameKind> {
            frames.iter().map(|f| f.kind).collect()
        };
        // The event without packet bytes is the only thing missing.
        let with_packets: Vec<&trail::model::codec::Frame> = original
            .iter()
            .filter(|f| {
                f.kind != trail::model::codec::FrameKind::Event
                    || trail::model::codec::decode::<Event>(f, "t")
                        .expect("event")
                        .packet
                        .is_some()
            })
            .collect();
        assert_eq!(
            kinds(&back),
            with_packets.iter().map(|f| f.kind).collect::<Vec<_>>(),
            "{args:?}: same sections and events"
        );
        for (old, new) in with_packets.iter().zip(&back) {
            if new.kind == trail::model::codec::FrameKind::Event {
                assert_eq!(old.payload, new.payload, "{args:?}: event bytes");
                continue;
            }
            let old_header: event::Header = trail::model::codec::decode(old, "t").expect("header");
            let new_header: event::Header = trail::model::codec::decode(new, "t").expect("header");
            let stages: Vec<&str> = new_header
                .pipeline
                .iter()
                .map(|s| s.tool.as_str())
                .collect();
            assert_eq!(
                stages,
                ["trail-capture", "trail-to-pcap", "trail-from-pcap"]
            );
            assert_eq!(
                event::Header {
                    pipeline: old_header.pipeline.clone(),
                    ..new_header
                },
                old_header,
                "{args:?}: header otherwise unchanged"
            );
        }
    }
}

/// A real capture (tcpdump on a veth pair) imported and exported again: tcpdump sees the same
/// packets, bytes and times as in the original file, in both formats.
#[test]
fn real_capture_survives_import_and_export() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/veth.pcapng");
    let original = std::fs::read(fixture).expect("fixture");
    let want = tcpdump_packets(&original, &[]);
    assert!(want.len() > 10, "fixture has packets");
    let stream = run_ok("trail-from-pcap", &[fixture], b"");
    for format in ["pcapng", "pcap"] {
        let pcap = run_ok("trail-to-pcap", &["--format", format], &stream);
        assert_eq!(tcpdump_packets(&pcap, &[]), want, "{format}");
        let filtered = tcpdump_packets(&pcap, &["icmp6 or udp"]);
        assert_eq!(
            filtered,
            tcpdump_packets(&original, &["icmp6 or udp"]),
            "{format}"
        );
    }
    let pcap = run_ok("trail-to-pcap", &[], &stream);
    let names = tshark_fields(&pcap, &["frame.interface_name"], &[]);
    let original_names = tshark_fields(&original, &["frame.interface_name"], &[]);
    assert_eq!(names, original_names, "device names kept");
}
