//! Shadowed rules: a rule that one earlier rule fully covers can never match, since the first
//! matching rule wins.
//!
//! Rule B is covered by an earlier rule A when every flow B matches, A matches too:
//! - B's `from` is a subset of A's `from`, and the same for `to`. A zone list holding `any` is
//!   the universe (which takes in `unknown`); so is one listing every zone and `unknown`. A list
//!   without `any` covers `unknown` only if it names it.
//! - B's services are a subset of A's, compared as port sets per protocol (TCP, UDP) plus the
//!   ICMP echo flag. An empty service list is the universe: every protocol, other IP protocols
//!   (GRE, ESP, ...) included, so it is covered only by another empty list.
//!
//! Only single earlier rules are considered: a rule covered by the union of several earlier
//! rules also never matches, but finding that is costlier and the contract asks for the single
//! case. Port sets are compared as merged, sorted intervals, so the cost does not depend on the
//! width of the ranges.

use super::{PortRange, Rule, ZoneRef};

/// A rule's zone list as a set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ZoneSet {
    /// Every zone and `unknown`.
    Universe,
    /// Sorted, without duplicates; `unknown` is `None`.
    Some(Vec<Option<usize>>),
}

impl ZoneSet {
    fn new(refs: &[ZoneRef], zone_count: usize) -> ZoneSet {
        let mut set = Vec::with_capacity(refs.len());
        for r in refs {
            match r {
                ZoneRef::Any => return ZoneSet::Universe,
                ZoneRef::Unknown => set.push(None),
                ZoneRef::Zone(i) => set.push(Some(*i)),
            }
        }
        set.sort_unstable();
        set.dedup();
        // `unknown` plus every zone of the policy is the universe too.
        if set.len() == zone_count + 1 {
            return ZoneSet::Universe;
        }
        ZoneSet::Some(set)
    }

    fn is_subset_of(&self, other: &ZoneSet) -> bool {
        match (self, other) {
            (_, ZoneSet::Universe) => true,
            (ZoneSet::Universe, ZoneSet::Some(_)) => false,
            (ZoneSet::Some(a), ZoneSet::Some(b)) => a.iter().all(|z| b.binary_search(z).is_ok()),
        }
    }
}

/// A rule's services as the set of flows they match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ServiceSet {
    /// No service list: every protocol and port.
    Universe,
    /// Merged TCP and UDP port intervals and the ICMP echo flag.
    Some {
        tcp: Vec<PortRange>,
        udp: Vec<PortRange>,
        icmp: bool,
    },
}

impl ServiceSet {
    fn new(rule: &Rule) -> ServiceSet {
        if rule.services.is_empty() {
            return ServiceSet::Universe;
        }
        let specs = rule.services.iter().map(|s| &s.spec);
        ServiceSet::Some {
            tcp: merge(specs.clone().flat_map(|s| s.tcp.iter().copied())),
            udp: merge(specs.clone().flat_map(|s| s.udp.iter().copied())),
            icmp: specs.clone().any(|s| s.icmp),
        }
    }

    fn is_subset_of(&self, other: &ServiceSet) -> bool {
        match (self, other) {
            (_, ServiceSet::Universe) => true,
            (ServiceSet::Universe, ServiceSet::Some { .. }) => false,
            (
                ServiceSet::Some { tcp, udp, icmp },
                ServiceSet::Some {
                    tcp: tcp2,
                    udp: udp2,
                    icmp: icmp2,
                },
            ) => ports_subset(tcp, tcp2) && ports_subset(udp, udp2) && (!icmp || *icmp2),
        }
    }
}

/// Sorts ranges and merges those that overlap or touch (`1-5` and `6-9` become `1-9`).
fn merge(ranges: impl Iterator<Item = PortRange>) -> Vec<PortRange> {
    // In place: one allocation a list (a policy of tens of thousands of rules makes two lists
    // a rule).
    let mut ranges: Vec<PortRange> = ranges.collect();
    ranges.sort_unstable();
    ranges.dedup_by(|later, earlier| {
        let touches = u32::from(later.lo) <= u32::from(earlier.hi) + 1;
        if touches {
            earlier.hi = earlier.hi.max(later.hi);
        }
        touches
    });
    ranges
}

