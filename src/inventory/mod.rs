//! The device inventory: every endpoint seen, what it is and what it talks.
//!
//! Workers report each flow's first packet, and the first packet its other
//! endpoint sends back (never each packet), as a [`FlowStart`]; the
//! inventory merges the endpoint that sent it into one `Device` per IP
//! address in a [`DashMap`] shared by all workers. An address that never
//! sends (a sweep's or a scan's target that does not exist) is never a
//! device. Merging is order-independent (sets, counts, minimum and maximum
//! times), so a replay gives the same inventory for any number of threads.
//!
//! The inventory is bounded: past its capacity, [`Inventory::settle`]
//! evicts the least-evidenced devices (see `bound.rs`), so a flood of
//! spoofed sources never keeps a real new device out. It keeps the devices'
//! counts by zone and class as they change, so that a metrics scrape reads
//! them without building the report.
//!
//! A device's class (infusion pump, patient monitor, imaging modality, PACS,
//! ...) is inferred when the inventory is read, from its vendor and the
//! services it uses and offers, with the evidence for it.

#![forbid(unsafe_code)]

mod bound;
mod classify;
pub mod oui;

pub use classify::{DeviceClass, classify};
pub use oui::{OuiRegistry, RegistrySource, VendorMatch};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use serde::Serialize;

use crate::classify::ZoneId;
use crate::event::{ip, rfc3339_micros};
use crate::wire::Transport;

/// Devices kept unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Most MAC addresses, VLANs and services remembered per device: enough to
/// describe a device, bounded against a scanner's thousand ports.
const MAX_MACS: usize = 4;
const MAX_VLANS: usize = 8;
const MAX_SERVICES: usize = 32;

/// A MAC address seen for this many devices or more is a router's or a
/// gateway's (routed traffic on a SPAN port carries the router's MAC):
/// it names no device's vendor.
const SHARED_MAC_DEVICES: usize = 4;

/// One endpoint of a starting flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// IPv6 or IPv4.
    pub ipv6: bool,
    /// Address bits.
    pub addr: u128,
    /// Its MAC address in the frame, when the link has one.
    pub mac: Option<[u8; 6]>,
    /// Zone name under the policy that judged the flow.
    pub zone: String,
}

/// A flow's first packet, or the first packet its other endpoint sent
/// back, as the pipeline records it for the inventory: at most twice per
/// flow, never per packet; made into a [`Sighting`] off the per-packet
/// path. Only the packet's sender is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// Capture position of the packet.
    pub position: u64,
    /// Its capture time.
    pub ts_ns: u64,
    /// True for the flow's first packet; false for the other endpoint's
    /// first answer.
    pub first: bool,
    /// IPv6 or IPv4.
    pub ipv6: bool,
    /// IP protocol number.
    pub protocol: u8,
    /// The flow's transport.
    pub transport: Transport,
    /// Initiator's (address, port).
    pub initiator: (u128, u16),
    /// Responder's (address, port).
    pub responder: (u128, u16),
    /// Initiator's and responder's zones.
    pub zones: (ZoneId, ZoneId),
    /// Outermost VLAN ID of the packet; 0 when untagged.
    pub vlan: u16,
    /// True when the packet's sender is the initiator (so its source MAC
    /// address is the initiator's).
    pub sender_initiates: bool,
    /// The frame's source and destination MAC addresses, when its link has
    /// them.
    pub macs: Option<([u8; 6], [u8; 6])>,
}

/// A flow whose application was identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentified {
    /// Capture position of the packet that ended the inspection.
    pub position: u64,
    /// IPv6 or IPv4.
    pub ipv6: bool,
    /// The initiator's address.
    pub client: u128,
    /// The responder's address.
    pub server: u128,
    /// What was found.
    pub detection: crate::app::Detection,
}

/// A flow start as the inventory takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Capture position of the flow's first packet.
    pub position: u64,
    /// Capture time of the flow's first packet.
    pub ts_ns: u64,
    /// The initiator.
    pub client: Endpoint,
    /// The responder.
    pub server: Endpoint,
    /// The service as a label: `tcp/104`, `udp/53`, `icmp`, `ip/47`.
    pub service: String,
    /// Outermost VLAN ID; 0 when untagged.
    pub vlan: u16,
}

impl Sighting {
    /// The sighting of a flow start, with the MAC addresses of the frame
    /// that started it (source first) when its link has them.
    pub fn of(start: &FlowStart, zone_name: impl Fn(ZoneId) -> String) -> Sighting {
        let (client_mac, server_mac) = match start.macs {
            Some((src, dst)) if start.sender_initiates => (Some(src), Some(dst)),
            Some((src, dst)) => (Some(dst), Some(src)),
            None => (None, None),
        };
        let service = match start.transport {
            crate::wire::Transport::Tcp => service_label("tcp/", start.responder.1),
            crate::wire::Transport::Udp => service_label("udp/", start.responder.1),
            crate::wire::Transport::EchoRequest | crate::wire::Transport::EchoReply => {
                "icmp".into()
            }
            crate::wire::Transport::Other => service_label("ip/", start.protocol),
        };
        Sighting {
            position: start.position,
            ts_ns: start.ts_ns,
            client: Endpoint {
                ipv6: start.ipv6,
                addr: start.initiator.0,
                mac: client_mac,
                zone: zone_name(start.zones.0),
            },
            server: Endpoint {
                ipv6: start.ipv6,
                addr: start.responder.0,
                mac: server_mac,
                zone: zone_name(start.zones.1),
            },
            service,
            vlan: start.vlan,
        }
    }
}

/// `prefix` and the number: what `format!("{prefix}{n}")` gives, without the
/// formatting machinery (once per flow start).
fn service_label(prefix: &str, n: impl itoa::Integer) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let mut label = String::with_capacity(prefix.len() + digits.len());
    label.push_str(prefix);
    label.push_str(digits);
    label
}

