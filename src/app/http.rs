//! HTTP/1.x: the first request of a client's stream, and whether it is FHIR.
//!
//! Read: the method, the version, the `Host` header, a short prefix of the
//! path, and the `Content-Type` and `Accept` headers (only to look for a
//! FHIR media type; their values are not kept).
//!
//! Never read or kept: the query string (FHIR searches carry patient
//! identifiers, names and birth dates: `/Patient?identifier=...`), path
//! segments that may be identifiers, the body, and every other header —
//! `Cookie` and `Authorization` among them, which are skipped by name
//! without a look at their values.
//!
//! The path prefix is the first path segment, and a second one only when
//! it is an API word rather than a name: a version token (`v2`, `r4`,
//! `STU3`), a FHIR resource type, or one of `fhir`, `metadata`,
//! `smart-configuration`, `studies`, `dicom-web`, `dicomweb`, `wado`, `rs`.
//! A segment is not kept at all when it holds a digit (except a version
//! token), a percent escape or any character outside letters, `-`, `_`, `.`
//! and `$`, or is longer than [`MAX_SEGMENT_LEN`]; and nothing is kept after a
//! FHIR resource type (what follows one is a resource ID).
//! `/fhir/Patient/123?name=x` gives `/fhir/Patient`, `/api/v2/orders/991`
//! gives `/api/v2`, `/api/smith` gives `/api`, `/skins-1.5/main.css` gives `/`.
//!
//! FHIR (a flag, not an app of its own): a FHIR media type in `Content-Type`
//! or `Accept` (`application/fhir+json`, `application/fhir+xml`, or the DSTU2
//! forms `application/json+fhir`, `application/xml+fhir`); else a FHIR path:
//! a `fhir` segment, a last segment `metadata` (the CapabilityStatement), the
//! SMART discovery document `/.well-known/smart-configuration`, or a FHIR
//! resource type name among the first segments.

use super::bytes::{contains_ignore_case, find, printable};
use super::{Progress, at_limit};

/// The header block is looked for in this many bytes; a longer one is read
/// as far as this goes. Servers commonly refuse more than 8 to 16 KiB.
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// At most this many path segments are kept (the second only when it is
/// an API word).
pub const MAX_PREFIX_SEGMENTS: usize = 2;
/// A segment longer than this is not kept (it is more likely an ID).
pub const MAX_SEGMENT_LEN: usize = 32;
/// `Host` values are cut to a DNS name's length plus a port.
const MAX_HOST_LEN: usize = 260;
/// How many path segments are looked at for FHIR evidence.
const MAX_FHIR_PATH_SEGMENTS: usize = 6;

/// A request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// CONNECT
    Connect,
    /// TRACE
    Trace,
}

impl HttpMethod {
    /// Every method, as matched against the start of a stream.
    pub const ALL: [HttpMethod; 9] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Options,
        HttpMethod::Patch,
        HttpMethod::Connect,
        HttpMethod::Trace,
    ];

    /// The method as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Trace => "TRACE",
        }
    }
}

/// The protocol version of the request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// What made a request FHIR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FhirEvidence {
    /// A FHIR media type in `Content-Type` or `Accept`.
    MediaType,
    /// A FHIR path (weaker: another API could use the same words).
    Path,
}

/// What the first request says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpInfo {
    /// The method.
    pub method: HttpMethod,
    /// The version.
    pub version: HttpVersion,
    /// The `Host` header (or the authority of an absolute-form target).
    pub host: Option<String>,
    /// The first path segments, as described in the module docs; `/` when
    /// none is kept, `*` for `OPTIONS *`, empty for a CONNECT target.
    pub path_prefix: String,
    /// Set when the request is FHIR, with what showed it.
    pub fhir: Option<FhirEvidence>,
    /// The header block did not end within [`MAX_HEADER_LEN`].
    pub truncated: bool,
}

