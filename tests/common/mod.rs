//! Shared test helpers: run the real binaries, build streams, decode what comes out.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use trail::model::codec::{self, Frame, FrameKind, Reader, Writer};
use trail::model::event::{Clock, Common, Event, Header, Layer, Packet, Probe, ProbeKind, Stage};

/// Path of one of the package's binaries, as built for this test run.
pub fn bin(name: &str) -> PathBuf {
    // Binaries sit next to the test executable's parent directory (target/<profile>/).
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Runs a tool with `args`, feeding `stdin` from a thread (no pipe deadlock on large inputs).
pub fn run(name: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The tool may exit before reading everything (errors, --limit): ignore EPIPE here.
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("wait for tool");
    feeder.join().expect("stdin feeder thread");
    output
}

/// Like [`run`], and asserts success; returns stdout.
pub fn run_ok(name: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = run(name, args, stdin);
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A header as a test producer would write it.
pub fn header(tool: &str, host: &str, offset_ns: i64) -> Header {
    Header {
        version: (
            trail::model::event::FORMAT_MAJOR,
            trail::model::event::FORMAT_MINOR,
        ),
        tool: tool.into(),
        tool_version: "test".into(),
        host: host.into(),
        kernel: "6.18.0-test".into(),
        clock: Clock {
            source: "monotonic".into(),
            realtime_offset_ns: offset_ns,
        },
        command: vec![tool.into()],
        probes: vec!["tp:net:netif_receive_skb".into()],
        snaplen: 256,
        started_ns: 0,
        pipeline: vec![Stage {
            tool: tool.into(),
            version: "test".into(),
            args: vec![],
        }],
    }
}

/// An event with common, probe and (optionally) packet sections.
pub fn event(ts: u64, probe: &str, data: Option<&[u8]>) -> Event {
    Event {
        common: Some(Common {
            timestamp: ts,
            cpu: 1,
            pid: 42,
            tid: 42,
            comm: "test".into(),
            host: None,
        }),
        probe: Some(Probe {
            kind: ProbeKind::Tracepoint,
            name: probe.into(),
        }),
        packet: data.map(|d| Packet {
            data: trail::model::event::Bytes(d.to_vec()),
            len: d.len() as u32,
            layer: Layer::L2,
            linktype: trail::model::event::linktype::ETHERNET,
        }),
        ..Event::default()
    }
}

/// Encodes one section: `header` then `events`.
pub fn stream(header: &Header, events: &[Event]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    writer.write_header(header).expect("encode header");
    for e in events {
        writer.write_event(e).expect("encode event");
    }
    writer.into_inner().expect("flush")
}

/// Decodes a whole stream into frames; panics on any error.
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut reader = Reader::new(bytes, "test");
    let mut out = Vec::new();
    let mut frame = Frame::default();
    while reader.next_frame(&mut frame).expect("valid stream") {
        out.push(frame.clone());
    }
    out
}

/// The typed events of a stream, in order.
pub fn events(bytes: &[u8]) -> Vec<Event> {
    frames(bytes)
        .iter()
        .filter(|f| f.kind == FrameKind::Event)
        .map(|f| codec::decode(f, "test").expect("event decodes"))
        .collect()
}
