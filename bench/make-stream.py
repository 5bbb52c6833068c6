#!/usr/bin/env python3
"""Writes a synthetic trail stream shaped like trail-capture output, for benchmarks.

Usage: make-stream.py EVENTS > stream.trail

Each event has common, probe, packet (an 84-byte Ethernet/IPv4/TCP frame), skb, dev, netns
and tracking sections; one in ten has a drop section. 1024 distinct events are encoded once
and repeated with fresh timestamps, so that a million events take a few seconds.
"""

import struct
import sys


def pack(value):
    """Minimal MessagePack encoder for what trail writes: maps, strings, ints, bools, bytes."""
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        if 0 <= value < 1 << 8:
            return b"\xcc" + struct.pack(">B", value)
        if 0 <= value < 1 << 16:
            return b"\xcd" + struct.pack(">H", value)
        if 0 <= value < 1 << 32:
            return b"\xce" + struct.pack(">I", value)
        if 0 <= value:
            return b"\xcf" + struct.pack(">Q", value)
        if value >= -32:
            return struct.pack(">b", value)
        return b"\xd3" + struct.pack(">q", value)
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) < 32:
            return bytes([0xA0 | len(raw)]) + raw
        return b"\xd9" + bytes([len(raw)]) + raw
    if isinstance(value, bytes):
        return b"\xc4" + bytes([len(value)]) + value
    if isinstance(value, dict):
        out = bytes([0x80 | len(value)]) if len(value) < 16 else b"\xde" + struct.pack(">H", len(value))
        for key, item in value.items():
            out += pack(key) + pack(item)
        return out
    if isinstance(value, list):
        out = bytes([0x90 | len(value)])
        for item in value:
            out += pack(item)
        return out
    raise TypeError(type(value))


def packet(i):
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ports = [443, 80, 53, 8080][i % 4]
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + 30, i & 0xFFFF, 0, 64, 6, 0,
                     bytes([192, 0, 2, 1 + i % 3]), bytes([198, 51, 100, 7]))
    tcp = struct.pack(">HHIIBBHHH", 40000 + i % 1000, ports, i, 0, 0x50, 0x02, 65535, 0, 0)
    return eth + ip + tcp + b"\x00" * 30


def rest_of_event(i):
    """Every section but common, encoded once per template."""
    probes = ["net:netif_receive_skb", "net:net_dev_start_xmit", "skb:consume_skb", "net:netif_rx"]
    sections = {
        "probe": {"kind": "tracepoint", "name": probes[i % 4]},
        "packet": {"data": packet(i), "len": 84, "layer": "l2", "linktype": 1},
        "skb": {
            "addr": 0xFFFF888000000000 + i * 256, "head": 0xFFFF888100000000 + i * 2048,
            "len": 70, "data_len": 0, "mark": i % 7, "hash": 0x12345678 + i,
            "protocol": 0x0800, "pkt_type": 0, "priority": 0, "ip_summed": 1,
            "cloned": False, "users": 1, "dataref": 1, "gso_size": 0, "gso_segs": 0, "gso_type": 0,
        },
        "dev": {"ifindex": 2 + i % 3, "name": ["veth0", "veth1", "eth0"][i % 3]},
        "netns": {"inum": 4026531840 + i % 2},
        "tracking": {"first_seen": 1_000_000 + i // 4, "orig_head": 0xFFFF888100000000 + (i // 4) * 2048},
    }
    if i % 10 == 9:
        sections["drop"] = {"reason": ["NETFILTER_DROP", "NO_SOCKET"][(i // 10) % 2], "code": 5}
    return sections


def main():
    count = int(sys.argv[1])
    out = sys.stdout.buffer
    header = {
        "version": [1, 0], "tool": "bench", "tool_version": "0", "host": "bench", "kernel": "",
        "clock": {"source": "monotonic", "realtime_offset_ns": 0}, "command": ["make-stream.py"],
        "probes": [], "snaplen": 256, "started_ns": 0,
        "pipeline": [{"tool": "bench", "version": "0", "args": []}],
    }
    payload = pack(header)
    out.write(b"\xc1TRAIL\x01\x00H" + struct.pack("<I", len(payload)) + payload)
    templates = []
    for i in range(1024):
        rest = rest_of_event(i)
        encoded = b"".join(pack(k) + pack(v) for k, v in rest.items())
        templates.append((len(rest) + 1, encoded))
    comms = [pack("ksoftirqd/0"), pack("curl"), pack("nginx")]
    chunk = []
    for i in range(count):
        entries, encoded = templates[i % 1024]
        common = (b"\x85" + pack("timestamp") + pack(1_000_000_000 + i * 1000) + pack("cpu") + pack(i % 2)
                  + pack("pid") + pack(i % 5000) + pack("tid") + pack(i % 5000)
                  + pack("comm") + comms[i % 3])
        body = bytes([0x80 | entries]) + pack("common") + common + encoded
        chunk.append(b"E" + struct.pack("<I", len(body)) + body)
        if len(chunk) == 4096:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))


if __name__ == "__main__":
    main()
