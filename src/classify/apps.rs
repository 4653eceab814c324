//! The application stage of judging (a policy extension): rules that
//! require an application found by content, or narrow by its fields, and
//! the `[clinical]` checks.
//!
//! The port tables are compiled without these rules, so the cost of
//! judging by ports stays flat. A flow whose application is known (or ruled
//! out) is then checked against the application rules ordered before the
//! port verdict's rule, in order: the first that matches wins. Their number
//! is what a policy writes about applications, usually a handful; the
//! check runs once per flow, when inspection ends.

use crate::app::dicom::DicomPdu;
use crate::app::hl7::Hl7Message;
use crate::app::{AppInfo, Detection};
use crate::policy::{Action, AppConditions, ClinicalChecks, Policy, ServiceSpec, ZoneRef};
use crate::wire::Transport;

use super::{RuleId, Verdict, ZoneId};

/// An application rule, compiled.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct AppRule {
    pub id: RuleId,
    pub from: Vec<ZoneRef>,
    pub to: Vec<ZoneRef>,
    pub services: Vec<ServiceSpec>,
    pub conditions: AppConditions,
}

/// The application stage of a compiled policy.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct AppStage {
    pub rules: Vec<AppRule>,
    pub clinical: ClinicalChecks,
    /// Ports (TCP) that services requiring `dicom` / `hl7` name.
    pub dicom_ports: Vec<crate::policy::PortRange>,
    pub hl7_ports: Vec<crate::policy::PortRange>,
    /// Rule ids of the clinical pseudo-rules: unexpected port, unknown AE
    /// title, unknown HL7 sender.
    pub flags: [RuleId; 3],
}

impl AppStage {
    pub fn build(policy: &Policy, first_flag: RuleId) -> AppStage {
        let rules = policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.depends_on_app())
            .map(|(i, r)| AppRule {
                id: i as RuleId,
                from: r.from.clone(),
                to: r.to.clone(),
                services: r.services.iter().map(|s| s.spec.clone()).collect(),
                conditions: r.conditions.clone(),
            })
            .collect();
        let ports_of = |app: &str| {
            policy
                .services
                .iter()
                .map(|s| &s.spec)
                .chain(
                    policy
                        .rules
                        .iter()
                        .flat_map(|r| r.services.iter().map(|s| &s.spec)),
                )
                .filter(|spec| spec.app.as_deref() == Some(app))
                .flat_map(|spec| spec.tcp.iter().copied())
                .collect()
        };
        AppStage {
            rules,
            clinical: policy.clinical.clone(),
            dicom_ports: ports_of("dicom"),
            hl7_ports: ports_of("hl7"),
            flags: [first_flag, first_flag + 1, first_flag + 2],
        }
    }

    pub fn active(&self) -> bool {
        !self.rules.is_empty() || !self.clinical.is_empty()
    }
}

fn holds(zones: &[ZoneRef], zone: ZoneId, unknown: ZoneId) -> bool {
    zones.iter().any(|z| match *z {
        ZoneRef::Any => true,
        ZoneRef::Unknown => zone == unknown,
        ZoneRef::Zone(i) => zone == i as ZoneId,
    })
}

/// The index of the first of `services` the flow matches; a service that
/// requires an application matches by it alone, whatever the port.
fn service_match(
    services: &[ServiceSpec],
    transport: Transport,
    port: u16,
    app: Option<&Detection>,
) -> Option<u32> {
    if services.is_empty() {
        return Some(Verdict::FIRST_NAMED);
    }
    services
        .iter()
        .position(|spec| match &spec.app {
            Some(required) => app.is_some_and(|d| d.app().as_str() == required),
            None => match transport {
                Transport::Tcp => spec.tcp.iter().any(|r| r.contains(port)),
                Transport::Udp => spec.udp.iter().any(|r| r.contains(port)),
                Transport::EchoRequest | Transport::EchoReply => spec.icmp,
                Transport::Other => false,
            },
        })
        .map(|i| i as u32)
}

fn request(app: &Detection) -> Option<&crate::app::dicom::AssociateRq> {
    match &app.info {
        AppInfo::Dicom(info) => match &info.client {
            Some(DicomPdu::AssociateRq(rq)) => Some(rq),
            _ => None,
        },
        _ => None,
    }
}

fn hl7_header(app: &Detection) -> Option<&crate::app::hl7::Hl7Header> {
    match &app.info {
        AppInfo::Hl7(info) => match &info.client {
            Some(Hl7Message::Message(header)) => Some(header),
            _ => None,
        },
        _ => None,
    }
}

fn sni(app: &Detection) -> Option<&str> {
    match &app.info {
        AppInfo::Tls(info) => info.sni.as_deref(),
        _ => None,
    }
}

