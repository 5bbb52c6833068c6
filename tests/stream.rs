//! The stream contract: codec round trips, byte-exact pass-through, provenance, concatenation,
//! and every bad input through the real binaries.

use std::process::{Command, Stdio};

use proptest::prelude::*;
use trail::model::codec::{self, Frame, FrameKind, RawMap, Reader, Writer};
use trail::model::event::*;

use crate::common::{self, bin, run, run_ok};

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes)
}

fn arb_event() -> impl Strategy<Value = Event> {
    let common = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        "[a-z]{0,15}",
    )
        .prop_map(|(timestamp, cpu, pid, tid, comm)| Common {
            timestamp,
            cpu,
            pid,
            tid,
            comm,
            host: None,
        });
    let probe = (
        prop_oneof![
            Just(ProbeKind::Tracepoint),
            Just(ProbeKind::Kprobe),
            Just(ProbeKind::Fexit),
            Just(ProbeKind::PcapImport)
        ],
        "[a-z_:]{1,30}",
    )
        .prop_map(|(kind, name)| Probe { kind, name });
    let packet =
        (arb_bytes(300), any::<u32>(), any::<bool>()).prop_map(|(data, extra, l3)| Packet {
            len: (data.0.len() as u32).saturating_add(extra % 2000),
            data,
            layer: if l3 { Layer::L3 } else { Layer::L2 },
            linktype: if l3 {
                linktype::RAW
            } else {
                linktype::ETHERNET
            },
        });
    let skb = (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<Option<u16>>(),
    )
        .prop_map(|(addr, head, len, mark, cloned, vlan_tci)| Skb {
            addr,
            head,
            len,
            mark,
            cloned,
            vlan_tci,
            ..Skb::default()
        });
    let tracking = (any::<u64>(), any::<u64>(), any::<Option<u32>>()).prop_map(
        |(first_seen, orig_head, index)| Tracking {
            first_seen,
            orig_head,
            source: "kernel".into(),
            index,
            parent: None,
            link: None,
        },
    );
    let drop = ("[A-Z_]{1,20}", any::<u32>()).prop_map(|(reason, code)| Drop {
        reason,
        code,
        subsystem: None,
    });
    (
        proptest::option::of(common),
        proptest::option::of(probe),
        proptest::option::of(packet),
        proptest::option::of(skb),
        proptest::option::of(tracking),
        proptest::option::of(drop),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(common, probe, packet, skb, tracking, drop, retval)| Event {
                common,
                probe,
                packet,
                skb,
                tracking,
                drop,
                retval,
                ..Event::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever events we write, the reader gives back the same events, in order.
    #[test]
    fn round_trip(events in proptest::collection::vec(arb_event(), 0..20)) {
        let bytes = common::stream(&common::header("trail-test", "h", 5), &events);
        prop_assert_eq!(common::events(&bytes), events);
    }

    /// Any truncation of a valid stream is reported as an error (never a panic, never a silent
    /// clean end), except the cuts that fall exactly on a frame boundary.
    #[test]
    fn truncation_is_detected(events in proptest::collection::vec(arb_event(), 1..5), cut in any::<prop::sample::Index>()) {
        let bytes = common::stream(&common::header("trail-test", "h", 0), &events);
        let boundaries = frame_boundaries(&bytes);
        let cut = cut.index(bytes.len());
        let mut reader = Reader::new(&bytes[..cut], "cut");
        let mut frame = Frame::default();
        let result = loop {
            match reader.next_frame(&mut frame) {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if boundaries.contains(&cut) && cut > 0 {
            prop_assert!(result.is_ok(), "cut at boundary {} must end cleanly", cut);
        } else {
            prop_assert!(result.is_err(), "cut at {} must be an error", cut);
        }
    }

    /// Arbitrary bytes never panic the reader, and whatever it rejects it rejects with an offset
    /// inside the input.
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
        if magic {
            let mut with_magic = codec::MAGIC.to_vec();
            with_magic.extend_from_slice(&[FORMAT_MAJOR, FORMAT_MINOR]);
            with_magic.append(&mut bytes);
            bytes = with_magic;
        }
        let mut reader = Reader::new(&bytes[..], "garbage");
        let mut frame = Frame::default();
        loop {
            match reader.next_frame(&mut frame) {
                Ok(true) => { let _ = RawMap::parse(&frame.payload); }
                Ok(false) => break,
                Err(e) => { prop_assert!(e.offset <= bytes.len() as u64); break; }
            }
        }
    }
}

/// Offsets at which a frame (or section) starts or the stream ends.
fn frame_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == codec::MAGIC[0] {
            at += 8; // the magic alone is not a boundary: a header frame must follow
        }
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 5 + len;
        out.push(at);
    }
    out
}

