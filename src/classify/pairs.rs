//! Which rules apply to a flow from one zone to another, compiled so that its size grows with
//! the rules and the zones, not with the zone pairs.
//!
//! The first rule that matches wins, so the verdict of a list of rules is the matching rule
//! with the lowest id; and the verdict of a union of lists is the lowest of the lists'
//! verdicts. The rules that apply to a pair (initiator zone, responder zone) are split four
//! ways by how they name zones, each part looked up on its own:
//!
//! - rules from `any` to `any`: one table for every pair;
//! - rules from named zones to `any`: a table per initiator zone;
//! - rules from `any` to named zones: a table per responder zone;
//! - rules from named zones to named zones: a sparse table of cells, one per (initiator,
//!   responder) that such a rule names, found by a binary search in the initiator's row.
//!
//! Zones that the rules name alike share one row (as initiators) or column (as responders), so
//! a hospital group's thousands of ward zones, each named by a few rules, cost a few cells
//! each. A cell's table holds every rule that applies to its pairs, those to or from `any`
//! included, so a pair with a cell is decided by one port-table lookup; a pair without one by
//! the lowest of at most two, its row's rules to `any` (those from `any` to `any` painted in)
//! and its column's rules from `any`. Its cost does not grow with the number of rules or
//! zones. Each distinct list of rules is painted once into a [`RuleTable`], shared by every
//! part that has that list.
//!
//! What the sparse cells cost: a rule from named zones to named zones adds one cell for each
//! (distinct row among its initiators, distinct column among its responders), so a rule naming
//! many zones on both sides, each of which other rules make distinct, is the expensive case.

use std::collections::HashMap;

use super::Verdict;
use super::ports::{PortArena, PortPainter, PortSpan};
use crate::policy::{Policy, Rule, ZoneRef};
use crate::wire::Transport;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A rule table id that stands for "no rule applies": nothing to look up.
pub(super) const NO_TABLE: u32 = u32::MAX;

/// The rules of one list painted into one verdict per protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct RuleTable {
    tcp: PortSpan,
    udp: PortSpan,
    echo: Verdict,
    other: Verdict,
}

/// A slot as an initiator: where its row's cells lie (slots that rules name alike as
/// initiators share them), and the table of its rules to `any` and of the rules from `any` to
/// `any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Row {
    first_cell: u32,
    end_cell: u32,
    to_any: u32,
}

/// A slot as a responder: its column (shared by the slots that rules name alike as
/// responders), and the table of the rules from `any` to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Column {
    column: u32,
    from_any: u32,
}

/// The zone-pair tables of a compiled policy. A zone's slot is its id; `unknown` takes the
/// last slot.
///
/// A cell's rule table is stored in the cell, not by id, so that a verdict follows one
/// indirection less; the port maps it points to are still shared.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ZonePairs {
    /// By slot.
    rows: Vec<Row>,
    /// By slot.
    columns: Vec<Column>,
    /// Every row's cells, row after row, each row's sorted by column: the column, and beside
    /// it the table of every rule that applies from the row's zones to the column's (those
    /// naming both, and those to or from `any`).
    cell_columns: Vec<u32>,
    cell_tables: Vec<RuleTable>,
    /// The tables of the rules to or from `any`, by id.
    tables: Vec<RuleTable>,
    ports: PortArena<Verdict>,
}

