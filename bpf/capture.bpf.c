// SPDX-License-Identifier: GPL-2.0-only
/*
 * trail-capture's probe programs: one event per hit of a tracepoint that has a
 * `struct sk_buff *` argument.
 *
 * Design (why raw_tp, one program per skb-argument position, cookies):
 * - The programs are `raw_tp`, not `tp_btf`: a raw_tp program is not tied to one tracepoint at
 *   load time, so the same loaded program attaches to every tracepoint whose skb sits at the same
 *   argument position. Attaching 30 probes costs 30 link creations, not 30 verifications.
 *   `tp_btf` would need one load per tracepoint (attach_btf_id is fixed at load).
 * - The skb is read from the context at a constant position, so the verifier records the
 *   largest context offset and the kernel refuses to attach the program to a tracepoint with
 *   fewer arguments: a wrong position found in BTF cannot read past the argument array.
 *   User space enables (autoload) only the positions it needs.
 * - Paged skb data is the exception: only a trusted skb pointer (tp_btf) can make a skb dynptr
 *   that reads fragments (read_paged), so where the kernel allows it tracepoints use the tp_btf
 *   twins of the raw_tp programs, one instance per tracepoint, loaded in parallel.
 * - Verification cost is startup time (one verification per instance). The pieces that branch
 *   most (fingerprint, tracking, conntrack) are global functions, which the verifier checks once
 *   on their own instead of once per path through process(): 60k processed instructions became
 *   11k. Their arguments are scalars or a pointer to the record, as global functions require.
 * - The probe identity travels as the BPF cookie of each attachment (`bpf_get_attach_cookie`;
 *   kprobe cookies exist since 5.15, raw_tp ones since 6.10). Where there is no cookie (raw_tp
 *   before 6.10) or one load per target is needed anyway (fentry/fexit: the target function is
 *   fixed at load), user space loads one more instance of this object per probe, sharing every
 *   map with the first, with the id in the rodata `cfg.fixed_probe`: the verifier then prunes the
 *   cookie helper call, which older kernels would refuse in raw_tp programs.
 * - Kernel functions (kprobe, kretprobe, fentry, fexit) have the same per-position program
 *   families as tracepoints. kretprobe and fexit describe the packet as the function got it:
 *   an entry program (kprobe or fentry on the same function) builds the whole record and parks
 *   it by (task, probe, depth); the return program adds the return value and sends it. Reading the skb
 *   at return would see a packet the function may have changed or freed.
 * - Collectors (skb, dev, netns, conntrack, tracking, packet, stack) are compiled in and switched
 *   by `const volatile` configuration, set before load: the verifier then prunes disabled code.
 *   freplace/fentry extension programs do not load on the kernels we target.
 * - Records are built in a scratch buffer and copied to the ring buffer at their real size with
 *   bpf_ringbuf_output. The scratch is a plain array indexed by (cpu, nesting level): a softirq
 *   can interrupt a program on the same CPU, and a per-CPU array value cannot exceed 32 KiB
 *   while a record can hold 64 KiB of packet.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "capture.h"

char LICENSE[] SEC("license") = "GPL";

/* Configuration, set by user space before load (struct trail_config in capture.h). */
const volatile struct trail_config cfg = {
	.wakeup_bytes = 1 << 20,
	.snaplen = 256,
	.collectors = 0xffffffff,
	.record_max = sizeof(struct trail_event) + 256 + TRAIL_STACK_BYTES,
	.selectors = 0,
	.select_pid = 0,
	.fixed_probe = TRAIL_NO_PROBE,
};

/* Dummy globals so the skeleton emits these types for user space (STYLE.md point 6). */
struct trail_event trail_event_type = {};
struct trail_probe_config trail_probe_config_type = {};
struct trail_probe_stats trail_probe_stats_type = {};
enum trail_limit trail_limit_type = 0;
enum trail_event_flag trail_event_flag_type = 0;
enum trail_probe_flag trail_probe_flag_type = 0;
enum trail_collector trail_collector_type = 0;
enum trail_selector trail_selector_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps");

/* No BTF value type: user space resizes the value to the record size chosen by --snaplen. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct trail_event) + 256 + TRAIL_STACK_BYTES);
	__uint(max_entries, TRAIL_NEST_LEVELS);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} nesting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct trail_probe_config);
	__uint(max_entries, TRAIL_MAX_PROBES);
} probe_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct trail_probe_stats);
	__uint(max_entries, TRAIL_MAX_PROBES);
} probe_stats SEC(".maps");

/* Tracking: by data buffer (skb->head), and by skb address to follow head reallocation. LRU so
 * that packets whose end no tracepoint shows are evicted instead of filling the table. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct trail_track);
	__uint(max_entries, 65536);
} track_heads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct trail_track);
	__uint(max_entries, 65536);
} track_skbs SEC(".maps");

/* Index 0: non-zero once the tracking end points (kprobe/fentry on the functions that free skb
 * heads) are attached. Then a known head is the same packet whatever its bytes look like now
 * (headers are still being written early on the transmit path): reuse is seen at the free, not
 * guessed from a changed fingerprint. A map, not rodata: it is set after attaching, and shared
 * by every instance. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} track_settings SEC(".maps");

/* kretprobe/fexit: records built at function entry, waiting for the return, by (task, probe,
 * nesting depth of that probe's function on the task). The depth matters: on veth a transmit
 * runs the receive softirq inline, so ip_output can be called again (an ICMP error, a reply)
 * before the outer call returns, on the same task. Calls on one task return in LIFO order, so
 * a per-(task, probe) depth counter pairs each return with its entry. No BTF value type for the
 * records: user space sets the value size to the record size, like `scratch`. */
