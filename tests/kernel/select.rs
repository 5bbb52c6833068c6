//! In-kernel selection by trail-capture (`-f`, `-m` and its shortcuts, following): what is kept
//! is compared with what was sent and with tcpdump given the same filter on the same interface.

use std::collections::BTreeMap;

use trail::model::event::{Event, Layer};

use super::capture::{
    capture, contains, data, dev, inum, pcap_packets, probe_name, refused, stop, tcpdump, track_id,
};
use super::netns::{require_root, send_udp, sh, Pair};

/// Payload tags of the datagrams an event list carries.
fn tags(events: &[&Event], all: &[String]) -> Vec<String> {
    let mut found: Vec<String> = events
        .iter()
        .flat_map(|e| {
            all.iter()
                .filter(|t| contains(data(e), t.as_bytes()))
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort();
    found
}

#[test]
fn filter_keeps_what_tcpdump_keeps() {
    if !require_root("filter_keeps_what_tcpdump_keeps") {
        return;
    }
    let pair = Pair::new("fdns");
    // Neighbours resolved first: a datagram queued behind a slow neighbour discovery would
    // leave after the capture ends.
    let a = Pair::exec(&pair.a);
    sh(&format!(
        "{a} ping -c1 -W2 192.0.2.2 >/dev/null; {a} ping -6 -c1 -W2 2001:db8::2 >/dev/null"
    ));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("dns.pcap");
    let expr = "udp port 53";
    let mut dump = tcpdump(&pair.b, "vb", expr, &pcap);
    // Mixed traffic: DNS-port datagrams both ways of the port, other UDP ports, IPv6, TCP to
    // port 53 (not UDP), and pings.
    let mut datagrams = Vec::new();
    for i in 0..4 {
        datagrams.push((40000 + i, "192.0.2.2", 53, format!("keep-dport-{i}")));
        datagrams.push((53, "192.0.2.2", 41000 + i, format!("keep-sport-{i}")));
        datagrams.push((40100 + i, "192.0.2.2", 5353, format!("drop-mdns-{i}")));
        datagrams.push((40200 + i, "2001:db8::2", 53, format!("keep-v6-{i}")));
        datagrams.push((40300 + i, "2001:db8::2", 54, format!("drop-v6-{i}")));
    }
    let cmd = format!(
        "{}; {a} ping -c 2 -i 0.2 -q 192.0.2.2 >/dev/null; \
         {a} timeout 2 bash -c 'echo x >/dev/tcp/192.0.2.2/53' 2>/dev/null; sleep 0.3",
        send_udp(&pair.a, &datagrams),
        a = Pair::exec(&pair.a),
    );
    let run = capture(&["-p", "tp:net:netif_receive_skb", "-f", expr], &cmd);
    stop(&mut dump);

    let ns_b = Pair::inum(&pair.b);
    let on_vb: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| inum(e) == ns_b && dev(e).0 == "vb")
        .collect();
    let all: Vec<String> = datagrams.iter().map(|d| d.3.clone()).collect();
    let wanted: Vec<String> = {
        let mut w: Vec<String> = all
            .iter()
            .filter(|t| t.starts_with("keep"))
            .cloned()
            .collect();
        w.sort();
        w
    };
    assert_eq!(
        tags(&on_vb, &all),
        wanted,
        "the DNS-port datagrams, once each"
    );
    // Same packets as tcpdump saw with the same expression, byte for byte (tcpdump on vb
    // also sees what B sends; B sends nothing to or from port 53).
    let mut ours: Vec<Vec<u8>> = on_vb.iter().map(|e| data(e).to_vec()).collect();
    let mut theirs = pcap_packets(&pcap);
    ours.sort();
    theirs.sort();
    assert_eq!(ours.len(), wanted.len());
    assert_eq!(
        ours, theirs,
        "trail-capture -f and tcpdump keep the same packets"
    );
}

#[test]
fn l3_only_packets_match_on_the_transmit_path() {
    if !require_root("l3_only_packets_match_on_the_transmit_path") {
        return;
    }
    // Packets dropped in A's output hook have a network header but no MAC header yet: the
    // raw-IP variant of the filter judges them.
    let pair = Pair::new("fl3");
    sh(&format!(
        "{} nft -f - <<'EOF'\ntable inet t {{\n chain output {{\n  type filter hook output priority 0;\n  udp dport {{ 53, 5353 }} drop\n }}\n}}\nEOF",
        Pair::exec(&pair.a)
    ));
    let datagrams = vec![
        (40000, "192.0.2.2", 53, "keep-v4".to_string()),
        (40001, "192.0.2.2", 5353, "drop-v4".to_string()),
        (40002, "2001:db8::2", 53, "keep-v6".to_string()),
        (40003, "2001:db8::2", 5353, "drop-v6".to_string()),
    ];
    let run = capture(
        &["-p", "tp:skb:kfree_skb", "-f", "udp dst port 53"],
        &send_udp(&pair.a, &datagrams),
    );
    let ns_a = Pair::inum(&pair.a);
    let drops: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| inum(e) == ns_a && probe_name(e) == "skb:kfree_skb")
        .collect();
    let all: Vec<String> = datagrams.iter().map(|d| d.3.clone()).collect();
    assert_eq!(tags(&drops, &all), ["keep-v4", "keep-v6"]);
    for e in &drops {
        let packet = e.packet.as_ref().unwrap();
        assert_eq!(
            packet.layer,
            Layer::L3,
            "dropped before L2: bytes from the IP header"
        );
        assert!(matches!(packet.data.0[0] >> 4, 4 | 6));
        assert_eq!(e.drop.as_ref().unwrap().reason, "NETFILTER_DROP");
    }
}

