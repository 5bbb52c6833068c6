//! Microbenchmarks of the per-event hot paths besides the codec (`cargo bench --bench
//! hot_paths`): packet dissection (trail-print, trail-track, trail-to-parquet) and filter
//! evaluation on raw payloads (trail-filter), with a field predicate and with `pcap()`.
//!
//! Inputs are synthetic events (`trail::model::synth`, seed 1, 256-byte snaplen), built once; every
//! benchmark processes the whole batch per iteration and reports events per second.

use std::sync::OnceLock;

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use trail::filter::{Matcher, SectionContext};
use trail::model::codec;
use trail::model::event::{Event, Packet};

const BATCH: usize = 1000;

fn main() {
    divan::main();
}

fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        trail::model::synth::Synth::new(trail::model::synth::SynthConfig::default())
            .take(BATCH)
            .collect()
    })
}

fn payloads() -> &'static [Vec<u8>] {
    static PAYLOADS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PAYLOADS.get_or_init(|| {
        events()
            .iter()
            .map(|event| {
                let mut out = Vec::new();
                codec::encode(event, &mut out);
                out
            })
            .collect()
    })
}

/// Ethernet/IPv4/TCP-or-UDP dissection of each event's captured bytes.
#[divan::bench]
fn dissect(bencher: Bencher) {
    let packets: Vec<&Packet> = events().iter().filter_map(|e| e.packet.as_ref()).collect();
    bencher.counter(ItemsCount::new(packets.len())).bench(|| {
        for packet in &packets {
            black_box(trail::model::dissect::dissect(packet));
        }
    });
}

/// Filter expressions as trail-filter evaluates them: locate the sections, then match.
#[divan::bench(args = [
    r#"drop.reason == "NETFILTER_DROP""#,
    r#"dev.name == "veth0" and ct.state == "new""#,
    r#"probe ~ "tp:skb:*""#,
    r#"pcap("tcp port 443")"#,
])]
fn filter_eval(bencher: Bencher, expression: &str) {
    let parsed = trail::filter::parse(expression).expect("expression");
    let mut matcher = Matcher::new(&parsed.expr, &[]).expect("compile");
    let payloads = payloads();
    bencher
        .counter(ItemsCount::new(payloads.len()))
        .bench_local(|| {
            let mut selected = 0usize;
            for payload in payloads {
                matcher.locate(payload).expect("locate");
                selected += usize::from(
                    matcher
                        .matches(payload, SectionContext::default())
                        .expect("match"),
                );
            }
            black_box(selected)
        });
}