struct kret_key {
	__u64 task;
	__u32 probe;
	__u32 depth;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, sizeof(struct kret_key));
	__uint(value_size, sizeof(struct trail_event) + 256 + TRAIL_STACK_BYTES);
	__uint(max_entries, 1024);
} kret_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kret_key);
	__type(value, __u32);
	__uint(max_entries, 16384);
} kret_depth SEC(".maps");

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ARPHRD_ETHER 1
#define ARPHRD_LOOPBACK 772
#define SKB_DATAREF_MASK 0xffff
#define IP_CT_UNTRACKED 7

static __always_inline __u16 bswap16(__u16 v)
{
	return __builtin_bswap16(v);
}

/* FNV-1a step over one byte. */
static __always_inline __u64 fnv(__u64 h, __u8 b)
{
	return (h ^ b) * 0x100000001b3ULL;
}

#define ETH_P_TEB 0x6558
#define VXLAN_PORT 4789
#define VXLAN_PORT_LINUX 8472
#define GENEVE_PORT 6081

/* The Ethernet type at `at` + 12, and so whether an inner Ethernet frame carries IP. */
static __always_inline bool inner_eth_is_ip(unsigned char *head, __u32 at)
{
	__u8 type[2] = {};

	if (bpf_probe_read_kernel(type, sizeof(type), head + at + 12))
		return false;
	return (type[0] == 0x08 && type[1] == 0x00) || (type[0] == 0x86 && type[1] == 0xdd);
}

/*
 * Offset from `head` of the IP header inside a tunnel whose outer IP header, at offset `at`,
 * starts with `l3`: IP-in-IP (4, 41), GRE (IP or Ethernet payload), VXLAN (UDP 4789 and Linux's
 * old 8472) and Geneve (6081) with an Ethernet payload. 0 when the packet is not such a tunnel
 * (or is a later fragment). One level only. Ports are the standard ones: a tunnel on another
 * port is not seen through.
 */
static __always_inline __u32 tunnel_inner(unsigned char *head, __u32 at, __u8 *l3)
{
	__u8 t[12] = {};
	__u32 off;
	__u16 type;
	__u8 proto;

	if ((l3[0] >> 4) == 4) {
		if ((l3[6] & 0x3f) || l3[7])
			return 0;
		proto = l3[9];
		off = at + (l3[0] & 0xf) * 4;
	} else {
		proto = l3[6];
		off = at + 40;
	}
	switch (proto) {
	case 4: /* IPv4 in IP */
	case 41: /* IPv6 in IP */
		return off;
	case 47: /* GRE, version 0 */
		if (bpf_probe_read_kernel(t, 4, head + off) || (t[1] & 0x07))
			return 0;
		type = ((__u16)t[2] << 8) | t[3];
		off += 4 + ((t[0] & 0x80) ? 4 : 0) + ((t[0] & 0x20) ? 4 : 0) + ((t[0] & 0x10) ? 4 : 0);
		if (type == ETH_P_IP || type == ETH_P_IPV6)
			return off;
		if (type == ETH_P_TEB && inner_eth_is_ip(head, off))
			return off + 14;
		return 0;
	case 17: /* UDP: VXLAN or Geneve */
		if (bpf_probe_read_kernel(t, sizeof(t), head + off))
			return 0;
		type = ((__u16)t[2] << 8) | t[3];
		if (type == VXLAN_PORT || type == VXLAN_PORT_LINUX) {
			off += 8 + 8;
		} else if (type == GENEVE_PORT && t[10] == 0x65 && t[11] == 0x58) {
			off += 8 + 8 + (t[8] & 0x3f) * 4;
		} else {
			return 0;
		}
		return inner_eth_is_ip(head, off) ? off + 14 : 0;
	}
	return 0;
}

/*
 * Fingerprint of the bytes of a packet that stay the same along its path, NAT and tunnels
 * included (see schemas/tracking.md): IPv4 total length, id, fragment field and protocol, or
 * IPv6 payload length, next header and flow label; then up to 16 bytes of the transport segment
 * past the fields NAT rewrites (UDP: payload; TCP: sequence, ack, offset, flags; ICMP: sequence
 * and payload). A tunnelled packet is fingerprinted by its inner packet, so encapsulation and
 * decapsulation keep its identity. Non-IP packets: protocol, length and first bytes from the
 * MAC header.
 */
