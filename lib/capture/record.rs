//! Raw ring-buffer records → owned [`Event`]s. The only place that knows the kernel-side layout
//! (`bpf/include/capture.h`, through the skeleton's generated `types`).
//!
//! Contract: [`Decoder::event`] never panics on a record: a record shorter than its header or
//! than the lengths it announces is an error, not a crash.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::bail;

use super::bpf::types::{trail_ct_tuple, trail_event, trail_event_flag as Flag};
use super::kernel::Kallsyms;
use super::probe::Probe;
use crate::model::event::{
    linktype, Bytes, Common, Conntrack, CtTuple, Dev, Drop, Event, Layer, Netns, Packet,
    Probe as ProbeSection, Skb, Stack, StackFrame, Tracking,
};

// Flag bits of `trail_event.flags` (capture.h `enum trail_event_flag`).
const F_L3: u32 = Flag::TRAIL_F_L3.0;
const F_DEV: u32 = Flag::TRAIL_F_DEV.0;
const F_NETNS: u32 = Flag::TRAIL_F_NETNS.0;
const F_NETNS_COOKIE: u32 = Flag::TRAIL_F_NETNS_COOKIE.0;
const F_DROP: u32 = Flag::TRAIL_F_DROP.0;
const F_CT: u32 = Flag::TRAIL_F_CT.0;
const F_VLAN: u32 = Flag::TRAIL_F_VLAN.0;
const F_PACKET: u32 = Flag::TRAIL_F_PACKET.0;
const F_TRACKING: u32 = Flag::TRAIL_F_TRACKING.0;
const F_SKB: u32 = Flag::TRAIL_F_SKB.0;
const F_UNTRACKED: u32 = Flag::TRAIL_F_UNTRACKED.0;
const F_RETVAL: u32 = Flag::TRAIL_F_RETVAL.0;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

// SAFETY: trail_event and trail_ct_tuple are repr(C) structs of integers and byte arrays, valid
// for every bit pattern.
unsafe impl plain::Plain for trail_event {}
// SAFETY: as above.
unsafe impl plain::Plain for trail_ct_tuple {}
// SAFETY: two u64 counters, valid for any bits.
unsafe impl plain::Plain for super::bpf::types::trail_probe_stats {}

/// Everything needed to turn records into events: probe names, BTF enum names, symbols.
pub struct Decoder {
    /// Probe sections by probe id.
    probes: Vec<ProbeSection>,
    /// Return type (bytes, signed) by probe id, for kretprobe/fexit return values.
    returns: Vec<(u8, bool)>,
    drop_reasons: BTreeMap<u64, String>,
    drop_subsystems: BTreeMap<u64, String>,
    tcp_states: BTreeMap<u64, String>,
    kallsyms: Option<Kallsyms>,
}

impl Decoder {
    pub fn new(
        probes: &[Probe],
        drop_reasons: BTreeMap<u64, String>,
        drop_subsystems: BTreeMap<u64, String>,
        tcp_states: BTreeMap<u64, String>,
        kallsyms: Option<Kallsyms>,
    ) -> Decoder {
        Decoder {
            probes: probes
                .iter()
                .map(|p| ProbeSection {
                    kind: p.kind,
                    name: p.name(),
                })
                .collect(),
            returns: probes
                .iter()
                .map(|p| match &p.target {
                    super::probe::Target::Function(f) => f.ret,
                    super::probe::Target::Tracepoint(_) => (8, true),
                })
                .collect(),
            drop_reasons,
            drop_subsystems,
            tcp_states,
            kallsyms,
        }
    }

    /// The probe id of a raw record, without decoding the rest.
    pub fn probe_id(record: &[u8]) -> Option<u32> {
        let mut raw = trail_event::default();
        plain::copy_from_bytes(&mut raw, record).ok()?;
        Some(raw.probe_id)
    }

