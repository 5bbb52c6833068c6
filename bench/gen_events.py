#!/usr/bin/env python3
"""Writes a synthetic trail stream for benchmarks: N events, 5-20 per journey.

usage: gen_events.py N OUT [--tracked]

Journeys start every 10 us and last 5-20 events 3 us apart, so about six are live at once;
pairs of neighbouring events are swapped now and then (two CPUs publishing out of order).
Each event has common, probe, skb (addr/head; heads are reused every 4096 journeys) and a
~100-byte Ethernet/IPv4/UDP packet unique to its journey; the last event of a journey is
skb:consume_skb. With --tracked every event also carries a kernel-style tracking id (input for
trail-sort); without, trail-track has to make ids (input for trail-track).

MessagePack is written by hand (no dependency): every integer as uint64 (0xcf), which any
reader accepts.
"""

import struct
import sys


def s(text):
    b = text.encode()
    assert len(b) < 32
    return bytes([0xA0 | len(b)]) + b


def u(v):
    return b"\xcf" + struct.pack(">Q", v)


def fixmap(n):
    return bytes([0x80 | n])


def binary(data):
    return b"\xc4" + bytes([len(data)]) + data


HEADER_FIELDS = [
    ("version", b"\x92\x01\x00"),
    ("tool", s("bench-gen")),
    ("tool_version", s("0")),
    ("host", s("bench")),
    ("kernel", s("6.18.0-bench")),
    ("clock", fixmap(2) + s("source") + s("monotonic") + s("realtime_offset_ns") + u(1_700_000_000_000_000_000)),
    ("command", b"\x91" + s("gen_events.py")),
    ("probes", b"\x90"),
    ("snaplen", u(256)),
    ("started_ns", u(0)),
    ("pipeline", b"\x90"),
]


def header():
    body = fixmap(len(HEADER_FIELDS)) + b"".join(s(k) + v for k, v in HEADER_FIELDS)
    return b"\xc1TRAIL\x01\x00" + b"H" + struct.pack("<I", len(body)) + body


PROBES = [s("net:netif_receive_skb"), s("net:ip_rcv"), s("net:net_dev_queue"), s("net:net_dev_xmit")]
CONSUME = s("skb:consume_skb")


def packet(j):
    payload = struct.pack(">QQ", j, j * 7919) * 4
    udp = struct.pack(">HHHH", 1024 + j % 50000, 53, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), j & 0xFFFF, 0x4000, 64, 17, 0,
                     bytes([10, 0, (j >> 8) & 255, j & 255]), bytes([10, 1, 0, 1])) + udp
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip


def event(ts, cpu, probe, addr, head, data, tracking):
    common = fixmap(5) + s("timestamp") + u(ts) + s("cpu") + u(cpu) + s("pid") + u(0) + s("tid") + u(0) + s("comm") + s("bench")
    probe_map = fixmap(2) + s("kind") + s("tracepoint") + s("name") + probe
    skb = fixmap(3) + s("addr") + u(addr) + s("head") + u(head) + s("len") + u(len(data))
    pkt = fixmap(4) + s("data") + binary(data) + s("len") + u(len(data)) + s("layer") + s("l2") + s("linktype") + u(1)
    sections = [s("common") + common, s("probe") + probe_map, s("skb") + skb, s("packet") + pkt]
    if tracking is not None:
        first, orig = tracking
        sections.append(s("tracking") + fixmap(3) + s("first_seen") + u(first) + s("orig_head") + u(orig)
                        + s("source") + s("kernel"))
    body = fixmap(len(sections)) + b"".join(sections)
    return b"E" + struct.pack("<I", len(body)) + body


def main():
    n = int(sys.argv[1])
    tracked = "--tracked" in sys.argv[3:]
    base = 1_000_000_000
    with open(sys.argv[2], "wb") as out:
        out.write(header())
        pending = []  # (ts, seq, frame) of started journeys, written in time order
        scheduled = 0
        j = 0
        while scheduled < n:
            start = base + j * 10_000
            count = min(5 + (j * 7) % 16, n - scheduled)
            head = 0xFFFF_8880_0000_0000 + (j % 4096) * 0x1000
            addr = 0xFFFF_8881_0000_0000 + (j % 4096) * 0x100
            data = packet(j)
            for k in range(count):
                ts = start + k * 3_000
                probe = CONSUME if k == count - 1 else PROBES[k % len(PROBES)]
                frame = event(ts, (j + k) % 2, probe, addr, head, data, (start, head) if tracked else None)
                pending.append((ts, scheduled, frame))
                scheduled += 1
            j += 1
            if len(pending) > 4096 or scheduled >= n:
                # Everything before the next journey's start is final.
                horizon = base + j * 10_000 if scheduled < n else float("inf")
                pending.sort()
                ready = [p for p in pending if p[0] < horizon]
                pending = [p for p in pending if p[0] >= horizon]
                # Two CPUs: swap neighbours now and then.
                for i in range(0, len(ready) - 1, 7):
                    ready[i], ready[i + 1] = ready[i + 1], ready[i]
                out.write(b"".join(p[2] for p in ready))


if __name__ == "__main__":
    main()