__noinline __u64 trail_fingerprint(__u64 head_addr, __u64 data_addr, __u32 mac_net,
				   __u32 protocol, __u32 len)
{
	unsigned char *head = (unsigned char *)head_addr, *data = (unsigned char *)data_addr;
	__u16 mac = mac_net >> 16, net = mac_net & 0xffff;
	__u64 h = 0xcbf29ce484222325ULL;
	__u8 l3[40] = {};
	__u8 l4[24] = {};
	__u32 l3_len, l4_off, skip, take, at = net, inner;
	__u8 proto;

	if (net == 0xffff || (protocol != ETH_P_IP && protocol != ETH_P_IPV6))
		goto other;
	if (bpf_probe_read_kernel(l3, sizeof(l3), head + at))
		goto other;
	inner = tunnel_inner(head, at, l3);
	if (inner) {
		at = inner;
		if (bpf_probe_read_kernel(l3, sizeof(l3), head + at))
			goto other;
	}
	if ((l3[0] >> 4) == 4) {
		l3_len = ((__u32)l3[2] << 8) | l3[3];
		l4_off = (l3[0] & 0xf) * 4;
		proto = l3[9];
		h = fnv(h, 4);
		h = fnv(h, l3[2]);
		h = fnv(h, l3[3]);
		h = fnv(h, l3[4]);
		h = fnv(h, l3[5]);
		h = fnv(h, l3[6]);
		h = fnv(h, l3[7]);
		h = fnv(h, proto);
		/* Only the first fragment carries the transport header. */
		if ((l3[6] & 0x1f) || l3[7])
			return h;
	} else if ((l3[0] >> 4) == 6) {
		l3_len = (((__u32)l3[4] << 8) | l3[5]) + 40;
		l4_off = 40;
		proto = l3[6];
		h = fnv(h, 6);
		h = fnv(h, l3[1] & 0xf);
		h = fnv(h, l3[2]);
		h = fnv(h, l3[3]);
		h = fnv(h, l3[4]);
		h = fnv(h, l3[5]);
		h = fnv(h, proto);
	} else {
		goto other;
	}
	switch (proto) {
	case 17: /* UDP */
	case 136: /* UDP-Lite */
		skip = 8;
		break;
	case 6: /* TCP */
		skip = 4;
		break;
	case 1: /* ICMP */
	case 58: /* ICMPv6 */
		skip = 6;
		break;
	default:
		skip = 0;
	}
	if (l3_len <= l4_off + skip)
		return h;
	take = l3_len - l4_off - skip;
	if (take > 16)
		take = 16;
	if (proto == 6 && take > 10)
		take = 10;
	if (bpf_probe_read_kernel(l4, sizeof(l4), head + at + l4_off))
		return h;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i < take && i + skip < sizeof(l4))
			h = fnv(h, l4[(i + skip) & 31]);
	}
	return h;
other:
	/* Non-IP (ARP, VLAN-tagged frames seen before untagging, ...): the length from the MAC
	 * header, which is the same before and after eth_type_trans() pulls it, and the first
	 * bytes from there. */
	if (mac != 0xffff) {
		len = len + (__u32)(data - (head + mac));
		bpf_probe_read_kernel(l3, sizeof(l3), head + mac);
	}
	h = fnv(h, protocol & 0xff);
	h = fnv(h, protocol >> 8);
	h = fnv(h, len & 0xff);
	h = fnv(h, (len >> 8) & 0xff);
#pragma unroll
	for (int i = 0; i < 24; i++)
		h = fnv(h, l3[i]);
	return h;
}

/*
 * Gives the event its tracking id. A known head with the same fingerprint is the same packet
 * (or a clone); a known head with another fingerprint is a reused buffer: new id. An unknown
 * head on a known skb with the same fingerprint is a head reallocation: keep the id.
 */
__noinline int trail_assign_id(struct trail_event *ev, __u64 fp, __u32 frees, __u32 dataref)
{
	struct trail_track *known;
	struct trail_track fresh = {};
	__u64 head, addr;
	__u32 zero = 0, *ends = bpf_map_lookup_elem(&track_settings, &zero);
	bool trust = ends && *ends;

	if (!ev)
		return 0;
	head = ev->head;
	addr = ev->skb_addr;

	known = bpf_map_lookup_elem(&track_heads, &head);
	if (known && (known->fingerprint == fp || trust)) {
		fresh = *known;
	} else {
		struct trail_track *by_skb = bpf_map_lookup_elem(&track_skbs, &addr);

		if (!known && by_skb && (by_skb->fingerprint == fp || trust)) {
			fresh = *by_skb;
		} else {
			fresh.first_seen = ev->timestamp;
			fresh.orig_head = head;
			fresh.fingerprint = fp;
			ev->flags |= TRAIL_F_NEW_ID;
			if (known)
				ev->flags |= TRAIL_F_REUSED;
		}
		if (!frees)
			bpf_map_update_elem(&track_heads, &head, &fresh, BPF_ANY);
	}
	ev->track_first_seen = fresh.first_seen;
	ev->track_orig_head = fresh.orig_head;
	ev->flags |= TRAIL_F_TRACKING;
	if (frees) {
		/* The data buffer goes with the last reference to it. */
		if ((dataref & SKB_DATAREF_MASK) <= 1)
			bpf_map_delete_elem(&track_heads, &head);
		bpf_map_delete_elem(&track_skbs, &addr);
	} else {
		bpf_map_update_elem(&track_skbs, &addr, &fresh, BPF_ANY);
	}
	return 0;
}

static __always_inline void read_tuple(struct trail_ct_tuple *out, struct nf_conntrack_tuple *t)
{
	bpf_probe_read_kernel(out->src, 16, &t->src.u3);
	bpf_probe_read_kernel(out->dst, 16, &t->dst.u3);
	bpf_probe_read_kernel(out->src_u, 2, &t->src.u.all);
	bpf_probe_read_kernel(out->dst_u, 2, &t->dst.u.all);
	out->l3num = BPF_CORE_READ(t, src.l3num);
	out->proto = BPF_CORE_READ(t, dst.protonum);
}

