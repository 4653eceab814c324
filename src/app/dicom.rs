//! DICOM Upper Layer (PS3.8 section 9.3): the first PDU of a direction.
//!
//! Read: the PDU type of every PDU kind; from an A-ASSOCIATE-RQ the called
//! and calling AE titles, each presentation context's ID and the operation
//! class of its abstract syntax, the implementation class UID (0x52) and
//! version name (0x55); from an A-ASSOCIATE-AC each presentation context's
//! result and the responder's implementation UID and version; the result,
//! source and reason of an A-ASSOCIATE-RJ and of an A-ABORT.
//!
//! Never read: P-DATA-TF contents (DICOM data sets carry patient names, IDs
//! and images; a P-DATA is only recognised by its first PDV header), the
//! user identity sub-item 0x58/0x59 (it carries user names, passwords and
//! tokens), the abstract syntax UIDs themselves beyond their class, and the
//! transfer syntaxes.
//!
//! PDU layout (PS3.8 9.3.1): type(1), reserved(1), length(4, big-endian,
//! counting the bytes after the header). A-ASSOCIATE-RQ/AC: protocol
//! version(2) at 6, reserved(2), called AE(16) at 10, calling AE(16) at 26,
//! reserved(32), variable items from 74. Items: type(1), reserved(1),
//! length(2), value.
//!
//! Streaming: a PDU spanning segments answers `NeedMore` until its declared
//! length is present; a PDU longer than [`super::INSPECT_LIMIT`] is parsed
//! as far as the window goes once the window is full, and marked truncated.

use super::bytes::{Reader, agrees_with, be_u16, be_u32, printable, trim_padding};
use super::{Progress, at_limit};

/// Bytes in a PDU header: type, reserved, length.
pub const PDU_HEADER_LEN: usize = 6;

/// Where the variable items of an A-ASSOCIATE-RQ/AC start.
const ASSOCIATE_ITEMS_AT: usize = 74;

/// Field ranges of the fixed part of a PDU.
mod field {
    use std::ops::Range;
    pub const PROTOCOL_VERSION: Range<usize> = 6..8;
    pub const CALLED_AE: Range<usize> = 10..26;
    pub const CALLING_AE: Range<usize> = 26..42;
}

/// The length of the RJ, RELEASE and ABORT PDU bodies (PS3.8 9.3.4, 9.3.6-8).
const SHORT_PDU_BODY_LEN: u32 = 4;

/// The most presentation contexts kept per PDU. Context IDs are odd numbers
/// 1 to 255, so a valid association has at most 128.
pub const MAX_CONTEXTS: usize = 128;

/// At most this many bytes of a UID or version name are kept (PS3.5 caps
/// UIDs at 64 characters, PS3.7 version names at 16).
const MAX_UID_LEN: usize = 64;

/// The PDU types of PS3.8 table 9-11.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PduType {
    /// 0x01 A-ASSOCIATE-RQ.
    AssociateRq = 0x01,
    /// 0x02 A-ASSOCIATE-AC.
    AssociateAc = 0x02,
    /// 0x03 A-ASSOCIATE-RJ.
    AssociateRj = 0x03,
    /// 0x04 P-DATA-TF.
    PData = 0x04,
    /// 0x05 A-RELEASE-RQ.
    ReleaseRq = 0x05,
    /// 0x06 A-RELEASE-RP.
    ReleaseRp = 0x06,
    /// 0x07 A-ABORT.
    Abort = 0x07,
}

impl PduType {
    /// The type of a PDU's first byte.
    pub const fn from_byte(byte: u8) -> Option<PduType> {
        Some(match byte {
            0x01 => PduType::AssociateRq,
            0x02 => PduType::AssociateAc,
            0x03 => PduType::AssociateRj,
            0x04 => PduType::PData,
            0x05 => PduType::ReleaseRq,
            0x06 => PduType::ReleaseRp,
            0x07 => PduType::Abort,
            _ => return None,
        })
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PduType::AssociateRq => "associate_rq",
            PduType::AssociateAc => "associate_ac",
            PduType::AssociateRj => "associate_rj",
            PduType::PData => "p_data",
            PduType::ReleaseRq => "release_rq",
            PduType::ReleaseRp => "release_rp",
            PduType::Abort => "abort",
        }
    }
}

/// The first PDU of one direction, with what is read from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DicomPdu {
    /// A-ASSOCIATE-RQ.
    AssociateRq(AssociateRq),
    /// A-ASSOCIATE-AC.
    AssociateAc(AssociateAc),
    /// A-ASSOCIATE-RJ.
    AssociateRj(AssociateRj),
    /// P-DATA-TF: recognised, never read.
    PData,
    /// A-RELEASE-RQ.
    ReleaseRq,
    /// A-RELEASE-RP.
    ReleaseRp,
    /// A-ABORT.
    Abort(Abort),
}

