//! trail-track and trail-sort on synthetic streams: clones, copies, NAT, VXLAN, interleaved
//! CPUs, two hosts on different clocks, spilling, and bad input. Expected journeys are written
//! out by hand from how the streams are built, never taken from the tools' output.

use std::collections::HashMap;

use proptest::prelude::*;
use trail::model::codec::{FrameKind, RawMap};
use trail::model::event::{Drop, Event, Skb, Tracking};

use crate::common::{self, event, events, frames, header, run, run_ok, stream};

// ---- packet builders ------------------------------------------------------------------------

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0, ttl, proto, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(payload);
    out
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

/// An Ethernet/IPv4/UDP frame.
fn udp_frame(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    id: u16,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    eth(
        0x0800,
        &ipv4(src, dst, 17, id, ttl, &udp(sport, dport, payload)),
    )
}

/// `inner` (an Ethernet frame) in VXLAN over IPv4/UDP.
fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut body = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    body.extend_from_slice(inner);
    udp_frame([172, 16, 0, 1], 51000, [172, 16, 0, 2], 4789, 7, 64, &body)
}

// ---- event builders -------------------------------------------------------------------------

fn with_cpu(mut e: Event, cpu: u32) -> Event {
    if let Some(c) = e.common.as_mut() {
        c.cpu = cpu;
    }
    e
}

fn with_skb(mut e: Event, addr: u64, head: u64) -> Event {
    e.skb = Some(Skb {
        addr,
        head,
        ..Skb::default()
    });
    e
}

fn with_id(mut e: Event, first_seen: u64, orig_head: u64) -> Event {
    e.tracking = Some(Tracking {
        first_seen,
        orig_head,
        source: "kernel".into(),
        ..Tracking::default()
    });
    e
}

fn ts(e: &Event) -> u64 {
    e.common.as_ref().expect("common").timestamp
}

fn tracking(e: &Event) -> &Tracking {
    e.tracking
        .as_ref()
        .unwrap_or_else(|| panic!("event at {} has no tracking", ts(e)))
}

/// (own id, parent, link) of every event, in output order, keyed by timestamp for readability.
fn links(out: &[Event]) -> Vec<(u64, String, Option<String>, Option<String>)> {
    out.iter()
        .map(|e| {
            let t = tracking(e);
            (ts(e), t.id(), t.parent.clone(), t.link.clone())
        })
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    let path = path.to_str().expect("utf-8 path").to_string();
    (dir, path)
}

// ---- trail-sort -----------------------------------------------------------------------------

/// Three journeys (kernel ids) from two CPUs, arriving out of order, plus two untracked events.
fn interleaved() -> Vec<Event> {
    let a = |t, cpu| {
        with_cpu(
            with_id(event(t, "net:netif_receive_skb", None), 100, 0xa),
            cpu,
        )
    };
    let b = |t, cpu| with_cpu(with_id(event(t, "net:net_dev_xmit", None), 150, 0xb), cpu);
    let c = |t, cpu| with_cpu(with_id(event(t, "skb:consume_skb", None), 300, 0xc), cpu);
    vec![
        b(160, 1),
        a(100, 0),
        a(130, 0),
        b(150, 1), // earlier than b(160): CPU 1 published late
        event(140, "untracked", None),
        c(310, 0),
        a(120, 1), // arrives after a(130)
        c(300, 1),
        b(400, 0),
        event(305, "untracked", None),
    ]
}

/// (timestamp, index) in output order, the order the module header promises.
fn expected_interleaved() -> Vec<(u64, Option<u32>)> {
    vec![
        (100, Some(0)),
        (120, Some(1)),
        (130, Some(2)),
        (140, None),
        (150, Some(0)),
        (160, Some(1)),
        (400, Some(2)),
        (300, Some(0)),
        (310, Some(1)),
        (305, None),
    ]
}

fn order(out: &[Event]) -> Vec<(u64, Option<u32>)> {
    out.iter()
        .map(|e| (ts(e), e.tracking.as_ref().and_then(|t| t.index)))
        .collect()
}

#[test]
fn sort_orders_interleaved_journeys_streaming_and_exact() {
    let input = stream(&header("trail-capture", "a", 0), &interleaved());
    let streamed = events(&run_ok("trail-sort", &[], &input));
    assert_eq!(order(&streamed), expected_interleaved(), "streaming (pipe)");
    let exact = events(&run_ok("trail-sort", &["--exact"], &input));
    assert_eq!(order(&exact), expected_interleaved(), "exact (pipe)");
    let (_dir, path) = temp_file("in.trail", &input);
    let from_file = run_ok("trail-sort", &[&path], &[]);
    assert_eq!(
        order(&events(&from_file)),
        expected_interleaved(),
        "exact (file)"
    );
    // The header is the input's with this stage appended, and no sources for one section.
    let out_frames = frames(&from_file);
    let header: trail::model::event::Header =
        trail::model::codec::decode(&out_frames[0], "out").expect("header");
    assert_eq!(
        header.pipeline.last().map(|s| s.tool.as_str()),
        Some("trail-sort")
    );
    let map = RawMap::parse(&out_frames[0].payload).expect("header map");
    assert!(map.get(&out_frames[0].payload, "sources").is_none());
}