__noinline int trail_collect_ct(struct trail_event *ev, __u64 skb_addr)
{
	struct sk_buff *skb = (struct sk_buff *)skb_addr;
	unsigned long nfct;
	struct nf_conn *ct;

	if (!ev)
		return 0;
	nfct = BPF_CORE_READ(skb, _nfct);
	ct = (struct nf_conn *)(nfct & ~7UL);
	if (!nfct)
		return 0;
	ev->ct_info = nfct & 7;
	if (!ct) {
		if (ev->ct_info == IP_CT_UNTRACKED)
			ev->flags |= TRAIL_F_UNTRACKED;
		return 0;
	}
	ev->flags |= TRAIL_F_CT;
	ev->ct_status = BPF_CORE_READ(ct, status);
	if (bpf_core_field_exists(ct->mark))
		ev->ct_mark = BPF_CORE_READ(ct, mark);
	if (bpf_core_field_exists(ct->zone))
		ev->ct_zone = BPF_CORE_READ(ct, zone.id);
	read_tuple(&ev->ct_orig, &ct->tuplehash[0].tuple);
	read_tuple(&ev->ct_reply, &ct->tuplehash[1].tuple);
	if (ev->ct_orig.proto == 6)
		ev->ct_proto_state = BPF_CORE_READ(ct, proto.tcp.state);
	return 0;
}

static __always_inline void collect_netns(struct trail_event *ev, struct sk_buff *skb,
					  struct net_device *dev)
{
	struct net *net = NULL;

	if (dev) {
		net = BPF_CORE_READ(dev, nd_net.net);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);

		if (sk)
			net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	}
	if (!net)
		return;
	ev->netns_inum = BPF_CORE_READ(net, ns.inum);
	ev->flags |= TRAIL_F_NETNS;
	if (bpf_core_field_exists(net->net_cookie)) {
		bpf_core_read(&ev->netns_cookie, sizeof(ev->netns_cookie), &net->net_cookie);
		ev->flags |= TRAIL_F_NETNS_COOKIE;
	}
}

/*
 * Placeholders for the filters the user gives (-f, -m). User space replaces their bodies, when
 * the program is loaded, with eBPF translated from the expressions (lib/capture/splice.rs finds
 * them by their BTF names). noinline keeps each one a BPF function of its own, with its own BTF
 * func info and stack frame, which is what the translations are; the empty asm keeps the
 * compiler from assuming what they return. When no filter is given, `selectors` is 0 and the
 * verifier prunes the calls.
 *
 * trail_filter_l2/l3: the -f expression compiled for Ethernet / raw IP. `data` is the first
 * byte, `caplen` how many bytes may be read from it, `wirelen` the packet's length from there.
 * trail_meta: the -m expression on the skb's fields. Each returns non-zero to keep the packet.
 */
static __noinline __u32 trail_filter_l2(void *data, __u32 caplen, __u32 wirelen)
{
	__u32 verdict = 1;

	asm volatile("" : "+r"(verdict) : "r"(data), "r"(caplen), "r"(wirelen));
	return verdict;
}

static __noinline __u32 trail_filter_l3(void *data, __u32 caplen, __u32 wirelen)
{
	__u32 verdict = 3;

	asm volatile("" : "+r"(verdict) : "r"(data), "r"(caplen), "r"(wirelen));
	return verdict;
}

static __noinline __u32 trail_meta(struct sk_buff *skb)
{
	__u32 verdict = 5;

	asm volatile("" : "+r"(verdict) : "r"(skb));
	return verdict;
}

/* Everything fingerprint() needs, so that it is computed at most once per hit, and only when
 * needed: by tracking, or by following when the packet's buffer or skb has an entry. */
struct fp_input {
	unsigned char *head, *data;
	__u16 mac, net, protocol;
	__u32 len;
	__u64 value;
	bool done;
};

static __always_inline __u64 fingerprint_once(struct fp_input *in)
{
	if (!in->done) {
		in->value = trail_fingerprint((__u64)in->head, (__u64)in->data,
					      ((__u32)in->mac << 16) | in->net, in->protocol, in->len);
		in->done = true;
	}
	return in->value;
}

/* The packet already matched, earlier in its journey: its tracking entry exists. Entries are
 * only made for packets that were emitted, so a hit means "selected before". Most rejected
 * packets have no entry at all, and cost two lookups, not a fingerprint. */
static __always_inline bool followed(__u64 addr, struct fp_input *fp)
{
	__u64 head = (__u64)fp->head;
	struct trail_track *by_head = bpf_map_lookup_elem(&track_heads, &head);
	struct trail_track *by_skb = bpf_map_lookup_elem(&track_skbs, &addr);

	__u32 zero = 0, *ends = bpf_map_lookup_elem(&track_settings, &zero);
	/* Same rule as trail_assign_id(): with every head-freeing end point attached, a known
	 * buffer is the same packet whatever its bytes. */
	bool trust = ends && *ends;

	/* Tested one at a time: clang would otherwise OR the two pointers, which the verifier
	 * refuses. */
	if (by_head && (trust || by_head->fingerprint == fingerprint_once(fp)))
		return true;
	if (!by_skb)
		return false;
	return trust || by_skb->fingerprint == fingerprint_once(fp);
}

/*
 * Whether to emit an event for this hit. Order: a followed packet passes (its id was selected
 * before, even if NAT or a tunnel changed it since); then the cheap checks (pid), then the
 * skb predicate, then the packet filter on the bytes from `start`. A packet without a network
 * header cannot be judged by an L3 filter and is left out.
 */
