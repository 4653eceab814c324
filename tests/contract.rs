//! Golden tests: one capture per clause of contract sections 2 and 3, built
//! with the project's fixture generator, replayed with one thread and with
//! three, and compared as whole event lists.

use segwatch::flow::FlowConfig;
use segwatch::synth::{Capture, Fragment, Pkt, at, tcp_flags::*};
use serde_json::{Value, json};

use crate::common::{Replayed, events_of, fid, policy, ts};

const POLICY: &str = r#"
[policy]
name = "contract-test"
default_action = "alert"
default_severity = "medium"

[zones.ws]
description = "Workstations"
networks = ["10.60.0.0/16", "fd00:60::/48"]
criticality = "business"

[zones.ws-admin]
networks = ["10.60.5.0/24"]
criticality = "admin"

[zones.apps]
networks = ["10.50.0.0/24", "fd00:50::/64"]
criticality = "business-critical"

[zones.pacs]
networks = ["10.30.1.0/24", "fd00:30::/64"]

[zones.internet]
networks = ["0.0.0.0/0"]
criticality = "untrusted"

[zones.mcast]
networks = ["239.1.0.0/16"]

[services.https]
tcp = [443]

[services.dicom]
tcp = [104, 11112]

[services.dns]
udp = [53]
tcp = [53]

[services.web-alt]
tcp = ["8080-8089"]

[services.ping]
icmp = true

[[rules]]
name = "ws-to-apps-https"
from = ["ws"]
to = ["apps"]
services = ["https"]
action = "allow"

[[rules]]
name = "admin-ssh"
from = ["ws-admin"]
to = ["apps"]
services = ["tcp/22"]
action = "alert"
severity = "high"

[[rules]]
name = "ws-dicom"
from = ["ws"]
to = ["pacs"]
services = ["dicom", "tcp/4242"]
action = "allow"

[[rules]]
name = "dns-anywhere"
from = ["any"]
to = ["apps"]
services = ["dns"]
action = "allow"

[[rules]]
name = "web-alt-range"
from = ["ws"]
to = ["apps"]
services = ["tcp/8080-8089"]
action = "alert"
severity = "low"

[[rules]]
name = "first-match-a"
from = ["ws"]
to = ["pacs"]
services = ["tcp/5000-5010"]
action = "alert"
severity = "high"

[[rules]]
name = "first-match-b"
from = ["ws"]
to = ["pacs"]
services = ["tcp/5005"]
action = "alert"
severity = "critical"

[[rules]]
name = "unknown-to-any"
from = ["unknown"]
to = ["any"]
action = "alert"
severity = "critical"

[[rules]]
name = "ws-ping-pacs"
from = ["ws"]
to = ["pacs"]
services = ["ping"]
action = "alert"
severity = "low"

[[rules]]
name = "pings"
from = ["any"]
to = ["any"]
services = ["ping"]
action = "allow"

[[rules]]
name = "gre-tunnels"
from = ["pacs"]
to = ["internet"]
action = "alert"
severity = "low"

[[rules]]
name = "mcast"
from = ["ws"]
to = ["mcast"]
action = "alert"
severity = "low"
"#;

/// Builds the expected event: the contract's fields, in its order, the
/// optional ones only when given.
#[allow(clippy::too_many_arguments)]
fn event(
    capture: &Capture,
    flow_start: u64,
    seconds: f64,
    proto: &str,
    src: (&str, Option<u16>),
    dest: (&str, Option<u16>),
    vlan: Option<u16>,
    zones: (&str, &str),
    service: Option<&str>,
    rule: (&str, &str),
) -> Value {
    let criticality = |zone: &str| match zone {
        "ws" => Some("business"),
        "ws-admin" => Some("admin"),
        "apps" => Some("business-critical"),
        "internet" => Some("untrusted"),
        _ => None,
    };
    let mut e = serde_json::Map::new();
    e.insert("timestamp".into(), json!(ts(seconds)));
    e.insert("event_type".into(), json!("violation"));
    e.insert("flow_id".into(), json!(fid(capture, flow_start)));
    e.insert("proto".into(), json!(proto));
    e.insert("src_ip".into(), json!(src.0));
    if let Some(port) = src.1 {
        e.insert("src_port".into(), json!(port));
    }
    e.insert("dest_ip".into(), json!(dest.0));
    if let Some(port) = dest.1 {
        e.insert("dest_port".into(), json!(port));
    }
    if let Some(vlan) = vlan {
        e.insert("vlan".into(), json!(vlan));
    }
    e.insert("src_zone".into(), json!(zones.0));
    e.insert("dest_zone".into(), json!(zones.1));
    if let Some(service) = service {
        e.insert("service".into(), json!(service));
    }
    e.insert("rule".into(), json!(rule.0));
    e.insert("severity".into(), json!(rule.1));
    if let Some(c) = criticality(zones.0) {
        e.insert("src_criticality".into(), json!(c));
    }
    if let Some(c) = criticality(zones.1) {
        e.insert("dest_criticality".into(), json!(c));
    }
    Value::Object(e)
}

