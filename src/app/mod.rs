//! Application detection by content: which protocol a flow speaks, and the
//! few header fields of it that a segmentation policy can use.
//!
//! # How a caller uses it
//!
//! Per flow direction, the flow tracker keeps the first payload bytes
//! (bounded by [`INSPECT_LIMIT`], and only while the flow is unidentified)
//! and calls [`detect`] with the bytes of both directions after each new
//! segment. [`detect`] answers with a [`Progress`]:
//!
//! - [`Progress::NeedMore`]: a protocol's first message has started but is
//!   not complete; call again with more bytes.
//! - [`Progress::Done`]: identified, with the extracted fields. When
//!   [`Detection::reply_pending`] is set, the server's reply (DICOM
//!   A-ASSOCIATE-AC/RJ, HL7 ACK) has not arrived yet; a caller that wants its
//!   fields calls again once the server has sent bytes, one that does not
//!   stops here.
//! - [`Progress::NotThis`]: no protocol known here; stop inspecting.
//!
//! For UDP, each side is one datagram (the caller passes the datagram in its
//! direction and an empty slice for the other); UDP never needs more.
//!
//! # Contracts
//!
//! - No panic on any input, whatever the lengths inside it claim.
//! - No allocation unless a protocol matched: every parser rejects on its
//!   first bytes, and builds its owned fields only when it answers `Done`.
//! - Bounded work: each parser looks at most at the first [`INSPECT_LIMIT`]
//!   bytes of a direction; once a direction holds that many, no parser waits
//!   on it any more (a longer first message is parsed as far as it goes and
//!   marked truncated).
//! - Streaming-stable: for input shorter than [`INSPECT_LIMIT`], a `Done` on a
//!   non-empty prefix of the client's bytes is the same `Done` on any longer
//!   input, and a `NotThis` stays `NotThis` (when the client has sent
//!   nothing, the server's bytes decide, for captures that miss the client).
//!   A caller that buffers less than [`INSPECT_LIMIT`] may get `NeedMore`
//!   until it gives up; it should then treat the flow as unidentified.
//! - Patient data is never read into the results: the structs hold only the
//!   named header fields (see each parser's module docs for what is read and
//!   what is deliberately never touched). Strings are capped and made
//!   printable (non-printable bytes become `?`).
//!
//! FHIR is not an [`App`] of its own: it is a REST API over HTTP, so it is
//! reported as [`App::Http`] with [`http::HttpInfo::fhir`] set, saying what
//! gave it away (a FHIR media type or a FHIR path). Over TLS, FHIR cannot be
//! told from any other HTTPS: only the TLS SNI is visible.

#![forbid(unsafe_code)]

pub(crate) mod bytes;
pub mod device;
pub mod dhcp;
pub mod dicom;
pub mod fuzzing;
pub mod hl7;
pub mod http;
pub mod tls;

use crate::wire::Transport;

pub use device::DeviceProtocol;
pub use dhcp::DhcpInfo;
pub use dicom::DicomInfo;
pub use hl7::Hl7Info;
pub use http::HttpInfo;
pub use tls::TlsInfo;

/// How many bytes of one direction the detector ever looks at.
///
/// 64 KiB holds the largest first messages seen in practice (a DICOM
/// A-ASSOCIATE-RQ of a C-GET client offering 123 presentation contexts is
/// 16.5 KiB; a TLS record is at most 16 KiB + 2 KiB) while bounding what a
/// tracker buffers per flow.
pub const INSPECT_LIMIT: usize = 64 * 1024;

/// An application protocol segwatch recognises by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum App {
    /// DICOM Upper Layer (PS3.8), plain TCP.
    Dicom,
    /// HL7 v2, framed by MLLP (or bare `MSH` at the start of the stream).
    Hl7,
    /// TLS, from the ClientHello.
    Tls,
    /// HTTP/1.x, from the request; FHIR is a flag on it.
    Http,
    /// DHCP (BOOTP with the DHCP magic cookie), UDP 67/68.
    Dhcp,
    /// Philips IntelliVue Data Export, UDP 24005/24105.
    IntelliVue,
    /// IEEE 11073 SDC discovery: WS-Discovery naming a medical device.
    SdcDiscovery,
    /// WS-Discovery (UDP 3702) of a device that does not claim to be medical.
    WsDiscovery,
    /// GE Unity/CARESCAPE network time-sync broadcast, UDP 2000.
    GeUnityTimeSync,
    /// ASTM E1381/E1394 (CLSI LIS1/LIS2) laboratory analyser messages.
    Astm,
    /// POCT1-A point-of-care device messages (XML).
    Poct1a,
}

