//! trail-to-parquet through the real binary: every event field read back with the parquet crate,
//! file metadata (dictionaries, statistics, page indexes, sort order), Hive datasets and append,
//! bad and truncated input, and interop with DuckDB and pyarrow from PyPI (the queries of
//! README.md, checked against numbers computed here from the events).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Int32Type, Int64Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use etherparse::PacketBuilder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{json, Map, Value};
use trail::model::codec::{RawMap, Writer};
use trail::model::event::*;

use crate::common::{self, bin, run, run_ok};

const TOOL: &str = "trail-to-parquet";

/// One cell as JSON: integers as numbers, strings, bytes as hex, structs as objects, lists as
/// arrays, dictionaries resolved to their values.
fn cell(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::UInt8 => json!(array.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => json!(array.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => json!(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json!(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::Timestamp(_, _) => {
            json!(array.as_primitive::<TimestampNanosecondType>().value(i))
        }
        DataType::Boolean => json!(array.as_boolean().value(i)),
        DataType::Utf8 => json!(array.as_string::<i32>().value(i)),
        DataType::Binary => json!(hex(array.as_binary::<i32>().value(i))),
        DataType::Dictionary(_, _) => {
            let dict = array.as_dictionary::<Int32Type>();
            cell(dict.values().as_ref(), dict.keys().value(i) as usize)
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i)))
                    .collect(),
            )
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let values = list.value(i);
            Value::Array(
                (0..values.len())
                    .map(|j| cell(values.as_ref(), j))
                    .collect(),
            )
        }
        other => panic!("unexpected column type {other}"),
    }
}

fn batches_rows(batches: &[RecordBatch]) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            rows.push(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i)))
                    .collect(),
            );
        }
    }
    rows
}

/// Every row of a Parquet file, with the parquet crate's Arrow reader.
fn read_rows(path: &Path) -> Vec<Map<String, Value>> {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    batches_rows(&batches)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

/// Ethernet + VLAN 100 + IPv4 10.0.0.1 → 10.0.0.2 TTL 61 + TCP 40000 → 443 SYN, 5 bytes payload.
fn tcp_vlan_frame() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(1), mac(2))
        .single_vlan(100u16.try_into().expect("vlan"))
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 61)
        .tcp(40000, 443, 1000, 5000)
        .syn()
        .write(&mut out, b"hello")
        .expect("build frame");
    out
}

/// VXLAN (VNI 42) over IPv4/UDP 10.1.1.1 → 10.1.1.2, carrying UDP 172.16.0.1:1111 →
/// 172.16.0.2:2222.
fn vxlan_frame() -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(mac(3), mac(4))
        .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
        .udp(1111, 2222)
        .write(&mut inner, b"x")
        .expect("inner");
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    payload.extend_from_slice(&inner);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(5), mac(6))
        .ipv4([10, 1, 1, 1], [10, 1, 1, 2], 63)
        .udp(5555, 4789)
        .write(&mut out, &payload)
        .expect("outer");
    out
}

/// An event with every section and every optional field set.
fn full_event(ts: u64, tid: u32, data: Vec<u8>) -> Event {
    let len = data.len() as u32 + 100;
    Event {
        common: Some(Common {
            timestamp: ts,
            cpu: 3,
            pid: 77,
            tid,
            comm: "curl".into(),
            host: None,
        }),
        probe: Some(Probe {
            kind: ProbeKind::Kprobe,
            name: "ip_rcv".into(),
        }),
        packet: Some(Packet {
            data: Bytes(data),
            len,
            layer: Layer::L2,
            linktype: linktype::ETHERNET,
        }),
        skb: Some(Skb {
            addr: 0xffff_8880_1234_5600,
            head: 0xffff_8880_abcd_0000,
            len: 1514,
            data_len: 1000,
            mark: 0x42,
            hash: 0xdead_beef,
            protocol: 0x0800,
            pkt_type: 3,
            priority: 6,
            ip_summed: 2,
            cloned: true,
            users: 2,
            dataref: 3,
            gso_size: 1448,
            gso_segs: 4,
            gso_type: 1,
            vlan_tci: Some(0x2064),
            vlan_proto: Some(0x8100),
        }),
        dev: Some(Dev {
            ifindex: 7,
            name: "veth0".into(),
            rx_ifindex: Some(9),
        }),
        netns: Some(Netns {
            inum: 4026531840,
            cookie: Some(12345),
        }),
        drop: Some(Drop {
            reason: "NETFILTER_DROP".into(),
            code: 9,
            subsystem: Some("CORE".into()),
        }),
        tracking: Some(Tracking {
            first_seen: ts - 10,
            orig_head: 0xffff_8880_abcd_0000,
            source: "kernel".into(),
            index: Some(2),
            parent: Some("1-2".into()),
            link: Some("nat".into()),
        }),
        ct: Some(Conntrack {
            state: "established".into(),
            status: 0x18a,
            zone: 5,
            mark: 11,
            labels: Some(Bytes(vec![1, 2, 3])),
            orig: CtTuple {
                src: "10.0.0.1".into(),
                dst: "10.0.0.2".into(),
                proto: 6,
                sport: Some(40000),
                dport: Some(443),
                ..CtTuple::default()
            },
            reply: CtTuple {
                src: "10.0.0.2".into(),
                dst: "10.0.0.1".into(),
                proto: 1,
                icmp_type: Some(0),
                icmp_code: Some(0),
                icmp_id: Some(99),
                ..CtTuple::default()
            },
            proto_state: Some("ESTABLISHED".into()),
        }),
        nft: Some(Nft {
            table: "filter".into(),
            chain: "input".into(),
            table_handle: 1,
            chain_handle: 2,
            rule_handle: Some(3),
            verdict: "jump".into(),
            verdict_chain: Some("other".into()),
            policy: false,
        }),
        stack: Some(Stack {
            frames: vec![
                StackFrame {
                    addr: 0xffff_ffff_8100_0000,
                    symbol: Some("ip_rcv+0x10".into()),
                },
                StackFrame {
                    addr: 0xffff_ffff_8100_1000,
                    symbol: None,
                },
            ],
        }),
        retval: Some(-22),
    }
}