impl DicomPdu {
    /// The PDU's type.
    pub fn pdu_type(&self) -> PduType {
        match self {
            DicomPdu::AssociateRq(_) => PduType::AssociateRq,
            DicomPdu::AssociateAc(_) => PduType::AssociateAc,
            DicomPdu::AssociateRj(_) => PduType::AssociateRj,
            DicomPdu::PData => PduType::PData,
            DicomPdu::ReleaseRq => PduType::ReleaseRq,
            DicomPdu::ReleaseRp => PduType::ReleaseRp,
            DicomPdu::Abort(_) => PduType::Abort,
        }
    }
}

/// The first PDU of each side of a DICOM association.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DicomInfo {
    /// The client's first PDU; `None` when only the server was seen.
    pub client: Option<DicomPdu>,
    /// The server's first PDU; `None` when it has not arrived.
    pub server: Option<DicomPdu>,
}

impl DicomInfo {
    /// The client's association request, if that is what it sent.
    pub fn request(&self) -> Option<&AssociateRq> {
        match &self.client {
            Some(DicomPdu::AssociateRq(rq)) => Some(rq),
            _ => None,
        }
    }

    /// The server's acceptance, if that is what it answered.
    pub fn accept(&self) -> Option<&AssociateAc> {
        match &self.server {
            Some(DicomPdu::AssociateAc(ac)) => Some(ac),
            _ => None,
        }
    }

    /// The operation classes of the presentation contexts the server
    /// accepted (empty unless both the request and the acceptance were seen).
    pub fn accepted_operations(&self) -> OperationSet {
        let (Some(rq), Some(ac)) = (self.request(), self.accept()) else {
            return OperationSet::EMPTY;
        };
        let mut accepted = OperationSet::EMPTY;
        for result in ac
            .contexts
            .iter()
            .filter(|c| c.result == ContextResult::Acceptance)
        {
            if let Some(context) = rq.contexts.iter().find(|c| c.id == result.id) {
                accepted.insert(context.operation);
            }
        }
        accepted
    }
}

/// An A-ASSOCIATE-RQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociateRq {
    /// Called AE title, space padding trimmed.
    pub called_ae: String,
    /// Calling AE title, space padding trimmed.
    pub calling_ae: String,
    /// The proposed presentation contexts (at most [`MAX_CONTEXTS`]).
    pub contexts: Vec<PresentationContext>,
    /// Implementation class UID (user information sub-item 0x52).
    pub implementation_class_uid: Option<String>,
    /// Implementation version name (sub-item 0x55).
    pub implementation_version_name: Option<String>,
    /// The PDU was longer than the inspection window: items after the cut
    /// were not read.
    pub truncated: bool,
}

impl AssociateRq {
    /// The operation classes the client proposed.
    pub fn operations(&self) -> OperationSet {
        self.contexts.iter().map(|c| c.operation).collect()
    }
}

/// One proposed presentation context: its ID and what its abstract syntax
/// is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresentationContext {
    /// Presentation context ID (odd, 1-255).
    pub id: u8,
    /// The class of the abstract syntax (SOP class) proposed.
    pub operation: OperationClass,
}

/// What an abstract syntax (SOP class) is for, coarsely: the distinction a
/// segmentation policy draws between, say, a modality storing images and a
/// workstation querying the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperationClass {
    /// Verification (C-ECHO), `1.2.840.10008.1.1`.
    Verification,
    /// Storage SOP classes (C-STORE).
    Storage,
    /// Query/Retrieve information models, query (C-FIND).
    Query,
    /// Query/Retrieve information models, retrieve (C-MOVE, C-GET).
    Retrieve,
    /// Modality Worklist, General Purpose Worklist and Unified Procedure Step.
    Worklist,
    /// Modality Performed Procedure Step.
    Mpps,
    /// Storage Commitment Push Model.
    StorageCommitment,
    /// Anything else (print, media, hanging protocols, ...).
    Other,
}