/// The order of the contract's example event.
const CONTRACT_ORDER: [&str; 16] = [
    "timestamp",
    "event_type",
    "flow_id",
    "proto",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "vlan",
    "src_zone",
    "dest_zone",
    "service",
    "rule",
    "severity",
    "src_criticality",
    "dest_criticality",
];

fn run(capture: &Capture) -> Replayed {
    events_of(&policy(POLICY), capture, FlowConfig::default())
}

fn assert_events(capture: &Capture, expected: &[Value]) -> Replayed {
    let replayed = run(capture);
    assert_eq!(
        replayed.events, expected,
        "\nactual events:\n{}",
        replayed.raw
    );
    // Field order is part of the contract's example; keep it.
    for (line, want) in replayed.raw.lines().zip(expected) {
        let object = want.as_object().unwrap();
        let keys = CONTRACT_ORDER.iter().filter(|k| object.contains_key(**k));
        let mut at = 0;
        for key in keys {
            let found = line[at..]
                .find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("field {key} out of order in {line}"));
            at += found;
        }
    }
    replayed
}

#[test]
fn mid_stream_tcp_is_oriented_by_the_named_port() {
    let mut c = Capture::new();
    // First seen: the server's side of an SSH session (tcp/22 is named inline).
    c.add(
        at(0.0),
        &Pkt::tcp("10.50.0.10:22", "10.60.5.9:40000", ACK).payload(b"x"),
    );
    c.add(at(0.1), &Pkt::tcp("10.60.5.9:40000", "10.50.0.10:22", ACK));
    // Mid-stream HTTPS from a workstation: allowed, no event.
    c.add(at(0.2), &Pkt::tcp("10.50.0.10:443", "10.60.1.5:50000", ACK));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.60.5.9", Some(40000)),
            ("10.50.0.10", Some(22)),
            None,
            ("ws-admin", "apps"),
            Some("tcp/22"),
            ("admin-ssh", "high"),
        )],
    );
}

#[test]
fn syn_ack_first_makes_its_receiver_the_initiator() {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("10.60.1.5:6000", "10.50.0.10:7000", SYN | ACK),
    );
    c.add(at(0.1), &Pkt::tcp("10.50.0.10:7000", "10.60.1.5:6000", ACK));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.50.0.10", Some(7000)),
            ("10.60.1.5", Some(6000)),
            None,
            ("apps", "ws"),
            None,
            ("default", "medium"),
        )],
    );
}

#[test]
fn syn_makes_its_sender_the_initiator_even_towards_a_high_port() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.30.1.7:443", "10.60.1.5:40000", SYN));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.30.1.7", Some(443)),
            ("10.60.1.5", Some(40000)),
            None,
            ("pacs", "ws"),
            None,
            ("default", "medium"),
        )],
    );
}

#[test]
fn udp_reply_seen_first_is_oriented_by_the_named_port() {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::udp("10.30.1.7:53", "10.60.1.5:40001").payload(b"r"),
    );
    c.add(
        at(0.1),
        &Pkt::udp("10.60.1.5:40001", "10.30.1.7:53").payload(b"q"),
    );
    // A DNS reply from apps: dns-anywhere allows it.
    c.add(at(0.2), &Pkt::udp("10.50.0.10:53", "10.60.1.5:40002"));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "udp",
            ("10.60.1.5", Some(40001)),
            ("10.30.1.7", Some(53)),
            None,
            ("ws", "pacs"),
            Some("dns"),
            ("default", "medium"),
        )],
    );
}

