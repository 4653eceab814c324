//! Application detection (`segwatch::app`) on real captures, on canary
//! messages carrying made-up patient data, and on the fuzz corpora.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use segwatch::app::{self, AppInfo, Detection, FlowPorts, Progress};
use segwatch::capture::CaptureFile;
use segwatch::wire::{Headers, Outcome, Transport, tcp_flags};

use crate::common::{root, shared_pcaps};

/// One flow of a capture, with its payloads in capture order.
struct Flow {
    transport: Transport,
    ports: FlowPorts,
    /// Each payload-carrying packet: true when the client sent it.
    payloads: Vec<(bool, Vec<u8>)>,
}

impl Flow {
    fn bytes_from(&self, client: bool) -> Vec<u8> {
        self.payloads
            .iter()
            .filter(|(from_client, _)| *from_client == client)
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    }

    /// Detection as the tracker will run it: after each payload-carrying
    /// segment, on what each direction has accumulated, until an answer.
    /// Returns the answer and how many calls it took.
    fn detect_as_a_tracker(&self) -> (Progress<Detection>, usize) {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        let mut calls = 0;
        for (from_client, bytes) in &self.payloads {
            if *from_client {
                client.extend_from_slice(bytes);
            } else {
                server.extend_from_slice(bytes);
            }
            calls += 1;
            match app::detect(self.transport, self.ports, &client, &server) {
                Progress::NeedMore => {}
                answer => return (answer, calls),
            }
        }
        (Progress::NeedMore, calls)
    }

    /// Detection on everything the flow carried.
    fn detect_whole(&self) -> Progress<Detection> {
        app::detect(
            self.transport,
            self.ports,
            &self.bytes_from(true),
            &self.bytes_from(false),
        )
    }

    /// Detection on each datagram alone (UDP).
    fn detect_datagrams(&self) -> Vec<Progress<Detection>> {
        self.payloads
            .iter()
            .map(|(from_client, bytes)| {
                let (client, server): (&[u8], &[u8]) = if *from_client {
                    (bytes, b"")
                } else {
                    (b"", bytes)
                };
                app::detect(self.transport, self.ports, client, server)
            })
            .collect()
    }
}

/// An address and a port.
type Endpoint = (u128, u16);

/// The TCP and UDP flows of a capture, in order of first packet. The client
/// is the sender of the first packet, unless that is a SYN-ACK.
fn flows_of(path: &Path) -> Vec<Flow> {
    let capture = CaptureFile::open(path).unwrap();
    let mut flows: Vec<Flow> = Vec::new();
    // (protocol, lower endpoint, higher endpoint) -> (flow slot, client)
    let mut index: HashMap<(u8, Endpoint, Endpoint), (usize, Endpoint)> = HashMap::new();
    let mut headers = Headers::default();
    for frame in capture.reader() {
        let frame = frame.unwrap();
        if frame.decode(&mut headers) != Outcome::Judge
            || !matches!(headers.transport, Transport::Tcp | Transport::Udp)
        {
            continue;
        }
        let src = (headers.src, headers.src_port);
        let dst = (headers.dst, headers.dst_port);
        let key = (headers.protocol, src.min(dst), src.max(dst));
        let (slot, client) = *index.entry(key).or_insert_with(|| {
            let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
            let reply_first =
                headers.transport == Transport::Tcp && headers.tcp_flags & syn_ack == syn_ack;
            let (client, server) = if reply_first { (dst, src) } else { (src, dst) };
            flows.push(Flow {
                transport: headers.transport,
                ports: FlowPorts {
                    client: client.1,
                    server: server.1,
                },
                payloads: Vec::new(),
            });
            (flows.len() - 1, client)
        });
        let start = headers.payload_offset as usize;
        let payload = &frame.data[start..start + headers.payload_len as usize];
        if !payload.is_empty() {
            flows[slot].payloads.push((src == client, payload.to_vec()));
        }
    }
    flows
}

fn shared(relative: &str) -> Option<PathBuf> {
    let Some(dir) = shared_pcaps() else {
        eprintln!("note: ../shared/pcaps is absent; skipping the real-capture app tests");
        return None;
    };
    Some(dir.join(relative))
}

fn done(progress: Progress<Detection>) -> Detection {
    match progress {
        Progress::Done(detection) => detection,
        other => panic!("expected a detection, got {other:?}"),
    }
}

fn hl7_of(detection: &Detection) -> &app::Hl7Info {
    match &detection.info {
        AppInfo::Hl7(info) => info,
        other => panic!("expected HL7, got {other:?}"),
    }
}

fn dicom_of(detection: &Detection) -> &app::DicomInfo {
    match &detection.info {
        AppInfo::Dicom(info) => info,
        other => panic!("expected DICOM, got {other:?}"),
    }
}

fn tls_of(detection: &Detection) -> &app::TlsInfo {
    match &detection.info {
        AppInfo::Tls(info) => info,
        other => panic!("expected TLS, got {other:?}"),
    }
}

fn http_of(detection: &Detection) -> &app::HttpInfo {
    match &detection.info {
        AppInfo::Http(info) => info,
        other => panic!("expected HTTP, got {other:?}"),
    }
}