#[test]
fn a_selected_packet_is_followed_through_dnat() {
    if !require_root("a_selected_packet_is_followed_through_dnat") {
        return;
    }
    // B rewrites UDP port 5353 to 53 before routing; nothing listens on 53, so the datagram
    // ends at kfree_skb (NO_SOCKET) carrying port 53, which `udp port 5353` no longer matches.
    let pair = Pair::new("follow");
    sh(&format!(
        "{} nft -f - <<'EOF'\ntable ip t {{\n chain pre {{\n  type nat hook prerouting priority -100;\n  udp dport 5353 dnat to :53\n }}\n}}\nEOF",
        Pair::exec(&pair.b)
    ));
    let datagrams = vec![(40000, "192.0.2.2", 5353, "follow-me".to_string())];
    let cmd = send_udp(&pair.a, &datagrams);
    let probes = ["-p", "tp:net:netif_receive_skb", "-p", "tp:skb:kfree_skb"];
    let ns_b = Pair::inum(&pair.b);
    let ours = |run: &super::capture::Run| -> BTreeMap<String, Vec<u16>> {
        let mut seen: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for e in run
            .events
            .iter()
            .filter(|e| inum(e) == ns_b && contains(data(e), b"follow-me"))
        {
            let bytes = data(e);
            let ip = if e.packet.as_ref().unwrap().layer == Layer::L2 {
                14
            } else {
                0
            };
            let dport = u16::from_be_bytes([bytes[ip + 22], bytes[ip + 23]]);
            seen.entry(probe_name(e).to_string())
                .or_default()
                .push(dport);
        }
        seen
    };

    let run = capture(&[&probes[..], &["-f", "udp port 5353"]].concat(), &cmd);
    let seen = ours(&run);
    assert_eq!(
        seen.get("net:netif_receive_skb"),
        Some(&vec![5353]),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("skb:kfree_skb"),
        Some(&vec![53]),
        "followed after DNAT: {seen:?}"
    );
    let ids: Vec<String> = run
        .events
        .iter()
        .filter(|e| inum(e) == ns_b && contains(data(e), b"follow-me"))
        .map(track_id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one journey: {ids:?}");

    let run = capture(
        &[&probes[..], &["-f", "udp port 5353", "--no-follow"]].concat(),
        &cmd,
    );
    let seen = ours(&run);
    assert_eq!(
        seen.get("net:netif_receive_skb"),
        Some(&vec![5353]),
        "{seen:?}"
    );
    assert_eq!(seen.get("skb:kfree_skb"), None, "--no-follow: {seen:?}");
}

#[test]
fn meta_filters_select_by_device_mark_and_netns() {
    if !require_root("meta_filters_select_by_device_mark_and_netns") {
        return;
    }
    let pair = Pair::new("meta");
    // A marks UDP to port 7000 with 0x10 (0x110 for port 7002) on output.
    sh(&format!(
        "{} nft -f - <<'EOF'\ntable inet t {{\n chain output {{\n  type route hook output priority 0;\n  udp dport 7000 meta mark set 0x10\n  udp dport 7002 meta mark set 0x110\n }}\n}}\nEOF",
        Pair::exec(&pair.a)
    ));
    let datagrams = vec![
        (40000, "192.0.2.2", 7000, "marked-10".to_string()),
        (40001, "192.0.2.2", 7001, "unmarked".to_string()),
        (40002, "192.0.2.2", 7002, "marked-110".to_string()),
    ];
    let cmd = send_udp(&pair.a, &datagrams);
    let all: Vec<String> = datagrams.iter().map(|d| d.3.clone()).collect();
    let ns_a = Pair::inum(&pair.a);
    let xmit = ["-p", "tp:net:net_dev_start_xmit"];
    let kept = |args: &[&str]| -> (Vec<String>, Vec<Event>) {
        let run = capture(&[&xmit[..], args].concat(), &cmd);
        let ours: Vec<&Event> = run.events.iter().filter(|e| inum(e) == ns_a).collect();
        (tags(&ours, &all), run.events)
    };

    let (found, events) = kept(&["-m", "skb.mark == 0x10"]);
    assert_eq!(found, ["marked-10"]);
    assert!(events.iter().all(|e| e.skb.as_ref().unwrap().mark == 0x10));

    let (found, _) = kept(&["--mark", "0x10/0xff"]);
    assert_eq!(
        found,
        ["marked-10", "marked-110"],
        "mask 0xff keeps 0x10 and 0x110"
    );

    let (found, _) = kept(&["-m", "skb.mark != 0 && !(skb.mark & 0x100 == 0x100)"]);
    assert_eq!(found, ["marked-10"]);

    let (found, events) = kept(&["--ifname", "va", "-m", "skb.len > 20"]);
    assert_eq!(found, ["marked-10", "marked-110", "unmarked"]);
    assert!(events.iter().all(|e| dev(e).0 == "va"), "only va");

    let (found, events) = kept(&["-m", "skb.dev.name == \"vb\""]);
    assert!(
        found.is_empty(),
        "A transmits on va, never on vb: {found:?}"
    );
    assert!(events.iter().all(|e| dev(e).0 == "vb"));

    let (found, events) = kept(&["--netns", &pair.a]);
    assert_eq!(found, ["marked-10", "marked-110", "unmarked"]);
    assert!(events.iter().all(|e| inum(e) == ns_a), "only netns A");
}

#[test]
fn bad_selections_are_refused_before_loading() {
    if !require_root("bad_selections_are_refused_before_loading") {
        return;
    }
    let syntax = refused(&["-f", "udp port"]);
    assert!(
        syntax.contains("udp port") && syntax.lines().count() == 1,
        "{syntax}"
    );
    let protochain = refused(&["-f", "ip6 protochain 6"]);
    assert!(protochain.contains("backward"), "{protochain}");
    let unknown = refused(&["-m", "skb.mrak == 1"]);
    assert!(
        unknown.contains("\"mrak\"") && unknown.contains("mark"),
        "names the field and close matches: {unknown}"
    );
    assert!(refused(&["-m", "skb.dev.name == 3"]).contains("string"));
    assert!(refused(&["-m", "skb.mark = 1"]).contains("column"));
    assert!(refused(&["--netns", "no-such-ns-trail"]).contains("/run/netns/no-such-ns-trail"));
    assert!(refused(&["--mark", "red"]).contains("--mark"));
}

#[test]
fn pid_selects_the_sending_process() {
    if !require_root("pid_selects_the_sending_process") {
        return;
    }
    // A sender that announces its pid, then waits for a go file before sending; another
    // sender sends at the same time. --pid keeps only the first one's events.
    let pair = Pair::new("pid");
    let dir = tempfile::tempdir().unwrap();
    let (pid_file, go) = (dir.path().join("pid"), dir.path().join("go"));
    let script = format!(
        "import os,socket,time\nopen('{pid}','w').write(str(os.getpid()))\n\
         while not os.path.exists('{go}'): time.sleep(0.02)\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(5): s.sendto(b'mine',('192.0.2.2',7000))\n",
        pid = pid_file.display(),
        go = go.display()
    );
    let mut sender = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.a, "python3", "-c", &script])
        .spawn()
        .expect("sender");
    let started = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(started.elapsed().as_secs() < 10, "sender did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let other = send_udp(&pair.a, &[(40001, "192.0.2.2", 7000, "other")]);
    let cmd = format!("touch {}; {other}; sleep 0.5", go.display());
    let pid_arg = pid.to_string();
    let run = capture(
        &[
            "-p",
            "tp:net:net_dev_start_xmit",
            "--pid",
            &pid_arg,
            "--no-follow",
        ],
        &cmd,
    );
    let _ = sender.wait();
    let ns_a = Pair::inum(&pair.a);
    let ours: Vec<&Event> = run.events.iter().filter(|e| inum(e) == ns_a).collect();
    let mine = ours.iter().filter(|e| contains(data(e), b"mine")).count();
    assert_eq!(mine, 5, "the selected process's datagrams");
    assert!(
        !ours.iter().any(|e| contains(data(e), b"other")),
        "not the other sender's"
    );
    assert!(
        run.events
            .iter()
            .all(|e| e.common.as_ref().is_some_and(|c| c.pid == pid)),
        "every event is of pid {pid}"
    );
}

