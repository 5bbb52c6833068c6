/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Layout shared by capture.bpf.c and lib/capture (through the skeleton's generated types).
 *
 * One ring-buffer record = struct trail_event, then `caplen` packet bytes, then `stack_bytes`
 * of kernel stack (u64 addresses). Records are variable-size: only what was captured travels.
 * Fields are ordered so that the struct has no implicit padding (the Rust side copies it with
 * a size check, never by pointer cast).
 */
#ifndef TRAIL_CAPTURE_H
#define TRAIL_CAPTURE_H

/*
 * Constants shared with user space are enum values, not macros: BTF carries enums, so the
 * skeleton's generated `types` give them to Rust (the dummy globals in capture.bpf.c force
 * their emission) and nothing is copied by hand.
 */

/* Sizes and limits. */
enum trail_limit {
	/* Probes per run (cookie values are indices below this). */
	TRAIL_MAX_PROBES = 1024,
	/* Nesting levels per CPU for the scratch buffer: task, softirq, hardirq, NMI. */
	TRAIL_NEST_LEVELS = 4,
	/* Kernel stack frames kept at most (the kernel's default perf_event_max_stack is 127). */
	TRAIL_STACK_FRAMES = 127,
	TRAIL_STACK_BYTES = 127 * 8,
	/* Largest --snaplen. */
	TRAIL_SNAPLEN_MAX = 65535,
};

/* `fixed_probe` when the attach cookie tells the probe (user space leaves it as it is). */
#define TRAIL_NO_PROBE 0xffffffffU

/* trail_event.flags */
enum trail_event_flag {
	TRAIL_F_L3 = 1U << 0,           /* packet bytes start at the network header */
	TRAIL_F_DEV = 1U << 1,          /* skb->dev was set: ifindex/ifname valid */
	TRAIL_F_NETNS = 1U << 2,        /* netns_inum valid */
	TRAIL_F_NETNS_COOKIE = 1U << 3, /* netns_cookie valid (kernel has net->net_cookie) */
	TRAIL_F_DROP = 1U << 4,         /* drop_reason valid */
	TRAIL_F_CT = 1U << 5,           /* conntrack fields valid */
	TRAIL_F_VLAN = 1U << 6,         /* offloaded VLAN tag present */
	TRAIL_F_PACKET = 1U << 7,       /* packet section collected */
	TRAIL_F_TRACKING = 1U << 8,     /* tracking id valid */
	TRAIL_F_SKB = 1U << 9,          /* skb metadata collected */
	TRAIL_F_NEW_ID = 1U << 10,      /* this event started a tracking id */
	TRAIL_F_REUSED = 1U << 11,      /* the id replaced a stale one for the same head */
	TRAIL_F_UNTRACKED = 1U << 12,   /* ct: skb marked untracked (ctinfo 7, no nf_conn) */
	TRAIL_F_RETVAL = 1U << 13,      /* retval valid (kretprobe, fexit) */
};

/* probe_config.flags */
enum trail_probe_flag {
	TRAIL_PROBE_STACK = 1U << 0, /* collect the kernel stack */
	TRAIL_PROBE_FREES = 1U << 1, /* the skb is freed at this tracepoint: end tracking */
	/* Internal tracking end points (track_end programs): what the function frees. */
	TRAIL_PROBE_END_HEAD = 1U << 2,   /* the data buffer, on its last reference */
	TRAIL_PROBE_END_SKB = 1U << 3,    /* the sk_buff */
	TRAIL_PROBE_END_ALWAYS = 1U << 4, /* the data buffer, whatever dataref says */
};

/* Collector switches (trail_config.collectors). */
enum trail_collector {
	TRAIL_C_SKB = 1U << 0,
	TRAIL_C_DEV = 1U << 1,
	TRAIL_C_NETNS = 1U << 2,
	TRAIL_C_CT = 1U << 3,
	TRAIL_C_TRACKING = 1U << 4,
	TRAIL_C_PACKET = 1U << 5,
};

/* Selectors (trail_config.selectors): which filters run before an event is built. */
enum trail_selector {
	TRAIL_SEL_PACKET = 1U << 0, /* -f: trail_filter_l2/l3 */
	TRAIL_SEL_META = 1U << 1,   /* -m and its shortcuts: trail_meta */
	TRAIL_SEL_PID = 1U << 2,    /* --pid: select_pid */
	TRAIL_SEL_FOLLOW = 1U << 3, /* a packet selected once stays selected (tracking) */
};

/*
 * The programs' configuration: one read-only struct (rodata), set by user space before load,
 * so the verifier sees every field as a constant and prunes what is switched off. Every
 * instance of the object gets the same values except `fixed_probe`.
 */
struct trail_config {
	/* Wake the reader only when this much data waits (it also polls on a timer). */
	__u64 wakeup_bytes;
	/* Packet bytes kept per event (--snaplen). */
	__u32 snaplen;
	/* enum trail_collector bits. */
	__u32 collectors;
	/* Value size of `scratch` (struct + snaplen + stack), so the verifier can bound copies. */
	__u32 record_max;
	/* enum trail_selector bits: which filters run before an event is built, see selected(). */
	__u32 selectors;
	/* --pid, with TRAIL_SEL_PID. */
	__u32 select_pid;
	/* The probe id of every program of this instance, or TRAIL_NO_PROBE: the attach cookie. */
	__u32 fixed_probe;
};

struct trail_ct_tuple {
	__u8 src[16];
	__u8 dst[16];
	/* nf_conntrack_man_proto / dst.u as stored (network order; ICMP: dst = type, code) */
	__u8 src_u[2];
	__u8 dst_u[2];
	__u16 l3num;
	__u8 proto;
	__u8 pad[3];
};

struct trail_event {
	__u64 timestamp;
	__u64 skb_addr;
	__u64 head;
	__u64 track_first_seen;
	__u64 track_orig_head;
	__u64 netns_cookie;
	__s64 retval;
	__u32 probe_id;
	__u32 cpu;
	__u32 pid;
	__u32 tid;
	char comm[16];
	__u32 flags;
	/* skb */
	__u32 len;
	__u32 data_len;
	__u32 mark;
	__u32 hash;
	__u32 priority;
	__u32 users;
	__u32 dataref;
	__u32 gso_type;
	__u16 gso_size;
	__u16 gso_segs;
	__u16 protocol; /* host order */
	__u16 vlan_tci;
	__u16 vlan_proto; /* host order */
	__u8 pkt_type;
	__u8 ip_summed;
	__u8 cloned;
	__u8 ct_info;
	__u16 ct_zone;
	/* dev */
	__u32 ifindex;
	__u32 skb_iif;
	char ifname[16];
	/* netns, drop */
	__u32 netns_inum;
	__u32 drop_reason;
	/* conntrack */
	__u32 ct_status;
	__u32 ct_mark;
	__u8 ct_proto_state;
	__u8 pad[3];
	struct trail_ct_tuple ct_orig;
	struct trail_ct_tuple ct_reply;
	/* packet: length from the capture start, bytes that follow this struct, stack bytes after */
	__u32 pkt_len;
	__u32 caplen;
	__u32 stack_bytes;
	__u32 pad2[2];
};

struct trail_probe_config {
	__u32 flags;
	__u32 pad;
};

/* Per-CPU counters per probe (index = probe id). */
struct trail_probe_stats {
	__u64 hits;
	__u64 lost;
};

/* Tracking table value: the id, and what the packet looked like when the id was given. */
struct trail_track {
	__u64 first_seen;
	__u64 orig_head;
	__u64 fingerprint;
};

#endif