impl ZonePairs {
    /// The verdict of a flow from slot `from` to slot `to`. Always inlined: it is called once
    /// per new flow, and as a call its register saves cost a tenth of it.
    #[inline(always)]
    pub(super) fn judge(&self, from: usize, to: usize, transport: Transport, port: u16) -> Verdict {
        let row = self.rows[from];
        let column = self.columns[to];
        let (first, end) = (row.first_cell as usize, row.end_cell as usize);
        let cells = self.cell_columns.get(first..end).unwrap_or_default();
        if let Some(table) =
            find_cell(cells, column.column).and_then(|at| self.cell_tables.get(first + at))
        {
            // Every rule of the pair is in its cell.
            return self.table_verdict(table, transport, port);
        }
        let mut verdict = Verdict::DEFAULT;
        // Most pairs without a cell have no rule to or from `any` either: one test for both.
        if row.to_any & column.from_any != NO_TABLE {
            for table in [row.to_any, column.from_any] {
                if let Some(table) = self.tables.get(table as usize) {
                    let other = self.table_verdict(table, transport, port);
                    if other.rule < verdict.rule {
                        verdict = other;
                    }
                }
            }
        }
        verdict
    }

    #[inline]
    fn table_verdict(&self, table: &RuleTable, transport: Transport, port: u16) -> Verdict {
        let span = match transport {
            Transport::Tcp => table.tcp,
            Transport::Udp => table.udp,
            Transport::EchoRequest | Transport::EchoReply => return table.echo,
            Transport::Other => return table.other,
        };
        self.ports.get(span, port)
    }