#[test]
fn filters_apply_to_function_probes() {
    if !super::kprobes::require_function_probes("filters_apply_to_function_probes") {
        return;
    }
    // Every kind of function probe, one at a time (kretprobe and fexit filter at the entry,
    // where the record is built), and a kprobe wildcard (kprobe-multi where the kernel has it).
    let pair = Pair::new("fprobes");
    let a = Pair::exec(&pair.a);
    sh(&format!("{a} ping -c1 -W2 192.0.2.2 >/dev/null"));
    let datagrams = vec![
        (40000, "192.0.2.2", 7000, "keep-7000".to_string()),
        (40001, "192.0.2.2", 7001, "drop-7001".to_string()),
    ];
    let all: Vec<String> = datagrams.iter().map(|d| d.3.clone()).collect();
    let cmd = send_udp(&pair.a, &datagrams);
    let ns_b = Pair::inum(&pair.b);
    for probe in [
        "k:ip_rcv",
        "kr:ip_rcv",
        "f:ip_rcv",
        "fx:ip_rcv",
        "k:ip_rcv*",
    ] {
        for args in [
            vec!["-f", "udp dst port 7000"],
            vec!["-m", "skb.len > 20", "-f", "udp and not dst port 7001"],
        ] {
            let run = capture(&[&["-p", probe][..], &args[..]].concat(), &cmd);
            let ours: Vec<&Event> = run.events.iter().filter(|e| inum(e) == ns_b).collect();
            let found = tags(&ours, &all);
            assert!(
                !found.is_empty() && found.iter().all(|t| t == "keep-7000"),
                "{probe} {args:?}: {found:?}"
            );
        }
    }
}