impl App {
    /// Every app, in a fixed order (for metric labels).
    pub const ALL: [App; 11] = [
        App::Dicom,
        App::Hl7,
        App::Tls,
        App::Http,
        App::Dhcp,
        App::IntelliVue,
        App::SdcDiscovery,
        App::WsDiscovery,
        App::GeUnityTimeSync,
        App::Astm,
        App::Poct1a,
    ];

    /// Stable snake_case name, for events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            App::Dicom => "dicom",
            App::Hl7 => "hl7",
            App::Tls => "tls",
            App::Http => "http",
            App::Dhcp => "dhcp",
            App::IntelliVue => "intellivue",
            App::SdcDiscovery => "sdc_discovery",
            App::WsDiscovery => "ws_discovery",
            App::GeUnityTimeSync => "ge_unity_time_sync",
            App::Astm => "astm",
            App::Poct1a => "poct1a",
        }
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a streaming parser stands on the bytes it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress<T> {
    /// The bytes so far are the start of this protocol's first message;
    /// more are needed to decide or to read its fields.
    NeedMore,
    /// Identified, with what was read.
    Done(T),
    /// Not this protocol.
    NotThis,
}

impl<T> Progress<T> {
    /// Applies `f` to a `Done` value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Progress<U> {
        match self {
            Progress::NeedMore => Progress::NeedMore,
            Progress::Done(value) => Progress::Done(f(value)),
            Progress::NotThis => Progress::NotThis,
        }
    }

    /// The `Done` value, if any.
    pub fn done(self) -> Option<T> {
        match self {
            Progress::Done(value) => Some(value),
            _ => None,
        }
    }

    /// True for [`Progress::NeedMore`].
    pub fn is_need_more(&self) -> bool {
        matches!(self, Progress::NeedMore)
    }
}

/// The ports of a flow, by role: the client initiated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowPorts {
    /// The initiator's port.
    pub client: u16,
    /// The responder's port.
    pub server: u16,
}

impl FlowPorts {
    /// True when either side uses `port`.
    #[inline]
    pub fn either(self, port: u16) -> bool {
        self.client == port || self.server == port
    }
}

/// What [`detect`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The protocol and its extracted fields.
    pub info: AppInfo,
    /// The client's first message is parsed and expects a reply that the
    /// server has not (fully) sent yet: DICOM A-ASSOCIATE-AC/RJ or
    /// A-RELEASE-RP, HL7 ACK. Calling again with more server bytes fills
    /// in the reply.
    pub reply_pending: bool,
}

impl Detection {
    /// The identified protocol.
    pub fn app(&self) -> App {
        self.info.app()
    }
}

/// The extracted fields, by protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppInfo {
    /// DICOM: the first PDU of each side.
    Dicom(DicomInfo),
    /// HL7 v2: the header of the first message of each side.
    Hl7(Hl7Info),
    /// TLS: from the ClientHello.
    Tls(TlsInfo),
    /// HTTP/1.x: from the request.
    Http(HttpInfo),
    /// DHCP: from one message.
    Dhcp(DhcpInfo),
    /// A device protocol: a label only.
    Device(DeviceProtocol),
}

impl AppInfo {
    /// The protocol these fields belong to.
    pub fn app(&self) -> App {
        match self {
            AppInfo::Dicom(_) => App::Dicom,
            AppInfo::Hl7(_) => App::Hl7,
            AppInfo::Tls(_) => App::Tls,
            AppInfo::Http(_) => App::Http,
            AppInfo::Dhcp(_) => App::Dhcp,
            AppInfo::Device(device) => device.app(),
        }
    }
}

