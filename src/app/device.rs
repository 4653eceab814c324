//! Medical device protocols, recognised by port and signature: a label
//! only, no fields (their payloads are vital signs, lab results and
//! patient context).
//!
//! | label | transport | signature |
//! |---|---|---|
//! | IntelliVue | UDP 24005/24105 | Data Export session header `0xE1 0x00`, or a session SPDU (connect 0x0D, accept 0x0E, refuse 0x0C, finish 0x09, disconnect 0x0A, abort 0x19) whose length indicator matches the datagram |
//! | SDC discovery | UDP 3702 | a WS-Discovery SOAP envelope naming `MedicalDevice`, an IEEE 11073 namespace, or SDC scopes (`sdc.ctxt.`, `sdc.mds.`) |
//! | WS-Discovery | UDP 3702 | a WS-Discovery SOAP envelope without those (printers, cameras, ...) |
//! | GE Unity time sync | UDP 2000 | a 106-byte datagram whose bytes 25-37 hold printable `<unit>\|<room>` text |
//! | ASTM E1381/E1394 | TCP | `ENQ`, then an `STX`, frame digit and header record `H` with its four delimiters; or an unframed `H\|\^&` header record |
//! | POCT1-A | TCP | an XML message whose root is a POCT1-A message type (`HEL.R01`, `DST.R01`, `OBS.R01`, `EOT.R01`, `ACK.R01`, ...) |
//!
//! Sources: the segwatch IoMT notes (section A4), which cite the Philips
//! Data Export Programming Guide, sdc11073, GE service documentation, CLSI
//! LIS1-A/LIS2-A2 and the POCT1-A standard. GE's UDP 7000 discovery
//! heartbeat (RWHAT) is not recognised: no byte signature for it is known,
//! and port 7000 alone names too many other things.

use super::bytes::{agrees_with, find};
use super::{App, FlowPorts, Progress, at_limit};

/// A device protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceProtocol {
    /// Philips IntelliVue Data Export.
    IntelliVue,
    /// IEEE 11073 SDC discovery (WS-Discovery naming a medical device).
    SdcDiscovery,
    /// WS-Discovery of a device that does not claim to be medical.
    WsDiscovery,
    /// GE Unity/CARESCAPE network time-sync broadcast.
    GeUnityTimeSync,
    /// ASTM E1381/E1394 laboratory analyser messages.
    Astm,
    /// POCT1-A point-of-care messages.
    Poct1a,
}

impl DeviceProtocol {
    /// The [`App`] of this protocol.
    pub fn app(self) -> App {
        match self {
            DeviceProtocol::IntelliVue => App::IntelliVue,
            DeviceProtocol::SdcDiscovery => App::SdcDiscovery,
            DeviceProtocol::WsDiscovery => App::WsDiscovery,
            DeviceProtocol::GeUnityTimeSync => App::GeUnityTimeSync,
            DeviceProtocol::Astm => App::Astm,
            DeviceProtocol::Poct1a => App::Poct1a,
        }
    }

    /// The app's stable name.
    pub fn as_str(self) -> &'static str {
        self.app().as_str()
    }
}

/// IntelliVue's UDP ports: 24005 the monitor's connect indication
/// broadcast, 24105 the data export protocol.
pub const INTELLIVUE_PORTS: [u16; 2] = [24005, 24105];
/// WS-Discovery's port (SOAP-over-UDP multicast 239.255.255.250 / ff02::c).
pub const WS_DISCOVERY_PORT: u16 = 3702;
/// GE Unity/CARESCAPE time-sync broadcast port.
pub const GE_TIME_SYNC_PORT: u16 = 2000;
/// The size of a GE Unity time-sync broadcast.
const GE_TIME_SYNC_LEN: usize = 106;