static __always_inline bool selected(struct sk_buff *skb, struct fp_input *fp,
				     unsigned char *start, bool l3, __u32 linear, __u32 pkt_len)
{
	if ((cfg.selectors & TRAIL_SEL_FOLLOW) && followed((__u64)skb, fp))
		return true;
	if ((cfg.selectors & TRAIL_SEL_PID) &&
	    (bpf_get_current_pid_tgid() >> 32) != cfg.select_pid)
		return false;
	if ((cfg.selectors & TRAIL_SEL_META) && !trail_meta(skb))
		return false;
	if (cfg.selectors & TRAIL_SEL_PACKET) {
		if (!l3)
			return trail_filter_l2(start, linear, pkt_len) != 0;
		if (fp->net == 0xffff)
			return false;
		return trail_filter_l3(start, linear, pkt_len) != 0;
	}
	return true;
}

/* Kernels before 6.2 flag an offloaded VLAN tag with a bit (the tag can be stale without it);
 * later ones have vlan_all, non-zero when a tag is present. */
struct sk_buff___vlan_present {
	__u8 vlan_present : 1;
} __attribute__((preserve_access_index));

static __always_inline bool vlan_present(struct sk_buff *skb)
{
	if (bpf_core_field_exists(skb->vlan_all))
		return BPF_CORE_READ(skb, vlan_all) != 0;
	return BPF_CORE_READ_BITFIELD_PROBED((struct sk_buff___vlan_present *)skb, vlan_present);
}

static __always_inline void count_lost(struct trail_probe_stats *stats)
{
	__sync_fetch_and_add(&stats->lost, 1);
}

/* The probe that fired: rodata for per-probe instances, else the attach cookie. */
static __always_inline __u32 probe_identity(void *ctx)
{
	if (cfg.fixed_probe != TRAIL_NO_PROBE)
		return cfg.fixed_probe;
	return (__u32)bpf_get_attach_cookie(ctx);
}

/* Function entry of a kretprobe/fexit probe: this call's key, one level deeper than the calls
 * of the same function already running on this task. */
static __always_inline void kret_push(void *ctx, struct kret_key *key)
{
	struct kret_key top = {
		.task = bpf_get_current_task(),
		.probe = probe_identity(ctx),
	};
	__u32 *depth = bpf_map_lookup_elem(&kret_depth, &top), one = 1;

	*key = top;
	if (depth) {
		key->depth = *depth;
		*depth += 1;
	} else {
		bpf_map_update_elem(&kret_depth, &top, &one, BPF_ANY);
	}
}

/* Function return: the key of the call that returns (false: no entry was seen). */
static __always_inline bool kret_pop(void *ctx, struct kret_key *key)
{
	struct kret_key top = {
		.task = bpf_get_current_task(),
		.probe = probe_identity(ctx),
	};
	__u32 *depth = bpf_map_lookup_elem(&kret_depth, &top);

	if (!depth || *depth == 0)
		return false;
	*depth -= 1;
	*key = top;
	key->depth = *depth;
	if (*depth == 0)
		bpf_map_delete_elem(&kret_depth, &top);
	return true;
}

/* Paged skb data (tp_btf programs only). A kfunc; the verifier allows it in tp_btf programs on
 * recent kernels only, which user space measures before choosing tp_btf (functions.rs). Weak, so
 * that the object loads where the kfunc does not exist. */
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr) __ksym __weak;

/* At most this many bytes before skb->data (the L2 header on receive) are read from the linear
 * head by read_paged. Not above TRAIL_STACK_BYTES: the record buffer's room for the stack is
 * what bounds, for the verifier, a copy starting this far in. */
#define TRAIL_PAGED_BEFORE_MAX 128

/* Copies the packet from `start` (in the linear head) into `dst`, at most `snaplen` bytes,
 * paged fragments included: the bytes before skb->data from the head, the rest through a skb
 * dynptr (which walks the fragments). Returns the bytes copied, or 0 if it could not, and the
 * caller then copies the linear part. `len` is skb->len, counted from `data`. */
static __always_inline __u64 read_paged(struct sk_buff *skb, unsigned char *start,
					unsigned char *data, __u32 len, void *dst)
{
	struct bpf_dynptr ptr;
	__u64 before = 0, skip = 0, n;

	if (start < data)
		before = data - start;
	else
		skip = start - data;
	if (before > TRAIL_PAGED_BEFORE_MAX || skip >= len)
		return 0;
	if (before > cfg.snaplen)
		before = cfg.snaplen;
	/* Separate instructions: the verifier must see before <= the max and n <= snaplen. */
	barrier_var(before);
	if (before > TRAIL_PAGED_BEFORE_MAX)
		return 0;
	if (before && bpf_probe_read_kernel(dst, before, start))
		return 0;
	n = len - skip;
	if (n > cfg.snaplen - before)
		n = cfg.snaplen - before;
	barrier_var(n);
	if (n > cfg.snaplen)
		return 0;
	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr))
		return 0;
	if (n && bpf_dynptr_read(dst + before, n, &ptr, skip, 0))
		return 0;
	return before + n;
}

/* `park`: keep the record in kret_pending under this key for the function's return (kretprobe,
 * fexit) instead of sending it; NULL: send it. `paged`: `skb` is a trusted pointer (tp_btf) and
 * paged data is read through a dynptr (read_paged); a constant at each call site, so the other
 * program families carry no kfunc call. */
