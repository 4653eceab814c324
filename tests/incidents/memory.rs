//! Issue 14's memory budget, by the allocator's count: the incident state
//! of 100,000 open incidents with 16 destinations each and 100,000
//! initiators tracked for sweeps and scans.

use std::path::Path;

use segwatch::classify::{CompiledPolicy, PolicyInForce};
use segwatch::event::{IncidentRecord, Violation};
use segwatch::flow::flow_id;
use segwatch::incident::{Emit, Fold, IncidentSettings, NoDevices, SortKey};
use segwatch::pipeline::StartNotice;
use segwatch::policy::load_policy_str;
use segwatch::wire::Transport;

use crate::app::counting_allocator::live_bytes;

/// Discards what the fold hands out.
struct Discard;

impl Emit for Discard {
    fn violation(&mut self, _: SortKey, _: &Violation, _: Option<u64>) {}
    fn record(&mut self, _: SortKey, _: IncidentRecord) {}
}

/// The budget of issue 14.
const BUDGET: i64 = 64 << 20;

#[test]
fn a_hundred_thousand_incidents_and_initiators_fit_the_budget() {
    let (policy, _) = load_policy_str(super::POLICY, Path::new("p.toml")).unwrap();
    let policy = PolicyInForce::new(CompiledPolicy::compile(&policy), 0);
    let compiled = &policy.policy;
    let salt = segwatch::synth::FIXTURE_EPOCH_NS;
    let ts = salt + 1_000_000_000;
    let before = live_bytes();
    let mut fold = Fold::new(&IncidentSettings::default(), salt).whole();
    let (mut violations, mut notices) = (Vec::new(), Vec::new());
    let mut position = 0u64;
    const SOURCES: u32 = 100_000;
    for source in 0..SOURCES {
        // Sources outside every zone (10.100.0.0 on): the default alerts.
        let src = u128::from(0x0a64_0000 + source);
        for dest in 0..16u32 {
            let dst = u128::from(0x0ac8_0000 + dest);
            let from = compiled.zone_of(false, src).zone;
            let to = compiled.zone_of(false, dst).zone;
            violations.push(Violation {
                packet_index: position,
                ts_ns: ts,
                flow_id: flow_id(position, salt),
                ipv6: false,
                protocol: 6,
                transport: Transport::Tcp,
                src_addr: src,
                src_port: 40000,
                dest_addr: dst,
                dest_port: 8080,
                vlan: 0,
                overlay: segwatch::flow::Overlay::NONE,
                src_zone: from,
                dest_zone: to,
                verdict: compiled.judge(from, to, Transport::Tcp, 8080),
                app: None,
                exception: None,
            });
            if dest == 0 && std::env::var_os("NO_NOTICES").is_none() {
                notices.push(StartNotice {
                    position,
                    ts_ns: ts,
                    ipv6: false,
                    protocol: 6,
                    port: Some(8080),
                    initiator: src,
                    responder: dst,
                    zones: (from, to),
                });
            }
            position += 1;
        }
        if violations.len() >= 64_000 {
            fold.batch_live(&violations, &notices, &policy, &NoDevices, &mut Discard);
            violations.clear();
            notices.clear();
        }
    }
    fold.batch_live(&violations, &notices, &policy, &NoDevices, &mut Discard);
    drop((violations, notices));
    let held = live_bytes() - before;
    let counters = fold.counters();
    eprintln!(
        "incident state: {} bytes ({:.1} MB) for {SOURCES} open incidents of 16 destinations and \
         {SOURCES} tracked initiators",
        held,
        held as f64 / f64::from(1 << 20)
    );
    assert_eq!(counters.open[0], u64::from(SOURCES), "{counters:?}");
    assert_eq!(counters.initiators, u64::from(SOURCES), "{counters:?}");
    assert_eq!(counters.untracked, 0);
    assert!(
        held < BUDGET,
        "{held} bytes ({} MB) over the {} MB budget",
        held >> 20,
        BUDGET >> 20
    );
}