/// A VXLAN tunnel between the pair: `vx0` in A (198.51.100.1) and B (198.51.100.2), over the
/// veth, with neighbours resolved through it.
fn vxlan(pair: &Pair) {
    let (a, b) = (Pair::exec(&pair.a), Pair::exec(&pair.b));
    sh(&format!(
        "{a} ip link add vx0 type vxlan id 42 remote 192.0.2.2 local 192.0.2.1 dstport 4789 dev va && \
         {a} ip addr add 198.51.100.1/24 dev vx0 && {a} ip link set vx0 up && \
         {b} ip link add vx0 type vxlan id 42 remote 192.0.2.1 local 192.0.2.2 dstport 4789 dev vb && \
         {b} ip addr add 198.51.100.2/24 dev vx0 && {b} ip link set vx0 up && \
         {a} ping -c1 -W2 198.51.100.2 >/dev/null"
    ));
}

#[test]
fn a_selected_packet_is_followed_through_a_vxlan_tunnel() {
    if !require_root("a_selected_packet_is_followed_through_a_vxlan_tunnel") {
        return;
    }
    // The inner datagram matches `udp port 7000`; once encapsulated (UDP 4789 on the veth) it
    // does not, but it keeps its tracking id (the fingerprint sees through the tunnel), so it
    // is followed out of A, into B, and out of the tunnel again.
    let pair = Pair::new("vxlan");
    vxlan(&pair);
    let datagrams = vec![(40000, "198.51.100.2", 7000, "tunnelled".to_string())];
    let cmd = send_udp(&pair.a, &datagrams);
    let (ns_a, ns_b) = (Pair::inum(&pair.a), Pair::inum(&pair.b));
    let sightings = |args: &[&str]| -> Vec<(String, u32, String, String)> {
        let run = capture(args, &cmd);
        run.events
            .iter()
            .filter(|e| (inum(e) == ns_a || inum(e) == ns_b) && contains(data(e), b"tunnelled"))
            .map(|e| {
                (
                    probe_name(e).to_string(),
                    inum(e),
                    dev(e).0.to_string(),
                    track_id(e),
                )
            })
            .collect()
    };
    let path = |seen: &[(String, u32, String, String)]| -> Vec<(String, String)> {
        seen.iter()
            .map(|(p, ns, d, _)| {
                (
                    p.clone(),
                    format!("{}:{d}", if *ns == ns_a { "A" } else { "B" }),
                )
            })
            .collect()
    };
    let expected: Vec<(String, String)> = [
        ("net:net_dev_start_xmit", "A:vx0"),
        ("net:net_dev_start_xmit", "A:va"),
        ("net:netif_receive_skb", "B:vb"),
        ("net:netif_receive_skb", "B:vx0"),
    ]
    .iter()
    .map(|(p, d)| (p.to_string(), d.to_string()))
    .collect();

    // Unfiltered: one tracking id from the inner packet through the tunnel and out of it.
    // (B's ICMP port-unreachable quotes the datagram and travels back under its own id.)
    let all = sightings(&[]);
    let first_id = all.first().map(|s| s.3.clone()).unwrap_or_default();
    let journey: Vec<_> = all.iter().filter(|s| s.3 == first_id).cloned().collect();
    assert_eq!(path(&journey), expected, "{all:?}");
    assert!(
        all.iter()
            .filter(|s| s.3 != first_id)
            .all(|s| s.0 == "net:net_dev_start_xmit" && s.1 == ns_b
                || s.0 == "net:netif_receive_skb" && s.1 == ns_a),
        "only the reply has another id: {all:?}"
    );

    let followed = sightings(&["-f", "udp port 7000"]);
    assert_eq!(
        path(&followed),
        expected,
        "followed through the tunnel: {followed:?}"
    );

    let alone = sightings(&["-f", "udp port 7000", "--no-follow"]);
    let inner_only: Vec<(String, String)> = vec![expected[0].clone(), expected[3].clone()];
    assert_eq!(
        path(&alone),
        inner_only,
        "--no-follow: only the inner sightings match"
    );
}