/// Identifies the protocol of a flow from the first bytes of each direction.
///
/// `client_to_server` and `server_to_client` are the payload bytes the
/// caller has accumulated from the start of each direction (TCP), or one
/// datagram (UDP; pass an empty slice for the other side). Only the first
/// [`INSPECT_LIMIT`] bytes of each are looked at. Protocols are recognised by
/// content; ports are used only where a protocol has no signature strong
/// enough alone (DHCP, IntelliVue, WS-Discovery, GE time sync).
///
/// See the module docs for the meaning of the answer and the contracts.
pub fn detect(
    transport: Transport,
    ports: FlowPorts,
    client_to_server: &[u8],
    server_to_client: &[u8],
) -> Progress<Detection> {
    let client = window(client_to_server);
    let server = window(server_to_client);
    match transport {
        Transport::Tcp => detect_stream(client, server),
        Transport::Udp => detect_datagram(ports, client, server),
        _ => Progress::NotThis,
    }
}

/// The part of a direction the parsers look at.
#[inline]
pub(crate) fn window(bytes: &[u8]) -> &[u8] {
    bytes.get(..INSPECT_LIMIT).unwrap_or(bytes)
}

/// True when a parser has seen all it will ever be shown of a direction, so
/// it must answer from what is there rather than wait.
#[inline]
pub(crate) fn at_limit(bytes: &[u8]) -> bool {
    bytes.len() >= INSPECT_LIMIT
}

/// A stream candidate: the app it would find, and whether a reply is pending.
type StreamCandidate = fn(&[u8], &[u8]) -> Progress<(AppInfo, bool)>;

/// The stream protocols, tried in turn. Their signatures are disjoint on the
/// first two bytes, so at most one can answer `Done` and the order only
/// saves work. (`STREAM_OPENERS` follows this order.)
const STREAM_CANDIDATES: [StreamCandidate; 5] = [
    |client, server| {
        both_sides(client, server, dicom::parse_pdu, dicom::expects_reply).map(|sides| {
            let info = DicomInfo {
                client: sides.client,
                server: sides.server,
            };
            (AppInfo::Dicom(info), sides.reply_pending)
        })
    },
    |client, server| {
        both_sides(client, server, hl7::parse_message, hl7::expects_reply).map(|sides| {
            let info = Hl7Info {
                client: sides.client,
                server: sides.server,
            };
            (AppInfo::Hl7(info), sides.reply_pending)
        })
    },
    |client, server| {
        first_bytes_of(client, server, tls::parse_client_hello)
            .map(|info| (AppInfo::Tls(info), false))
    },
    |client, server| {
        first_bytes_of(client, server, http::parse_request).map(|info| (AppInfo::Http(info), false))
    },
    |client, server| {
        either_side(client, server, device::parse_stream)
            .map(|device| (AppInfo::Device(device), false))
    },
];

/// Per first byte of the bytes that decide, the [`STREAM_CANDIDATES`] that
/// may answer anything but `NotThis` (bit `i` for candidate `i`): row 0 when
/// the client has sent bytes (every candidate parses them), row 1 when only
/// the server has (the protocols either side may open, and the
/// request/reply ones, for captures that missed the client). The others
/// answer `NotThis` on that first byte, so they are not asked: most flows
/// speak none of these protocols, and HTTP alone would try nine methods.
const STREAM_OPENERS: [[u8; 256]; 2] = {
    let mut table = [[0; 256]; 2];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        // In the order of STREAM_CANDIDATES.
        let client = [
            dicom::may_open(b),
            hl7::may_open(b),
            tls::may_open(b),
            http::may_open(b),
            device::may_open(b),
        ];
        let mut i = 0;
        while i < client.len() {
            if client[i] {
                table[0][byte] |= 1 << i;
                // TLS and HTTP: a server that spoke first rules them out.
                if i != 2 && i != 3 {
                    table[1][byte] |= 1 << i;
                }
            }
            i += 1;
        }
        byte += 1;
    }
    table
};

/// Every stream candidate, as a mask for [`ask_stream_candidates`].
const ALL_STREAM_CANDIDATES: u8 = (1 << STREAM_CANDIDATES.len()) - 1;