/// A device protocol in one UDP datagram, judged with the flow's ports.
pub fn parse_datagram(ports: FlowPorts, datagram: &[u8]) -> Option<DeviceProtocol> {
    if !may_use_ports(ports) {
        return None;
    }
    if INTELLIVUE_PORTS.iter().any(|&p| ports.either(p)) && is_intellivue(datagram) {
        return Some(DeviceProtocol::IntelliVue);
    }
    if ports.either(WS_DISCOVERY_PORT) {
        return ws_discovery(datagram);
    }
    if ports.either(GE_TIME_SYNC_PORT) && is_ge_time_sync(datagram) {
        return Some(DeviceProtocol::GeUnityTimeSync);
    }
    None
}

/// True when a device protocol may be carried in datagrams between these
/// ports: every other pair is `None` for [`parse_datagram`], whatever the
/// bytes.
#[inline]
pub(crate) fn may_use_ports(ports: FlowPorts) -> bool {
    let device_port = |port| {
        INTELLIVUE_PORTS.contains(&port) || port == WS_DISCOVERY_PORT || port == GE_TIME_SYNC_PORT
    };
    device_port(ports.client) || device_port(ports.server)
}

/// True when a device protocol's stream may start with `byte`: every other
/// first byte is [`Progress::NotThis`] for [`parse_stream`].
pub(crate) const fn may_open(byte: u8) -> bool {
    matches!(byte, ENQ | STX | b'H' | b'<' | 0xEF)
}

/// A device protocol at the start of a TCP stream.
pub fn parse_stream(bytes: &[u8]) -> Progress<DeviceProtocol> {
    let bytes = super::window(bytes);
    match bytes.first() {
        None => Progress::NeedMore,
        Some(&ENQ | &STX | &b'H') => astm(bytes),
        Some(&b'<' | &0xEF) => poct1a(bytes),
        Some(_) => Progress::NotThis,
    }
}

/// Data Export: the session header 0xE1 0x00 and a presentation context
/// ID (4 bytes at least). Association control: a session SPDU type and a
/// length indicator (one byte, or 0xFF and two bytes) counting exactly the
/// bytes that follow it.
fn is_intellivue(datagram: &[u8]) -> bool {
    const SESSION_SPDU_TYPES: [u8; 6] = [0x0D, 0x0E, 0x0C, 0x09, 0x0A, 0x19];
    match datagram {
        [0xE1, 0x00, _, _, ..] => true,
        [spdu, 0xFF, hi, lo, rest @ ..] if SESSION_SPDU_TYPES.contains(spdu) => {
            usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len()
        }
        [spdu, len, rest @ ..] if SESSION_SPDU_TYPES.contains(spdu) => {
            *len != 0xFF && usize::from(*len) == rest.len() && !rest.is_empty()
        }
        _ => false,
    }
}

/// WS-Discovery: an XML SOAP envelope in the WS-Discovery namespace (2005
/// draft or the OASIS 2009 standard). SDC when it also names a medical
/// device, an IEEE 11073 namespace or SDC location/MDS scopes.
fn ws_discovery(datagram: &[u8]) -> Option<DeviceProtocol> {
    let xml = skip_bom_and_space(datagram);
    if xml.first() != Some(&b'<') || find(xml, b"Envelope").is_none() {
        return None;
    }
    let ws_discovery = find(xml, b"schemas.xmlsoap.org/ws/2005/04/discovery").is_some()
        || find(xml, b"docs.oasis-open.org/ws-dd/ns/discovery").is_some();
    if !ws_discovery {
        return None;
    }
    let medical = find(xml, b"MedicalDevice").is_some()
        || find(xml, b"11073").is_some()
        || find(xml, b"sdc.ctxt.").is_some()
        || find(xml, b"sdc.mds.").is_some();
    Some(if medical {
        DeviceProtocol::SdcDiscovery
    } else {
        DeviceProtocol::WsDiscovery
    })
}

