//! What kind of device an endpoint is, from its vendor and its services,
//! with the evidence. Each clue adds weight to a class; the heaviest wins,
//! ties going to the class listed first (the more specific).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// A device class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// Infusion pump.
    InfusionPump,
    /// Bedside or central patient monitor.
    PatientMonitor,
    /// CT, MR, X-ray, ultrasound: a DICOM client storing images.
    ImagingModality,
    /// Picture archive: a DICOM server.
    Pacs,
    /// Laboratory analyser.
    LabAnalyzer,
    /// EHR, interface engine, RIS/LIS: an HL7 server.
    ClinicalApp,
    /// DNS, DHCP, NTP, syslog servers.
    Infrastructure,
    /// A user's computer: remote desktop, file shares, the web.
    Workstation,
    /// Not enough evidence.
    Unknown,
}

impl DeviceClass {
    /// Every class, in tie-break order.
    pub const ALL: [DeviceClass; 9] = [
        DeviceClass::InfusionPump,
        DeviceClass::PatientMonitor,
        DeviceClass::ImagingModality,
        DeviceClass::Pacs,
        DeviceClass::LabAnalyzer,
        DeviceClass::ClinicalApp,
        DeviceClass::Infrastructure,
        DeviceClass::Workstation,
        DeviceClass::Unknown,
    ];

    /// The name in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::InfusionPump => "infusion-pump",
            DeviceClass::PatientMonitor => "patient-monitor",
            DeviceClass::ImagingModality => "imaging-modality",
            DeviceClass::Pacs => "pacs",
            DeviceClass::LabAnalyzer => "lab-analyzer",
            DeviceClass::ClinicalApp => "clinical-app",
            DeviceClass::Infrastructure => "infrastructure",
            DeviceClass::Workstation => "workstation",
            DeviceClass::Unknown => "unknown",
        }
    }
}

/// Vendors (words of the registry's names, lowercase) and the class their
/// devices usually are, from `iomt.md` section D. Radio modules and
/// multi-line makers (Philips, GE, Siemens) only count for their medical
/// divisions.
const VENDOR_CLASSES: &[(&str, DeviceClass)] = &[
    ("alaris", DeviceClass::InfusionPump),
    ("carefusion", DeviceClass::InfusionPump),
    ("icu medical", DeviceClass::InfusionPump),
    ("hospira", DeviceClass::InfusionPump),
    ("smiths medical", DeviceClass::InfusionPump),
    ("b. braun", DeviceClass::InfusionPump),
    ("b.braun", DeviceClass::InfusionPump),
    ("baxter", DeviceClass::InfusionPump),
    ("fresenius", DeviceClass::InfusionPump),
    ("philips medical", DeviceClass::PatientMonitor),
    ("philips healthcare", DeviceClass::PatientMonitor),
    ("datex", DeviceClass::PatientMonitor),
    ("ge medical", DeviceClass::PatientMonitor),
    ("ge healthcare", DeviceClass::PatientMonitor),
    ("draeger", DeviceClass::PatientMonitor),
    ("dräger", DeviceClass::PatientMonitor),
    ("drager", DeviceClass::PatientMonitor),
    ("nihon kohden", DeviceClass::PatientMonitor),
    ("spacelabs", DeviceClass::PatientMonitor),
    ("mindray", DeviceClass::PatientMonitor),
    ("masimo", DeviceClass::PatientMonitor),
    ("welch allyn", DeviceClass::PatientMonitor),
    ("nonin", DeviceClass::PatientMonitor),
    ("siemens healthcare", DeviceClass::ImagingModality),
    ("siemens healthineers", DeviceClass::ImagingModality),
    ("fujifilm", DeviceClass::ImagingModality),
    ("carestream", DeviceClass::ImagingModality),
    ("agfa", DeviceClass::ImagingModality),
    ("varian", DeviceClass::ImagingModality),
    ("canon medical", DeviceClass::ImagingModality),
    ("roche", DeviceClass::LabAnalyzer),
    ("abbott", DeviceClass::LabAnalyzer),
    ("beckman coulter", DeviceClass::LabAnalyzer),
    ("sysmex", DeviceClass::LabAnalyzer),
];