/// An event payload with a section and a field this build does not know.
fn event_with_unknowns() -> Vec<u8> {
    let known = common::event(1_000, "net:netif_receive_skb", Some(&[1, 2, 3]));
    let mut payload = Vec::new();
    codec::encode(&known, &mut payload);
    let index = RawMap::parse(&payload).unwrap();
    // `future` is an unknown section; `common.future_field` an unknown field in a known one.
    let mut future = Vec::new();
    codec::encode(&serde_json::json!({"answer": 42, "blob": "x"}), &mut future);
    let mut with_future = Vec::new();
    index.with_entry(&payload, "future", &future, &mut with_future);
    let index = RawMap::parse(&with_future).unwrap();
    let mut common_map: std::collections::BTreeMap<String, rmpv_like::Value> =
        rmp_serde::from_slice(index.get(&with_future, "common").unwrap()).unwrap();
    common_map.insert("future_field".into(), rmpv_like::Value::U(7));
    let mut common_bytes = Vec::new();
    codec::encode(&common_map, &mut common_bytes);
    let mut out = Vec::new();
    index.with_entry(&with_future, "common", &common_bytes, &mut out);
    out
}

/// A minimal dynamic MessagePack value for building test payloads.
mod rmpv_like {
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        U(u64),
        S(String),
    }
}

#[test]
fn forwarding_is_byte_exact_including_unknowns() {
    let payload = event_with_unknowns();
    let mut writer = Writer::new(Vec::new());
    writer
        .write_header(&common::header("trail-test", "h", 0))
        .unwrap();
    writer.write_frame(FrameKind::Event, &payload).unwrap();
    writer.write_frame(FrameKind::Other(b'Z'), b"\x80").unwrap();
    writer
        .write_lost(&Lost {
            probe: "tp:x".into(),
            count: 3,
            ..Lost::default()
        })
        .unwrap();
    let input = writer.into_inner().unwrap();

    let mut out = Writer::new(Vec::new());
    for frame in common::frames(&input) {
        out.forward(&frame).unwrap();
    }
    assert_eq!(out.into_inner().unwrap(), input, "forwarding changed bytes");

    // The typed view ignores the unknowns and still decodes the known sections.
    let typed = common::events(&input);
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].common.as_ref().unwrap().timestamp, 1_000);
}

#[test]
fn replacing_one_section_keeps_every_other_byte() {
    let payload = event_with_unknowns();
    let index = RawMap::parse(&payload).unwrap();
    let mut tracking = Vec::new();
    codec::encode(
        &Tracking {
            first_seen: 9,
            orig_head: 10,
            index: Some(0),
            ..Tracking::default()
        },
        &mut tracking,
    );
    let mut out = Vec::new();
    index.with_entry(&payload, "tracking", &tracking, &mut out);
    let new_index = RawMap::parse(&out).unwrap();
    for key in index.keys(&payload) {
        assert_eq!(
            index.get(&payload, key),
            new_index.get(&out, key),
            "section {key} changed"
        );
    }
    assert_eq!(new_index.get(&out, "tracking"), Some(&tracking[..]));
}

