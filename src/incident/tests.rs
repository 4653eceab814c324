//! The fold against a slow reference written from the contract's words,
//! on random inputs split into random batches and partitions.

use std::collections::HashMap;

use super::*;
use crate::classify::{CompiledPolicy, PolicyInForce};
use crate::event::{IncidentState, Violation};
use crate::flow::flow_id;
use crate::pipeline::StartNotice;
use crate::policy::load_policy_str;
use crate::wire::Transport;

const SALT: u64 = 1_795_852_800_000_000_000;
const SEC: u64 = 1_000_000_000;

fn policy() -> PolicyInForce {
    let text = r#"
[zones.a]
networks = ["10.1.0.0/16"]
[zones.b]
networks = ["10.2.0.0/16"]
criticality = "clinical"
[services.web]
tcp = [80]
[[rules]]
name = "a-to-b-web"
from = ["a"]
to = ["b"]
services = ["web"]
severity = "high"
action = "alert"
[[rules]]
name = "b-internal"
from = ["b"]
to = ["b"]
action = "allow"
"#;
    let (policy, _) = load_policy_str(text, std::path::Path::new("t.toml")).unwrap();
    PolicyInForce::new(CompiledPolicy::compile(&policy), 0)
}

#[test]
fn flow_position_inverts_flow_id() {
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..10_000 {
        let (position, salt) = (rng.u64(..), rng.u64(..));
        assert_eq!(flow_position(flow_id(position, salt), salt), position);
    }
    let ids: std::collections::HashSet<u64> = (0..1000)
        .flat_map(|p| IncidentKind::ALL.map(|k| incident_id(p, k, SALT)))
        .collect();
    assert_eq!(ids.len(), 3000);
}

/// One packet of a random capture: its time, and what it carries.
#[derive(Clone, Debug)]
struct Step {
    ts: u64,
    /// (initiator, responder, port): a flow's first packet, a violation
    /// when the policy says so.
    start: Option<(u128, u128, u16)>,
}

fn addr(net: u32, host: u32) -> u128 {
    u128::from(0x0a00_0000 | net << 16 | host)
}

fn violation_of(
    policy: &PolicyInForce,
    position: u64,
    ts: u64,
    start: (u128, u128, u16),
) -> Option<Violation> {
    let compiled = &policy.policy;
    let (src, dst, port) = start;
    let from = compiled.zone_of(false, src).zone;
    let to = compiled.zone_of(false, dst).zone;
    let verdict = compiled.judge(from, to, Transport::Tcp, port);
    if !compiled.alerts(verdict) {
        return None;
    }
    Some(Violation {
        packet_index: position,
        ts_ns: ts,
        flow_id: flow_id(position, SALT),
        ipv6: false,
        protocol: 6,
        transport: Transport::Tcp,
        src_addr: src,
        src_port: 40000,
        dest_addr: dst,
        dest_port: port,
        vlan: 0,
        src_zone: from,
        dest_zone: to,
        verdict,
        app: None,
        overlay: crate::flow::Overlay::NONE,
        exception: None,
    })
}

fn notice_of(
    policy: &PolicyInForce,
    position: u64,
    ts: u64,
    start: (u128, u128, u16),
) -> StartNotice {
    let compiled = &policy.policy;
    StartNotice {
        position,
        ts_ns: ts,
        ipv6: false,
        protocol: 6,
        port: Some(start.2),
        initiator: start.0,
        responder: start.1,
        zones: (
            compiled.zone_of(false, start.0).zone,
            compiled.zone_of(false, start.1).zone,
        ),
    }
}

#[derive(Default)]
struct Collect(Vec<(SortKey, String)>);

impl Emit for Collect {
    fn violation(&mut self, key: SortKey, violation: &Violation, incident_id: Option<u64>) {
        let id = incident_id.map_or("-".to_owned(), |i| format!("{i:016x}"));
        self.0
            .push((key, format!("event {} {}", violation.flow_id, id)));
    }
    fn record(&mut self, key: SortKey, record: IncidentRecord) {
        self.0.push((key, record.to_json()));
    }
}