    /// Converts one raw record into an event.
    pub fn event(&self, record: &[u8]) -> anyhow::Result<Event> {
        let mut raw = trail_event::default();
        if plain::copy_from_bytes(&mut raw, record).is_err() {
            bail!(
                "ring-buffer record of {} bytes is shorter than its header",
                record.len()
            );
        }
        let rest = &record[std::mem::size_of::<trail_event>()..];
        let caplen = raw.caplen as usize;
        let stack_len = raw.stack_bytes as usize;
        if rest.len() < caplen + stack_len {
            bail!(
                "ring-buffer record truncated ({} bytes after the header, {} announced)",
                rest.len(),
                caplen + stack_len
            );
        }
        let (data, stack) = rest.split_at(caplen);
        let flags = raw.flags;
        let Some(probe) = self.probes.get(raw.probe_id as usize) else {
            bail!("ring-buffer record from unknown probe id {}", raw.probe_id);
        };
        let mut event = Event {
            common: Some(Common {
                timestamp: raw.timestamp,
                cpu: raw.cpu,
                pid: raw.pid,
                tid: raw.tid,
                comm: c_string(&raw.comm),
                host: None,
            }),
            probe: Some(probe.clone()),
            ..Event::default()
        };
        if flags & F_PACKET != 0 {
            let l3 = flags & F_L3 != 0;
            event.packet = Some(Packet {
                data: Bytes(data.to_vec()),
                len: raw.pkt_len.max(caplen as u32),
                layer: if l3 { Layer::L3 } else { Layer::L2 },
                linktype: if l3 {
                    linktype::RAW
                } else {
                    linktype::ETHERNET
                },
            });
        }
        if flags & F_SKB != 0 {
            let vlan = flags & F_VLAN != 0;
            event.skb = Some(Skb {
                addr: raw.skb_addr,
                head: raw.head,
                len: raw.len,
                data_len: raw.data_len,
                mark: raw.mark,
                hash: raw.hash,
                protocol: raw.protocol,
                pkt_type: raw.pkt_type,
                priority: raw.priority,
                ip_summed: raw.ip_summed,
                cloned: raw.cloned != 0,
                users: raw.users,
                dataref: raw.dataref & 0xffff,
                gso_size: raw.gso_size,
                gso_segs: raw.gso_segs,
                gso_type: raw.gso_type,
                vlan_tci: vlan.then_some(raw.vlan_tci),
                vlan_proto: vlan.then_some(raw.vlan_proto),
            });
        }
        if flags & F_DEV != 0 {
            event.dev = Some(Dev {
                ifindex: raw.ifindex,
                name: c_string(&raw.ifname),
                rx_ifindex: (raw.skb_iif != 0 && raw.skb_iif != raw.ifindex).then_some(raw.skb_iif),
            });
        }
        if flags & F_NETNS != 0 {
            event.netns = Some(Netns {
                inum: raw.netns_inum,
                cookie: (flags & F_NETNS_COOKIE != 0).then_some(raw.netns_cookie),
            });
        }
        if flags & F_DROP != 0 {
            event.drop = Some(self.drop(raw.drop_reason));
        }
        if flags & F_TRACKING != 0 {
            event.tracking = Some(Tracking {
                first_seen: raw.track_first_seen,
                orig_head: raw.track_orig_head,
                source: "kernel".into(),
                ..Tracking::default()
            });
        }
        if flags & F_RETVAL != 0 {
            let ret = self
                .returns
                .get(raw.probe_id as usize)
                .copied()
                .unwrap_or((8, true));
            event.retval = Some(return_value(raw.retval, ret));
        }
        if flags & F_CT != 0 {
            event.ct = Some(self.conntrack(&raw));
        } else if flags & F_UNTRACKED != 0 {
            event.ct = Some(Conntrack {
                state: "untracked".into(),
                ..Conntrack::default()
            });
        }
        if stack_len > 0 {
            let frames: Vec<StackFrame> = stack
                .chunks_exact(8)
                .map(|chunk| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    let addr = u64::from_ne_bytes(word);
                    StackFrame {
                        addr,
                        symbol: self.kallsyms.as_ref().and_then(|k| k.symbolize(addr)),
                    }
                })
                .collect();
            // The innermost frames are the probe program and the tracepoint, kprobe or
            // trampoline machinery: start at the function that hit the probe.
            let skip = frames
                .iter()
                .take_while(|f| match &f.symbol {
                    None => true,
                    Some(s) => {
                        s.starts_with("bpf_trace_run")
                            || s.starts_with("__bpf_trace_")
                            || s.starts_with("kprobe_")
                            || s.starts_with("trace_call_bpf")
                            || s.starts_with("kprobe_multi_link")
                            || s.starts_with("fprobe_")
                            || s.starts_with("__bpf_prog_enter")
                            || s.starts_with("__bpf_prog_exit")
                            || s.starts_with("rethook_")
                            || s.starts_with("arch_rethook")
                            || s.starts_with("ftrace_")
                    }
                })
                .count();
            let frames = if skip < frames.len() {
                frames[skip..].to_vec()
            } else {
                frames
            };
            event.stack = Some(Stack { frames });
        }
        Ok(event)
    }

    fn drop(&self, code: u32) -> Drop {
        let subsystem = u64::from(code >> 16);
        let reason = match self.drop_reasons.get(&u64::from(code)) {
            Some(name) => name.clone(),
            None if subsystem != 0 => format!("{:#x}", code & 0xffff),
            None => format!("{code}"),
        };
        Drop {
            reason,
            code,
            subsystem: Some(
                self.drop_subsystems
                    .get(&subsystem)
                    .cloned()
                    // Kernels before 6.9 have no subsystem enum: every reason is a core one.
                    .or_else(|| {
                        (subsystem == 0 && self.drop_subsystems.is_empty()).then(|| "CORE".into())
                    })
                    .unwrap_or_else(|| subsystem.to_string()),
            ),
        }
    }

    fn conntrack(&self, raw: &trail_event) -> Conntrack {
        let state = match raw.ct_info {
            0 => "established",
            1 => "related",
            2 => "new",
            3 => "reply",
            4 => "related-reply",
            7 => "untracked",
            _ => "unknown",
        };
        let proto_state = (raw.ct_orig.proto == 6).then(|| {
            self.tcp_states
                .get(&u64::from(raw.ct_proto_state))
                .cloned()
                .unwrap_or_else(|| raw.ct_proto_state.to_string())
        });
        Conntrack {
            state: state.into(),
            status: raw.ct_status,
            zone: raw.ct_zone,
            mark: raw.ct_mark,
            labels: None,
            orig: tuple(&raw.ct_orig),
            reply: tuple(&raw.ct_reply),
            proto_state,
        }
    }
}