fn dhcp_of(detection: &Detection) -> &app::DhcpInfo {
    match &detection.info {
        AppInfo::Dhcp(info) => info,
        other => panic!("expected DHCP, got {other:?}"),
    }
}

#[test]
fn hl7_captures_give_msh_fields_and_the_ack() {
    const TAPIRX_ADT: [&str; 4] = [
        "SENDING_APPLICATION",
        "SENDING_FACILITY",
        "RECEIVING_APPLICATION",
        "RECEIVING_FACILITY",
    ];
    const TAPIRX_ORDERS: [&str; 4] = ["SendingApp", "SendingFac", "ReceivingApp", "ReceivingFac"];
    let cases = [
        ("tapirx/HL7-ADT.pcap", TAPIRX_ADT, "ADT^A01"),
        ("tapirx/HL7-ADT-UDI-OBX.pcap", TAPIRX_ADT, "ADT^A01"),
        ("tapirx/HL7-ADT-UDI-PRT.pcap", TAPIRX_ADT, "ADT^A01"),
        ("nDPI/hl7.pcap", TAPIRX_ADT, "ADT^A01"),
        ("tapirx/HL7-ORM.pcap", TAPIRX_ORDERS, "ORM^O01"),
        // The ORU^R01 spans two segments; its header is in the first.
        ("tapirx/HL7-ORU.pcap", TAPIRX_ORDERS, "ORU^R01"),
    ];
    for (file, [app, facility, receiving_app, receiving_facility], message_type) in cases {
        let Some(path) = shared(file) else { return };
        let flows = flows_of(&path);
        assert_eq!(flows.len(), 1, "{file}");
        let (first, calls) = flows[0].detect_as_a_tracker();
        let first = done(first);
        assert_eq!(calls, 1, "{file}: identified on the first segment");
        assert!(first.reply_pending, "{file}: the ACK is still to come");
        let request = hl7_of(&first).request().unwrap();
        assert_eq!(request.framing, app::hl7::Framing::Mllp);
        assert_eq!(request.sending_application.as_deref(), Some(app), "{file}");
        assert_eq!(
            request.sending_facility.as_deref(),
            Some(facility),
            "{file}"
        );
        assert_eq!(
            request.receiving_application.as_deref(),
            Some(receiving_app)
        );
        assert_eq!(
            request.receiving_facility.as_deref(),
            Some(receiving_facility)
        );
        assert_eq!(
            request.message_type.as_deref(),
            Some(message_type),
            "{file}"
        );
        assert_eq!(request.version.as_deref(), Some("2.3"), "{file}");
        assert_eq!(request.ack_code, None);

        let whole = done(flows[0].detect_whole());
        assert!(!whole.reply_pending);
        let reply = hl7_of(&whole).reply().unwrap();
        assert_eq!(reply.message_type.as_deref(), Some("ACK"), "{file}");
        assert_eq!(reply.ack_code, Some(app::hl7::AckCode::ApplicationAccept));
        assert_eq!(reply.sending_application.as_deref(), Some(receiving_app));
        assert_eq!(hl7_of(&whole).request(), Some(request), "{file}");
    }
}

#[test]
fn dicom_captures_give_ae_titles_operations_and_implementation() {
    // (file, called AE, calling AE, contexts, operation classes, segments)
    let cases = [
        (
            "tapirx/dicom_arq_1_find_testclient.pcap",
            "testserver",
            "testclient",
            4,
            vec!["query", "worklist"],
            1,
        ),
        (
            "tapirx/dicom_arq_3_find_bogus_local.pcap",
            "bogus_remote",
            "bogus_local",
            4,
            vec!["query", "worklist"],
            1,
        ),
        // One 16,509-byte A-ASSOCIATE-RQ in two segments (16,332 + 177).
        (
            "tapirx/dicom_arq_2_get_testclient.pcap",
            "testserver",
            "testclient",
            123,
            vec!["storage", "retrieve"],
            2,
        ),
        // PROVENANCE.md says "different AE titles"; the bytes say otherwise.
        (
            "tapirx/dicom_arq_4_get_bogus_local.pcap",
            "testserver",
            "testclient",
            123,
            vec!["storage", "retrieve"],
            2,
        ),
    ];
    for (file, called, calling, contexts, operations, segments) in cases {
        let Some(path) = shared(file) else { return };
        let flows = flows_of(&path);
        assert_eq!(flows.len(), 1, "{file}");
        assert_eq!(flows[0].payloads.len(), segments, "{file}");
        let (first, calls) = flows[0].detect_as_a_tracker();
        assert_eq!(
            calls, segments,
            "{file}: NeedMore until the PDU is complete"
        );
        let first = done(first);
        assert!(
            first.reply_pending,
            "{file}: no A-ASSOCIATE-AC in the capture"
        );
        let info = dicom_of(&first);
        assert!(info.server.is_none());
        let rq = info.request().unwrap();
        assert_eq!(
            (rq.called_ae.as_str(), rq.calling_ae.as_str()),
            (called, calling)
        );
        assert_eq!(rq.contexts.len(), contexts, "{file}");
        let names: Vec<_> = rq.operations().iter().map(|c| c.as_str()).collect();
        assert_eq!(names, operations, "{file}");
        assert_eq!(
            rq.implementation_class_uid.as_deref(),
            Some("1.2.826.0.1.3680043.9.7133.1.1")
        );
        assert_eq!(
            rq.implementation_version_name.as_deref(),
            Some("GODICOM_1_1")
        );
        assert!(!rq.truncated);
        let ids: Vec<u8> = rq.contexts.iter().take(4).map(|c| c.id).collect();
        assert_eq!(ids, [1, 3, 5, 7]);
    }
}