/// The fold as a driver runs it: batches cut at `cuts`, inputs routed to
/// partitions, records merged by sort key.
fn fold(settings: &IncidentSettings, steps: &[Step], cuts: &[usize]) -> Vec<String> {
    let policy = policy();
    let mut folds: Vec<Fold> = (0..PARTITIONS).map(|_| Fold::new(settings, SALT)).collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < steps.len())
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.push(steps.len());
    let mut timeline = Timeline::default();
    for end in bounds {
        timeline.set(start as u64, steps[start..end].iter().map(|s| s.ts));
        let mut violations: Vec<Vec<Violation>> = vec![Vec::new(); PARTITIONS];
        let mut notices: Vec<Vec<StartNotice>> = vec![Vec::new(); PARTITIONS];
        for (i, step) in steps.iter().enumerate().take(end).skip(start) {
            if let Some(flow) = step.start {
                let part = partition_of(false, flow.0);
                if let Some(v) = violation_of(&policy, i as u64, step.ts, flow) {
                    violations[part].push(v);
                }
                notices[part].push(notice_of(&policy, i as u64, step.ts, flow));
            }
        }
        let mut batch = Collect::default();
        for (p, fold) in folds.iter_mut().enumerate() {
            fold.batch(
                &timeline,
                &violations[p],
                &notices[p],
                &policy,
                &NoDevices,
                &mut batch,
            );
        }
        batch.0.sort_by_key(|(k, _)| *k);
        out.extend(batch.0.into_iter().map(|(_, l)| l));
        start = end;
    }
    let mut last = Collect::default();
    let last_ts = steps.last().map_or(0, |s| s.ts);
    for fold in &mut folds {
        fold.finish(&[], last_ts, &policy, &NoDevices, &mut last);
    }
    last.0.sort_by_key(|(k, _)| *k);
    out.extend(last.0.into_iter().map(|(_, l)| l));
    out
}

/// The contract's sections read literally, packet by packet.
struct Reference {
    settings: IncidentSettings,
    policy: PolicyInForce,
    open: Vec<RefIncident>,
    /// Every flow start so far: (position, ts, initiator, responder, port).
    flows: Vec<(u64, u64, u128, u128, u16)>,
    /// Per sweep or scan key: the position of its latest incident's close.
    closed_at: HashMap<String, u64>,
    out: Vec<String>,
}

struct RefIncident {
    kind: IncidentKind,
    key: String,
    id: u64,
    rule: String,
    src: u128,
    dest: Option<u128>,
    first_seen: u64,
    last_seen: u64,
    last_record: u64,
    last_position: u64,
    flows: u64,
    dests: Vec<u128>,
    ports: Vec<u16>,
    severity: Severity,
    service: Option<String>,
}

impl Reference {
    fn violation_key(&self, v: &Violation) -> String {
        let compiled = &self.policy.policy;
        format!(
            "violation {} {} {} {:?}",
            compiled.rule(v.verdict.rule).name,
            v.src_addr,
            compiled.zone(v.dest_zone).name,
            compiled.service_label(v.verdict, Transport::Tcp, v.dest_port, None)
        )
    }

    fn record(&self, i: &RefIncident, state: IncidentState, ts: u64) -> String {
        let compiled = &self.policy.policy;
        let zone = |a: u128| compiled.zone(compiled.zone_of(false, a).zone);
        let ipv4 = |a: u128| crate::event::ip(false, a);
        let (src_zone, dest_zone) = match i.kind {
            IncidentKind::Violation => (
                Some(zone(i.src).name.clone()),
                Some(zone(i.dest.unwrap_or(0)).name.clone()),
            ),
            _ => (None, None),
        };
        let dest_criticality = match i.kind {
            IncidentKind::Sweep => None,
            _ => zone(i.dest.unwrap_or(0)).criticality.clone(),
        };
        IncidentRecord {
            timestamp: crate::event::Timestamp(ts),
            event_type: "incident".into(),
            incident_id: crate::event::HexId(i.id),
            state,
            kind: i.kind,
            rule: i.rule.clone(),
            severity: i.severity.as_str().to_owned(),
            src_ip: ipv4(i.src),
            src_zone,
            dest_zone,
            service: i.service.clone(),
            dest_ip: (i.kind == IncidentKind::Scan).then(|| ipv4(i.dest.unwrap_or(0))),
            proto: (i.kind == IncidentKind::Sweep).then(|| "tcp".to_owned()),
            dest_port: (i.kind == IncidentKind::Sweep).then(|| i.ports[0]),
            src_criticality: zone(i.src).criticality.clone(),
            dest_criticality,
            first_seen: crate::event::Timestamp(i.first_seen),
            last_seen: crate::event::Timestamp(i.last_seen),
            flows: i.flows,
            dest_count: i.dests.len() as u64,
            dest_count_capped: false,
            dest_sample: i.dests.iter().take(16).map(|&a| ipv4(a)).collect(),
            dest_ports: i.ports.iter().take(16).copied().collect(),
            src_device: None,
            exception: None,
        }
        .to_json()
    }

    fn close(&mut self, index: usize, ts: u64, position: u64) {
        let incident = self.open.remove(index);
        let line = self.record(&incident, IncidentState::Close, ts);
        self.out.push(line);
        if incident.kind != IncidentKind::Violation {
            self.closed_at.insert(incident.key.clone(), position);
        }
    }