/// True when every port of `sub` lies in `sup`; both merged (see [`merge`]). Since `sup` is
/// merged, a range of `sub` is covered only if one interval of `sup` holds all of it.
fn ports_subset(sub: &[PortRange], sup: &[PortRange]) -> bool {
    sub.iter().all(|r| {
        // The last interval of `sup` starting at or before `r.lo`.
        let i = sup.partition_point(|s| s.lo <= r.lo);
        i > 0 && sup[i - 1].hi >= r.hi
    })
}

/// For each rule that an earlier single rule covers, its index and the first such earlier
/// rule's index. Rules whose `usable` flag is false (they had errors) are skipped on both sides,
/// so that a half-resolved rule causes no false warning.
pub(super) fn shadowed(rules: &[Rule], usable: &[bool], zone_count: usize) -> Vec<(usize, usize)> {
    let sets: Vec<_> = rules
        .iter()
        .map(|r| {
            (
                ZoneSet::new(&r.from, zone_count),
                ZoneSet::new(&r.to, zone_count),
                ServiceSet::new(r),
            )
        })
        .collect();
    let usable = |i: usize| usable.get(i).copied().unwrap_or(false);
    let mut earlier = EarlierRules::new(zone_count);
    let mut found = Vec::new();
    for (later, (from, to, services)) in sets.iter().enumerate() {
        if !usable(later) {
            continue;
        }
        let covers = |&earlier: &u32| {
            let (f, t, s) = &sets[earlier as usize];
            from.is_subset_of(f) && to.is_subset_of(t) && services.is_subset_of(s)
        };
        // The first covering rule in rule order of each list, and the first of those.
        if let Some(cover) = earlier
            .candidates(from, to)
            .filter_map(|list| list.iter().find(|e| covers(e)))
            .min()
        {
            found.push((later, *cover as usize));
        }
        earlier.add(later as u32, from, to);
    }
    found
}

/// The rules seen so far, in rule order, filed by how they name zones, so that the rules that
/// could cover a later one are found in short lists: a rule can only be covered by one whose
/// `from` holds every zone of its own `from`, and whose `to` every zone of its `to`. So a rule
/// from named zones to named zones is filed under each of them; one with `any` on one side
/// under the zones of the other; one from `any` to `any` in a list of its own. Policies of tens
/// of thousands of rules load quickly as long as few rules share all their zones on one side
/// with `any` on the other.
struct EarlierRules {
    /// From named zones to named zones, by `from` zone and by `to` zone.
    named_by_from: Vec<Vec<u32>>,
    named_by_to: Vec<Vec<u32>>,
    /// From named zones to `any`, by `from` zone.
    to_any_by_from: Vec<Vec<u32>>,
    /// From `any` to named zones, by `to` zone.
    from_any_by_to: Vec<Vec<u32>>,
    /// From `any` to `any`.
    any_to_any: Vec<u32>,
    zone_count: usize,
}

impl EarlierRules {
    fn new(zone_count: usize) -> EarlierRules {
        let slots = vec![Vec::new(); zone_count + 1];
        EarlierRules {
            named_by_from: slots.clone(),
            named_by_to: slots.clone(),
            to_any_by_from: slots.clone(),
            from_any_by_to: slots,
            any_to_any: Vec::new(),
            zone_count,
        }
    }

    /// A zone's slot: its index, `unknown` last.
    fn slot(&self, zone: &Option<usize>) -> usize {
        zone.unwrap_or(self.zone_count).min(self.zone_count)
    }

