//! Reading and validating an exceptions file against a policy (contract
//! section 8), and the warnings of `segwatch check`.
//!
//! Two steps, like the policy file's: serde reads the TOML with spans, then
//! every exception is checked and every problem reported in one pass, in
//! file order, each with a hint.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use ipnetwork::IpNetwork;
use toml::Spanned;
use toml::value::Datetime;

use super::raw::{RawException, RawFile, Str};
use super::time::{datetime_ns, format_date};
use super::{
    DAY_NS, DEFAULT_RULE, EndpointScope, Exception, RuleId, RuleScope, ServiceScope, UNKNOWN_ZONE,
    ZoneId,
};
use crate::policy::{Diagnostic, Level, Policy, PolicyError, PortRange, ServiceSpec};

/// Longest validity an exception may have: `expires` at most this long after
/// `created` (contract section 8).
const MAX_VALIDITY_DAYS: u64 = 366;

/// The names of the policy an exceptions file may use, with what they
/// stand for.
#[derive(Clone, Debug, Default)]
pub struct PolicyNames {
    /// Rules in file order.
    rules: Vec<String>,
    /// Zones in file order (ids are their positions).
    zones: Vec<String>,
    /// Named services, with what they match.
    services: Vec<(String, ServiceScope)>,
    /// Each rule's, zone's and service's position by name (the first, as
    /// a search in file order finds): a thousand exceptions against a
    /// policy of thousands of zones look each name up once.
    rule_index: NameIndex,
    zone_index: NameIndex,
    service_index: NameIndex,
}

type NameIndex = HashMap<String, u32, foldhash::fast::RandomState>;

fn index_of<'n>(names: impl Iterator<Item = &'n str>) -> NameIndex {
    let mut index = NameIndex::default();
    for (i, name) in names.enumerate() {
        index.entry(name.to_owned()).or_insert(i as u32);
    }
    index
}

impl PolicyNames {
    /// The names of `policy`.
    pub fn of(policy: &Policy) -> PolicyNames {
        let rules: Vec<String> = policy.rules.iter().map(|r| r.name.clone()).collect();
        let zones: Vec<String> = policy.zones.iter().map(|z| z.name.clone()).collect();
        let services: Vec<(String, ServiceScope)> = policy
            .services
            .iter()
            .map(|s| (s.name.clone(), scope_of_spec(&s.spec)))
            .collect();
        PolicyNames {
            rule_index: index_of(rules.iter().map(String::as_str)),
            zone_index: index_of(zones.iter().map(String::as_str)),
            service_index: index_of(services.iter().map(|(n, _)| n.as_str())),
            rules,
            zones,
            services,
        }
    }
}

fn scope_of_spec(spec: &ServiceSpec) -> ServiceScope {
    ServiceScope {
        tcp: spec.tcp.clone(),
        udp: spec.udp.clone(),
        icmp: spec.icmp,
    }
}

const KEYS: &str = "id, reason, owner, ticket, created, expires, rule, from, to, services";

/// Diagnostics of one file, by byte offset, in file order.
struct Sink<'t> {
    text: &'t str,
    file: &'t Path,
    /// Byte offset of each line's start, worked out at the first
    /// diagnostic: positions by binary search, so that a thousand
    /// diagnostics cost no more than a thousand lookups.
    line_starts: OnceCell<Vec<usize>>,
    /// The line of [`Sink::line_counted_to`] (exceptions' headers are
    /// asked for in file order: counted on from the last one).
    line_counted: (usize, usize),
    items: Vec<(usize, Diagnostic)>,
}

impl<'t> Sink<'t> {
    fn new(text: &'t str, file: &'t Path) -> Sink<'t> {
        Sink {
            text,
            file,
            line_starts: OnceCell::new(),
            line_counted: (0, 1),
            items: Vec::new(),
        }
    }

    /// 1-based line of byte `offset`, counted on from the offset asked
    /// before when it is not earlier (an exception's header, in file order).
    fn line_of(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        let (counted_to, line) = self.line_counted;
        let line = if offset >= counted_to {
            // Counted in bytes, 255 at a time: the compiler makes the
            // inner loop a vector loop (counted in words, it does not).
            let newlines: usize = self.text.as_bytes()[counted_to..offset]
                .chunks(255)
                .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
                .sum();
            line + newlines
        } else {
            self.position(offset).0
        };
        self.line_counted = (offset, line);
        line
    }

    /// 1-based line and character column of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(
                    self.text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, b)| b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        });
        let line = line_starts.partition_point(|&start| start <= offset);
        let start = line_starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, column + 1)
    }

    fn push(&mut self, level: Level, span: &Range<usize>, message: String, hint: &str) {
        let (line, column) = self.position(span.start);
        self.items.push((
            span.start,
            Diagnostic {
                level,
                file: self.file.to_path_buf(),
                line,
                column,
                message,
                hint: Some(hint.to_owned()),
            },
        ));
    }

    fn error(&mut self, span: &Range<usize>, message: String, hint: &str) {
        self.push(Level::Error, span, message, hint);
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|(at, _)| *at);
        self.items.into_iter().map(|(_, d)| d).collect()
    }
}

