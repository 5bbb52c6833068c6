//! Journeys from real captures: trail-capture in two namespaces, then trail-sort (and
//! trail-print), checked against the packets that were sent.

use trail::model::event::Event;

use super::capture::{capture_stream, contains, inum, probe_name};
use super::common::{events, run_ok};
use super::netns::{require_root, send_udp, sh, Pair};

/// ICMP echo (type 8) or reply (type 0) with this id and sequence number, in an Ethernet or raw
/// IPv4 packet.
fn icmp_echo(e: &Event, id: u16, kind: u8) -> Option<u16> {
    let packet = e.packet.as_ref()?;
    let d = trail::model::dissect::dissect(packet);
    let l4 = d.l4.as_ref()?;
    (l4.icmp_type == Some(kind) && l4.icmp_id == Some(id)).then_some(l4.icmp_seq?)
}

#[test]
fn ping_forms_one_journey_per_echo_in_probe_order() {
    if !require_root("ping_forms_one_journey_per_echo_in_probe_order") {
        return;
    }
    let pair = Pair::new("journeys");
    let (a, b) = (Pair::inum(&pair.a), Pair::inum(&pair.b));
    // A fixed ICMP id (ping -e) tells our echoes from any other traffic on the machine.
    let id: u16 = 0x7a11;
    let (stream, _) = capture_stream(
        &[
            "-p",
            "tp:net:net_dev_start_xmit",
            "-p",
            "tp:net:netif_receive_skb",
        ],
        &format!(
            "{} ping -e {id} -c 3 -i 0.2 -W 1 192.0.2.2 >/dev/null",
            Pair::exec(&pair.a)
        ),
    );
    let sorted = run_ok("trail-sort", &[], &stream);
    let sorted_events = events(&sorted);
    assert_eq!(
        sorted_events.len(),
        events(&stream).len(),
        "sort must keep every event"
    );

    // Group the sorted events of our echoes into journeys: consecutive runs of one tracking id.
    let mut journeys: Vec<Vec<&Event>> = Vec::new();
    for e in &sorted_events {
        if icmp_echo(e, id, 8).is_none() && icmp_echo(e, id, 0).is_none() {
            continue;
        }
        let tracking = e.tracking.as_ref().expect("captured events are tracked");
        match journeys.last_mut() {
            Some(j) if j[0].tracking.as_ref().map(|t| t.id()) == Some(tracking.id()) => j.push(e),
            _ => journeys.push(vec![e]),
        }
    }
    assert_eq!(
        journeys.len(),
        6,
        "3 requests + 3 replies, one journey each: {:#?}",
        journeys
            .iter()
            .map(|j| j.iter().map(|e| probe_name(e)).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    for journey in &journeys {
        let request = icmp_echo(journey[0], id, 8).is_some();
        let (from, to) = if request { (a, b) } else { (b, a) };
        let path: Vec<(String, u32)> = journey
            .iter()
            .map(|e| (probe_name(e).to_string(), inum(e)))
            .collect();
        assert_eq!(
            path,
            [
                ("net:net_dev_start_xmit".to_string(), from),
                ("net:netif_receive_skb".to_string(), to)
            ],
            "journey of an echo {}",
            if request { "request" } else { "reply" }
        );
        let indexes: Vec<Option<u32>> = journey
            .iter()
            .map(|e| e.tracking.as_ref().and_then(|t| t.index))
            .collect();
        assert_eq!(indexes, [Some(0), Some(1)]);
        let seqs: Vec<Option<u16>> = journey
            .iter()
            .map(|e| icmp_echo(e, id, if request { 8 } else { 0 }))
            .collect();
        assert!(seqs.iter().all(|s| *s == seqs[0]), "one echo per journey");
    }
    // Journeys come out by first sighting: request 1, reply 1, request 2, ...
    let order: Vec<(bool, u16)> = journeys
        .iter()
        .map(|j| {
            let req = icmp_echo(j[0], id, 8);
            (
                req.is_some(),
                req.or_else(|| icmp_echo(j[0], id, 0)).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (true, 1),
            (false, 1),
            (true, 2),
            (false, 2),
            (true, 3),
            (false, 3)
        ]
    );
}

#[test]
fn dnat_and_drop_read_as_journeys() {
    if !require_root("dnat_and_drop_read_as_journeys") {
        return;
    }
    let pair = Pair::new("dnatdrop");
    // In B: UDP to port 5000 is DNATed to port 6000; UDP to port 7000 is dropped.
    sh(&format!(
        "ip netns exec {b} nft -f - <<'EOF'
table ip t {{
  chain pre {{ type nat hook prerouting priority -100; udp dport 5000 dnat to :6000; }}
  chain in {{ type filter hook input priority 0; udp dport 7000 drop; }}
}}
EOF",
        b = pair.b
    ));
    let send = send_udp(
        &pair.a,
        &[
            (0, "192.0.2.2", 5000, "to-be-natted"),
            (0, "192.0.2.2", 7000, "to-be-dropped"),
        ],
    );
    let (stream, _) = capture_stream(
        &[
            "-p",
            "tp:net:net_dev_start_xmit",
            "-p",
            "tp:net:netif_receive_skb",
            "-p",
            "tp:skb:kfree_skb",
        ],
        &send,
    );
    let sorted = run_ok("trail-sort", &[], &stream);
    let text = String::from_utf8(run_ok("trail-print", &[], &sorted)).expect("utf-8 text");

    // A journey's text runs from its first event's line (which starts with the timestamp) to
    // the next line that starts a journey; the packet summary is the line under an event.
    let lines: Vec<&str> = text.lines().collect();
    let journey_text = |packet: &str| -> String {
        let first = lines
            .iter()
            .position(|l| l.contains("192.0.2.1.") && l.contains(packet))
            .map(|i| i - 1)
            .unwrap_or_else(|| panic!("a datagram to {packet} is in the text:\n{text}"));
        std::iter::once(lines[first])
            .chain(
                lines[first + 1..]
                    .iter()
                    .take_while(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
                    .copied(),
            )
            .collect::<Vec<&str>>()
            .join("\n")
    };
    // Probes of a journey's text, in order (first event's line, then its `↳` children).
    let probes_of = |journey: &str| -> Vec<String> {
        journey
            .lines()
            .filter_map(|l| {
                [
                    "net:net_dev_start_xmit",
                    "net:netif_receive_skb",
                    "skb:kfree_skb",
                ]
                .into_iter()
                .find(|p| l.contains(p))
                .map(str::to_string)
            })
            .collect()
    };

    // The dropped datagram: xmit in A, receive in B, then kfree_skb NETFILTER_DROP, one journey.
    let dropped = journey_text("192.0.2.2.7000");
    assert_eq!(
        probes_of(&dropped),
        [
            "net:net_dev_start_xmit",
            "net:netif_receive_skb",
            "skb:kfree_skb"
        ],
        "the dropped datagram's journey reads xmit → receive → drop:\n{dropped}"
    );
    assert!(
        dropped.contains("↳") && dropped.contains("drop (reason NETFILTER_DROP)"),
        "the drop shows its reason under the journey:\n{dropped}"
    );

    // The NATed datagram, as printed: one journey that starts with port 5000 (xmit in A) and
    // goes on, after DNAT, with port 6000 (no socket there: freed with NO_SOCKET).
    let natted_text = journey_text("192.0.2.2.5000");
    assert!(
        natted_text.contains("↳") && natted_text.contains("192.0.2.2.6000"),
        "the DNATed datagram's journey shows the rewritten port under the original:\n{natted_text}"
    );
    assert_eq!(
        probes_of(&natted_text).first().map(String::as_str),
        Some("net:net_dev_start_xmit"),
        "{natted_text}"
    );
    assert!(
        !natted_text.contains("NETFILTER_DROP"),
        "the NATed datagram is not the dropped one:\n{natted_text}"
    );

    // The NATed datagram: its journey shows the packet before and after the rewrite, one id.
    let natted: Vec<Event> = events(&sorted)
        .into_iter()
        .filter(|e| {
            // The UDP datagram itself, not the ICMP port-unreachable error that quotes it.
            e.packet.as_ref().is_some_and(|p| {
                contains(&p.data.0, b"to-be-natted")
                    && trail::model::dissect::dissect(p)
                        .l4
                        .is_some_and(|l4| l4.proto == "udp")
            })
        })
        .collect();
    assert!(natted.len() >= 2, "NATed datagram seen at xmit and receive");
    let ids: std::collections::BTreeSet<String> = natted
        .iter()
        .map(|e| e.tracking.as_ref().expect("tracked").id())
        .collect();
    assert_eq!(ids.len(), 1, "one journey for the NATed datagram");
    let ports: Vec<u16> = natted
        .iter()
        .filter_map(|e| trail::model::dissect::dissect(e.packet.as_ref()?).l4?.dport)
        .collect();
    assert_eq!(ports[0], 5000, "first seen with the original port");
    assert!(
        ports.contains(&6000),
        "after DNAT (no socket on 6000: kfree_skb) the same journey shows port 6000: {ports:?}"
    );
}
