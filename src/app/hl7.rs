//! HL7 v2 over MLLP: the header of the first message of a direction.
//!
//! Framing (HL7 v2.5.1 appendix C): `0x0B`, the message, `0x1C 0x0D`.
//! Segments end with `0x0D`. MLLP release 2 adds the commit acknowledgement
//! `0x0B 0x06 0x1C 0x0D` and negative acknowledgement `0x0B 0x15 0x1C 0x0D`.
//! A message that starts the stream without MLLP framing (`MSH` first) is
//! accepted too, as [`Framing::Bare`].
//!
//! Read, from the MSH segment only: MSH-3 sending application, MSH-4
//! sending facility, MSH-5 receiving application, MSH-6 receiving facility,
//! MSH-9 message type (its first two components, e.g. `ADT^A01`) and
//! MSH-12 version (its first component). MSH-1 gives the field separator
//! and MSH-2's first character the component separator, as the message
//! declares them. Then, if the next segment (after optional SFT and UAC
//! segments) is MSA, MSA-1, the acknowledgement code (AA, AE, AR, CA, CE,
//! CR).
//!
//! Never read: any other segment. PID, PD1, NK1, PV1/PV2, IN1, GT1, AL1,
//! DG1, ORC, OBR, OBX, ... carry patient names, identifiers, addresses,
//! diagnoses and results. The parser reads only the three-letter ID of the
//! segment after MSH (to know whether it is MSA) and stops there. MSH-7
//! (time of message) and MSH-10 (message control ID) are not kept either:
//! a control ID names one message, and joins the event to the interface
//! engine's logs of that message, which hold the patient data.

use super::bytes::{agrees_with, printable};
use super::{Progress, at_limit};

/// MLLP start block.
pub const MLLP_START: u8 = 0x0B;
/// MLLP end block (followed by a carriage return).
pub const MLLP_END: u8 = 0x1C;
/// HL7 segment terminator.
const SEGMENT_END: u8 = b'\r';

/// At most this many bytes of an application or facility (HD: 227 in v2.5).
const MAX_HD_LEN: usize = 128;
/// At most this many bytes of one component of a message type or version.
const MAX_CODE_LEN: usize = 16;
/// How many SFT/UAC segments may come between MSH and MSA before the parser
/// gives up looking for an acknowledgement.
const MAX_SEGMENTS_BEFORE_MSA: usize = 8;

/// How the message was framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// MLLP: `0x0B` ... `0x1C 0x0D`.
    Mllp,
    /// No framing: `MSH` at the start of the stream.
    Bare,
}

/// The first message of one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hl7Message {
    /// An HL7 message, by its header.
    Message(Hl7Header),
    /// MLLP release 2 commit acknowledgement (`0x06`).
    CommitAck,
    /// MLLP release 2 negative commit acknowledgement (`0x15`).
    CommitNak,
}

/// The header fields of an HL7 message (all as sent, capped, made printable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hl7Header {
    /// How the message was framed.
    pub framing: Framing,
    /// MSH-3 sending application.
    pub sending_application: Option<String>,
    /// MSH-4 sending facility.
    pub sending_facility: Option<String>,
    /// MSH-5 receiving application.
    pub receiving_application: Option<String>,
    /// MSH-6 receiving facility.
    pub receiving_facility: Option<String>,
    /// MSH-9 message code and trigger event, joined by `^` (`ADT^A01`,
    /// `ORU^R01`, `ACK`).
    pub message_type: Option<String>,
    /// MSH-12 version ID (`2.3`, `2.5.1`).
    pub version: Option<String>,
    /// MSA-1, when the message is an acknowledgement.
    pub ack_code: Option<AckCode>,
    /// The MSH segment did not end within the inspection window.
    pub truncated: bool,
}

