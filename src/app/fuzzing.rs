//! Harnesses for the fuzz targets in `fuzz/` and for the test that replays
//! their corpora (`tests/app.rs`), so that CI runs exactly what the fuzzer
//! runs.
//!
//! Each harness feeds arbitrary bytes to a parser and panics when a contract
//! of [`super`] is broken: a panic inside the parser, a `Done` on a prefix
//! that differs from the `Done` on the whole input, a `NotThis` on a prefix
//! that turns into something else, or a wait on a full window. Results are
//! also formatted with `Debug`, as a log line would be.

use super::{FlowPorts, INSPECT_LIMIT, Progress, detect, dhcp, dicom, hl7, http, tls};
use crate::wire::Transport;

/// The ports [`app_detect`] picks from with its selector byte: the
/// protocols that look at ports, and a few that do not.
const PORT_PAIRS: [(u16, u16); 8] = [
    (50000, 104),
    (68, 67),
    (50000, 24105),
    (3702, 3702),
    (2000, 2000),
    (50000, 443),
    (50000, 2575),
    (50000, 80),
];

/// [`dicom::parse_pdu`] on one direction.
pub fn dicom(data: &[u8]) {
    check_streaming(data, dicom::parse_pdu);
}

/// [`hl7::parse_message`] on one direction.
pub fn hl7(data: &[u8]) {
    check_streaming(data, hl7::parse_message);
}

/// [`tls::parse_client_hello`] on one direction.
pub fn tls(data: &[u8]) {
    check_streaming(data, tls::parse_client_hello);
}

/// [`http::parse_request`] on one direction.
pub fn http(data: &[u8]) {
    check_streaming(data, http::parse_request);
}

/// [`dhcp::parse`] on one datagram between ports 68 and 67.
pub fn dhcp(data: &[u8]) {
    let ports = FlowPorts {
        client: dhcp::CLIENT_PORT,
        server: dhcp::SERVER_PORT,
    };
    if let Some(info) = dhcp::parse(ports, data) {
        let _ = format!("{info:?} {:?}", info.client_mac_string());
    }
}

/// [`detect`] on a whole flow. Layout: a selector byte (bit 0: UDP rather
/// than TCP; bits 1-3: the port pair), the client part's length (2 bytes,
/// big-endian, cut to what is there), the client's bytes, then the server's.
pub fn app_detect(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let transport = if selector & 1 == 1 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let (client, server) = split_flow(rest);
    let (client_port, server_port) = PORT_PAIRS[usize::from(selector >> 1) % PORT_PAIRS.len()];
    let ports = FlowPorts {
        client: client_port,
        server: server_port,
    };
    let whole = detect(transport, ports, client, server);
    let _ = format!("{whole:?}");
    if super::ruled_out(transport, ports, client, server) {
        assert_eq!(
            whole,
            Progress::NotThis,
            "ruled out, yet the parsers answered"
        );
    }
    if transport == Transport::Tcp {
        // The first-byte table answers as the parsers would.
        let (client, server) = (super::window(client), super::window(server));
        assert_eq!(
            super::detect_stream(client, server),
            super::ask_stream_candidates(client, server, super::ALL_STREAM_CANDIDATES),
            "the first-byte table decided otherwise"
        );
    }
    if let Progress::Done(detection) = &whole {
        let _ = detection.app().as_str();
    }
    if transport != Transport::Tcp || client.len() < 2 {
        return;
    }
    // Streaming: a client prefix that decided must decide the same way.
    for cut in cuts(client) {
        let partial = detect(transport, ports, &client[..cut], server);
        assert_consistent(&partial, &whole, cut);
    }
}

/// The client and server parts of an [`app_detect`] input.
pub fn split_flow(rest: &[u8]) -> (&[u8], &[u8]) {
    let (len, flow) = match rest {
        [hi, lo, flow @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), flow),
        _ => (0, rest),
    };
    flow.split_at(len.min(flow.len()))
}

/// Builds an [`app_detect`] input (for seed corpora).
pub fn app_detect_input(udp: bool, port_pair: u8, client: &[u8], server: &[u8]) -> Vec<u8> {
    let mut out = vec![(port_pair << 1) | u8::from(udp)];
    let len = u16::try_from(client.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(client);
    out.extend_from_slice(server);
    out
}

fn check_streaming<T: std::fmt::Debug + PartialEq>(data: &[u8], parse: fn(&[u8]) -> Progress<T>) {
    let whole = parse(data);
    let _ = format!("{whole:?}");
    if data.len() >= INSPECT_LIMIT {
        assert!(!whole.is_need_more(), "waited on a full window");
    }
    for cut in cuts(data) {
        assert_consistent(&parse(&data[..cut]), &whole, cut);
    }
}

/// Three cut points: one chosen by the data's last byte, the middle, and
/// one byte short of the end (all at least 1 when the data is not empty).
fn cuts(data: &[u8]) -> [usize; 3] {
    let len = data.len();
    let chosen = data.last().map_or(0, |&b| usize::from(b) * len / 255);
    [chosen, len.div_ceil(2), len.saturating_sub(1)].map(|cut| cut.clamp(len.min(1), len))
}

fn assert_consistent<T: std::fmt::Debug + PartialEq>(
    partial: &Progress<T>,
    whole: &Progress<T>,
    cut: usize,
) {
    match partial {
        Progress::Done(_) => {
            assert_eq!(partial, whole, "a prefix of {cut} bytes decided otherwise")
        }
        Progress::NotThis => assert_eq!(
            whole,
            &Progress::NotThis,
            "a prefix of {cut} bytes was rejected, the whole was not"
        ),
        Progress::NeedMore => {}
    }
}
