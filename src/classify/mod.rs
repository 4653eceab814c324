//! The compiled classifier: a [`Policy`] turned into immutable lookup tables.
//!
//! Judging a flow (contract section 2) is two longest-prefix zone lookups
//! ([`ZoneTable`]), then the zone pair's rule tables (`pairs`): the rules that
//! could apply to a pair have been painted into port maps, first rule first,
//! when the policy was compiled, so a verdict is one binary search for a pair
//! that rules name (its cell holds every rule that applies to it) and the
//! lower of at most two otherwise, whatever the number of rules. The tables
//! grow with the rules and the zones, not with the zone pairs.
//!
//! A `CompiledPolicy` is never changed after [`CompiledPolicy::compile`];
//! a reload compiles a new one and swaps it in whole.

#![forbid(unsafe_code)]

mod apps;
mod judge;
mod names;
mod pairs;
mod ports;
mod zones;

pub use judge::{Judgement, PolicyInForce};
pub use names::exception_warnings;
pub use ports::{PortMap, PortPainter, PortSet};
pub use zones::{ZoneId, ZoneMatch, ZoneTable};

use crate::policy::{Action, Policy, Severity};
use crate::wire::Transport;

/// Index of a rule in file order; [`Verdict::DEFAULT_RULE`] is the default.
pub type RuleId = u32;

/// The outcome of judging a flow: which rule decided it, and which of the
/// rule's services matched (for the event's `service` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The deciding rule, or [`Verdict::DEFAULT_RULE`].
    pub rule: RuleId,
    /// Index into the rule's services of the first one that matched, or
    /// [`Verdict::FIRST_NAMED`] when the rule has no services (or for the
    /// default): then the event names the first named service that matches.
    pub rule_service: u32,
}

impl Verdict {
    /// The rule id of the default verdict.
    pub const DEFAULT_RULE: RuleId = RuleId::MAX;
    /// See [`Verdict::rule_service`].
    pub const FIRST_NAMED: u32 = u32::MAX;
    pub(crate) const DEFAULT: Verdict = Verdict {
        rule: Self::DEFAULT_RULE,
        rule_service: Self::FIRST_NAMED,
    };
}

/// A zone as the event and metrics see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZoneInfo {
    /// The zone's name (`unknown` for the unknown zone).
    pub name: String,
    /// Its criticality label, if set.
    pub criticality: Option<String>,
}

/// A rule as the event and metrics see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleInfo {
    /// The rule's name (`default` for the default verdict).
    pub name: String,
    /// What the rule does.
    pub action: Action,
    /// Severity of its alerts.
    pub severity: Severity,
    /// The rule's services as written, in order (the event's `service`); what each matches
    /// is compiled into the pair tables.
    pub services: Vec<String>,
}

/// The first named service, in file order, that matches each protocol and
/// port: the event's `service` for rules without services and the default.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct NamedServiceMap {
    tcp: PortMap<u32>,
    udp: PortMap<u32>,
    echo: u32,
}

const NO_SERVICE: u32 = u32::MAX;

/// A policy compiled for the hot path. Immutable.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CompiledPolicy {
    name: String,
    zones: Vec<ZoneInfo>,
    unknown_zone: ZoneInfo,
    zone_table: ZoneTable,
    rules: Vec<RuleInfo>,
    default_rule: RuleInfo,
    service_names: Vec<String>,
    /// Named services by port, those that require an application left out.
    named_services: NamedServiceMap,
    /// The named services that require an application (index in file
    /// order, the application): they match a flow of that application,
    /// whatever its port, and no other.
    app_services: Vec<(u32, String)>,
    named_tcp_ports: PortSet,
    named_udp_ports: PortSet,
    /// The port rules of each zone pair.
    pairs: pairs::ZonePairs,
    /// Each rule's action, by rule id, beside `rules`: the one field a new
    /// flow reads, 1 byte a rule rather than a line of `RuleInfo` (a
    /// 5,000-rule policy's `rules` outgrow the caches the flow tables use).
    actions: Vec<Action>,
    /// Rules about applications and `[clinical]` checks.
    apps: apps::AppStage,
}