    /// Number of distinct rule tables.
    pub(super) fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Bytes the tables take (for the log and the tests of how they scale).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.rows.len() * size_of::<Row>()
            + self.columns.len() * size_of::<Column>()
            + self.cell_columns.len() * size_of::<u32>()
            + (self.cell_tables.len() + self.tables.len()) * size_of::<RuleTable>()
            + self.ports.len() * (size_of::<u16>() + size_of::<Verdict>())
    }

    /// Checks what [`ZonePairs::judge`] indexes without a check of its own, for tables read
    /// back from storage: `slots` rows and columns, cells inside the cell arrays and sorted,
    /// tables that exist, port maps that cover every port.
    pub(super) fn check_consistent(&self, slots: usize) -> Result<(), &'static str> {
        if self.rows.len() != slots || self.columns.len() != slots {
            return Err("the zone-pair tables do not fit the zones");
        }
        if self.cell_columns.len() != self.cell_tables.len() {
            return Err("the zone-pair cells do not match their tables");
        }
        let table_ok = |table: u32| table == NO_TABLE || (table as usize) < self.tables.len();
        let rows_ok = self.rows.iter().all(|row| {
            table_ok(row.to_any)
                && self
                    .cell_columns
                    .get(row.first_cell as usize..row.end_cell as usize)
                    .is_some_and(|cells| cells.windows(2).all(|pair| pair[0] < pair[1]))
        });
        if !rows_ok {
            return Err("a zone-pair row does not fit its cells and tables");
        }
        if !self.columns.iter().all(|column| table_ok(column.from_any)) {
            return Err("a table of rules from or to any zone does not exist");
        }
        let maps_ok = self.tables.iter().chain(&self.cell_tables).all(|table| {
            self.ports.is_well_formed(table.tcp) && self.ports.is_well_formed(table.udp)
        });
        if !maps_ok {
            return Err("a port table does not cover every port");
        }
        Ok(())
    }

    /// Compiles the port rules of `policy` (those that do not depend on the application: the
    /// application stage judges those, and their ids stay free so that verdicts name them).
    pub(super) fn compile(policy: &Policy) -> ZonePairs {
        let slots = policy.zones.len() + 1;
        let port_rules = || {
            policy
                .rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| !rule.depends_on_app())
                .map(|(id, rule)| (id as u32, rule))
        };
        let mut from_named: Vec<Vec<u32>> = vec![Vec::new(); policy.rules.len()];
        let mut to_named: Vec<Vec<u32>> = vec![Vec::new(); policy.rules.len()];
        for (id, rule) in port_rules() {
            from_named[id as usize] = named_slots(&rule.from, slots);
            to_named[id as usize] = named_slots(&rule.to, slots);
        }
        // Each slot's rules naming it, in rule order; slots named alike share a row (or
        // column).
        let by_slot = |named: &[Vec<u32>]| {
            let mut lists: Vec<Vec<u32>> = vec![Vec::new(); slots];
            for (id, _) in port_rules() {
                for &slot in &named[id as usize] {
                    lists[slot as usize].push(id);
                }
            }
            lists
        };
        let (row_of, row_lists) = intern_lists(by_slot(&from_named));
        let (column_of, column_lists) = intern_lists(by_slot(&to_named));

        let mut builder = TableBuilder::new(&policy.rules);
        // Each rule from named zones to named zones: the distinct columns of its responders.
        let columns_of: Vec<Vec<u32>> = to_named
            .iter()
            .map(|slots| {
                let mut columns: Vec<u32> = slots.iter().map(|&s| column_of[s as usize]).collect();
                columns.sort_unstable();
                columns.dedup();
                columns
            })
            .collect();
        // The rules from `any` to each distinct column, and from `any` to `any`: a cell's table
        // holds them too, and a row's table to `any` the latter.
        let from_any_lists: Vec<Vec<u32>> = column_lists
            .iter()
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|&id| policy.rules[id as usize].from.contains(&ZoneRef::Any))
                    .collect()
            })
            .collect();
        let any_to_any: Vec<u32> = port_rules()
            .filter(|(_, rule)| {
                rule.from.contains(&ZoneRef::Any) && rule.to.contains(&ZoneRef::Any)
            })
            .map(|(id, _)| id)
            .collect();
        // Each distinct row: its cells, and its table to `any`.
        let mut distinct_rows = Vec::with_capacity(row_lists.len());
        let mut applicable: Vec<u32> = Vec::new();
        let mut cell_columns = Vec::new();
        let mut cell_tables = Vec::new();
        let mut cell_rules: Vec<Vec<u32>> = vec![Vec::new(); column_lists.len()];
        let mut touched: Vec<u32> = Vec::new();
        let mut to_any: Vec<u32> = Vec::new();
        for list in &row_lists {
            to_any.clear();
            for &id in list {
                if policy.rules[id as usize].to.contains(&ZoneRef::Any) {
                    to_any.push(id);
                    continue;
                }
                for &column in &columns_of[id as usize] {
                    let rules = &mut cell_rules[column as usize];
                    if rules.is_empty() {
                        touched.push(column);
                    }
                    rules.push(id);
                }
            }
            touched.sort_unstable();
            let first_cell = cell_columns.len() as u32;
            for &column in &touched {
                let rules = &mut cell_rules[column as usize];
                // The pair's rules naming both zones, and those to or from `any`, in rule order.
                applicable.clear();
                applicable.extend_from_slice(rules);
                applicable.extend_from_slice(&to_any);
                applicable.extend_from_slice(&from_any_lists[column as usize]);
                applicable.extend_from_slice(&any_to_any);
                applicable.sort_unstable();
                let table = builder.table(&applicable);
                cell_columns.push(column);
                cell_tables.push(builder.tables[table as usize]);
                rules.clear();
            }
            to_any.extend_from_slice(&any_to_any);
            to_any.sort_unstable();
            distinct_rows.push(Row {
                first_cell,
                end_cell: cell_columns.len() as u32,
                to_any: builder.table(&to_any),
            });
            touched.clear();
        }
        let from_any: Vec<u32> = from_any_lists
            .iter()
            .map(|rules| builder.table(rules))
            .collect();
        ZonePairs {
            rows: row_of
                .iter()
                .map(|&row| distinct_rows[row as usize])
                .collect(),
            columns: column_of
                .iter()
                .map(|&column| Column {
                    column,
                    from_any: from_any[column as usize],
                })
                .collect(),
            cell_columns,
            cell_tables,
            tables: builder.tables,
            ports: builder.ports,
        }
    }
}

/// The position in a row's cells (their columns) of `column`, if the row has a cell for it.
/// Rows hold a few cells each: a scan is quicker than a binary search up to a few dozen.
#[inline]
fn find_cell(cells: &[u32], column: u32) -> Option<usize> {
    if cells.len() <= 16 {
        cells.iter().position(|&cell| cell == column)
    } else {
        cells.binary_search(&column).ok()
    }
}

