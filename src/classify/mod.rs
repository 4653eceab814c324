//! The compiled classifier: a [`Policy`] turned into immutable lookup tables.
//!
//! Judging a flow (contract section 2) is two longest-prefix zone lookups
//! ([`ZoneTable`]), one index into a table of zone pairs, and one binary
//! search in that pair's port map. Every rule that could apply to a zone pair
//! has been painted into the pair's port maps, first rule first, when the
//! policy was compiled, so the cost of a verdict does not grow with the
//! number of rules. Pairs with the same applicable rules share one entry.
//!
//! A `CompiledPolicy` is never changed after [`CompiledPolicy::compile`];
//! a reload compiles a new one and swaps it in whole.

mod apps;
mod cache;
mod judge;
mod names;
mod packed;
mod ports;
mod zones;

pub use cache::{
    KEPT_ENTRIES, LoadedPolicy, PolicyCache, PolicySource, decode_entry_body, encode_entry_body,
};
pub use judge::{Judgement, PolicyInForce};
pub use names::exception_warnings;
pub use ports::{PortMap, PortPainter, PortSet};
pub use zones::{ZoneId, ZoneMatch, ZoneTable};

use std::collections::HashMap;

use crate::policy::{Action, Policy, Rule, Severity, ZoneRef};
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
    const DEFAULT: Verdict = Verdict {
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

/// The rules that apply to one (initiator zone, responder zone) pair, painted
/// into one verdict per protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PairRules {
    tcp: PortMap<Verdict>,
    udp: PortMap<Verdict>,
    echo: Verdict,
    other: Verdict,
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
    named_services: NamedServiceMap,
    named_tcp_ports: PortSet,
    named_udp_ports: PortSet,
    /// `pair_index[from_slot * slots + to_slot]` indexes `pairs`; the slot of
    /// a zone is its id, and `unknown` takes the last slot.
    pair_index: PairIndex,
    /// Each rule's action, by rule id, beside `rules`: the one field a new
    /// flow reads, 1 byte a rule rather than a line of `RuleInfo` (a
    /// 5,000-rule policy's `rules` outgrow the caches the flow tables use).
    actions: Vec<Action>,
    pairs: Vec<PairRules>,
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

        let (pair_index, pairs) = compile_pairs(policy);
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
            named_tcp_ports,
            named_udp_ports,
            actions,
            pair_index: PairIndex::new(pair_index, pairs.len()),
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
        let slots = zones + 1;
        if Some(self.pair_index.len()) != slots.checked_mul(slots)
            || self
                .pair_index
                .largest()
                .is_none_or(|table| table >= self.pairs.len())
        {
            return Err("the zone-pair index does not fit the zones and tables");
        }
        if self.actions.len() != self.rules.len() {
            return Err("the rules' actions do not match the rules");
        }
        let maps_well_formed = self
            .pairs
            .iter()
            .all(|pair| pair.tcp.is_well_formed() && pair.udp.is_well_formed())
            && self.named_services.tcp.is_well_formed()
            && self.named_services.udp.is_well_formed();
        if !maps_well_formed {
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
    #[inline]
    pub fn judge(&self, from: ZoneId, to: ZoneId, transport: Transport, port: u16) -> Verdict {
        let slots = self.zones.len() + 1;
        let slot = |zone: ZoneId| {
            if zone == ZoneTable::UNKNOWN {
                self.zones.len()
            } else {
                zone as usize
            }
        };
        let pair = &self.pairs[self.pair_index.get(slot(from) * slots + slot(to))];
        match transport {
            Transport::Tcp => pair.tcp.get(port),
            Transport::Udp => pair.udp.get(port),
            Transport::EchoRequest | Transport::EchoReply => pair.echo,
            Transport::Other => pair.other,
        }
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

    /// The event's `service` field for a flow judged by `verdict`: among the
    /// matched rule's services the first that matches; for a rule without
    /// services, or the default, the first named service in file order that
    /// matches; `None` when none matches.
    pub fn service_label(&self, verdict: Verdict, transport: Transport, port: u16) -> Option<&str> {
        if verdict.rule_service != Verdict::FIRST_NAMED {
            let services = &self.rule(verdict.rule).services;
            return services
                .get(verdict.rule_service as usize)
                .map(String::as_str);
        }
        let named = match transport {
            Transport::Tcp => self.named_services.tcp.get(port),
            Transport::Udp => self.named_services.udp.get(port),
            Transport::EchoRequest | Transport::EchoReply => self.named_services.echo,
            Transport::Other => NO_SERVICE,
        };
        self.service_names.get(named as usize).map(String::as_str)
    }

    /// Number of distinct zone-pair rule tables (pairs with the same
    /// applicable rules share one).
    pub fn distinct_pair_tables(&self) -> usize {
        self.pairs.len()
    }
}

/// The zone-pair index: 2 bytes a pair when there are at most 65,536
/// distinct pair tables (512 zones make 263,169 pairs: 514 KiB rather than
/// 1 MiB, read once per new flow at a random place).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum PairIndex {
    Narrow(#[serde(with = "packed")] Vec<u16>),
    Wide(#[serde(with = "packed")] Vec<u32>),
}

impl PairIndex {
    fn new(index: Vec<u32>, tables: usize) -> PairIndex {
        if tables <= 1 << 16 {
            PairIndex::Narrow(index.into_iter().map(|id| id as u16).collect())
        } else {
            PairIndex::Wide(index)
        }
    }

    /// Number of zone pairs.
    fn len(&self) -> usize {
        match self {
            PairIndex::Narrow(index) => index.len(),
            PairIndex::Wide(index) => index.len(),
        }
    }

    /// The largest table index in it; `None` when empty.
    fn largest(&self) -> Option<usize> {
        match self {
            PairIndex::Narrow(index) => index.iter().max().map(|&table| usize::from(table)),
            PairIndex::Wide(index) => index.iter().max().map(|&table| table as usize),
        }
    }

    #[inline]
    fn get(&self, pair: usize) -> usize {
        match self {
            PairIndex::Narrow(index) => usize::from(index[pair]),
            PairIndex::Wide(index) => index[pair] as usize,
        }
    }
}

/// Builds the zone-pair index and the distinct per-pair tables.
///
/// The rules that apply to a pair are the rules whose `from` holds the
/// initiator's slot and whose `to` holds the responder's. Row by row (one
/// initiator slot at a time), each of the slot's rules is appended to the
/// cells of its `to` slots: the work is what the rules name (a rule from one
/// zone to two touches two cells), not the 513 x 513 pairs of a 512-zone
/// policy, most of which no rule names and which share one table of
/// defaults. Cells with the same list share one compiled table, found
/// through a hash map keyed by the list.
fn compile_pairs(policy: &Policy) -> (Vec<u32>, Vec<PairRules>) {
    let slots = policy.zones.len() + 1;
    let unknown_slot = policy.zones.len();
    let expand = |zones: &[ZoneRef], out: &mut Vec<u32>| {
        for zone in zones {
            match *zone {
                ZoneRef::Any => out.extend(0..slots as u32),
                ZoneRef::Unknown => out.push(unknown_slot as u32),
                ZoneRef::Zone(id) => out.push(id as u32),
            }
        }
    };
    // Application rules are judged in their own stage: the port tables are
    // painted without them (their ids kept, so verdicts name them), as if
    // their `from` were empty.
    let port_rules = || {
        policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| !rule.depends_on_app())
    };
    // Each slot's rules by `from`, in order (a zone named twice, or beside
    // `any`, holds the rule once), and each rule's `to` slots.
    let mut rules_from: Vec<Vec<u32>> = vec![Vec::new(); slots];
    let mut slots_of = Vec::new();
    for (r, rule) in port_rules() {
        slots_of.clear();
        expand(&rule.from, &mut slots_of);
        for &slot in &slots_of {
            let list = &mut rules_from[slot as usize];
            if list.last() != Some(&(r as u32)) {
                list.push(r as u32);
            }
        }
    }
    let mut to_slots: Vec<Vec<u32>> = vec![Vec::new(); policy.rules.len()];
    for (r, rule) in port_rules() {
        expand(&rule.to, &mut to_slots[r]);
    }

    let mut interned: HashMap<Vec<u32>, u32, foldhash::fast::RandomState> = HashMap::default();
    let mut pairs = Vec::new();
    let mut intern = |list: &[u32]| match interned.get(list) {
        Some(&id) => id,
        None => {
            let id = pairs.len() as u32;
            pairs.push(compile_pair(&policy.rules, list));
            interned.insert(list.to_vec(), id);
            id
        }
    };
    let mut pair_index = vec![0; slots * slots];
    let mut cells: Vec<Vec<u32>> = vec![Vec::new(); slots];
    let mut touched: Vec<u32> = Vec::new();
    for (from, row) in rules_from.iter().zip(pair_index.chunks_exact_mut(slots)) {
        for &r in from {
            for &to in &to_slots[r as usize] {
                let cell = &mut cells[to as usize];
                if cell.is_empty() {
                    touched.push(to);
                }
                // Consecutive: a rule's pushes come together.
                if cell.last() != Some(&r) {
                    cell.push(r);
                }
            }
        }
        if touched.len() < slots {
            row.fill(intern(&[]));
        }
        for &to in &touched {
            row[to as usize] = intern(&cells[to as usize]);
            cells[to as usize].clear();
        }
        touched.clear();
    }
    (pair_index, pairs)
}

/// Paints the applicable rules, in order, into one pair's tables.
fn compile_pair(rules: &[Rule], applicable: &[u32]) -> PairRules {
    let mut tcp = PortPainter::new();
    let mut udp = PortPainter::new();
    let mut echo = None;
    let mut other = None;
    for &id in applicable {
        let rule = &rules[id as usize];
        if rule.services.is_empty() {
            let verdict = Verdict {
                rule: id,
                rule_service: Verdict::FIRST_NAMED,
            };
            tcp.paint_rest(verdict);
            udp.paint_rest(verdict);
            echo.get_or_insert(verdict);
            other.get_or_insert(verdict);
            // Every protocol and port is decided: later rules cannot match.
            break;
        }
        for (index, service) in rule.services.iter().enumerate() {
            let verdict = Verdict {
                rule: id,
                rule_service: index as u32,
            };
            service
                .spec
                .tcp
                .iter()
                .for_each(|&range| tcp.paint(range, verdict));
            service
                .spec
                .udp
                .iter()
                .for_each(|&range| udp.paint(range, verdict));
            if service.spec.icmp {
                echo.get_or_insert(verdict);
            }
        }
    }
    PairRules {
        tcp: tcp.finish(Verdict::DEFAULT),
        udp: udp.finish(Verdict::DEFAULT),
        echo: echo.unwrap_or(Verdict::DEFAULT),
        other: other.unwrap_or(Verdict::DEFAULT),
    }
}

fn compile_named_services(policy: &Policy) -> NamedServiceMap {
    let mut tcp = PortPainter::new();
    let mut udp = PortPainter::new();
    let mut echo = NO_SERVICE;
    for (index, service) in policy.services.iter().enumerate() {
        let index = index as u32;
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
    fn pair_index_is_narrow_up_to_65536_tables_and_reads_the_same_either_way() {
        let ids: Vec<u32> = (0..70_000).map(|i| (i * 7) % 70_000).collect();
        let narrow_ids: Vec<u32> = ids.iter().map(|id| id % 65_536).collect();
        let narrow = PairIndex::new(narrow_ids.clone(), 65_536);
        assert!(matches!(narrow, PairIndex::Narrow(_)));
        let wide = PairIndex::new(ids.clone(), 70_000);
        assert!(matches!(wide, PairIndex::Wide(_)));
        for pair in 0..ids.len() {
            assert_eq!(narrow.get(pair), narrow_ids[pair] as usize);
            assert_eq!(wide.get(pair), ids[pair] as usize);
        }
    }

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