/// What the inventory knows of one address. What a record's `src_device`
/// needs (MACs, services and applications by presence, the DHCP hostname)
/// is kept with the capture position where it was first seen, merged by
/// minimum: order-independent, and answerable "as of" a position.
#[derive(Clone, Debug, Default)]
struct Device {
    /// MAC addresses and the first position each was seen at.
    macs: BTreeMap<[u8; 6], u64>,
    vlans: BTreeSet<u16>,
    /// Zone names it was seen in (a reload can move it).
    zones: BTreeSet<String>,
    first_ns: u64,
    last_ns: u64,
    /// Capture position of its first sighting.
    first_position: Option<u64>,
    flows_as_client: u64,
    flows_as_server: u64,
    /// Services it used, with flow counts and the first position.
    client_services: BTreeMap<String, (u64, u64)>,
    /// Services it offered, with flow counts and the first position.
    server_services: BTreeMap<String, (u64, u64)>,
    /// Applications it spoke as a client, and as a server, with the first
    /// position.
    client_apps: BTreeMap<String, u64>,
    server_apps: BTreeMap<String, u64>,
    /// DICOM AE titles it used (its own: calling as a client, called as a
    /// server).
    ae_titles: BTreeSet<String>,
    /// HL7 applications it sent as (`APP^FACILITY`).
    hl7_applications: BTreeSet<String>,
    /// From its DHCP requests, or leased to it by a DHCP ACK: (position,
    /// hostname), the latest [`MAX_HOSTNAMES`] kept.
    dhcp_hostnames: Vec<(u64, String)>,
    dhcp_vendor_class: Option<String>,
    dhcp_fingerprint: Option<String>,
    /// Its (zone, class) as last counted in [`Inventory`]'s counts; `None`
    /// until first counted.
    counted: Option<(String, DeviceClass)>,
    /// True when one of its own MACs names a vendor (as last counted).
    has_vendor: bool,
}

/// Inserts `value` unless the set is full; true when it is new.
fn bounded_insert<T: Ord>(set: &mut BTreeSet<T>, value: T, max: usize) -> bool {
    (set.len() < max || set.contains(&value)) && set.insert(value)
}

/// Hostnames remembered per device (the latest by position).
const MAX_HOSTNAMES: usize = 4;

/// Counts a flow of `service`; true when the service is new.
fn count_service(
    services: &mut BTreeMap<String, (u64, u64)>,
    service: &str,
    position: u64,
) -> bool {
    if let Some((count, first)) = services.get_mut(service) {
        *count += 1;
        *first = (*first).min(position);
        false
    } else if services.len() < MAX_SERVICES {
        services.insert(service.to_string(), (1, position));
        true
    } else {
        false
    }
}

/// Notes `key` first seen at `position`; true when the key is new.
fn first_at<K: Ord + Clone>(map: &mut BTreeMap<K, u64>, key: K, position: u64, max: usize) -> bool {
    if let Some(first) = map.get_mut(&key) {
        *first = (*first).min(position);
        false
    } else if map.len() < max {
        map.insert(key, position);
        true
    } else {
        false
    }
}

/// Adds a hostname seen at `position`, keeping the latest few by position
/// (order-independent).
fn add_hostname(hostnames: &mut Vec<(u64, String)>, position: u64, name: &str) {
    if hostnames.iter().any(|(p, n)| *p == position && n == name) {
        return;
    }
    hostnames.push((position, name.to_owned()));
    hostnames.sort();
    if hostnames.len() > MAX_HOSTNAMES {
        hostnames.remove(0);
    }
}

/// Counts of the services first seen before `position` (classification
/// weighs presence).
fn services_before(
    services: &BTreeMap<String, (u64, u64)>,
    position: u64,
) -> BTreeMap<String, u64> {
    services
        .iter()
        .filter(|(_, (_, first))| *first < position)
        .map(|(name, (count, _))| (name.clone(), *count))
        .collect()
}

fn apps_before(apps: &BTreeMap<String, u64>, position: u64) -> BTreeSet<String> {
    apps.iter()
        .filter(|(_, first)| **first < position)
        .map(|(name, _)| name.clone())
        .collect()
}

