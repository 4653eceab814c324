//! Violation events (contract section 3).
//!
//! The hot path produces a compact [`Violation`]: numbers and table indices.
//! [`ViolationEvent`] resolves it against the policy that judged it into the
//! contract's object; it is the one definition of an event's fields and
//! their order, which the JSON lines of `replay` and the events file, and
//! every syslog format, are written from. Building one allocates nothing
//! but the application fields; events carry header fields only: no payload
//! byte ever reaches one.

#![forbid(unsafe_code)]

pub mod app_fields;
mod fast_json;
mod incident;
mod stamp;

pub use incident::{IncidentKind, IncidentRecord, IncidentState, Record, SourceDevice};
pub use stamp::{HexId, HexText, Timestamp, TimestampText, rfc3339_micros};

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::classify::{CompiledPolicy, Judgement, PolicyInForce, Verdict, ZoneId};
use crate::exception::{RuleScope, Subject};
use crate::flow::{FlowKey, Overlay};
use crate::wire::{Transport, protocol_name};

/// A violating flow, as the pipeline reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Position in the capture of the packet that produced the event.
    pub packet_index: u64,
    /// Capture time of that packet, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The flow's id.
    pub flow_id: u64,
    /// True for IPv6.
    pub ipv6: bool,
    /// IP protocol number.
    pub protocol: u8,
    /// The flow's transport.
    pub transport: Transport,
    /// Initiator's address.
    pub src_addr: u128,
    /// Initiator's port (TCP/UDP).
    pub src_port: u16,
    /// Responder's address.
    pub dest_addr: u128,
    /// Responder's port (TCP/UDP).
    pub dest_port: u16,
    /// Outermost VLAN ID of the packet; 0 when untagged.
    pub vlan: u16,
    /// Initiator's zone.
    pub src_zone: ZoneId,
    /// Responder's zone.
    pub dest_zone: ZoneId,
    /// The verdict.
    pub verdict: Verdict,
    /// The application, when detection identified it (contract section 2:
    /// the event waits for it).
    pub app: Option<Box<crate::app::Detection>>,
    /// The overlay the flow was taken out of, when decapsulating.
    pub overlay: Overlay,
    /// The exception that excepts it (index in file order of the policy in
    /// force's exceptions; contract section 8).
    pub exception: Option<u32>,
}

impl Violation {
    /// The violation of the flow with `key`, judged as `judged` with the
    /// final `verdict`, made by the packet at capture position `at.0`, its
    /// event stamped `at.1` and tagged VLAN `at.2`.
    pub fn of(
        key: &FlowKey,
        judged: &Judgement,
        verdict: Verdict,
        at: (u64, u64, u16),
        flow_id: u64,
        app: Option<Box<crate::app::Detection>>,
    ) -> Violation {
        let (packet_index, ts_ns, vlan) = at;
        Violation {
            packet_index,
            ts_ns,
            flow_id,
            ipv6: key.ipv6,
            protocol: key.protocol,
            transport: Transport::of_protocol(key.protocol),
            src_addr: judged.initiator.0,
            src_port: judged.initiator.1,
            dest_addr: judged.responder.0,
            dest_port: judged.responder.1,
            vlan,
            src_zone: judged.zones.0,
            dest_zone: judged.zones.1,
            verdict,
            app,
            overlay: key.overlay,
            exception: None,
        }
    }

    /// What an exception's scope sees of the violation.
    pub fn subject(&self) -> Subject {
        Subject {
            rule: RuleScope::Rule(self.verdict.rule),
            ipv6: self.ipv6,
            src: (self.src_addr, self.src_zone),
            dest: Some((self.dest_addr, self.dest_zone)),
            service: Some((self.transport, self.dest_port)),
            ts_ns: self.ts_ns,
        }
    }
}

/// The contract's violation event, field for field and in its order.
///
/// Borrowed when written (names come from the policy), owned when queued
/// for a sink or read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationEvent<'a> {
    /// Capture time of the packet that produced the event.
    pub timestamp: Timestamp,
    /// Always `violation`.
    pub event_type: Cow<'a, str>,
    /// The flow's id.
    pub flow_id: HexId,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or another protocol's keyword.
    pub proto: Cow<'a, str>,
    /// Initiator's address.
    pub src_ip: IpAddr,
    /// Initiator's port; absent when the protocol has none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_port: Option<u16>,
    /// Responder's address.
    pub dest_ip: IpAddr,
    /// Responder's port; absent when the protocol has none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_port: Option<u16>,
    /// Outermost VLAN ID; absent when untagged or 0.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<u16>,
    /// Initiator's zone.
    pub src_zone: Cow<'a, str>,
    /// Responder's zone.
    pub dest_zone: Cow<'a, str>,
    /// The matched service; absent when none matches.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<Cow<'a, str>>,
    /// The deciding rule, or `default`.
    pub rule: Cow<'a, str>,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: Cow<'a, str>,
    /// Initiator zone's criticality label; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_criticality: Option<Cow<'a, str>>,
    /// Responder zone's criticality label; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_criticality: Option<Cow<'a, str>>,
    /// The application protocol, when identified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub app: Option<Cow<'a, str>>,
    /// DICOM association fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dicom: Option<app_fields::Dicom>,
    /// HL7 message header fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hl7: Option<app_fields::Hl7>,
    /// TLS ClientHello fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls: Option<app_fields::Tls>,
    /// HTTP request fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http: Option<app_fields::Http>,
    /// The tunnel the flow was taken out of, when decapsulating (an
    /// extension of the contract).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tunnel: Option<TunnelField>,
    /// The id of the exception that excepts it (contract section 8).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exception: Option<Cow<'a, str>>,
    /// The incident it opened or joined, with incidents on (contract
    /// section 7).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub incident_id: Option<HexId>,
}