/// The 64-bit return register read as the function's C return type.
pub fn return_value(register: i64, (bytes, signed): (u8, bool)) -> i64 {
    let bits = u32::from(bytes) * 8;
    if bits == 0 || bits >= 64 {
        return register;
    }
    let shift = 64 - bits;
    if signed {
        (register << shift) >> shift
    } else {
        ((register as u64) << shift >> shift) as i64
    }
}

fn address(family: u16, bytes: &[u8; 16]) -> String {
    match family {
        AF_INET => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        AF_INET6 => Ipv6Addr::from(*bytes).to_string(),
        _ => String::new(),
    }
}

fn tuple(raw: &trail_ct_tuple) -> CtTuple {
    let mut out = CtTuple {
        src: address(raw.l3num, &raw.src),
        dst: address(raw.l3num, &raw.dst),
        proto: raw.proto,
        ..CtTuple::default()
    };
    match raw.proto {
        // TCP, UDP, DCCP, UDP-Lite, SCTP: ports.
        6 | 17 | 33 | 132 | 136 => {
            out.sport = Some(u16::from_be_bytes(raw.src_u));
            out.dport = Some(u16::from_be_bytes(raw.dst_u));
        }
        1 | 58 => {
            out.icmp_id = Some(u16::from_be_bytes(raw.src_u));
            out.icmp_type = Some(raw.dst_u[0]);
            out.icmp_code = Some(raw.dst_u[1]);
        }
        _ => {}
    }
    out
}