impl CompiledPolicy {
    /// Compiles a validated policy.
    pub fn compile(policy: &Policy) -> CompiledPolicy {
        let zones: Vec<ZoneInfo> = policy
            .zones
            .iter()
            .map(|z| ZoneInfo {
                name: z.name.clone(),
                criticality: z.criticality.clone(),
            })
            .collect();
        let zone_table = ZoneTable::build(
            policy
                .zones
                .iter()
                .enumerate()
                .flat_map(|(id, z)| z.networks.iter().map(move |n| (n, id as ZoneId))),
        );
        let mut rules: Vec<RuleInfo> = policy
            .rules
            .iter()
            .map(|r| RuleInfo {
                name: r.name.clone(),
                action: r.action,
                severity: r.severity,
                services: r.services.iter().map(|s| s.label.clone()).collect(),
            })
            .collect();

        let (mut named_tcp_ports, mut named_udp_ports) = (PortSet::new(), PortSet::new());
        let all_specs = policy.services.iter().map(|s| &s.spec).chain(
            policy
                .rules
                .iter()
                .flat_map(|r| r.services.iter().map(|s| &s.spec)),
        );
        for spec in all_specs {
            spec.tcp
                .iter()
                .for_each(|&range| named_tcp_ports.insert_range(range));
            spec.udp
                .iter()
                .for_each(|&range| named_udp_ports.insert_range(range));
        }

        let pairs = pairs::ZonePairs::compile(policy);
        let apps = apps::AppStage::build(policy, rules.len() as RuleId);
        if !policy.clinical.is_empty() {
            let flag = |name: &str, severity| RuleInfo {
                name: name.into(),
                action: Action::Alert,
                severity,
                services: Vec::new(),
            };
            rules.push(flag(
                "clinical-unexpected-port",
                policy
                    .clinical
                    .unexpected_port
                    .unwrap_or(policy.default_severity),
            ));
            rules.push(flag(
                "clinical-unknown-ae-title",
                policy.clinical.unknown_ae_title,
            ));
            rules.push(flag(
                "clinical-unknown-hl7-sender",
                policy.clinical.unknown_hl7_sender,
            ));
        }
        let actions = rules.iter().map(|rule| rule.action).collect();
        CompiledPolicy {
            name: policy.name.clone(),
            zones,
            unknown_zone: ZoneInfo {
                name: "unknown".into(),
                criticality: None,
            },
            zone_table,
            rules,
            default_rule: RuleInfo {
                name: "default".into(),
                action: policy.default_action,
                severity: policy.default_severity,
                services: Vec::new(),
            },
            service_names: policy.services.iter().map(|s| s.name.clone()).collect(),
            named_services: compile_named_services(policy),
            app_services: policy
                .services
                .iter()
                .enumerate()
                .filter_map(|(index, service)| Some((index as u32, service.spec.app.clone()?)))
                .collect(),
            named_tcp_ports,
            named_udp_ports,
            actions,
            pairs,
            apps,
        }
    }