/// What the Parquet row of `full_event` must hold (every column but the dissected ones, which
/// depend on the frame).
fn full_expected(e: &Event, host: &str, offset: i64) -> Map<String, Value> {
    let c = e.common.as_ref().expect("common");
    let p = e.packet.as_ref().expect("packet");
    let t = e.tracking.as_ref().expect("tracking");
    let value = json!({
        "time": c.timestamp as i64 + offset,
        "timestamp_mono_ns": c.timestamp,
        "host": host,
        "kernel": "6.18.0-test",
        "probe_kind": "kprobe",
        "probe": "ip_rcv",
        "probe_spec": "k:ip_rcv",
        "cpu": 3, "pid": 77, "tid": c.tid, "comm": "curl",
        "ifindex": 7, "dev": "veth0", "rx_ifindex": 9,
        "netns_inum": 4026531840u32, "netns_cookie": 12345,
        "tracking_id": t.id(),
        "journey_index": 2,
        "tracking": {"first_seen": t.first_seen, "orig_head": t.orig_head, "source": "kernel",
                     "parent": "1-2", "link": "nat"},
        "drop_reason": "NETFILTER_DROP", "drop_code": 9, "drop_subsystem": "CORE",
        "retval": -22,
    });
    // Split in parts: one json! this size exceeds the macro recursion limit.
    let skb = json!({
        "skb_addr": 0xffff_8880_1234_5600u64, "skb_head": 0xffff_8880_abcd_0000u64,
        "skb_len": 1514, "skb_data_len": 1000, "skb_mark": 0x42, "skb_hash": 0xdead_beefu32,
        "skb_protocol": 0x0800, "skb_pkt_type": 3, "skb_priority": 6, "skb_ip_summed": 2,
        "skb_cloned": true, "skb_users": 2, "skb_dataref": 3, "skb_gso_size": 1448,
        "skb_gso_segs": 4, "skb_gso_type": 1, "skb_vlan_tci": 0x2064, "skb_vlan_proto": 0x8100,
        "packet_len": p.len, "packet_caplen": p.data.0.len(), "packet_layer": "l2",
        "packet_linktype": 1,
    });
    let nested = json!({
        "ct": {"state": "established", "status": 0x18a, "zone": 5, "mark": 11, "labels": "010203",
               "orig": {"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 6, "sport": 40000,
                        "dport": 443, "icmp_type": null, "icmp_code": null, "icmp_id": null},
               "reply": {"src": "10.0.0.2", "dst": "10.0.0.1", "proto": 1, "sport": null,
                         "dport": null, "icmp_type": 0, "icmp_code": 0, "icmp_id": 99},
               "proto_state": "ESTABLISHED"},
        "nft": {"table": "filter", "chain": "input", "table_handle": 1, "chain_handle": 2,
                "rule_handle": 3, "verdict": "jump", "verdict_chain": "other", "policy": false},
        "stack": [{"addr": 0xffff_ffff_8100_0000u64, "symbol": "ip_rcv+0x10"},
                  {"addr": 0xffff_ffff_8100_1000u64, "symbol": null}],
        "packet": hex(&p.data.0),
    });
    let mut map = Map::new();
    for part in [value, skb, nested] {
        let Value::Object(part) = part else {
            unreachable!("json! of an object")
        };
        map.extend(part);
    }
    map
}