#[test]
fn print_shows_unknown_sections_and_keeps_provenance_fields() {
    let payload = event_with_unknowns();
    let mut writer = Writer::new(Vec::new());
    writer
        .write_header(&common::header("trail-test", "h", 0))
        .unwrap();
    writer.write_frame(FrameKind::Event, &payload).unwrap();
    let input = writer.into_inner().unwrap();
    let json = String::from_utf8(run_ok("trail-print", &["--format", "json"], &input)).unwrap();
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        value["future"]["answer"], 42,
        "unknown section missing from JSON: {json}"
    );
    let text = String::from_utf8(run_ok("trail-print", &[], &input)).unwrap();
    assert!(
        text.contains("future {\"answer\":42"),
        "unknown section missing from text: {text}"
    );
}

#[test]
fn appending_a_stage_keeps_unknown_header_keys() {
    let header = common::header("trail-test", "h", 0);
    let mut payload = Vec::new();
    codec::encode(&header, &mut payload);
    let index = RawMap::parse(&payload).unwrap();
    let mut extra = Vec::new();
    codec::encode(&"kept", &mut extra);
    let mut with_extra = Vec::new();
    index.with_entry(&payload, "x_future", &extra, &mut with_extra);

    let stage = Stage {
        tool: "trail-x".into(),
        version: "1".into(),
        args: vec!["-v".into()],
    };
    let out = trail::cli::append_stage(&with_extra, &stage).unwrap();
    let out_index = RawMap::parse(&out).unwrap();
    assert_eq!(out_index.get(&out, "x_future"), Some(&extra[..]));
    let decoded: Header = rmp_serde::from_slice(&out).unwrap();
    assert_eq!(decoded.pipeline.len(), 2);
    assert_eq!(decoded.pipeline[1], stage);
}