#[test]
fn both_ports_named_falls_back_to_the_port_below_1024() {
    let mut c = Capture::new();
    // 11112 (dicom) and 443 (https) are both named: 443 < 1024 responds.
    c.add(at(0.0), &Pkt::tcp("10.30.1.7:443", "10.60.1.5:11112", ACK));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.60.1.5", Some(11112)),
            ("10.30.1.7", Some(443)),
            None,
            ("ws", "pacs"),
            Some("https"),
            ("default", "medium"),
        )],
    );
}

#[test]
fn both_named_and_both_low_ports_fall_back_to_the_first_sender() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.30.1.7:104", "10.60.1.5:443", ACK));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.30.1.7", Some(104)),
            ("10.60.1.5", Some(443)),
            None,
            ("pacs", "ws"),
            Some("https"),
            ("default", "medium"),
        )],
    );
}

#[test]
fn neither_port_named_uses_the_port_below_1024_then_the_first_sender() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.30.1.7:40000", "10.60.1.5:999", ACK));
    c.add(
        at(0.1),
        &Pkt::tcp("10.60.1.5:41000", "10.30.1.7:41001", ACK),
    );
    assert_events(
        &c,
        &[
            event(
                &c,
                0,
                0.0,
                "tcp",
                ("10.30.1.7", Some(40000)),
                ("10.60.1.5", Some(999)),
                None,
                ("pacs", "ws"),
                None,
                ("default", "medium"),
            ),
            event(
                &c,
                1,
                0.1,
                "tcp",
                ("10.60.1.5", Some(41000)),
                ("10.30.1.7", Some(41001)),
                None,
                ("ws", "pacs"),
                None,
                ("default", "medium"),
            ),
        ],
    );
}

#[test]
fn longest_prefix_decides_the_zone() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.60.5.9:40000", "10.50.0.10:22", SYN));
    c.add(at(0.1), &Pkt::tcp("10.60.6.9:40000", "10.50.0.10:22", SYN));
    assert_events(
        &c,
        &[
            event(
                &c,
                0,
                0.0,
                "tcp",
                ("10.60.5.9", Some(40000)),
                ("10.50.0.10", Some(22)),
                None,
                ("ws-admin", "apps"),
                Some("tcp/22"),
                ("admin-ssh", "high"),
            ),
            event(
                &c,
                1,
                0.1,
                "tcp",
                ("10.60.6.9", Some(40000)),
                ("10.50.0.10", Some(22)),
                None,
                ("ws", "apps"),
                None,
                ("default", "medium"),
            ),
        ],
    );
}

#[test]
fn unknown_zone_and_any_including_unknown() {
    let mut c = Capture::new();
    // 2001:db8::/32 is in no zone: unknown.
    c.add(
        at(0.0),
        &Pkt::tcp("[2001:db8::1]:50000", "[fd00:30::7]:104", SYN),
    );
    // unknown -> unknown: `any` holds `unknown`.
    c.add(
        at(0.1),
        &Pkt::udp("[2001:db8::1]:50001", "[2001:db8::2]:9999"),
    );
    // `any` in `from` holds unknown too: DNS to apps is allowed first.
    c.add(at(0.2), &Pkt::udp("[2001:db8::5]:5000", "[fd00:50::10]:53"));
    assert_events(
        &c,
        &[
            event(
                &c,
                0,
                0.0,
                "tcp",
                ("2001:db8::1", Some(50000)),
                ("fd00:30::7", Some(104)),
                None,
                ("unknown", "pacs"),
                Some("dicom"),
                ("unknown-to-any", "critical"),
            ),
            event(
                &c,
                1,
                0.1,
                "udp",
                ("2001:db8::1", Some(50001)),
                ("2001:db8::2", Some(9999)),
                None,
                ("unknown", "unknown"),
                None,
                ("unknown-to-any", "critical"),
            ),
        ],
    );
}

#[test]
fn inline_ranges_match_at_their_edges_only() {
    let mut c = Capture::new();
    for (i, port) in [8079u16, 8080, 8089, 8090].into_iter().enumerate() {
        c.add(
            at(i as f64),
            &Pkt::tcp(
                &format!("10.60.1.5:{}", 40000 + i),
                &format!("10.50.0.10:{port}"),
                SYN,
            ),
        );
    }
    let ev = |i: u64, port: u16, service: Option<&str>, rule: (&str, &str)| {
        event(
            &c,
            i,
            i as f64,
            "tcp",
            ("10.60.1.5", Some(40000 + i as u16)),
            ("10.50.0.10", Some(port)),
            None,
            ("ws", "apps"),
            service,
            rule,
        )
    };
    let expected = [
        ev(0, 8079, None, ("default", "medium")),
        ev(1, 8080, Some("tcp/8080-8089"), ("web-alt-range", "low")),
        ev(2, 8089, Some("tcp/8080-8089"), ("web-alt-range", "low")),
        ev(3, 8090, None, ("default", "medium")),
    ];
    assert_events(&c, &expected);
}

