//! Policy learning: from observed traffic to a least-privilege policy.
//!
//! Given zones (and optionally services), `learn` replays the captures,
//! groups the flows by initiator zone, responder zone and service, and
//! writes one allow rule per zone pair listing exactly the services seen.
//!
//! Who initiates a flow depends on the ports the policy's services name
//! (contract section 2), and the learned rules name new ports. So learning
//! judges the traffic again with the ports it is about to write, until the
//! set of learned ports no longer changes: then replaying the same traffic
//! under the learned policy orients every flow as learning did, and every
//! flow meets the rule made for it.

#![forbid(unsafe_code)]

mod render;

pub use render::render_policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::capture::CaptureFile;
use crate::classify::{CompiledPolicy, PolicyInForce};
use crate::event::ViolationEvent;
use crate::policy::{
    Action, Policy, PortRange, Rule, ServiceRef, ServiceSpec, Severity, Zone, ZoneRef,
};
use crate::replay::{ObserveError, ObservedFlow, ReplayOptions, observe_every_flow};

/// Passes before learning gives up waiting for the learned ports to settle.
const MAX_PASSES: usize = 8;

/// How to learn.
#[derive(Clone, Debug, Default)]
pub struct LearnOptions {
    /// Propose zones for private subnets that no zone holds.
    pub propose_networks: bool,
}

/// A transport and port, as a learned inline service names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortService {
    /// `tcp/PORT`.
    Tcp(u16),
    /// `udp/PORT`.
    Udp(u16),
}

/// What one rule allows and what was seen of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedRule {
    /// The rule as it goes into the policy.
    pub rule: Rule,
    /// Flows it covers.
    pub flows: u64,
    /// First packet of its earliest flow (RFC 3339).
    pub first_seen: String,
    /// First packet of its latest flow (RFC 3339).
    pub last_seen: String,
    /// Flows per service label, in the rule's order.
    pub per_service: Vec<(String, u64)>,
    /// Set when an explicit `alert` rule or a `[clinical]` check of the
    /// given file alerts on these flows today: the rule is then written
    /// commented out, for review, and is not part of the learned policy.
    pub alerts_today: Option<AlertsToday>,
}

/// The rule of the given file that alerts on flows today, and its severity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertsToday {
    /// The rule's name (or a clinical check's pseudo-rule).
    pub rule: String,
    /// Its severity.
    pub severity: String,
}

/// The result of learning.
#[derive(Clone, Debug)]
pub struct Learned {
    /// The learned policy: the given zones and services, proposed zones,
    /// learned rules, default alert. The rules held for review are not in
    /// it.
    pub policy: Policy,
    /// The rules with their statistics, in the policy's order, with those
    /// held for review (see [`LearnedRule::alerts_today`]).
    pub rules: Vec<LearnedRule>,
    /// Zones of the given file that claim a whole address family
    /// (`0.0.0.0/0`, `::/0`): no address is left for `--networks` to
    /// propose a zone for.
    pub catch_all_zones: Vec<String>,
    /// Flows observed.
    pub flows: u64,
    /// Zones proposed from observed subnets (`--networks`).
    pub proposed_zones: usize,
    /// Judging passes made.
    pub passes: usize,
    /// False when the learned ports did not settle within the passes
    /// allowed (the policy is then the last pass's).
    pub converged: bool,
    /// Captures cut inside their last record (judged up to the cut).
    pub truncations: Vec<(std::path::PathBuf, crate::capture::Truncation)>,
}

impl Learned {
    /// The rules held for review, and the flows they cover.
    pub fn held_for_review(&self) -> (usize, u64) {
        self.rules
            .iter()
            .filter(|r| r.alerts_today.is_some())
            .fold((0, 0), |(rules, flows), r| (rules + 1, flows + r.flows))
    }
}