/// The slots a rule's `from` or `to` names, sorted, each once; none when it holds `any`
/// (every slot: the rule goes to the parts "from any" or "to any").
fn named_slots(zones: &[ZoneRef], slots: usize) -> Vec<u32> {
    if zones.contains(&ZoneRef::Any) {
        return Vec::new();
    }
    let mut named: Vec<u32> = zones
        .iter()
        .map(|zone| match *zone {
            ZoneRef::Zone(id) => id as u32,
            _ => (slots - 1) as u32,
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    named
}

/// Gives equal lists one id: each list's id, and the distinct lists by id.
fn intern_lists(lists: Vec<Vec<u32>>) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut ids: FastMap<Vec<u32>, u32> = FastMap::default();
    let mut distinct = Vec::new();
    let of = lists
        .into_iter()
        .map(|list| {
            *ids.entry(list).or_insert_with_key(|list| {
                distinct.push(list.clone());
                (distinct.len() - 1) as u32
            })
        })
        .collect();
    (of, distinct)
}

/// Paints each distinct list of rules once.
struct TableBuilder<'a> {
    rules: &'a [Rule],
    ids: FastMap<Vec<u32>, u32>,
    tables: Vec<RuleTable>,
    ports: PortArena<Verdict>,
    tcp: PortPainter<Verdict>,
    udp: PortPainter<Verdict>,
}

impl<'a> TableBuilder<'a> {
    fn new(rules: &'a [Rule]) -> Self {
        TableBuilder {
            rules,
            ids: FastMap::default(),
            tables: Vec::new(),
            ports: PortArena::new(),
            tcp: PortPainter::new(),
            udp: PortPainter::new(),
        }
    }

    /// The table of the rules `applicable` (ids in rule order); [`NO_TABLE`] for none.
    fn table(&mut self, applicable: &[u32]) -> u32 {
        if applicable.is_empty() {
            return NO_TABLE;
        }
        if let Some(&id) = self.ids.get(applicable) {
            return id;
        }
        let table = self.paint(applicable);
        let id = self.tables.len() as u32;
        self.tables.push(table);
        self.ids.insert(applicable.to_vec(), id);
        id
    }