    /// The shortest of the lists of `index` under `zones`.
    fn narrowest<'a>(&self, index: &'a [Vec<u32>], zones: &[Option<usize>]) -> &'a [u32] {
        zones
            .iter()
            .map(|zone| &index[self.slot(zone)][..])
            .min_by_key(|list| list.len())
            .unwrap_or(&[])
    }

    /// Lists that together hold every earlier rule that could cover a rule from `from` to `to`.
    fn candidates<'a>(
        &'a self,
        from: &ZoneSet,
        to: &ZoneSet,
    ) -> impl Iterator<Item = &'a [u32]> + 'a {
        let named_from = match from {
            ZoneSet::Some(zones) => Some(zones.as_slice()),
            ZoneSet::Universe => None,
        };
        let named_to = match to {
            ZoneSet::Some(zones) => Some(zones.as_slice()),
            ZoneSet::Universe => None,
        };
        // A rule naming its zones on a side covers only rules naming theirs on that side.
        let named = match (named_from, named_to) {
            (Some(from), Some(to)) => {
                let by_from = self.narrowest(&self.named_by_from, from);
                let by_to = self.narrowest(&self.named_by_to, to);
                if by_to.len() < by_from.len() {
                    by_to
                } else {
                    by_from
                }
            }
            _ => &[],
        };
        let to_any = named_from.map_or(&[][..], |from| self.narrowest(&self.to_any_by_from, from));
        let from_any = named_to.map_or(&[][..], |to| self.narrowest(&self.from_any_by_to, to));
        [named, to_any, from_any, &self.any_to_any[..]].into_iter()
    }

    fn add(&mut self, rule: u32, from: &ZoneSet, to: &ZoneSet) {
        let file = |index: &mut Vec<Vec<u32>>, zones: &[Option<usize>]| {
            for zone in zones {
                let slot = zone.unwrap_or(self.zone_count).min(self.zone_count);
                index[slot].push(rule);
            }
        };
        match (from, to) {
            (ZoneSet::Some(from), ZoneSet::Some(to)) => {
                file(&mut self.named_by_from, from);
                file(&mut self.named_by_to, to);
            }
            (ZoneSet::Some(from), ZoneSet::Universe) => file(&mut self.to_any_by_from, from),
            (ZoneSet::Universe, ZoneSet::Some(to)) => file(&mut self.from_any_by_to, to),
            (ZoneSet::Universe, ZoneSet::Universe) => self.any_to_any.push(rule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, ServiceRef, ServiceSpec, Severity};

    fn pr(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn merge_sorts_and_joins_touching_ranges() {
        let got = merge(
            [
                pr(20, 30),
                pr(1, 5),
                pr(6, 9),
                pr(25, 40),
                pr(50, 50),
                pr(3, 4),
            ]
            .into_iter(),
        );
        assert_eq!(got, [pr(1, 9), pr(20, 40), pr(50, 50)]);
        assert_eq!(
            merge([pr(65535, 65535), pr(1, 65534)].into_iter()),
            [pr(1, 65535)]
        );
        assert_eq!(merge(std::iter::empty()), []);
    }

    #[test]
    fn port_subsets() {
        let sup = merge([pr(80, 80), pr(443, 443), pr(8000, 8099)].into_iter());
        assert!(ports_subset(&[], &sup));
        assert!(ports_subset(&[], &[]));
        assert!(ports_subset(&[pr(80, 80)], &sup));
        assert!(ports_subset(&[pr(8080, 8089), pr(443, 443)], &sup));
        assert!(ports_subset(&[pr(8000, 8099)], &sup));
        assert!(!ports_subset(&[pr(8000, 8100)], &sup));
        assert!(!ports_subset(&[pr(79, 80)], &sup));
        assert!(!ports_subset(&[pr(81, 81)], &sup));
        assert!(!ports_subset(&[pr(1, 1)], &sup));
        assert!(!ports_subset(&[pr(80, 80)], &[]));
        // Touching ranges of the earlier rule cover a range spanning both.
        let sup = merge([pr(1, 100), pr(101, 200)].into_iter());
        assert!(ports_subset(&[pr(50, 150)], &sup));
    }

    #[test]
    fn zone_sets() {
        let set = |refs: &[ZoneRef]| ZoneSet::new(refs, 3);
        let (z0, z1, z2) = (ZoneRef::Zone(0), ZoneRef::Zone(1), ZoneRef::Zone(2));
        let any = set(&[ZoneRef::Any]);
        assert!(set(&[ZoneRef::Unknown]).is_subset_of(&any));
        assert!(set(&[z0, z1]).is_subset_of(&any));
        assert!(!any.is_subset_of(&set(&[z0, z1, z2])));
        assert!(any.is_subset_of(&set(&[z2, z1, ZoneRef::Unknown, z0])));
        assert!(!set(&[ZoneRef::Unknown]).is_subset_of(&set(&[z0, z1, z2])));
        assert!(set(&[ZoneRef::Unknown]).is_subset_of(&set(&[z1, ZoneRef::Unknown])));
        assert!(set(&[z1, z1]).is_subset_of(&set(&[z1])));
        assert!(!set(&[z1, z2]).is_subset_of(&set(&[z1])));
    }

    fn rule(from: &[ZoneRef], to: &[ZoneRef], services: &[ServiceSpec]) -> Rule {
        Rule {
            name: "r".into(),
            from: from.to_vec(),
            to: to.to_vec(),
            services: services
                .iter()
                .map(|s| ServiceRef {
                    label: "s".into(),
                    named: None,
                    spec: s.clone(),
                })
                .collect(),
            action: Action::Allow,
            severity: Severity::Medium,
            conditions: Default::default(),
        }
    }

    fn tcp(lo: u16, hi: u16) -> ServiceSpec {
        ServiceSpec {
            tcp: vec![pr(lo, hi)],
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn shadowed_by_single_earlier_rule() {
        let (a, b) = (ZoneRef::Zone(0), ZoneRef::Zone(1));
        let icmp = ServiceSpec {
            icmp: true,
            ..ServiceSpec::default()
        };
        let rules = [
            rule(&[a], &[b], &[tcp(1, 1000)]),
            rule(&[a], &[b], &[tcp(80, 80), tcp(443, 443)]), // covered by 0
            rule(&[a], &[b], &[tcp(80, 80), icmp.clone()]),  // icmp not covered
            rule(&[a], &[b], std::slice::from_ref(&icmp)),   // covered by 2
            rule(&[a], &[b], &[]),                           // universe: not covered
            rule(&[a], &[b], &[]),                           // covered by 4
            rule(&[ZoneRef::Unknown], &[b], &[tcp(1, 1)]),   // not covered
        ];
        let usable = [true; 7];
        assert_eq!(shadowed(&rules, &usable, 2), [(1, 0), (3, 2), (5, 4)]);
        // An unusable rule covers nothing and is not reported.
        let usable = [false, true, true, true, true, true, false];
        assert_eq!(shadowed(&rules, &usable, 2), [(3, 2), (5, 4)]);
    }

    /// The first covering earlier rule, by scanning every earlier rule.
    fn shadowed_by_scanning(
        rules: &[Rule],
        usable: &[bool],
        zone_count: usize,
    ) -> Vec<(usize, usize)> {
        let set = |r: &Rule| {
            (
                ZoneSet::new(&r.from, zone_count),
                ZoneSet::new(&r.to, zone_count),
                ServiceSet::new(r),
            )
        };
        let mut found = Vec::new();
        for later in (0..rules.len()).filter(|&i| usable[i]) {
            let (from, to, services) = set(&rules[later]);
            let cover = (0..later).filter(|&i| usable[i]).find(|&earlier| {
                let (f, t, s) = set(&rules[earlier]);
                from.is_subset_of(&f) && to.is_subset_of(&t) && services.is_subset_of(&s)
            });
            if let Some(earlier) = cover {
                found.push((later, earlier));
            }
        }
        found
    }

    #[test]
    fn the_filed_lists_find_what_scanning_every_earlier_rule_finds() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut covered = 0;
        for _ in 0..300 {
            let zone_count = rng.usize(1..5);
            let zones = |rng: &mut fastrand::Rng| -> Vec<ZoneRef> {
                (0..rng.usize(1..4))
                    .map(|_| match rng.u8(0..8) {
                        0 => ZoneRef::Any,
                        1 => ZoneRef::Unknown,
                        _ => ZoneRef::Zone(rng.usize(..zone_count)),
                    })
                    .collect()
            };
            let rules: Vec<Rule> = (0..rng.usize(1..40))
                .map(|_| {
                    let services: Vec<ServiceSpec> = (0..rng.usize(0..3))
                        .map(|_| {
                            let lo = rng.u16(1..30);
                            if rng.u8(0..5) == 0 {
                                ServiceSpec {
                                    icmp: true,
                                    ..ServiceSpec::default()
                                }
                            } else {
                                tcp(lo, lo + rng.u16(0..10))
                            }
                        })
                        .collect();
                    rule(&zones(&mut rng), &zones(&mut rng), &services)
                })
                .collect();
            let usable: Vec<bool> = rules.iter().map(|_| rng.u8(0..10) != 0).collect();
            let found = shadowed(&rules, &usable, zone_count);
            assert_eq!(found, shadowed_by_scanning(&rules, &usable, zone_count));
            covered += found.len();
        }
        assert!(covered > 500, "{covered}");
    }
}
