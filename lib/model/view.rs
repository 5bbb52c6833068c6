//! A borrowed view of an event, read straight from its MessagePack payload: what stages that only
//! look at events (trail-print) use instead of decoding the owned [`Event`].
//!
//! Why: decoding an owned `Event` through rmp-serde allocates every string and byte field and
//! checks every map key as UTF-8; for `trail-print` that was half of its time (bench/results.md).
//! [`EventView::parse`] walks the payload once with a cursor over marker bytes, matches keys as
//! bytes and borrows strings and packet bytes from the payload.
//!
//! Contract: a view means exactly what the owned event means, and there is one decoder of record,
//! serde's. `parse` takes the canonical encoding (what `codec::encode` writes: named maps with the
//! known keys, each once, strings, `bin`, integers, nil for absent options) and returns `None` for
//! anything else: an unknown key or section, a repeated key, any other encoding serde might
//! accept, or corruption. The caller then decodes the owned `Event` with serde (whose rules
//! decide, and whose errors are reported) and views it with [`EventView::from`]. Whenever `parse`
//! returns a view, it equals the view of serde's decode; `tests/print.rs` checks this on random
//! and mutated payloads. Sections made of numbers only (`skb`, `netns`) reuse the owned types.

use crate::model::event::{Event, Layer, Netns, ProbeKind, Skb};
use crate::model::msgpack;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventView<'a> {
    pub common: Option<CommonView<'a>>,
    pub probe: Option<ProbeView<'a>>,
    pub packet: Option<PacketView<'a>>,
    pub skb: Option<Skb>,
    pub dev: Option<DevView<'a>>,
    pub netns: Option<Netns>,
    pub drop: Option<DropView<'a>>,
    pub tracking: Option<TrackingView<'a>>,
    pub ct: Option<ConntrackView<'a>>,
    pub nft: Option<NftView<'a>>,
    pub stack: Option<StackView<'a>>,
    pub retval: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommonView<'a> {
    pub timestamp: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: &'a str,
    pub host: Option<&'a str>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeView<'a> {
    pub kind: ProbeKind,
    pub name: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PacketView<'a> {
    pub data: &'a [u8],
    pub len: u32,
    pub layer: Layer,
    pub linktype: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DevView<'a> {
    pub ifindex: u32,
    pub name: &'a str,
    pub rx_ifindex: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropView<'a> {
    pub reason: &'a str,
    pub code: u32,
    pub subsystem: Option<&'a str>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackingView<'a> {
    pub first_seen: u64,
    pub orig_head: u64,
    pub source: &'a str,
    pub index: Option<u32>,
    pub parent: Option<&'a str>,
    pub link: Option<&'a str>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CtTupleView<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_id: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConntrackView<'a> {
    pub state: &'a str,
    pub status: u32,
    pub zone: u16,
    pub mark: u32,
    pub labels: Option<&'a [u8]>,
    pub orig: CtTupleView<'a>,
    pub reply: CtTupleView<'a>,
    pub proto_state: Option<&'a str>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NftView<'a> {
    pub table: &'a str,
    pub chain: &'a str,
    pub table_handle: u64,
    pub chain_handle: u64,
    pub rule_handle: Option<u64>,
    pub verdict: &'a str,
    pub verdict_chain: Option<&'a str>,
    pub policy: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackView<'a> {
    pub frames: Vec<StackFrameView<'a>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackFrameView<'a> {
    pub addr: u64,
    pub symbol: Option<&'a str>,
}

impl TrackingView<'_> {
    /// Text form of the id, as [`crate::model::event::Tracking::id`] writes it.
    pub fn id(&self) -> String {
        format!("{:x}-{:x}", self.first_seen, self.orig_head)
    }
}

/// The view of an owned event. Every field is named (no `..`): a field added to the event model
/// does not compile until the view has it too.
impl<'a> From<&'a Event> for EventView<'a> {
    fn from(event: &'a Event) -> Self {
        let Event {
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
        } = event;
        EventView {
            common: common.as_ref().map(|c| {
                let crate::model::event::Common {
                    timestamp,
                    cpu,
                    pid,
                    tid,
                    comm,
                    host,
                } = c;
                CommonView {
                    timestamp: *timestamp,
                    cpu: *cpu,
                    pid: *pid,
                    tid: *tid,
                    comm,
                    host: host.as_deref(),
                }
            }),
            probe: probe.as_ref().map(|p| {
                let crate::model::event::Probe { kind, name } = p;
                ProbeView { kind: *kind, name }
            }),
            packet: packet.as_ref().map(|p| {
                let crate::model::event::Packet {
                    data,
                    len,
                    layer,
                    linktype,
                } = p;
                PacketView {
                    data: &data.0,
                    len: *len,
                    layer: *layer,
                    linktype: *linktype,
                }
            }),
            skb: skb.clone(),
            dev: dev.as_ref().map(|d| {
                let crate::model::event::Dev {
                    ifindex,
                    name,
                    rx_ifindex,
                } = d;
                DevView {
                    ifindex: *ifindex,
                    name,
                    rx_ifindex: *rx_ifindex,
                }
            }),
            netns: netns.clone(),
            drop: drop.as_ref().map(|d| {
                let crate::model::event::Drop {
                    reason,
                    code,
                    subsystem,
                } = d;
                DropView {
                    reason,
                    code: *code,
                    subsystem: subsystem.as_deref(),
                }
            }),
            tracking: tracking.as_ref().map(|t| {
                let crate::model::event::Tracking {
                    first_seen,
                    orig_head,
                    source,
                    index,
                    parent,
                    link,
                } = t;
                TrackingView {
                    first_seen: *first_seen,
                    orig_head: *orig_head,
                    source,
                    index: *index,
                    parent: parent.as_deref(),
                    link: link.as_deref(),
                }
            }),
            ct: ct.as_ref().map(|c| {
                let crate::model::event::Conntrack {
                    state,
                    status,
                    zone,
                    mark,
                    labels,
                    orig,
                    reply,
                    proto_state,
                } = c;
                ConntrackView {
                    state,
                    status: *status,
                    zone: *zone,
                    mark: *mark,
                    labels: labels.as_ref().map(|l| &l.0[..]),
                    orig: tuple_view(orig),
                    reply: tuple_view(reply),
                    proto_state: proto_state.as_deref(),
                }
            }),
            nft: nft.as_ref().map(|n| {
                let crate::model::event::Nft {
                    table,
                    chain,
                    table_handle,
                    chain_handle,
                    rule_handle,
                    verdict,
                    verdict_chain,
                    policy,
                } = n;
                NftView {
                    table,
                    chain,
                    table_handle: *table_handle,
                    chain_handle: *chain_handle,
                    rule_handle: *rule_handle,
                    verdict,
                    verdict_chain: verdict_chain.as_deref(),
                    policy: *policy,
                }
            }),
            stack: stack.as_ref().map(|s| StackView {
                frames: s
                    .frames
                    .iter()
                    .map(|f| {
                        let crate::model::event::StackFrame { addr, symbol } = f;
                        StackFrameView {
                            addr: *addr,
                            symbol: symbol.as_deref(),
                        }
                    })
                    .collect(),
            }),
            retval: *retval,
        }
    }
}

fn tuple_view(t: &crate::model::event::CtTuple) -> CtTupleView<'_> {
    let crate::model::event::CtTuple {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
    } = t;
    CtTupleView {
        src,
        dst,
        proto: *proto,
        sport: *sport,
        dport: *dport,
        icmp_type: *icmp_type,
        icmp_code: *icmp_code,
        icmp_id: *icmp_id,
    }
}

/// Reads a map whose keys must all be among the given names, each at most once, parsing each
/// value with its expression. Any other key, a repeat, or a value `?` rejects: `None`.
macro_rules! walk_map {
    ($c:ident, { $($name:literal => $parse:expr,)* }) => {{
        let mut seen = 0u32;
        for _ in 0..$c.map_len()? {
            let key = $c.str_bytes()?;
            let mut bit = 1u32;
            $(
                if key == $name {
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    $parse;
                    continue;
                }
                bit <<= 1;
            )*
            let _ = bit;
            return None;
        }
    }};
}

impl<'a> EventView<'a> {
    /// The view of an event payload in the canonical encoding; `None` for anything else (see the
    /// module header: decode the owned [`Event`] then).
    pub fn parse(payload: &'a [u8]) -> Option<EventView<'a>> {
        let c = &mut Cursor(msgpack::Cursor::new(payload));
        let mut v = EventView::default();
        walk_map!(c, {
            b"common" => v.common = c.option(common)?,
            b"probe" => v.probe = c.option(probe)?,
            b"packet" => v.packet = c.option(packet)?,
            b"skb" => v.skb = c.option(skb)?,
            b"dev" => v.dev = c.option(dev)?,
            b"netns" => v.netns = c.option(netns)?,
            b"drop" => v.drop = c.option(drop_section)?,
            b"tracking" => v.tracking = c.option(tracking)?,
            b"ct" => v.ct = c.option(conntrack)?,
            b"nft" => v.nft = c.option(nft)?,
            b"stack" => v.stack = c.option(stack)?,
            b"retval" => v.retval = c.option(Cursor::int)?,
        });
        c.0.is_empty().then_some(v)
    }
}

fn common<'a>(c: &mut Cursor<'a>) -> Option<CommonView<'a>> {
    let mut v = CommonView::default();
    walk_map!(c, {
        b"timestamp" => v.timestamp = c.uint()?,
        b"cpu" => v.cpu = c.num()?,
        b"pid" => v.pid = c.num()?,
        b"tid" => v.tid = c.num()?,
        b"comm" => v.comm = c.str()?,
        b"host" => v.host = c.option(Cursor::str)?,
    });
    Some(v)
}