#[test]
fn concatenated_sections_each_use_their_own_clock() {
    // Same monotonic timestamp, different clock offsets: --utc must show different times.
    let a = common::stream(
        &common::header("trail-test", "a", 1_000_000_000),
        &[common::event(5, "net:a", None)],
    );
    let b = common::stream(
        &common::header("trail-test", "b", 2_000_000_000),
        &[common::event(5, "net:b", None)],
    );
    let both = [a, b].concat();
    let text = String::from_utf8(run_ok(
        "trail-print",
        &["--utc", "--fields", "time,probe"],
        &both,
    ))
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "1970-01-01T00:00:01.000000005Z [tp] net:a",
            "1970-01-01T00:00:02.000000005Z [tp] net:b"
        ]
    );
    // And as two file arguments.
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.trail"), dir.path().join("b.trail"));
    std::fs::write(&pa, &both[..both.len() / 2]).ok();
    let split = frame_boundaries(&both)[1];
    std::fs::write(&pa, &both[..split]).unwrap();
    std::fs::write(&pb, &both[split..]).unwrap();
    let text2 = run_ok(
        "trail-print",
        &[
            "--utc",
            "--fields",
            "time,probe",
            pa.to_str().unwrap(),
            pb.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(String::from_utf8(text2).unwrap(), text);
}

#[test]
fn print_text_layout() {
    let mut e = common::event(1_500_000_123, "skb:kfree_skb", None);
    e.tracking = Some(Tracking {
        first_seen: 0x10,
        orig_head: 0xff00,
        ..Tracking::default()
    });
    e.skb = Some(Skb {
        addr: 0xffff8880aa,
        len: 84,
        protocol: 0x0800,
        users: 1,
        dataref: 1,
        ..Skb::default()
    });
    e.drop = Some(Drop {
        reason: "NETFILTER_DROP".into(),
        code: 9,
        subsystem: None,
    });
    e.dev = Some(Dev {
        ifindex: 4,
        name: "veth1".into(),
        rx_ifindex: Some(4),
    });
    e.netns = Some(Netns {
        inum: 4026532000,
        cookie: None,
    });
    let mut child = common::event(1_500_000_999, "net:netif_receive_skb", None);
    child.tracking = Some(Tracking {
        first_seen: 0x10,
        orig_head: 0xff00,
        index: Some(1),
        ..Tracking::default()
    });
    let input = common::stream(&common::header("trail-test", "h", 0), &[e, child]);
    let text = String::from_utf8(run_ok("trail-print", &[], &input)).unwrap();
    let expected = "\
1.500000123 (1) [test] 42 [tp] skb:kfree_skb #10-ff00 (skb ffff8880aa) drop (reason NETFILTER_DROP)
  ns 4026532000 if 4 (veth1) rxif 4
  skb len 84 data_len 0 proto 0x0800 pkt_type host mark 0x0 hash 0x0 prio 0 csum none users 1 dataref 1
  ↳ 1.500000999 (1) [test] 42 [tp] net:netif_receive_skb #10-ff00 n 1
";
    assert_eq!(text, expected);
    let single =
        String::from_utf8(run_ok("trail-print", &["--format", "single-line"], &input)).unwrap();
    assert_eq!(single.lines().count(), 2, "{single}");
    assert!(single.starts_with("1.500000123 (1) [test] 42 [tp] skb:kfree_skb #10-ff00 (skb ffff8880aa) drop (reason NETFILTER_DROP) | ns 4026532000 if 4 (veth1) rxif 4 | skb len 84"));
}

#[test]
fn json_lines_work_with_jq() {
    let input = common::stream(
        &common::header("trail-test", "h", 0),
        &[
            common::event(1, "net:a", Some(&[0xde, 0xad])),
            common::event(2, "net:b", None),
        ],
    );
    let json = run_ok("trail-print", &["--json"], &input);
    let mut jq = Command::new("jq")
        .args(["-r", ".probe.name + \" \" + (.packet.data // \"-\")"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("jq is installed by `make test`");
    use std::io::Write;
    jq.stdin.take().unwrap().write_all(&json).unwrap();
    let out = jq.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "net:a dead\nnet:b -\n"
    );
}

/// The published JSON Schema is what the types generate. `UPDATE_SCHEMAS=1` rewrites it.
#[test]
fn json_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/event.schema.json");
    let generated = serde_json::to_string_pretty(&trail::print::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/event.schema.json is stale: run `make schemas`"
    );
}

/// Every JSON line trail-print writes for a real capture validates against the schema's
/// top-level property list (no undocumented keys).
#[test]
fn json_lines_only_use_documented_keys() {
    let stream = run_ok("trail-from-pcap", &[fixture("veth.pcapng").as_str()], b"");
    let json = String::from_utf8(run_ok("trail-print", &["--json"], &stream)).unwrap();
    let schema = trail::print::json_schema();
    let properties = schema["properties"]
        .as_object()
        .expect("schema lists properties");
    for line in json.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in value.as_object().unwrap().keys() {
            assert!(properties.contains_key(key), "key {key} not in the schema");
        }
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Packets as tcpdump sees them: (epoch ns, original length, hex bytes).
fn tcpdump_view(path: &str) -> Vec<(u128, u32, String)> {
    let out = Command::new("tcpdump")
        .args(["-nr", path, "-tt", "--nano", "-xx", "-K", "-q"])
        .output()
        .expect("tcpdump is installed by `make test`");
    assert!(
        out.status.success(),
        "tcpdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut packets: Vec<(u128, u32, String)> = Vec::new();
    for line in text.lines() {
        if let Some(hex_part) = line.trim_start().strip_prefix("0x") {
            let bytes: String = hex_part
                .split_once(':')
                .unwrap()
                .1
                .split_whitespace()
                .take(8)
                .collect();
            packets.last_mut().unwrap().2.push_str(&bytes);
        } else if is_packet_line(line) {
            let (ts, _) = line.split_once(' ').unwrap();
            let (secs, nanos) = ts.split_once('.').unwrap();
            let ns = secs.parse::<u128>().unwrap() * 1_000_000_000 + nanos.parse::<u128>().unwrap();
            packets.push((ns, 0, String::new()));
        }
    }
    // Original lengths: from a second pass with -e, which prints "length N" for the frame.
    let out = Command::new("tcpdump")
        .args(["-enr", path, "-tt", "--nano", "-q"])
        .output()
        .unwrap();
    let lengths: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| is_packet_line(l))
        .map(|l| {
            let after = l.split_once(", length ").expect("frame length").1;
            after
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(lengths.len(), packets.len());
    for (p, len) in packets.iter_mut().zip(lengths) {
        p.1 = len;
    }
    packets
}

/// A tcpdump `-tt --nano` line that starts a packet (`<secs>.<nanos> ...`), not a continuation
/// (tunnelled inner packets, hex dump).
fn is_packet_line(line: &str) -> bool {
    let Some((ts, _)) = line.split_once(' ') else {
        return false;
    };
    ts.split_once('.').is_some_and(|(s, n)| {
        !s.is_empty() && n.len() == 9 && (s.to_owned() + n).bytes().all(|b| b.is_ascii_digit())
    })
}

#[test]
fn from_pcap_matches_tcpdump() {
    for name in ["veth.pcap", "veth.pcapng"] {
        let path = fixture(name);
        let expected = tcpdump_view(&path);
        assert!(expected.len() >= 50, "fixture {name} too small");
        let stream = run_ok("trail-from-pcap", &[path.as_str()], b"");
        let events = common::events(&stream);
        assert_eq!(events.len(), expected.len(), "{name}: packet count");
        for (i, (event, (ts, len, hex))) in events.iter().zip(&expected).enumerate() {
            let packet = event.packet.as_ref().unwrap();
            assert_eq!(
                u128::from(event.common.as_ref().unwrap().timestamp),
                *ts,
                "{name} packet {i}: timestamp"
            );
            assert_eq!(packet.len, *len, "{name} packet {i}: original length");
            assert_eq!(
                trail::model::event::hex(&packet.data.0),
                *hex,
                "{name} packet {i}: bytes"
            );
            assert_eq!(event.probe.as_ref().unwrap().kind, ProbeKind::PcapImport);
        }
        let header: Header = codec::decode(&common::frames(&stream)[0], "t").unwrap();
        assert_eq!(header.clock.source, "realtime");
        assert_eq!(header.pipeline[0].tool, "trail-from-pcap");
    }
    // stdin works too and gives the same events.
    let bytes = std::fs::read(fixture("veth.pcap")).unwrap();
    let from_stdin = common::events(&run_ok("trail-from-pcap", &[], &bytes));
    let from_file = common::events(&run_ok(
        "trail-from-pcap",
        &[fixture("veth.pcap").as_str()],
        b"",
    ));
    assert_eq!(from_stdin, from_file);
}

/// Asserts a clean failure: exit status 2, one error line naming `what`, no panic.
fn assert_clean_failure(tool: &str, args: &[&str], stdin: &[u8], what: &[&str]) {
    let out = run(tool, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{tool} {args:?}: status {} stderr {stderr}",
        out.status
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{tool}: expected one error line, got {stderr}"
    );
    assert!(stderr.starts_with(&format!("{tool}: error: ")), "{stderr}");
    for w in what {
        assert!(
            stderr.contains(w),
            "{tool} {args:?}: error {stderr:?} does not mention {w:?}"
        );
    }
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_streams_get_clean_errors() {
    let good = common::stream(
        &common::header("trail-test", "h", 0),
        &[common::event(1, "net:a", Some(&[1; 40]))],
    );
    assert_clean_failure("trail-print", &[], b"", &["stdin", "byte 0", "empty input"]);
    let pcap = std::fs::read(fixture("veth.pcap")).unwrap();
    assert_clean_failure(
        "trail-print",
        &[],
        &pcap,
        &["stdin", "byte 0", "pcap file", "trail-from-pcap"],
    );
    let pcapng = std::fs::read(fixture("veth.pcapng")).unwrap();
    assert_clean_failure("trail-print", &[], &pcapng, &["pcapng"]);
    assert_clean_failure("trail-print", &[], b"{\"a\":1}\n", &["JSON"]);
    assert_clean_failure("trail-print", &[], b"hello world", &["not a trail stream"]);
    // Truncated in the middle of the event frame.
    let cut = &good[..good.len() - 7];
    let event_offset = frame_boundaries(&good)[0];
    assert_clean_failure(
        "trail-print",
        &[],
        cut,
        &[&format!("byte {event_offset}"), "truncated frame payload"],
    );
    // Future major version.
    let mut future = good.clone();
    future[6] = FORMAT_MAJOR + 1;
    assert_clean_failure(
        "trail-print",
        &[],
        &future,
        &["version 2.0 is not supported"],
    );
    // Corrupt tag and absurd length.
    let mut bad_tag = good.clone();
    bad_tag[event_offset] = b'e';
    assert_clean_failure(
        "trail-print",
        &[],
        &bad_tag,
        &[&format!("byte {event_offset}"), "invalid record tag"],
    );
    let mut huge = good.clone();
    huge[event_offset + 4] = 0xff;
    assert_clean_failure("trail-print", &[], &huge, &["exceeds"]);
    // Corrupt payload (intact frame, not a map).
    let mut corrupt = good[..event_offset].to_vec();
    corrupt.extend_from_slice(&[b'E', 1, 0, 0, 0, 0xc1]);
    assert_clean_failure("trail-print", &[], &corrupt, &["corrupt record"]);
    // A named file that is bad names the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.trail");
    std::fs::write(&path, cut).unwrap();
    assert_clean_failure(
        "trail-print",
        &[path.to_str().unwrap()],
        b"",
        &[path.to_str().unwrap()],
    );
    // A missing file is a runtime error (1), not a format error.
    let out = run("trail-print", &["/nonexistent/x.trail"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/x.trail"));
}

#[test]
fn bad_pcaps_get_clean_errors_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.trail");
    let out_arg = out_path.to_str().unwrap();
    let stream = common::stream(&common::header("trail-test", "h", 0), &[]);
    assert_clean_failure(
        "trail-from-pcap",
        &["-o", out_arg],
        &stream,
        &["not a pcap", "trail stream already"],
    );
    assert_clean_failure("trail-from-pcap", &["-o", out_arg], b"", &["empty input"]);
    assert_clean_failure(
        "trail-from-pcap",
        &["-o", out_arg],
        b"garbage!",
        &["not a pcap"],
    );
    let pcap = std::fs::read(fixture("veth.pcap")).unwrap();
    assert_clean_failure(
        "trail-from-pcap",
        &["-o", out_arg],
        &pcap[..pcap.len() - 10],
        &["stdin", "truncated record"],
    );
    let pcapng = std::fs::read(fixture("veth.pcapng")).unwrap();
    assert_clean_failure(
        "trail-from-pcap",
        &["-o", out_arg],
        &pcapng[..pcapng.len() - 3],
        &["truncated record"],
    );
    assert_clean_failure(
        "trail-from-pcap",
        &["-o", out_arg],
        &pcap[..10],
        &["truncated"],
    );
    assert!(!out_path.exists(), "a failed import left {out_arg} behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
    // And success creates it.
    run_ok(
        "trail-from-pcap",
        &["-o", out_arg, fixture("veth.pcap").as_str()],
        b"",
    );
    assert!(!common::events(&std::fs::read(&out_path).unwrap()).is_empty());
}

#[test]
fn broken_pipe_is_a_quiet_success() {
    let events: Vec<Event> = (0..50_000)
        .map(|i| common::event(i, "net:a", Some(&[0u8; 60])))
        .collect();
    let input = common::stream(&common::header("trail-test", "h", 0), &events);
    let mut child = Command::new(bin("trail-print"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    {
        use std::io::Read;
        let mut first = [0u8; 100];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
    }
    drop(child.stdout.take()); // like `| head -c 100`
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "status {}", out.status);
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn front_command_dispatches_and_lists_tools() {
    let help = String::from_utf8(run_ok("trail", &["--help"], b"")).unwrap();
    for tool in [
        "capture",
        "filter",
        "track",
        "sort",
        "print",
        "to-pcap",
        "to-parquet",
        "from-pcap",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(tool)),
            "{tool} missing from:\n{help}"
        );
    }
    let via_front = run_ok("trail", &["from-pcap", fixture("veth.pcap").as_str()], b"");
    let direct = run_ok("trail-from-pcap", &[fixture("veth.pcap").as_str()], b"");
    assert_eq!(common::events(&via_front), common::events(&direct));
    let out = run("trail", &["nope"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_tool_has_help_and_version() {
    for tool in ["trail-print", "trail-from-pcap"] {
        let help = String::from_utf8(run_ok(tool, &["--help"], b"")).unwrap();
        assert!(help.contains("Usage:"), "{tool} --help: {help}");
        let version = String::from_utf8(run_ok(tool, &["--version"], b"")).unwrap();
        assert_eq!(
            version.trim(),
            format!("{tool} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// A live pipe: a stage shows what it has read before its input ends (`trail-capture |
/// trail-filter drop | trail-print` must not wait for 256 KiB of output).
#[test]
fn live_stages_flush_when_their_input_runs_dry() {
    use std::io::{Read, Write};
    let input = common::stream(
        &common::header("trail-test", "h", 0),
        &[common::event(7, "skb:kfree_skb", None)],
    );
    for (tool, args) in [
        ("trail-print", vec!["--fields", "probe"]),
        ("trail-filter", vec!["true"]),
    ] {
        let mut child = Command::new(bin(tool))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&input).unwrap();
        stdin.flush().unwrap();
        // Read in a thread: a stage that does not flush would block this read until stdin closes.
        let mut stdout = child.stdout.take().unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = [0u8; 16];
            let n = stdout.read(&mut first).unwrap_or(0);
            let _ = send.send(n);
        });
        let got = receive.recv_timeout(std::time::Duration::from_secs(10));
        drop(stdin);
        let _ = child.wait();
        assert!(
            matches!(got, Ok(n) if n > 0),
            "{tool} wrote nothing while its input stayed open"
        );
    }
}

/// `-o` onto something that is not a regular file writes into it: renaming a temporary file
/// over `/dev/null` (as root) or a FIFO would replace it. A symlink stays a link.
#[test]
fn output_to_devices_fifos_and_links_writes_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let input = fixture("veth.pcap");
    let expected = run_ok("trail-from-pcap", &[input.as_str()], b"");

    // /dev/null: the command succeeds and /dev/null is still the device.
    let out = run("trail-from-pcap", &[input.as_str(), "-o", "/dev/null"], b"");
    let still_device = std::fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device());
    if !still_device {
        // Repair the machine before failing (a regular file at /dev/null breaks everything).
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg("rm -f /dev/null && mknod -m 666 /dev/null c 1 3")
            .status();
    }
    assert!(still_device, "/dev/null was replaced");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A FIFO: a reader gets the whole stream, and the FIFO is still a FIFO.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = run(
        "trail-from-pcap",
        &[input.as_str(), "-o", fifo.to_str().unwrap()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A writer that renamed a file over the FIFO never opened it, and the reader would wait
    // for ever: check before joining.
    assert!(
        std::fs::metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()),
        "the FIFO was replaced by a regular file"
    );
    let got = reader.join().unwrap();
    assert_eq!(strip_pipeline(&got), strip_pipeline(&expected));

    // A symlink: the target gets the stream, the link stays a link.
    let target = dir.path().join("real.trail");
    let link = dir.path().join("link.trail");
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    run_ok(
        "trail-from-pcap",
        &[input.as_str(), "-o", link.to_str().unwrap()],
        b"",
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        strip_pipeline(&std::fs::read(&target).unwrap()),
        strip_pipeline(&expected)
    );

    // A directory is refused with one line.
    let out = run(
        "trail-from-pcap",
        &[input.as_str(), "-o", dir.path().to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}

/// The stream's events (headers differ by the command line in their provenance).
fn strip_pipeline(bytes: &[u8]) -> Vec<Event> {
    common::events(bytes)
}