#[test]
fn first_matching_rule_wins() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.60.1.5:40000", "10.30.1.7:5005", SYN));
    c.add(
        at(0.1),
        &Pkt::tcp("10.60.1.5:40001", "10.30.1.7:11112", SYN),
    );
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.60.1.5", Some(40000)),
            ("10.30.1.7", Some(5005)),
            None,
            ("ws", "pacs"),
            Some("tcp/5000-5010"),
            ("first-match-a", "high"),
        )],
    );
}

#[test]
fn default_verdict_names_the_first_matching_named_service() {
    let mut c = Capture::new();
    // apps -> pacs has no rule; tcp/53 matches the named service dns.
    c.add(at(0.0), &Pkt::tcp("10.50.0.10:40000", "10.30.1.7:53", SYN));
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("10.50.0.10", Some(40000)),
            ("10.30.1.7", Some(53)),
            None,
            ("apps", "pacs"),
            Some("dns"),
            ("default", "medium"),
        )],
    );
}

#[test]
fn default_allow_policy_emits_nothing_for_unmatched_flows() {
    let allow = POLICY.replace("default_action = \"alert\"", "default_action = \"allow\"");
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.50.0.10:40000", "10.30.1.7:53", SYN));
    let replayed = events_of(&policy(&allow), &c, FlowConfig::default());
    assert!(replayed.events.is_empty(), "{}", replayed.raw);
}

#[test]
fn first_fragment_is_judged_later_fragments_are_counted() {
    let datagram = Pkt::udp("10.60.1.5:40000", "10.30.1.7:53").payload(&[9; 64]);
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &datagram.clone().fragment(Fragment::First { len: 32 }),
    );
    c.add(
        at(0.0),
        &datagram.clone().fragment(Fragment::Rest { offset: 32 }),
    );
    // A later fragment alone (its first was lost) starts nothing.
    let lost = Pkt::udp("10.60.1.6:40000", "10.30.1.7:9000").payload(&[9; 64]);
    c.add(at(0.1), &lost.fragment(Fragment::Rest { offset: 32 }));
    let replayed = assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "udp",
            ("10.60.1.5", Some(40000)),
            ("10.30.1.7", Some(53)),
            None,
            ("ws", "pacs"),
            Some("dns"),
            ("default", "medium"),
        )],
    );
    assert_eq!(replayed.stats.packets.later_fragments, 2);
    assert_eq!(replayed.stats.flows.created, 1);
}

#[test]
fn vlan_tags_differing_per_direction_are_one_flow_and_qinq_reports_the_outer_tag() {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("10.60.1.5:40000", "10.30.1.7:443", SYN).vlans(&[160]),
    );
    c.add(
        at(0.1),
        &Pkt::tcp("10.30.1.7:443", "10.60.1.5:40000", SYN | ACK).vlans(&[130]),
    );
    c.add(at(0.2), &Pkt::tcp("10.60.1.5:40000", "10.30.1.7:443", ACK));
    c.add(
        at(0.3),
        &Pkt::tcp("10.60.1.5:40001", "10.30.1.7:443", SYN).vlans(&[300, 160]),
    );
    let replayed = assert_events(
        &c,
        &[
            event(
                &c,
                0,
                0.0,
                "tcp",
                ("10.60.1.5", Some(40000)),
                ("10.30.1.7", Some(443)),
                Some(160),
                ("ws", "pacs"),
                Some("https"),
                ("default", "medium"),
            ),
            event(
                &c,
                3,
                0.3,
                "tcp",
                ("10.60.1.5", Some(40001)),
                ("10.30.1.7", Some(443)),
                Some(300),
                ("ws", "pacs"),
                Some("https"),
                ("default", "medium"),
            ),
        ],
    );
    assert_eq!(replayed.stats.flows.created, 2);
}