#[test]
fn sort_keeps_every_other_byte() {
    let input = stream(&header("trail-capture", "a", 0), &interleaved());
    let output = run_ok("trail-sort", &["--exact"], &input);
    let mut inputs: Vec<Vec<u8>> = frames(&input)
        .into_iter()
        .skip(1)
        .map(|f| f.payload)
        .collect();
    for frame in frames(&output).into_iter().skip(1) {
        let event: Event = trail::model::codec::decode(&frame, "out").expect("event");
        let expected = match event.tracking.as_ref().and_then(|t| t.index) {
            Some(index) => inputs
                .iter()
                .position(|p| {
                    let mut spliced = Vec::new();
                    trail::journeys::sort::set_index(p, index, &mut spliced).is_ok()
                        && spliced == frame.payload
                })
                .expect("output event is an input event with tracking.index spliced in"),
            None => inputs
                .iter()
                .position(|p| *p == frame.payload)
                .expect("untracked event forwarded byte for byte"),
        };
        inputs.remove(expected);
    }
    assert!(
        inputs.is_empty(),
        "{} input events missing from the output",
        inputs.len()
    );
}

#[test]
fn sort_window_emits_idle_journeys_before_the_end() {
    // Two journeys 10 s apart; with a 1 s window the first is emitted as soon as the second
    // arrives, which the order of output (not timing) cannot show, so check the late counter:
    // an event 5 s older than the newest one arrives after its journey was emitted.
    let mk = |t: u64, id: u64| with_id(event(t * 1_000_000_000, "p", None), id, 1);
    let input = stream(
        &header("trail-capture", "a", 0),
        &[mk(1, 1), mk(11, 11), mk(2, 1), mk(12, 11)],
    );
    let output = run("trail-sort", &["--window", "1s"], &input);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 events arrived later than the --window"),
        "stderr: {stderr}"
    );
    let out = events(&output.stdout);
    // The late event continues its journey's numbering in a second block.
    let got: Vec<(u64, Option<u32>)> = order(&out)
        .into_iter()
        .map(|(t, i)| (t / 1_000_000_000, i))
        .collect();
    assert_eq!(
        got,
        vec![(1, Some(0)), (2, Some(1)), (11, Some(0)), (12, Some(1))]
    );
    // The same input sorted exactly groups everything.
    let exact = events(&run_ok("trail-sort", &["--exact"], &input));
    assert_eq!(order(&exact).len(), 4);
}

/// Events decoded from the start of a stream that may still be growing (a live pipe): every
/// complete event frame, stopping at the first incomplete one.
fn complete_events(bytes: &[u8]) -> Vec<Event> {
    let mut reader = trail::model::codec::Reader::new(bytes, "live");
    let mut frame = trail::model::codec::Frame::default();
    let mut out = Vec::new();
    while let Ok(true) = reader.next_frame(&mut frame) {
        if frame.kind == FrameKind::Event {
            out.push(trail::model::codec::decode(&frame, "live").expect("event decodes"));
        }
    }
    out
}

/// A live pipe (`trail-capture | trail-sort | trail-print`): journeys whose window has closed
/// come out while the input is still open, not at its end (nor after 256 KiB of output).
#[test]
fn streaming_sort_and_track_flush_when_input_runs_dry() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let s = 1_000_000_000u64;
    let packet = |seq: u8| {
        udp_frame(
            [10, 0, 0, 1],
            1000,
            [10, 0, 0, 2],
            53,
            seq.into(),
            64,
            &[seq; 8],
        )
    };
    // Journey A at 1 s (two events), then B at 5 s: with a 1 s window, B's arrival closes A's.
    let mk = |t: u64, id: u64, seq: u8| with_id(event(t, "p", Some(&packet(seq))), id, 1);
    let sort_input = [mk(s, 1, 1), mk(s + 10, 1, 1), mk(5 * s, 5, 2)];
    // trail-track: no ids in the input, the same shape (fingerprints give A and B).
    let plain = |t: u64, seq: u8| event(t, "p", Some(&packet(seq)));
    let track_input = [plain(s, 1), plain(s + 10, 1), plain(5 * s, 2)];
    for (tool, events_in) in [("trail-sort", &sort_input), ("trail-track", &track_input)] {
        let input = stream(&header("trail-capture", "a", 0), events_in);
        let args: &[&str] = if tool == "trail-sort" {
            &["--window", "1s"]
        } else {
            &["--window", "1s", "--idle", "10s"]
        };
        let mut child = Command::new(common::bin(tool))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tool");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&input).expect("write input");
        stdin.flush().expect("flush input");
        // Read in a thread; collect bytes until A's two events are there or time runs out.
        let mut stdout = child.stdout.take().expect("stdout");
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 || send.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match receive.recv_timeout(left) {
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(_) => break,
            }
            seen = complete_events(&got);
        }
        drop(stdin);
        let _ = child.wait();
        let times: Vec<u64> = seen.iter().map(ts).collect();
        assert_eq!(
            times,
            [s, s + 10],
            "{tool}: journey A must come out while the input is still open"
        );
        let ids: Vec<String> = seen.iter().map(|e| tracking(e).id()).collect();
        assert_eq!(ids[0], ids[1], "{tool}: A's events form one journey");
    }
}