fn tcp_vlan_dissected() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:02", "ethertype": 0x0800,
        "vlan": 100, "ip_version": 4, "src": "10.0.0.1", "dst": "10.0.0.2", "ip_proto": 6,
        "ttl": 61, "ip_len": 45, "sport": 40000, "dport": 443, "tcp_flags": 0x02,
        "payload_len": 5,
    }) else {
        unreachable!()
    };
    map
}

fn vxlan_dissected() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "eth_src": "02:00:00:00:00:05", "eth_dst": "02:00:00:00:00:06", "ethertype": 0x0800,
        "ip_version": 4, "src": "10.1.1.1", "dst": "10.1.1.2", "ip_proto": 17, "ttl": 63,
        "ip_len": 20 + 8 + 8 + 14 + 20 + 8 + 1, "sport": 5555, "dport": 4789,
        "payload_len": 8 + 14 + 20 + 8 + 1,
        "tunnel": "vxlan", "tunnel_vni": 42, "inner_src": "172.16.0.1",
        "inner_dst": "172.16.0.2", "inner_ip_proto": 17, "inner_sport": 1111,
        "inner_dport": 2222,
    }) else {
        unreachable!()
    };
    map
}

/// Compares a row with the expected cells; every column not named must be null.
fn assert_row(row: &Map<String, Value>, expected: &Map<String, Value>, what: &str) {
    for (column, value) in row {
        let want = expected.get(column).unwrap_or(&Value::Null);
        if column == "extra" && !value.is_null() {
            // JSON text: compare what it means, not its key order.
            let parse = |v: &Value| -> Value {
                serde_json::from_str(v.as_str().expect("extra is text")).expect("extra is JSON")
            };
            assert_eq!(parse(value), parse(want), "{what}: column extra");
            continue;
        }
        assert_eq!(value, want, "{what}: column {column}");
    }
    for column in expected.keys() {
        assert!(row.contains_key(column), "{what}: no column {column}");
    }
}

fn merged(mut a: Map<String, Value>, b: Map<String, Value>) -> Map<String, Value> {
    a.extend(b);
    a
}

/// Adds an unknown section to an encoded event, as a newer producer would.
fn with_section(event: &Event, key: &str, value: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    trail::model::codec::encode(event, &mut payload);
    let index = RawMap::parse(&payload).expect("map");
    let mut out = Vec::new();
    index.with_entry(&payload, key, value, &mut out);
    out
}