#[test]
fn dhcp_captures_give_fingerprint_fields() {
    let Some(path) = shared("zeek/dhcp_dhcp_discover_param_req_and_client_id.pcap") else {
        return;
    };
    let flows = flows_of(&path);
    let discover = done(flows[0].detect_datagrams().remove(0));
    let info = dhcp_of(&discover);
    assert!(info.request);
    assert_eq!(
        info.message_type,
        Some(app::dhcp::DhcpMessageType::Discover)
    );
    assert_eq!(
        info.client_mac_string().as_deref(),
        Some("00:0b:82:01:fc:42")
    );
    assert_eq!(info.hostname.as_deref(), Some("test0000"));
    assert_eq!(info.parameter_request_list.as_deref(), Some("1,3,6,42"));
    assert_eq!(info.client_id.as_deref(), Some("01000b8201fc42"));
    assert_eq!(info.vendor_class, None);

    let Some(path) = shared("zeek/dhcp_dhcp.pcap") else {
        return;
    };
    let messages: Vec<Detection> = flows_of(&path)
        .iter()
        .flat_map(Flow::detect_datagrams)
        .map(done)
        .collect();
    assert_eq!(messages.len(), 9);
    let first = dhcp_of(&messages[0]);
    assert_eq!(first.hostname.as_deref(), Some("btest.is.cool"));
    assert_eq!(
        first.client_mac_string().as_deref(),
        Some("90:b1:1c:99:49:29")
    );
    let offer = messages
        .iter()
        .map(dhcp_of)
        .find(|m| m.message_type == Some(app::dhcp::DhcpMessageType::Offer))
        .unwrap();
    assert!(!offer.request);
    assert_eq!(offer.vendor_class.as_deref(), Some("ArubaAP"));

    let Some(path) = shared("zeek/dhcp_dhcp_time_and_nameserver.pcap") else {
        return;
    };
    let request = done(flows_of(&path)[0].detect_datagrams().remove(0));
    let request = dhcp_of(&request);
    assert_eq!(
        request.message_type,
        Some(app::dhcp::DhcpMessageType::Request)
    );
    assert_eq!(request.hostname.as_deref(), Some("pop-os"));
    assert_eq!(
        request.parameter_request_list.as_deref(),
        Some("1,28,2,3,15,6,119,12,44,47,26,121,42,4,5,249,33,252")
    );

    // nDPI's fuzzed DHCP packet: option 60 runs past the end.
    let Some(path) = shared("nDPI/dhcp-fuzz.pcapng") else {
        return;
    };
    let fuzzed = done(flows_of(&path)[0].detect_datagrams().remove(0));
    let fuzzed = dhcp_of(&fuzzed);
    assert_eq!(
        fuzzed.message_type,
        Some(app::dhcp::DhcpMessageType::Other(0x6a))
    );
    assert_eq!(fuzzed.hostname.as_deref(), Some("MK03862"));
    assert_eq!(fuzzed.client_id.as_deref(), Some("01001f29da2d79"));
    assert_eq!(fuzzed.vendor_class, None);
    assert!(fuzzed.options_truncated);
}

#[test]
fn tls_captures_give_sni_versions_and_ech() {
    use app::tls::TlsVersion::{Tls12, Tls13};
    let cases: [(&str, Option<&str>, &[app::tls::TlsVersion], bool); 7] = [
        ("nDPI/443-curl.pcap", Some("www.ntop.org"), &[Tls12], false),
        (
            "zeek/tls_chrome-34-google.pcap",
            Some("google.de"),
            &[Tls12],
            false,
        ),
        ("zeek/tls_tls1.2.pcap", None, &[Tls12], false),
        (
            "zeek/tls_client-certificate.pcap",
            Some("certauth.idrix.fr"),
            &[Tls13, Tls12],
            false,
        ),
        // Encrypted Client Hello: only the outer (public) name is visible.
        (
            "nDPI/tls_ech.pcapng",
            Some("performance.radar.cloudflare.com"),
            &[Tls13, Tls12],
            true,
        ),
        (
            "zeek/tls_tls13-ech.pcap",
            Some("cloudflare-ech.com"),
            &[Tls13, Tls12],
            true,
        ),
        (
            "nDPI/tls_esni_sni_both.pcap",
            Some("these-are-not-the-droids-youre-looking-for.com"),
            &[Tls13],
            false,
        ),
    ];
    for (file, sni, versions, ech) in cases {
        let Some(path) = shared(file) else { return };
        let first_tls = flows_of(&path)
            .iter()
            .map(|flow| flow.detect_as_a_tracker().0)
            .find_map(Progress::done)
            .unwrap_or_else(|| panic!("{file}: no TLS flow"));
        let info = tls_of(&first_tls);
        assert_eq!(info.sni.as_deref(), sni, "{file}");
        assert_eq!(info.versions, versions, "{file}");
        assert_eq!(info.ech, ech, "{file}");
        assert!(!info.truncated, "{file}");
    }
}