impl OperationClass {
    /// Every class, in [`OperationSet`] bit order.
    pub const ALL: [OperationClass; 8] = [
        OperationClass::Verification,
        OperationClass::Storage,
        OperationClass::Query,
        OperationClass::Retrieve,
        OperationClass::Worklist,
        OperationClass::Mpps,
        OperationClass::StorageCommitment,
        OperationClass::Other,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationClass::Verification => "verification",
            OperationClass::Storage => "storage",
            OperationClass::Query => "query",
            OperationClass::Retrieve => "retrieve",
            OperationClass::Worklist => "worklist",
            OperationClass::Mpps => "mpps",
            OperationClass::StorageCommitment => "storage_commitment",
            OperationClass::Other => "other",
        }
    }

    /// The class of an abstract syntax UID (padding already trimmed).
    pub fn of_abstract_syntax(uid: &[u8]) -> OperationClass {
        // PS3.4 annex B: every storage SOP class of the image/object arc.
        const STORAGE_ARC: &[u8] = b"1.2.840.10008.5.1.4.1.1.";
        // PS3.4 annex C: the query/retrieve information models.
        const QUERY_RETRIEVE_ARC: &[u8] = b"1.2.840.10008.5.1.4.1.2.";
        // PS3.4 annex CC: Unified Procedure Step push/watch/pull/event/query.
        const UPS_ARC: &[u8] = b"1.2.840.10008.5.1.4.34.6.";
        // Storage SOP classes outside the 5.1.4.1.1 arc (seen offered by
        // C-GET clients, which list every storage class they can receive).
        const OTHER_STORAGE: [&[u8]; 10] = [
            b"1.2.840.10008.5.1.1.27",    // Stored Print (retired)
            b"1.2.840.10008.5.1.1.29",    // Hardcopy Grayscale Image (retired)
            b"1.2.840.10008.5.1.1.30",    // Hardcopy Color Image (retired)
            b"1.2.840.10008.5.1.4.34.7",  // RT Beams Delivery Instruction
            b"1.2.840.10008.5.1.4.34.10", // RT Brachy Application Setup Delivery
            b"1.2.840.10008.5.1.4.38.1",  // Hanging Protocol
            b"1.2.840.10008.5.1.4.39.1",  // Color Palette
            b"1.2.840.10008.5.1.4.43.1",  // Generic Implant Template
            b"1.2.840.10008.5.1.4.44.1",  // Implant Assembly Template
            b"1.2.840.10008.5.1.4.45.1",  // Implant Template Group
        ];
        match uid {
            b"1.2.840.10008.1.1" => OperationClass::Verification,
            b"1.2.840.10008.5.1.4.31" | b"1.2.840.10008.5.1.4.32.1" => OperationClass::Worklist,
            b"1.2.840.10008.3.1.2.3.3" => OperationClass::Mpps,
            b"1.2.840.10008.1.20.1" => OperationClass::StorageCommitment,
            _ if uid.starts_with(STORAGE_ARC) || OTHER_STORAGE.contains(&uid) => {
                OperationClass::Storage
            }
            // The model's last arc: .1 FIND, .2 MOVE, .3 GET.
            _ if uid.starts_with(QUERY_RETRIEVE_ARC) => match uid.rsplit(|&b| b == b'.').next() {
                Some(b"1") => OperationClass::Query,
                _ => OperationClass::Retrieve,
            },
            _ if uid.starts_with(UPS_ARC) => OperationClass::Worklist,
            _ => OperationClass::Other,
        }
    }
}

/// A set of [`OperationClass`]es, as bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OperationSet(u8);

impl OperationSet {
    /// No class.
    pub const EMPTY: OperationSet = OperationSet(0);

    /// Adds a class.
    pub fn insert(&mut self, class: OperationClass) {
        self.0 |= 1 << class as u8;
    }

    /// True when `class` is in the set.
    pub fn contains(self, class: OperationClass) -> bool {
        self.0 & (1 << class as u8) != 0
    }

    /// True when the set has no class.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, in [`OperationClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = OperationClass> {
        OperationClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<OperationClass> for OperationSet {
    fn from_iter<I: IntoIterator<Item = OperationClass>>(iter: I) -> OperationSet {
        let mut set = OperationSet::EMPTY;
        for class in iter {
            set.insert(class);
        }
        set
    }
}

impl std::fmt::Debug for OperationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|c| c.as_str()))
            .finish()
    }
}

/// An A-ASSOCIATE-AC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociateAc {
    /// Each presentation context's result (at most [`MAX_CONTEXTS`]).
    pub contexts: Vec<ContextOutcome>,
    /// The responder's implementation class UID (0x52).
    pub implementation_class_uid: Option<String>,
    /// The responder's implementation version name (0x55).
    pub implementation_version_name: Option<String>,
    /// The PDU was longer than the inspection window.
    pub truncated: bool,
}

impl AssociateAc {
    /// How many presentation contexts were accepted.
    pub fn accepted(&self) -> usize {
        self.contexts
            .iter()
            .filter(|c| c.result == ContextResult::Acceptance)
            .count()
    }

    /// How many presentation contexts were refused, for any reason.
    pub fn rejected(&self) -> usize {
        self.contexts.len() - self.accepted()
    }
}

/// The result of one presentation context in an A-ASSOCIATE-AC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOutcome {
    /// Presentation context ID, as proposed.
    pub id: u8,
    /// What the acceptor decided.
    pub result: ContextResult,
}

/// Presentation context result/reason (PS3.8 table 9-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextResult {
    /// 0: acceptance.
    Acceptance,
    /// 1: user-rejection.
    UserRejection,
    /// 2: no-reason (provider rejection).
    NoReason,
    /// 3: abstract-syntax-not-supported (provider rejection).
    AbstractSyntaxNotSupported,
    /// 4: transfer-syntaxes-not-supported (provider rejection).
    TransferSyntaxesNotSupported,
    /// Any other value.
    Unknown(u8),
}

impl ContextResult {
    fn from_byte(byte: u8) -> ContextResult {
        match byte {
            0 => ContextResult::Acceptance,
            1 => ContextResult::UserRejection,
            2 => ContextResult::NoReason,
            3 => ContextResult::AbstractSyntaxNotSupported,
            4 => ContextResult::TransferSyntaxesNotSupported,
            other => ContextResult::Unknown(other),
        }
    }
}

/// An A-ASSOCIATE-RJ (PS3.8 table 9-21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssociateRj {
    /// 1 rejected-permanent, 2 rejected-transient.
    pub result: u8,
    /// 1 service-user, 2 service-provider (ACSE), 3 service-provider
    /// (presentation).
    pub source: u8,
    /// The reason, whose meaning depends on the source.
    pub reason: u8,
}