/// 106 bytes; bytes 25 to 37 hold `<unit>|<room>`, printable up to any NUL
/// padding, with the bar in it.
fn is_ge_time_sync(datagram: &[u8]) -> bool {
    if datagram.len() != GE_TIME_SYNC_LEN {
        return false;
    }
    let Some(label) = datagram.get(25..38) else {
        return false;
    };
    let text_len = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    let text = label.get(..text_len).unwrap_or_default();
    text.len() >= 3
        && text.contains(&b'|')
        && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        && label.iter().skip(text_len).all(|&b| b == 0)
}

/// E1381 control characters.
const ENQ: u8 = 0x05;
const STX: u8 = 0x02;

/// ASTM: `ENQ` (alone until the receiver's ACK), then a frame; or a frame
/// (`STX`, frame number 0-7, the record); or an unframed header record.
/// A header record is `H` and four distinct delimiters (field, repeat,
/// component, escape: normally `|\^&`).
fn astm(bytes: &[u8]) -> Progress<DeviceProtocol> {
    let (frame, framed) = match bytes {
        [ENQ] => return Progress::NeedMore,
        [ENQ, rest @ ..] => (rest, true),
        [STX, ..] => (bytes, true),
        _ => (bytes, false),
    };
    let record = if framed {
        match frame {
            [] | [STX] => return Progress::NeedMore,
            [STX, digit, record @ ..] if (b'0'..=b'7').contains(digit) => record,
            _ => return Progress::NotThis,
        }
    } else {
        frame
    };
    if framed {
        header_record(record, None)
    } else {
        // Without framing, only the standard delimiters are taken as ASTM.
        header_record(record, Some(b"H|\\^&"))
    }
}

fn header_record(record: &[u8], exact: Option<&[u8; 5]>) -> Progress<DeviceProtocol> {
    let head = record.get(..5).unwrap_or(record);
    let delimiters = head.get(1..).unwrap_or_default();
    let valid_so_far = match exact {
        Some(expected) => expected.starts_with(head),
        None => {
            head.first().is_none_or(|&b| b == b'H')
                && delimiters.iter().all(u8::is_ascii_punctuation)
                && delimiters
                    .iter()
                    .enumerate()
                    .all(|(i, b)| !delimiters.get(i + 1..).unwrap_or_default().contains(b))
        }
    };
    if !valid_so_far {
        Progress::NotThis
    } else if head.len() < 5 {
        Progress::NeedMore
    } else {
        Progress::Done(DeviceProtocol::Astm)
    }
}

/// POCT1-A message types (the root element names of its XML messages).
const POCT1A_MESSAGES: [&[u8]; 14] = [
    b"HEL.R01", b"DST.R01", b"REQ.R01", b"OBS.R01", b"OBS.R02", b"EOT.R01", b"ACK.R01", b"END.R01",
    b"DTV.R01", b"DTV.R02", b"OPL.R01", b"OPL.R02", b"EVS.R01", b"ESC.R01",
];
/// An XML declaration longer than this is not waited for.
const MAX_XML_PROLOG: usize = 512;

/// POCT1-A: optional BOM, whitespace and `<?xml ...?>` declaration, then
/// `<` and a POCT1-A message type as the root element.
fn poct1a(bytes: &[u8]) -> Progress<DeviceProtocol> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let after_bom = if bytes.first() == Some(&0xEF) {
        if !agrees_with(bytes, BOM) {
            return Progress::NotThis;
        }
        match bytes.get(BOM.len()..) {
            Some(rest) => rest,
            None => return Progress::NeedMore,
        }
    } else {
        bytes
    };
    let mut xml = after_bom.trim_ascii_start();
    if agrees_with(xml, b"<?xml") && xml.len() < 5 {
        return Progress::NeedMore;
    }
    if xml.starts_with(b"<?xml") {
        // The declaration's end is looked for only within its bound, so
        // that a longer input cannot turn a `NotThis` into a match.
        let prolog = xml.get(..MAX_XML_PROLOG).unwrap_or(xml);
        let Some(end) = find(prolog, b"?>") else {
            return if prolog.len() < MAX_XML_PROLOG {
                Progress::NeedMore
            } else {
                Progress::NotThis
            };
        };
        xml = xml.get(end + 2..).unwrap_or_default().trim_ascii_start();
    }
    let Some((&open, name)) = xml.split_first() else {
        return if at_limit(bytes) {
            Progress::NotThis
        } else {
            Progress::NeedMore
        };
    };
    // `<` then the message type, then `>` or whitespace (attributes).
    let head = name.get(..7).unwrap_or(name);
    if open != b'<' || !POCT1A_MESSAGES.iter().any(|m| m.starts_with(head)) {
        return Progress::NotThis;
    }
    match name.get(7) {
        None => Progress::NeedMore,
        Some(b'>' | b' ' | b'\t' | b'\r' | b'\n') => Progress::Done(DeviceProtocol::Poct1a),
        Some(_) => Progress::NotThis,
    }
}

