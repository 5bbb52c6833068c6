//! trail-print's fast paths against serde, the decoder and JSON writer of record: the borrowed
//! event view (`trail::model::view`) must mean what serde's decode means, and the JSON lines must be
//! the bytes serde_json writes for a `Value` built from the owned event.

use std::collections::BTreeSet;

use proptest::prelude::*;
use trail::model::codec::{self, RawMap};
use trail::model::event::*;
use trail::model::view::EventView;
use trail::print::{Format, PrintOptions, Printer};

/// Strings as producers may write them, awkward ones included (quotes, control characters,
/// non-ASCII) so that escaping and case folding are exercised.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_:]{0,12}",
        "[A-Z_]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just("quote\" back\\slash\ttab\u{1}".to_string()),
        Just("ünïcode ß".to_string()),
    ]
}

fn arb_tuple() -> impl Strategy<Value = CtTuple> {
    (
        arb_text(),
        arb_text(),
        any::<u8>(),
        any::<Option<u16>>(),
        any::<Option<u16>>(),
        any::<Option<u8>>(),
        any::<Option<u8>>(),
        any::<Option<u16>>(),
    )
        .prop_map(
            |(src, dst, proto, sport, dport, icmp_type, icmp_code, icmp_id)| CtTuple {
                src,
                dst,
                proto,
                sport,
                dport,
                icmp_type,
                icmp_code,
                icmp_id,
            },
        )
}

/// Packets: random bytes, or real frames from the synthetic generator (so that dissection
/// reaches its deeper layers).
fn arb_packet() -> impl Strategy<Value = Packet> {
    let random = (
        proptest::collection::vec(any::<u8>(), 0..80),
        0u32..2000,
        prop_oneof![
            Just(linktype::ETHERNET),
            Just(linktype::RAW),
            Just(linktype::LINUX_SLL),
            Just(linktype::LINUX_SLL2),
            Just(linktype::IPV6),
            any::<u32>()
        ],
        any::<bool>(),
    )
        .prop_map(|(data, extra, linktype, l3)| Packet {
            len: data.len() as u32 + extra,
            data: Bytes(data),
            layer: if l3 { Layer::L3 } else { Layer::L2 },
            linktype,
        });
    let real = (1u64..1000, 0usize..40).prop_map(|(seed, skip)| {
        let config = trail::model::synth::SynthConfig {
            seed,
            ..Default::default()
        };
        trail::model::synth::Synth::new(config)
            .nth(skip)
            .and_then(|e| e.packet)
            .unwrap_or_default()
    });
    prop_oneof![random, real]
}