/// Learns a policy from `captures`, starting from `base`'s zones and
/// services; what `base`'s alert rules and clinical checks alert on is held
/// for review rather than allowed (see [`LearnedRule::alerts_today`]).
pub fn learn(
    base: &Policy,
    captures: &[CaptureFile],
    replay: &ReplayOptions,
    options: &LearnOptions,
) -> Result<Learned, ObserveError> {
    let mut zones = base.zones.clone();
    let mut proposed_zones = 0;
    if options.propose_networks {
        let observed = observe_every_flow(&judging_policy(base, &zones, &[]), captures, replay)?;
        let proposed = propose_zones(&zones, &observed.flows);
        proposed_zones = proposed.len();
        zones.extend(proposed);
    }

    let mut learned_ports: Vec<PortService> = Vec::new();
    let mut passes = 0;
    loop {
        passes += 1;
        let policy = judging_policy(base, &zones, &learned_ports);
        let observed = observe_every_flow(&policy, captures, replay)?;
        let ports = ports_to_name(base, &observed.flows);
        let converged = ports == learned_ports;
        if converged || passes == MAX_PASSES {
            let alerting = alerting_today(base, captures, replay)?;
            let rules = learned_rules(base, &zones, &observed.flows, &alerting);
            let policy = Policy {
                name: "learned".into(),
                default_action: Action::Alert,
                default_severity: base.default_severity,
                zones,
                services: base.services.clone(),
                rules: rules
                    .iter()
                    .filter(|r| r.alerts_today.is_none())
                    .map(|r| r.rule.clone())
                    .collect(),
                clinical: Default::default(),
            };
            return Ok(Learned {
                policy,
                rules,
                catch_all_zones: base
                    .zones
                    .iter()
                    .filter(|z| z.networks.iter().any(|n| n.prefix() == 0))
                    .map(|z| z.name.clone())
                    .collect(),
                flows: observed.flows.len() as u64,
                proposed_zones,
                passes,
                converged,
                truncations: observed.truncations().to_vec(),
            });
        }
        learned_ports = ports;
    }
}

/// The flows (by flow id) that an explicit `alert` rule or a `[clinical]`
/// check of `base` alerts on today, with that rule. The default action
/// does not count: a file of zones alone alerts on everything. A file
/// without such rules or checks costs no replay.
fn alerting_today(
    base: &Policy,
    captures: &[CaptureFile],
    options: &ReplayOptions,
) -> Result<HashMap<u64, AlertsToday>, ObserveError> {
    let compiled = CompiledPolicy::compile(base);
    let mut alerting = HashMap::new();
    if !compiled.rules().iter().any(|r| r.action == Action::Alert) {
        return Ok(alerting);
    }
    let mut options = options.clone();
    options.detect_apps |= compiled.needs_app();
    let policy = PolicyInForce::new(compiled, 0);
    let mut lines = Vec::new();
    let mut outcome = crate::replay::replay(captures, &policy, &options, &mut lines)?;
    if let Some(error) = outcome.capture_error.take() {
        return Err(error.into());
    }
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let event: ViolationEvent<'_> = serde_json::from_slice(line)?;
        if event.rule != "default" {
            alerting.insert(
                event.flow_id.0,
                AlertsToday {
                    rule: event.rule.into_owned(),
                    severity: event.severity.into_owned(),
                },
            );
        }
    }
    Ok(alerting)
}

/// The policy a pass judges with: the zones, the given services, and one
/// alerting rule that names the learned ports so that they count as service
/// ports for the initiator inference.
fn judging_policy(base: &Policy, zones: &[Zone], ports: &[PortService]) -> Policy {
    let mut rules = Vec::new();
    if !ports.is_empty() {
        rules.push(Rule {
            name: "learning".into(),
            from: vec![ZoneRef::Any],
            to: vec![ZoneRef::Any],
            services: ports.iter().map(|&p| inline_service(p)).collect(),
            action: Action::Alert,
            severity: base.default_severity,
            conditions: Default::default(),
        });
    }
    Policy {
        name: "learning".into(),
        default_action: Action::Alert,
        default_severity: base.default_severity,
        zones: zones.to_vec(),
        services: base.services.clone(),
        rules,
        clinical: Default::default(),
    }
}

fn inline_service(port: PortService) -> ServiceRef {
    let (label, spec) = match port {
        PortService::Tcp(p) => (
            format!("tcp/{p}"),
            ServiceSpec {
                tcp: vec![PortRange { lo: p, hi: p }],
                ..ServiceSpec::default()
            },
        ),
        PortService::Udp(p) => (
            format!("udp/{p}"),
            ServiceSpec {
                udp: vec![PortRange { lo: p, hi: p }],
                ..ServiceSpec::default()
            },
        ),
    };
    ServiceRef {
        label,
        named: None,
        spec,
    }
}

/// The responder port of a flow, when it has one.
fn port_of(flow: &ObservedFlow) -> Option<PortService> {
    let port = flow.event.dest_port?;
    match flow.event.proto.as_ref() {
        "tcp" => Some(PortService::Tcp(port)),
        "udp" => Some(PortService::Udp(port)),
        _ => None,
    }
}

/// The named service of `base` covering a port, first in file order.
fn named_service(base: &Policy, port: PortService) -> Option<usize> {
    base.services.iter().position(|s| match port {
        PortService::Tcp(p) => s.spec.tcp.iter().any(|r| r.contains(p)),
        PortService::Udp(p) => s.spec.udp.iter().any(|r| r.contains(p)),
    })
}