fn skip_bom_and_space(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(bytes)
        .trim_ascii_start()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn udp(port: u16) -> FlowPorts {
        FlowPorts {
            client: 50000,
            server: port,
        }
    }

    pub(crate) const SDC_HELLO: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><s12:Envelope xmlns:s12="http://www.w3.org/2003/05/soap-envelope" xmlns:wsd="http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01" xmlns:dpws="http://docs.oasis-open.org/ws-dd/ns/dpws/2009/01" xmlns:mdpws="http://standards.ieee.org/downloads/11073/11073-20702-2016"><s12:Body><wsd:Hello><wsd:Types>dpws:Device mdpws:MedicalDevice</wsd:Types><wsd:Scopes>sdc.ctxt.loc:/sdc.ctxt.loc.detail/?fac=HOSP&amp;poc=ICU&amp;bed=03</wsd:Scopes></wsd:Hello></s12:Body></s12:Envelope>"#;

    pub(crate) const PRINTER_PROBE_MATCH: &[u8] = br#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch><wsd:Types>wsdp:Device print:PrintDeviceType</wsd:Types></wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>"#;

    pub(crate) fn ge_time_sync() -> Vec<u8> {
        let mut datagram = vec![0u8; GE_TIME_SYNC_LEN];
        datagram[25..33].copy_from_slice(b"ICU2|R12");
        datagram[61..65].copy_from_slice(&3_900_000_000u32.to_be_bytes());
        datagram
    }

    pub(crate) const ASTM_FRAME: &[u8] = b"\x05\x021H|\\^&|||cobas^1|||||||P|1\r\x0312\r\n";
    pub(crate) const POCT_HELLO: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<HEL.R01><HDR><HDR.control_id V=\"1\"/></HDR></HEL.R01>";

    #[test]
    fn intellivue_data_export_and_session_spdus() {
        assert_eq!(
            parse_datagram(udp(24105), &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x01]),
            Some(DeviceProtocol::IntelliVue)
        );
        // Association request: CN_SPDU_SI and a one-byte length indicator.
        let mut connect = vec![0x0D, 4, 0x05, 0x08, 0x13, 0x01];
        assert_eq!(
            parse_datagram(udp(24105), &connect),
            Some(DeviceProtocol::IntelliVue)
        );
        connect.push(0);
        assert_eq!(
            parse_datagram(udp(24105), &connect),
            None,
            "length mismatch"
        );
        let long = [&[0x0E, 0xFF, 0x00, 0x02][..], &[1, 2]].concat();
        assert_eq!(
            parse_datagram(udp(24005), &long),
            Some(DeviceProtocol::IntelliVue)
        );
        assert_eq!(parse_datagram(udp(5000), &[0xE1, 0x00, 0x00, 0x02]), None);
        assert_eq!(parse_datagram(udp(24105), &[0xE1, 0x00]), None);
    }

    #[test]
    fn sdc_and_plain_ws_discovery() {
        assert_eq!(
            parse_datagram(udp(3702), SDC_HELLO),
            Some(DeviceProtocol::SdcDiscovery)
        );
        assert_eq!(
            parse_datagram(udp(3702), PRINTER_PROBE_MATCH),
            Some(DeviceProtocol::WsDiscovery)
        );
        assert_eq!(parse_datagram(udp(3702), b"<html>Envelope</html>"), None);
        assert_eq!(parse_datagram(udp(3703), SDC_HELLO), None);
    }

    #[test]
    fn ge_unity_time_sync() {
        let datagram = ge_time_sync();
        assert_eq!(
            parse_datagram(udp(2000), &datagram),
            Some(DeviceProtocol::GeUnityTimeSync)
        );
        assert_eq!(parse_datagram(udp(2000), &datagram[..105]), None);
        let mut no_bar = datagram.clone();
        no_bar[29] = b'-';
        assert_eq!(parse_datagram(udp(2000), &no_bar), None);
        let mut binary = datagram;
        binary[27] = 0x01;
        assert_eq!(parse_datagram(udp(2000), &binary), None);
    }

    #[test]
    fn astm_framed_and_unframed() {
        assert_eq!(
            parse_stream(ASTM_FRAME),
            Progress::Done(DeviceProtocol::Astm)
        );
        for cut in 0..8 {
            assert_eq!(
                parse_stream(&ASTM_FRAME[..cut]),
                Progress::NeedMore,
                "cut {cut}"
            );
        }
        assert_eq!(
            parse_stream(&ASTM_FRAME[1..]),
            Progress::Done(DeviceProtocol::Astm)
        );
        assert_eq!(
            parse_stream(b"H|\\^&|||LIS\r"),
            Progress::Done(DeviceProtocol::Astm)
        );
        assert_eq!(parse_stream(b"HTTP/1.1 200 OK"), Progress::NotThis);
        assert_eq!(parse_stream(b"H|^^&"), Progress::NotThis);
        assert_eq!(
            parse_stream(b"\x05\x029H|\\^&"),
            Progress::NotThis,
            "frame number 9"
        );
        assert_eq!(
            parse_stream(b"\x05\x021H||^&"),
            Progress::NotThis,
            "repeated delimiter"
        );
        assert_eq!(parse_stream(b"\x05\x00\x00\x00\x00\x04"), Progress::NotThis);
    }

    #[test]
    fn poct1a_messages() {
        assert_eq!(
            parse_stream(POCT_HELLO),
            Progress::Done(DeviceProtocol::Poct1a)
        );
        assert_eq!(
            parse_stream(b"\xEF\xBB\xBF<OBS.R01 xmlns=\"x\">"),
            Progress::Done(DeviceProtocol::Poct1a)
        );
        for cut in 0..POCT_HELLO.len() {
            let p = parse_stream(&POCT_HELLO[..cut]);
            assert!(
                p == Progress::NeedMore || p == Progress::Done(DeviceProtocol::Poct1a),
                "cut {cut}: {p:?}"
            );
        }
        for not in [
            &b"<html>"[..],
            b"<?xml version=\"1.0\"?><soap:Envelope>",
            b"<HEL.R011>",
        ] {
            assert_eq!(
                parse_stream(not),
                Progress::NotThis,
                "{}",
                String::from_utf8_lossy(not)
            );
        }
    }

    #[test]
    fn cuts_and_flips_never_panic() {
        let ge = ge_time_sync();
        for sample in [SDC_HELLO, PRINTER_PROBE_MATCH, ASTM_FRAME, POCT_HELLO, &ge] {
            for cut in 0..=sample.len() {
                let _ = parse_stream(&sample[..cut]);
                for port in [24105, 3702, 2000] {
                    let _ = parse_datagram(udp(port), &sample[..cut]);
                }
            }
            for i in 0..sample.len() {
                let mut flipped = sample.to_vec();
                flipped[i] ^= 0x80;
                let _ = parse_stream(&flipped);
                let _ = parse_datagram(udp(3702), &flipped);
            }
        }
    }
}