static __always_inline int process(void *ctx, struct sk_buff *skb, bool has_reason, __u32 reason,
				   struct kret_key *park, bool paged)
{
	__u32 probe = probe_identity(ctx);
	struct trail_probe_stats *stats;
	struct trail_probe_config *probe_cfg;
	struct trail_event *ev;
	struct skb_shared_info *shinfo;
	struct net_device *dev;
	unsigned char *head, *data, *start = NULL;
	__u32 *level, slot, caplen = 0, flags = 0, dataref = 0, len, data_len;
	/* 64-bit: a 32-bit size gets zero-extended in a register copy the clamps do not cover. */
	__u64 size;
	__u16 mac, net, protocol, dev_type;
	struct fp_input fp_in = {};
	__u64 pid_tgid, linear = 0;
	long pkt_len;
	bool frees, l3 = false;
	void *buf;

	if (!skb || probe >= TRAIL_MAX_PROBES)
		return 0;
	stats = bpf_map_lookup_elem(&probe_stats, &probe);
	probe_cfg = bpf_map_lookup_elem(&probe_config, &probe);
	if (!stats || !probe_cfg)
		return 0;
	__sync_fetch_and_add(&stats->hits, 1);
	flags = probe_cfg->flags;
	frees = flags & TRAIL_PROBE_FREES;

	head = BPF_CORE_READ(skb, head);
	data = BPF_CORE_READ(skb, data);
	len = BPF_CORE_READ(skb, len);
	data_len = BPF_CORE_READ(skb, data_len);
	protocol = bswap16(BPF_CORE_READ(skb, protocol));
	mac = BPF_CORE_READ(skb, mac_header);
	net = BPF_CORE_READ(skb, network_header);
	dev = BPF_CORE_READ(skb, dev);
	dev_type = dev ? BPF_CORE_READ(dev, type) : 0;

	/* Where the packet's bytes start: at L2 when a MAC header was set before the network
	 * header on an Ethernet-like device; else at the network header (raw IP); else at
	 * skb->data. The filters and the packet collector see the same bytes. */
	if (mac != 0xffff && mac < net && net != 0xffff &&
	    (dev_type == ARPHRD_ETHER || dev_type == ARPHRD_LOOPBACK)) {
		start = head + mac;
	} else {
		start = net != 0xffff ? head + net : data;
		l3 = true;
	}
	pkt_len = (long)len + (long)(data - start);
	if (pkt_len < 0)
		pkt_len = 0;
	{
		unsigned char *tail = data + (len - data_len);

		if (tail > start)
			linear = tail - start;
		if (linear > (__u64)pkt_len)
			linear = pkt_len;
	}
	fp_in.head = head;
	fp_in.data = data;
	fp_in.mac = mac;
	fp_in.net = net;
	fp_in.protocol = protocol;
	fp_in.len = len;
	if (cfg.selectors && !selected(skb, &fp_in, start, l3, linear, pkt_len))
		return 0;

	slot = 0;
	level = bpf_map_lookup_elem(&nesting, &slot);
	if (!level)
		return 0;
	if (*level >= TRAIL_NEST_LEVELS) {
		count_lost(stats);
		return 0;
	}
	slot = bpf_get_smp_processor_id() * TRAIL_NEST_LEVELS + *level;
	buf = bpf_map_lookup_elem(&scratch, &slot);
	if (!buf) {
		count_lost(stats);
		return 0;
	}
	*level += 1;
	ev = buf;
	__builtin_memset(ev, 0, sizeof(*ev));