#[test]
fn http_captures_give_method_host_and_path_prefix() {
    let Some(path) = shared("nDPI/http.pcapng") else {
        return;
    };
    let google = done(flows_of(&path)[0].detect_as_a_tracker().0);
    let info = http_of(&google);
    assert_eq!(info.method, app::http::HttpMethod::Get);
    assert_eq!(info.version, app::http::HttpVersion::Http11);
    assert_eq!(info.host.as_deref(), Some("google.com"));
    assert_eq!(info.path_prefix, "/");
    assert_eq!(info.fhir, None);

    let Some(path) = shared("zeek/http_m57-long-49600-80.pcap") else {
        return;
    };
    let update = done(flows_of(&path)[0].detect_as_a_tracker().0);
    let info = http_of(&update);
    assert_eq!(info.host.as_deref(), Some("au.download.windowsupdate.com"));
    // /msdownload/update/software/crup/2009/04/windows6.0-kb955430-...psf
    assert_eq!(info.path_prefix, "/msdownload");

    let Some(path) = shared("zeek/wikipedia.pcap") else {
        return;
    };
    let mut hosts: Vec<String> = flows_of(&path)
        .iter()
        .filter_map(|flow| flow.detect_as_a_tracker().0.done())
        .filter_map(|d| http_of(&d).host.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(
        hosts,
        [
            "bits.wikimedia.org",
            "meta.wikimedia.org",
            "upload.wikimedia.org",
            "www.wikipedia.org"
        ]
    );

    // IPP is HTTP: POST /ipp.
    let Some(path) = shared("nDPI/ipp.pcap") else {
        return;
    };
    let ipp = done(flows_of(&path)[0].detect_as_a_tracker().0);
    let info = http_of(&ipp);
    assert_eq!(
        (info.method, info.path_prefix.as_str()),
        (app::http::HttpMethod::Post, "/ipp")
    );
}

/// Every flow of every shared capture: no panic, only the expected apps
/// (no false positive on Kerberos, LDAP, SMB, RDP, MQTT, Modbus, BACnet,
/// SNMP, NTP, syslog, DNS, ...), and the whole flow decides as the tracker
/// did.
#[test]
fn every_shared_capture_is_detected_as_expected() {
    let Some(dir) = shared_pcaps() else {
        eprintln!("note: ../shared/pcaps is absent; skipping");
        return;
    };
    let expected = |name: &str| -> &[app::App] {
        use app::App::*;
        match name {
            n if n.starts_with("HL7-") || n == "hl7.pcap" => &[Hl7],
            n if n.starts_with("dicom_") => &[Dicom],
            n if n.starts_with("tls_") || n == "443-curl.pcap" => &[Tls],
            "http.pcapng" | "ipp.pcap" | "wikipedia.pcap" | "http_m57-long-49600-80.pcap" => {
                &[Http]
            }
            n if n.starts_with("dhcp") => &[Dhcp],
            _ => &[],
        }
    };
    let mut flows_seen = 0;
    for sub in ["tapirx", "nDPI", "zeek"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut found = std::collections::BTreeSet::new();
            for flow in flows_of(&path) {
                flows_seen += 1;
                if flow.transport == Transport::Udp {
                    for progress in flow.detect_datagrams() {
                        assert!(!progress.is_need_more(), "{name}: UDP never waits");
                        found.extend(progress.done().map(|d| d.app()));
                    }
                    continue;
                }
                let (first, _) = flow.detect_as_a_tracker();
                let whole = flow.detect_whole();
                if let Progress::Done(first) = &first {
                    found.insert(first.app());
                    let Progress::Done(whole) = &whole else {
                        panic!("{name}: decided on a prefix, not on the whole")
                    };
                    assert_eq!(whole.app(), first.app(), "{name}");
                    if !first.reply_pending {
                        assert_eq!(whole, first, "{name}");
                    }
                }
                let _ = format!("{whole:?}");
            }
            let found: Vec<_> = found.into_iter().collect();
            assert_eq!(found, expected(&name), "{name}");
        }
    }
    assert!(flows_seen > 200, "{flows_seen} flows");
}