/// The responder ports that the learned rules will name inline: those no
/// given service covers. Sorted, so passes compare equal.
fn ports_to_name(base: &Policy, flows: &[ObservedFlow]) -> Vec<PortService> {
    let ports: BTreeSet<PortService> = flows
        .iter()
        .filter_map(port_of)
        .filter(|&p| named_service(base, p).is_none())
        .collect();
    ports.into_iter().collect()
}

fn zone_ref(zones: &[Zone], name: &str) -> ZoneRef {
    zones
        .iter()
        .position(|z| z.name == name)
        .map_or(ZoneRef::Unknown, ZoneRef::Zone)
}

/// Sort key of a zone reference: file order, `unknown` last.
fn zone_order(zone: ZoneRef) -> usize {
    match zone {
        ZoneRef::Zone(i) => i,
        ZoneRef::Unknown | ZoneRef::Any => usize::MAX,
    }
}

/// What a service label sorts by: named services in file order, then
/// inline ports, then ICMP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ServiceKey {
    Named(usize),
    Port(PortService),
    Icmp,
}

/// A rule's group of flows: initiator and responder zones (file order,
/// then name) and, for flows held for review, the rule alerting on them.
type GroupKey = (usize, usize, String, String, Option<AlertsToday>);

#[derive(Default)]
struct Group {
    flows: u64,
    first_seen: String,
    last_seen: String,
    services: BTreeMap<ServiceKey, u64>,
}

impl Group {
    fn add(&mut self, timestamp: &str) {
        self.flows += 1;
        if self.first_seen.is_empty() || timestamp < self.first_seen.as_str() {
            self.first_seen = timestamp.to_string();
        }
        if timestamp > self.last_seen.as_str() {
            self.last_seen = timestamp.to_string();
        }
    }
}

/// One allow rule per zone pair with the services its flows used, and one
/// per zone pair for IP protocols without ports (which only a rule without
/// services can allow).
fn learned_rules(
    base: &Policy,
    zones: &[Zone],
    flows: &[ObservedFlow],
    alerting: &HashMap<u64, AlertsToday>,
) -> Vec<LearnedRule> {
    let mut with_services: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut portless: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for flow in flows {
        let event = &flow.event;
        let from = zone_ref(zones, &event.src_zone);
        let to = zone_ref(zones, &event.dest_zone);
        let key = (
            zone_order(from),
            zone_order(to),
            event.src_zone.to_string(),
            event.dest_zone.to_string(),
            alerting.get(&event.flow_id.0).cloned(),
        );
        let service = match (port_of(flow), event.proto.as_ref()) {
            (Some(port), _) => Some(match named_service(base, port) {
                Some(named) => ServiceKey::Named(named),
                None => ServiceKey::Port(port),
            }),
            (None, "icmp" | "icmpv6") => Some(ServiceKey::Icmp),
            (None, _) => None,
        };
        let group = match &service {
            Some(_) => with_services.entry(key).or_default(),
            None => portless.entry(key).or_default(),
        };
        group.add(&event.timestamp.to_string());
        if let Some(service) = service {
            *group.services.entry(service).or_insert(0) += 1;
        }
    }
    let mut rules = Vec::new();
    let mut keys: BTreeSet<GroupKey> = with_services.keys().cloned().collect();
    keys.extend(portless.keys().cloned());
    // Pairs held for review under more than one alerting rule name each
    // review rule after its alerting rule too.
    let mut reviews_per_pair: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (_, _, from, to, alerts) in &keys {
        if alerts.is_some() {
            *reviews_per_pair.entry((from, to)).or_default() += 1;
        }
    }
    for key in &keys {
        let (_, _, from_name, to_name, alerts_today) = key;
        let from = zone_ref(zones, from_name);
        let to = zone_ref(zones, to_name);
        let name = match alerts_today {
            None => format!("{from_name}-to-{to_name}"),
            Some(alerts) if reviews_per_pair[&(from_name.as_str(), to_name.as_str())] > 1 => {
                format!("{from_name}-to-{to_name}-review-{}", alerts.rule)
            }
            Some(_) => format!("{from_name}-to-{to_name}-review"),
        };
        if let Some(group) = with_services.remove(key) {
            let mut services = Vec::new();
            let mut per_service = Vec::new();
            for (service, count) in &group.services {
                let reference = match service {
                    ServiceKey::Named(i) => ServiceRef {
                        label: base.services[*i].name.clone(),
                        named: Some(*i),
                        spec: base.services[*i].spec.clone(),
                    },
                    ServiceKey::Port(port) => inline_service(*port),
                    ServiceKey::Icmp => ServiceRef {
                        label: "icmp".into(),
                        named: None,
                        spec: ServiceSpec {
                            icmp: true,
                            ..ServiceSpec::default()
                        },
                    },
                };
                per_service.push((reference.label.clone(), *count));
                services.push(reference);
            }
            rules.push(LearnedRule {
                rule: allow_rule(name.clone(), from, to, services),
                flows: group.flows,
                first_seen: group.first_seen,
                last_seen: group.last_seen,
                per_service,
                alerts_today: alerts_today.clone(),
            });
        }
        if let Some(group) = portless.remove(key) {
            rules.push(LearnedRule {
                rule: allow_rule(format!("{name}-other-ip"), from, to, Vec::new()),
                flows: group.flows,
                first_seen: group.first_seen,
                last_seen: group.last_seen,
                per_service: Vec::new(),
                alerts_today: alerts_today.clone(),
            });
        }
    }
    rules
}

