//! The benchmark generator (`trail::model::synth`): the shape its module doc promises (journeys of 5–20
//! events ending in a drop or a consume, 60–1500-byte packets, drops, conntrack, reused buffers),
//! determinism by seed, its options, and a cross-check with trail-track: given the same events
//! without ids, trail-track must find exactly the journeys the generator made.

use std::collections::{BTreeMap, HashMap, HashSet};

use trail::model::event::Event;
use trail::model::synth::{Synth, SynthConfig};

use crate::common::{events, run_ok, stream};

fn generate(config: SynthConfig, n: usize) -> (trail::model::event::Header, Vec<Event>) {
    let synth = Synth::new(config);
    let header = synth.header();
    (header, synth.take(n).collect())
}

fn journey_id(event: &Event) -> (u64, u64) {
    let tracking = event.tracking.as_ref().expect("tracking section");
    (tracking.first_seen, tracking.orig_head)
}

fn probe(event: &Event) -> &str {
    &event.probe.as_ref().expect("probe").name
}

fn timestamp(event: &Event) -> u64 {
    event.common.as_ref().expect("common").timestamp
}

#[test]
fn journeys_packets_drops_and_ct_have_the_documented_shape() {
    let config = SynthConfig {
        seed: 7,
        ..SynthConfig::default()
    };
    let (header, events) = generate(config.clone(), 20_000);
    let mut journeys: BTreeMap<(u64, u64), Vec<&Event>> = BTreeMap::new();
    for event in &events {
        journeys.entry(journey_id(event)).or_default().push(event);
    }
    let ends = ["skb:kfree_skb", "skb:consume_skb"];
    let (mut complete, mut dropped, mut with_ct, mut sizes) = (0, 0, 0, HashSet::new());
    for (id, journey) in &journeys {
        let last = journey.last().expect("non-empty");
        if !ends.contains(&probe(last)) {
            // Still in flight when the stream was cut: at most `concurrent` of them.
            continue;
        }
        complete += 1;
        assert!(
            (5..=20).contains(&journey.len()),
            "journey {id:x?} has {} events",
            journey.len()
        );
        for event in &journey[..journey.len() - 1] {
            assert!(!ends.contains(&probe(event)), "end of life mid-journey");
            assert!(event.drop.is_none(), "drop section before the end");
        }
        let drop = last.drop.as_ref();
        assert_eq!(drop.is_some(), probe(last) == "skb:kfree_skb");
        dropped += usize::from(drop.is_some());
        with_ct += usize::from(last.ct.is_some());
        let packet = last.packet.as_ref().expect("packet");
        assert!(
            (60..=1500).contains(&packet.len),
            "packet of {}",
            packet.len
        );
        assert_eq!(
            packet.data.0.len(),
            (packet.len as usize).min(config.snaplen)
        );
        let parsed = trail::model::dissect::dissect(packet);
        let l4 = parsed.l4.as_ref().expect("transport header dissected");
        assert!(parsed.error.is_none(), "{:?}", parsed.error);
        assert!(l4.proto == "udp" || l4.proto == "tcp", "{}", l4.proto);
        sizes.insert(packet.len / 100);
        for probe in journey.iter().map(|e| probe(e)) {
            assert!(
                header.probes.contains(&format!("tp:{probe}")),
                "{probe} not in header"
            );
        }
    }
    assert!(journeys.len() - complete <= config.concurrent);
    let share = |count: usize| count as f64 / complete as f64;
    assert!(
        (0.01..0.06).contains(&share(dropped)),
        "{dropped} drops in {complete}"
    );
    assert!(
        (0.35..0.65).contains(&share(with_ct)),
        "{with_ct} ct in {complete}"
    );
    assert!(sizes.len() >= 14, "packet sizes spread over {sizes:?}");
    let in_order = events
        .windows(2)
        .all(|w| timestamp(&w[0]) < timestamp(&w[1]));
    assert!(in_order, "timestamps increase without disorder");
}

#[test]
fn same_seed_same_stream_and_options_apply() {
    let (header, a) = generate(SynthConfig::default(), 3_000);
    let (_, b) = generate(SynthConfig::default(), 3_000);
    assert_eq!(
        stream(&header, &a),
        stream(&header, &b),
        "same seed, same bytes"
    );
    let (_, c) = generate(
        SynthConfig {
            seed: 2,
            ..SynthConfig::default()
        },
        3_000,
    );
    assert_ne!(stream(&header, &a), stream(&header, &c), "another seed");

    let (_, untracked) = generate(
        SynthConfig {
            tracking: false,
            ..SynthConfig::default()
        },
        3_000,
    );
    assert!(untracked.iter().all(|e| e.tracking.is_none()));
    // Tracking is left out, nothing else changes.
    for (with, without) in a.iter().zip(&untracked) {
        let mut with = with.clone();
        with.tracking = None;
        assert_eq!(&with, without);
    }

    let (_, disordered) = generate(
        SynthConfig {
            disorder: 0.1,
            ..SynthConfig::default()
        },
        10_000,
    );
    let swaps = disordered
        .windows(2)
        .filter(|w| timestamp(&w[0]) > timestamp(&w[1]))
        .count();
    assert!((500..1500).contains(&swaps), "{swaps} swaps for 10%");

    // Few buffers: every one is reused, never by two journeys at once.
    let (_, reused) = generate(
        SynthConfig {
            buffers: 16,
            ..SynthConfig::default()
        },
        10_000,
    );
    let mut spans: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    for event in &reused {
        let ts = timestamp(event);
        let span = spans.entry(journey_id(event)).or_insert((ts, ts));
        span.1 = ts;
    }
    let mut by_head: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for (&(_, head), &span) in &spans {
        by_head.entry(head).or_default().push(span);
    }
    assert_eq!(by_head.len(), 16);
    for (head, spans) in &mut by_head {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "head {head:x} used by two live journeys"
            );
        }
    }
}

/// trail-track over the same events without ids must rebuild the generator's journeys: the
/// generator is realistic enough for tracking (end-of-life probes, reused buffers, disorder),
/// and the journeys it claims are there are the ones a tracker finds.
#[test]
fn trail_track_finds_the_generated_journeys() {
    let config = SynthConfig {
        seed: 3,
        buffers: 64,
        ..SynthConfig::default()
    };
    let (header, tracked) = generate(config.clone(), 20_000);
    let (_, untracked) = generate(
        SynthConfig {
            tracking: false,
            ..config
        },
        20_000,
    );
    let output = run_ok("trail-track", &[], &stream(&header, &untracked));
    let rebuilt = events(&output);
    assert_eq!(rebuilt.len(), tracked.len());
    // Journeys as sets of event timestamps (unique in a synthetic stream), on both sides.
    let journeys = |events: &[Event]| -> HashSet<Vec<u64>> {
        let mut by_id: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
        for event in events {
            by_id
                .entry(journey_id(event))
                .or_default()
                .push(timestamp(event));
        }
        by_id
            .into_values()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect()
    };
    let expected = journeys(&tracked);
    let found = journeys(&rebuilt);
    assert_eq!(found.len(), expected.len());
    assert_eq!(found, expected);
}