    /// Checks what judging indexes without a bounds check of its own, for a compiled policy
    /// that was stored and read back (the policy cache): every zone the zone table returns has
    /// a slot, every zone pair an entry, every entry a table, every port map a value for every
    /// port, every rule an action. A policy from [`CompiledPolicy::compile`] always passes (a
    /// property test holds it to that). It makes a crafted entry unable to panic, not
    /// truthful: the cache's directory must be trusted like the policy file.
    pub fn check_consistent(&self) -> Result<(), &'static str> {
        let zones = self.zones.len();
        if self
            .zone_table
            .zone_ids()
            .any(|zone| zone != ZoneTable::UNKNOWN && zone as usize >= zones)
        {
            return Err("the zone table names a zone the policy does not have");
        }
        self.pairs.check_consistent(zones + 1)?;
        if self.actions.len() != self.rules.len() {
            return Err("the rules' actions do not match the rules");
        }
        if !self.named_services.tcp.is_well_formed() || !self.named_services.udp.is_well_formed() {
            return Err("a port table does not cover every port");
        }
        Ok(())
    }

    /// True when verdicts may depend on the flow's application (application
    /// rules or `[clinical]` checks): such flows are judged again when their
    /// application is known.
    pub fn needs_app(&self) -> bool {
        self.apps.active()
    }

    /// The verdict of a flow whose application is known (or ruled out),
    /// given its port verdict `base` (see [`CompiledPolicy::judge`]).
    pub fn judge_app(
        &self,
        from: ZoneId,
        to: ZoneId,
        transport: Transport,
        port: u16,
        base: Verdict,
        app: Option<&crate::app::Detection>,
    ) -> Verdict {
        self.apps.judge(
            from,
            to,
            ZoneTable::UNKNOWN,
            transport,
            port,
            base,
            app,
            |v| self.action(v),
        )
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone of an address (`ipv6` tells the family).
    #[inline]
    pub fn zone_of(&self, ipv6: bool, addr: u128) -> ZoneMatch {
        self.zone_table.lookup(ipv6, addr)
    }

    /// True when some named or inline service of the policy names `port` for
    /// `transport` (TCP and UDP only): the initiator inference's rule 2.
    #[inline]
    pub fn names_port(&self, transport: Transport, port: u16) -> bool {
        match transport {
            Transport::Tcp => self.named_tcp_ports.contains(port),
            Transport::Udp => self.named_udp_ports.contains(port),
            _ => false,
        }
    }

    /// Judges a flow from `from` (initiator's zone) to `to` (responder's
    /// zone) on `transport`, to the responder's `port`.
    #[inline(always)]
    pub fn judge(&self, from: ZoneId, to: ZoneId, transport: Transport, port: u16) -> Verdict {
        // `unknown` takes the last slot: its id, `ZoneTable::UNKNOWN`, is above every zone's
        // (`check_consistent` holds a stored policy to that), so one `min` makes the slot.
        const _: () = assert!(ZoneTable::UNKNOWN == ZoneId::MAX);
        let slot = |zone: ZoneId| (zone as usize).min(self.zones.len());
        self.pairs.judge(slot(from), slot(to), transport, port)
    }

    /// The rule (or the default) behind a verdict.
    pub fn rule(&self, rule: RuleId) -> &RuleInfo {
        self.rules.get(rule as usize).unwrap_or(&self.default_rule)
    }

    /// The action a verdict takes.
    #[inline]
    pub fn action(&self, verdict: Verdict) -> Action {
        self.actions
            .get(verdict.rule as usize)
            .copied()
            .unwrap_or(self.default_rule.action)
    }

    /// The zone behind an id.
    pub fn zone(&self, zone: ZoneId) -> &ZoneInfo {
        self.zones.get(zone as usize).unwrap_or(&self.unknown_zone)
    }

    /// Number of zones, `unknown` not counted.
    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The default verdict's pseudo-rule.
    pub fn default_rule(&self) -> &RuleInfo {
        &self.default_rule
    }

    /// The event's `service` field for a flow judged by `verdict`, of
    /// application `app` when detection identified one: among the matched
    /// rule's services the first that matches; for a rule without services,
    /// or the default, the first named service in file order that matches;
    /// `None` when none matches. A service that requires an application
    /// matches a flow of that application only.
    pub fn service_label(
        &self,
        verdict: Verdict,
        transport: Transport,
        port: u16,
        app: Option<crate::app::App>,
    ) -> Option<&str> {
        if verdict.rule_service != Verdict::FIRST_NAMED {
            let services = &self.rule(verdict.rule).services;
            return services
                .get(verdict.rule_service as usize)
                .map(String::as_str);
        }
        let named = self.first_named_service(transport, port, app);
        self.service_names.get(named as usize).map(String::as_str)
    }

    /// The index in file order of the first named service that matches a
    /// flow of `app` on `transport` to `port`; `NO_SERVICE` for none.
    fn first_named_service(
        &self,
        transport: Transport,
        port: u16,
        app: Option<crate::app::App>,
    ) -> u32 {
        let by_port = match transport {
            Transport::Tcp => self.named_services.tcp.get(port),
            Transport::Udp => self.named_services.udp.get(port),
            Transport::EchoRequest | Transport::EchoReply => self.named_services.echo,
            Transport::Other => NO_SERVICE,
        };
        let by_app = app.and_then(|app| {
            self.app_services
                .iter()
                .find(|(_, required)| required == app.as_str())
                .map(|(index, _)| *index)
        });
        // NO_SERVICE is u32::MAX: any service comes before it.
        by_app.map_or(by_port, |index| index.min(by_port))
    }

    /// Number of distinct rule tables of the zone pairs (lists of rules that
    /// apply alike share one).
    pub fn distinct_pair_tables(&self) -> usize {
        self.pairs.table_count()
    }

    /// Bytes the zone-pair tables take.
    pub fn pair_table_bytes(&self) -> usize {
        self.pairs.heap_bytes()
    }
}

fn compile_named_services(policy: &Policy) -> NamedServiceMap {
    let mut tcp = PortPainter::new();
    let mut udp = PortPainter::new();
    let mut echo = NO_SERVICE;
    for (index, service) in policy.services.iter().enumerate() {
        let index = index as u32;
        // A service that requires an application matches by it, not by
        // its ports (see `CompiledPolicy::first_named_service`).
        if service.spec.app.is_some() {
            continue;
        }
        service
            .spec
            .tcp
            .iter()
            .for_each(|&range| tcp.paint(range, index));
        service
            .spec
            .udp
            .iter()
            .for_each(|&range| udp.paint(range, index));
        if service.spec.icmp && echo == NO_SERVICE {
            echo = index;
        }
    }
    NamedServiceMap {
        tcp: tcp.finish(NO_SERVICE),
        udp: udp.finish(NO_SERVICE),
        echo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_the_rules_actions_and_the_default() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/imaging-with-applications.toml"
        ));
        let (policy, _) = crate::policy::load_policy_file(path).expect("bundled policy loads");
        let compiled = CompiledPolicy::compile(&policy);
        let verdict = |rule| Verdict {
            rule,
            rule_service: Verdict::FIRST_NAMED,
        };
        assert!(
            compiled.rules().len() > policy.rules.len(),
            "clinical checks count"
        );
        for rule in 0..compiled.rules().len() as RuleId {
            assert_eq!(compiled.action(verdict(rule)), compiled.rule(rule).action);
        }
        let default = verdict(Verdict::DEFAULT_RULE);
        assert_eq!(compiled.action(default), policy.default_action);
    }
}