impl AssociateRj {
    /// The result's name.
    pub fn result_str(self) -> &'static str {
        match self.result {
            1 => "rejected_permanent",
            2 => "rejected_transient",
            _ => "unknown",
        }
    }

    /// The source's name.
    pub fn source_str(self) -> &'static str {
        match self.source {
            1 => "service_user",
            2 => "service_provider_acse",
            3 => "service_provider_presentation",
            _ => "unknown",
        }
    }

    /// The reason's name, as the source defines it.
    pub fn reason_str(self) -> &'static str {
        match (self.source, self.reason) {
            (1 | 2, 1) => "no_reason_given",
            (1, 2) => "application_context_name_not_supported",
            (1, 3) => "calling_ae_title_not_recognized",
            (1, 7) => "called_ae_title_not_recognized",
            (2, 2) => "protocol_version_not_supported",
            (3, 1) => "temporary_congestion",
            (3, 2) => "local_limit_exceeded",
            _ => "unknown",
        }
    }
}

/// An A-ABORT (PS3.8 table 9-26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// 0 service-user, 2 service-provider.
    pub source: u8,
    /// The provider's reason (meaningful when the source is 2).
    pub reason: u8,
}

impl Abort {
    /// The source's name.
    pub fn source_str(self) -> &'static str {
        match self.source {
            0 => "service_user",
            2 => "service_provider",
            _ => "unknown",
        }
    }

    /// The reason's name.
    pub fn reason_str(self) -> &'static str {
        match self.reason {
            0 => "not_specified",
            1 => "unrecognized_pdu",
            2 => "unexpected_pdu",
            4 => "unrecognized_pdu_parameter",
            5 => "unexpected_pdu_parameter",
            6 => "invalid_pdu_parameter_value",
            _ => "unknown",
        }
    }
}

/// True when a client that sent `pdu` waits for an answer PDU.
pub fn expects_reply(pdu: &DicomPdu) -> bool {
    matches!(pdu, DicomPdu::AssociateRq(_) | DicomPdu::ReleaseRq)
}

/// Parses the first PDU of a direction.
///
/// `NotThis` as soon as a byte present contradicts the PDU layout: an
/// unknown type, a non-zero reserved byte, a length that does not fit the
/// type, a protocol version other than 1, a non-printable AE title.
pub fn parse_pdu(bytes: &[u8]) -> Progress<DicomPdu> {
    let bytes = super::window(bytes);
    let Some(pdu_type) = bytes.first().copied().and_then(PduType::from_byte) else {
        return if bytes.is_empty() {
            Progress::NeedMore
        } else {
            Progress::NotThis
        };
    };
    if bytes.get(1).is_some_and(|&reserved| reserved != 0) {
        return Progress::NotThis;
    }
    match pdu_type {
        PduType::AssociateRq | PduType::AssociateAc => parse_associate(pdu_type, bytes),
        PduType::PData => parse_p_data(bytes),
        PduType::AssociateRj | PduType::ReleaseRq | PduType::ReleaseRp | PduType::Abort => {
            parse_short(pdu_type, bytes)
        }
    }
}

/// True when a PDU may start with `byte` (a PDU type): every other first
/// byte is [`Progress::NotThis`] for [`parse_pdu`].
pub(crate) const fn may_open(byte: u8) -> bool {
    PduType::from_byte(byte).is_some()
}

/// True when a PDU's second byte may be `byte` (reserved, 0): every other
/// second byte is [`Progress::NotThis`] for [`parse_pdu`].
pub(crate) const fn may_continue(byte: u8) -> bool {
    byte == 0
}

/// RJ, RELEASE-RQ/RP and ABORT: a 4-byte body whose values are checked,
/// since these PDUs are short enough to occur by chance.
fn parse_short(pdu_type: PduType, bytes: &[u8]) -> Progress<DicomPdu> {
    // The whole PDU: header with length 4, then the body. Reserved bytes
    // must be zero; the rest are checked below when present.
    let mut expected = [0u8; PDU_HEADER_LEN];
    expected[0] = pdu_type as u8;
    expected[2..].copy_from_slice(&SHORT_PDU_BODY_LEN.to_be_bytes());
    if !agrees_with(bytes, &expected) {
        return Progress::NotThis;
    }
    let body = bytes.get(PDU_HEADER_LEN..).unwrap_or_default();
    let valid_so_far = match pdu_type {
        // reserved, result (1-2), source (1-3), reason (1-7)
        PduType::AssociateRj => {
            body.first().is_none_or(|&b| b == 0)
                && body.get(1).is_none_or(|b| (1..=2).contains(b))
                && body.get(2).is_none_or(|b| (1..=3).contains(b))
                && body.get(3).is_none_or(|b| (1..=7).contains(b))
        }
        // reserved(2), source (0 or 2), reason (0-6)
        PduType::Abort => {
            body.iter().take(2).all(|&b| b == 0)
                && body.get(2).is_none_or(|&b| b == 0 || b == 2)
                && body.get(3).is_none_or(|&b| b <= 6)
        }
        // four reserved bytes
        _ => body.iter().take(4).all(|&b| b == 0),
    };
    if !valid_so_far {
        return Progress::NotThis;
    }
    let [_, result_or_source, source_or_reason, reason] = match body.get(..4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => return Progress::NeedMore,
    };
    Progress::Done(match pdu_type {
        PduType::AssociateRj => DicomPdu::AssociateRj(AssociateRj {
            result: result_or_source,
            source: source_or_reason,
            reason,
        }),
        PduType::Abort => DicomPdu::Abort(Abort {
            source: source_or_reason,
            reason,
        }),
        PduType::ReleaseRq => DicomPdu::ReleaseRq,
        _ => DicomPdu::ReleaseRp,
    })
}