/// Two concatenated sections (different hosts and clock offsets, interleaved in time), full
/// and minimal events, an unknown probe kind and unknown sections.
fn round_trip_input() -> (Vec<u8>, Vec<Map<String, Value>>) {
    const OFFSET_A: i64 = 1_700_000_000_000_000_000;
    const OFFSET_B: i64 = 1_700_000_000_000_000_500;
    let mut expected = Vec::new();
    let mut writer = Writer::new(Vec::new());

    writer
        .write_header(&common::header("test", "alpha", OFFSET_A))
        .expect("header");
    let mut tid = 1000;
    for i in 0..7u64 {
        tid += 1;
        let (frame, dissected) = if i % 2 == 0 {
            (tcp_vlan_frame(), tcp_vlan_dissected())
        } else {
            (vxlan_frame(), vxlan_dissected())
        };
        let event = full_event(1_000 + i * 1_000, tid, frame);
        writer.write_event(&event).expect("event");
        expected.push(merged(full_expected(&event, "alpha", OFFSET_A), dissected));
    }
    // Only `common`, with its own host: every other column null.
    tid += 1;
    let mut bare = common::event(2_500, "x", None);
    bare.probe = None;
    if let Some(c) = bare.common.as_mut() {
        c.tid = tid;
        c.host = Some("merged-host".into());
    }
    writer.write_event(&bare).expect("event");
    expected.push(
        json!({"time": 2_500 + OFFSET_A, "timestamp_mono_ns": 2_500, "host": "merged-host",
               "kernel": "6.18.0-test", "cpu": 1, "pid": 42, "tid": tid, "comm": "test"})
        .as_object()
        .expect("object")
        .clone(),
    );
    // Unknown sections: one JSON-friendly, one holding bytes JSON cannot carry.
    tid += 1;
    let mut plain = common::event(3_500, "net:netif_rx", None);
    if let Some(c) = plain.common.as_mut() {
        c.tid = tid;
    }
    let mut future = Vec::new();
    trail::model::codec::encode(&json!({"answer": 42, "name": "z"}), &mut future);
    let payload = with_section(&plain, "future", &future);
    let mut bin = Vec::new();
    rmp::encode::write_bin(&mut bin, &[0xde, 0xad]).expect("bin");
    let index = RawMap::parse(&payload).expect("map");
    let mut payload2 = Vec::new();
    index.with_entry(&payload, "blob", &bin, &mut payload2);
    writer
        .write_frame(trail::model::codec::FrameKind::Event, &payload2)
        .expect("event");
    expected.push(
        json!({"time": 3_500 + OFFSET_A, "timestamp_mono_ns": 3_500, "host": "alpha",
               "kernel": "6.18.0-test", "cpu": 1, "pid": 42, "tid": tid, "comm": "test",
               "probe_kind": "tracepoint", "probe": "net:netif_rx",
               "probe_spec": "tp:net:netif_rx",
               "extra": r#"{"future":{"answer":42,"name":"z"},"blob":{"$msgpack":"c402dead"}}"#})
        .as_object()
        .expect("object")
        .clone(),
    );
    // A probe kind this build does not know keeps its text.
    tid += 1;
    let mut newer = common::event(4_200, "some_fn", None);
    if let Some(c) = newer.common.as_mut() {
        c.tid = tid;
    }
    let mut probe = Vec::new();
    trail::model::codec::encode(&json!({"kind": "uprobe", "name": "some_fn"}), &mut probe);
    let payload = with_section(&newer, "probe", &probe);
    writer
        .write_frame(trail::model::codec::FrameKind::Event, &payload)
        .expect("event");
    expected.push(
        json!({"time": 4_200 + OFFSET_A, "timestamp_mono_ns": 4_200, "host": "alpha",
               "kernel": "6.18.0-test", "cpu": 1, "pid": 42, "tid": tid, "comm": "test",
               "probe_kind": "uprobe", "probe": "some_fn", "probe_spec": "uprobe:some_fn"})
        .as_object()
        .expect("object")
        .clone(),
    );
    writer
        .write_lost(&Lost {
            probe: "tp:net:netif_rx".into(),
            count: 5,
            ..Lost::default()
        })
        .expect("lost");

    // Second section: another host and offset; its events fall between the first section's.
    writer
        .write_header(&common::header("test", "beta", OFFSET_B))
        .expect("header");
    for i in 0..5u64 {
        tid += 1;
        let event = full_event(800 + i * 1_300, tid, tcp_vlan_frame());
        writer.write_event(&event).expect("event");
        expected.push(merged(
            full_expected(&event, "beta", OFFSET_B),
            tcp_vlan_dissected(),
        ));
    }
    (writer.into_inner().expect("flush"), expected)
}

fn by_tid(rows: &[Map<String, Value>]) -> HashMap<u64, &Map<String, Value>> {
    rows.iter()
        .map(|r| (r["tid"].as_u64().expect("tid"), r))
        .collect()
}

fn times(rows: &[Map<String, Value>]) -> Vec<i64> {
    rows.iter()
        .map(|r| r["time"].as_i64().expect("time"))
        .collect()
}

#[test]
fn round_trip_every_field_across_sections() {
    let (input, expected) = round_trip_input();
    // Tiny row groups and two threads: many row groups, encoded in parallel, re-ordered.
    for args in [
        vec!["--row-group-size", "3", "--threads", "2"],
        vec![
            "--row-group-size",
            "4",
            "--threads",
            "1",
            "--sort-window",
            "0",
        ],
        vec![],
    ] {
        let dir = temp_dir();
        let out = dir.path().join("t.parquet");
        let mut all = args.clone();
        all.extend(["-o", out.to_str().expect("utf-8")]);
        run_ok(TOOL, &all, &input);
        let rows = read_rows(&out);
        assert_eq!(rows.len(), expected.len(), "{args:?}: row count");
        let rows_by_tid = by_tid(&rows);
        for want in &expected {
            let tid = want["tid"].as_u64().expect("tid");
            let row = rows_by_tid
                .get(&tid)
                .unwrap_or_else(|| panic!("{args:?}: no row for tid {tid}"));
            assert_row(row, want, &format!("{args:?} tid {tid}"));
        }
        let mut sorted = times(&rows);
        sorted.sort();
        if !args.contains(&"0") {
            assert_eq!(times(&rows), sorted, "{args:?}: rows sorted by time");
        }
    }
}

#[test]
fn packet_bytes_can_be_left_out_and_stdout_works() {
    let (input, expected) = round_trip_input();
    let dir = temp_dir();
    let out = dir.path().join("t.parquet");
    let bytes = run_ok(
        TOOL,
        &["--no-packet-bytes", "--compression", "snappy"],
        &input,
    );
    fs::write(&out, bytes).expect("write");
    let rows = read_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(!rows[0].contains_key("packet"), "packet column left out");
    assert!(
        rows.iter().any(|r| r["src"] == json!("10.0.0.1")),
        "dissected fields stay"
    );
}

#[test]
fn metadata_has_dictionaries_statistics_page_indexes_and_provenance() {
    let (input, expected) = round_trip_input();
    let dir = temp_dir();
    let out = dir.path().join("t.parquet");
    run_ok(
        TOOL,
        &["-o", out.to_str().expect("utf-8"), "--row-group-size", "5"],
        &input,
    );
    let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
        .with_page_index()
        .build();
    let reader =
        SerializedFileReader::new_with_options(fs::File::open(&out).expect("open"), options)
            .expect("parquet");
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows() as usize, expected.len());
    assert_eq!(meta.num_row_groups(), expected.len().div_ceil(5));
    let schema = meta.file_metadata().schema_descr();
    let leaf = |name: &str| {
        (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == name)
            .unwrap_or_else(|| panic!("no leaf column {name}"))
    };
    let all_times: Vec<i64> = times(&read_rows(&out));
    for (g, group) in meta.row_groups().iter().enumerate() {
        for name in ["probe", "host", "comm", "drop_reason", "dev"] {
            let column = group.column(leaf(name));
            assert!(
                column.dictionary_page_offset().is_some(),
                "row group {g}: {name} has a dictionary page"
            );
            assert!(
                column
                    .encodings()
                    .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY),
                "row group {g}: {name} is dictionary-encoded"
            );
        }
        let time = group.column(leaf("time"));
        assert!(
            matches!(time.compression(), parquet::basic::Compression::ZSTD(_)),
            "zstd by default"
        );
        let stats = time.statistics().expect("time statistics");
        let rows = &all_times[g * 5..(g * 5 + 5).min(all_times.len())];
        let min = i64::from_le_bytes(stats.min_bytes_opt().expect("min").try_into().expect("8"));
        let max = i64::from_le_bytes(stats.max_bytes_opt().expect("max").try_into().expect("8"));
        assert_eq!(
            min,
            *rows.iter().min().expect("rows"),
            "row group {g} min time"
        );
        assert_eq!(
            max,
            *rows.iter().max().expect("rows"),
            "row group {g} max time"
        );
        for (i, column) in group.columns().iter().enumerate() {
            assert!(
                column.column_index_range().is_some() && column.offset_index_range().is_some(),
                "row group {g} leaf {i}: page indexes written"
            );
        }
        let sorting = group.sorting_columns().expect("sorting columns declared");
        assert_eq!(sorting[0].column_idx, 0);
        assert!(!sorting[0].descending);
    }
    let kv: HashMap<String, String> = meta
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        kv["trail.parquet_schema"],
        trail::to_parquet::columns::SCHEMA_VERSION
    );
    assert_eq!(kv["trail.sorted"], "file");
    assert_eq!(kv["trail.sections"], "2");
    let headers: Vec<Header> = serde_json::from_str(&kv["trail.headers"]).expect("headers");
    assert_eq!(
        headers.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    for h in &headers {
        assert_eq!(
            h.pipeline.last().map(|s| s.tool.as_str()),
            Some("trail-to-parquet"),
            "this stage recorded in the pipeline"
        );
    }
    assert_eq!(kv["trail.lost"], r#"{"tp:net:netif_rx":5}"#);
    assert!(kv.contains_key("ARROW:schema"), "Arrow schema embedded");
}

/// A stream whose time order is broken by more than the sort window is flagged as sorted per
/// row group only; within each row group rows stay sorted.
#[test]
fn order_across_row_groups_is_reported() {
    let header = common::header("test", "h", 0);
    let mut events = Vec::new();
    for i in 0..40u64 {
        // Two interleaved runs far apart in time: no small window can merge them.
        let ts = if i % 2 == 0 { i } else { 1_000_000 - i };
        events.push(common::event(ts, "p", None));
    }
    let input = common::stream(&header, &events);
    for (window, sorted) in [("0", "row-group"), ("64", "file")] {
        let dir = temp_dir();
        let out = dir.path().join("t.parquet");
        let args = [
            "-o",
            out.to_str().expect("utf-8"),
            "--row-group-size",
            "8",
            "--sort-window",
            window,
        ];
        run_ok(TOOL, &args, &input);
        let reader = SerializedFileReader::new(fs::File::open(&out).expect("open")).expect("pq");
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .expect("kv")
            .iter()
            .find(|kv| kv.key == "trail.sorted")
            .and_then(|kv| kv.value.clone());
        assert_eq!(kv.as_deref(), Some(sorted), "window {window}");
        let t = times(&read_rows(&out));
        for group in t.chunks(8) {
            assert!(group.windows(2).all(|w| w[0] <= w[1]), "row group sorted");
        }
        if sorted == "file" {
            assert!(t.windows(2).all(|w| w[0] <= w[1]), "file sorted");
        }
    }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A synthetic stream from two hosts (two sections), `events` events each.
fn two_host_stream(events: usize, seed: u64) -> (Vec<u8>, Vec<(String, i64, Event)>) {
    let mut writer = Writer::new(Vec::new());
    let mut all = Vec::new();
    for (host, seed) in [("alpha", seed), ("beta", seed + 1)] {
        let synth = trail::model::synth::Synth::new(trail::model::synth::SynthConfig {
            seed,
            ..Default::default()
        });
        let mut header = synth.header();
        header.host = host.into();
        writer.write_header(&header).expect("header");
        for event in synth.take(events) {
            writer.write_event(&event).expect("event");
            all.push((host.to_string(), header.clock.realtime_offset_ns, event));
        }
    }
    (writer.into_inner().expect("flush"), all)
}

fn date_of(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .expect("date")
        .format("%Y-%m-%d")
        .to_string()
}

#[test]
fn partitioned_dataset_layout_and_append() {
    let (input, events) = two_host_stream(3_000, 5);
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for (host, offset, e) in &events {
        let c = e.common.as_ref().expect("common");
        let probe = &e.probe.as_ref().expect("probe").name;
        let dir = format!(
            "host={host}/date={}/probe={}",
            date_of(c.timestamp as i64 + offset),
            probe.replace(':', "%3A")
        );
        *want.entry(dir).or_default() += 1;
    }
    let root = temp_dir();
    let dataset = root.path().join("ds");
    let args = [
        "-o",
        dataset.to_str().expect("utf-8"),
        "--partition-by",
        "host,date,probe",
        "--row-group-size",
        "500",
    ];
    run_ok(TOOL, &args, &input);
    let first = parquet_files(&dataset);
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for file in &first {
        let relative = file.strip_prefix(&dataset).expect("under the dataset");
        let dir = relative
            .parent()
            .expect("dir")
            .to_str()
            .expect("utf-8")
            .to_string();
        let name = relative.file_name().expect("name").to_str().expect("utf-8");
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "file name {name}"
        );
        let rows = read_rows(file);
        assert!(!rows[0].contains_key("host") && !rows[0].contains_key("probe"));
        assert!(rows[0].contains_key("time") && rows[0].contains_key("src"));
        *got.entry(dir).or_default() += rows.len();
    }
    assert_eq!(got, want, "rows per partition");

    // Appending: a second run adds files and leaves the first run's untouched.
    let before: Vec<Vec<u8>> = first.iter().map(|f| fs::read(f).expect("read")).collect();
    run_ok(TOOL, &args, &input);
    let second = parquet_files(&dataset);
    assert_eq!(second.len(), 2 * first.len(), "one new file per partition");
    for (file, bytes) in first.iter().zip(&before) {
        assert_eq!(
            &fs::read(file).expect("read"),
            bytes,
            "{} unchanged",
            file.display()
        );
    }
}

fn truncated_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let (input, _) = two_host_stream(2_000, 9);
    let mut corrupt_event = common::stream(&common::header("t", "h", 0), &[]);
    corrupt_event.extend_from_slice(b"E\x03\x00\x00\x00\x92\x01\x02");
    // A well-formed map whose `skb` is not a map: only the full decode (in a worker) sees it.
    let mut bad_section = common::stream(
        &common::header("t", "h", 0),
        &[common::event(1, "p", None), common::event(2, "p", None)],
    );
    let mut payload = Vec::new();
    trail::model::codec::encode(
        &json!({"common": {"timestamp": 3}, "skb": "not a map"}),
        &mut payload,
    );
    bad_section.push(b'E');
    bad_section.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bad_section.extend_from_slice(&payload);
    vec![
        ("json", b"{\"not\": \"a stream\"}\n".to_vec()),
        ("empty", Vec::new()),
        ("truncated", input[..input.len() * 2 / 3].to_vec()),
        ("corrupt event", corrupt_event),
        ("bad section", bad_section),
    ]
}

