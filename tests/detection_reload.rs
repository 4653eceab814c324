//! Regressions found in review: a reload while a flow's application is
//! being inspected, events released together by a sweep, and flows judged
//! without any application.

use segwatch::capture::Frame;
use segwatch::classify::{CompiledPolicy, PolicyInForce};
use segwatch::event::Violation;
use segwatch::flow::FlowConfig;
use segwatch::pipeline::{Shard, ShardOptions};
use segwatch::synth::{Capture, Pkt, at, tcp_flags::*};
use segwatch::wire::LinkType;

use crate::common::policy;

/// `policy` in force as generation `generation`.
fn judge(policy: CompiledPolicy, generation: u32) -> PolicyInForce {
    PolicyInForce::new(policy, generation)
}

/// A shard of 1,000 flows, detecting applications or not.
fn shard(detect_apps: bool) -> Shard {
    let options = ShardOptions {
        detect_apps,
        ..ShardOptions::default()
    };
    Shard::new(&FlowConfig::default(), 1000, options)
}

/// Feeds an Ethernet frame captured at `ts` at position `index`.
fn feed(shard: &mut Shard, data: &[u8], ts: u64, index: u64, policy: &PolicyInForce) {
    let frame = Frame {
        ts_ns: ts,
        orig_len: data.len() as u32,
        link: LinkType::ETHERNET,
        data,
        vlan: None,
    };
    shard.frame(&frame, index, policy);
}

/// The violations the shard made so far.
fn made(shard: &mut Shard) -> &[Violation] {
    &shard.output().violations
}

const BASE: &str = "[policy]\ndefault_action = \"alert\"\n[zones.a]\nnetworks = [\"10.0.0.0/8\"]\n";

/// A flow alerted under A (no app rules) waits for its application; a reload
/// to B (with an app rule, still alert for this flow) drops its pending event
/// and, because `alerted` stays true, never emits it.
#[test]
fn a_reload_to_an_application_policy_keeps_the_waiting_event() {
    let a = policy(BASE);
    let b = policy(&format!(
        "{BASE}[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"dicom-ok\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"dicom\"]\naction = \"allow\"\n"
    ));
    assert!(!a.needs_app() && b.needs_app());
    let mut t = shard(true);
    let syn = Pkt::tcp("10.0.0.1:40000", "10.0.0.2:8080", SYN)
        .seq(1)
        .build();
    let synack = Pkt::tcp("10.0.0.2:8080", "10.0.0.1:40000", SYN | ACK)
        .seq(9)
        .build();
    let ja = judge(a, 0);
    let jb = judge(b, 1);
    feed(&mut t, &syn, at(0.0), 0, &ja);
    assert!(made(&mut t).is_empty(), "waits for the application");
    feed(&mut t, &synack, at(0.01), 1, &jb);
    t.finish(&jb);
    assert_eq!(
        made(&mut t).len(),
        1,
        "the flow alerts under A and under B: one event expected"
    );
}

/// A flow inspected under A (app rules: verdict waits, template holds A's
/// rule id) is released under B (no app rules): B's action of A's rule id.
#[test]
fn a_waiting_flow_is_judged_again_by_ports_under_the_reloaded_policy() {
    let a = policy(&format!(
        "{BASE}[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"dicom-ok\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"dicom\"]\naction = \"allow\"\n\
         [[rules]]\nname = \"web-ok\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"tcp/80\"]\naction = \"allow\"\n"
    ));
    let b = policy(&format!(
        "{BASE}[[rules]]\nname = \"web-ok\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"tcp/80\"]\naction = \"allow\"\n\
         [[rules]]\nname = \"bad\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"tcp/7777\"]\naction = \"alert\"\n"
    ));
    let mut t = shard(true);
    let syn = Pkt::tcp("10.0.0.1:40000", "10.0.0.2:80", SYN)
        .seq(1)
        .build();
    let ack = Pkt::tcp("10.0.0.1:40000", "10.0.0.2:80", ACK)
        .seq(2)
        .build();
    let ja = judge(a, 0);
    let jb = judge(b, 1);
    feed(&mut t, &syn, at(0.0), 0, &ja);
    feed(&mut t, &ack, at(0.02), 1, &jb);
    t.finish(&jb);
    let out = made(&mut t);
    let rules: Vec<_> = out
        .iter()
        .map(|v| jb.policy.rule(v.verdict.rule).name.clone())
        .collect();
    assert!(
        out.is_empty(),
        "port 80 is allowed by A and by B, got events {rules:?}"
    );
}

