//! Deterministic synthetic streams for benchmarks and tests: realistic mixes of probes, packet
//! sizes, journeys, drops and conntrack, the same for the same seed.
//!
//! Shape of what [`Synth`] produces: journeys of 5–20 events (a packet seen by successive
//! probes), several journeys in flight at once and interleaved, timestamps increasing; packets are
//! real Ethernet/IPv4 UDP or TCP frames of 60–1500 bytes (captured up to `snaplen`), so dissection
//! and pcap filters see meaningful traffic; about 3% of journeys end in a drop (`skb:kfree_skb`
//! with a reason), the others in `skb:consume_skb`; about half carry a conntrack section. Packet
//! buffers (`skb->head`) come from a pool of [`SynthConfig::buffers`] and are reused once a journey
//! has ended, as the kernel's are. With [`SynthConfig::tracking`] off, events carry no `tracking`
//! section (input for trail-track); [`SynthConfig::disorder`] swaps neighbouring events now and
//! then, as two CPUs publishing into one ring do.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::model::event::*;

/// Probes a synthetic journey walks through, in order (a transmit path, veth, a receive path).
const PATH: &[&str] = &[
    "net:net_dev_queue",
    "net:net_dev_start_xmit",
    "net:net_dev_xmit",
    "net:netif_rx",
    "net:netif_receive_skb",
    "skb:skb_copy_datagram_iovec",
];

const DROP_REASONS: &[(&str, u32)] = &[("NETFILTER_DROP", 9), ("NO_SOCKET", 3), ("TCP_CSUM", 5)];

/// Parameters of a synthetic stream.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub seed: u64,
    /// Journeys in flight at once (interleaving depth).
    pub concurrent: usize,
    /// Captured bytes per packet at most.
    pub snaplen: usize,
    /// Whether events carry the kernel-style `tracking` section.
    pub tracking: bool,
    /// Distinct packet buffers (`skb->head` values), reused round-robin.
    pub buffers: u64,
    /// Probability that an event is published after the one that follows it.
    pub disorder: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            concurrent: 8,
            snaplen: 256,
            tracking: true,
            buffers: 4096,
            disorder: 0.0,
        }
    }
}

struct Journey {
    tracking: Tracking,
    skb: u64,
    packet: Packet,
    remaining: usize,
    step: usize,
    drop: Option<(&'static str, u32)>,
    ct: Option<Conntrack>,
    netns: u32,
}

/// An endless iterator of events.
pub struct Synth {
    rng: SmallRng,
    config: SynthConfig,
    now: u64,
    live: Vec<Journey>,
    journeys: u64,
    /// An event held back by `disorder`, published after the next one.
    held: Option<Event>,
}

impl Synth {
    pub fn new(config: SynthConfig) -> Synth {
        Synth {
            rng: SmallRng::seed_from_u64(config.seed),
            config,
            now: 1_000_000_000,
            live: Vec::new(),
            journeys: 0,
            held: None,
        }
    }

    /// The header a synthetic section starts with.
    pub fn header(&self) -> Header {
        Header {
            version: (FORMAT_MAJOR, FORMAT_MINOR),
            tool: "trail-synth".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            host: "synth".into(),
            kernel: "6.18.0-synth".into(),
            clock: Clock {
                source: "monotonic".into(),
                realtime_offset_ns: 1_795_000_000_000_000_000,
            },
            command: vec!["trail-synth".into()],
            probes: PATH
                .iter()
                .chain(&["skb:kfree_skb", "skb:consume_skb"])
                .map(|p| format!("tp:{p}"))
                .collect(),
            snaplen: self.config.snaplen as u32,
            started_ns: 0,
            pipeline: vec![],
        }
    }