#[test]
fn icmp_and_icmpv6_echo_flows() {
    let mut c = Capture::new();
    // Reply seen first: its receiver initiated.
    c.add(at(0.0), &Pkt::echo_reply("10.30.1.7", "10.60.1.5", 9));
    c.add(at(0.1), &Pkt::echo_request("10.60.1.5", "10.30.1.7", 9));
    // Another identifier is another flow.
    c.add(at(0.2), &Pkt::echo_request("10.60.1.5", "10.30.1.7", 10));
    // ICMPv6 from an unknown address.
    c.add(at(0.3), &Pkt::echo_request("2001:db8::1", "fd00:30::7", 1));
    // Allowed by `pings`.
    c.add(at(0.4), &Pkt::echo_request("10.50.0.10", "10.60.1.5", 3));
    // Not echo: counted, not judged.
    c.add(
        at(0.5),
        &Pkt::ip_proto("10.30.1.7", "10.60.1.5", 1).payload(&[3, 1, 0, 0, 0, 0, 0, 0]),
    );
    let ping = |i: u64, proto: &str, src: &str, dst: &str, zones, rule| {
        event(
            &c,
            i,
            i as f64 / 10.0,
            proto,
            (src, None),
            (dst, None),
            None,
            zones,
            Some("ping"),
            rule,
        )
    };
    let replayed = assert_events(
        &c,
        &[
            ping(
                0,
                "icmp",
                "10.60.1.5",
                "10.30.1.7",
                ("ws", "pacs"),
                ("ws-ping-pacs", "low"),
            ),
            ping(
                2,
                "icmp",
                "10.60.1.5",
                "10.30.1.7",
                ("ws", "pacs"),
                ("ws-ping-pacs", "low"),
            ),
            ping(
                3,
                "icmpv6",
                "2001:db8::1",
                "fd00:30::7",
                ("unknown", "pacs"),
                ("unknown-to-any", "critical"),
            ),
        ],
    );
    assert_eq!(replayed.stats.packets.icmp_not_echo, 1);
    assert_eq!(replayed.stats.flows.created, 4);
}

#[test]
fn other_ip_protocols_match_only_rules_without_services() {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::ip_proto("10.30.1.7", "8.8.8.8", 47).payload(&[0; 8]),
    );
    c.add(
        at(0.1),
        &Pkt::ip_proto("8.8.8.8", "10.30.1.7", 47).payload(&[0; 8]),
    );
    c.add(
        at(0.2),
        &Pkt::ip_proto("10.60.1.5", "10.50.0.10", 50).payload(&[0; 8]),
    );
    c.add(
        at(0.3),
        &Pkt::ip_proto("10.60.1.5", "10.50.0.10", 253).payload(&[0; 8]),
    );
    assert_events(
        &c,
        &[
            event(
                &c,
                0,
                0.0,
                "gre",
                ("10.30.1.7", None),
                ("8.8.8.8", None),
                None,
                ("pacs", "internet"),
                None,
                ("gre-tunnels", "low"),
            ),
            event(
                &c,
                2,
                0.2,
                "esp",
                ("10.60.1.5", None),
                ("10.50.0.10", None),
                None,
                ("ws", "apps"),
                None,
                ("default", "medium"),
            ),
            event(
                &c,
                3,
                0.3,
                "ip-253",
                ("10.60.1.5", None),
                ("10.50.0.10", None),
                None,
                ("ws", "apps"),
                None,
                ("default", "medium"),
            ),
        ],
    );
}

#[test]
fn multicast_and_broadcast_are_judged_only_when_a_zone_claims_them() {
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::udp("10.60.1.5:5000", "239.2.2.2:5000")); // only 0.0.0.0/0 holds it
    c.add(at(0.1), &Pkt::udp("10.60.1.5:5000", "239.1.2.3:5000")); // mcast zone claims it
    c.add(at(0.2), &Pkt::udp("10.60.1.5:5000", "255.255.255.255:5000"));
    c.add(at(0.3), &Pkt::udp("0.0.0.0:68", "255.255.255.255:67"));
    c.add(at(0.4), &Pkt::udp("[fe80::1]:5353", "[ff02::fb]:5353"));
    c.add(at(0.5), &Pkt::udp("[::]:546", "[ff02::1:2]:547"));
    let replayed = assert_events(
        &c,
        &[event(
            &c,
            1,
            0.1,
            "udp",
            ("10.60.1.5", Some(5000)),
            ("239.1.2.3", Some(5000)),
            None,
            ("ws", "mcast"),
            None,
            ("mcast", "low"),
        )],
    );
    assert_eq!(replayed.stats.link_local, 5);
    assert_eq!(replayed.stats.flows.created, 1);
}