/// Reads and checks the exceptions file at `path` against `names`.
/// `today_ns`, when given (by `check`), adds the warning about an
/// exception without `created` that expires more than 366 days after it.
pub fn load_exceptions_file(
    path: &Path,
    names: &PolicyNames,
    today_ns: Option<u64>,
) -> Result<(Vec<Exception>, Vec<Diagnostic>), PolicyError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                return Err(one_error(
                    path,
                    "the exceptions file is not valid UTF-8",
                    "save it as UTF-8 text",
                ));
            }
        },
        Err(e) => {
            return Err(one_error(
                path,
                &format!("cannot read the exceptions file: {e}"),
                "check the path and permissions of the exceptions file",
            ));
        }
    };
    load_exceptions_str(&text, path, names, today_ns)
}

fn one_error(path: &Path, message: &str, hint: &str) -> PolicyError {
    PolicyError {
        diagnostics: vec![Diagnostic {
            level: Level::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: message.to_owned(),
            hint: Some(hint.to_owned()),
        }],
    }
}

/// [`load_exceptions_file`] on text; `path` names it in diagnostics.
pub fn load_exceptions_str(
    text: &str,
    path: &Path,
    names: &PolicyNames,
    today_ns: Option<u64>,
) -> Result<(Vec<Exception>, Vec<Diagnostic>), PolicyError> {
    // A file of the usual shape is read by the quick reader; any other file, and every file
    // with an error, by the `toml` crate, whose reading decides what a file means and how its
    // errors read.
    if let Some(raw) = super::quick::read(text) {
        let mut sink = Sink::new(text, path);
        let list = build_all(&mut sink, &raw, names, today_ns);
        let diagnostics = sink.finish();
        if !diagnostics.iter().any(Diagnostic::is_error) {
            return Ok((list, diagnostics));
        }
    }
    let mut sink = Sink::new(text, path);
    let raw = match toml::from_str::<RawFile>(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().lines().next().unwrap_or_default().trim();
            let hint = if message.starts_with("unknown field") {
                format!("an exceptions file holds [[exceptions]] tables with the keys {KEYS}")
            } else if message.starts_with("missing field") {
                "every exception needs id, reason, owner and expires".to_owned()
            } else {
                "see the exceptions file format in the README".to_owned()
            };
            sink.error(&span, lowercase_first(message), &hint);
            return Err(PolicyError {
                diagnostics: sink.finish(),
            });
        }
    };
    let list = build_all(&mut sink, &raw, names, today_ns);
    let diagnostics = sink.finish();
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(PolicyError { diagnostics })
    } else {
        Ok((list, diagnostics))
    }
}

/// Whether the quick reader reads `text` exactly as the `toml` crate and serde do, spans
/// included; `None` when it leaves `text` to them. For tests and the `exceptions_load` fuzz
/// target.
#[doc(hidden)]
pub fn quick_reader_agrees(text: &str) -> Option<bool> {
    let quick = super::quick::read(text)?;
    Some(match toml::from_str::<RawFile>(text) {
        Ok(full) => format!("{quick:?}") == format!("{full:?}"),
        Err(_) => false,
    })
}