fn c_string(raw: &[i8]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::probe::{Target, Tracepoint};
    use crate::model::event::ProbeKind;

    fn decoder() -> Decoder {
        let probe = Probe {
            id: 0,
            kind: ProbeKind::Tracepoint,
            target: Target::Tracepoint(Tracepoint {
                group: "skb".into(),
                name: "kfree_skb".into(),
                args: 4,
                skb: Some(0),
                drop_reason: Some(2),
            }),
            stack: false,
            track_end: 0,
            optional: false,
        };
        let reasons = BTreeMap::from([(77, "NETFILTER_DROP".to_string())]);
        let subsystems = BTreeMap::from([(0, "CORE".to_string())]);
        let tcp = BTreeMap::from([(1, "SYN_SENT".to_string())]);
        Decoder::new(&[probe], reasons, subsystems, tcp, None)
    }

    fn record(raw: &trail_event, tail: &[u8]) -> Vec<u8> {
        // SAFETY: trail_event is plain data without padding holes the reader would misread.
        let mut bytes = unsafe { plain::as_bytes(raw) }.to_vec();
        bytes.extend_from_slice(tail);
        bytes
    }

    #[test]
    fn raw_record_to_event() {
        let mut raw = trail_event {
            timestamp: 42,
            probe_id: 0,
            flags: F_PACKET | F_L3 | F_DROP | F_CT | F_TRACKING | F_DEV,
            drop_reason: 77,
            pkt_len: 100,
            caplen: 4,
            ifindex: 3,
            skb_iif: 3,
            track_first_seen: 7,
            track_orig_head: 0xffff,
            ct_info: 2,
            ..trail_event::default()
        };
        raw.comm[..4].copy_from_slice(&[b'p' as i8, b'i' as i8, b'n' as i8, b'g' as i8]);
        raw.ifname[..2].copy_from_slice(&[b'v' as i8, b'a' as i8]);
        raw.ct_orig = trail_ct_tuple {
            src: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            src_u: 40000u16.to_be_bytes(),
            dst_u: 7777u16.to_be_bytes(),
            l3num: AF_INET,
            proto: 17,
            pad: [0; 3],
        };
        let event = decoder().event(&record(&raw, &[0x45, 0, 0, 100])).unwrap();
        let common = event.common.unwrap();
        assert_eq!((common.timestamp, common.comm.as_str()), (42, "ping"));
        assert_eq!(event.probe.unwrap().name, "skb:kfree_skb");
        let packet = event.packet.unwrap();
        assert_eq!(
            (packet.data.0, packet.len, packet.layer, packet.linktype),
            (vec![0x45, 0, 0, 100], 100, Layer::L3, 101)
        );
        let drop = event.drop.unwrap();
        assert_eq!(
            (drop.reason.as_str(), drop.subsystem.as_deref()),
            ("NETFILTER_DROP", Some("CORE"))
        );
        let dev = event.dev.unwrap();
        assert_eq!(
            (dev.ifindex, dev.name.as_str(), dev.rx_ifindex),
            (3, "va", None)
        );
        assert_eq!(event.tracking.unwrap().id(), "7-ffff");
        let ct = event.ct.unwrap();
        assert_eq!(
            (
                ct.state.as_str(),
                ct.orig.src.as_str(),
                ct.orig.sport,
                ct.orig.dport
            ),
            ("new", "192.0.2.1", Some(40000), Some(7777))
        );
        assert!(event.skb.is_none() && event.netns.is_none() && event.stack.is_none());
    }

    #[test]
    fn return_values_take_the_function_type() {
        assert_eq!(return_value(0xffff_ffff, (4, true)), -1);
        assert_eq!(return_value(0xffff_ffff, (4, false)), 0xffff_ffff);
        assert_eq!(return_value(0x1_0000_0001, (4, true)), 1);
        assert_eq!(return_value(0x101, (1, false)), 1);
        assert_eq!(return_value(-5, (8, true)), -5);
        assert_eq!(return_value(7, (0, false)), 7);
    }

    #[test]
    fn short_records_are_errors() {
        let d = decoder();
        assert!(d.event(&[0u8; 10]).is_err());
        let raw = trail_event {
            flags: F_PACKET,
            caplen: 100,
            ..trail_event::default()
        };
        assert!(
            d.event(&record(&raw, &[0; 10])).is_err(),
            "announces more bytes than it has"
        );
        let unknown = trail_event {
            probe_id: 9,
            ..trail_event::default()
        };
        assert!(d.event(&record(&unknown, &[])).is_err());
    }
}