#[test]
fn tcp_close_keeps_stragglers_and_a_later_syn_starts_a_new_flow() {
    let mut c = Capture::new();
    let (client, server) = ("10.60.1.5:40000", "10.30.1.7:5001");
    c.add(at(0.0), &Pkt::tcp(client, server, SYN));
    c.add(at(0.1), &Pkt::tcp(server, client, SYN | ACK));
    c.add(at(1.0), &Pkt::tcp(client, server, FIN | ACK));
    c.add(at(1.1), &Pkt::tcp(server, client, FIN | ACK));
    c.add(at(1.2), &Pkt::tcp(client, server, ACK)); // straggler: same flow
    c.add(at(12.0), &Pkt::tcp(client, server, SYN)); // port reuse after 10 s: new flow
    c.add(at(12.5), &Pkt::tcp(server, client, RST)); // reset closes it
    c.add(at(23.0), &Pkt::tcp(client, server, SYN)); // and again
    let ev = |i: u64, s: f64| {
        event(
            &c,
            i,
            s,
            "tcp",
            ("10.60.1.5", Some(40000)),
            ("10.30.1.7", Some(5001)),
            None,
            ("ws", "pacs"),
            Some("tcp/5000-5010"),
            ("first-match-a", "high"),
        )
    };
    let replayed = assert_events(&c, &[ev(0, 0.0), ev(5, 12.0), ev(7, 23.0)]);
    assert_eq!(replayed.stats.flows.created, 3);
    assert_eq!(replayed.stats.flows.expired, 2);
}

#[test]
fn one_fin_direction_does_not_close_the_flow() {
    let mut c = Capture::new();
    let (client, server) = ("10.60.1.5:40000", "10.30.1.7:5001");
    c.add(at(0.0), &Pkt::tcp(client, server, SYN));
    c.add(at(1.0), &Pkt::tcp(client, server, FIN | ACK)); // half-closed
    c.add(at(20.0), &Pkt::tcp(server, client, ACK)); // still within 300 s: same flow
    let replayed = run(&c);
    assert_eq!(replayed.events.len(), 1);
    assert_eq!(replayed.stats.flows.created, 1);
}

#[test]
fn idle_timeouts_run_on_capture_time_and_are_configurable() {
    let mut c = Capture::new();
    let (a, b) = ("10.60.1.5:40000", "10.30.1.7:53");
    c.add(at(0.0), &Pkt::udp(a, b));
    c.add(at(119.0), &Pkt::udp(b, a)); // idle 119 s: same flow
    c.add(at(240.0), &Pkt::udp(a, b)); // idle 121 s: new flow
    c.add(at(240.0), &Pkt::echo_request("10.60.1.5", "10.30.1.7", 1));
    c.add(at(271.0), &Pkt::echo_request("10.60.1.5", "10.30.1.7", 1)); // idle 31 s > 30 s
    let replayed = run(&c);
    let starts: Vec<&str> = replayed
        .events
        .iter()
        .map(|e| e["flow_id"].as_str().unwrap())
        .collect();
    assert_eq!(starts, [fid(&c, 0), fid(&c, 2), fid(&c, 3), fid(&c, 4)]);

    let short = FlowConfig {
        udp_timeout: std::time::Duration::from_secs(60),
        ..FlowConfig::default()
    };
    let replayed = events_of(&policy(POLICY), &c, short);
    assert_eq!(
        replayed.stats.flows.created, 5,
        "a 60 s UDP timeout splits the first flow too"
    );
}

#[test]
fn ipv6_flows_are_judged_like_ipv4() {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("[fd00:60::5]:40000", "[fd00:30::7]:5005", SYN).ipv6_hop_by_hop(),
    );
    c.add(
        at(0.1),
        &Pkt::tcp("[fd00:60::5]:40001", "[fd00:30::7]:104", SYN),
    );
    assert_events(
        &c,
        &[event(
            &c,
            0,
            0.0,
            "tcp",
            ("fd00:60::5", Some(40000)),
            ("fd00:30::7", Some(5005)),
            None,
            ("ws", "pacs"),
            Some("tcp/5000-5010"),
            ("first-match-a", "high"),
        )],
    );
}