/// Checks every exception of `raw`, in file order.
fn build_all(
    sink: &mut Sink<'_>,
    raw: &RawFile<'_>,
    names: &PolicyNames,
    today_ns: Option<u64>,
) -> Vec<Exception> {
    let mut ids: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    let mut list = Vec::with_capacity(raw.exceptions.len());
    for entry in &raw.exceptions {
        let header = entry.span();
        if let Some(exception) = build(sink, entry.get_ref(), header.clone(), names, today_ns) {
            let id = &entry.get_ref().id;
            if !ids.insert(&**id.get_ref()) {
                sink.error(
                    &id.span(),
                    format!("duplicate exception id {:?}", exception.id),
                    "give each exception its own id",
                );
            }
            list.push(exception);
        }
    }
    list
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn build(
    sink: &mut Sink<'_>,
    raw: &RawException<'_>,
    header: Range<usize>,
    names: &PolicyNames,
    today_ns: Option<u64>,
) -> Option<Exception> {
    let errors_before = sink.items.len();
    let id = raw.id.get_ref();
    if !valid_id(id) {
        sink.error(
            &raw.id.span(),
            format!("invalid exception id {id:?}"),
            "an id starts with a letter or digit and holds letters, digits, '.', '_' and '-'",
        );
    }
    for (value, key) in [(&raw.reason, "reason"), (&raw.owner, "owner")] {
        if value.get_ref().trim().is_empty() {
            sink.error(
                &value.span(),
                format!("empty {key}"),
                "say why the risk is accepted and who owns it",
            );
        }
    }
    let date = |sink: &mut Sink<'_>, value: &Spanned<Datetime>, key: &str| {
        let ns = datetime_ns(value.get_ref());
        if ns.is_none() {
            sink.error(
                &value.span(),
                format!("{key} must be a date or a date-time from 1970 on"),
                "write a TOML date such as 2027-02-01, or a date-time such as 2027-02-01T08:00:00Z",
            );
        }
        ns
    };
    let created = raw.created.as_ref().and_then(|c| date(sink, c, "created"));
    let expires = date(sink, &raw.expires, "expires");
    if let (Some(created), Some(expires)) = (created, expires) {
        if expires <= created {
            sink.error(
                &raw.expires.span(),
                "expires is not after created".to_owned(),
                "an exception ends after it begins",
            );
        } else if expires - created > MAX_VALIDITY_DAYS * DAY_NS {
            sink.error(
                &raw.expires.span(),
                format!(
                    "expires is {} days after created, more than {MAX_VALIDITY_DAYS}",
                    (expires - created).div_ceil(DAY_NS)
                ),
                "accept a risk for at most a year, then review it and write a new exception",
            );
        }
    }
    if let (None, Some(expires), Some(today)) = (created, expires, today_ns)
        && expires > today.saturating_add(MAX_VALIDITY_DAYS * DAY_NS)
    {
        sink.push(
            Level::Warning,
            &raw.expires.span(),
            format!(
                "exception {id:?} expires {}, more than {MAX_VALIDITY_DAYS} days from today",
                format_date(expires)
            ),
            "set created, and accept the risk for at most a year",
        );
    }
    if raw.rule.is_none() && raw.from.is_none() && raw.to.is_none() && raw.services.is_none() {
        sink.error(
            &header,
            format!("exception {id:?} has no scope: it would cover everything"),
            "give at least one of rule, from, to and services",
        );
    }
    let rule = raw
        .rule
        .as_ref()
        .and_then(|rule| rule_scope(sink, rule, names));
    let from = raw
        .from
        .as_ref()
        .map(|list| endpoints(sink, list, names, "from"));
    let to = raw
        .to
        .as_ref()
        .map(|list| endpoints(sink, list, names, "to"));
    let services = raw
        .services
        .as_ref()
        .map(|list| services(sink, list, names));
    if let (Some(RuleScope::Sweep | RuleScope::Scan), true) =
        (rule, raw.to.is_some() || raw.services.is_some())
        && let Some(rule_value) = &raw.rule
    {
        sink.error(
            &rule_value.span(),
            format!(
                "a {} exception is scoped by from only",
                &**rule_value.get_ref()
            ),
            "name the scanner's addresses or zone in from, and leave out to and services",
        );
    }
    if sink
        .items
        .iter()
        .skip(errors_before)
        .any(|(_, d)| d.is_error())
    {
        return None;
    }
    let line = sink.line_of(header.start);
    Some(Exception {
        id: id.to_string(),
        reason: raw.reason.get_ref().to_string(),
        owner: raw.owner.get_ref().to_string(),
        ticket: raw.ticket.as_ref().map(|t| t.get_ref().to_string()),
        created,
        expires: expires?,
        rule,
        from,
        to,
        services,
        line,
    })
}

fn rule_scope(sink: &mut Sink<'_>, rule: &Str<'_>, names: &PolicyNames) -> Option<RuleScope> {
    let name = &**rule.get_ref();
    match name {
        "sweep" => return Some(RuleScope::Sweep),
        "scan" => return Some(RuleScope::Scan),
        "default" => return Some(RuleScope::Rule(DEFAULT_RULE)),
        _ => {}
    }
    match names.rule_index.get(name) {
        Some(&i) => Some(RuleScope::Rule(i as RuleId)),
        None => {
            sink.error(
                &rule.span(),
                format!("unknown rule {name:?}"),
                &format!(
                    "name a rule of the policy, `default`, `sweep` or `scan`{}",
                    some_of(names.rules.iter().map(String::as_str))
                ),
            );
            None
        }
    }
}