/// Per second byte of the bytes that decide, the [`STREAM_CANDIDATES`] that
/// may still answer anything but `NotThis`: those whose second byte is
/// fixed (DICOM's reserved 0, TLS's major version 3) are ruled out by any
/// other, whatever the first.
const STREAM_SECOND_BYTES: [u8; 256] = {
    let mut table = [ALL_STREAM_CANDIDATES; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        // In the order of STREAM_CANDIDATES.
        if !dicom::may_continue(b) {
            table[byte] &= !(1 << 0);
        }
        if !tls::may_continue(b) {
            table[byte] &= !(1 << 2);
        }
        byte += 1;
    }
    table
};

/// True when [`detect`] answers [`Progress::NotThis`] on these bytes, as the
/// first two bytes of the side that decides and the flow's ports tell,
/// without asking a parser: a stream whose first bytes no protocol opens
/// with, a datagram between ports that no datagram protocol uses. False
/// when the parsers must be asked (they may still say `NotThis`).
///
/// Most flows of a hospital network are decided here, on their first
/// segment, in a few instructions; `detect` itself starts with the same
/// tables, and a unit test and the `app_detect` fuzz target hold the two
/// to the same answer.
#[inline]
pub fn ruled_out(transport: Transport, ports: FlowPorts, client: &[u8], server: &[u8]) -> bool {
    match transport {
        Transport::Tcp => stream_candidates(client, server) == Some(0),
        Transport::Udp => !dhcp::may_use_ports(ports) && !device::may_use_ports(ports),
        _ => true,
    }
}

/// [`ruled_out`] for a stream whose only bytes so far are `bytes` (not
/// empty), sent by the client or by the server: the same answer from the
/// same tables, without the ports or the other side's bytes to look at.
#[inline(always)]
pub fn stream_opening_ruled_out(from_client: bool, bytes: &[u8]) -> bool {
    let Some(&first) = bytes.first() else {
        return false;
    };
    let mut candidates = STREAM_OPENERS[usize::from(!from_client)][usize::from(first)];
    if let Some(&second) = bytes.get(1) {
        candidates &= STREAM_SECOND_BYTES[usize::from(second)];
    }
    candidates == 0
}

/// The [`STREAM_CANDIDATES`] that may answer anything but `NotThis`, by the
/// first two bytes of the side that decides (the client's, or the server's
/// when the client has sent nothing); `None` when neither has sent any.
#[inline]
fn stream_candidates(client: &[u8], server: &[u8]) -> Option<u8> {
    let (speaker, mut candidates) = match (client.first(), server.first()) {
        (Some(&first), _) => (client, STREAM_OPENERS[0][usize::from(first)]),
        (None, Some(&first)) => (server, STREAM_OPENERS[1][usize::from(first)]),
        (None, None) => return None,
    };
    if let Some(&second) = speaker.get(1) {
        candidates &= STREAM_SECOND_BYTES[usize::from(second)];
    }
    Some(candidates)
}

fn detect_stream(client: &[u8], server: &[u8]) -> Progress<Detection> {
    match stream_candidates(client, server) {
        None => Progress::NeedMore,
        Some(0) => Progress::NotThis,
        Some(candidates) => ask_stream_candidates(client, server, candidates),
    }
}

/// Asks the stream protocols of `candidates` (a mask of
/// [`STREAM_CANDIDATES`]) in turn; the others count as `NotThis`.
fn ask_stream_candidates(client: &[u8], server: &[u8], candidates: u8) -> Progress<Detection> {
    if client.is_empty() && server.is_empty() {
        return Progress::NeedMore;
    }
    let mut answer = Progress::NotThis;
    for (i, candidate) in STREAM_CANDIDATES.iter().enumerate() {
        if candidates & (1 << i) == 0 {
            continue;
        }
        match candidate(client, server) {
            Progress::Done((info, reply_pending)) => {
                return Progress::Done(Detection {
                    info,
                    reply_pending,
                });
            }
            Progress::NeedMore => answer = Progress::NeedMore,
            Progress::NotThis => {}
        }
    }
    answer
}