    fn join(
        &mut self,
        index: usize,
        ts: u64,
        record_ts: u64,
        position: u64,
        dest: u128,
        port: u16,
    ) -> Option<String> {
        let update_ns = ns(self.settings.update_interval);
        let incident = &mut self.open[index];
        incident.flows += 1;
        incident.last_seen = incident.last_seen.max(ts);
        incident.last_position = position;
        if !incident.dests.contains(&dest) {
            incident.dests.push(dest);
        }
        if !incident.ports.contains(&port) {
            incident.ports.push(port);
        }
        if record_ts - incident.last_record >= update_ns {
            incident.last_record = record_ts;
            let incident = &self.open[index];
            return Some(self.record(incident, IncidentState::Update, record_ts));
        }
        None
    }

    fn step(&mut self, position: u64, step: &Step) {
        let idle = ns(self.settings.idle);
        let ts = step.ts;
        let violation = step
            .start
            .and_then(|flow| violation_of(&self.policy, position, ts, flow));
        // Closes of incidents found over, in opening order (the list is in
        // opening order): idle ones, and the violation's own key past
        // max_age.
        let mut k = 0;
        while k < self.open.len() {
            let i = &self.open[k];
            let idle_over = ts > i.last_seen + idle && position > i.last_position;
            let age_over = violation.as_ref().is_some_and(|v| {
                i.key == self.violation_key(v) && v.ts_ns - i.first_seen > ns(self.settings.max_age)
            });
            if idle_over || age_over {
                self.close(k, ts, position);
            } else {
                k += 1;
            }
        }
        let Some(flow) = step.start else { return };
        if let Some(v) = &violation {
            // The key: rule and dest_zone are fixed by the policy here
            // (one alerting rule per port class); src and port's service.
            let key = self.violation_key(v);
            self.out.push(format!("event {} ", v.flow_id));
            let found = self
                .open
                .iter()
                .position(|i| i.kind == IncidentKind::Violation && i.key == key);
            let id = match found {
                Some(index) => {
                    let id = self.open[index].id;
                    let update = self.join(index, v.ts_ns, ts, position, v.dest_addr, v.dest_port);
                    self.out.extend(update);
                    id
                }
                None => {
                    let compiled = &self.policy.policy;
                    let rule = compiled.rule(v.verdict.rule);
                    let incident = RefIncident {
                        kind: IncidentKind::Violation,
                        key,
                        id: incident_id(position, IncidentKind::Violation, SALT),
                        rule: rule.name.clone(),
                        src: v.src_addr,
                        dest: Some(v.dest_addr),
                        first_seen: ts,
                        last_seen: ts,
                        last_record: ts,
                        last_position: position,
                        flows: 1,
                        dests: vec![v.dest_addr],
                        ports: vec![v.dest_port],
                        severity: rule.severity,
                        service: compiled
                            .service_label(v.verdict, Transport::Tcp, v.dest_port, None)
                            .map(str::to_owned),
                    };
                    let line = self.record(&incident, IncidentState::Open, ts);
                    self.open.push(incident);
                    self.out.push(line);
                    incident_id(position, IncidentKind::Violation, SALT)
                }
            };
            let last = self
                .out
                .iter()
                .rposition(|l| l.starts_with("event "))
                .unwrap();
            self.out[last] = format!("event {} {:016x}", v.flow_id, id);
        }
        let (src, dst, port) = flow;
        self.flows.push((position, ts, src, dst, port));
        let window = ns(self.settings.window);
        for kind in [IncidentKind::Sweep, IncidentKind::Scan] {
            let key = match kind {
                IncidentKind::Sweep => format!("sweep {src} {port}"),
                _ => format!("scan {src} {dst}"),
            };
            if let Some(index) = self
                .open
                .iter()
                .position(|i| i.kind == kind && i.key == key)
            {
                let update = self.join(index, ts, ts, position, dst, port);
                self.out.extend(update);
                continue;
            }
            let after = self.closed_at.get(&key).copied();
            let counted: Vec<_> = self
                .flows
                .iter()
                .filter(|f| f.2 == src && f.1 + window >= ts && f.1 <= ts)
                .filter(|f| after.is_none_or(|a| f.0 >= a))
                .filter(|f| match kind {
                    IncidentKind::Sweep => f.4 == port,
                    _ => f.3 == dst,
                })
                .copied()
                .collect();
            let mut distinct: Vec<u128> = Vec::new();
            for f in &counted {
                let other = match kind {
                    IncidentKind::Sweep => f.3,
                    _ => u128::from(f.4),
                };
                if !distinct.contains(&other) {
                    distinct.push(other);
                }
            }
            let threshold = match kind {
                IncidentKind::Sweep => self.settings.sweep_hosts,
                _ => self.settings.scan_ports,
            } as usize;
            if distinct.len() < threshold {
                continue;
            }
            let mut dests = Vec::new();
            let mut ports = Vec::new();
            for f in &counted {
                if !dests.contains(&f.3) {
                    dests.push(f.3);
                }
                if !ports.contains(&f.4) {
                    ports.push(f.4);
                }
            }
            let incident = RefIncident {
                kind,
                key,
                id: incident_id(position, kind, SALT),
                rule: kind.as_str().to_owned(),
                src,
                dest: (kind == IncidentKind::Scan).then_some(dst),
                first_seen: counted.iter().map(|f| f.1).min().unwrap(),
                last_seen: counted.iter().map(|f| f.1).max().unwrap(),
                last_record: ts,
                last_position: position,
                flows: counted.len() as u64,
                dests,
                ports,
                severity: Severity::High,
                service: None,
            };
            let line = self.record(&incident, IncidentState::Open, ts);
            self.open.push(incident);
            self.out.push(line);
        }
    }
}