/// ", e.g. a, b, c" listing up to five names.
fn some_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let listed: Vec<&str> = names.take(5).collect();
    if listed.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", listed.join(", "))
    }
}

fn endpoints(
    sink: &mut Sink<'_>,
    list: &Spanned<Vec<Str<'_>>>,
    names: &PolicyNames,
    key: &str,
) -> Vec<EndpointScope> {
    if list.get_ref().is_empty() {
        sink.error(
            &list.span(),
            format!("empty {key}"),
            &format!("leave {key} out, or name zones, CIDRs or addresses"),
        );
    }
    let mut scopes = Vec::new();
    for entry in list.get_ref() {
        let text = &**entry.get_ref();
        if text == "any" {
            sink.error(
                &entry.span(),
                format!("`any` is not accepted in an exception's {key}"),
                &format!("an exception never covers everything: leave {key} out instead"),
            );
            continue;
        }
        if text == "unknown" {
            scopes.push(EndpointScope::Zone(UNKNOWN_ZONE));
            continue;
        }
        if let Some(&zone) = names.zone_index.get(text) {
            scopes.push(EndpointScope::Zone(zone as ZoneId));
            continue;
        }
        if text.contains(['.', ':']) {
            match parse_network(text) {
                Ok(scope) => scopes.push(scope),
                Err(problem) => sink.error(
                    &entry.span(),
                    format!("invalid network {text:?} in {key}: {problem}"),
                    "write a CIDR such as 10.40.0.0/24 or an address such as 10.40.0.12",
                ),
            }
            continue;
        }
        sink.error(
            &entry.span(),
            format!("unknown zone {text:?} in {key}"),
            &format!(
                "name a zone of the policy, `unknown`, a CIDR or an address{}",
                some_of(names.zones.iter().map(String::as_str))
            ),
        );
    }
    scopes
}

fn parse_network(text: &str) -> Result<EndpointScope, String> {
    let network: IpNetwork = text.parse().map_err(|e| format!("{e}"))?;
    let (ipv6, addr, bits, width) = match network {
        IpNetwork::V4(n) => (false, u128::from(u32::from(n.ip())), n.prefix(), 32u32),
        IpNetwork::V6(n) => (true, u128::from(n.ip()), n.prefix(), 128u32),
    };
    let host_bits = width - u32::from(bits);
    let mask = if host_bits >= 128 {
        0
    } else {
        (u128::MAX << host_bits) & (u128::MAX >> (128 - width))
    };
    if addr & !mask != 0 {
        return Err("host bits set".to_owned());
    }
    Ok(EndpointScope::Network { ipv6, addr, mask })
}

fn services(
    sink: &mut Sink<'_>,
    list: &Spanned<Vec<Str<'_>>>,
    names: &PolicyNames,
) -> Vec<ServiceScope> {
    if list.get_ref().is_empty() {
        sink.error(
            &list.span(),
            "empty services".to_owned(),
            "leave services out, or name services",
        );
    }
    let mut scopes = Vec::new();
    for entry in list.get_ref() {
        let text = &**entry.get_ref();
        if let Some(&i) = names.service_index.get(text) {
            scopes.push(names.services[i as usize].1.clone());
            continue;
        }
        match parse_inline_service(text) {
            Some(scope) => scopes.push(scope),
            None => sink.error(
                &entry.span(),
                format!("unknown service {text:?}"),
                &format!(
                    "name a service of the policy, or write tcp/P, udp/P-Q or icmp{}",
                    some_of(names.services.iter().map(|(n, _)| n.as_str()))
                ),
            ),
        }
    }
    scopes
}

/// `tcp/P`, `tcp/P-Q`, `udp/...` or `icmp`, as in a rule's services.
fn parse_inline_service(text: &str) -> Option<ServiceScope> {
    if text == "icmp" {
        return Some(ServiceScope {
            icmp: true,
            ..ServiceScope::default()
        });
    }
    let (proto, ports) = text.split_once('/')?;
    let (lo, hi) = match ports.split_once('-') {
        Some((lo, hi)) => (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?),
        None => {
            let port = ports.parse::<u16>().ok()?;
            (port, port)
        }
    };
    if lo == 0 || lo > hi {
        return None;
    }
    let range = vec![PortRange { lo, hi }];
    match proto {
        "tcp" => Some(ServiceScope {
            tcp: range,
            ..ServiceScope::default()
        }),
        "udp" => Some(ServiceScope {
            udp: range,
            ..ServiceScope::default()
        }),
        _ => None,
    }
}