fn detect_datagram(ports: FlowPorts, client: &[u8], server: &[u8]) -> Progress<Detection> {
    for datagram in [client, server] {
        if datagram.is_empty() {
            continue;
        }
        let found = dhcp::parse(ports, datagram)
            .map(AppInfo::Dhcp)
            .or_else(|| device::parse_datagram(ports, datagram).map(AppInfo::Device));
        if let Some(info) = found {
            return Progress::Done(Detection {
                info,
                reply_pending: false,
            });
        }
    }
    Progress::NotThis
}

/// A protocol judged on the client's first bytes only (TLS, HTTP): the
/// client always speaks first, so a server that spoke first rules it out.
fn first_bytes_of<T>(client: &[u8], server: &[u8], parse: fn(&[u8]) -> Progress<T>) -> Progress<T> {
    match (client.is_empty(), server.is_empty()) {
        (false, _) => parse(client),
        (true, true) => Progress::NeedMore,
        (true, false) => Progress::NotThis,
    }
}

/// A protocol either side may open (ASTM, POCT1-A: the analyser may be the
/// one that connected, or the one connected to). The client's bytes decide;
/// when the client has sent nothing, the server's do.
fn either_side<T>(client: &[u8], server: &[u8], parse: fn(&[u8]) -> Progress<T>) -> Progress<T> {
    let speaker = if client.is_empty() { server } else { client };
    if speaker.is_empty() {
        Progress::NeedMore
    } else {
        parse(speaker)
    }
}

/// The first message of each side of a request/reply protocol.
struct Sides<T> {
    client: Option<T>,
    server: Option<T>,
    reply_pending: bool,
}