/// Ports of clinical and infrastructure protocols (`iomt.md` section A).
fn port_clue(service: &str, as_server: bool) -> Option<(DeviceClass, u32, &'static str)> {
    let (proto, port) = service.split_once('/')?;
    let port: u16 = port.parse().ok()?;
    use DeviceClass::*;
    let clue = match (proto, port, as_server) {
        ("tcp", 104 | 11112 | 2761 | 2762 | 4242, true) => (Pacs, 3, "DICOM server"),
        ("tcp", 104 | 11112 | 2761 | 2762 | 4242, false) => (ImagingModality, 2, "DICOM client"),
        ("tcp", 2575 | 6660..=6669, true) => (ClinicalApp, 3, "HL7 server"),
        ("tcp", 2575 | 6660..=6669, false) => (ClinicalApp, 1, "HL7 sender"),
        ("udp", 24005 | 24105, _) => (PatientMonitor, 3, "Philips IntelliVue data export"),
        ("udp" | "tcp", 3702, _) => (PatientMonitor, 1, "SDC / WS-Discovery"),
        ("udp", 53 | 67 | 123, true) | ("tcp", 53, true) => (Infrastructure, 3, "network service"),
        ("udp" | "tcp", 514, true) | ("tcp", 6514, true) => (Infrastructure, 2, "syslog server"),
        ("tcp", 3389 | 445 | 139, false) => (Workstation, 1, "remote desktop or file share client"),
        ("tcp", 80 | 443 | 8080, false) => (Workstation, 1, "web client"),
        _ => return None,
    };
    Some(clue)
}

/// The class of a device with this vendor and these services (label ->
/// flows), and the evidence.
pub fn classify(
    vendor: Option<&str>,
    client_services: &BTreeMap<String, u64>,
    server_services: &BTreeMap<String, u64>,
    (client_apps, server_apps): (&BTreeSet<String>, &BTreeSet<String>),
) -> (DeviceClass, Vec<String>) {
    let mut evidence = Vec::new();
    let class = class_from(
        vendor,
        (
            client_services.iter().map(|(s, n)| (s.as_str(), *n)),
            server_services.iter().map(|(s, n)| (s.as_str(), *n)),
        ),
        (
            client_apps.iter().map(String::as_str),
            server_apps.iter().map(String::as_str),
        ),
        Some(&mut evidence),
    );
    (class, evidence)
}