/// `tunnel`: the overlay a decapsulated flow came out of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelField {
    /// `vxlan`, `geneve` or `gre`.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// The VNI or GRE key, when the tunnel carried one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<u32>,
}

impl TunnelField {
    /// The field of a flow of `overlay`; `None` for traffic outside tunnels.
    pub fn of(overlay: Overlay) -> Option<TunnelField> {
        (!overlay.is_none()).then(|| TunnelField {
            kind: Cow::Borrowed(overlay.kind().as_str()),
            id: overlay.id(),
        })
    }
}

impl<'a> ViolationEvent<'a> {
    /// Resolves a violation against the policy that judged it (its
    /// exception field is set by [`ViolationEvent::of`]).
    pub fn new(violation: &Violation, policy: &'a CompiledPolicy) -> ViolationEvent<'a> {
        let rule = policy.rule(violation.verdict.rule);
        let src_zone = policy.zone(violation.src_zone);
        let dest_zone = policy.zone(violation.dest_zone);
        let has_ports = matches!(violation.transport, Transport::Tcp | Transport::Udp);
        let port = |p: u16| has_ports.then_some(p);
        let app = violation.app.as_deref();
        ViolationEvent {
            timestamp: Timestamp(violation.ts_ns),
            event_type: Cow::Borrowed("violation"),
            flow_id: HexId(violation.flow_id),
            proto: Cow::Borrowed(protocol_name(violation.protocol)),
            src_ip: ip(violation.ipv6, violation.src_addr),
            src_port: port(violation.src_port),
            dest_ip: ip(violation.ipv6, violation.dest_addr),
            dest_port: port(violation.dest_port),
            vlan: (violation.vlan != 0).then_some(violation.vlan),
            src_zone: Cow::Borrowed(&src_zone.name),
            dest_zone: Cow::Borrowed(&dest_zone.name),
            service: policy
                .service_label(
                    violation.verdict,
                    violation.transport,
                    violation.dest_port,
                    app.map(|d| d.app()),
                )
                .map(Cow::Borrowed),
            rule: Cow::Borrowed(&rule.name),
            severity: Cow::Borrowed(rule.severity.as_str()),
            src_criticality: src_zone.criticality.as_deref().map(Cow::Borrowed),
            dest_criticality: dest_zone.criticality.as_deref().map(Cow::Borrowed),
            app: app.map(|d| Cow::Borrowed(d.app().as_str())),
            dicom: app.and_then(app_fields::Dicom::of),
            hl7: app.and_then(app_fields::Hl7::of),
            tls: app.and_then(app_fields::Tls::of),
            http: app.and_then(app_fields::Http::of),
            tunnel: TunnelField::of(violation.overlay),
            exception: None,
            incident_id: None,
        }
    }

    /// Resolves a violation against the policy in force and its
    /// exceptions.
    pub fn of(violation: &Violation, policy: &'a PolicyInForce) -> ViolationEvent<'a> {
        let mut event = ViolationEvent::new(violation, &policy.policy);
        event.exception = violation
            .exception
            .and_then(|i| policy.exceptions.get(i))
            .map(|e| Cow::Borrowed(e.id.as_str()));
        event
    }
}

impl ViolationEvent<'_> {
    /// The same event owning its strings, to outlive the policy that named it.
    pub fn into_owned(self) -> ViolationEvent<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        ViolationEvent {
            timestamp: self.timestamp,
            event_type: own(self.event_type),
            flow_id: self.flow_id,
            proto: own(self.proto),
            src_ip: self.src_ip,
            src_port: self.src_port,
            dest_ip: self.dest_ip,
            dest_port: self.dest_port,
            vlan: self.vlan,
            src_zone: own(self.src_zone),
            dest_zone: own(self.dest_zone),
            service: self.service.map(own),
            rule: own(self.rule),
            severity: own(self.severity),
            src_criticality: self.src_criticality.map(own),
            dest_criticality: self.dest_criticality.map(own),
            app: self.app.map(own),
            dicom: self.dicom,
            hl7: self.hl7,
            tls: self.tls,
            http: self.http,
            tunnel: self.tunnel,
            exception: self.exception.map(own),
            incident_id: self.incident_id,
        }
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends the event as one line of JSON, with its newline, to `out`:
    /// byte for byte what serde_json writes (the test
    /// `fast_json_equals_serde_json` holds the two together), faster for an
    /// event without application fields (most of them).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let has_nested_fields = self.app.is_some()
            || self.dicom.is_some()
            || self.hl7.is_some()
            || self.tls.is_some()
            || self.http.is_some()
            || self.tunnel.is_some();
        if has_nested_fields {
            self.write_serde_json_line(out);
        } else {
            fast_json::write_plain(self, out);
        }
    }

    /// [`ViolationEvent::write_json_line`] through serde_json.
    fn write_serde_json_line(&self, out: &mut Vec<u8>) {
        // Serializing strings and numbers into a Vec cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

/// Appends `violation`, judged under `policy`, as one line of JSON (with its
/// newline) to `out`.
pub fn write_json_line(violation: &Violation, policy: &PolicyInForce, out: &mut Vec<u8>) {
    ViolationEvent::of(violation, policy).write_json_line(out);
}

/// An address of either family from its `u128` form.
pub fn ip(ipv6: bool, addr: u128) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::from(addr as u32))
    }
}