fn allow_rule(name: String, from: ZoneRef, to: ZoneRef, services: Vec<ServiceRef>) -> Rule {
    Rule {
        name,
        from: vec![from],
        to: vec![to],
        services,
        action: Action::Allow,
        severity: Severity::Medium,
        conditions: Default::default(),
    }
}

/// Private addresses (RFC 1918, shared address space, unique local IPv6)
/// that no zone holds, grouped into /24 and /64 zones. Public addresses stay
/// `unknown`: the internet is not a zone to propose.
fn propose_zones(zones: &[Zone], flows: &[ObservedFlow]) -> Vec<Zone> {
    let mut subnets: BTreeMap<IpNetwork, BTreeSet<IpAddr>> = BTreeMap::new();
    for flow in flows {
        for (address, zone) in [
            (flow.event.src_ip, &flow.event.src_zone),
            (flow.event.dest_ip, &flow.event.dest_zone),
        ] {
            if zone != "unknown" {
                continue;
            }
            if let Some(subnet) = private_subnet(address) {
                subnets.entry(subnet).or_default().insert(address);
            }
        }
    }
    let taken = |name: &str| zones.iter().any(|z| z.name == name);
    subnets
        .into_iter()
        .map(|(subnet, addresses)| Zone {
            name: {
                let base = subnet_zone_name(subnet);
                let mut name = base.clone();
                let mut n = 2;
                while taken(&name) {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                name
            },
            description: Some(format!(
                "Proposed by segwatch learn: {} address{} seen in {subnet}",
                addresses.len(),
                if addresses.len() == 1 { "" } else { "es" }
            )),
            networks: vec![subnet],
            criticality: None,
        })
        .collect()
}

fn private_subnet(address: IpAddr) -> Option<IpNetwork> {
    match address {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let private = o[0] == 10
                || (o[0] == 172 && (16..32).contains(&o[1]))
                || (o[0] == 192 && o[1] == 168)
                || (o[0] == 100 && (64..128).contains(&o[1]));
            private.then(|| {
                let net = std::net::Ipv4Addr::new(o[0], o[1], o[2], 0);
                IpNetwork::new(IpAddr::V4(net), 24).ok()
            })?
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            ((s[0] & 0xfe00) == 0xfc00).then(|| {
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                IpNetwork::new(IpAddr::V6(net), 64).ok()
            })?
        }
    }
}

fn subnet_zone_name(subnet: IpNetwork) -> String {
    match subnet.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("net-{}-{}-{}-0", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("net-{:x}-{:x}-{:x}-{:x}", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_subnets_are_proposed_public_ones_are_not() {
        let subnet = |a: &str| private_subnet(a.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(subnet("10.1.2.3").as_deref(), Some("10.1.2.0/24"));
        assert_eq!(subnet("172.20.0.9").as_deref(), Some("172.20.0.0/24"));
        assert_eq!(subnet("192.168.7.1").as_deref(), Some("192.168.7.0/24"));
        assert_eq!(
            subnet("fd00:20:0:1::5").as_deref(),
            Some("fd00:20:0:1::/64")
        );
        assert_eq!(subnet("8.8.8.8"), None);
        assert_eq!(subnet("172.32.0.1"), None);
        assert_eq!(subnet("2001:db8::1"), None);
        let name = |a: &str| subnet_zone_name(private_subnet(a.parse().unwrap()).unwrap());
        assert_eq!(name("10.1.2.3"), "net-10-1-2-0");
        assert_eq!(name("fd00:20:0:1::5"), "net-fd00-20-0-1");
    }
}