#[test]
fn bad_and_truncated_input_leave_no_file() {
    for (what, input) in truncated_inputs() {
        for partitioned in [false, true] {
            let dir = temp_dir();
            let out = dir.path().join("out");
            let mut args = vec![
                "-o",
                out.to_str().expect("utf-8"),
                "--row-group-size",
                "300",
            ];
            if partitioned {
                args.extend(["--partition-by", "probe"]);
            }
            let output = run(TOOL, &args, &input);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{what}: exit 2 ({stderr})");
            assert!(
                stderr.starts_with("trail-to-parquet: error: "),
                "{what}: one error line: {stderr}"
            );
            let left: Vec<PathBuf> = if out.is_dir() {
                parquet_files(&out)
            } else {
                parquet_files(dir.path())
            };
            assert!(
                left.is_empty(),
                "{what} (partitioned {partitioned}): left {left:?}"
            );
        }
    }
}

#[test]
fn usage_errors() {
    let (input, _) = round_trip_input();
    let output = run(TOOL, &["--partition-by", "host"], &input);
    assert_eq!(output.status.code(), Some(2), "--partition-by needs -o");
    let output = run(TOOL, &["--partition-by", "colour", "-o", "x"], &input);
    assert_eq!(output.status.code(), Some(2), "unknown partition key");
}