#[test]
fn sort_spills_beyond_memory_and_matches_in_memory_result() {
    // 20 000 events, ~2.5 MB: --memory 64K forces dozens of runs (and intermediate merges).
    let mut input_events = Vec::new();
    for i in 0..20_000u64 {
        let journey = (i * 7919) % 2_000;
        let t = 1_000 + journey * 10 + (i % 10) * 3 + (i * 13) % 5;
        let mut e = with_id(
            event(t, "p", Some(&[i as u8; 80])),
            1_000 + journey * 10,
            journey,
        );
        if i % 17 == 0 {
            e.tracking = None;
        }
        input_events.push(e);
    }
    let input = stream(&header("trail-capture", "a", 0), &input_events);
    let (_dir, path) = temp_file("big.trail", &input);
    let child = |memory: &str| {
        let out = std::process::Command::new(common::bin("trail-sort"))
            .args(["--memory", memory, &path])
            .env("TRAIL_SORT_STATS", "1")
            .output()
            .expect("run trail-sort");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out.stdout, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (memory_out, memory_stats) = child("1G");
    let (spill_out, spill_stats) = child("64K");
    assert!(
        memory_stats.contains("stats: 0 spill runs"),
        "{memory_stats}"
    );
    let runs: u64 = spill_stats
        .split("stats: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("spill stats line");
    assert!(runs > 64, "expected many runs, got {runs}");
    // Headers differ in the recorded arguments (--memory); every other frame must be equal.
    let (memory_frames, spill_frames) = (frames(&memory_out), frames(&spill_out));
    assert_eq!(memory_frames.len(), spill_frames.len());
    assert!(
        memory_frames
            .iter()
            .zip(&spill_frames)
            .skip(1)
            .all(|(a, b)| a.kind == b.kind && a.payload == b.payload),
        "spilled sort differs from the in-memory sort"
    );
    assert_sorted(&events(&memory_out), input_events.len());
}

/// Checks trail-sort's ordering promises on decoded output.
fn assert_sorted(out: &[Event], expected_len: usize) {
    assert_eq!(out.len(), expected_len);
    let mut seen: HashMap<String, (u64, u32)> = HashMap::new();
    let mut previous_start = 0u64;
    let mut current: Option<String> = None;
    for e in out {
        let start = match e
            .tracking
            .as_ref()
            .filter(|t| (t.first_seen, t.orig_head) != (0, 0))
        {
            None => {
                current = None;
                ts(e)
            }
            Some(t) => {
                let id = t.parent.clone().unwrap_or_else(|| t.id());
                let index = t.index.expect("journey events carry an index");
                if current.as_ref() == Some(&id) {
                    let (last_ts, last_index) = seen[&id];
                    assert!(ts(e) >= last_ts, "journey {id} out of time order");
                    assert_eq!(index, last_index + 1, "journey {id} index");
                    seen.insert(id, (ts(e), index));
                    continue;
                }
                assert!(!seen.contains_key(&id), "journey {id} split in two");
                assert_eq!(index, 0, "journey {id} starts at index 0");
                seen.insert(id.clone(), (ts(e), 0));
                current = Some(id);
                ts(e)
            }
        };
        assert!(
            start >= previous_start,
            "journeys/untracked events out of first-sighting order"
        );
        previous_start = start;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Sorting yields a permutation of the input (bytes equal apart from the index splice),
    /// ordered as promised, in both modes.
    #[test]
    fn sort_is_an_ordered_permutation(
        spec in prop::collection::vec((0u64..6, 0u64..1_000, any::<u8>()), 1..60),
        exact in any::<bool>(),
    ) {
        let input_events: Vec<Event> = spec
            .iter()
            .map(|&(journey, t, byte)| {
                let e = event(t, "p", Some(&[byte; 3]));
                if journey == 0 { e } else { with_id(e, journey, journey) }
            })
            .collect();
        let input = stream(&header("trail-capture", "a", 0), &input_events);
        let args: &[&str] = if exact { &["--exact"] } else { &["--window", "2s"] };
        let output = run_ok("trail-sort", args, &input);
        let out = events(&output);
        assert_sorted(&out, input_events.len());
        let mut pool: Vec<Vec<u8>> = frames(&input).into_iter().skip(1).map(|f| f.payload).collect();
        for frame in frames(&output).into_iter().skip(1) {
            let event: Event = trail::model::codec::decode(&frame, "out").expect("event");
            let original = match event.tracking.as_ref().and_then(|t| t.index) {
                Some(index) => pool.iter().position(|p| {
                    let mut spliced = Vec::new();
                    trail::journeys::sort::set_index(p, index, &mut spliced).is_ok() && spliced == frame.payload
                }),
                None => pool.iter().position(|p| *p == frame.payload),
            };
            let at = original.expect("every output event is an input event");
            pool.remove(at);
        }
        prop_assert!(pool.is_empty());
    }
}

#[test]
fn summary_reports_fate_per_journey() {
    let mut dropped = with_id(event(30, "skb:kfree_skb", None), 10, 1);
    dropped.drop = Some(Drop {
        reason: "NETFILTER_DROP".into(),
        code: 7,
        subsystem: None,
    });
    let input = stream(
        &header("trail-capture", "a", 0),
        &[
            with_id(event(10, "net:netif_receive_skb", None), 10, 1),
            with_id(event(20, "net:netif_receive_skb", None), 20, 2),
            dropped,
            with_id(event(25, "net:net_dev_start_xmit", None), 20, 2),
            with_id(event(26, "skb:consume_skb", None), 20, 2),
            with_id(event(40, "skb:skb_copy_datagram_iovec", None), 40, 3),
            event(50, "untracked", None),
        ],
    );
    let text = String::from_utf8(run_ok("trail-sort", &["--summary"], &input)).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("#a-1 0.000000010 2 events tp:net:netif_receive_skb -> tp:skb:kfree_skb in 20ns dropped (NETFILTER_DROP)"), "{}", lines[0]);
    assert!(
        lines[1].contains("3 events") && lines[1].ends_with("transmitted"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with("delivered"), "{}", lines[2]);
    let json = run_ok("trail-sort", &["--summary", "--format", "json"], &input);
    let rows: Vec<serde_json::Value> = json
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["journey"], "a-1");
    assert_eq!(rows[0]["fate"], "dropped");
    assert_eq!(rows[0]["reason"], "NETFILTER_DROP");
    assert_eq!(rows[0]["duration_ns"], 20);
    assert_eq!(rows[1]["events"], 3);
    assert_eq!(rows[1]["last_probe"], "tp:skb:consume_skb");
    assert_eq!(rows[1]["fate"], "transmitted");
}

// ---- trail-track ----------------------------------------------------------------------------

#[test]
fn track_clones_frees_and_buffer_reuse() {
    let p1 = udp_frame(
        [10, 0, 0, 1],
        1000,
        [10, 0, 0, 2],
        53,
        1,
        64,
        b"first packet",
    );
    let p2 = udp_frame(
        [10, 0, 0, 1],
        1000,
        [10, 0, 0, 2],
        53,
        2,
        64,
        b"second packet",
    );
    let p3 = udp_frame(
        [10, 0, 0, 1],
        1000,
        [10, 0, 0, 2],
        53,
        3,
        64,
        b"third packet",
    );
    let h = 0xffff_8880_0000_1000;
    let input = stream(
        &header("trail-capture", "a", 0),
        &[
            with_skb(event(10, "net:netif_receive_skb", Some(&p1)), 0xa1, h),
            with_skb(event(20, "net:ip_rcv", Some(&p1)), 0xa1, h),
            // A clone: same buffer, another sk_buff.
            with_skb(event(30, "net:dev_queue_xmit", Some(&p1)), 0xa2, h),
            with_skb(event(40, "skb:consume_skb", Some(&p1)), 0xa1, h),
            with_skb(event(50, "skb:kfree_skb", Some(&p1)), 0xa2, h),
            // The buffer is reused by a new packet after both frees...
            with_skb(event(60, "net:netif_receive_skb", Some(&p2)), 0xa1, h),
            // ...and again without a visible free (another identity): a new journey too.
            with_skb(event(70, "net:netif_receive_skb", Some(&p3)), 0xa1, h),
        ],
    );
    let out = events(&run_ok("trail-track", &[], &input));
    let first = format!("a-{h:x}");
    let clone = format!("1e-{h:x}");
    assert_eq!(
        links(&out),
        vec![
            (10, first.clone(), None, None),
            (20, first.clone(), None, None),
            (30, clone.clone(), Some(first.clone()), Some("clone".into())),
            (40, first.clone(), None, None),
            (50, clone, Some(first.clone()), Some("clone".into())),
            (60, format!("3c-{h:x}"), None, None),
            (70, format!("46-{h:x}"), None, None),
        ]
    );
    assert!(out.iter().all(|e| tracking(e).source == "head"));
}

#[test]
fn track_links_copy_and_nat_by_fingerprint() {
    let payload = b"the same bytes all along the way";
    let orig = udp_frame([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, 9, 64, payload);
    let routed = udp_frame([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, 9, 63, payload);
    let snat = udp_frame([192, 168, 1, 1], 40000, [10, 0, 0, 2], 53, 9, 63, payload);
    let dnat_port = udp_frame([192, 168, 1, 1], 40000, [10, 0, 0, 2], 5353, 9, 63, payload);
    let other = udp_frame([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, 10, 64, payload);
    let input = stream(
        &header("trail-from-pcap", "a", 0),
        &[
            event(100, "eth0", Some(&orig)),
            event(110, "eth1", Some(&routed)), // forwarded: TTL only, same journey
            event(120, "eth2", Some(&snat)),   // address and port rewrite
            event(125, "eth2", Some(&snat)),   // seen again after NAT: continues
            event(130, "eth3", Some(&dnat_port)), // port rewrite only
            event(140, "eth0", Some(&other)),  // another IP id: another packet
            // Copy into a new skb: new addr and head, same packet.
            with_skb(
                event(200, "net:netif_receive_skb", Some(&other)),
                0xb1,
                0x1000,
            ),
            with_skb(event(210, "net:net_dev_queue", Some(&other)), 0xb2, 0x2000),
        ],
    );
    let out = events(&run_ok("trail-track", &[], &input));
    let a = "64-0".to_string();
    let other_id = "8c-0".to_string();
    assert_eq!(
        links(&out),
        vec![
            (100, a.clone(), None, None),
            (110, a.clone(), None, None),
            (120, "78-0".into(), Some(a.clone()), Some("nat".into())),
            (125, "78-0".into(), Some(a.clone()), Some("nat".into())),
            (130, "82-0".into(), Some(a.clone()), Some("nat".into())),
            (140, other_id.clone(), None, None),
            (
                200,
                "c8-1000".into(),
                Some(other_id.clone()),
                Some("copy".into())
            ),
            (210, "d2-2000".into(), Some(other_id), Some("copy".into())),
        ]
    );
    assert_eq!(tracking(&out[0]).source, "fingerprint");
    assert_eq!(tracking(&out[6]).source, "head");
    // Sorted, all NAT steps of the first packet form one journey, in time order.
    let sorted = events(&run_ok(
        "trail-sort",
        &[],
        &run_ok("trail-track", &[], &input),
    ));
    let got: Vec<(u64, Option<u32>)> = order(&sorted);
    assert_eq!(
        got,
        vec![
            (100, Some(0)),
            (110, Some(1)),
            (120, Some(2)),
            (125, Some(3)),
            (130, Some(4)),
            (140, Some(0)),
            (200, Some(1)),
            (210, Some(2)),
        ]
    );
}

#[test]
fn track_links_vxlan_encap_and_decap() {
    let inner = udp_frame(
        [10, 1, 0, 1],
        2000,
        [10, 1, 0, 2],
        80,
        77,
        64,
        b"tunnelled payload",
    );
    let outer = vxlan(&inner);
    let input = stream(
        &header("trail-from-pcap", "a", 0),
        &[
            event(100, "veth0", Some(&inner)),
            event(110, "eth0", Some(&outer)),
            event(120, "eth1", Some(&outer)), // the outer packet seen again: continues
            event(130, "vxlan0", Some(&inner)),
        ],
    );
    let out = events(&run_ok("trail-track", &[], &input));
    let root = "64-0".to_string();
    assert_eq!(
        links(&out),
        vec![
            (100, root.clone(), None, None),
            (110, "6e-0".into(), Some(root.clone()), Some("encap".into())),
            (120, "6e-0".into(), Some(root.clone()), Some("encap".into())),
            (130, "82-0".into(), Some(root), Some("decap".into())),
        ]
    );
}

/// GRE (with a key) and IP-in-IP around the same packet: each tunnel level is an `encap`, the
/// bare packet after both a `decap`, all one chain.
#[test]
fn track_links_gre_and_ipip_encap() {
    let inner_ip = ipv4(
        [10, 2, 0, 1],
        [10, 2, 0, 2],
        17,
        91,
        64,
        &udp(3000, 53, b"in a tunnel"),
    );
    let mut gre_body = vec![0x20, 0, 0x08, 0x00, 0, 0, 0, 9]; // key present, IPv4, key 9
    gre_body.extend_from_slice(&inner_ip);
    let gre = eth(
        0x0800,
        &ipv4([172, 16, 1, 1], [172, 16, 1, 2], 47, 5, 64, &gre_body),
    );
    let ipip_gre = eth(
        0x0800,
        &ipv4([192, 168, 9, 1], [192, 168, 9, 2], 4, 6, 64, &gre[14..]),
    );
    let input = stream(
        &header("trail-from-pcap", "a", 0),
        &[
            event(100, "veth0", Some(&eth(0x0800, &inner_ip))),
            event(110, "gre0", Some(&gre)),
            event(120, "ipip0", Some(&ipip_gre)),
            event(130, "veth1", Some(&eth(0x0800, &inner_ip))),
        ],
    );
    let out = events(&run_ok("trail-track", &[], &input));
    let root = "64-0".to_string();
    assert_eq!(
        links(&out),
        vec![
            (100, root.clone(), None, None),
            (110, "6e-0".into(), Some(root.clone()), Some("encap".into())),
            (120, "78-0".into(), Some(root.clone()), Some("encap".into())),
            (130, "82-0".into(), Some(root), Some("decap".into())),
        ]
    );
}

#[test]
fn track_keeps_kernel_ids_and_bytes() {
    let p = udp_frame([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, 3, 64, b"x");
    let input = stream(
        &header("trail-capture", "a", 0),
        &[
            with_skb(with_id(event(10, "a", Some(&p)), 5, 0x77), 1, 0x77),
            event(20, "no packet, no skb", None),
        ],
    );
    let output = run_ok("trail-track", &[], &input);
    // Nothing to add: every event byte for byte; the header gains the stage.
    let (inp, out) = (frames(&input), frames(&output));
    assert_eq!(inp.len(), out.len());
    for (a, b) in inp.iter().zip(&out).skip(1) {
        assert_eq!(a.payload, b.payload);
    }
    let header: trail::model::event::Header =
        trail::model::codec::decode(&out[0], "out").expect("header");
    assert_eq!(
        header.pipeline.last().map(|s| s.tool.as_str()),
        Some("trail-track")
    );
}

#[test]
fn two_hosts_on_different_clocks_merge_and_link() {
    // Host A's monotonic clock is 1000 s behind wall time, host B's 5000 s: the same wall time
    // is A:t and B:t-4000s. Each host sees two packets (kernel ids), 40 µs after A.
    let s = 1_000_000_000u64;
    let p1 = udp_frame([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, 1, 64, b"packet one");
    let p2 = udp_frame([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, 2, 64, b"packet two");
    let a = |t: u64, data: &[u8], head| {
        with_id(
            event(5000 * s + t, "net:net_dev_xmit", Some(data)),
            5000 * s + 100,
            head,
        )
    };
    let b = |t: u64, data: &[u8], head| {
        with_id(
            event(1000 * s + t, "net:netif_receive_skb", Some(data)),
            1000 * s + 100_040,
            head,
        )
    };
    let host_a = stream(
        &header("trail-capture", "alpha", 1000 * s as i64),
        &[a(100, &p1, 0xa1), a(200, &p1, 0xa1), a(100_100, &p2, 0xa2)],
    );
    let host_b = stream(
        &header("trail-capture", "beta", 5000 * s as i64),
        &[
            b(100_040, &p1, 0xb1),
            b(100_050, &p1, 0xb1),
            b(200_140, &p2, 0xb2),
        ],
    );
    let (_da, path_a) = temp_file("a.trail", &host_a);
    let (_db, path_b) = temp_file("b.trail", &host_b);
    let tracked = run_ok("trail-track", &[&path_a, &path_b], &[]);
    let out_frames = frames(&tracked);
    assert_eq!(
        out_frames
            .iter()
            .filter(|f| f.kind == FrameKind::Header)
            .count(),
        1,
        "one section"
    );
    let header: trail::model::event::Header =
        trail::model::codec::decode(&out_frames[0], "out").expect("header");
    assert_eq!(header.host, "alpha");
    assert_eq!(header.clock.realtime_offset_ns, 1000 * s as i64);
    let sources: Vec<serde_json::Value> = {
        let map = RawMap::parse(&out_frames[0].payload).expect("map");
        rmp_serde::from_slice(map.get(&out_frames[0].payload, "sources").expect("sources"))
            .expect("list")
    };
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[1]["host"], "beta");
    let out = events(&tracked);
    // Rebased onto alpha's clock: B's time + 4000 s; in wall-clock order.
    let wall: Vec<(u64, Option<String>)> = out
        .iter()
        .map(|e| {
            (
                ts(e) - 5000 * s,
                e.common.as_ref().and_then(|c| c.host.clone()),
            )
        })
        .collect();
    assert_eq!(
        wall,
        vec![
            (100, None),
            (200, None),
            (100_040, Some("beta".into())),
            (100_050, Some("beta".into())),
            (100_100, None),
            (200_140, Some("beta".into())),
        ]
    );
    let p1_a = format!("{:x}-a1", 5000 * s + 100);
    let p1_b = format!("{:x}-b1", 5000 * s + 100_040);
    let p2_a = format!("{:x}-a2", 5000 * s + 100);
    assert_eq!(tracking(&out[2]).id(), p1_b, "B's kernel id, rebased");
    assert_eq!(tracking(&out[2]).parent.as_deref(), Some(p1_a.as_str()));
    assert_eq!(tracking(&out[2]).link.as_deref(), Some("host"));
    assert_eq!(tracking(&out[5]).parent.as_deref(), Some(p2_a.as_str()));
    // Sorting the tracked stream: one journey per packet across both hosts.
    let sorted = events(&run_ok("trail-sort", &[], &tracked));
    let got: Vec<(u64, Option<u32>)> = order(&sorted)
        .into_iter()
        .map(|(t, i)| (t - 5000 * s, i))
        .collect();
    assert_eq!(
        got,
        vec![
            (100, Some(0)),
            (200, Some(1)),
            (100_040, Some(2)),
            (100_050, Some(3)),
            (100_100, Some(0)),
            (200_140, Some(1)),
        ]
    );
    // trail-sort merges the two raw files the same way (wall-clock order, one header).
    let merged = run_ok("trail-sort", &[&path_a, &path_b], &[]);
    assert_eq!(
        frames(&merged)
            .iter()
            .filter(|f| f.kind == FrameKind::Header)
            .count(),
        1
    );
    assert_eq!(events(&merged).len(), 6);
}

#[test]
fn track_bounds_live_journeys_with_a_counted_warning() {
    let input_events: Vec<Event> = (0..100u64)
        .map(|i| with_skb(event(i, "p", None), 0x1000 + i, 0x10_0000 + i * 0x1000))
        .collect();
    let input = stream(&header("trail-capture", "a", 0), &input_events);
    let output = run("trail-track", &["--max-journeys", "10"], &input);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let evicted: u64 = stderr
        .split("warning: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no eviction warning in {stderr:?}"));
    assert!((90..=100).contains(&evicted), "evicted {evicted}");
    assert_eq!(events(&output.stdout).len(), 100);
}

#[test]
fn bad_input_exits_2_with_one_clean_line() {
    let valid = stream(&header("trail-capture", "a", 0), &[event(1, "p", None)]);
    let truncated = &valid[..valid.len() - 3];
    for tool in ["trail-sort", "trail-track"] {
        for (what, input, args, needle) in [
            (
                "garbage",
                &b"hello world"[..],
                &[][..],
                "not a trail stream",
            ),
            ("truncated", truncated, &[][..], "truncated"),
            ("json", &b"{\"a\":1}"[..], &[][..], "JSON"),
            (
                "bad duration",
                &valid[..],
                &["--window", "soon"][..],
                "invalid duration",
            ),
        ] {
            let output = run(tool, args, input);
            assert_eq!(output.status.code(), Some(2), "{tool} {what}: {output:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(needle), "{tool} {what}: {stderr}");
            if what != "bad duration" {
                assert_eq!(stderr.lines().count(), 1, "{tool} {what}: {stderr}");
                assert!(
                    stderr.starts_with(&format!("{tool}: error: stdin: byte ")),
                    "{tool} {what}: {stderr}"
                );
            }
        }
    }
    // A record that is not a map: frame intact, payload corrupt.
    let mut corrupt = stream(&header("trail-capture", "a", 0), &[]);
    corrupt.extend_from_slice(&[b'E', 1, 0, 0, 0, 0x01]);
    for tool in ["trail-sort", "trail-track"] {
        let output = run(tool, &[], &corrupt);
        assert_eq!(output.status.code(), Some(2), "{tool}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("corrupt record"));
    }
}

#[test]
fn printer_writes_one_json_line_per_journey() {
    let input = stream(&header("trail-capture", "a", 0), &interleaved());
    let sorted = run_ok("trail-sort", &["--exact"], &input);
    let options = trail::print::PrintOptions {
        format: trail::print::Format::Json,
        journeys: true,
        ..Default::default()
    };
    let mut text = Vec::new();
    {
        let mut printer = trail::print::Printer::new(&mut text, options);
        for frame in frames(&sorted) {
            printer.frame(&frame, "sorted").expect("print");
        }
        printer.finish().expect("finish");
    }
    let lines: Vec<serde_json::Value> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON line"))
        .collect();
    let shape: Vec<(serde_json::Value, Vec<u64>)> = lines
        .iter()
        .map(|l| {
            let times = l["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["common"]["timestamp"].as_u64().expect("timestamp"))
                .collect();
            (l["journey"].clone(), times)
        })
        .collect();
    let id = |s: &str| serde_json::Value::String(s.into());
    assert_eq!(
        shape,
        vec![
            (id("64-a"), vec![100, 120, 130]),
            (serde_json::Value::Null, vec![140]),
            (id("96-b"), vec![150, 160, 400]),
            (id("12c-c"), vec![300, 310]),
            (serde_json::Value::Null, vec![305]),
        ]
    );
}

#[test]
fn concatenated_sections_on_other_clocks_are_rebased() {
    // `cat a b | trail-sort`: the second section's clock is 3 s ahead of the first's, so its
    // events move 3 s later on the output (first section's) clock, and get common.host.
    let s = 1_000_000_000u64;
    let mut input = stream(
        &header("trail-capture", "a", 10 * s as i64),
        &[with_id(event(5 * s, "p", None), 5 * s, 1)],
    );
    input.extend(stream(
        &header("trail-capture", "b", 13 * s as i64),
        &[
            with_id(event(s, "p", None), s, 2),
            event(3 * s, "untracked", None),
        ],
    ));
    for args in [&[][..], &["--exact"][..]] {
        let output = run_ok("trail-sort", args, &input);
        let out_frames = frames(&output);
        assert_eq!(
            out_frames
                .iter()
                .filter(|f| f.kind == FrameKind::Header)
                .count(),
            1
        );
        let out = events(&output);
        let got: Vec<(u64, Option<String>, Option<String>)> = out
            .iter()
            .map(|e| {
                (
                    ts(e) / s,
                    e.common.as_ref().and_then(|c| c.host.clone()),
                    e.tracking.as_ref().map(|t| t.id()),
                )
            })
            .collect();
        let id_b = format!("{:x}-2", 4 * s);
        assert_eq!(
            got,
            vec![
                (4, Some("b".into()), Some(id_b)),
                (5, None, Some(format!("{:x}-1", 5 * s))),
                (6, Some("b".into()), None),
            ],
            "{args:?}"
        );
    }
}

// ---- fixtures from real captures (tests/fixtures/veth.pcap through trail-from-pcap) ----------

fn veth_pcap() -> String {
    format!("{}/tests/fixtures/veth.pcap", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Wireshark command-line tool (tshark, editcap, mergecap: installed with tshark, the
/// oracle of the dissection tests) and asserts it worked.
fn wireshark_tool(tool: &str, args: &[&str]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} is needed to build pcap fixtures (apt-get install tshark): {e}")
        });
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn packet_bytes(e: &Event) -> Vec<u8> {
    e.packet
        .as_ref()
        .expect("imported events carry packets")
        .data
        .0
        .clone()
}

/// Journeys of a sorted stream, in output order: (journey key, events). The key is the
/// journey's parent (the root of its chain) or else its own id, as trail-sort groups them.
fn sorted_journeys(out: &[Event]) -> Vec<(String, Vec<Event>)> {
    let mut journeys: Vec<(String, Vec<Event>)> = Vec::new();
    for e in out {
        let t = tracking(e);
        let key = t.parent.clone().unwrap_or_else(|| t.id());
        match journeys.last_mut() {
            Some((k, events)) if *k == key => events.push(e.clone()),
            _ => journeys.push((key, vec![e.clone()])),
        }
    }
    journeys
}

/// The same capture seen on two hosts, the second 200 µs later (editcap's time shift standing
/// for transit): trail-track links every packet on host b to the same packet on host a, and
/// trail-sort puts exactly those two sightings in one journey, a's first.
#[test]
fn pcap_fixture_seen_on_two_hosts_forms_one_journey_per_packet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    // IPv4 packets that are all different from each other (checked below), so that "the same
    // packet" has one answer: not the VLAN-tagged pair (one datagram twice), nor the ICMPv6
    // multicast reports and solicitations that the kernel repeats byte for byte inside VXLAN.
    wireshark_tool(
        "tshark",
        &[
            "-r",
            &veth_pcap(),
            "-Y",
            "ip && !vlan && !icmpv6",
            "-F",
            "pcap",
            "-w",
            &path("a.pcap"),
        ],
    );
    wireshark_tool(
        "editcap",
        &["-t", "0.0002", &path("a.pcap"), &path("b.pcap")],
    );
    let import = |pcap: &str, host: &str, out: &str| {
        run_ok(
            "trail-from-pcap",
            &["--host", host, &path(pcap), "-o", &path(out)],
            &[],
        );
    };
    import("a.pcap", "a", "a.trail");
    import("b.pcap", "b", "b.trail");
    let tracked = run_ok("trail-track", &[&path("a.trail"), &path("b.trail")], &[]);
    let (_d, tracked_path) = temp_file("tracked.trail", &tracked);
    let sorted = events(&run_ok("trail-sort", &[&tracked_path], &[]));

    let a_events = events(&std::fs::read(path("a.trail")).expect("a.trail"));
    assert!(
        a_events.len() >= 20,
        "fixture has {} packets",
        a_events.len()
    );
    let mut distinct: Vec<Vec<u8>> = a_events.iter().map(packet_bytes).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        a_events.len(),
        "fixture packets are all different"
    );
    assert_eq!(
        sorted.len(),
        2 * a_events.len(),
        "every event comes out once"
    );

    let journeys = sorted_journeys(&sorted);
    assert_eq!(journeys.len(), a_events.len(), "one journey per packet");
    for ((key, events), a_event) in journeys.iter().zip(&a_events) {
        // Journeys by first sighting: host a's packets, in capture order.
        let hosts: Vec<Option<String>> = events
            .iter()
            .map(|e| e.common.as_ref().and_then(|c| c.host.clone()))
            .collect();
        assert_eq!(
            hosts,
            [None, Some("b".to_string())],
            "journey {key}: a then b"
        );
        assert_eq!(
            packet_bytes(&events[0]),
            packet_bytes(a_event),
            "journey {key}"
        );
        assert_eq!(
            packet_bytes(&events[1]),
            packet_bytes(a_event),
            "journey {key}"
        );
        assert_eq!(ts(&events[1]) - ts(&events[0]), 200_000, "editcap's shift");
        let (first, second) = (tracking(&events[0]), tracking(&events[1]));
        assert_eq!(first.parent, None);
        assert_eq!(second.parent.as_deref(), Some(first.id().as_str()));
        assert_eq!(second.link.as_deref(), Some("host"));
        assert_eq!((first.index, second.index), (Some(0), Some(1)));
    }
}

/// VXLAN decapsulation from a real capture: the VXLAN pings of the fixture, and the same
/// packets 10 µs later with the outer 50 bytes cut off (editcap -C 50: Ethernet, IPv4, UDP,
/// VXLAN headers), as a capture inside the tunnel would see them. Each inner sighting is linked
/// to its outer packet as `decap`.
#[test]
fn pcap_fixture_vxlan_decap_links_inner_to_outer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    wireshark_tool(
        "tshark",
        &[
            "-r",
            &veth_pcap(),
            "-Y",
            "vxlan && icmp",
            "-F",
            "pcap",
            "-w",
            &path("outer.pcap"),
        ],
    );
    wireshark_tool(
        "editcap",
        &[
            "-C",
            "50",
            "-t",
            "0.00001",
            &path("outer.pcap"),
            &path("inner.pcap"),
        ],
    );
    wireshark_tool(
        "mergecap",
        &[
            "-F",
            "pcap",
            "-w",
            &path("both.pcap"),
            &path("outer.pcap"),
            &path("inner.pcap"),
        ],
    );
    let imported = run_ok("trail-from-pcap", &[&path("both.pcap")], &[]);
    let tracked = run_ok("trail-track", &[], &imported);
    let sorted = events(&run_ok("trail-sort", &["--exact"], &tracked));

    let outer = events(&run_ok("trail-from-pcap", &[&path("outer.pcap")], &[]));
    assert_eq!(
        outer.len(),
        4,
        "the fixture's VXLAN pings: 2 requests, 2 replies"
    );
    let journeys = sorted_journeys(&sorted);
    assert_eq!(journeys.len(), outer.len(), "one journey per ping packet");
    for ((key, events), outer_event) in journeys.iter().zip(&outer) {
        let bytes: Vec<Vec<u8>> = events.iter().map(packet_bytes).collect();
        let outer_bytes = packet_bytes(outer_event);
        assert_eq!(
            bytes,
            [outer_bytes.clone(), outer_bytes[50..].to_vec()],
            "journey {key}"
        );
        let (first, second) = (tracking(&events[0]), tracking(&events[1]));
        assert_eq!(second.parent.as_deref(), Some(first.id().as_str()));
        assert_eq!(second.link.as_deref(), Some("decap"));
    }
}