fn probe<'a>(c: &mut Cursor<'a>) -> Option<ProbeView<'a>> {
    let mut v = ProbeView::default();
    walk_map!(c, {
        b"kind" => v.kind = match c.str()? {
            "tracepoint" => ProbeKind::Tracepoint,
            "kprobe" => ProbeKind::Kprobe,
            "kretprobe" => ProbeKind::Kretprobe,
            "fentry" => ProbeKind::Fentry,
            "fexit" => ProbeKind::Fexit,
            "pcap-import" => ProbeKind::PcapImport,
            // `#[serde(other)]`: any other name is a kind from a newer producer.
            _ => ProbeKind::Unknown,
        },
        b"name" => v.name = c.str()?,
    });
    Some(v)
}

fn packet<'a>(c: &mut Cursor<'a>) -> Option<PacketView<'a>> {
    let mut v = PacketView::default();
    walk_map!(c, {
        b"data" => v.data = c.bin()?,
        b"len" => v.len = c.num()?,
        b"layer" => v.layer = match c.str()? {
            "l2" => Layer::L2,
            "l3" => Layer::L3,
            _ => return None,
        },
        b"linktype" => v.linktype = c.num()?,
    });
    Some(v)
}

fn skb(c: &mut Cursor<'_>) -> Option<Skb> {
    let mut v = Skb::default();
    walk_map!(c, {
        b"addr" => v.addr = c.uint()?,
        b"head" => v.head = c.uint()?,
        b"len" => v.len = c.num()?,
        b"data_len" => v.data_len = c.num()?,
        b"mark" => v.mark = c.num()?,
        b"hash" => v.hash = c.num()?,
        b"protocol" => v.protocol = c.num()?,
        b"pkt_type" => v.pkt_type = c.num()?,
        b"priority" => v.priority = c.num()?,
        b"ip_summed" => v.ip_summed = c.num()?,
        b"cloned" => v.cloned = c.bool()?,
        b"users" => v.users = c.num()?,
        b"dataref" => v.dataref = c.num()?,
        b"gso_size" => v.gso_size = c.num()?,
        b"gso_segs" => v.gso_segs = c.num()?,
        b"gso_type" => v.gso_type = c.num()?,
        b"vlan_tci" => v.vlan_tci = c.option(Cursor::num)?,
        b"vlan_proto" => v.vlan_proto = c.option(Cursor::num)?,
    });
    Some(v)
}