    fn new_journey(&mut self) -> Journey {
        let rng = &mut self.rng;
        let size = rng.random_range(60..=1500usize);
        let src = [192, 0, 2, rng.random_range(1..=254u8)];
        let dst = [198, 51, 100, rng.random_range(1..=254u8)];
        let sport = rng.random_range(1024..=65535u16);
        let dport = *[53u16, 80, 443, 8080, 5201]
            .get(rng.random_range(0..5usize))
            .unwrap_or(&53);
        let tcp = rng.random_bool(0.5);
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64);
        let mut frame = Vec::with_capacity(size);
        let payload_len = size.saturating_sub(if tcp { 54 } else { 42 });
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| (i as u8).wrapping_add(self.now as u8))
            .collect();
        let written = if tcp {
            builder
                .tcp(sport, dport, rng.random(), 65535)
                .ack(rng.random())
                .psh()
                .write(&mut frame, &payload)
        } else {
            builder.udp(sport, dport).write(&mut frame, &payload)
        };
        // Writing into a Vec cannot fail; an impossible size would only leave the frame empty.
        let _ = written;
        let len = frame.len() as u32;
        frame.truncate(self.config.snaplen);
        // Round robin over the pool, skipping buffers of live journeys (a buffer is only reused
        // once its journey has ended, unless there are fewer buffers than live journeys).
        let buffers = self.config.buffers.max(1);
        let mut head = 0;
        for _ in 0..buffers {
            head = 0xffff_8880_0000_0000 + (self.journeys % buffers) * 0x1000;
            self.journeys += 1;
            if !self.live.iter().any(|j| j.tracking.orig_head == head) {
                break;
            }
        }
        let proto = if tcp { 6 } else { 17 };
        let ct = rng.random_bool(0.5).then(|| Conntrack {
            state: if rng.random_bool(0.3) {
                "new"
            } else {
                "established"
            }
            .into(),
            status: 0x188,
            zone: 0,
            mark: 0,
            labels: None,
            orig: CtTuple {
                src: format!("{}.{}.{}.{}", src[0], src[1], src[2], src[3]),
                dst: format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3]),
                proto,
                sport: Some(sport),
                dport: Some(dport),
                ..CtTuple::default()
            },
            reply: CtTuple {
                src: format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3]),
                dst: format!("{}.{}.{}.{}", src[0], src[1], src[2], src[3]),
                proto,
                sport: Some(dport),
                dport: Some(sport),
                ..CtTuple::default()
            },
            proto_state: None,
        });
        Journey {
            tracking: Tracking {
                first_seen: self.now,
                orig_head: head,
                source: "kernel".into(),
                ..Tracking::default()
            },
            skb: head + 0x800,
            packet: Packet {
                data: Bytes(frame),
                len,
                layer: Layer::L2,
                linktype: linktype::ETHERNET,
            },
            remaining: rng.random_range(5..=20usize),
            step: 0,
            drop: rng
                .random_bool(0.03)
                .then(|| DROP_REASONS[rng.random_range(0..DROP_REASONS.len())]),
            ct,
            netns: 4_026_531_840 + rng.random_range(0..4u32),
        }
    }
}

impl Iterator for Synth {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if let Some(held) = self.held.take() {
            return Some(held);
        }
        let event = self.next_in_order();
        if self.config.disorder > 0.0 && self.rng.random_bool(self.config.disorder.min(1.0)) {
            self.held = Some(event);
            return Some(self.next_in_order());
        }
        Some(event)
    }
}

impl Synth {
    fn next_in_order(&mut self) -> Event {
        while self.live.len() < self.config.concurrent {
            let journey = self.new_journey();
            self.live.push(journey);
        }
        self.now += self.rng.random_range(100..5_000u64);
        let pick = self.rng.random_range(0..self.live.len());
        let cpu = (pick % 2) as u32;
        let journey = &mut self.live[pick];
        journey.remaining -= 1;
        let last = journey.remaining == 0;
        let dropped = last && journey.drop.is_some();
        let probe = if dropped {
            "skb:kfree_skb"
        } else if last {
            "skb:consume_skb"
        } else {
            PATH[journey.step % PATH.len()]
        };
        journey.step += 1;
        let event = Event {
            common: Some(Common {
                timestamp: self.now,
                cpu,
                pid: 1000 + cpu,
                tid: 1000 + cpu,
                comm: "synth".into(),
                host: None,
            }),
            probe: Some(Probe {
                kind: ProbeKind::Tracepoint,
                name: probe.into(),
            }),
            packet: Some(journey.packet.clone()),
            skb: Some(Skb {
                addr: journey.skb,
                head: journey.tracking.orig_head,
                len: journey.packet.len,
                protocol: 0x0800,
                users: 1,
                dataref: 1,
                ..Skb::default()
            }),
            dev: Some(Dev {
                ifindex: 2 + (journey.step as u32 / 3),
                name: format!("veth{}", journey.step / 3),
                rx_ifindex: None,
            }),
            netns: Some(Netns {
                inum: journey.netns,
                cookie: None,
            }),
            drop: journey.drop.filter(|_| dropped).map(|(reason, code)| Drop {
                reason: reason.into(),
                code,
                subsystem: Some("CORE".into()),
            }),
            tracking: self.config.tracking.then(|| journey.tracking.clone()),
            ct: journey.ct.clone(),
            ..Event::default()
        };
        if last {
            self.live.swap_remove(pick);
        }
        event
    }
}
