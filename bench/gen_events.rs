//! Synthetic trail stream for benchmarks: `gen-events N [OFFSET_NS] > events.trail`.
//!
//! Events look like a capture's: common, probe, packet (a 98-byte UDP frame, every fourth one
//! starting at L3), skb, dev, netns and tracking; journeys of three probes each.

use std::io::{self, Write};

use trail::codec::Writer;
use trail::event::{
    linktype, Bytes, Clock, Common, Dev, Event, Header, Layer, Netns, Packet, Probe, ProbeKind,
    Skb, Tracking, FORMAT_MAJOR, FORMAT_MINOR,
};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let offset: i64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_700_000_000_000_000_000);
    let mut out = Writer::new(io::stdout().lock());
    out.write_header(&Header {
        version: (FORMAT_MAJOR, FORMAT_MINOR),
        tool: "gen-events".into(),
        host: "bench".into(),
        clock: Clock {
            source: "monotonic".into(),
            realtime_offset_ns: offset,
        },
        probes: vec!["tp:net:*".into()],
        snaplen: 256,
        ..Header::default()
    })?;
    let probes = [
        "net:netif_receive_skb",
        "net:net_dev_start_xmit",
        "skb:consume_skb",
    ];
    let mut frame = vec![
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
        0x30, 0x39, 0, 53, 0, 64, 0, 0, // UDP
    ];
    frame.resize(98, 0x61);
    let mut event = Event {
        common: Some(Common {
            cpu: 1,
            pid: 4242,
            tid: 4242,
            comm: "bench".into(),
            ..Common::default()
        }),
        probe: Some(Probe::default()),
        skb: Some(Skb {
            len: 84,
            protocol: 0x0800,
            users: 1,
            dataref: 1,
            ..Skb::default()
        }),
        dev: Some(Dev {
            ifindex: 2,
            name: "eth0".into(),
            rx_ifindex: None,
        }),
        netns: Some(Netns {
            inum: 4026531840,
            cookie: Some(1),
        }),
        ..Event::default()
    };
    for i in 0..count {
        let journey = i / 3;
        let ts = 1_000_000 + i * 1_000;
        let l3 = journey % 4 == 3;
        event.common.as_mut().expect("common").timestamp = ts;
        event.probe = Some(Probe {
            kind: ProbeKind::Tracepoint,
            name: probes[(i % 3) as usize].into(),
        });
        // One destination address per journey, so packets differ.
        frame[30..34].copy_from_slice(&(journey as u32).to_be_bytes());
        let data = if l3 { &frame[14..] } else { &frame[..] };
        event.packet = Some(Packet {
            data: Bytes(data.to_vec()),
            len: data.len() as u32,
            layer: if l3 { Layer::L3 } else { Layer::L2 },
            linktype: if l3 {
                linktype::RAW
            } else {
                linktype::ETHERNET
            },
        });
        let skb = event.skb.as_mut().expect("skb");
        skb.addr = 0xffff_8880_0000_0000 + journey * 256;
        skb.head = 0xffff_8880_1000_0000 + journey * 2048;
        event.tracking = Some(Tracking {
            first_seen: 1_000_000 + journey * 3_000,
            orig_head: skb.head,
            source: "kernel".into(),
            ..Tracking::default()
        });
        out.write_event(&event)?;
    }
    out.into_inner()?.flush()
}