/// MSA-1 acknowledgement code (HL7 table 0008).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCode {
    /// AA: original mode application accept.
    ApplicationAccept,
    /// AE: original mode application error.
    ApplicationError,
    /// AR: original mode application reject.
    ApplicationReject,
    /// CA: enhanced mode commit accept.
    CommitAccept,
    /// CE: enhanced mode commit error.
    CommitError,
    /// CR: enhanced mode commit reject.
    CommitReject,
    /// Any other value (not kept).
    Other,
}

impl AckCode {
    fn from_field(field: &[u8]) -> AckCode {
        match field {
            b"AA" => AckCode::ApplicationAccept,
            b"AE" => AckCode::ApplicationError,
            b"AR" => AckCode::ApplicationReject,
            b"CA" => AckCode::CommitAccept,
            b"CE" => AckCode::CommitError,
            b"CR" => AckCode::CommitReject,
            _ => AckCode::Other,
        }
    }

    /// The code as HL7 writes it (`other` for an unknown one).
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::ApplicationAccept => "AA",
            AckCode::ApplicationError => "AE",
            AckCode::ApplicationReject => "AR",
            AckCode::CommitAccept => "CA",
            AckCode::CommitError => "CE",
            AckCode::CommitReject => "CR",
            AckCode::Other => "other",
        }
    }

    /// True for the accept codes (AA, CA).
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::ApplicationAccept | AckCode::CommitAccept)
    }
}

/// The first message of each side of an HL7 connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hl7Info {
    /// The client's first message; `None` when only the server was seen.
    pub client: Option<Hl7Message>,
    /// The server's first message (normally the ACK); `None` when it has not
    /// arrived.
    pub server: Option<Hl7Message>,
}

impl Hl7Info {
    /// The header of the client's first message, if it sent one.
    pub fn request(&self) -> Option<&Hl7Header> {
        match &self.client {
            Some(Hl7Message::Message(header)) => Some(header),
            _ => None,
        }
    }

    /// The header of the server's first message, if it sent one.
    pub fn reply(&self) -> Option<&Hl7Header> {
        match &self.server {
            Some(Hl7Message::Message(header)) => Some(header),
            _ => None,
        }
    }
}

/// True when a client that sent `message` waits for an acknowledgement:
/// every message but an acknowledgement itself (original-mode MLLP).
pub fn expects_reply(message: &Hl7Message) -> bool {
    matches!(message, Hl7Message::Message(header) if header.ack_code.is_none())
}

/// The borrowed fields of an MSH segment, before anything is copied.
struct Msh<'a> {
    fields: &'a [u8],
    field_separator: u8,
    component_separator: u8,
}

impl<'a> Msh<'a> {
    /// MSH-n for n >= 3 (MSH-1 is the separator itself and MSH-2 the
    /// encoding characters, so MSH-n is field n - 1 after splitting on the
    /// separator, counting "MSH" as field 0).
    fn field(&self, n: usize) -> &'a [u8] {
        self.fields
            .split(|&b| b == self.field_separator)
            .nth(n - 1)
            .unwrap_or_default()
    }

    /// The first `count` components of MSH-n, joined by `^` whatever the
    /// message's own component separator.
    fn components(&self, n: usize, count: usize) -> Option<String> {
        let mut out = String::new();
        let parts = self.field(n).split(|&b| b == self.component_separator);
        for (i, component) in parts.take(count).enumerate() {
            if component.is_empty() {
                break;
            }
            if i > 0 {
                out.push('^');
            }
            out.push_str(&printable(component, MAX_CODE_LEN));
        }
        (!out.is_empty()).then_some(out)
    }

    fn text(&self, n: usize) -> Option<String> {
        let field = self.field(n);
        (!field.is_empty()).then(|| printable(field, MAX_HD_LEN))
    }
}

/// True when a message may start with `byte` (MLLP's start block, or the
/// `M` of a bare `MSH`): every other first byte is [`Progress::NotThis`] for
/// [`parse_message`].
pub(crate) const fn may_open(byte: u8) -> bool {
    byte == MLLP_START || byte == b'M'
}