/// P-DATA-TF, recognised by its first PDV header: item length(4) at least 2
/// and within the PDU, an odd presentation context ID, and a message control
/// header using only its two defined bits (PS3.8 annex E.2).
fn parse_p_data(bytes: &[u8]) -> Progress<DicomPdu> {
    const PDV_HEADER_END: usize = PDU_HEADER_LEN + 6;
    let pdu_len = be_u32(bytes, 2);
    if pdu_len.is_some_and(|len| len < 6) {
        return Progress::NotThis;
    }
    let pdv_len = be_u32(bytes, PDU_HEADER_LEN);
    if let (Some(pdu_len), Some(pdv_len)) = (pdu_len, pdv_len)
        && (pdv_len < 2 || pdv_len > pdu_len - 4)
    {
        return Progress::NotThis;
    }
    if bytes.get(10).is_some_and(|id| id % 2 == 0) || bytes.get(11).is_some_and(|&c| c > 3) {
        return Progress::NotThis;
    }
    if bytes.len() < PDV_HEADER_END {
        return Progress::NeedMore;
    }
    Progress::Done(DicomPdu::PData)
}

fn parse_associate(pdu_type: PduType, bytes: &[u8]) -> Progress<DicomPdu> {
    // The fixed part is 68 bytes after the header, and the application
    // context item (at least its 4-byte header) always follows it; anything
    // shorter is not an association PDU. (This also keeps the item check
    // below inside the PDU, never on the next PDU's bytes.)
    let min_len = (ASSOCIATE_ITEMS_AT + 4 - PDU_HEADER_LEN) as u32;
    if be_u32(bytes, 2).is_some_and(|len| len < min_len)
        || !agrees_with(
            bytes
                .get(field::PROTOCOL_VERSION.start..)
                .unwrap_or_default(),
            &[0, 1],
        )
    {
        return Progress::NotThis;
    }
    if pdu_type == PduType::AssociateRq {
        // AE titles: 16 bytes of the default character repertoire, without
        // control characters (PS3.5 6.2). In an AC they merely echo the
        // request and are not checked.
        let titles_end = bytes.len().min(field::CALLING_AE.end);
        let titles = bytes
            .get(field::CALLED_AE.start..titles_end)
            .unwrap_or_default();
        if !titles.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Progress::NotThis;
        }
    }
    // The first item is always the application context (PS3.8 9.3.2).
    if bytes.get(ASSOCIATE_ITEMS_AT).is_some_and(|&t| t != 0x10) {
        return Progress::NotThis;
    }
    let Some(pdu_len) = be_u32(bytes, 2) else {
        return Progress::NeedMore;
    };
    let declared_end = PDU_HEADER_LEN.saturating_add(pdu_len as usize);
    let truncated = bytes.len() < declared_end;
    if truncated && !at_limit(bytes) {
        return Progress::NeedMore;
    }
    let pdu = bytes.get(..declared_end).unwrap_or(bytes);
    let items = pdu.get(ASSOCIATE_ITEMS_AT..).unwrap_or_default();
    let mut parsed = AssociateItems::read(pdu_type, items);
    parsed.truncated |= truncated;
    Progress::Done(match pdu_type {
        PduType::AssociateRq => DicomPdu::AssociateRq(AssociateRq {
            called_ae: ae_title(pdu.get(field::CALLED_AE).unwrap_or_default()),
            calling_ae: ae_title(pdu.get(field::CALLING_AE).unwrap_or_default()),
            contexts: parsed.proposed,
            implementation_class_uid: parsed.implementation_class_uid,
            implementation_version_name: parsed.implementation_version_name,
            truncated: parsed.truncated,
        }),
        _ => DicomPdu::AssociateAc(AssociateAc {
            contexts: parsed.results,
            implementation_class_uid: parsed.implementation_class_uid,
            implementation_version_name: parsed.implementation_version_name,
            truncated: parsed.truncated,
        }),
    })
}

/// What the variable items of an RQ or AC hold.
#[derive(Default)]
struct AssociateItems {
    proposed: Vec<PresentationContext>,
    results: Vec<ContextOutcome>,
    implementation_class_uid: Option<String>,
    implementation_version_name: Option<String>,
    truncated: bool,
}