/// Events released at a batch's sweep share its last packet position; the
/// merge breaks ties by worker index, which depends on --threads.
#[test]
fn events_released_by_one_sweep_come_out_in_the_same_order_for_any_threads() {
    let mut c = Capture::new();
    for i in 0..12u16 {
        c.add(
            at(0.0 + f64::from(i) * 0.001),
            &Pkt::tcp(&format!("10.0.0.1:{}", 40000 + i), "10.0.0.2:8080", SYN).seq(1),
        );
    }
    c.add(
        at(3.0),
        &Pkt::udp("10.0.0.9:5000", "10.0.0.8:5001").payload(b"x"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcap");
    c.write_pcap(&path, segwatch::synth::Resolution::Nano)
        .unwrap();
    let p = judge(policy(BASE), 0);
    let run = |threads| {
        let files = vec![segwatch::capture::CaptureFile::open(&path).unwrap()];
        let options = segwatch::replay::ReplayOptions {
            threads,
            flows: FlowConfig::default(),
            batch_size: 16_384,
            inventory: None,
            detect_apps: true,
            exiting_after: false,
            ..segwatch::replay::ReplayOptions::default()
        };
        let mut out = Vec::new();
        segwatch::replay::replay(&files, &p, &options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let one = run(1);
    let eight = run(8);
    assert_eq!(one.lines().count(), 13);
    assert_eq!(one, eight, "event order depends on --threads");
}

/// A flow that was never inspected (ICMP) is marked `app_judged` under a
/// policy with app rules, so a reload never judges it again (contract 2).
#[test]
fn a_reload_judges_again_flows_judged_without_an_application() {
    let app = "[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"dicom-ok\"\nfrom = [\"a\"]\nto = [\"a\"]\nservices = [\"dicom\"]\naction = \"allow\"\n";
    let a = policy(&format!("{}{app}", BASE.replace("\"alert\"", "\"allow\"")));
    let b = policy(&format!("{BASE}{app}"));
    let mut t = shard(true);
    let req = Pkt::echo_request("10.0.0.1", "10.0.0.2", 7).build();
    let rep = Pkt::echo_reply("10.0.0.2", "10.0.0.1", 7).build();
    let (a, b) = (judge(a, 0), judge(b, 1));
    feed(&mut t, &req, at(0.0), 0, &a);
    assert!(made(&mut t).is_empty());
    feed(&mut t, &rep, at(0.1), 1, &b);
    t.finish(&b);
    assert_eq!(
        made(&mut t).len(),
        1,
        "judged again under B (default alert), it should alert"
    );
}

/// Link-local traffic is checked packet by packet for flows whose key holds
/// a group address: a reload that drops the zone claiming the group makes
/// the flow's next packets link-local (counted, not judged), as they would
/// be for a flow that starts then.
#[test]
fn a_reload_that_drops_a_group_claim_makes_the_flows_packets_link_local() {
    let a = policy(&format!(
        "{BASE}[zones.group]\nnetworks = [\"239.1.0.0/16\"]\n"
    ));
    let b = policy(BASE);
    let mut t = shard(false);
    let frame = Pkt::udp("10.0.0.1:5000", "239.1.2.3:5000").build();
    let ja = judge(a, 0);
    let jb = judge(b, 1);
    feed(&mut t, &frame, at(0.0), 0, &ja);
    assert_eq!(
        (made(&mut t).len(), t.counters().link_local),
        (1, 0),
        "claimed by A"
    );
    feed(&mut t, &frame, at(0.1), 1, &jb);
    feed(&mut t, &frame, at(0.2), 2, &jb);
    assert_eq!(
        (made(&mut t).len(), t.counters().link_local),
        (1, 2),
        "B claims none"
    );
    feed(&mut t, &frame, at(0.3), 3, &ja);
    assert_eq!(
        t.counters().link_local,
        2,
        "claimed again: the flow goes on"
    );
    assert_eq!(t.counters().flows.created, 1);
}

/// Only packets to a group address (or from an unspecified one) are
/// link-local; a flow's packets the other way round are judged.
#[test]
fn link_local_depends_on_the_packets_direction() {
    let p = judge(policy(BASE), 0);
    let mut t = shard(false);
    let from_group = Pkt::udp("239.2.2.2:5000", "10.0.0.1:5000").build();
    let to_group = Pkt::udp("10.0.0.1:5000", "239.2.2.2:5000").build();
    feed(&mut t, &from_group, at(0.0), 0, &p);
    feed(&mut t, &to_group, at(0.1), 1, &p);
    feed(&mut t, &from_group, at(0.2), 2, &p);
    assert_eq!(t.counters().flows.created, 1);
    assert_eq!(t.counters().link_local, 1);
    assert_eq!(made(&mut t).len(), 1);
}