/// Parses the first HL7 message (or MLLP commit acknowledgement) of a
/// direction.
pub fn parse_message(bytes: &[u8]) -> Progress<Hl7Message> {
    let bytes = super::window(bytes);
    let (framing, body) = match bytes.split_first() {
        None => return Progress::NeedMore,
        Some((&MLLP_START, rest)) => (Framing::Mllp, rest),
        Some((b'M', _)) => (Framing::Bare, bytes),
        Some(_) => return Progress::NotThis,
    };
    if framing == Framing::Mllp {
        match body.first() {
            Some(&code @ (0x06 | 0x15)) => return commit(code, body),
            None => return Progress::NeedMore,
            Some(_) => {}
        }
    }
    // "MSH", the field separator, the encoding characters, the separator.
    if !agrees_with(body, b"MSH") {
        return Progress::NotThis;
    }
    let Some(&field_separator) = body.get(3) else {
        return Progress::NeedMore;
    };
    if !is_delimiter(field_separator) {
        return Progress::NotThis;
    }
    // MSH-2: 2 to 5 encoding characters (component, repetition, escape,
    // subcomponent, and truncation since v2.7), each a delimiter.
    let encoding = body.get(4..).unwrap_or_default();
    let encoding_len = encoding
        .iter()
        .take_while(|&&b| b != field_separator)
        .count();
    if encoding
        .iter()
        .take(encoding_len.min(6))
        .any(|&b| !is_delimiter(b))
        || encoding_len > 5
    {
        return Progress::NotThis;
    }
    if encoding_len == encoding.len() {
        return Progress::NeedMore;
    }
    if encoding_len < 2 {
        return Progress::NotThis;
    }
    let Some(&component_separator) = encoding.first() else {
        return Progress::NeedMore;
    };
    // The MSH segment runs to its terminator (or the MLLP end block, or a
    // line feed from a sender that gets it wrong).
    let msh_end = body.iter().position(|&b| is_segment_end(b));
    let Some(msh_end) = msh_end.or_else(|| at_limit(bytes).then_some(body.len())) else {
        return Progress::NeedMore;
    };
    let truncated = msh_end == body.len();
    let msh = Msh {
        fields: body.get(..msh_end).unwrap_or_default(),
        field_separator,
        component_separator,
    };
    let ack = if truncated {
        AckSearch::NoAck
    } else {
        find_ack(body.get(msh_end..).unwrap_or_default(), field_separator)
    };
    let ack_code = match ack {
        AckSearch::Found(code) => Some(code),
        AckSearch::NoAck => None,
        AckSearch::NeedMore if at_limit(bytes) => None,
        AckSearch::NeedMore => return Progress::NeedMore,
    };
    Progress::Done(Hl7Message::Message(Hl7Header {
        framing,
        sending_application: msh.text(3),
        sending_facility: msh.text(4),
        receiving_application: msh.text(5),
        receiving_facility: msh.text(6),
        message_type: msh.components(9, 2),
        version: msh.components(12, 1),
        ack_code,
        truncated,
    }))
}

/// `0x0B`, then `0x06` (ACK) or `0x15` (NAK), then `0x1C 0x0D`.
fn commit(code: u8, body: &[u8]) -> Progress<Hl7Message> {
    let expected = [code, MLLP_END, SEGMENT_END];
    if !agrees_with(body, &expected) {
        Progress::NotThis
    } else if body.len() < expected.len() {
        Progress::NeedMore
    } else if code == 0x06 {
        Progress::Done(Hl7Message::CommitAck)
    } else {
        Progress::Done(Hl7Message::CommitNak)
    }
}

/// A byte HL7 accepts as a delimiter: printable, not alphanumeric, not a
/// space.
fn is_delimiter(byte: u8) -> bool {
    byte.is_ascii_punctuation()
}

fn is_segment_end(byte: u8) -> bool {
    byte == SEGMENT_END || byte == b'\n' || byte == MLLP_END
}

enum AckSearch {
    Found(AckCode),
    NoAck,
    NeedMore,
}