fn ns(d: std::time::Duration) -> u64 {
    d.as_nanos() as u64
}

fn reference(settings: &IncidentSettings, steps: &[Step]) -> Vec<String> {
    let mut r = Reference {
        settings: settings.clone(),
        policy: policy(),
        open: Vec::new(),
        flows: Vec::new(),
        closed_at: HashMap::new(),
        out: Vec::new(),
    };
    for (i, step) in steps.iter().enumerate() {
        r.step(i as u64, step);
    }
    let last = steps.last().map_or(0, |s| s.ts);
    while !r.open.is_empty() {
        r.close(0, last, u64::MAX);
    }
    r.out
}

fn settings() -> IncidentSettings {
    IncidentSettings {
        idle: std::time::Duration::from_secs(100),
        max_age: std::time::Duration::from_secs(400),
        update_interval: std::time::Duration::from_secs(30),
        sweep_hosts: 3,
        scan_ports: 3,
        window: std::time::Duration::from_secs(20),
        ..IncidentSettings::default()
    }
}

fn random_steps(rng: &mut fastrand::Rng, n: usize) -> Vec<Step> {
    let mut ts = SALT;
    (0..n)
        .map(|_| {
            ts += match rng.u8(..10) {
                0 => rng.u64(50..150) * SEC,
                1..=3 => rng.u64(0..12) * SEC,
                _ => rng.u64(0..SEC),
            };
            let start = (rng.u8(..3) > 0).then(|| {
                let src = addr(1 + rng.u32(0..2), rng.u32(1..4));
                let dst = addr(1 + rng.u32(0..2), rng.u32(1..6));
                let port = [80, 22, 443, 8080][rng.usize(..4)];
                (src, dst, port)
            });
            Step { ts, start }
        })
        .collect()
}

#[test]
fn the_fold_agrees_with_the_reference_for_any_batches() {
    let settings = settings();
    let mut rng = fastrand::Rng::with_seed(14);
    for round in 0..300 {
        let n = rng.usize(1..160);
        let steps = random_steps(&mut rng, n);
        let expected = reference(&settings, &steps);
        let cuts: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(0..n + 1)).collect();
        let actual = fold(&settings, &steps, &cuts);
        if expected != actual {
            let first = expected
                .iter()
                .zip(&actual)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(actual.len()));
            for k in first.saturating_sub(6)..first + 2 {
                eprintln!(
                    "E {:?}\nG {:?}",
                    expected.get(k).map(|l| &l[..l.len().min(200)]),
                    actual.get(k).map(|l| &l[..l.len().min(200)])
                );
            }
            panic!(
                "round {round}, cuts {cuts:?}: differs at line {first}\n expected {:?}\n got      {:?}",
                expected.get(first),
                actual.get(first)
            );
        }
        // One batch per packet gives the same.
        let every: Vec<usize> = (0..n).collect();
        assert_eq!(fold(&settings, &steps, &every), actual);
    }
}

#[test]
fn counts_never_go_down_and_every_incident_opens_and_closes_once() {
    let settings = settings();
    let mut rng = fastrand::Rng::with_seed(7);
    let steps = random_steps(&mut rng, 2_000);
    let lines = fold(&settings, &steps, &[500, 1000, 1500]);
    let mut seen: HashMap<String, (u32, u32, u64, u64)> = HashMap::new();
    for line in lines.iter().filter(|l| l.starts_with('{')) {
        let record: IncidentRecord = serde_json::from_str(line).unwrap();
        let entry = seen.entry(record.incident_id.to_string()).or_default();
        match record.state {
            IncidentState::Open => entry.0 += 1,
            IncidentState::Close => entry.1 += 1,
            IncidentState::Update => {}
        }
        assert!(
            record.flows >= entry.2 && record.dest_count >= entry.3,
            "{line}"
        );
        entry.2 = record.flows;
        entry.3 = record.dest_count;
    }
    assert!(seen.len() > 20, "{}", seen.len());
    for (id, (opens, closes, _, _)) in seen {
        assert_eq!((opens, closes), (1, 1), "{id}");
    }
}