/// Events with every section and optional field present or not.
fn arb_event() -> BoxedStrategy<Event> {
    let common = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        arb_text(),
        proptest::option::of(arb_text()),
    )
        .prop_map(|(timestamp, cpu, pid, tid, comm, host)| Common {
            timestamp,
            cpu,
            pid,
            tid: tid.unwrap_or(pid),
            comm,
            host,
        });
    let probe = (
        prop_oneof![
            Just(ProbeKind::Tracepoint),
            Just(ProbeKind::Kprobe),
            Just(ProbeKind::Kretprobe),
            Just(ProbeKind::Fentry),
            Just(ProbeKind::Fexit),
            Just(ProbeKind::PcapImport),
            Just(ProbeKind::Unknown),
        ],
        arb_text(),
    )
        .prop_map(|(kind, name)| Probe { kind, name });
    let skb = (
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u16>(), any::<u8>()),
        (any::<u32>(), any::<u8>(), any::<bool>(), any::<u32>()),
        (any::<u32>(), any::<u16>(), any::<u16>(), any::<u32>()),
        (any::<Option<u16>>(), any::<Option<u16>>()),
    )
        .prop_map(|(a, b, c, d, e)| Skb {
            addr: a.0,
            head: a.1,
            len: a.2,
            data_len: a.3,
            mark: b.0,
            hash: b.1,
            protocol: b.2,
            pkt_type: b.3,
            priority: c.0,
            ip_summed: c.1,
            cloned: c.2,
            users: c.3,
            dataref: d.0,
            gso_size: d.1,
            gso_segs: d.2,
            gso_type: d.3,
            vlan_tci: e.0,
            vlan_proto: e.1,
        });
    let dev =
        (any::<u32>(), arb_text(), any::<Option<u32>>()).prop_map(|(ifindex, name, rx_ifindex)| {
            Dev {
                ifindex,
                name,
                rx_ifindex,
            }
        });
    let netns =
        (any::<u32>(), any::<Option<u64>>()).prop_map(|(inum, cookie)| Netns { inum, cookie });
    let drop = (arb_text(), any::<u32>(), proptest::option::of(arb_text())).prop_map(
        |(reason, code, subsystem)| Drop {
            reason,
            code,
            subsystem,
        },
    );
    let tracking = (
        any::<u64>(),
        any::<u64>(),
        arb_text(),
        any::<Option<u32>>(),
        proptest::option::of(arb_text()),
        proptest::option::of(arb_text()),
    )
        .prop_map(
            |(first_seen, orig_head, source, index, parent, link)| Tracking {
                first_seen,
                orig_head,
                source,
                index,
                parent,
                link,
            },
        );
    let ct = (
        arb_text(),
        (any::<u32>(), any::<u16>(), any::<u32>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        arb_tuple(),
        arb_tuple(),
        proptest::option::of(arb_text()),
    )
        .prop_map(
            |(state, (status, zone, mark), labels, orig, reply, proto_state)| Conntrack {
                state,
                status,
                zone,
                mark,
                labels: labels.map(Bytes),
                orig,
                reply,
                proto_state,
            },
        );
    let nft = (
        (arb_text(), arb_text(), arb_text()),
        (any::<u64>(), any::<u64>(), any::<Option<u64>>()),
        (proptest::option::of(arb_text()), any::<bool>()),
    )
        .prop_map(
            |(
                (table, chain, verdict),
                (table_handle, chain_handle, rule_handle),
                (verdict_chain, policy),
            )| Nft {
                table,
                chain,
                table_handle,
                chain_handle,
                rule_handle,
                verdict,
                verdict_chain,
                policy,
            },
        );
    let stack = proptest::collection::vec(
        (any::<u64>(), proptest::option::of(arb_text()))
            .prop_map(|(addr, symbol)| StackFrame { addr, symbol }),
        0..4,
    )
    .prop_map(|frames| Stack { frames });
    (
        (
            proptest::option::of(common.boxed()),
            proptest::option::of(probe.boxed()),
            proptest::option::of(arb_packet().boxed()),
            proptest::option::of(skb.boxed()),
        ),
        (
            proptest::option::of(dev.boxed()),
            proptest::option::of(netns.boxed()),
            proptest::option::of(drop.boxed()),
            proptest::option::of(tracking.boxed()),
        ),
        (
            proptest::option::of(ct.boxed()),
            proptest::option::of(nft.boxed()),
            proptest::option::of(stack.boxed()),
            any::<Option<i64>>(),
        ),
    )
        .prop_map(
            |(
                (common, probe, packet, skb),
                (dev, netns, drop, tracking),
                (ct, nft, stack, retval),
            )| {
                Event {
                    common,
                    probe,
                    packet,
                    skb,
                    dev,
                    netns,
                    drop,
                    tracking,
                    ct,
                    nft,
                    stack,
                    retval,
                }
            },
        )
        .boxed()
}

/// Adds an unknown section `name` (a small map) to an encoded event.
fn with_unknown(payload: &[u8], name: &str, answer: u32) -> Vec<u8> {
    let index = RawMap::parse(payload).expect("payload indexes");
    let mut value = Vec::new();
    codec::encode(
        &serde_json::json!({"z": answer, "a": [1, "two"]}),
        &mut value,
    );
    let mut out = Vec::new();
    index.with_entry(payload, name, &value, &mut out);
    out
}

/// What trail-print wrote before it had its own JSON writer: a `serde_json::Value` of the owned
/// event (sorted keys), unknown sections, `time` and `parsed` added, `--fields` applied.
fn reference_json(
    event: &Event,
    unknown: &[(&str, serde_json::Value)],
    fields: Option<&BTreeSet<String>>,
) -> String {
    let mut object = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for (name, value) in unknown {
        object.insert((*name).to_string(), value.clone());
    }
    if let Some(common) = &event.common {
        let ns = common.timestamp;
        let time = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        object.insert("time".into(), serde_json::Value::String(time));
    }
    if let Some(packet) = &event.packet {
        let parsed = serde_json::to_value(trail::model::dissect::dissect(packet)).unwrap();
        object.insert("parsed".into(), parsed);
    }
    if let Some(fields) = fields {
        object.retain(|key, _| {
            fields.contains(key) || (key == "parsed" && fields.contains("packet"))
        });
    }
    serde_json::to_string(&object).unwrap() + "\n"
}

/// The JSON line the printer writes for one encoded event.
fn printed_json(payload: &[u8], fields: Option<&BTreeSet<String>>) -> String {
    let options = PrintOptions {
        format: Format::Json,
        fields: fields.cloned(),
        ..PrintOptions::default()
    };
    let mut out = Vec::new();
    {
        let mut printer = Printer::new(&mut out, options);
        let frame = codec::Frame {
            payload: payload.to_vec(),
            ..codec::Frame::default()
        };
        printer.frame(&frame, "test").expect("event prints");
        printer.flush().expect("flush");
    }
    String::from_utf8(out).expect("JSON is UTF-8")
}

