//! What the policy's names and verdicts say about an exceptions file:
//! `segwatch check`'s warnings about exceptions that have expired, or that
//! can never match because the policy allows all that they cover.

use std::path::Path;

use crate::exception::{EndpointScope, Exception, RuleScope, format_date};
use crate::policy::{Action, Diagnostic, Level};
use crate::wire::Transport;

use super::{CompiledPolicy, Verdict, ZoneId, ZoneTable};

// The exceptions name rules and zones by the same indices.
const _: () = assert!(crate::exception::DEFAULT_RULE == Verdict::DEFAULT_RULE);
const _: () = assert!(crate::exception::UNKNOWN_ZONE == ZoneTable::UNKNOWN);

/// `segwatch check`'s warnings about loaded exceptions: expired at
/// `now_ns`, and unmatchable because the policy allows all they cover.
pub fn exception_warnings(
    exceptions: &[Exception],
    path: &Path,
    policy: &CompiledPolicy,
    now_ns: u64,
) -> Vec<Diagnostic> {
    let warn = |exception: &Exception, message: String, hint: &str| Diagnostic {
        level: Level::Warning,
        file: path.to_path_buf(),
        line: exception.line,
        column: 1,
        message,
        hint: Some(hint.to_owned()),
    };
    let mut warnings = Vec::new();
    for exception in exceptions {
        if exception.expires <= now_ns {
            warnings.push(warn(
                exception,
                format!(
                    "exception {:?} expired on {}",
                    exception.id,
                    format_date(exception.expires)
                ),
                "remove it, or renew it with a new expiry if the risk is still accepted",
            ));
        }
        if !can_match(exception, policy) {
            warnings.push(warn(
                exception,
                format!(
                    "exception {:?} can never match: the policy allows all that it covers",
                    exception.id
                ),
                "check its rule, zones and services, or remove it",
            ));
        }
    }
    warnings
}

/// False when the policy allows every flow the exception's scope could
/// hold. Decided exactly for rules and zones; a scope with CIDRs is taken
/// as matchable (a CIDR may hold addresses of several zones).
fn can_match(exception: &Exception, policy: &CompiledPolicy) -> bool {
    match exception.rule {
        Some(RuleScope::Sweep | RuleScope::Scan) => return true,
        Some(RuleScope::Rule(rule)) => {
            let verdict = Verdict {
                rule,
                rule_service: Verdict::FIRST_NAMED,
            };
            if policy.action(verdict) == Action::Allow {
                return false;
            }
        }
        None => {}
    }
    let zones = |scope: &Option<Vec<EndpointScope>>| -> Option<Vec<ZoneId>> {
        match scope {
            None => Some(
                (0..policy.zone_count() as ZoneId)
                    .chain(std::iter::once(ZoneTable::UNKNOWN))
                    .collect(),
            ),
            Some(list) => list
                .iter()
                .map(|s| match s {
                    EndpointScope::Zone(z) => Some(*z),
                    EndpointScope::Network { .. } => None,
                })
                .collect(),
        }
    };
    let (Some(from), Some(to)) = (zones(&exception.from), zones(&exception.to)) else {
        return true;
    };
    // Every port of every zone pair: a check-time cost, bounded here.
    if from.len() * to.len() > 64 {
        return true;
    }
    let wanted_rule = |verdict: Verdict| match exception.rule {
        Some(RuleScope::Rule(rule)) => verdict.rule == rule,
        _ => true,
    };
    let alerts = |f: ZoneId, t: ZoneId, transport: Transport, port: u16| {
        let verdict = policy.judge(f, t, transport, port);
        policy.alerts(verdict) && wanted_rule(verdict)
    };
    for &f in &from {
        for &t in &to {
            let found = match &exception.services {
                None => {
                    alerts(f, t, Transport::EchoRequest, 0)
                        || alerts(f, t, Transport::Other, 0)
                        || (1..=u16::MAX).any(|p| {
                            alerts(f, t, Transport::Tcp, p) || alerts(f, t, Transport::Udp, p)
                        })
                }
                Some(services) => services.iter().any(|s| {
                    (s.icmp && alerts(f, t, Transport::EchoRequest, 0))
                        || s.tcp
                            .iter()
                            .any(|r| (r.lo..=r.hi).any(|p| alerts(f, t, Transport::Tcp, p)))
                        || s.udp
                            .iter()
                            .any(|r| (r.lo..=r.hi).any(|p| alerts(f, t, Transport::Udp, p)))
                }),
            };
            if found {
                return true;
            }
        }
    }
    false
}

impl CompiledPolicy {
    /// A number naming the event's `service` for a flow judged `verdict` on
    /// `transport` to responder port `port`, unique within this policy
    /// among the labels [`CompiledPolicy::service_label`] gives (the
    /// incident key holds it rather than the label's text).
    pub fn service_key(
        &self,
        verdict: Verdict,
        transport: Transport,
        port: u16,
        app: Option<crate::app::App>,
    ) -> u32 {
        if verdict.rule_service != Verdict::FIRST_NAMED {
            // The rule is part of the incident key: its service index is
            // unique beside it.
            return 1 << 31 | verdict.rule_service;
        }
        self.first_named_service(transport, port, app)
    }
}