/// Parses the request that starts a client's stream.
pub fn parse_request(bytes: &[u8]) -> Progress<HttpInfo> {
    let bytes = bytes.get(..MAX_HEADER_LEN).unwrap_or(bytes);
    let method = match method_of(bytes) {
        Progress::Done(method) => method,
        Progress::NeedMore => return Progress::NeedMore,
        Progress::NotThis => return Progress::NotThis,
    };
    let after_method = bytes.get(method.as_str().len() + 1..).unwrap_or_default();
    // The request target: visible ASCII up to a space.
    let target_len = after_method.iter().take_while(|&&b| b != b' ').count();
    let target = after_method.get(..target_len).unwrap_or_default();
    let target_ok = target.iter().all(u8::is_ascii_graphic)
        && target
            .first()
            .is_none_or(|&b| b == b'/' || b == b'*' || b.is_ascii_alphanumeric());
    if !target_ok {
        return Progress::NotThis;
    }
    let Some(version_at) = after_method.get(target_len + 1..) else {
        return if at_limit_of(bytes) {
            Progress::NotThis
        } else {
            Progress::NeedMore
        };
    };
    // "HTTP/1.0" or "HTTP/1.1", then the end of the line.
    let version = match version_at.get(..8) {
        Some(b"HTTP/1.0") => HttpVersion::Http10,
        Some(b"HTTP/1.1") => HttpVersion::Http11,
        Some(_) => return Progress::NotThis,
        None if b"HTTP/1.1".starts_with(version_at) || b"HTTP/1.0".starts_with(version_at) => {
            return Progress::NeedMore;
        }
        None => return Progress::NotThis,
    };
    if !matches!(version_at.get(8), None | Some(b'\r' | b'\n')) || target.is_empty() {
        return Progress::NotThis;
    }
    let headers_at = method.as_str().len() + 1 + target_len + 1 + 8;
    let header_block = bytes.get(headers_at..).unwrap_or_default();
    let block_end = header_block_end(header_block);
    let truncated = block_end.is_none();
    if truncated && !at_limit_of(bytes) {
        return Progress::NeedMore;
    }
    let headers = Headers::read(header_block.get(..block_end.unwrap_or(header_block.len())));
    let (authority, path) = split_target(method, target);
    let fhir = if headers.fhir_media_type {
        Some(FhirEvidence::MediaType)
    } else if is_fhir_path(path) {
        Some(FhirEvidence::Path)
    } else {
        None
    };
    let host = headers.host.or(authority).filter(|h| !h.is_empty());
    Progress::Done(HttpInfo {
        method,
        version,
        host: host.map(|h| printable(h, MAX_HOST_LEN)),
        path_prefix: path_prefix(method, target, path),
        fhir,
        truncated,
    })
}

/// The window is full: a parser must answer from what it has.
fn at_limit_of(bytes: &[u8]) -> bool {
    bytes.len() >= MAX_HEADER_LEN || at_limit(bytes)
}

/// True when a request may start with `byte` (the first letter of a
/// method): every other first byte is [`Progress::NotThis`] for
/// [`parse_request`].
pub(crate) const fn may_open(byte: u8) -> bool {
    let mut i = 0;
    while i < HttpMethod::ALL.len() {
        if HttpMethod::ALL[i].as_str().as_bytes()[0] == byte {
            return true;
        }
        i += 1;
    }
    false
}

/// The method the stream starts with (its name and a space); `NeedMore`
/// while the bytes are a prefix of some method's.
fn method_of(bytes: &[u8]) -> Progress<HttpMethod> {
    let mut answer = Progress::NotThis;
    for method in HttpMethod::ALL {
        let name = method.as_str().as_bytes();
        let have = bytes.get(..bytes.len().min(name.len())).unwrap_or_default();
        if !name.starts_with(have) {
            continue;
        }
        match bytes.get(name.len()) {
            Some(b' ') => return Progress::Done(method),
            Some(_) => {}
            None => answer = Progress::NeedMore,
        }
    }
    answer
}

/// Where the header block ends: at the first blank line, whether lines end
/// with CRLF or a bare LF (senders mix them). The earliest blank line wins,
/// so a prefix that holds one ends where the whole input does.
fn header_block_end(block: &[u8]) -> Option<usize> {
    block.iter().enumerate().find_map(|(i, &b)| {
        let blank_follows = matches!(
            (block.get(i + 1), block.get(i + 2)),
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n'))
        );
        (b == b'\n' && blank_follows).then_some(i)
    })
}