fn arb_fields() -> impl Strategy<Value = Option<BTreeSet<String>>> {
    let names = prop_oneof![
        Just("time"),
        Just("common"),
        Just("packet"),
        Just("parsed"),
        Just("skb"),
        Just("ct"),
        Just("tracking"),
        Just("future"),
    ];
    proptest::option::weighted(
        0.3,
        proptest::collection::btree_set(names.prop_map(str::to_string), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The view reads every canonical payload, and reads it as serde does.
    #[test]
    fn view_reads_what_serde_reads(event in arb_event()) {
        let mut payload = Vec::new();
        codec::encode(&event, &mut payload);
        let decoded: Event = rmp_serde::from_slice(&payload).unwrap();
        prop_assert_eq!(&decoded, &event);
        prop_assert_eq!(EventView::parse(&payload), Some(EventView::from(&decoded)));
    }

    /// On damaged payloads the view either declines or agrees with serde: it never accepts
    /// what serde rejects, nor reads it differently.
    #[test]
    fn view_never_disagrees_with_serde(
        event in arb_event(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut payload = Vec::new();
        codec::encode(&event, &mut payload);
        for (at, byte, how) in damage {
            if payload.is_empty() {
                break;
            }
            let at = at.index(payload.len());
            match how {
                0 => payload[at] = byte,
                1 => payload.truncate(at),
                _ => payload.insert(at, byte),
            }
        }
        if let Some(view) = EventView::parse(&payload) {
            let decoded: Result<Event, _> = rmp_serde::from_slice(&payload);
            prop_assert!(decoded.is_ok(), "view accepted what serde rejects: {:?}", decoded);
            let decoded = decoded.unwrap();
            prop_assert_eq!(view, EventView::from(&decoded));
        }
    }

    /// JSON lines are serde_json's bytes for the event's `Value`, with and without `--fields`
    /// and unknown sections (whose keys sort among the known ones, `time` and `parsed` too).
    #[test]
    fn json_is_what_serde_writes(
        event in arb_event(),
        fields in arb_fields(),
        unknown in proptest::option::of((prop_oneof![Just("future"), Just("aa"), Just("time"), Just("parsed"), Just("zz")], any::<u32>())),
    ) {
        let mut payload = Vec::new();
        codec::encode(&event, &mut payload);
        let mut extra = Vec::new();
        if let Some((name, answer)) = unknown {
            payload = with_unknown(&payload, name, answer);
            extra.push((name, serde_json::json!({"z": answer, "a": [1, "two"]})));
        }
        prop_assert_eq!(
            printed_json(&payload, fields.as_ref()),
            reference_json(&event, &extra, fields.as_ref())
        );
    }
}

/// The same on the synthetic stream the benchmarks print (real packets, conntrack, drops).
#[test]
fn json_of_synthetic_events_is_what_serde_writes() {
    let synth = trail::model::synth::Synth::new(trail::model::synth::SynthConfig {
        seed: 7,
        ..Default::default()
    });
    let mut payload = Vec::new();
    for event in synth.take(2000) {
        codec::encode(&event, &mut payload);
        assert!(EventView::parse(&payload).is_some(), "{event:?}");
        assert_eq!(
            printed_json(&payload, None),
            reference_json(&event, &[], None)
        );
    }
}

/// `--json --journeys` on a pipe that runs dry in the middle of a journey (a live
/// `trail-sort | trail-print`) prints the same journeys as on a file: a pause in the input ends
/// nothing. It used to end the journey being collected and drop the rest of its events.
#[test]
fn json_journeys_survive_a_pause_in_the_input() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let tracked = |ts: u64, head: u64, index: u32| {
        let mut event = crate::common::event(ts, "net:netif_receive_skb", Some(&[0u8; 20]));
        event.tracking = Some(Tracking {
            first_seen: 1000 + head,
            orig_head: head,
            index: Some(index),
            ..Tracking::default()
        });
        event
    };
    let events: Vec<_> = (0..2u64)
        .flat_map(|j| (0..3u32).map(move |i| tracked(2000 + j * 10 + u64::from(i), 0x100 + j, i)))
        .collect();
    let stream = crate::common::stream(&crate::common::header("test", "h", 0), &events);
    let whole = crate::common::run_ok("trail-print", &["--json", "--journeys"], &stream);

    // Cut after the second event of the first journey, and wait before sending the rest.
    let cut_at = crate::common::stream(&crate::common::header("test", "h", 0), &events[..2]).len();
    let mut child = Command::new(crate::common::bin("trail-print"))
        .args(["--json", "--journeys"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start trail-print");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(&stream[..cut_at]).expect("first part");
    input.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(300));
    input.write_all(&stream[cut_at..]).expect("rest");
    drop(input);
    let paused = child.wait_with_output().expect("trail-print ends");
    assert!(paused.status.success(), "trail-print failed");
    let lines = String::from_utf8_lossy(&paused.stdout);
    assert_eq!(lines.lines().count(), 2, "two journeys: {lines}");
    assert_eq!(
        lines,
        String::from_utf8_lossy(&whole),
        "a pause in the input changed the journeys"
    );
}