	ev->timestamp = bpf_ktime_get_ns();
	ev->skb_addr = (__u64)skb;
	ev->probe_id = probe;
	ev->cpu = bpf_get_smp_processor_id();
	pid_tgid = bpf_get_current_pid_tgid();
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));

	ev->head = (__u64)head;
	ev->len = len;
	ev->data_len = data_len;
	ev->protocol = protocol;
	shinfo = (struct skb_shared_info *)(head + BPF_CORE_READ(skb, end));
	dataref = BPF_CORE_READ(shinfo, dataref.counter);

	if (cfg.collectors & TRAIL_C_SKB) {
		ev->flags |= TRAIL_F_SKB;
		ev->mark = BPF_CORE_READ(skb, mark);
		ev->hash = BPF_CORE_READ(skb, hash);
		ev->priority = BPF_CORE_READ(skb, priority);
		ev->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
		ev->ip_summed = BPF_CORE_READ_BITFIELD_PROBED(skb, ip_summed);
		ev->cloned = BPF_CORE_READ_BITFIELD_PROBED(skb, cloned);
		ev->users = BPF_CORE_READ(skb, users.refs.counter);
		ev->dataref = dataref;
		ev->gso_size = BPF_CORE_READ(shinfo, gso_size);
		ev->gso_segs = BPF_CORE_READ(shinfo, gso_segs);
		ev->gso_type = BPF_CORE_READ(shinfo, gso_type);
		if (vlan_present(skb)) {
			ev->flags |= TRAIL_F_VLAN;
			ev->vlan_tci = BPF_CORE_READ(skb, vlan_tci);
			ev->vlan_proto = bswap16(BPF_CORE_READ(skb, vlan_proto));
		}
	}

	if ((cfg.collectors & TRAIL_C_DEV) && dev) {
		ev->flags |= TRAIL_F_DEV;
		ev->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_probe_read_kernel_str(ev->ifname, sizeof(ev->ifname), &dev->name);
		ev->skb_iif = BPF_CORE_READ(skb, skb_iif);
	}
	if (cfg.collectors & TRAIL_C_NETNS)
		collect_netns(ev, skb, dev);
	if (has_reason) {
		ev->flags |= TRAIL_F_DROP;
		ev->drop_reason = reason;
	}
	if (cfg.collectors & TRAIL_C_CT)
		/* The address as stored: a scalar, which a global function takes (skb itself may be a
		 * trusted pointer). */
		trail_collect_ct(ev, ev->skb_addr);
	if (cfg.collectors & TRAIL_C_TRACKING)
		trail_assign_id(ev, fingerprint_once(&fp_in), frees, dataref);

	if (cfg.collectors & TRAIL_C_PACKET) {
		if (l3)
			ev->flags |= TRAIL_F_L3;
		ev->pkt_len = pkt_len;
		/* Keep the clamps separate instructions: the verifier needs caplen <= snaplen. */
		barrier_var(linear);
		if (linear > cfg.snaplen)
			linear = cfg.snaplen;
		barrier_var(linear);
		/* Beyond the linear part only through a dynptr (tp_btf): other program types have
		 * no way to map a fragment's page (page_address() needs kernel data symbols). */
		if (paged && linear < (__u64)pkt_len && linear < cfg.snaplen) {
			__u64 copied = read_paged(skb, start, data, len, buf + sizeof(*ev));

			/* Never true; tells the verifier what read_paged guarantees. */
			barrier_var(copied);
			if (copied > cfg.snaplen)
				copied = 0;
			barrier_var(copied);
			caplen = copied;
		}
		if (!caplen) {
			caplen = linear;
			if (caplen && bpf_probe_read_kernel(buf + sizeof(*ev), caplen, start))
				caplen = 0;
		}
		ev->caplen = caplen;
		ev->flags |= TRAIL_F_PACKET;
	}
	size = sizeof(*ev) + caplen;

	if (flags & TRAIL_PROBE_STACK) {
		long n;

		if (size > cfg.record_max - TRAIL_STACK_BYTES)
			size = cfg.record_max - TRAIL_STACK_BYTES;
		n = bpf_get_stack(ctx, buf + size, TRAIL_STACK_BYTES, 0);
		if (n > 0) {
			ev->stack_bytes = n;
			size += n;
		}
	}

	if (size > cfg.record_max)
		size = cfg.record_max;
	if (park) {
		bpf_map_update_elem(&kret_pending, park, buf, BPF_ANY);
	} else {
		__u64 wake = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= cfg.wakeup_bytes
				     ? BPF_RB_FORCE_WAKEUP
				     : BPF_RB_NO_WAKEUP;

		if (bpf_ringbuf_output(&events, buf, size, wake))
			count_lost(stats);
	}
	*level -= 1;
	return 0;
}

/* One program per position of the skb among the tracepoint's arguments (see top comment). */
#define SKB_AT(pos)                                                                            \
	SEC("raw_tp")                                                                          \
	int skb_at_##pos(struct bpf_raw_tracepoint_args *ctx)                                  \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)ctx->args[pos], false, 0, NULL, false);  \
	}

SKB_AT(0)
SKB_AT(1)
SKB_AT(2)
SKB_AT(3)
SKB_AT(4)
SKB_AT(5)

/* The same positions as tp_btf programs: one load per tracepoint (the target is fixed at load),
 * used where the kernel lets them read paged data (see read_paged). */
#define TP_BTF_SKB_AT(pos)                                                                     \
	SEC("tp_btf")                                                                          \
	int tp_btf_skb_at_##pos(unsigned long long *ctx)                                       \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)ctx[pos], false, 0, NULL, true);         \
	}

TP_BTF_SKB_AT(0)
TP_BTF_SKB_AT(1)
TP_BTF_SKB_AT(2)
TP_BTF_SKB_AT(3)
TP_BTF_SKB_AT(4)
TP_BTF_SKB_AT(5)

/* skb:kfree_skb and any tracepoint with an `enum skb_drop_reason` argument: the pair of
 * positions (skb, reason) is part of the program, for the same reason as above. */
#define SKB_AT_REASON_AT(pos, rpos)                                                            \
	SEC("raw_tp")                                                                          \
	int skb_at_##pos##_reason_at_##rpos(struct bpf_raw_tracepoint_args *ctx)               \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)ctx->args[pos], true,                    \
			       (__u32)ctx->args[rpos], NULL, false);                           \
	}

#define TP_BTF_SKB_AT_REASON_AT(pos, rpos)                                                     \
	SEC("tp_btf")                                                                          \
	int tp_btf_skb_at_##pos##_reason_at_##rpos(unsigned long long *ctx)                    \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)ctx[pos], true, (__u32)ctx[rpos], NULL,  \
			       true);                                                          \
	}

SKB_AT_REASON_AT(0, 1)
SKB_AT_REASON_AT(0, 2)
SKB_AT_REASON_AT(0, 3)
TP_BTF_SKB_AT_REASON_AT(0, 1)
TP_BTF_SKB_AT_REASON_AT(0, 2)
TP_BTF_SKB_AT_REASON_AT(0, 3)

/*
 * Kernel functions. Families by skb position (0 to 5: the x86-64 and arm64 register
 * arguments): kprobe (single attachments), kprobe.multi (one link for many functions, 5.18+
 * with CONFIG_FPROBE), fentry, and the entry halves of kretprobe and fexit probes. fentry and
 * fexit programs load in per-function instances (see the top comment).
 */