/// The header fields read from the block.
#[derive(Default)]
struct Headers<'a> {
    host: Option<&'a [u8]>,
    fhir_media_type: bool,
}

impl<'a> Headers<'a> {
    fn read(block: Option<&'a [u8]>) -> Headers<'a> {
        let mut out = Headers::default();
        for line in block.unwrap_or_default().split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (
                line.get(..colon).unwrap_or_default(),
                line.get(colon + 1..).unwrap_or_default().trim_ascii(),
            );
            if name.eq_ignore_ascii_case(b"host") {
                out.host.get_or_insert(value);
            } else if name.eq_ignore_ascii_case(b"content-type")
                || name.eq_ignore_ascii_case(b"accept")
            {
                out.fhir_media_type |= is_fhir_media_type(value);
            }
            // Every other header (Cookie, Authorization, ...) is skipped
            // by name; its value is not looked at.
        }
        out
    }
}

fn is_fhir_media_type(value: &[u8]) -> bool {
    [
        b"application/fhir+json".as_slice(),
        b"application/fhir+xml",
        b"application/json+fhir",
        b"application/xml+fhir",
    ]
    .iter()
    .any(|media_type| contains_ignore_case(value, media_type))
}

/// The authority and the path of a request target (origin-form `/p?q`,
/// absolute-form `http://host/p?q`, authority-form `host:port` of CONNECT,
/// asterisk-form `*`). The path stops at `?` or `#`.
fn split_target(method: HttpMethod, target: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if method == HttpMethod::Connect {
        return (Some(target), b"");
    }
    let (authority, path) = match find(target, b"://") {
        Some(scheme_end) if target.first() != Some(&b'/') => {
            let rest = target.get(scheme_end + 3..).unwrap_or_default();
            let split = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(split);
            (Some(authority), path)
        }
        _ => (None, target),
    };
    let path_end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    (authority, path.get(..path_end).unwrap_or_default())
}

fn segments(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|s| !s.is_empty())
}

fn path_prefix(method: HttpMethod, target: &[u8], path: &[u8]) -> String {
    if method == HttpMethod::Connect {
        return String::new();
    }
    if target == b"*" {
        return "*".to_string();
    }
    let mut prefix = String::new();
    for (i, segment) in segments(path).take(MAX_PREFIX_SEGMENTS).enumerate() {
        if !is_safe_segment(segment) || (i > 0 && !is_api_word(segment)) {
            break;
        }
        prefix.push('/');
        prefix.push_str(&printable(segment, MAX_SEGMENT_LEN));
        if is_fhir_resource_type(segment) {
            break;
        }
    }
    if prefix.is_empty() {
        prefix.push('/');
    }
    prefix
}

/// A segment that belongs to an API's vocabulary, never to its data.
fn is_api_word(segment: &[u8]) -> bool {
    const WORDS: [&[u8]; 8] = [
        b"fhir",
        b"metadata",
        b"smart-configuration",
        b"studies",
        b"dicom-web",
        b"dicomweb",
        b"wado",
        b"rs",
    ];
    is_version_token(segment)
        || is_fhir_resource_type(segment)
        || WORDS.iter().any(|w| segment.eq_ignore_ascii_case(w))
}

/// A segment that names a place in an API rather than a thing in it.
fn is_safe_segment(segment: &[u8]) -> bool {
    if segment.len() > MAX_SEGMENT_LEN {
        return false;
    }
    let plain = |b: &u8| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_' | b'.' | b'$');
    segment.iter().all(plain) || is_version_token(segment)
}

/// `v1`..`v99`, `r2`..`r5`, `r4b`, `stu3`, `dstu2` (any case).
fn is_version_token(segment: &[u8]) -> bool {
    let lower = |s: &[u8]| segment.eq_ignore_ascii_case(s);
    let v_number = matches!(segment, [b'v' | b'V', rest @ ..]
        if (1..=2).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit));
    v_number
        || [
            b"r2".as_slice(),
            b"r3",
            b"r4",
            b"r4b",
            b"r5",
            b"stu3",
            b"dstu2",
        ]
        .iter()
        .any(|s| lower(s))
}

