//! Property tests: the compiled classifier against a slow, obviously correct
//! reference that reads the policy rule by rule, on random policies and flows;
//! and the same policies read back from a policy cache entry, judging alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use proptest::prelude::*;
use segwatch::classify::{CompiledPolicy, ZoneTable};
use segwatch::policy::{
    Action, Policy, PortRange, Rule, Service, ServiceRef, ServiceSpec, Severity, Zone, ZoneRef,
};
use segwatch::replay::{decode_entry_body, encode_entry_body};
use segwatch::wire::Transport;

/// Longest-prefix match by scanning every network of every zone.
fn reference_zone(policy: &Policy, addr: IpAddr) -> (Option<usize>, u8) {
    let mut best: (Option<usize>, u8) = (None, 0);
    let mut best_len: Option<u8> = None;
    for (z, zone) in policy.zones.iter().enumerate() {
        for net in &zone.networks {
            if net.contains(addr) && best_len.is_none_or(|len| net.prefix() > len) {
                best = (Some(z), net.prefix());
                best_len = Some(net.prefix());
            }
        }
    }
    best
}

fn spec_matches(spec: &ServiceSpec, transport: Transport, port: u16) -> bool {
    match transport {
        Transport::Tcp => spec.tcp.iter().any(|r| r.contains(port)),
        Transport::Udp => spec.udp.iter().any(|r| r.contains(port)),
        Transport::EchoRequest | Transport::EchoReply => spec.icmp,
        Transport::Other => false,
    }
}

fn zone_in(refs: &[ZoneRef], zone: Option<usize>) -> bool {
    refs.iter().any(|r| match (r, zone) {
        (ZoneRef::Any, _) => true,
        (ZoneRef::Unknown, None) => true,
        (ZoneRef::Zone(a), Some(b)) => *a == b,
        _ => false,
    })
}

/// The first rule that matches, read top to bottom; and the event's service.
fn reference_judge(
    policy: &Policy,
    from: Option<usize>,
    to: Option<usize>,
    transport: Transport,
    port: u16,
) -> (String, Action, Option<String>) {
    let first_named = || {
        policy
            .services
            .iter()
            .find(|s| spec_matches(&s.spec, transport, port))
            .map(|s| s.name.clone())
    };
    for rule in &policy.rules {
        if !zone_in(&rule.from, from) || !zone_in(&rule.to, to) {
            continue;
        }
        if rule.services.is_empty() {
            return (rule.name.clone(), rule.action, first_named());
        }
        if let Some(s) = rule
            .services
            .iter()
            .find(|s| spec_matches(&s.spec, transport, port))
        {
            return (rule.name.clone(), rule.action, Some(s.label.clone()));
        }
    }
    ("default".into(), policy.default_action, first_named())
}

// ---- random policies ------------------------------------------------------

/// Addresses come from a small space (10.0.0.0/16 and fd00::/112-ish) so
/// that networks overlap and nest often.
fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0u32..4, 0u32..256).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c as u8, d as u8))
}

fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    (0u16..4, 0u16..256).prop_map(|(c, d)| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, c, d))
}

fn any_network() -> impl Strategy<Value = IpNetwork> {
    prop_oneof![
        3 => (any_v4(), prop_oneof![Just(0u8), 8u8..=32]).prop_map(|(a, len)| {
            let net = ipnetwork::Ipv4Network::new(a, len).unwrap();
            IpNetwork::V4(ipnetwork::Ipv4Network::new(net.network(), len).unwrap())
        }),
        1 => (any_v6(), prop_oneof![Just(0u8), 100u8..=128]).prop_map(|(a, len)| {
            let net = ipnetwork::Ipv6Network::new(a, len).unwrap();
            IpNetwork::V6(ipnetwork::Ipv6Network::new(net.network(), len).unwrap())
        }),
    ]
}

fn any_range() -> impl Strategy<Value = PortRange> {
    (1u16..120, 0u16..20).prop_map(|(lo, width)| PortRange { lo, hi: lo + width })
}