#define KPROBE_SKB_AT(pos, n)                                                                  \
	SEC("kprobe")                                                                          \
	int kprobe_skb_at_##pos(struct pt_regs *ctx)                                           \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)PT_REGS_PARM##n(ctx), false, 0, NULL, false); \
	}                                                                                      \
	SEC("kprobe.multi")                                                                    \
	int kmulti_skb_at_##pos(struct pt_regs *ctx)                                           \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)PT_REGS_PARM##n(ctx), false, 0, NULL, false); \
	}                                                                                      \
	SEC("kprobe")                                                                          \
	int kret_entry_at_##pos(struct pt_regs *ctx)                                           \
	{                                                                                      \
		return kret_entry(ctx, (struct sk_buff *)PT_REGS_PARM##n(ctx));                \
	}                                                                                      \
	SEC("kprobe.multi")                                                                    \
	int kmulti_ret_entry_at_##pos(struct pt_regs *ctx)                                     \
	{                                                                                      \
		return kret_entry(ctx, (struct sk_buff *)PT_REGS_PARM##n(ctx));                \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_skb_at_##pos(unsigned long long *ctx)                                       \
	{                                                                                      \
		return process(ctx, (struct sk_buff *)ctx[pos], false, 0, NULL, false);        \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fexit_entry_at_##pos(unsigned long long *ctx)                                      \
	{                                                                                      \
		return kret_entry(ctx, (struct sk_buff *)ctx[pos]);                            \
	}                                                                                      \
	SEC("kprobe")                                                                          \
	int kprobe_track_end_at_##pos(struct pt_regs *ctx)                                     \
	{                                                                                      \
		return track_end(ctx, (struct sk_buff *)PT_REGS_PARM##n(ctx));                 \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_track_end_at_##pos(unsigned long long *ctx)                                 \
	{                                                                                      \
		return track_end(ctx, (struct sk_buff *)ctx[pos]);                             \
	}

/* The entry half of kretprobe and fexit probes. The depth is pushed whatever process() then
 * does (a filter may drop the packet), so that the return pops the same level. */
static __always_inline int kret_entry(void *ctx, struct sk_buff *skb)
{
	struct kret_key key = {};

	kret_push(ctx, &key);
	return process(ctx, skb, false, 0, &key, false);
}

/* The return half of kretprobe and fexit probes: the parked record, with the return value. */
static __always_inline int complete(void *ctx, __s64 retval)
{
	struct kret_key key = {};
	__u32 probe = probe_identity(ctx);
	/* 64-bit: a 32-bit size gets zero-extended in a register copy the clamp does not cover. */
	__u64 size, wake;
	struct trail_probe_stats *stats;
	struct trail_event *ev;

	if (!kret_pop(ctx, &key))
		return 0;
	stats = bpf_map_lookup_elem(&probe_stats, &probe);
	ev = bpf_map_lookup_elem(&kret_pending, &key);
	if (!stats || !ev)
		/* No record: the entry emitted none (filtered out, or a loss it counted). */
		return 0;
	ev->flags |= TRAIL_F_RETVAL;
	ev->retval = retval;
	size = (__u64)sizeof(*ev) + ev->caplen + ev->stack_bytes;
	wake = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= cfg.wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
	/* Separate instructions for the clamp: the verifier needs size <= record_max. */
	barrier_var(size);
	if (size > cfg.record_max)
		size = cfg.record_max;
	barrier_var(size);
	if (bpf_ringbuf_output(&events, ev, size, wake))
		count_lost(stats);
	bpf_map_delete_elem(&kret_pending, &key);
	return 0;
}

/*
 * Tracking end points (internal probes, no event): the function frees the skb's data buffer
 * (TRAIL_PROBE_END_HEAD; when this is the last reference) and/or the sk_buff itself
 * (TRAIL_PROBE_END_SKB). A buffer or skb reused after this starts a new id even when its bytes
 * fingerprint like the old packet.
 */
static __always_inline int track_end(void *ctx, struct sk_buff *skb)
{
	__u32 probe = probe_identity(ctx);
	struct trail_probe_config *probe_cfg;
	__u64 addr = (__u64)skb, head;

	if (!skb || probe >= TRAIL_MAX_PROBES)
		return 0;
	probe_cfg = bpf_map_lookup_elem(&probe_config, &probe);
	if (!probe_cfg)
		return 0;
	if (probe_cfg->flags & TRAIL_PROBE_END_HEAD) {
		unsigned char *h = BPF_CORE_READ(skb, head);
		struct skb_shared_info *shinfo =
			(struct skb_shared_info *)(h + BPF_CORE_READ(skb, end));
		__u32 dataref = BPF_CORE_READ(shinfo, dataref.counter);

		head = (__u64)h;
		if ((probe_cfg->flags & TRAIL_PROBE_END_ALWAYS) || (dataref & SKB_DATAREF_MASK) <= 1)
			bpf_map_delete_elem(&track_heads, &head);
	}
	if (probe_cfg->flags & TRAIL_PROBE_END_SKB)
		bpf_map_delete_elem(&track_skbs, &addr);
	return 0;
}

KPROBE_SKB_AT(0, 1)
KPROBE_SKB_AT(1, 2)
KPROBE_SKB_AT(2, 3)
KPROBE_SKB_AT(3, 4)
KPROBE_SKB_AT(4, 5)
KPROBE_SKB_AT(5, 6)

SEC("kretprobe")
int kretprobe_skb(struct pt_regs *ctx)
{
	return complete(ctx, (__s64)PT_REGS_RC(ctx));
}

SEC("kretprobe.multi")
int kmulti_ret_skb(struct pt_regs *ctx)
{
	return complete(ctx, (__s64)PT_REGS_RC(ctx));
}

SEC("fexit")
int fexit_skb(unsigned long long *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return complete(ctx, (__s64)ret);
}