impl AssociateItems {
    /// Walks the items. Each is at least 4 bytes, so the walk is bounded by
    /// the window; an item running past the end stops it (truncated).
    fn read(pdu_type: PduType, items: &[u8]) -> AssociateItems {
        let mut out = AssociateItems::default();
        let mut reader = Reader::new(items);
        while !reader.is_empty() {
            let Some((item_type, value)) = next_item(&mut reader) else {
                out.truncated = true;
                break;
            };
            match (pdu_type, item_type) {
                (PduType::AssociateRq, 0x20) => out.proposed_context(value),
                (PduType::AssociateAc, 0x21) => out.context_result(value),
                (_, 0x50) => out.user_information(value),
                // 0x10 application context, and items a later edition may
                // add: skipped by their length, as PS3.8 9.3.1 asks.
                _ => {}
            }
        }
        out
    }

    /// 0x20: context-id(1), reserved(3), then sub-items: one 0x30 abstract
    /// syntax and 0x40 transfer syntaxes (not read).
    fn proposed_context(&mut self, value: &[u8]) {
        let Some(&id) = value.first() else { return };
        if self.proposed.len() >= MAX_CONTEXTS {
            return;
        }
        let mut sub_items = Reader::new(value.get(4..).unwrap_or_default());
        while let Some((sub_type, sub_value)) = next_item(&mut sub_items) {
            if sub_type == 0x30 {
                let operation = OperationClass::of_abstract_syntax(trim_padding(sub_value));
                self.proposed.push(PresentationContext { id, operation });
                return;
            }
        }
    }

    /// 0x21: context-id(1), reserved(1), result/reason(1), reserved(1).
    fn context_result(&mut self, value: &[u8]) {
        if let (Some(&id), Some(&result)) = (value.first(), value.get(2))
            && self.results.len() < MAX_CONTEXTS
        {
            let result = ContextResult::from_byte(result);
            self.results.push(ContextOutcome { id, result });
        }
    }

    /// 0x50: sub-items; only 0x52 and 0x55 are read. 0x58/0x59 (user
    /// identity: user names, passwords, Kerberos tickets, JWTs) are skipped
    /// by their length without a look at their value.
    fn user_information(&mut self, value: &[u8]) {
        let mut sub_items = Reader::new(value);
        while let Some((sub_type, sub_value)) = next_item(&mut sub_items) {
            let text = || Some(printable(trim_padding(sub_value), MAX_UID_LEN));
            match sub_type {
                0x52 if self.implementation_class_uid.is_none() => {
                    self.implementation_class_uid = text();
                }
                0x55 if self.implementation_version_name.is_none() => {
                    self.implementation_version_name = text();
                }
                _ => {}
            }
        }
    }
}

/// One item or sub-item: type(1), reserved(1), length(2), value.
fn next_item<'a>(reader: &mut Reader<'a>) -> Option<(u8, &'a [u8])> {
    let header = reader.take(4)?;
    let item_type = *header.first()?;
    let len = be_u16(header, 2)?;
    Some((item_type, reader.take(usize::from(len))?))
}