/// Looks for MSA-1 in `rest`, which starts at the terminator of MSH. Only
/// segment IDs are looked at, and only SFT and UAC segments (software and
/// authorization headers, which v2.5+ allows before MSA) are stepped over;
/// any other segment ends the search without a look at its fields.
fn find_ack(mut rest: &[u8], field_separator: u8) -> AckSearch {
    for _ in 0..=MAX_SEGMENTS_BEFORE_MSA {
        // Step over the terminator(s) of the previous segment.
        let Some(start) = rest.iter().position(|&b| b != SEGMENT_END && b != b'\n') else {
            return AckSearch::NeedMore;
        };
        rest = rest.get(start..).unwrap_or_default();
        if rest.first() == Some(&MLLP_END) {
            return AckSearch::NoAck;
        }
        let (Some(id), Some(&separator)) = (rest.get(..3), rest.get(3)) else {
            return AckSearch::NeedMore;
        };
        if separator != field_separator {
            return AckSearch::NoAck;
        }
        let fields = rest.get(4..).unwrap_or_default();
        let field_end = fields.iter().position(|&b| is_segment_end(b));
        match id {
            b"MSA" => {
                let Some(end) = fields
                    .iter()
                    .position(|&b| b == field_separator || is_segment_end(b))
                else {
                    return AckSearch::NeedMore;
                };
                return AckSearch::Found(AckCode::from_field(
                    fields.get(..end).unwrap_or_default(),
                ));
            }
            b"SFT" | b"UAC" => {
                let Some(end) = field_end else {
                    return AckSearch::NeedMore;
                };
                rest = fields.get(end..).unwrap_or_default();
            }
            _ => return AckSearch::NoAck,
        }
    }
    AckSearch::NoAck
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ADT^A01 as a lab interface sends it, with a made-up patient.
    pub(crate) const ADT: &[u8] = b"\x0bMSH|^~\\&|EPIC|NORTH_CAMPUS|LAB_SYS|CORE_LAB|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5.1\rEVN|A01|20240101120000\rPID|1||ZZQX-CANARY-0001^^^HOSP^MR||CANARY^PATIENT^ZZQX||19700101|F|||1 Canary Row^^Springfield\rPV1|1|I|ICU^01^A\r\x1c\r";

    pub(crate) const ACK: &[u8] = b"\x0bMSH|^~\\&|LAB_SYS|CORE_LAB|EPIC|NORTH_CAMPUS|20240101120001||ACK^A01|ACK00001|P|2.5.1\rMSA|AE|MSG00001|PID-3 ZZQX-CANARY-0001 unknown\r\x1c\r";

    fn header(bytes: &[u8]) -> Hl7Header {
        match parse_message(bytes) {
            Progress::Done(Hl7Message::Message(header)) => header,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn msh_fields_of_a_message() {
        let h = header(ADT);
        assert_eq!(h.framing, Framing::Mllp);
        assert_eq!(h.sending_application.as_deref(), Some("EPIC"));
        assert_eq!(h.sending_facility.as_deref(), Some("NORTH_CAMPUS"));
        assert_eq!(h.receiving_application.as_deref(), Some("LAB_SYS"));
        assert_eq!(h.receiving_facility.as_deref(), Some("CORE_LAB"));
        assert_eq!(h.message_type.as_deref(), Some("ADT^A01"));
        assert_eq!(h.version.as_deref(), Some("2.5.1"));
        assert_eq!(h.ack_code, None);
        assert!(expects_reply(&Hl7Message::Message(h.clone())));
        let debug = format!("{h:?}");
        assert!(
            !debug.contains("ZZQX") && !debug.contains("MSG00001"),
            "{debug}"
        );
    }

    #[test]
    fn msa_of_an_acknowledgement() {
        let h = header(ACK);
        assert_eq!(h.message_type.as_deref(), Some("ACK^A01"));
        assert_eq!(h.ack_code, Some(AckCode::ApplicationError));
        assert!(!format!("{h:?}").contains("ZZQX"));
        // SFT and UAC may come first; anything else means no MSA.
        let with_sft = b"MSH|^~\\&|A|B|C|D|||ACK|1|P|2.7\rSFT|Vendor|1.0\rUAC|x\rMSA|CA|1\r";
        assert_eq!(header(with_sft).ack_code, Some(AckCode::CommitAccept));
        assert_eq!(header(with_sft).framing, Framing::Bare);
        let msa_later = b"MSH|^~\\&|A|B|C|D|||ACK|1|P|2.7\rERR|x\rMSA|AA|1\r";
        assert_eq!(header(msa_later).ack_code, None);
        let odd_code = b"MSH|^~\\&|A|B|C|D|||ACK|1|P|2.3\rMSA|ZZ|1\r";
        assert_eq!(header(odd_code).ack_code, Some(AckCode::Other));
    }

    #[test]
    fn separators_are_the_messages_own() {
        let h = header(b"MSH#*~\\&#APP#FAC#RAPP#RFAC#2024##ORU*R01*ORU_R01#1#P#2.4*X\rEVN#1\r");
        assert_eq!(h.sending_application.as_deref(), Some("APP"));
        assert_eq!(h.message_type.as_deref(), Some("ORU^R01"));
        assert_eq!(h.version.as_deref(), Some("2.4"));
        let empty = header(b"MSH|^~\\&|||||\r\x1c\r");
        assert_eq!(empty.sending_application, None);
        assert_eq!(empty.message_type, None);
    }

    #[test]
    fn commit_acknowledgements() {
        assert_eq!(
            parse_message(b"\x0b\x06\x1c\r"),
            Progress::Done(Hl7Message::CommitAck)
        );
        assert_eq!(
            parse_message(b"\x0b\x15\x1c\r"),
            Progress::Done(Hl7Message::CommitNak)
        );
        assert_eq!(parse_message(b"\x0b\x06\x1c"), Progress::NeedMore);
        assert_eq!(parse_message(b"\x0b\x06\x0d"), Progress::NotThis);
    }

    #[test]
    fn not_hl7() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x0bMSX|",
            b"MSH1^~\\&|",   // alphanumeric field separator
            b"MSH|^~\\&A|",  // alphanumeric encoding character
            b"MSH|^~\\&##|", // six encoding characters
            b"MSH||A|B\r",   // no encoding characters
            b"\x0b\x0b",
        ] {
            assert_eq!(parse_message(bytes), Progress::NotThis, "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_needs_more_until_the_header_and_ack_are_complete() {
        for sample in [ADT, ACK] {
            let whole = parse_message(sample);
            // Done once the segment after MSH shows its ID (ADT) or MSA-1 is
            // complete (ACK); NeedMore before.
            let mut first_done = None;
            for cut in 0..=sample.len() {
                match parse_message(&sample[..cut]) {
                    Progress::NeedMore => assert!(first_done.is_none(), "cut {cut}"),
                    Progress::Done(found) => {
                        assert_eq!(Progress::Done(found), whole, "cut {cut}");
                        first_done.get_or_insert(cut);
                    }
                    Progress::NotThis => panic!("NotThis at cut {cut}"),
                }
            }
            let first_done = first_done.unwrap();
            assert!(
                first_done < sample.len() - 10,
                "waited for the whole message"
            );
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        for sample in [ADT, ACK, b"\x0b\x06\x1c\r".as_slice()] {
            for i in 0..sample.len() {
                for bit in 0..8 {
                    let mut flipped = sample.to_vec();
                    flipped[i] ^= 1 << bit;
                    if let Progress::Done(message) = parse_message(&flipped) {
                        assert!(!format!("{message:?}").contains("ZZQX"));
                    }
                }
            }
        }
        // A header without end, longer than the window.
        let mut endless = b"\x0bMSH|^~\\&|".to_vec();
        endless.resize(super::super::INSPECT_LIMIT + 10, b'A');
        let h = header(&endless);
        assert!(h.truncated);
        assert_eq!(h.sending_application.map(|s| s.len()), Some(MAX_HD_LEN));
    }
}