#[test]
fn repeated_packets_of_one_flow_give_one_event() {
    let mut c = Capture::new();
    for i in 0..50 {
        let (s, d) = if i % 2 == 0 {
            ("10.60.1.5:40000", "10.30.1.7:5001")
        } else {
            ("10.30.1.7:5001", "10.60.1.5:40000")
        };
        c.add(at(i as f64 * 0.01), &Pkt::tcp(s, d, ACK).payload(&[1; 10]));
    }
    let replayed = run(&c);
    assert_eq!(replayed.events.len(), 1);
    assert_eq!(replayed.stats.flows.created, 1);
    assert_eq!(replayed.stats.violations.total(), 1);
}

#[test]
fn flow_ids_are_stable_distinct_hex_and_events_follow_packet_order() {
    let mut c = Capture::new();
    // Interleave 40 violating flows so that events come from every shard.
    for round in 0..3 {
        for flow in 0..40u16 {
            let src = format!("10.60.1.{}:{}", flow, 40000 + flow);
            c.add(
                at(round as f64 + flow as f64 * 0.001),
                &Pkt::tcp(&src, "10.30.1.7:5003", ACK),
            );
        }
    }
    let first = run(&c);
    let again = run(&c);
    assert_eq!(first.raw, again.raw, "same capture, same events");
    assert_eq!(first.events.len(), 40);
    let ids: std::collections::HashSet<&str> = first
        .events
        .iter()
        .map(|e| e["flow_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 40);
    assert!(
        ids.iter()
            .all(|id| id.len() == 16 && id.chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')))
    );
    let sources: Vec<&str> = first
        .events
        .iter()
        .map(|e| e["src_ip"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..40).map(|f| format!("10.60.1.{f}")).collect();
    assert_eq!(sources, expected);
}

#[test]
fn malformed_frames_are_counted_and_never_stop_the_replay() {
    let mut c = Capture::new();
    let good = Pkt::tcp("10.60.1.5:40000", "10.30.1.7:5001", SYN).build();
    c.push(at(0.0), good[..10].to_vec()); // truncated link
    c.push(at(0.1), good[..20].to_vec()); // truncated IP
    let mut bad = good.clone();
    bad[14] = 0x41; // IHL 1
    c.push(at(0.2), bad);
    c.push(at(0.3), vec![0xff; 3]);
    c.push(at(0.4), good.clone());
    let replayed = assert_events(
        &c,
        &[event(
            &c,
            4,
            0.4,
            "tcp",
            ("10.60.1.5", Some(40000)),
            ("10.30.1.7", Some(5001)),
            None,
            ("ws", "pacs"),
            Some("tcp/5000-5010"),
            ("first-match-a", "high"),
        )],
    );
    let p = &replayed.stats.packets;
    assert_eq!(p.packets, 5);
    assert_eq!(p.problems.iter().sum::<u64>(), 4);
    assert_eq!(p.decoded, 1);
}

#[test]
fn a_full_flow_table_evicts_the_least_recently_seen_flow() {
    let mut c = Capture::new();
    // 16 shards of 1 flow each: every new flow in a shard evicts its flow.
    let tiny = FlowConfig {
        max_flows: 16,
        ..FlowConfig::default()
    };
    for flow in 0..200u16 {
        let src = format!("10.60.2.{}:{}", flow % 250, 30000 + flow);
        c.add(at(flow as f64 * 0.01), &Pkt::udp(&src, "10.30.1.7:9000"));
    }
    for flow in 0..200u16 {
        let src = format!("10.60.2.{}:{}", flow % 250, 30000 + flow);
        c.add(
            at(3.0 + flow as f64 * 0.01),
            &Pkt::udp(&src, "10.30.1.7:9000"),
        );
    }
    let replayed = events_of(&policy(POLICY), &c, tiny);
    assert!(
        replayed.stats.flows.evicted >= 200,
        "{:?}",
        replayed.stats.flows
    );
    assert!(replayed.stats.active_flows <= 16);
    // Evicted flows come back as new flows: each gets a second event.
    assert_eq!(replayed.events.len() as u64, replayed.stats.flows.created);
}