/// Hand-built protocol messages (no bytes copied from any capture).
mod samples {
    pub fn pdu(pdu_type: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![pdu_type, 0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    pub fn item(item_type: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![item_type, 0];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn associate(pdu_type: u8, called: &str, calling: &str, items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0, 1, 0, 0];
        body.extend_from_slice(format!("{called:<16}").as_bytes());
        body.extend_from_slice(format!("{calling:<16}").as_bytes());
        body.extend_from_slice(&[0; 32]);
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        for i in items {
            body.extend_from_slice(i);
        }
        pdu(pdu_type, &body)
    }

    fn user_information(identity: &[u8]) -> Vec<u8> {
        let mut value = item(0x51, &16384u32.to_be_bytes());
        value.extend(item(0x52, b"1.2.276.0.7230010.3.0.3.6.5\0"));
        value.extend(item(0x55, b"OFFIS_DCMTK_365"));
        if !identity.is_empty() {
            value.extend(item(0x58, identity));
        }
        item(0x50, &value)
    }

    /// A-ASSOCIATE-RQ of a CT: C-ECHO, CT storage, MWL, MPPS, storage
    /// commitment; `identity` is a user identity sub-item value (or empty).
    pub fn dicom_rq(identity: &[u8]) -> Vec<u8> {
        let context = |id: u8, uid: &[u8]| {
            let mut value = vec![id, 0, 0, 0];
            value.extend(item(0x30, uid));
            value.extend(item(0x40, b"1.2.840.10008.1.2.1\0"));
            item(0x20, &value)
        };
        associate(
            1,
            "PACS",
            "CT01",
            &[
                context(1, b"1.2.840.10008.1.1\0"),
                context(3, b"1.2.840.10008.5.1.4.1.1.2\0"),
                context(5, b"1.2.840.10008.5.1.4.31\0"),
                context(7, b"1.2.840.10008.3.1.2.3.3\0"),
                context(9, b"1.2.840.10008.1.20.1\0"),
                user_information(identity),
            ],
        )
    }

    pub fn dicom_ac() -> Vec<u8> {
        let result = |id: u8, code: u8| item(0x21, &[id, 0, code, 0]);
        associate(
            2,
            "PACS",
            "CT01",
            &[
                result(1, 0),
                result(3, 0),
                result(5, 3),
                result(7, 0),
                result(9, 4),
                user_information(b""),
            ],
        )
    }

    /// P-DATA-TF: one PDV on context 3, data set, last fragment.
    pub fn dicom_p_data(data: &[u8]) -> Vec<u8> {
        let mut pdv = ((data.len() + 2) as u32).to_be_bytes().to_vec();
        pdv.extend_from_slice(&[3, 0x02]);
        pdv.extend_from_slice(data);
        pdu(4, &pdv)
    }

    pub fn mllp(message: &str) -> Vec<u8> {
        let mut out = vec![0x0b];
        out.extend_from_slice(message.replace('\n', "\r").as_bytes());
        out.extend_from_slice(b"\x1c\r");
        out
    }

    pub const SDC_HELLO: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><s12:Envelope xmlns:s12="http://www.w3.org/2003/05/soap-envelope" xmlns:wsd="http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01" xmlns:mdpws="http://standards.ieee.org/downloads/11073/11073-20702-2016"><s12:Body><wsd:Hello><wsd:Types>dpws:Device mdpws:MedicalDevice</wsd:Types></wsd:Hello></s12:Body></s12:Envelope>"#;
    pub const PRINTER_PROBE_MATCH: &[u8] = br#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch><wsd:Types>wsdp:Device print:PrintDeviceType</wsd:Types></wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>"#;
    pub const ASTM: &[u8] = b"\x05\x021H|\\^&|||analyser^1|||||||P|1\r\x0312\r\n";
    pub const POCT1A: &[u8] =
        b"<?xml version=\"1.0\"?>\r\n<HEL.R01><HDR><HDR.control_id V=\"1\"/></HDR></HEL.R01>";
    pub const INTELLIVUE: &[u8] = &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x20];

    pub fn ge_time_sync() -> Vec<u8> {
        let mut datagram = vec![0u8; 106];
        datagram[25..33].copy_from_slice(b"ICU2|R12");
        datagram
    }
}

/// Made-up patient data that must never reach a result.
const CANARIES: [&str; 3] = ["ZZQX", "CANARY", "1970-01-01"];

fn assert_no_canary(what: &str, progress: &Progress<Detection>) {
    let debug = format!("{progress:?}");
    for canary in CANARIES {
        assert!(!debug.contains(canary), "{what}: {canary} leaked: {debug}");
    }
}

/// Detects on every prefix of both directions (the client's growing first,
/// then the server's) and checks no result carries a canary.
fn assert_never_leaks(what: &str, transport: Transport, client: &[u8], server: &[u8]) -> Detection {
    let ports = FlowPorts {
        client: 40000,
        server: 2575,
    };
    for cut in 0..=client.len() {
        assert_no_canary(what, &app::detect(transport, ports, &client[..cut], b""));
    }
    for cut in 0..=server.len() {
        assert_no_canary(what, &app::detect(transport, ports, client, &server[..cut]));
        assert_no_canary(what, &app::detect(transport, ports, b"", &server[..cut]));
    }
    done(app::detect(transport, ports, client, server))
}

#[test]
fn patient_data_never_reaches_the_results() {
    // HL7: the patient in PID, NK1, PV1 and OBX; MSH-10 (control ID) and
    // MSH-7 carry canaries too, since they are not kept either; the ACK's
    // MSA-3 text and ERR segment repeat the patient's identifier.
    let adt = samples::mllp(
        "MSH|^~\\&|EPIC|NORTH|LIS|LAB|1970-01-01||ADT^A08|ZZQX-CTRL-1|P|2.5.1\n\
         EVN|A08|20240101\n\
         PID|1||ZZQX-CANARY-0001^^^HOSP^MR||CANARY^PATIENT^ZZQX||19700101|F|||1 Canary Row^^Springfield\n\
         NK1|1|CANARY^NEXT^ZZQX|SPO\n\
         PV1|1|I|ICU^01^A\n\
         OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F|||||ZZQX-DEVICE\n",
    );
    let ack = samples::mllp(
        "MSH|^~\\&|LIS|LAB|EPIC|NORTH|20240101||ACK^A08|ACK1|P|2.5.1\n\
         MSA|AR|ZZQX-CTRL-1|unknown patient ZZQX-CANARY-0001\n\
         ERR|||PID^1^3|E|CANARY\n",
    );
    let hl7 = assert_never_leaks("hl7", Transport::Tcp, &adt, &ack);
    let request = hl7_of(&hl7).request().unwrap();
    assert_eq!(request.message_type.as_deref(), Some("ADT^A08"));
    assert_eq!(
        hl7_of(&hl7).reply().unwrap().ack_code,
        Some(app::hl7::AckCode::ApplicationReject)
    );

    // DICOM: a user identity with the patient's name as user name, then a
    // data set in P-DATA; the server answers AC then P-DATA too.
    let identity = b"\x01\x00\x00\x10ZZQX-CANARY-0001\x00\x00";
    let mut client = samples::dicom_rq(identity);
    client.extend(samples::dicom_p_data(
        b"\x10\x00\x10\x00\x14\x00\x00\x00CANARY^PATIENT^ZZQX \x10\x00\x20\x00\x10\x00\x00\x00ZZQX-CANARY-0001",
    ));
    let mut server = samples::dicom_ac();
    server.extend(samples::dicom_p_data(
        b"\x10\x00\x10\x00\x08\x00\x00\x00ZZQX-PN ",
    ));
    let dicom = assert_never_leaks("dicom", Transport::Tcp, &client, &server);
    assert_eq!(dicom_of(&dicom).request().unwrap().calling_ae, "CT01");
    // A join mid-association: P-DATA first is recognised, never read.
    let p_data = samples::dicom_p_data(b"CANARY^PATIENT^ZZQX ZZQX-CANARY-0001");
    assert_never_leaks("dicom p-data", Transport::Tcp, &p_data, b"");

    // HTTP: the patient in the query string, a path ID, a letters-only path
    // name, cookies, authorization and the body.
    for request in [
        &b"GET /fhir/Patient?family=CANARY&given=ZZQX&birthdate=1970-01-01 HTTP/1.1\r\nHost: ehr\r\nAccept: application/fhir+json\r\n\r\n"[..],
        b"GET /Patient/ZZQX-CANARY-0001/_history/1 HTTP/1.1\r\nHost: ehr\r\n\r\n",
        b"GET /records/ZZQXCANARY HTTP/1.1\r\nHost: ehr\r\n\r\n",
        b"POST /fhir HTTP/1.1\r\nHost: ehr\r\nCookie: patient=ZZQX\r\nAuthorization: Basic Q0FOQVJZ\r\nContent-Type: application/fhir+json\r\n\r\n{\"name\":[{\"family\":\"CANARY\",\"given\":[\"ZZQX\"]}]}",
    ] {
        let http = assert_never_leaks("http", Transport::Tcp, request, b"HTTP/1.1 200 OK\r\n\r\nZZQX");
        assert!(http_of(&http).fhir.is_some() || http_of(&http).path_prefix == "/records");
    }
}

/// Counts this thread's heap allocations, to check that detection
/// allocates nothing when no protocol matches. It applies to the whole test
/// binary, but only counts and hands every call to the system allocator.
pub mod counting_allocator {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        // Const-initialised and without a destructor: reading it never
        // allocates, so the allocator cannot recurse into itself.
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        // Bytes allocated minus bytes freed on this thread.
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn count() {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    fn live(delta: i64) {
        let _ = LIVE.try_with(|n| n.set(n.get() + delta));
    }

    struct Counting;

    // A `GlobalAlloc` is unsafe to implement by definition; this one adds a
    // counter and forwards each call, with its arguments, to `System`.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            live(layout.size() as i64);
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract,
            // which is `System.alloc`'s.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            live(layout.size() as i64);
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            live(new_size as i64 - layout.size() as i64);
            // SAFETY: `ptr` came from this allocator, i.e. from `System`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            live(-(layout.size() as i64));
            // SAFETY: `ptr` came from this allocator, i.e. from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Bytes allocated and not yet freed on this thread (requested sizes,
    /// without the allocator's own overhead).
    pub fn live_bytes() -> i64 {
        LIVE.with(Cell::get)
    }

    /// How many allocations `f` made on this thread.
    pub fn allocations_in(f: impl FnOnce()) -> u64 {
        let before = ALLOCATIONS.with(Cell::get);
        f();
        ALLOCATIONS.with(Cell::get) - before
    }
}

#[test]
fn no_allocation_unless_a_protocol_matches() {
    use counting_allocator::allocations_in;
    let tcp = |client: &[u8], server: &[u8]| {
        let ports = FlowPorts {
            client: 40000,
            server: 443,
        };
        allocations_in(|| {
            std::hint::black_box(app::detect(Transport::Tcp, ports, client, server));
        })
    };
    // Sanity: the counter sees a match's strings.
    assert!(tcp(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"") > 0);
    // Other protocols.
    let others: [&[u8]; 8] = [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00\x00\x00\x85\xffSMBr\x00\x00\x00\x00",
        b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
        b"\x10\x1a\x00\x04MQTT\x04\x02\x00<\x00\x0emosquitto_pub",
        b"\x17\x03\x03\x00\x20",
        b"220 ftp.example FTP server ready\r\n",
        b"<html><body>hello</body></html>",
        &[0xa5; 300],
    ];
    for client in others {
        assert_eq!(tcp(client, b""), 0, "{client:?}");
        assert_eq!(tcp(client, b"\x00\x01"), 0, "{client:?}");
    }
    // Protocols that have begun but need more bytes.
    let rq = samples::dicom_rq(b"");
    let adt = samples::mllp("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5\nEVN|A01\n");
    for (client, cut) in [
        (&rq[..], 100),
        (&adt[..], 20),
        (b"GET /fhir/Patient HTTP/1.1\r\nHo", 30),
    ] {
        assert_eq!(tcp(&client[..cut], b""), 0, "{:?}", &client[..cut]);
    }
    // The real captures' flows of protocols segwatch does not parse.
    let Some(dir) = shared_pcaps() else { return };
    for file in [
        "nDPI/kerberos.pcap",
        "nDPI/rdp.pcap",
        "nDPI/mqtt.pcap",
        "zeek/smb_smb3.pcap",
    ] {
        for flow in flows_of(&dir.join(file)) {
            let (client, server) = (flow.bytes_from(true), flow.bytes_from(false));
            let allocations = allocations_in(|| {
                let result = app::detect(flow.transport, flow.ports, &client, &server);
                assert!(matches!(result, Progress::NotThis | Progress::NeedMore));
            });
            assert_eq!(allocations, 0, "{file}");
        }
    }
}

/// The seed corpora in `fuzz/corpus/<target>/`, each replayed through its
/// target's harness, as is and padded to a full window.
#[test]
fn fuzz_corpora_replay_through_their_harnesses() {
    use segwatch::app::fuzzing;
    type Harness = fn(&[u8]);
    let targets: [(&str, Harness); 6] = [
        ("dicom", fuzzing::dicom),
        ("hl7", fuzzing::hl7),
        ("tls", fuzzing::tls),
        ("http", fuzzing::http),
        ("dhcp", fuzzing::dhcp),
        ("app_detect", fuzzing::app_detect),
    ];
    for (target, harness) in targets {
        let dir = root().join("fuzz/corpus").join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{target}: {} seeds", files.len());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            harness(&bytes);
            if target != "dhcp" && target != "app_detect" {
                let mut padded = bytes.clone();
                padded.resize(app::INSPECT_LIMIT, b' ');
                harness(&padded);
            }
        }
    }
}

/// The seed corpora are what their sources make: hand-built messages, and
/// payloads of the BSD-licensed zeek traces (the tapirx and nDPI captures are
/// GPL/LGPL, so their bytes are not copied into this repository). Checks
/// every seed in `fuzz/corpus` against its source; after changing the seeds,
/// `SEGWATCH_WRITE_CORPUS=1 cargo test --test tests app::seed_corpora` writes
/// them instead.
#[test]
fn seed_corpora_match_their_sources() {
    use segwatch::app::fuzzing::app_detect_input;
    const MAX_SEED_LEN: usize = 4096;
    let corpus = root().join("fuzz/corpus");
    let rewrite = std::env::var_os("SEGWATCH_WRITE_CORPUS").is_some();
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        let seed = &bytes[..bytes.len().min(MAX_SEED_LEN)];
        if rewrite {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), seed).unwrap();
        } else {
            let committed = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                committed == seed,
                "fuzz/corpus/{target}/{name} differs from its source: \
                 SEGWATCH_WRITE_CORPUS=1 rewrites it"
            );
        }
    };
    let adt = samples::mllp(
        "MSH|^~\\&|EPIC|NORTH|LIS|LAB|20240101||ADT^A01^ADT_A01|1|P|2.5.1\nEVN|A01|20240101\nPID|1||ZZQX-CANARY-0001||CANARY^PATIENT^ZZQX\n",
    );
    let ack = samples::mllp("MSH|^~\\&|LIS|LAB|EPIC|NORTH|20240101||ACK^A01|2|P|2.5.1\nMSA|AA|1\n");
    let sft =
        b"MSH#*~\\&#APP#FAC#RAPP#RFAC#2024##ORU*R01#1#P#2.7\rSFT#Vendor#1.0\rUAC#x\rMSA#CA#1\r";
    let rq = samples::dicom_rq(b"\x01\x00\x00\x04user\x00\x00");
    let ac = samples::dicom_ac();

    write("dicom", "associate-rq", &rq);
    write("dicom", "associate-ac", &ac);
    write("dicom", "associate-rj", &samples::pdu(3, &[0, 1, 1, 7]));
    write("dicom", "abort", &samples::pdu(7, &[0, 0, 2, 2]));
    write("dicom", "release-rq", &samples::pdu(5, &[0; 4]));
    write(
        "dicom",
        "p-data",
        &samples::dicom_p_data(b"\x08\x00\x00\x00\x04\x00\x00\x00"),
    );
    write("hl7", "adt-a01", &adt);
    write("hl7", "ack-aa", &ack);
    write("hl7", "bare-sft-uac-msa", sft);
    write("hl7", "commit-ack", b"\x0b\x06\x1c\r");
    write("hl7", "commit-nak", b"\x0b\x15\x1c\r");
    write("http", "fhir-search", b"GET /fhir/r4/Observation?code=8867-4 HTTP/1.1\r\nHost: ehr.example\r\nAccept: application/fhir+json\r\n\r\n");
    write(
        "http",
        "proxy-absolute",
        b"GET http://ehr.example/metadata HTTP/1.0\r\n\r\n",
    );
    write(
        "http",
        "connect",
        b"CONNECT pacs.example:2762 HTTP/1.1\r\nHost: pacs.example:2762\r\n\r\n",
    );
    let ge = samples::ge_time_sync();
    let mut rq_then_data = rq.clone();
    rq_then_data.extend(samples::dicom_p_data(b"x"));
    // (seed name, UDP, port pair, client bytes, server bytes)
    type SeedFlow<'a> = (&'a str, bool, u8, &'a [u8], &'a [u8]);
    let flows: [SeedFlow; 10] = [
        ("dicom-rq-ac", false, 0, &rq_then_data, &ac),
        ("hl7-adt-ack", false, 6, &adt, &ack),
        ("hl7-commit", false, 6, &adt, b"\x0b\x06\x1c\r"),
        ("astm", false, 0, samples::ASTM, b"\x06"),
        ("poct1a-server-first", false, 0, b"", samples::POCT1A),
        ("intellivue", true, 2, samples::INTELLIVUE, b""),
        ("sdc-hello", true, 3, samples::SDC_HELLO, b""),
        (
            "ws-discovery-printer",
            true,
            3,
            samples::PRINTER_PROBE_MATCH,
            b"",
        ),
        ("ge-time-sync", true, 4, &ge, b""),
        (
            "http-fhir",
            false,
            7,
            b"GET /Patient HTTP/1.1\r\nHost: ehr\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ),
    ];
    for (name, udp, ports, client, server) in flows {
        write(
            "app_detect",
            name,
            &app_detect_input(udp, ports, client, server),
        );
    }

    // Payloads of the zeek traces (BSD-3-Clause; see fuzz/corpus/NOTICE).
    let Some(dir) = shared_pcaps() else {
        assert!(
            !rewrite,
            "../shared/pcaps is needed for the capture-derived seeds"
        );
        eprintln!("skipped the capture-derived seeds: ../shared/pcaps is absent");
        return;
    };
    let zeek = |file: &str| flows_of(&dir.join("zeek").join(file));
    for (file, name) in [
        ("tls_chrome-34-google.pcap", "zeek-chrome-34-google"),
        ("tls_tls1.2.pcap", "zeek-tls1.2-no-sni"),
        ("tls_tls13-ech.pcap", "zeek-tls13-ech"),
        ("tls_client-certificate.pcap", "zeek-client-certificate"),
    ] {
        let flow = zeek(file)
            .into_iter()
            .find(|f| f.bytes_from(true).first() == Some(&0x16))
            .unwrap();
        let hello = flow.bytes_from(true);
        write("tls", name, &hello);
        write(
            "app_detect",
            name,
            &app_detect_input(false, 5, &hello, &flow.bytes_from(false)[..64]),
        );
    }
    for (file, name) in [
        ("http_m57-long-49600-80.pcap", "zeek-m57-get"),
        ("wikipedia.pcap", "zeek-wikipedia-get"),
    ] {
        let flow = zeek(file)
            .into_iter()
            .find(|f| f.bytes_from(true).starts_with(b"GET "))
            .unwrap();
        let request = flow.bytes_from(true);
        write("http", name, &request);
        write(
            "app_detect",
            name,
            &app_detect_input(false, 7, &request, &flow.bytes_from(false)[..200]),
        );
    }
    for (file, name) in [
        (
            "dhcp_dhcp_discover_param_req_and_client_id.pcap",
            "zeek-discover-prl-client-id",
        ),
        (
            "dhcp_dhcp_time_and_nameserver.pcap",
            "zeek-request-long-prl",
        ),
        (
            "dhcp_dhcp_ack_subscriber_id_and_agent_remote_id.pcap",
            "zeek-ack-relay-agent",
        ),
        ("dhcp_dhcp.pcap", "zeek-discover"),
    ] {
        let (_, datagram) = &zeek(file)[0].payloads[0];
        write("dhcp", name, datagram);
        write(
            "app_detect",
            name,
            &app_detect_input(true, 1, datagram, b""),
        );
    }
    let offer = &zeek("dhcp_dhcp.pcap")[1].payloads[0].1;
    write("dhcp", "zeek-offer-aruba", offer);
}