/// The refusal to write binary Parquet to a terminal, under a pseudo-terminal from `script`.
#[test]
fn refuses_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) not installed: terminal refusal not tested");
        return;
    }
    let command = format!("{} < /dev/null", bin(TOOL).display());
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("refusing to write Parquet to a terminal"),
        "{text}"
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
}

// ---- interop with DuckDB and pyarrow -------------------------------------------------------

/// The interop venv's python (tests/interop/setup.sh installs DuckDB and pyarrow from PyPI
/// when missing).
fn interop_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join("tests/interop/setup.sh"))
        .output()
        .expect("run tests/interop/setup.sh");
    assert!(
        output.status.success(),
        "tests/interop/setup.sh failed (DuckDB and pyarrow come from PyPI): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The SQL blocks of README.md's "Analyse with SQL" section, in order.
fn doc_queries() -> Vec<String> {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = doc
        .split("## Analyse with SQL")
        .nth(1)
        .expect("an 'Analyse with SQL' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or("").trim().to_string())
        .collect()
}

/// Runs `queries` with DuckDB in `dir`; each result as a list of rows (JSON values).
fn duckdb(python: &Path, dir: &Path, queries: &[String]) -> Vec<Vec<Vec<Value>>> {
    let script = r#"
import duckdb, json, sys
queries = json.load(sys.stdin)
out = []
for q in queries:
    rows = duckdb.sql(q).fetchall()
    out.append([[v if isinstance(v, (int, float, str, type(None))) else str(v) for v in r]
                for r in rows])
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(queries).expect("json").as_bytes())
        .expect("write queries");
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the script")
}

#[test]
fn duckdb_runs_the_documented_queries() {
    let python = interop_python();
    let (input, events) = two_host_stream(20_000, 1);
    let dir = temp_dir();
    let out = dir.path().join("trace.parquet");
    run_ok(TOOL, &["-o", out.to_str().expect("utf-8")], &input);
    let queries = doc_queries();
    assert_eq!(queries.len(), 4, "four documented queries");
    let results = duckdb(&python, dir.path(), &queries);

    // 1. Drops per host and reason.
    let mut drops: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (host, _, e) in &events {
        if let Some(d) = &e.drop {
            *drops.entry((host.clone(), d.reason.clone())).or_default() += 1;
        }
    }
    let mut want: Vec<Vec<Value>> = drops
        .iter()
        .map(|((h, r), n)| vec![json!(h), json!(r), json!(n)])
        .collect();
    // The query orders by count, then host and reason: so does this.
    let key = |r: &Vec<Value>| {
        (
            -r[2].as_i64().unwrap_or(0),
            r[0].as_str().unwrap_or("").to_string(),
            r[1].as_str().unwrap_or("").to_string(),
        )
    };
    want.sort_by_key(key);
    assert_eq!(results[0], want, "drops per reason");

    // 2. Latency from net_dev_queue to netif_receive_skb per journey, per host.
    let mut first: HashMap<(String, String, &str), i64> = HashMap::new();
    for (host, offset, e) in &events {
        let probe = e.probe.as_ref().expect("probe").name.as_str();
        if probe != "net:net_dev_queue" && probe != "net:netif_receive_skb" {
            continue;
        }
        let t = e.common.as_ref().expect("common").timestamp as i64 + offset;
        let key = (
            host.clone(),
            e.tracking.as_ref().expect("tracking").id(),
            probe,
        );
        let slot = first.entry(key).or_insert(t);
        *slot = (*slot).min(t);
    }
    let mut latency: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for ((host, id, probe), t) in &first {
        if *probe == "net:net_dev_queue" {
            if let Some(end) = first.get(&(host.clone(), id.clone(), "net:netif_receive_skb")) {
                latency.entry(host.clone()).or_default().push(end - t);
            }
        }
    }
    assert_eq!(results[1].len(), latency.len(), "one latency row per host");
    for row in &results[1] {
        let host = row[0].as_str().expect("host");
        let samples = &latency[host];
        let n = samples.len() as f64;
        let avg_us = samples.iter().sum::<i64>() as f64 / n / 1e3;
        let max_us = *samples.iter().max().expect("samples") as f64 / 1e3;
        assert_eq!(row[1], json!(samples.len()), "{host}: journeys");
        let close = |v: &Value, want: f64| (v.as_f64().expect("number") - want).abs() < 0.05;
        assert!(close(&row[2], avg_us), "{host}: avg {} vs {avg_us}", row[2]);
        assert!(close(&row[4], max_us), "{host}: max {} vs {max_us}", row[4]);
    }

    // 3. Top talkers: packets (journeys) and bytes per source address.
    let mut journeys: HashMap<(String, String), (String, u32)> = HashMap::new();
    for (host, _, e) in &events {
        let id = e.tracking.as_ref().expect("tracking").id();
        let packet = e.packet.as_ref().expect("packet");
        let src = trail::model::dissect::dissect(packet).ip.expect("ip").src;
        journeys.insert((host.clone(), id), (src, packet.len));
    }
    let mut talkers: HashMap<String, (i64, i64)> = HashMap::new();
    for (src, len) in journeys.values() {
        let t = talkers.entry(src.clone()).or_default();
        t.0 += 1;
        t.1 += i64::from(*len);
    }
    let mut want: Vec<(String, i64, i64)> =
        talkers.into_iter().map(|(s, (p, b))| (s, p, b)).collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    want.truncate(5);
    let got: Vec<(String, i64, i64)> = results[2]
        .iter()
        .map(|r| {
            (
                r[0].as_str().expect("src").to_string(),
                r[1].as_i64().expect("packets"),
                r[2].as_i64().expect("bytes"),
            )
        })
        .collect();
    assert_eq!(got, want, "top talkers");

    // 4. Conntrack state of dropped packets (a struct column).
    let mut states: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (_, _, e) in &events {
        if let Some(d) = &e.drop {
            let state =
                e.ct.as_ref()
                    .map_or("untracked-by-trail".to_string(), |c| c.state.clone());
            *states.entry((d.reason.clone(), state)).or_default() += 1;
        }
    }
    let got: BTreeMap<(String, String), i64> = results[3]
        .iter()
        .map(|r| {
            (
                (
                    r[0].as_str().expect("reason").to_string(),
                    r[1].as_str().unwrap_or("untracked-by-trail").to_string(),
                ),
                r[2].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(got, states, "conntrack state of drops");
}

#[test]
fn duckdb_and_pyarrow_read_the_partitioned_dataset() {
    let python = interop_python();
    let (input, events) = two_host_stream(5_000, 3);
    let dir = temp_dir();
    let dataset = dir.path().join("ds");
    let args = [
        "-o",
        dataset.to_str().expect("utf-8"),
        "--partition-by",
        "host,date,probe",
        "--row-group-size",
        "1000",
    ];
    run_ok(TOOL, &args, &input);
    let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (host, _, e) in &events {
        *want
            .entry((host.clone(), e.probe.as_ref().expect("probe").name.clone()))
            .or_default() += 1;
    }
    let script = r#"
import duckdb, json, sys
import pyarrow.dataset as ds
root = sys.argv[1]
q = f"""select host, probe, count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning=true)
        group by all order by all"""
duck = duckdb.sql(q).fetchall()
dates = duckdb.sql(f"select distinct typeof(date) from read_parquet('{root}/**/*.parquet', hive_partitioning=true)").fetchall()
table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["host", "probe", "src"])
arrow = {}
for h, p in zip(table.column("host").to_pylist(), table.column("probe").to_pylist()):
    arrow[f"{h} {p}"] = arrow.get(f"{h} {p}", 0) + 1
print(json.dumps({"duckdb": duck, "dates": dates, "pyarrow": arrow, "rows": table.num_rows}))
"#;
    let output = Command::new(&python)
        .args(["-c", script, dataset.to_str().expect("utf-8")])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("json");
    let duck: BTreeMap<(String, String), i64> = got["duckdb"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                (
                    r[0].as_str().expect("host").to_string(),
                    r[1].as_str().expect("probe").to_string(),
                ),
                r[2].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(duck, want, "DuckDB: rows per host and probe");
    assert_eq!(
        got["dates"],
        json!([["DATE"]]),
        "DuckDB types the date partition"
    );
    let arrow: BTreeMap<(String, String), i64> = got["pyarrow"]
        .as_object()
        .expect("map")
        .iter()
        .map(|(k, v)| {
            let (h, p) = k.split_once(' ').expect("key");
            ((h.to_string(), p.to_string()), v.as_i64().expect("count"))
        })
        .collect();
    assert_eq!(arrow, want, "pyarrow.dataset: rows per host and probe");
    assert_eq!(got["rows"], json!(events.len()));
}

fn hex(bytes: &[u8]) -> String {
    trail::model::event::hex(bytes)
}