fn is_fhir_path(path: &[u8]) -> bool {
    let mut previous: &[u8] = b"";
    let mut last: &[u8] = b"";
    for (i, segment) in segments(path).take(MAX_FHIR_PATH_SEGMENTS).enumerate() {
        if segment.eq_ignore_ascii_case(b"fhir")
            || (previous == b".well-known" && segment == b"smart-configuration")
            || (i < 4 && is_fhir_resource_type(segment))
        {
            return true;
        }
        previous = segment;
        last = segment;
    }
    last == b"metadata"
}

/// FHIR R4/R5 resource types whose names an unrelated API is unlikely to
/// use as a path segment, spelled as FHIR spells them (case matters).
/// Generic words (`Device`, `Group`, `List`, `Task`, `Location`, `Bundle`,
/// `Binary`, `Endpoint`, ...) are left out on purpose.
const FHIR_RESOURCE_TYPES: [&[u8]; 44] = [
    b"AllergyIntolerance",
    b"Appointment",
    b"AuditEvent",
    b"CapabilityStatement",
    b"CarePlan",
    b"CareTeam",
    b"ClinicalImpression",
    b"CodeSystem",
    b"Communication",
    b"Composition",
    b"ConceptMap",
    b"Condition",
    b"Consent",
    b"Coverage",
    b"DetectedIssue",
    b"DeviceMetric",
    b"DeviceRequest",
    b"DiagnosticReport",
    b"DocumentReference",
    b"Encounter",
    b"EpisodeOfCare",
    b"ExplanationOfBenefit",
    b"FamilyMemberHistory",
    b"ImagingStudy",
    b"Immunization",
    b"Medication",
    b"MedicationAdministration",
    b"MedicationDispense",
    b"MedicationRequest",
    b"MedicationStatement",
    b"NutritionOrder",
    b"Observation",
    b"OperationOutcome",
    b"Patient",
    b"Practitioner",
    b"PractitionerRole",
    b"Procedure",
    b"Provenance",
    b"Questionnaire",
    b"QuestionnaireResponse",
    b"RelatedPerson",
    b"ServiceRequest",
    b"Specimen",
    b"StructureDefinition",
];