    /// Paints the applicable rules, in order, into one table.
    fn paint(&mut self, applicable: &[u32]) -> RuleTable {
        let (tcp, udp) = (&mut self.tcp, &mut self.udp);
        let mut echo = None;
        let mut other = None;
        for &id in applicable {
            let rule = &self.rules[id as usize];
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
        RuleTable {
            tcp: self.ports.push(&mut self.tcp, Verdict::DEFAULT),
            udp: self.ports.push(&mut self.udp, Verdict::DEFAULT),
            echo: echo.unwrap_or(Verdict::DEFAULT),
            other: other.unwrap_or(Verdict::DEFAULT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, PortRange, ServiceRef, ServiceSpec, Severity, Zone};

    /// The first rule that applies to (from, to) and matches, read rule by rule.
    fn first_match(
        policy: &Policy,
        from: usize,
        to: usize,
        transport: Transport,
        port: u16,
    ) -> Verdict {
        let unknown = policy.zones.len();
        let holds = |zones: &[ZoneRef], slot: usize| {
            zones.iter().any(|zone| match *zone {
                ZoneRef::Any => true,
                ZoneRef::Unknown => slot == unknown,
                ZoneRef::Zone(id) => slot == id,
            })
        };
        for (id, rule) in policy.rules.iter().enumerate() {
            if !holds(&rule.from, from) || !holds(&rule.to, to) {
                continue;
            }
            if rule.services.is_empty() {
                return Verdict {
                    rule: id as u32,
                    rule_service: Verdict::FIRST_NAMED,
                };
            }
            let matched = rule.services.iter().position(|s| match transport {
                Transport::Tcp => s.spec.tcp.iter().any(|r| r.contains(port)),
                Transport::Udp => s.spec.udp.iter().any(|r| r.contains(port)),
                Transport::EchoRequest | Transport::EchoReply => s.spec.icmp,
                Transport::Other => false,
            });
            if let Some(index) = matched {
                return Verdict {
                    rule: id as u32,
                    rule_service: index as u32,
                };
            }
        }
        Verdict::DEFAULT
    }

    fn random_policy(rng: &mut fastrand::Rng) -> Policy {
        let zone_count = rng.usize(1..25);
        let zones = (0..zone_count)
            .map(|i| Zone {
                name: format!("z{i}"),
                description: None,
                networks: Vec::new(),
                criticality: None,
            })
            .collect();
        let zone_list = |rng: &mut fastrand::Rng| -> Vec<ZoneRef> {
            (0..rng.usize(1..5))
                .map(|_| match rng.u8(0..12) {
                    0 => ZoneRef::Any,
                    1 => ZoneRef::Unknown,
                    _ => ZoneRef::Zone(rng.usize(..zone_count)),
                })
                .collect()
        };
        let rules = (0..rng.usize(0..60))
            .map(|i| {
                let services = (0..rng.usize(0..4))
                    .map(|_| {
                        let lo = rng.u16(1..40);
                        let range = PortRange {
                            lo,
                            hi: lo + rng.u16(0..8),
                        };
                        let spec = match rng.u8(0..4) {
                            0 => ServiceSpec {
                                udp: vec![range],
                                ..ServiceSpec::default()
                            },
                            1 => ServiceSpec {
                                icmp: true,
                                ..ServiceSpec::default()
                            },
                            _ => ServiceSpec {
                                tcp: vec![range],
                                ..ServiceSpec::default()
                            },
                        };
                        ServiceRef {
                            label: "s".into(),
                            named: None,
                            spec,
                        }
                    })
                    .collect();
                Rule {
                    name: format!("r{i}"),
                    from: zone_list(rng),
                    to: zone_list(rng),
                    services,
                    action: Action::Allow,
                    severity: Severity::Medium,
                    conditions: Default::default(),
                }
            })
            .collect();
        Policy {
            name: "random".into(),
            default_action: Action::Alert,
            default_severity: Severity::Medium,
            zones,
            services: Vec::new(),
            rules,
            clinical: Default::default(),
        }
    }

    #[test]
    fn every_pair_judges_as_the_first_matching_rule() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let policy = random_policy(&mut rng);
            let pairs = ZonePairs::compile(&policy);
            let slots = policy.zones.len() + 1;
            pairs.check_consistent(slots).unwrap();
            for from in 0..slots {
                for to in 0..slots {
                    for transport in [
                        Transport::Tcp,
                        Transport::Udp,
                        Transport::EchoRequest,
                        Transport::Other,
                    ] {
                        for port in [0, 1, 5, 17, 30, 45, 50, 65_535] {
                            assert_eq!(
                                pairs.judge(from, to, transport, port),
                                first_match(&policy, from, to, transport, port),
                                "{from} -> {to} {transport:?}/{port} in {:?}",
                                policy.rules
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_tables_grow_with_the_zones_not_with_the_zone_pairs() {
        let bytes = |rules, zones| {
            let text = crate::synth::policy::scaled_hospital_policy_with_zones(rules, zones);
            let (policy, _) =
                crate::policy::load_policy_str(&text, std::path::Path::new("g.toml")).unwrap();
            let pairs = ZonePairs::compile(&policy);
            pairs.check_consistent(policy.zones.len() + 1).unwrap();
            pairs.heap_bytes()
        };
        let (small, large) = (bytes(1_000, 1_000), bytes(4_000, 4_000));
        // Four times the zones and rules: four times the bytes (a pair index would take 16).
        assert!(large < small * 5, "{small} -> {large}");
        assert!(large < 1 << 20, "{large}");
    }
}