/// `*.example.org` matches its subdomains; names compare without case.
pub fn server_name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(domain) => name.len() > domain.len() + 1 && name.ends_with(&format!(".{domain}")),
        None => pattern == name,
    }
}

fn conditions_match(c: &AppConditions, app: Option<&Detection>) -> bool {
    if c.is_empty() {
        return true;
    }
    let Some(app) = app else { return false };
    let listed = |list: &[String], value: Option<&str>| {
        list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
    };
    let rq = request(app);
    let hl7 = hl7_header(app);
    listed(&c.dicom_called_ae, rq.map(|r| r.called_ae.as_str()))
        && listed(&c.dicom_calling_ae, rq.map(|r| r.calling_ae.as_str()))
        && listed(
            &c.hl7_sending_app,
            hl7.and_then(|h| h.sending_application.as_deref()),
        )
        && listed(
            &c.hl7_sending_facility,
            hl7.and_then(|h| h.sending_facility.as_deref()),
        )
        && (c.hl7_message_types.is_empty()
            || hl7
                .and_then(|h| h.message_type.as_deref())
                .is_some_and(|t| {
                    c.hl7_message_types
                        .iter()
                        .any(|m| t == m || t.split('^').next() == Some(m.as_str()))
                }))
        && (c.tls_server_names.is_empty()
            || sni(app)
                .is_some_and(|n| c.tls_server_names.iter().any(|p| server_name_matches(p, n))))
}

impl AppStage {
    /// The verdict of a flow whose application is known (`app`) or ruled
    /// out (`None`), given its port verdict `base`; `action` tells what a
    /// verdict does.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &self,
        from: ZoneId,
        to: ZoneId,
        unknown: ZoneId,
        transport: Transport,
        port: u16,
        base: Verdict,
        app: Option<&Detection>,
        action: impl Fn(Verdict) -> Action,
    ) -> Verdict {
        let mut verdict = base;
        for rule in &self.rules {
            if rule.id >= base.rule {
                break;
            }
            if !holds(&rule.from, from, unknown) || !holds(&rule.to, to, unknown) {
                continue;
            }
            let Some(service) = service_match(&rule.services, transport, port, app) else {
                continue;
            };
            if conditions_match(&rule.conditions, app) {
                verdict = Verdict {
                    rule: rule.id,
                    rule_service: service,
                };
                break;
            }
        }
        if action(verdict) == Action::Allow
            && let Some(flag) = self.clinical_flag(port, app)
        {
            verdict = Verdict {
                rule: flag,
                rule_service: Verdict::FIRST_NAMED,
            };
        }
        verdict
    }

    /// The clinical check that flags the flow; when several do, the one of
    /// highest severity (the first in the file's order among equals), so
    /// that a lower check never hides a higher one.
    fn clinical_flag(&self, port: u16, app: Option<&Detection>) -> Option<RuleId> {
        let app = app?;
        let c = &self.clinical;
        let named = |ranges: &[crate::policy::PortRange]| ranges.iter().any(|r| r.contains(port));
        let mut flagged: Option<(crate::policy::Severity, RuleId)> = None;
        let mut flag = |severity, rule| {
            if flagged.is_none_or(|(highest, _)| severity > highest) {
                flagged = Some((severity, rule));
            }
        };
        if let Some(severity) = c.unexpected_port {
            let unexpected = match app.app() {
                crate::app::App::Dicom => !named(&self.dicom_ports),
                crate::app::App::Hl7 => !named(&self.hl7_ports),
                _ => false,
            };
            if unexpected {
                flag(severity, self.flags[0]);
            }
        }
        if !c.known_ae_titles.is_empty()
            && let Some(rq) = request(app)
        {
            let known = |ae: &str| c.known_ae_titles.iter().any(|k| k == ae);
            if !known(&rq.called_ae) || !known(&rq.calling_ae) {
                flag(c.unknown_ae_title, self.flags[1]);
            }
        }
        if !c.known_hl7_senders.is_empty()
            && let Some(header) = hl7_header(app)
        {
            let application = header.sending_application.as_deref().unwrap_or("");
            let full = format!(
                "{application}^{}",
                header.sending_facility.as_deref().unwrap_or("")
            );
            if !c
                .known_hl7_senders
                .iter()
                .any(|k| *k == application || *k == full)
            {
                flag(c.unknown_hl7_sender, self.flags[2]);
            }
        }
        flagged.map(|(_, rule)| rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_patterns() {
        assert!(server_name_matches("pacs.example.org", "PACS.example.org"));
        assert!(server_name_matches("*.vendor.com", "update.vendor.com"));
        assert!(server_name_matches("*.vendor.com", "a.b.vendor.com"));
        assert!(!server_name_matches("*.vendor.com", "vendor.com"));
        assert!(!server_name_matches("*.vendor.com", "evilvendor.com"));
    }
}