fn is_fhir_resource_type(segment: &[u8]) -> bool {
    FHIR_RESOURCE_TYPES.contains(&segment)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const FHIR_SEARCH: &[u8] = b"GET /fhir/r4/Patient?family=CANARY&given=ZZQX&birthdate=1970-01-01 HTTP/1.1\r\nHost: ehr.hospital.example:8443\r\nAccept: application/fhir+json\r\nAuthorization: Bearer ZZQX-TOKEN\r\nCookie: session=ZZQX\r\n\r\n";

    fn done(bytes: &[u8]) -> HttpInfo {
        match parse_request(bytes) {
            Progress::Done(info) => info,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn method_host_path_and_fhir_media_type() {
        let info = done(FHIR_SEARCH);
        assert_eq!(info.method, HttpMethod::Get);
        assert_eq!(info.version, HttpVersion::Http11);
        assert_eq!(info.host.as_deref(), Some("ehr.hospital.example:8443"));
        assert_eq!(info.path_prefix, "/fhir/r4");
        assert_eq!(info.fhir, Some(FhirEvidence::MediaType));
        let debug = format!("{info:?}");
        assert!(
            !debug.contains("ZZQX") && !debug.contains("CANARY"),
            "{debug}"
        );
    }

    #[test]
    fn path_prefixes_stop_before_identifiers() {
        let cases: [(&[u8], &str, Option<FhirEvidence>); 12] = [
            (
                b"/Patient/12345/_history/2",
                "/Patient",
                Some(FhirEvidence::Path),
            ),
            (
                b"/fhir/Observation/abc",
                "/fhir/Observation",
                Some(FhirEvidence::Path),
            ),
            (b"/baseR4/metadata", "/", Some(FhirEvidence::Path)),
            (
                b"/.well-known/smart-configuration",
                "/.well-known/smart-configuration",
                Some(FhirEvidence::Path),
            ),
            (b"/api/v2/orders/991", "/api/v2", None),
            (b"/skins-1.5/main.css", "/", None),
            (b"/api/smith/records", "/api", None),
            (b"/images/button.png", "/images", None),
            (b"/", "/", None),
            (b"/a%20b/c", "/", None),
            (b"/dicom-web/studies/1.2.3.4", "/dicom-web/studies", None),
            (b"/metadata/instance", "/metadata", None),
        ];
        for (path, prefix, fhir) in cases {
            let mut request = b"GET ".to_vec();
            request.extend_from_slice(path);
            request.extend_from_slice(b" HTTP/1.0\r\nhost: h\r\n\r\n");
            let info = done(&request);
            assert_eq!(
                info.path_prefix,
                prefix,
                "{}",
                String::from_utf8_lossy(path)
            );
            assert_eq!(info.fhir, fhir, "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn targets_of_every_form() {
        let proxy = done(b"GET http://example.org/fhir/Patient?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(proxy.host.as_deref(), Some("example.org"));
        assert_eq!(proxy.path_prefix, "/fhir/Patient");
        let connect = done(b"CONNECT pacs.example:443 HTTP/1.1\r\nHost: pacs.example:443\r\n\r\n");
        assert_eq!(
            (connect.method, connect.path_prefix.as_str()),
            (HttpMethod::Connect, "")
        );
        let options = done(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(options.path_prefix, "*");
        let legacy =
            done(b"POST /x HTTP/1.1\nContent-Type: application/json+fhir; charset=utf-8\n\n{");
        assert_eq!(legacy.fhir, Some(FhirEvidence::MediaType));
        assert_eq!(legacy.host, None);
    }

    #[test]
    fn not_http() {
        for bytes in [
            &b"GETX / HTTP/1.1\r\n"[..],
            b"get / HTTP/1.1\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET /\x01 HTTP/1.1\r\n",
            b"GET / HTTP/1.1x",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01",
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ] {
            assert_eq!(parse_request(bytes), Progress::NotThis, "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_needs_more() {
        for cut in 0..FHIR_SEARCH.len() - 1 {
            assert_eq!(
                parse_request(&FHIR_SEARCH[..cut]),
                Progress::NeedMore,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_endless_header_block_is_read_as_far_as_the_window() {
        let mut request = b"GET /fhir/x HTTP/1.1\r\nHost: a.example\r\nX-Filler: ".to_vec();
        request.resize(MAX_HEADER_LEN + 100, b'a');
        let info = done(&request);
        assert!(info.truncated);
        assert_eq!(info.host.as_deref(), Some("a.example"));
        let mut endless_target = b"GET /".to_vec();
        endless_target.resize(MAX_HEADER_LEN + 100, b'a');
        assert_eq!(parse_request(&endless_target), Progress::NotThis);
    }

    #[test]
    fn flips_never_panic() {
        for i in 0..FHIR_SEARCH.len() {
            for bit in 0..8 {
                let mut flipped = FHIR_SEARCH.to_vec();
                flipped[i] ^= 1 << bit;
                if let Progress::Done(info) = parse_request(&flipped) {
                    assert!(!format!("{info:?}").contains("ZZQX"));
                }
            }
        }
    }

    #[test]
    fn the_first_blank_line_ends_the_headers_whatever_the_line_endings() {
        // Found by the `http` and `app_detect` fuzz targets: a prefix ended
        // the block at LF LF, the whole input at a later CRLF CRLF, and the
        // two disagreed on the headers read.
        let mixed =
            b"GET / HTTP/1.1\r\nHost: a\n\nAccept: application/fhir+json\r\nHost: b\r\n\r\n";
        let info = done(mixed);
        assert_eq!((info.host.as_deref(), info.fhir), (Some("a"), None));
        assert_eq!(parse_request(&mixed[..27]), Progress::Done(info));
        assert_eq!(header_block_end(b"\r\n\r"), None);
        assert_eq!(header_block_end(b"\r\n\r\n"), Some(1));
        assert_eq!(header_block_end(b"\r\nA: b\n\n"), Some(6));
    }
}