/// Parses the first message of each side. The client's decides: not this
/// protocol if the client's bytes are not; when the client has sent nothing
/// (a capture that sees only the server), the server's decides.
fn both_sides<T>(
    client: &[u8],
    server: &[u8],
    parse: fn(&[u8]) -> Progress<T>,
    expects_reply: fn(&T) -> bool,
) -> Progress<Sides<T>> {
    let server_progress = || {
        if server.is_empty() {
            Progress::NeedMore
        } else {
            parse(server)
        }
    };
    if client.is_empty() {
        return server_progress().map(|found| Sides {
            client: None,
            server: Some(found),
            reply_pending: false,
        });
    }
    match parse(client) {
        Progress::NotThis => Progress::NotThis,
        Progress::NeedMore => Progress::NeedMore,
        Progress::Done(first) => {
            let (server, reply_pending) = match server_progress() {
                Progress::Done(reply) => (Some(reply), false),
                Progress::NeedMore => (None, expects_reply(&first) || !server.is_empty()),
                Progress::NotThis => (None, false),
            };
            Progress::Done(Sides {
                client: Some(first),
                server,
                reply_pending,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP_PORTS: FlowPorts = FlowPorts {
        client: 50123,
        server: 104,
    };

    fn tcp(client: &[u8], server: &[u8]) -> Progress<Detection> {
        detect(Transport::Tcp, TCP_PORTS, client, server)
    }

    fn app_of(progress: Progress<Detection>) -> App {
        match progress {
            Progress::Done(detection) => detection.app(),
            other => panic!("expected a detection, got {other:?}"),
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let names: std::collections::BTreeSet<_> = App::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), App::ALL.len());
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
    }

    #[test]
    fn dicom_request_then_reply() {
        let rq = dicom::tests::sample_rq();
        let ac = dicom::tests::sample_ac();
        let Progress::Done(waiting) = tcp(&rq, b"") else {
            panic!()
        };
        assert!(waiting.reply_pending);
        assert_eq!(waiting.app(), App::Dicom);
        let Progress::Done(both) = tcp(&rq, &ac) else {
            panic!()
        };
        assert!(!both.reply_pending);
        let AppInfo::Dicom(info) = both.info else {
            panic!()
        };
        assert_eq!(
            info.request().map(|rq| rq.calling_ae.as_str()),
            Some("CT_ROOM_2")
        );
        assert_eq!(info.accept().map(|ac| ac.accepted()), Some(3));
        // Part of the AC: the request is known, the reply still pending.
        let Progress::Done(partial) = tcp(&rq, &ac[..20]) else {
            panic!()
        };
        assert!(partial.reply_pending);
        // Only the server seen (a capture that misses the client side).
        let Progress::Done(server_only) = tcp(b"", &ac) else {
            panic!()
        };
        let AppInfo::Dicom(info) = server_only.info else {
            panic!()
        };
        assert!(info.client.is_none() && info.server.is_some());
        // The client's PDU is incomplete: wait, whatever the server sent.
        assert_eq!(tcp(&rq[..100], &ac), Progress::NeedMore);
    }

    #[test]
    fn hl7_message_then_ack() {
        let Progress::Done(waiting) = tcp(hl7::tests::ADT, b"") else {
            panic!()
        };
        assert!(waiting.reply_pending);
        let Progress::Done(acked) = tcp(hl7::tests::ADT, hl7::tests::ACK) else {
            panic!()
        };
        let AppInfo::Hl7(info) = &acked.info else {
            panic!()
        };
        assert_eq!(
            info.reply().and_then(|h| h.ack_code),
            Some(hl7::AckCode::ApplicationError)
        );
        assert!(!acked.reply_pending);
        let Progress::Done(commit) = tcp(hl7::tests::ADT, b"\x0b\x06\x1c\r") else {
            panic!()
        };
        let AppInfo::Hl7(info) = commit.info else {
            panic!()
        };
        assert_eq!(info.server, Some(hl7::Hl7Message::CommitAck));
    }

    #[test]
    fn client_led_and_device_protocols_over_tcp() {
        assert_eq!(app_of(tcp(&tls::tests::modern_hello(), b"")), App::Tls);
        assert_eq!(app_of(tcp(http::tests::FHIR_SEARCH, b"")), App::Http);
        assert_eq!(app_of(tcp(device::tests::ASTM_FRAME, b"\x06")), App::Astm);
        // The analyser may be the server: it speaks first.
        assert_eq!(app_of(tcp(b"", device::tests::POCT_HELLO)), App::Poct1a);
        // ENQ alone could be ASTM: wait.
        assert_eq!(tcp(b"\x05", b"\x06"), Progress::NeedMore);
        assert_eq!(tcp(b"", b""), Progress::NeedMore);
        assert_eq!(tcp(b"G", b""), Progress::NeedMore);
    }

    #[test]
    fn udp_protocols_use_the_ports() {
        let dhcp_ports = FlowPorts {
            client: 68,
            server: 67,
        };
        let discover = dhcp::tests::discover();
        let found = detect(Transport::Udp, dhcp_ports, &discover, b"");
        assert_eq!(app_of(found), App::Dhcp);
        // The reply direction alone (a relayed ACK seen one way).
        assert_eq!(
            app_of(detect(Transport::Udp, dhcp_ports, b"", &discover)),
            App::Dhcp
        );
        let sdc_ports = FlowPorts {
            client: 3702,
            server: 3702,
        };
        let sdc = detect(Transport::Udp, sdc_ports, device::tests::SDC_HELLO, b"");
        assert_eq!(app_of(sdc), App::SdcDiscovery);
        assert_eq!(
            detect(Transport::Udp, TCP_PORTS, &discover, b""),
            Progress::NotThis
        );
        assert_eq!(
            detect(Transport::Udp, dhcp_ports, b"", b""),
            Progress::NotThis
        );
        assert_eq!(
            detect(Transport::Other, dhcp_ports, &discover, b""),
            Progress::NotThis
        );
    }

    #[test]
    fn unknown_protocols_are_rejected_on_their_first_bytes() {
        for client in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"\x00\x00\x00\x85\xffSMBr",
            b"\x03\x00\x00\x13\x0e\xe0",
            b"220 ftp ready\r\n",
            b"\x17\x03\x03\x00\x10",
        ] {
            assert_eq!(tcp(client, b""), Progress::NotThis, "{client:?}");
        }
    }

    #[test]
    fn the_first_bytes_tables_reject_only_what_every_parser_rejects() {
        // Real first messages with each possible first (or second) byte in
        // place of theirs, then cut short: the quick answer is the long one.
        let samples: [Vec<u8>; 7] = [
            dicom::tests::sample_rq(),
            dicom::tests::sample_ac(),
            hl7::tests::ADT.to_vec(),
            tls::tests::modern_hello(),
            http::tests::FHIR_SEARCH.to_vec(),
            device::tests::ASTM_FRAME.to_vec(),
            device::tests::POCT_HELLO.to_vec(),
        ];
        for sample in &samples {
            for (at, byte) in (0..2).flat_map(|at| (0..=255u8).map(move |byte| (at, byte))) {
                let mut bytes = sample.clone();
                bytes[at] = byte;
                for len in [1, 2, 6, 12, bytes.len()] {
                    let bytes = &bytes[..len.min(bytes.len())];
                    for (client, server) in [(bytes, &b""[..]), (b"", bytes), (bytes, bytes)] {
                        assert_eq!(
                            detect_stream(client, server),
                            ask_stream_candidates(client, server, ALL_STREAM_CANDIDATES),
                            "byte {at} {byte:#04x}, {len} bytes"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn what_is_ruled_out_is_what_the_parsers_reject() {
        // Streams: every first and second byte, each side speaking first.
        let mut stream_ruled_out = 0;
        for (first, second) in (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| (a, b))) {
            let bytes = [first, second, b' ', b' '];
            for (client, server) in [(&bytes[..], &b""[..]), (b"", &bytes[..])] {
                for len in 1..=bytes.len() {
                    let (from_client, sent) = if client.is_empty() {
                        (false, &server[..len])
                    } else {
                        (true, &client[..len])
                    };
                    let (c, s) = if from_client {
                        (sent, &b""[..])
                    } else {
                        (&b""[..], sent)
                    };
                    assert_eq!(
                        stream_opening_ruled_out(from_client, sent),
                        ruled_out(Transport::Tcp, TCP_PORTS, c, s),
                        "{sent:?} from the client: {from_client}"
                    );
                }
                if ruled_out(Transport::Tcp, TCP_PORTS, client, server) {
                    stream_ruled_out += 1;
                    assert_eq!(tcp(client, server), Progress::NotThis, "{bytes:?}");
                }
            }
        }
        assert!(
            stream_ruled_out > 100_000,
            "most first bytes open no protocol"
        );
        assert!(!ruled_out(Transport::Tcp, TCP_PORTS, b"", b""));
        // Datagrams: the ports of the datagram protocols are never ruled
        // out; on any other, every parser rejects whatever the bytes.
        let datagrams = [
            dhcp::tests::discover(),
            device::tests::ge_time_sync(),
            device::tests::SDC_HELLO.to_vec(),
            b"\xe1\x00\x00\x02".to_vec(),
        ];
        for port in [67, 68, 24005, 24105, 3702, 2000] {
            for ports in [
                FlowPorts {
                    client: 50000,
                    server: port,
                },
                FlowPorts {
                    client: port,
                    server: 50000,
                },
            ] {
                assert!(!ruled_out(Transport::Udp, ports, b"x", b""), "{port}");
            }
        }
        for port in [53, 123, 161, 514, 1900, 5353, 50000] {
            let ports = FlowPorts {
                client: 40000,
                server: port,
            };
            assert!(ruled_out(Transport::Udp, ports, b"x", b""), "{port}");
            for datagram in &datagrams {
                assert!(dhcp::parse(ports, datagram).is_none(), "{port}");
                assert!(device::parse_datagram(ports, datagram).is_none(), "{port}");
            }
        }
    }

    #[test]
    fn a_full_window_is_never_waited_on() {
        let samples: [Vec<u8>; 7] = [
            dicom::tests::sample_rq()[..80].to_vec(),
            b"\x0bMSH|^~\\&|A".to_vec(),
            b"GET /x HTTP/1.1\r\nHost: a".to_vec(),
            b"\x05".to_vec(),
            b"<?xml version".to_vec(),
            b"\x16\x03\x01\x00".to_vec(),
            b"  ".to_vec(),
        ];
        for sample in samples {
            let mut full = sample.clone();
            full.resize(INSPECT_LIMIT, b' ');
            for (client, server) in [
                (&full[..], &b""[..]),
                (b"", &full[..]),
                (&full[..], &full[..]),
            ] {
                assert!(!tcp(client, server).is_need_more(), "{sample:?}");
            }
        }
    }
}
