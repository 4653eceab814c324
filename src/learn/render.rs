//! Writes a learned policy in the contract's TOML format, with comments
//! that say where each rule came from.

use std::fmt::Write as _;

use crate::policy::{Action, PortRange, ServiceSpec, ZoneRef};

use super::{AlertsToday, Learned, LearnedRule};

/// A TOML basic string, quoted and escaped.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn ranges(ranges: &[PortRange]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.lo == r.hi {
                r.lo.to_string()
            } else {
                format!("\"{}-{}\"", r.lo, r.hi)
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn spec(out: &mut String, spec: &ServiceSpec) {
    if !spec.tcp.is_empty() {
        let _ = writeln!(out, "tcp = {}", ranges(&spec.tcp));
    }
    if !spec.udp.is_empty() {
        let _ = writeln!(out, "udp = {}", ranges(&spec.udp));
    }
    if spec.icmp {
        out.push_str("icmp = true\n");
    }
}

fn zone_list(learned: &Learned, zones: &[ZoneRef]) -> String {
    let names: Vec<String> = zones
        .iter()
        .map(|z| match z {
            ZoneRef::Any => quoted("any"),
            ZoneRef::Unknown => quoted("unknown"),
            ZoneRef::Zone(i) => quoted(&learned.policy.zones[*i].name),
        })
        .collect();
    format!("[{}]", names.join(", "))
}

fn rule(out: &mut String, learned: &Learned, rule: &LearnedRule) {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "# {} flow{}, first seen {}, last seen {}",
        rule.flows,
        plural(rule.flows),
        rule.first_seen,
        rule.last_seen
    );
    if !rule.per_service.is_empty() {
        let parts: Vec<String> = rule
            .per_service
            .iter()
            .map(|(label, n)| format!("{label} {n}"))
            .collect();
        let _ = writeln!(out, "#   flows by service: {}", parts.join(", "));
    } else {
        out.push_str(
            "#   IP protocols without ports (GRE, ESP, ...) match only rules without services,\n\
             #   so this rule allows every service between these zones: narrow it if you can.\n",
        );
    }
    out.push_str("[[rules]]\n");
    let _ = writeln!(out, "name = {}", quoted(&rule.rule.name));
    let _ = writeln!(out, "from = {}", zone_list(learned, &rule.rule.from));
    let _ = writeln!(out, "to = {}", zone_list(learned, &rule.rule.to));
    if !rule.rule.services.is_empty() {
        let labels: Vec<String> = rule
            .rule
            .services
            .iter()
            .map(|s| quoted(&s.label))
            .collect();
        let _ = writeln!(out, "services = [{}]", labels.join(", "));
    }
    let action = match rule.rule.action {
        Action::Allow => "allow",
        Action::Alert => "alert",
    };
    let _ = writeln!(out, "action = \"{action}\"");
}

/// The learned policy as a commented policy file. `sources` names the
/// captures it was learned from.
pub fn render_policy(learned: &Learned, sources: &[String]) -> String {
    let policy = &learned.policy;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Learned by segwatch learn {} from: {}",
        env!("CARGO_PKG_VERSION"),
        sources.join(", ")
    );
    let _ = writeln!(
        out,
        "# {} flow{} in {} rule{}; initiators judged with the learned services ({} pass{}{}).",
        learned.flows,
        if learned.flows == 1 { "" } else { "s" },
        learned.policy.rules.len(),
        if learned.policy.rules.len() == 1 {
            ""
        } else {
            "s"
        },
        learned.passes,
        if learned.passes == 1 { "" } else { "es" },
        if learned.converged {
            ""
        } else {
            ", NOT settled: check with segwatch replay"
        }
    );
    out.push_str(
        "# Every rule allows what was seen and nothing more; everything else alerts.\n\
         # Review it before use: traffic seen is not traffic wanted.\n",
    );
    let (review_rules, review_flows) = learned.held_for_review();
    if review_rules > 0 {
        let _ = writeln!(
            out,
            "# {review_flows} flow{} that the zones file's rules alert on today are held for review in \
             {review_rules} commented-out rule{} (REVIEW below).",
            if review_flows == 1 { "" } else { "s" },
            if review_rules == 1 { "" } else { "s" },
        );
    }
    out.push('\n');
    out.push_str("[policy]\n");
    let _ = writeln!(out, "name = {}", quoted(&policy.name));
    out.push_str("default_action = \"alert\"\n");
    let _ = writeln!(
        out,
        "default_severity = \"{}\"",
        policy.default_severity.as_str()
    );
    for zone in &policy.zones {
        let _ = writeln!(out, "\n[zones.{}]", zone.name);
        if let Some(description) = &zone.description {
            let _ = writeln!(out, "description = {}", quoted(description));
        }
        let networks: Vec<String> = zone
            .networks
            .iter()
            .map(|n| quoted(&n.to_string()))
            .collect();
        let _ = writeln!(out, "networks = [{}]", networks.join(", "));
        if let Some(criticality) = &zone.criticality {
            let _ = writeln!(out, "criticality = {}", quoted(criticality));
        }
    }
    for service in &policy.services {
        let _ = writeln!(out, "\n[services.{}]", service.name);
        spec(&mut out, &service.spec);
    }
    for learned_rule in &learned.rules {
        out.push('\n');
        match &learned_rule.alerts_today {
            None => rule(&mut out, learned, learned_rule),
            Some(alerts) => review(&mut out, learned, learned_rule, alerts),
        }
    }
    out
}

/// A rule for traffic that the given file alerts on today, written
/// commented out: seen is not wanted, and a violation is not to be learned
/// into an allow rule without a word.
fn review(out: &mut String, learned: &Learned, learned_rule: &LearnedRule, alerts: &AlertsToday) {
    let _ = writeln!(
        out,
        "# REVIEW: the zones file alerts on this traffic today (rule {}, severity {}):\n\
         # it is not allowed here. Uncomment the rule only if the traffic is wanted.",
        quoted(&alerts.rule),
        alerts.severity
    );
    let mut text = String::new();
    rule(&mut text, learned, learned_rule);
    for line in text.lines() {
        if line.starts_with('#') {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}