fn dev<'a>(c: &mut Cursor<'a>) -> Option<DevView<'a>> {
    let mut v = DevView::default();
    walk_map!(c, {
        b"ifindex" => v.ifindex = c.num()?,
        b"name" => v.name = c.str()?,
        b"rx_ifindex" => v.rx_ifindex = c.option(Cursor::num)?,
    });
    Some(v)
}

fn netns(c: &mut Cursor<'_>) -> Option<Netns> {
    let mut v = Netns::default();
    walk_map!(c, {
        b"inum" => v.inum = c.num()?,
        b"cookie" => v.cookie = c.option(Cursor::uint)?,
    });
    Some(v)
}

fn drop_section<'a>(c: &mut Cursor<'a>) -> Option<DropView<'a>> {
    let mut v = DropView::default();
    walk_map!(c, {
        b"reason" => v.reason = c.str()?,
        b"code" => v.code = c.num()?,
        b"subsystem" => v.subsystem = c.option(Cursor::str)?,
    });
    Some(v)
}

fn tracking<'a>(c: &mut Cursor<'a>) -> Option<TrackingView<'a>> {
    let mut v = TrackingView::default();
    walk_map!(c, {
        b"first_seen" => v.first_seen = c.uint()?,
        b"orig_head" => v.orig_head = c.uint()?,
        b"source" => v.source = c.str()?,
        b"index" => v.index = c.option(Cursor::num)?,
        b"parent" => v.parent = c.option(Cursor::str)?,
        b"link" => v.link = c.option(Cursor::str)?,
    });
    Some(v)
}