fn any_spec() -> impl Strategy<Value = ServiceSpec> {
    (
        prop::collection::vec(any_range(), 0..3),
        prop::collection::vec(any_range(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(tcp, udp, icmp)| ServiceSpec {
            tcp,
            udp,
            icmp,
            app: None,
        })
}

fn any_policy() -> impl Strategy<Value = Policy> {
    let zones = prop::collection::vec(prop::collection::vec(any_network(), 1..4), 1..6);
    let services = prop::collection::vec(any_spec(), 0..4);
    (zones, services, any::<bool>(), 0usize..12, any::<u64>())
        .prop_flat_map(|(zone_nets, specs, default_alert, rule_count, _)| {
            let zone_count = zone_nets.len();
            let service_count = specs.len();
            let zone_ref = prop_oneof![
                1 => Just(ZoneRef::Any),
                1 => Just(ZoneRef::Unknown),
                6 => (0..zone_count).prop_map(ZoneRef::Zone),
            ];
            let service_ref = prop_oneof![
                (0..service_count.max(1)).prop_map(|i| (Some(i), ServiceSpec::default())),
                any_spec().prop_map(|s| (None, s)),
            ];
            let rule = (
                prop::collection::vec(zone_ref.clone(), 1..3),
                prop::collection::vec(zone_ref, 1..3),
                prop::collection::vec(service_ref, 0..3),
                any::<bool>(),
            );
            (
                Just((zone_nets, specs, default_alert)),
                prop::collection::vec(rule, rule_count..=rule_count),
            )
        })
        .prop_map(|((zone_nets, specs, default_alert), rules)| {
            // Two zones never share a network (the loader rejects it).
            let mut seen = std::collections::HashSet::new();
            let zones = zone_nets
                .into_iter()
                .enumerate()
                .map(|(i, nets)| Zone {
                    name: format!("z{i}"),
                    description: None,
                    networks: nets.into_iter().filter(|n| seen.insert(*n)).collect(),
                    criticality: None,
                })
                .collect();
            let services: Vec<Service> = specs
                .into_iter()
                .enumerate()
                .map(|(i, spec)| Service {
                    name: format!("s{i}"),
                    spec,
                })
                .collect();
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(i, (from, to, refs, alert))| Rule {
                    name: format!("r{i}"),
                    from,
                    to,
                    services: refs
                        .into_iter()
                        .filter_map(|(named, spec)| match named {
                            Some(n) => services.get(n).map(|s| ServiceRef {
                                label: s.name.clone(),
                                named: Some(n),
                                spec: s.spec.clone(),
                            }),
                            None => Some(ServiceRef {
                                label: format!("inline{i}"),
                                named: None,
                                spec,
                            }),
                        })
                        .collect(),
                    action: if alert { Action::Alert } else { Action::Allow },
                    severity: Severity::High,
                    conditions: Default::default(),
                })
                .collect();
            Policy {
                name: "random".into(),
                default_action: if default_alert {
                    Action::Alert
                } else {
                    Action::Allow
                },
                default_severity: Severity::Medium,
                zones,
                services,
                rules,
                clinical: Default::default(),
            }
        })
}

fn any_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![3 => any_v4().prop_map(IpAddr::V4), 1 => any_v6().prop_map(IpAddr::V6)]
}

fn any_transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        Just(Transport::Tcp),
        Just(Transport::Udp),
        Just(Transport::EchoRequest),
        Just(Transport::Other)
    ]
}

/// The policy as compiled and as read back from a policy cache entry: both must judge alike.
fn compiled_and_cached(policy: &Policy) -> [CompiledPolicy; 2] {
    let compiled = CompiledPolicy::compile(policy);
    let body = encode_entry_body(&compiled, &[]).expect("encode");
    let (cached, _) = decode_entry_body(&body).expect("a compiled policy reads back");
    [compiled, cached]
}

fn bits(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u32::from(a).into()),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn compiled_zone_lookup_equals_the_longest_prefix_scan(
        policy in any_policy(),
        addrs in prop::collection::vec(any_addr(), 1..40),
    ) {
        for compiled in compiled_and_cached(&policy) {
            for &addr in &addrs {
                let (ipv6, raw) = bits(addr);
                let found = compiled.zone_of(ipv6, raw);
                let (zone, prefix) = reference_zone(&policy, addr);
                let expected = zone.map_or(ZoneTable::UNKNOWN, |z| z as u32);
                prop_assert_eq!((found.zone, found.prefix_len), (expected, prefix), "address {}", addr);
            }
        }
    }

    #[test]
    fn compiled_verdicts_equal_the_rule_by_rule_reference(
        policy in any_policy(),
        flows in prop::collection::vec((any_addr(), any_addr(), any_transport(), 0u16..130), 1..40),
    ) {
        for compiled in compiled_and_cached(&policy) {
        for &(src, dst, transport, port) in &flows {
            let (src_zone, _) = reference_zone(&policy, src);
            let (dst_zone, _) = reference_zone(&policy, dst);
            let expected = reference_judge(&policy, src_zone, dst_zone, transport, port);
            let from = src_zone.map_or(ZoneTable::UNKNOWN, |z| z as u32);
            let to = dst_zone.map_or(ZoneTable::UNKNOWN, |z| z as u32);
            let verdict = compiled.judge(from, to, transport, port);
            let rule = compiled.rule(verdict.rule);
            let service = compiled.service_label(verdict, transport, port, None).map(str::to_string);
            prop_assert_eq!(
                (rule.name.clone(), rule.action, service),
                expected,
                "{:?} {} -> {} port {}", transport, src, dst, port
            );
        }
        }
    }
}
