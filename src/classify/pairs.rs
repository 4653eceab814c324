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
//! each. A verdict is the lowest of at most four port-table lookups, most often one: its cost
//! does not grow with the number of rules or zones. Each distinct list of rules is painted once
//! into a [`RuleTable`], shared by every part that has that list.
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

/// One initiator row of the sparse part: where its cells lie, and the table of its rules to
/// `any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Row {
    first_cell: u32,
    cells: u32,
    to_any: u32,
}

/// A responder column within a row, and the table of the rules naming both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Cell {
    column: u32,
    table: u32,
}

/// The zone-pair tables of a compiled policy. A zone's slot is its id; `unknown` takes the
/// last slot.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ZonePairs {
    /// Each slot's row, as an initiator.
    row_of: Vec<u32>,
    /// Each slot's column, as a responder.
    column_of: Vec<u32>,
    rows: Vec<Row>,
    /// Every row's cells, row after row, each row's sorted by column.
    cells: Vec<Cell>,
    /// Each column's table of the rules from `any` to it.
    from_any: Vec<u32>,
    /// The table of the rules from `any` to `any`.
    any_to_any: u32,
    tables: Vec<RuleTable>,
    ports: PortArena<Verdict>,
}

impl ZonePairs {
    /// The verdict of a flow from slot `from` to slot `to`.
    #[inline]
    pub(super) fn judge(&self, from: usize, to: usize, transport: Transport, port: u16) -> Verdict {
        let row = self.rows[self.row_of[from] as usize];
        let column = self.column_of[to];
        let first = row.first_cell as usize;
        let cells = &self.cells[first..first + row.cells as usize];
        let mut verdict = Verdict::DEFAULT;
        if let Ok(at) = cells.binary_search_by_key(&column, |cell| cell.column) {
            verdict = self.table_verdict(cells[at].table, transport, port);
        }
        for table in [row.to_any, self.from_any[column as usize], self.any_to_any] {
            if table != NO_TABLE {
                let other = self.table_verdict(table, transport, port);
                if other.rule < verdict.rule {
                    verdict = other;
                }
            }
        }
        verdict
    }

    #[inline]
    fn table_verdict(&self, table: u32, transport: Transport, port: u16) -> Verdict {
        let table = &self.tables[table as usize];
        match transport {
            Transport::Tcp => self.ports.get(table.tcp, port),
            Transport::Udp => self.ports.get(table.udp, port),
            Transport::EchoRequest | Transport::EchoReply => table.echo,
            Transport::Other => table.other,
        }
    }

    /// Number of distinct rule tables.
    pub(super) fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Bytes the tables take (for the log and the tests of how they scale).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.row_of.len() + self.column_of.len() + self.from_any.len()) * size_of::<u32>()
            + self.rows.len() * size_of::<Row>()
            + self.cells.len() * size_of::<Cell>()
            + self.tables.len() * size_of::<RuleTable>()
            + self.ports.len() * (size_of::<u16>() + size_of::<Verdict>())
    }

    /// Checks what [`ZonePairs::judge`] indexes without a check of its own, for tables read
    /// back from storage: `slots` slots, rows and columns that exist, cells inside the cell
    /// array and sorted, tables that exist, port maps that cover every port.
    pub(super) fn check_consistent(&self, slots: usize) -> Result<(), &'static str> {
        if self.row_of.len() != slots || self.column_of.len() != slots {
            return Err("the zone-pair tables do not fit the zones");
        }
        let columns = self.from_any.len();
        if self
            .row_of
            .iter()
            .any(|&row| row as usize >= self.rows.len())
            || self
                .column_of
                .iter()
                .any(|&column| column as usize >= columns)
        {
            return Err("a zone's row or column does not exist");
        }
        let table_ok = |table: u32| table == NO_TABLE || (table as usize) < self.tables.len();
        let rows_ok = self.rows.iter().all(|row| {
            let first = row.first_cell as usize;
            table_ok(row.to_any)
                && first
                    .checked_add(row.cells as usize)
                    .and_then(|end| self.cells.get(first..end))
                    .is_some_and(|cells| {
                        cells.windows(2).all(|pair| pair[0].column < pair[1].column)
                            && cells.iter().all(|cell| {
                                (cell.column as usize) < columns
                                    && cell.table != NO_TABLE
                                    && table_ok(cell.table)
                            })
                    })
        });
        if !rows_ok || !self.from_any.iter().all(|&table| table_ok(table)) {
            return Err("a zone-pair row does not fit its cells and tables");
        }
        if !table_ok(self.any_to_any) {
            return Err("the table of rules from any zone to any zone does not exist");
        }
        let maps_ok = self.tables.iter().all(|table| {
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
        let mut rows = Vec::with_capacity(row_lists.len());
        let mut cells = Vec::new();
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
            let first_cell = cells.len() as u32;
            for &column in &touched {
                let rules = &mut cell_rules[column as usize];
                cells.push(Cell {
                    column,
                    table: builder.table(rules),
                });
                rules.clear();
            }
            rows.push(Row {
                first_cell,
                cells: touched.len() as u32,
                to_any: builder.table(&to_any),
            });
            touched.clear();
        }
        let from_any = column_lists
            .iter()
            .map(|list| {
                let rules: Vec<u32> = list
                    .iter()
                    .copied()
                    .filter(|&id| policy.rules[id as usize].from.contains(&ZoneRef::Any))
                    .collect();
                builder.table(&rules)
            })
            .collect();
        let any_to_any: Vec<u32> = port_rules()
            .filter(|(_, rule)| {
                rule.from.contains(&ZoneRef::Any) && rule.to.contains(&ZoneRef::Any)
            })
            .map(|(id, _)| id)
            .collect();
        let any_to_any = builder.table(&any_to_any);
        ZonePairs {
            row_of,
            column_of,
            rows,
            cells,
            from_any,
            any_to_any,
            tables: builder.tables,
            ports: builder.ports,
        }
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