fn tuple<'a>(c: &mut Cursor<'a>) -> Option<CtTupleView<'a>> {
    let mut v = CtTupleView::default();
    walk_map!(c, {
        b"src" => v.src = c.str()?,
        b"dst" => v.dst = c.str()?,
        b"proto" => v.proto = c.num()?,
        b"sport" => v.sport = c.option(Cursor::num)?,
        b"dport" => v.dport = c.option(Cursor::num)?,
        b"icmp_type" => v.icmp_type = c.option(Cursor::num)?,
        b"icmp_code" => v.icmp_code = c.option(Cursor::num)?,
        b"icmp_id" => v.icmp_id = c.option(Cursor::num)?,
    });
    Some(v)
}

fn conntrack<'a>(c: &mut Cursor<'a>) -> Option<ConntrackView<'a>> {
    let mut v = ConntrackView::default();
    walk_map!(c, {
        b"state" => v.state = c.str()?,
        b"status" => v.status = c.num()?,
        b"zone" => v.zone = c.num()?,
        b"mark" => v.mark = c.num()?,
        b"labels" => v.labels = c.option(Cursor::bin)?,
        b"orig" => v.orig = tuple(c)?,
        b"reply" => v.reply = tuple(c)?,
        b"proto_state" => v.proto_state = c.option(Cursor::str)?,
    });
    Some(v)
}

fn nft<'a>(c: &mut Cursor<'a>) -> Option<NftView<'a>> {
    let mut v = NftView::default();
    walk_map!(c, {
        b"table" => v.table = c.str()?,
        b"chain" => v.chain = c.str()?,
        b"table_handle" => v.table_handle = c.uint()?,
        b"chain_handle" => v.chain_handle = c.uint()?,
        b"rule_handle" => v.rule_handle = c.option(Cursor::uint)?,
        b"verdict" => v.verdict = c.str()?,
        b"verdict_chain" => v.verdict_chain = c.option(Cursor::str)?,
        b"policy" => v.policy = c.bool()?,
    });
    Some(v)
}

fn stack<'a>(c: &mut Cursor<'a>) -> Option<StackView<'a>> {
    let mut v = StackView::default();
    walk_map!(c, {
        b"frames" => {
            let count = c.array_len()?;
            // Every frame takes at least a byte: a larger count is not worth reserving for.
            let mut frames = Vec::with_capacity(count.min(c.left()));
            for _ in 0..count {
                frames.push(stack_frame(c)?);
            }
            v.frames = frames;
        },
    });
    Some(v)
}

fn stack_frame<'a>(c: &mut Cursor<'a>) -> Option<StackFrameView<'a>> {
    let mut v = StackFrameView::default();
    walk_map!(c, {
        b"addr" => v.addr = c.uint()?,
        b"symbol" => v.symbol = c.option(Cursor::str)?,
    });
    Some(v)
}

/// A read position in a payload: the one reader's cursor ([`crate::model::msgpack`]), seen as
/// `Option`s. Every method consumes one whole value of the shape it names, or returns `None`
/// (and the parse is abandoned, so the position then does not matter).
struct Cursor<'a>(msgpack::Cursor<'a>);

impl<'a> Cursor<'a> {
    /// Bytes left: a bound on how many values can follow.
    fn left(&self) -> usize {
        self.0.rest().len()
    }

    fn map_len(&mut self) -> Option<u64> {
        self.0.map_len().ok().map(u64::from)
    }

    fn array_len(&mut self) -> Option<usize> {
        self.0.array_len().ok().map(|n| n as usize)
    }

    /// A string's bytes, unchecked: map keys, compared with known ASCII names.
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        self.0.str_bytes().ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        self.0.str().ok()
    }

    fn bin(&mut self) -> Option<&'a [u8]> {
        self.0.bin().ok()
    }

    fn bool(&mut self) -> Option<bool> {
        self.0.bool().ok()
    }

    /// Any integer that is not negative (serde takes a signed encoding of a value in range).
    fn uint(&mut self) -> Option<u64> {
        self.0.uint().ok()
    }

    fn int(&mut self) -> Option<i64> {
        self.0.int().ok()
    }

    /// An unsigned integer that fits `T` (serde rejects one that does not).
    fn num<T: TryFrom<u64>>(&mut self) -> Option<T> {
        self.0.num().ok()
    }

    /// nil as `None`, anything else read by `value`.
    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.0.nil() {
            return Some(None);
        }
        value(self).map(Some)
    }
}