/// An AE title without its space padding (PS3.5: leading and trailing
/// spaces are not significant).
fn ae_title(bytes: &[u8]) -> String {
    printable(trim_padding(bytes), 16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn query_and_retrieve_are_told_apart_by_the_models_last_arc() {
        for (uid, class) in [
            ("1.2.840.10008.5.1.4.1.2.1.1", OperationClass::Query),
            ("1.2.840.10008.5.1.4.1.2.2.1", OperationClass::Query),
            ("1.2.840.10008.5.1.4.1.2.2.2", OperationClass::Retrieve),
            ("1.2.840.10008.5.1.4.1.2.2.3", OperationClass::Retrieve),
            ("1.2.840.10008.5.1.4.1.2.4.3", OperationClass::Retrieve),
            ("1.2.840.10008.5.1.4.1.1.2", OperationClass::Storage),
        ] {
            assert_eq!(
                OperationClass::of_abstract_syntax(uid.as_bytes()),
                class,
                "{uid}"
            );
        }
    }

    fn item(item_type: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![item_type, 0];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn pdu(pdu_type: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![pdu_type, 0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn associate(pdu_type: u8, called: &str, calling: &str, items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0, 1, 0, 0]; // protocol version 1, reserved
        body.extend_from_slice(format!("{called:<16}").as_bytes());
        body.extend_from_slice(format!("{calling:<16}").as_bytes());
        body.extend_from_slice(&[0; 32]);
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        for i in items {
            body.extend_from_slice(i);
        }
        pdu(pdu_type, &body)
    }

    fn proposed(id: u8, abstract_syntax: &[u8]) -> Vec<u8> {
        let mut value = vec![id, 0, 0, 0];
        value.extend(item(0x30, abstract_syntax));
        value.extend(item(0x40, b"1.2.840.10008.1.2\0"));
        item(0x20, &value)
    }

    fn user_info(uid: &[u8], version: &[u8]) -> Vec<u8> {
        let mut value = item(0x51, &16384u32.to_be_bytes());
        value.extend(item(0x52, uid));
        value.extend(item(0x55, version));
        // User identity: type 2 (username and passcode). Never read.
        value.extend(item(0x58, b"\x02\x00\x00\x06ZZQXPW\x00\x06secret"));
        item(0x50, &value)
    }

    /// An A-ASSOCIATE-RQ from a modality: verification, CT storage, MWL,
    /// MPPS, storage commitment and one private SOP class.
    pub(crate) fn sample_rq() -> Vec<u8> {
        associate(
            0x01,
            "PACS_MAIN",
            "CT_ROOM_2",
            &[
                proposed(1, b"1.2.840.10008.1.1\0"),
                proposed(3, b"1.2.840.10008.5.1.4.1.1.2\0"),
                proposed(5, b"1.2.840.10008.5.1.4.31"),
                proposed(7, b"1.2.840.10008.3.1.2.3.3 "),
                proposed(9, b"1.2.840.10008.1.20.1"),
                proposed(11, b"1.2.3.4.5.6"),
                user_info(b"1.2.276.0.7230010.3.0.3.6.5\0", b"OFFIS_DCMTK_365"),
            ],
        )
    }

    pub(crate) fn sample_ac() -> Vec<u8> {
        let result = |id: u8, code: u8| item(0x21, &[id, 0, code, 0]);
        associate(
            0x02,
            "PACS_MAIN",
            "CT_ROOM_2",
            &[
                result(1, 0),
                result(3, 0),
                result(5, 3),
                result(7, 4),
                result(9, 0),
                result(11, 1),
                user_info(b"1.2.40.0.13.1.3", b"dcm4che-5.31.0"),
            ],
        )
    }

    /// A P-DATA-TF carrying one command PDV (context 1, last fragment).
    pub(crate) fn sample_p_data(data: &[u8]) -> Vec<u8> {
        let mut pdv = ((data.len() + 2) as u32).to_be_bytes().to_vec();
        pdv.extend_from_slice(&[1, 0x03]);
        pdv.extend_from_slice(data);
        pdu(0x04, &pdv)
    }

    fn done(bytes: &[u8]) -> DicomPdu {
        match parse_pdu(bytes) {
            Progress::Done(pdu) => pdu,
            other => panic!("expected a PDU, got {other:?}"),
        }
    }

    #[test]
    fn associate_rq_fields() {
        let DicomPdu::AssociateRq(rq) = done(&sample_rq()) else {
            panic!("not an RQ")
        };
        assert_eq!(rq.called_ae, "PACS_MAIN");
        assert_eq!(rq.calling_ae, "CT_ROOM_2");
        let ops: Vec<_> = rq.contexts.iter().map(|c| (c.id, c.operation)).collect();
        assert_eq!(
            ops,
            [
                (1, OperationClass::Verification),
                (3, OperationClass::Storage),
                (5, OperationClass::Worklist),
                (7, OperationClass::Mpps),
                (9, OperationClass::StorageCommitment),
                (11, OperationClass::Other),
            ]
        );
        assert_eq!(
            rq.implementation_class_uid.as_deref(),
            Some("1.2.276.0.7230010.3.0.3.6.5")
        );
        assert_eq!(
            rq.implementation_version_name.as_deref(),
            Some("OFFIS_DCMTK_365")
        );
        assert!(!rq.truncated);
        assert_eq!(rq.operations().iter().count(), 6);
        let debug = format!("{rq:?}");
        assert!(
            !debug.contains("ZZQX") && !debug.contains("secret"),
            "{debug}"
        );
    }

    #[test]
    fn associate_ac_results_and_accepted_operations() {
        let DicomPdu::AssociateAc(ac) = done(&sample_ac()) else {
            panic!("not an AC")
        };
        assert_eq!((ac.accepted(), ac.rejected()), (3, 3));
        assert_eq!(
            ac.contexts[2].result,
            ContextResult::AbstractSyntaxNotSupported
        );
        assert_eq!(
            ac.implementation_version_name.as_deref(),
            Some("dcm4che-5.31.0")
        );
        let info = DicomInfo {
            client: Some(done(&sample_rq())),
            server: Some(DicomPdu::AssociateAc(ac)),
        };
        let accepted: Vec<_> = info
            .accepted_operations()
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(accepted, ["verification", "storage", "storage_commitment"]);
    }

    #[test]
    fn reject_abort_release_and_p_data() {
        let rj = done(&pdu(0x03, &[0, 1, 1, 7]));
        let DicomPdu::AssociateRj(rj) = rj else {
            panic!()
        };
        assert_eq!(
            (rj.result_str(), rj.source_str(), rj.reason_str()),
            (
                "rejected_permanent",
                "service_user",
                "called_ae_title_not_recognized"
            )
        );
        let DicomPdu::Abort(abort) = done(&pdu(0x07, &[0, 0, 2, 2])) else {
            panic!()
        };
        assert_eq!(
            (abort.source_str(), abort.reason_str()),
            ("service_provider", "unexpected_pdu")
        );
        assert_eq!(done(&pdu(0x05, &[0; 4])), DicomPdu::ReleaseRq);
        assert_eq!(done(&pdu(0x06, &[0; 4])), DicomPdu::ReleaseRp);
        assert_eq!(done(&sample_p_data(b"\x08\x00")), DicomPdu::PData);
    }

    #[test]
    fn wrong_values_are_not_dicom() {
        for bytes in [
            pdu(0x08, &[0; 4]),             // unknown type
            vec![0x01, 0x01],               // reserved byte set
            pdu(0x03, &[0, 3, 1, 1]),       // RJ result 3
            pdu(0x07, &[0, 0, 1, 0]),       // abort source 1 (reserved)
            pdu(0x05, &[0, 0, 0, 1]),       // release with a non-zero body
            pdu(0x05, &[0; 5]),             // release of length 5
            pdu(0x01, &[0, 1, 0, 0]),       // RQ shorter than its fixed part
            pdu(0x04, &[0, 0, 0, 2, 2, 0]), // even presentation context ID
            pdu(0x04, &[0, 0, 0, 9, 1, 0]), // PDV longer than the PDU
            pdu(0x04, &[0, 0, 0, 2, 1, 4]), // undefined control bits
        ] {
            assert_eq!(parse_pdu(&bytes), Progress::NotThis, "{bytes:02x?}");
        }
        let mut version_2 = sample_rq();
        version_2[7] = 2;
        assert_eq!(parse_pdu(&version_2), Progress::NotThis);
        let mut control_in_title = sample_rq();
        control_in_title[12] = 0x1b;
        assert_eq!(parse_pdu(&control_in_title), Progress::NotThis);
        let mut no_application_context = sample_rq();
        no_application_context[74] = 0x20;
        assert_eq!(parse_pdu(&no_application_context), Progress::NotThis);
    }

    #[test]
    fn every_prefix_needs_more_and_the_whole_is_done() {
        for sample in [
            sample_rq(),
            sample_ac(),
            pdu(0x03, &[0, 2, 3, 1]),
            sample_p_data(b"x"),
        ] {
            let whole = parse_pdu(&sample);
            assert!(matches!(whole, Progress::Done(_)));
            let needed = if sample[0] == 0x04 { 12 } else { sample.len() };
            for cut in 0..needed {
                assert_eq!(
                    parse_pdu(&sample[..cut]),
                    Progress::NeedMore,
                    "cut at {cut}"
                );
            }
            // Bytes after the PDU (the next one) change nothing.
            let mut longer = sample.clone();
            longer.extend_from_slice(&[0xff; 40]);
            assert_eq!(parse_pdu(&longer), whole);
        }
    }

    #[test]
    fn a_pdu_longer_than_the_window_is_read_as_far_as_it_goes() {
        let mut rq = sample_rq();
        // Declare 1 MiB and pad the window with an unknown item's bytes.
        rq[2..6].copy_from_slice(&(1u32 << 20).to_be_bytes());
        let filler = item(0x7f, &[0; 200]);
        while rq.len() < super::super::INSPECT_LIMIT {
            rq.extend_from_slice(&filler);
        }
        assert_eq!(parse_pdu(&rq[..1000]), Progress::NeedMore);
        let DicomPdu::AssociateRq(parsed) = done(&rq) else {
            panic!()
        };
        assert!(parsed.truncated);
        assert_eq!(parsed.contexts.len(), 6);
        assert_eq!(parsed.calling_ae, "CT_ROOM_2");
    }

    #[test]
    fn hostile_lengths_and_flips_never_panic() {
        let samples = [
            sample_rq(),
            sample_ac(),
            sample_p_data(b"abc"),
            pdu(0x07, &[0, 0, 2, 1]),
        ];
        for sample in &samples {
            for i in 0..sample.len() {
                for bit in 0..8 {
                    let mut flipped = sample.clone();
                    flipped[i] ^= 1 << bit;
                    let _ = parse_pdu(&flipped);
                }
                for value in [0x00, 0x7f, 0x80, 0xff] {
                    let mut hostile = sample.clone();
                    hostile[i] = value;
                    let _ = parse_pdu(&hostile);
                }
            }
        }
        // Item lengths of 0xffff everywhere, more contexts than allowed.
        let mut many = Vec::new();
        for id in 0..=255u8 {
            many.push(proposed(id | 1, b"1.2.840.10008.1.1"));
        }
        many.push(vec![0x20, 0, 0xff, 0xff, 1]);
        let DicomPdu::AssociateRq(rq) = done(&associate(1, "A", "B", &many)) else {
            panic!()
        };
        assert_eq!(rq.contexts.len(), MAX_CONTEXTS);
        assert!(rq.truncated);
    }

    #[test]
    fn an_associate_pdu_without_items_is_not_dicom_whatever_follows() {
        // Found by the `dicom` fuzz target: an RQ declaring only its 68-byte
        // fixed part was accepted alone, and rejected once the next PDU's
        // first byte (read as the missing application context) arrived.
        let mut input = vec![0x01, 0, 0, 0, 0, 68, 0, 1, 0, 0];
        input.extend_from_slice(&[b'A'; 32]); // AE titles
        input.extend_from_slice(&[0; 32]); // reserved
        assert_eq!(parse_pdu(&input), Progress::NotThis);
        input.push(0x35);
        assert_eq!(parse_pdu(&input), Progress::NotThis);
    }
}