/// [`classify`] over borrowed services (label, flows) and applications,
/// writing the evidence only when asked for it: the inventory classifies a
/// device again at each change of what its class is inferred from, and
/// wants only the class then.
pub(crate) fn class_from<'a>(
    vendor: Option<&str>,
    (client_services, server_services): (
        impl Iterator<Item = (&'a str, u64)>,
        impl Iterator<Item = (&'a str, u64)>,
    ),
    (client_apps, server_apps): (impl Iterator<Item = &'a str>, impl Iterator<Item = &'a str>),
    mut evidence: Option<&mut Vec<String>>,
) -> DeviceClass {
    // Scores in DeviceClass::ALL order.
    let mut scores = [0u32; DeviceClass::ALL.len()];
    let slot = |class: DeviceClass| {
        DeviceClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0)
    };
    if let Some(vendor) = vendor {
        let lower = vendor.to_lowercase();
        if let Some((word, class)) = VENDOR_CLASSES.iter().find(|(w, _)| lower.contains(w)) {
            scores[slot(*class)] += 2;
            if let Some(evidence) = evidence.as_deref_mut() {
                evidence.push(format!(
                    "vendor {vendor} (\"{word}\" makes {})",
                    class.as_str()
                ));
            }
        }
    }
    let mut port_clues = |service: &str, flows: u64, as_server: bool| {
        if let Some((class, weight, what)) = port_clue(service, as_server) {
            // Workstation clues are weak and common: one vote however
            // many web flows there are.
            scores[slot(class)] += weight;
            if let Some(evidence) = evidence.as_deref_mut() {
                evidence.push(format!(
                    "{what} on {service} ({flows} flow{})",
                    if flows == 1 { "" } else { "s" }
                ));
            }
        }
    };
    for (service, flows) in client_services {
        port_clues(service, flows, false);
    }
    for (service, flows) in server_services {
        port_clues(service, flows, true);
    }
    // Applications identified by content outweigh ports.
    let mut app_clues = |app: &str, as_server: bool| {
        use DeviceClass::*;
        let clue = match (app, as_server) {
            ("dicom", true) => Some((Pacs, 4, "speaks DICOM as a server")),
            ("dicom", false) => Some((ImagingModality, 3, "speaks DICOM as a client")),
            ("hl7", true) => Some((ClinicalApp, 4, "receives HL7")),
            ("hl7", false) => Some((ClinicalApp, 1, "sends HL7")),
            ("intellivue", _) => Some((PatientMonitor, 4, "speaks Philips IntelliVue")),
            ("sdc_discovery", _) => Some((PatientMonitor, 2, "announces an SDC medical device")),
            ("ge_unity_time_sync", _) => Some((PatientMonitor, 3, "speaks GE Unity")),
            ("astm", _) => Some((LabAnalyzer, 4, "speaks ASTM E1381/E1394")),
            ("poct1a", _) => Some((LabAnalyzer, 4, "speaks POCT1-A")),
            _ => None,
        };
        if let Some((class, weight, what)) = clue {
            scores[slot(class)] += weight;
            if let Some(evidence) = evidence.as_deref_mut() {
                evidence.push(what.to_string());
            }
        }
    };
    for app in client_apps {
        app_clues(app, false);
    }
    for app in server_apps {
        app_clues(app, true);
    }
    DeviceClass::ALL
        .iter()
        .copied()
        .zip(scores)
        .filter(|(_, score)| *score > 0)
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb)
                // Equal scores: the class listed first wins.
                .then(b.cmp(a))
        })
        .map_or(DeviceClass::Unknown, |(class, _)| class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_apps() -> (&'static BTreeSet<String>, &'static BTreeSet<String>) {
        static EMPTY: BTreeSet<String> = BTreeSet::new();
        (&EMPTY, &EMPTY)
    }

    fn services(list: &[(&str, u64)]) -> BTreeMap<String, u64> {
        list.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn services_and_vendors_give_classes_with_evidence() {
        let none = BTreeMap::new();
        let (class, evidence) = classify(None, &none, &services(&[("tcp/104", 12)]), no_apps());
        assert_eq!(class, DeviceClass::Pacs);
        assert_eq!(evidence, ["DICOM server on tcp/104 (12 flows)"]);

        let (class, _) = classify(None, &services(&[("tcp/11112", 3)]), &none, no_apps());
        assert_eq!(class, DeviceClass::ImagingModality);

        let (class, evidence) = classify(
            Some("B. Braun Melsungen AG"),
            &services(&[("tcp/443", 40)]),
            &none,
            no_apps(),
        );
        assert_eq!(class, DeviceClass::InfusionPump, "{evidence:?}");
        assert_eq!(evidence.len(), 2);

        let (class, _) = classify(None, &services(&[("udp/24105", 1)]), &none, no_apps());
        assert_eq!(class, DeviceClass::PatientMonitor);
        let (class, _) = classify(
            None,
            &none,
            &services(&[("udp/53", 9), ("udp/123", 2)]),
            no_apps(),
        );
        assert_eq!(class, DeviceClass::Infrastructure);
        let (class, _) = classify(
            None,
            &services(&[("tcp/3389", 1), ("tcp/443", 5)]),
            &none,
            no_apps(),
        );
        assert_eq!(class, DeviceClass::Workstation);
        let (class, evidence) = classify(
            Some("Acme Widgets"),
            &services(&[("tcp/22", 1)]),
            &none,
            no_apps(),
        );
        assert_eq!((class, evidence.len()), (DeviceClass::Unknown, 0));
    }
}