impl Device {
    /// Its class from `vendor` and the services and applications first
    /// seen before `position`, without the evidence (see
    /// [`classify::class_from`]); what [`classify`] gives from the same.
    fn class_as_of<'a>(&'a self, vendor: Option<&str>, position: u64) -> DeviceClass {
        let services = |map: &'a BTreeMap<String, (u64, u64)>| {
            map.iter()
                .filter(move |(_, (_, first))| *first < position)
                .map(|(name, (count, _))| (name.as_str(), *count))
        };
        let apps = |map: &'a BTreeMap<String, u64>| {
            map.iter()
                .filter(move |(_, first)| **first < position)
                .map(|(name, _)| name.as_str())
        };
        classify::class_from(
            vendor,
            (
                services(&self.client_services),
                services(&self.server_services),
            ),
            (apps(&self.client_apps), apps(&self.server_apps)),
            None,
        )
    }

    /// Merges a sighting of this device; true when what its zone and class
    /// are inferred from changed (a new MAC, zone or service).
    fn saw(&mut self, endpoint: &Endpoint, sighting: &Sighting, as_client: bool) -> bool {
        if self.first_ns == 0 || sighting.ts_ns < self.first_ns {
            self.first_ns = sighting.ts_ns;
        }
        self.last_ns = self.last_ns.max(sighting.ts_ns);
        self.first_position = Some(
            self.first_position
                .map_or(sighting.position, |p| p.min(sighting.position)),
        );
        let mut changed = false;
        if let Some(mac) = endpoint.mac {
            changed |= first_at(&mut self.macs, mac, sighting.position, MAX_MACS);
        }
        if sighting.vlan != 0 {
            bounded_insert(&mut self.vlans, sighting.vlan, MAX_VLANS);
        }
        if !self.zones.contains(endpoint.zone.as_str()) {
            changed |= bounded_insert(&mut self.zones, endpoint.zone.clone(), MAX_VLANS);
        }
        let (flows, services) = if as_client {
            (&mut self.flows_as_client, &mut self.client_services)
        } else {
            (&mut self.flows_as_server, &mut self.server_services)
        };
        *flows += 1;
        changed | count_service(services, &sighting.service, sighting.position)
    }

    /// Flows it took part in, either way.
    fn flows(&self) -> u64 {
        self.flows_as_client + self.flows_as_server
    }

    /// True when some application was identified in its flows.
    fn has_app(&self) -> bool {
        !self.client_apps.is_empty() || !self.server_apps.is_empty()
    }

    /// Its zone as reported: the zones it was seen in, comma-separated.
    fn zone_label(&self) -> String {
        match self.zones.len() {
            1 => self.zones.first().cloned().unwrap_or_default(),
            _ => self.zones.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }

    /// True when [`Device::zone_label`] is `label` (without building it).
    fn zone_label_is(&self, label: &str) -> bool {
        let mut rest = label;
        for (i, zone) in self.zones.iter().enumerate() {
            if i > 0 {
                match rest.strip_prefix(',') {
                    Some(after) => rest = after,
                    None => return false,
                }
            }
            match rest.strip_prefix(zone.as_str()) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

impl Device {
    /// What an identified flow says of this device, at `position`; true
    /// when the application is new for it (its class may change).
    fn learn_app(
        &mut self,
        detection: &crate::app::Detection,
        as_client: bool,
        position: u64,
    ) -> bool {
        use crate::app::AppInfo;
        let app = detection.app().as_str().to_string();
        let apps = if as_client {
            &mut self.client_apps
        } else {
            &mut self.server_apps
        };
        let new_app = first_at(apps, app, position, MAX_SERVICES);
        match &detection.info {
            AppInfo::Dicom(info) => {
                if let Some(rq) = info.request() {
                    let own = if as_client {
                        &rq.calling_ae
                    } else {
                        &rq.called_ae
                    };
                    if !own.is_empty() {
                        let _ = bounded_insert(&mut self.ae_titles, own.clone(), MAX_VLANS);
                    }
                }
            }
            AppInfo::Hl7(info) => {
                if let Some(header) = info.request()
                    && as_client
                {
                    let name = format!(
                        "{}^{}",
                        header.sending_application.as_deref().unwrap_or(""),
                        header.sending_facility.as_deref().unwrap_or("")
                    );
                    let _ = bounded_insert(&mut self.hl7_applications, name, MAX_VLANS);
                }
            }
            AppInfo::Dhcp(info) if as_client || info.request => {
                if let Some(name) = &info.hostname {
                    add_hostname(&mut self.dhcp_hostnames, position, name);
                }
                if info.vendor_class.is_some() {
                    self.dhcp_vendor_class.clone_from(&info.vendor_class);
                }
                if info.parameter_request_list.is_some() {
                    self.dhcp_fingerprint
                        .clone_from(&info.parameter_request_list);
                }
            }
            _ => {}
        }
        new_app
    }
}

/// A device's key: (IPv6, address).
type DeviceKey = (bool, u128);

/// The inventory's maps hash with foldhash rather than SipHash: every flow
/// start looks a device (and its MAC) up, and the keys are addresses, for
/// which SipHash's defence against chosen collisions buys nothing that
/// the bounds (devices, MACs per device) do not already give.
type Map<K, V> = DashMap<K, V, foldhash::fast::FixedState>;

/// The shared device inventory.
#[derive(Debug)]
pub struct Inventory {
    devices: Map<(bool, u128), Device>,
    /// Per MAC address, the first sightings of the first four devices seen
    /// with it, (position, device) smallest first: a MAC of four devices
    /// or more is a router's ([`SHARED_MAC_DEVICES`]), as of any position.
    mac_users: Map<[u8; 6], Vec<(u64, DeviceKey)>>,
    /// DHCP hostnames by client MAC (chaddr): (position, hostname).
    hostnames_by_mac: Map<[u8; 6], Vec<(u64, String)>>,
    /// DHCP leases (an ACK's yiaddr for its chaddr): by leased address, the
    /// MACs and the positions they were leased at.
    leases: Map<u128, BTreeMap<[u8; 6], u64>>,
    capacity: usize,
    registry: Arc<OuiRegistry>,
    /// Devices by (zone, class), kept as devices come, change and go: a
    /// scrape reads them without building the report.
    counts: Map<(String, DeviceClass), u64>,
    /// Devices evicted to keep the bound.
    evicted: AtomicU64,
    /// Flows whose responder had sent nothing by the [`Inventory::settle`]
    /// after their start, and was no device then.
    unanswered: AtomicU64,
    /// Responders of the flows started since the last settle.
    pending: crossbeam_channel::Sender<DeviceKey>,
    pending_out: crossbeam_channel::Receiver<DeviceKey>,
    /// True while a settle runs (one at a time; others skip).
    settling: AtomicBool,
}

/// What evidence reports take of a device: [`DeviceReport`]'s identity
/// fields, without its services, applications and MACs, and with its times
/// as numbers (see [`Inventory::summaries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Address.
    pub ip: IpAddr,
    /// Zones it was seen in, comma-separated.
    pub zone: String,
    /// Vendor of its own MACs.
    pub vendor: Option<String>,
    /// Inferred class.
    pub class: DeviceClass,
    /// Its DHCP hostname.
    pub dhcp_hostname: Option<String>,
    /// First and latest flow start seen, ns since the epoch.
    pub first_ns: u64,
    /// Latest flow start seen, ns since the epoch.
    pub last_ns: u64,
}

/// One device as the inventory reports it (JSON, CSV, the HTTP API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceReport {
    /// Its address.
    pub ip: IpAddr,
    /// MAC addresses seen for it (`aa:bb:cc:dd:ee:ff`).
    pub macs: Vec<String>,
    /// Vendor of its MAC address, when the registry knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// True when its MAC is locally administered (randomised).
    pub mac_randomized: bool,
    /// True when its MAC is shared by many addresses (a router's): the
    /// device itself is behind a router and its vendor unknown.
    pub mac_shared: bool,
    /// VLAN IDs its flows carried.
    pub vlans: Vec<u16>,
    /// Its zone (zones, should a reload have moved it).
    pub zone: String,
    /// The inferred device class.
    pub class: DeviceClass,
    /// Why: one line per piece of evidence.
    pub evidence: Vec<String>,
    /// Services it used as a client: `tcp/104 (12 flows)`.
    pub client_services: Vec<String>,
    /// Services it offered as a server.
    pub server_services: Vec<String>,
    /// Flows it initiated.
    pub flows_as_client: u64,
    /// Flows it answered.
    pub flows_as_server: u64,
    /// Applications it spoke as a client (identified by content).
    pub client_apps: Vec<String>,
    /// Applications it served.
    pub server_apps: Vec<String>,
    /// Its DICOM AE titles.
    pub ae_titles: Vec<String>,
    /// HL7 applications it sent as (`APP^FACILITY`).
    pub hl7_applications: Vec<String>,
    /// DHCP hostname (option 12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_hostname: Option<String>,
    /// DHCP vendor class (option 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_vendor_class: Option<String>,
    /// DHCP parameter request list (option 55), the fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_fingerprint: Option<String>,
    /// First flow start, RFC 3339.
    pub first_seen: String,
    /// Latest flow start, RFC 3339.
    pub last_seen: String,
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn services_text(services: &BTreeMap<String, u64>) -> Vec<String> {
    let mut list: Vec<(&String, &u64)> = services.iter().collect();
    // Busiest first, then by name: stable for any thread count.
    list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    list.into_iter()
        .map(|(service, n)| format!("{service} ({n} flow{})", if *n == 1 { "" } else { "s" }))
        .collect()
}

impl Inventory {
    /// An inventory of at most `capacity` devices, naming vendors from
    /// `registry`.
    pub fn new(capacity: usize, registry: Arc<OuiRegistry>) -> Inventory {
        let (pending, pending_out) = crossbeam_channel::unbounded();
        Inventory {
            devices: Map::default(),
            mac_users: Map::default(),
            hostnames_by_mac: Map::default(),
            leases: Map::default(),
            capacity: capacity.max(1),
            registry,
            counts: Map::default(),
            evicted: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            pending,
            pending_out,
            settling: AtomicBool::new(false),
        }
    }

    /// Devices held.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device was seen.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Devices evicted to keep the bound (the least evidenced first).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Flows whose responder had sent no packet by the settle that followed
    /// their start (and was no device then): kept out of the inventory.
    pub fn unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }

    /// The bound: at most this many devices after each settle.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The vendor registry in use.
    pub fn registry(&self) -> &OuiRegistry {
        &self.registry
    }

    /// Takes an identified application of a flow between two devices
    /// already seen (their flow start came first).
    pub fn record_app(&self, identified: &AppIdentified) {
        for (addr, as_client) in [(identified.client, true), (identified.server, false)] {
            if let Some(mut device) = self.devices.get_mut(&(identified.ipv6, addr))
                && device.learn_app(&identified.detection, as_client, identified.position)
            {
                self.recount(&mut device);
            }
        }
        if let crate::app::AppInfo::Dhcp(info) = &identified.detection.info {
            self.record_dhcp(info, identified.position);
        }
    }

    /// A DHCP message's hostname by its client MAC, and a lease by its
    /// yiaddr (an ACK): the hostname lands on the leased address, also
    /// behind a relay, and never on 0.0.0.0 or a broadcast address.
    fn record_dhcp(&self, info: &crate::app::DhcpInfo, position: u64) {
        let Some(mac) = info.client_mac else { return };
        if let Some(name) = &info.hostname {
            add_hostname(
                &mut self.hostnames_by_mac.entry(mac).or_default(),
                position,
                name,
            );
        }
        if info.message_type == Some(crate::app::dhcp::DhcpMessageType::Ack)
            && let Some(leased) = info.leased_address
            && leased != u32::MAX
            && self.leases.len() < self.capacity
        {
            let mut macs = self.leases.entry(u128::from(leased)).or_default();
            if macs.len() < MAX_MACS || macs.contains_key(&mac) {
                let first = macs.entry(mac).or_insert(position);
                *first = (*first).min(position);
            }
        }
    }

    /// The DHCP hostname of a device as of `position`: its own requests'
    /// or, for an IPv4 address leased by an ACK before `position`, the
    /// latest name its client MAC gave before `position`.
    fn hostname_as_of(
        &self,
        ipv6: bool,
        addr: u128,
        own: &[(u64, String)],
        position: u64,
    ) -> Option<String> {
        let mut best: Option<(u64, String)> =
            own.iter().rev().find(|(p, _)| *p < position).cloned();
        if !ipv6 && let Some(macs) = self.leases.get(&addr) {
            for (mac, leased_at) in macs.iter() {
                if *leased_at >= position {
                    continue;
                }
                if let Some(names) = self.hostnames_by_mac.get(mac)
                    && let Some((p, name)) = names.iter().rev().find(|(p, _)| *p < position)
                    && best.as_ref().is_none_or(|(b, _)| p > b)
                {
                    best = Some((*p, name.clone()));
                }
            }
        }
        best.map(|(_, name)| name)
    }

    /// True when `mac` was seen for [`SHARED_MAC_DEVICES`] devices before
    /// `position`.
    fn mac_shared_before(&self, mac: &[u8; 6], position: u64) -> bool {
        self.mac_users.get(mac).is_some_and(|users| {
            users.iter().filter(|(p, _)| *p < position).count() >= SHARED_MAC_DEVICES
        })
    }

    /// What a record's `src_device` says of the device at `addr`, exactly
    /// as the frames before capture position `position` establish it:
    /// vendor (of its own MACs, not a router's), class and DHCP hostname.
    pub fn device_as_of(
        &self,
        ipv6: bool,
        addr: u128,
        position: u64,
    ) -> Option<crate::event::SourceDevice> {
        let device = self.devices.get(&(ipv6, addr))?;
        let macs: Vec<[u8; 6]> = device
            .macs
            .iter()
            .filter(|(mac, first)| **first < position && !self.mac_shared_before(mac, position))
            .map(|(mac, _)| *mac)
            .collect();
        let mut vendor = None;
        for mac in &macs {
            if let VendorMatch::Vendor(name) = self.registry.lookup(*mac) {
                vendor = Some(name.to_string());
                break;
            }
        }
        let class = device.class_as_of(vendor.as_deref(), position);
        let hostname = self.hostname_as_of(ipv6, addr, &device.dhcp_hostnames, position);
        let seen_before = device.first_position.is_some_and(|p| p < position);
        drop(device);
        if !seen_before {
            return None;
        }
        let found = crate::event::SourceDevice {
            vendor,
            class: (class != DeviceClass::Unknown).then(|| class.as_str().to_owned()),
            hostname,
        };
        (!found.is_empty()).then_some(found)
    }

    /// Takes a flow start in which both endpoints sent a packet.
    pub fn record(&self, sighting: &Sighting) {
        self.update(&sighting.client, sighting, true);
        self.update(&sighting.server, sighting, false);
    }

    /// Takes a flow's first packet, or its other endpoint's first answer:
    /// the packet's sender is recorded (in its role in the flow). A flow's
    /// responder is remembered until the next [`Inventory::settle`], which
    /// counts it [`Inventory::unanswered`] if it has not become a device.
    pub fn record_packet_of(&self, start: &FlowStart, zone_name: impl Fn(ZoneId) -> String) {
        // Only the sender is recorded: the other endpoint's zone is not
        // named (one allocation less per flow start).
        let sender_zone = if start.sender_initiates {
            start.zones.0
        } else {
            start.zones.1
        };
        let sighting = Sighting::of(start, |zone| {
            if zone == sender_zone {
                zone_name(zone)
            } else {
                String::new()
            }
        });
        if start.sender_initiates {
            self.update(&sighting.client, &sighting, true);
        } else {
            self.update(&sighting.server, &sighting, false);
        }
        if start.first {
            let other = if start.sender_initiates {
                &sighting.server
            } else {
                &sighting.client
            };
            if is_device_address(other.ipv6, other.addr) {
                // The receiver lives as long as the inventory.
                let _ = self.pending.send((other.ipv6, other.addr));
            }
        }
    }

    fn update(&self, endpoint: &Endpoint, sighting: &Sighting, as_client: bool) {
        if !is_device_address(endpoint.ipv6, endpoint.addr) {
            return;
        }
        let key = (endpoint.ipv6, endpoint.addr);
        // The devices whose MAC became a router's with this sighting: their
        // vendor, and so their class, change.
        let mut now_shared = Vec::new();
        if let Some(mac) = endpoint.mac {
            let mut users = self.mac_users.entry(mac).or_default();
            let before = users.len();
            let moved = match users.iter_mut().find(|(_, d)| *d == key) {
                Some(entry) if sighting.position < entry.0 => {
                    entry.0 = sighting.position;
                    true
                }
                Some(_) => false,
                None => {
                    users.push((sighting.position, key));
                    true
                }
            };
            // Most sightings are of a device already listed, no earlier.
            if moved {
                users.sort_unstable();
                users.truncate(SHARED_MAC_DEVICES);
            }
            if before < SHARED_MAC_DEVICES && users.len() >= SHARED_MAC_DEVICES {
                now_shared.extend(users.iter().map(|(_, d)| *d));
            }
        }
        {
            let mut device = match self.devices.get_mut(&key) {
                Some(device) => device,
                // Past the capacity until the next settle evicts: a new
                // device is never refused.
                None => self.devices.entry(key).or_default(),
            };
            if device.saw(endpoint, sighting, as_client) {
                self.recount(&mut device);
            }
        }
        for other in now_shared {
            if let Some(mut device) = self.devices.get_mut(&other) {
                self.recount(&mut device);
            }
        }
    }

    /// True when `mac` is a router's: seen for [`SHARED_MAC_DEVICES`]
    /// devices or more.
    fn mac_shared(&self, mac: &[u8; 6]) -> bool {
        self.mac_users
            .get(mac)
            .is_some_and(|users| users.len() >= SHARED_MAC_DEVICES)
    }

    /// The vendor of a device's own MACs (not a router's), whether one of
    /// them is randomised, and whether all of them are a router's.
    fn vendor_of(&self, macs: &BTreeMap<[u8; 6], u64>) -> (Option<String>, bool, bool) {
        let own_macs: Vec<&[u8; 6]> = macs.keys().filter(|mac| !self.mac_shared(mac)).collect();
        let mac_shared = !macs.is_empty() && own_macs.is_empty();
        let mut vendor = None;
        let mut mac_randomized = false;
        for mac in &own_macs {
            match self.registry.lookup(**mac) {
                VendorMatch::Vendor(name) => {
                    vendor.get_or_insert_with(|| name.to_string());
                }
                VendorMatch::LocallyAdministered => mac_randomized = true,
                VendorMatch::Unknown => {}
            }
        }
        (vendor, mac_randomized, mac_shared)
    }

    /// The vendor [`Inventory::vendor_of`] names, borrowed from the
    /// registry.
    fn vendor_name(&self, macs: &BTreeMap<[u8; 6], u64>) -> Option<&str> {
        macs.keys()
            .filter(|mac| !self.mac_shared(mac))
            .find_map(|mac| match self.registry.lookup(*mac) {
                VendorMatch::Vendor(name) => Some(name),
                _ => None,
            })
    }

    /// A device's class from everything known of it.
    fn class_of(&self, device: &Device) -> (Option<&str>, DeviceClass) {
        let vendor = self.vendor_name(&device.macs);
        let class = device.class_as_of(vendor, u64::MAX);
        (vendor, class)
    }

    /// Counts a device under its zone and class as they are now (after a
    /// change of what they are inferred from).
    fn recount(&self, device: &mut Device) {
        let (vendor, class) = self.class_of(device);
        device.has_vendor = vendor.is_some();
        if let Some((zone, counted)) = &device.counted
            && *counted == class
            && device.zone_label_is(zone)
        {
            return;
        }
        let now = (device.zone_label(), class);
        if let Some(before) = device.counted.take() {
            self.uncount(&before);
        }
        *self.counts.entry(now.clone()).or_insert(0) += 1;
        device.counted = Some(now);
    }

    /// Takes a device out of the counts.
    fn uncount(&self, counted: &(String, DeviceClass)) {
        if let Some(mut count) = self.counts.get_mut(counted) {
            *count = count.saturating_sub(1);
        }
        self.counts.remove_if(counted, |_, count| *count == 0);
    }

    /// Every device, sorted by address, with vendor and class.
    pub fn report(&self) -> Vec<DeviceReport> {
        let mut devices: Vec<((bool, u128), Device)> = self
            .devices
            .iter()
            .map(|entry| (*entry.key(), entry.value().clone()))
            .collect();
        devices.sort_by_key(|(key, _)| *key);
        self.reports_of(devices)
    }

    /// Every device, sorted by address, as evidence reports take it: the
    /// same zone, vendor, class and hostname as [`Inventory::report`], read
    /// in place (no device is copied, and its class is the one it is
    /// counted under, kept current as it changes, rather than inferred
    /// again).
    pub fn summaries(&self) -> Vec<DeviceSummary> {
        let mut summaries: Vec<DeviceSummary> = self
            .devices
            .iter()
            .map(|entry| {
                let (ipv6, addr) = *entry.key();
                let device = entry.value();
                let (vendor, _, _) = self.vendor_of(&device.macs);
                let (zone, class) = match &device.counted {
                    Some((zone, class)) => (zone.clone(), *class),
                    None => (device.zone_label(), self.class_of(device).1),
                };
                DeviceSummary {
                    ip: ip(ipv6, addr),
                    zone,
                    vendor,
                    class,
                    dhcp_hostname: self.hostname_as_of(
                        ipv6,
                        addr,
                        &device.dhcp_hostnames,
                        u64::MAX,
                    ),
                    first_ns: device.first_ns,
                    last_ns: device.last_ns,
                }
            })
            .collect();
        summaries.sort_unstable_by_key(|d| d.ip);
        summaries
    }

    /// One page of [`Inventory::report`]: at most `limit` devices (at least
    /// one) after the address `after` (from the start without it), and the
    /// address to ask the next page after, when there are more. Its cost
    /// grows with the page, and with the devices only to pick the page's
    /// addresses.
    pub fn report_page(
        &self,
        after: Option<IpAddr>,
        limit: usize,
    ) -> (Vec<DeviceReport>, Option<IpAddr>) {
        let limit = limit.max(1);
        let after = after.map(|a| match a {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (true, u128::from(v6)),
        });
        let mut keys: Vec<DeviceKey> = self
            .devices
            .iter()
            .map(|entry| *entry.key())
            .filter(|key| after.is_none_or(|a| *key > a))
            .collect();
        let more = keys.len() > limit;
        if more {
            keys.select_nth_unstable(limit);
            keys.truncate(limit);
        }
        keys.sort_unstable();
        let devices: Vec<(DeviceKey, Device)> = keys
            .iter()
            .filter_map(|key| Some((*key, self.devices.get(key)?.clone())))
            .collect();
        let next = more
            .then(|| keys.last().map(|(ipv6, addr)| ip(*ipv6, *addr)))
            .flatten();
        (self.reports_of(devices), next)
    }

    /// The reports of `devices`, in their order.
    fn reports_of(&self, devices: Vec<(DeviceKey, Device)>) -> Vec<DeviceReport> {
        devices
            .into_iter()
            .map(|((ipv6, addr), device)| {
                let (vendor, mac_randomized, mac_shared) = self.vendor_of(&device.macs);
                let client_services = services_before(&device.client_services, u64::MAX);
                let server_services = services_before(&device.server_services, u64::MAX);
                let client_apps = apps_before(&device.client_apps, u64::MAX);
                let server_apps = apps_before(&device.server_apps, u64::MAX);
                let (class, evidence) = classify(
                    vendor.as_deref(),
                    &client_services,
                    &server_services,
                    (&client_apps, &server_apps),
                );
                let dhcp_hostname =
                    self.hostname_as_of(ipv6, addr, &device.dhcp_hostnames, u64::MAX);
                DeviceReport {
                    ip: ip(ipv6, addr),
                    macs: device.macs.keys().map(mac_text).collect(),
                    vendor,
                    mac_randomized,
                    mac_shared,
                    vlans: device.vlans.iter().copied().collect(),
                    zone: device.zone_label(),
                    class,
                    evidence,
                    client_services: services_text(&client_services),
                    server_services: services_text(&server_services),
                    flows_as_client: device.flows_as_client,
                    flows_as_server: device.flows_as_server,
                    client_apps: client_apps.into_iter().collect(),
                    server_apps: server_apps.into_iter().collect(),
                    ae_titles: device.ae_titles.iter().cloned().collect(),
                    hl7_applications: device.hl7_applications.iter().cloned().collect(),
                    dhcp_hostname,
                    dhcp_vendor_class: device.dhcp_vendor_class.clone(),
                    dhcp_fingerprint: device.dhcp_fingerprint.clone(),
                    first_seen: rfc3339_micros(device.first_ns),
                    last_seen: rfc3339_micros(device.last_ns),
                }
            })
            .collect()
    }

    /// Devices by (zone, class), for the `segwatch_devices` gauge: kept as
    /// devices come, change and go, so this costs as many steps as there
    /// are (zone, class) pairs, not devices.
    pub fn counts(&self) -> BTreeMap<(String, DeviceClass), u64> {
        self.counts
            .iter()
            .filter(|entry| *entry.value() > 0)
            .map(|entry| (entry.key().clone(), *entry.value()))
            .collect()
    }
}

/// 0.0.0.0 (a DHCP client without a lease) and the broadcast address are no
/// devices, even when a zone claims them.
fn is_device_address(ipv6: bool, addr: u128) -> bool {
    ipv6 || (addr != 0 && addr != u128::from(u32::MAX))
}

/// The inventory as JSON: `{"devices": [...], "vendor_registry": ...,
/// "overflow": N}`, `overflow` counting the devices evicted to keep the
/// bound, then `"unanswered": N` (see [`Inventory::unanswered`]) when some
/// flow went unanswered.
pub fn to_json(inventory: &Inventory) -> String {
    #[derive(Serialize)]
    struct Document {
        devices: Vec<DeviceReport>,
        vendor_registry: String,
        overflow: u64,
        #[serde(skip_serializing_if = "is_zero")]
        unanswered: u64,
    }
    fn is_zero(n: &u64) -> bool {
        *n == 0
    }
    let vendor_registry = registry_name(inventory);
    let document = Document {
        devices: inventory.report(),
        vendor_registry,
        overflow: inventory.evicted(),
        unanswered: inventory.unanswered(),
    };
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// One page of the inventory as JSON (the daemon's `/api/v1/devices`):
/// `{"devices": [...], "vendor_registry": ..., "overflow": N}` as
/// [`to_json`], then `"next": "IP"`, the address to ask the next page after,
/// when there are more devices.
pub fn page_to_json(inventory: &Inventory, after: Option<IpAddr>, limit: usize) -> String {
    #[derive(Serialize)]
    struct Page {
        devices: Vec<DeviceReport>,
        vendor_registry: String,
        overflow: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<IpAddr>,
    }
    let (devices, next) = inventory.report_page(after, limit);
    let page = Page {
        devices,
        vendor_registry: registry_name(inventory),
        overflow: inventory.evicted(),
        next,
    };
    serde_json::to_string(&page).unwrap_or_default()
}

fn registry_name(inventory: &Inventory) -> String {
    match inventory.registry().source() {
        RegistrySource::IeeeData(path) | RegistrySource::Wireshark(path) => {
            path.display().to_string()
        }
        RegistrySource::BuiltIn => "built-in medical vendors".into(),
    }
}

/// The inventory as CSV, one device per row; lists are `;`-separated.
pub fn to_csv(inventory: &Inventory) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "ip",
        "macs",
        "vendor",
        "mac_randomized",
        "mac_shared",
        "vlans",
        "zone",
        "class",
        "evidence",
        "client_services",
        "server_services",
        "flows_as_client",
        "flows_as_server",
        "client_apps",
        "server_apps",
        "ae_titles",
        "hl7_applications",
        "dhcp_hostname",
        "dhcp_vendor_class",
        "dhcp_fingerprint",
        "first_seen",
        "last_seen",
    ])?;
    for d in inventory.report() {
        let vlans: Vec<String> = d.vlans.iter().map(u16::to_string).collect();
        writer.write_record([
            d.ip.to_string(),
            d.macs.join(";"),
            d.vendor.unwrap_or_default(),
            d.mac_randomized.to_string(),
            d.mac_shared.to_string(),
            vlans.join(";"),
            d.zone,
            d.class.as_str().to_string(),
            d.evidence.join("; "),
            d.client_services.join(";"),
            d.server_services.join(";"),
            d.flows_as_client.to_string(),
            d.flows_as_server.to_string(),
            d.client_apps.join(";"),
            d.server_apps.join(";"),
            d.ae_titles.join(";"),
            d.hl7_applications.join(";"),
            d.dhcp_hostname.unwrap_or_default(),
            d.dhcp_vendor_class.unwrap_or_default(),
            d.dhcp_fingerprint.unwrap_or_default(),
            d.first_seen,
            d.last_seen,
        ])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(addr: u32, mac: [u8; 6], zone: &str) -> Endpoint {
        Endpoint {
            ipv6: false,
            addr: u128::from(addr),
            mac: Some(mac),
            zone: zone.into(),
        }
    }

    fn sighting(ts: u64, client: Endpoint, server: Endpoint, service: &str) -> Sighting {
        Sighting {
            position: ts,
            ts_ns: ts,
            client,
            server,
            service: service.into(),
            vlan: 20,
        }
    }

    fn built_in() -> Arc<OuiRegistry> {
        Arc::new(OuiRegistry::load_from(
            std::path::Path::new("/nonexistent"),
            std::path::Path::new("/nonexistent"),
        ))
    }

    const BRAUN: [u8; 6] = [0x00, 0x12, 0x21, 1, 2, 3];
    const SERVER: [u8; 6] = [0x00, 0x00, 0x5e, 0, 0, 9];

    /// The device a record sees is the one the frames before its position
    /// establish, whatever order the sightings were merged in.
    #[test]
    fn device_as_of_a_position_sees_only_what_came_before() {
        let pump = || endpoint(0x0a14_0107, BRAUN, "pumps");
        let server = || endpoint(0x0a14_080a, SERVER, "pump-server");
        let inventory = Inventory::new(10, built_in());
        // Merged out of order: the later sighting first.
        inventory.record(&sighting(20, pump(), server(), "tcp/8443"));
        inventory.record(&sighting(10, pump(), server(), "tcp/443"));
        assert_eq!(inventory.device_as_of(false, 0x0a14_0107, 10), None);
        let at_11 = inventory.device_as_of(false, 0x0a14_0107, 11).unwrap();
        assert_eq!(at_11.vendor.as_deref(), Some("B. Braun Melsungen"));
        let at_end = inventory
            .device_as_of(false, 0x0a14_0107, u64::MAX)
            .unwrap();
        assert_eq!(
            at_end.class.as_deref(),
            Some(DeviceClass::InfusionPump.as_str())
        );
        // The same MAC for a fourth device makes it a router's from then on.
        for (i, position) in [(1u32, 30u64), (2, 31), (3, 32)] {
            let other = endpoint(0x0a14_0200 + i, BRAUN, "pumps");
            inventory.record(&sighting(position, other, server(), "tcp/443"));
        }
        let before = inventory.device_as_of(false, 0x0a14_0107, 32).unwrap();
        assert_eq!(before.vendor.as_deref(), Some("B. Braun Melsungen"));
        let after = inventory.device_as_of(false, 0x0a14_0107, 33);
        assert_eq!(after.and_then(|d| d.vendor), None);
    }

    fn dhcp(
        position: u64,
        kind: crate::app::dhcp::DhcpMessageType,
        leased: Option<u32>,
        hostname: Option<&str>,
        client: u128,
        server: u128,
    ) -> AppIdentified {
        AppIdentified {
            position,
            ipv6: false,
            client,
            server,
            detection: crate::app::Detection {
                info: crate::app::AppInfo::Dhcp(crate::app::DhcpInfo {
                    request: leased.is_none(),
                    message_type: Some(kind),
                    client_mac: Some(BRAUN),
                    leased_address: leased,
                    hostname: hostname.map(str::to_owned),
                    vendor_class: None,
                    parameter_request_list: None,
                    client_id: None,
                    options_truncated: false,
                }),
                reply_pending: false,
            },
        }
    }

    /// A DHCP request from 0.0.0.0 names its MAC; the ACK's yiaddr leases
    /// the address to that MAC: the hostname lands on the leased address,
    /// and neither 0.0.0.0 nor the broadcast address becomes a device.
    #[test]
    fn dhcp_hostnames_land_on_the_leased_address() {
        use crate::app::dhcp::DhcpMessageType::{Ack, Request};
        let inventory = Inventory::new(10, built_in());
        let leased = 0x0a14_0107u32;
        inventory.record(&sighting(
            5,
            endpoint(0, BRAUN, "any"),
            endpoint(0xffff_ffff, SERVER, "any"),
            "udp/67",
        ));
        inventory.record_app(&dhcp(5, Request, None, Some("pump-17"), 0, 0xffff_ffff));
        inventory.record_app(&dhcp(6, Ack, Some(leased), None, 0x0a14_0001, 0xffff_ffff));
        inventory.record(&sighting(
            7,
            endpoint(leased, BRAUN, "pumps"),
            endpoint(0x0a14_080a, SERVER, "pump-server"),
            "tcp/443",
        ));
        let report = inventory.report();
        assert!(
            report
                .iter()
                .all(|d| !["0.0.0.0", "255.255.255.255"].contains(&d.ip.to_string().as_str())),
            "{report:?}"
        );
        let device = report
            .iter()
            .find(|d| d.ip.to_string() == "10.20.1.7")
            .unwrap();
        assert_eq!(device.dhcp_hostname.as_deref(), Some("pump-17"));
        let at = |p| {
            inventory
                .device_as_of(false, u128::from(leased), p)
                .and_then(|d| d.hostname)
        };
        assert_eq!(at(8).as_deref(), Some("pump-17"));
        assert_eq!(at(7), None);
    }

    #[test]
    fn merges_sightings_in_any_order_into_the_same_report() {
        let pump = || endpoint(0x0a14_0107, BRAUN, "pumps");
        let server = || endpoint(0x0a14_080a, SERVER, "pump-server");
        let sightings = [
            sighting(3_000_000_000, pump(), server(), "tcp/443"),
            sighting(1_000_000_000, pump(), server(), "tcp/443"),
            sighting(2_000_000_000, pump(), server(), "tcp/8443"),
        ];
        let forward = Inventory::new(10, built_in());
        let backward = Inventory::new(10, built_in());
        for s in &sightings {
            forward.record(s);
        }
        for s in sightings.iter().rev() {
            backward.record(s);
        }
        assert_eq!(forward.report(), backward.report());
        let report = forward.report();
        assert_eq!(report.len(), 2);
        let pump = &report[0];
        assert_eq!(pump.ip.to_string(), "10.20.1.7");
        assert_eq!(pump.vendor.as_deref(), Some("B. Braun Melsungen"));
        assert_eq!(pump.class, DeviceClass::InfusionPump);
        assert_eq!(
            pump.client_services,
            ["tcp/443 (2 flows)", "tcp/8443 (1 flow)"]
        );
        assert_eq!(pump.flows_as_client, 3);
        assert_eq!(pump.first_seen, "1970-01-01T00:00:01.000000Z");
        assert_eq!(pump.last_seen, "1970-01-01T00:00:03.000000Z");
        assert_eq!(pump.vlans, [20]);
        assert_eq!(
            report[1].server_services,
            ["tcp/443 (2 flows)", "tcp/8443 (1 flow)"]
        );
    }

    #[test]
    fn a_routers_mac_names_no_vendor_and_a_random_one_is_flagged() {
        let inventory = Inventory::new(100, built_in());
        // Five addresses behind one router MAC (a B. Braun MAC, to show it
        // is not used for a vendor once shared).
        for host in 1..=5u32 {
            inventory.record(&sighting(
                1,
                endpoint(0x0a00_0000 + host, BRAUN, "remote"),
                endpoint(0x0a01_0001, [0x02, 0xaa, 0, 0, 0, 1], "local"),
                "tcp/22",
            ));
        }
        let report = inventory.report();
        let remote = &report[0];
        assert!(remote.mac_shared);
        assert_eq!(remote.vendor, None);
        let local = report.iter().find(|d| d.zone == "local").unwrap();
        assert!(local.mac_randomized);
        assert_eq!(local.flows_as_server, 5);
    }

    #[test]
    fn a_full_inventory_evicts_the_least_evidenced_at_the_settle() {
        let inventory = Inventory::new(3, built_in());
        for host in 0..5u32 {
            inventory.record(&sighting(
                u64::from(host) + 1,
                endpoint(0x0a00_0000 + host, BRAUN, "a"),
                endpoint(0x0b00_0000, SERVER, "b"),
                "udp/53",
            ));
        }
        // Nothing is refused: the bound holds after the settle.
        assert_eq!(inventory.len(), 6);
        assert_eq!(inventory.settle(), 3);
        assert_eq!(inventory.len(), 3);
        assert_eq!(inventory.evicted(), 3);
        // The server (five flows) stays, and the two clients seen last.
        let report = inventory.report();
        let kept: Vec<String> = report.iter().map(|d| d.ip.to_string()).collect();
        assert_eq!(kept, ["10.0.0.3", "10.0.0.4", "11.0.0.0"]);
        assert_eq!(report[2].flows_as_server, 5);
        assert_eq!(inventory.counts().values().sum::<u64>(), 3);
    }

    /// The counts kept as devices come, change and go are the ones the
    /// full report gives: random sightings (MACs from a small pool, so that
    /// some become a router's), applications, zones moving, and settles that
    /// evict.
    #[test]
    fn kept_counts_equal_the_reports_after_random_changes() {
        use crate::app::{AppInfo, Detection, DeviceProtocol};
        let vendor_macs = [
            BRAUN,
            SERVER,
            [0x00, 0x09, 0xfb, 1, 2, 3],
            [0x02, 0, 0, 0, 0, 1],
        ];
        let services = [
            "tcp/104",
            "tcp/443",
            "udp/53",
            "tcp/2575",
            "udp/24005",
            "tcp/3389",
        ];
        let zones = ["pumps", "imaging", "clinical", "guest"];
        let protocols = [
            DeviceProtocol::IntelliVue,
            DeviceProtocol::Astm,
            DeviceProtocol::SdcDiscovery,
        ];
        for seed in 0..8 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let inventory = Inventory::new(40, built_in());
            for step in 0..600u64 {
                let end = |rng: &mut fastrand::Rng| Endpoint {
                    ipv6: false,
                    addr: u128::from(0x0a00_0000 + rng.u32(0..80)),
                    mac: rng.bool().then(|| {
                        let mut mac = vendor_macs[rng.usize(..vendor_macs.len())];
                        mac[5] = rng.u8(0..6);
                        mac
                    }),
                    zone: zones[rng.usize(..zones.len())].into(),
                };
                let (client, server) = (end(&mut rng), end(&mut rng));
                let (client_addr, server_addr) = (client.addr, server.addr);
                let service = services[rng.usize(..services.len())];
                inventory.record(&sighting(step, client, server, service));
                if rng.u8(..8) == 0 {
                    inventory.record_app(&AppIdentified {
                        position: step,
                        ipv6: false,
                        client: client_addr,
                        server: server_addr,
                        detection: Detection {
                            info: AppInfo::Device(protocols[rng.usize(..protocols.len())]),
                            reply_pending: false,
                        },
                    });
                }
                if rng.u8(..16) == 0 {
                    inventory.settle();
                }
                if step % 50 == 0 {
                    let mut from_report: BTreeMap<(String, DeviceClass), u64> = BTreeMap::new();
                    for device in inventory.report() {
                        *from_report.entry((device.zone, device.class)).or_insert(0) += 1;
                    }
                    assert_eq!(inventory.counts(), from_report, "seed {seed} step {step}");
                    // The summaries evidence reports read say what the
                    // full report says.
                    let summaries: Vec<DeviceSummary> = inventory
                        .report()
                        .into_iter()
                        .map(|d| DeviceSummary {
                            ip: d.ip,
                            zone: d.zone,
                            vendor: d.vendor,
                            class: d.class,
                            dhcp_hostname: d.dhcp_hostname,
                            first_ns: crate::event::Timestamp::parse(&d.first_seen).unwrap().0,
                            last_ns: crate::event::Timestamp::parse(&d.last_seen).unwrap().0,
                        })
                        .collect();
                    // (The report's times are in microseconds.)
                    let micros = |ns: u64| ns / 1000 * 1000;
                    let summarised: Vec<DeviceSummary> = inventory
                        .summaries()
                        .into_iter()
                        .map(|d| DeviceSummary {
                            first_ns: micros(d.first_ns),
                            last_ns: micros(d.last_ns),
                            ..d
                        })
                        .collect();
                    assert_eq!(summarised, summaries, "seed {seed} step {step}");
                }
            }
            assert!(
                inventory.evicted() > 0,
                "seed {seed}: no eviction exercised"
            );
        }
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_device() {
        let inventory = Inventory::new(10, built_in());
        inventory.record(&sighting(
            1,
            endpoint(0x0a00_0001, BRAUN, "pumps"),
            endpoint(0x0a00_0002, SERVER, "servers"),
            "tcp/443",
        ));
        let text = String::from_utf8(to_csv(&inventory).unwrap()).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap().get(0), Some("ip"));
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get(2), Some("B. Braun Melsungen"));
        assert_eq!(rows[0].get(7), Some("infusion-pump"));
        let json: serde_json::Value = serde_json::from_str(&to_json(&inventory)).unwrap();
        assert_eq!(json["devices"].as_array().unwrap().len(), 2);
        assert_eq!(json["vendor_registry"], "built-in medical vendors");
    }

    #[test]
    fn labels_built_without_formatting_equal_the_formatted_ones() {
        for n in [0u16, 7, 53, 104, 11112, u16::MAX] {
            assert_eq!(service_label("tcp/", n), format!("tcp/{n}"));
        }
        assert_eq!(service_label("ip/", 47u8), "ip/47");
        for zones in [
            vec!["pumps"],
            vec!["a", "b,c"],
            vec!["icu", "pumps", "ward"],
            vec![],
        ] {
            let device = Device {
                zones: zones.iter().map(|z| (*z).to_owned()).collect(),
                ..Device::default()
            };
            let label = device.zone_label();
            assert_eq!(label, zones.join(","));
            assert!(device.zone_label_is(&label));
            for other in ["", "pumps,", "a,b", "icu,pumps", "a,b,c,", "x"] {
                assert_eq!(device.zone_label_is(other), other == label, "{other:?}");
            }
        }
    }
}
