//! Microbenchmarks of the stream codec (`cargo bench --bench codec`): reading and writing frames,
//! indexing a record with `RawMap`, splicing one section, and decoding/encoding typed events.
//!
//! Inputs are synthetic events (`trail::model::synth`, seed 1, 256-byte snaplen), built once. Each
//! benchmark processes a whole batch per iteration and reports items (events) and bytes per
//! second, so the numbers compare directly with the per-stage rates of `bench/run.sh`.

use std::sync::OnceLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use trail::model::codec::{self, Frame, FrameKind, RawMap, Reader, Writer};
use trail::model::event::Event;

/// Events per batch: enough to leave caches warm but not trivially so (about 700 KB).
const BATCH: usize = 1000;

fn main() {
    divan::main();
}

struct Corpus {
    events: Vec<Event>,
    payloads: Vec<Vec<u8>>,
    stream: Vec<u8>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let synth = trail::model::synth::Synth::new(trail::model::synth::SynthConfig::default());
        let header = synth.header();
        let events: Vec<Event> = synth.take(BATCH).collect();
        let payloads = events
            .iter()
            .map(|event| {
                let mut out = Vec::new();
                codec::encode(event, &mut out);
                out
            })
            .collect();
        let mut writer = Writer::new(Vec::new());
        writer.write_header(&header).expect("header");
        for event in &events {
            writer.write_event(event).expect("event");
        }
        let stream = writer.into_inner().expect("flush");
        Corpus {
            events,
            payloads,
            stream,
        }
    })
}

fn payload_bytes() -> usize {
    corpus().payloads.iter().map(Vec::len).sum()
}

/// Reading every frame of an in-memory stream (framing and bounds checks, one payload copy).
#[divan::bench]
fn frame_read(bencher: Bencher) {
    let stream = &corpus().stream;
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(stream.len()))
        .bench(|| {
            let mut reader = Reader::new(stream.as_slice(), "bench");
            let mut frame = Frame::default();
            let mut events = 0;
            while reader.next_frame(&mut frame).expect("frame") {
                events += usize::from(frame.kind == FrameKind::Event);
            }
            assert_eq!(events, BATCH);
        });
}

/// Writing already-encoded payloads as frames into a reused buffer.
#[divan::bench]
fn frame_write(bencher: Bencher) {
    let payloads = &corpus().payloads;
    let mut writer = Writer::new(Vec::with_capacity(2 * payload_bytes()));
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(payload_bytes()))
        .bench_local(|| {
            for payload in payloads {
                writer
                    .write_frame(FrameKind::Event, payload)
                    .expect("write");
            }
            writer.flush().expect("flush");
        });
}

/// Indexing an event's top-level map without decoding the sections.
#[divan::bench]
fn rawmap_parse(bencher: Bencher) {
    let payloads = &corpus().payloads;
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(payload_bytes()))
        .bench(|| {
            for payload in payloads {
                black_box(RawMap::parse(payload).expect("map"));
            }
        });
}

/// Replacing one section (`tracking`), as trail-track and trail-sort do for every event.
#[divan::bench]
fn rawmap_with_entry(bencher: Bencher) {
    let payloads = &corpus().payloads;
    let mut tracking = Vec::new();
    codec::encode(&corpus().events[0].tracking, &mut tracking);
    let mut out = Vec::with_capacity(4096);
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(payload_bytes()))
        .bench_local(|| {
            for payload in payloads {
                let map = RawMap::parse(payload).expect("map");
                out.clear();
                map.with_entry(payload, "tracking", &tracking, &mut out);
                black_box(&out);
            }
        });
}

/// Decoding payloads into typed events (rmp-serde, every section, owned strings and bytes).
#[divan::bench]
fn event_decode(bencher: Bencher) {
    let payloads = &corpus().payloads;
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(payload_bytes()))
        .bench(|| {
            for payload in payloads {
                let event: Event = rmp_serde::from_slice(payload).expect("decode");
                black_box(event);
            }
        });
}

/// Encoding typed events as named MessagePack maps into a reused buffer.
#[divan::bench]
fn event_encode(bencher: Bencher) {
    let events = &corpus().events;
    let mut out = Vec::with_capacity(4096);
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(payload_bytes()))
        .bench_local(|| {
            for event in events {
                codec::encode(event, &mut out);
                black_box(&out);
            }
        });
}
