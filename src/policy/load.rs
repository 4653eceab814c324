//! Reading and validating a policy file (contract section 1).
//!
//! Two steps, as for every config in segwatch: serde reads the TOML into the structs of
//! [`super::raw`], with spans, and [`build`] checks them and produces the [`Policy`]. A TOML
//! syntax error or a serde error (unknown key, wrong type, missing required key) stops at the
//! first; the build step reports every problem it finds in one pass. Diagnostics come back in
//! file order, each with a hint.
//!
//! Defaults: `policy.name` is the file name without its extension, `policy.default_action` is
//! `"alert"`, `policy.default_severity` is `"medium"`, a rule's `severity` is the policy's
//! default severity, and a rule without `services` matches every service.
//!
//! Loading never panics, whatever the input.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use ipnetwork::IpNetwork;
use toml::Spanned;

use super::diagnostic::{Sink, closest};
use super::quick;
use super::raw::{self, RawPolicyFile, RawRule, RawService, RawZone, Str};
use super::values::{self, Problem};
use super::{
    Action, Diagnostic, Level, Policy, PolicyError, Rule, Service, ServiceRef, ServiceSpec,
    Severity, Zone, ZoneRef, shadow,
};

/// The loader's maps, keyed by names and networks of the policy file: foldhash rather than
/// SipHash, as a file is not an attacker choosing keys to collide, and a 5,000-rule file spent
/// 5% of its loading hashing.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Reads, parses and validates the policy file at `path`. On success, returns the policy and
/// its warnings; on failure, every error found and the warnings, in file order.
///
/// An unreadable file gives one diagnostic at line 1, column 1; a file that is not UTF-8 gives
/// one at the first invalid byte.
pub fn load_policy_file(path: &Path) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable_policy(path, &e))?;
    load_policy_bytes(bytes, path)
}

/// The error of a policy file that cannot be read.
pub fn unreadable_policy(path: &Path, e: &std::io::Error) -> PolicyError {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => "check the path of the policy file",
        std::io::ErrorKind::PermissionDenied => "check the file's permissions",
        std::io::ErrorKind::IsADirectory => "give the policy file, not its directory",
        _ => "check that the path names a readable policy file",
    };
    let diagnostic = Diagnostic {
        level: Level::Error,
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        message: format!(
            "cannot read the policy file: {}",
            lowercase_first(&e.to_string())
        ),
        hint: Some(hint.to_owned()),
    };
    PolicyError {
        diagnostics: vec![diagnostic],
    }
}

/// Validates the bytes of a policy file read from `path` (named in diagnostics and giving the
/// default policy name): UTF-8 first, then as [`load_policy_str`].
pub fn load_policy_bytes(
    bytes: Vec<u8>,
    path: &Path,
) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    match String::from_utf8(bytes) {
        Ok(text) => load_policy_str(&text, path),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = std::str::from_utf8(e.as_bytes().get(..valid).unwrap_or_default());
            let mut sink = Sink::new(prefix.unwrap_or_default(), path);
            sink.error(
                &(valid..valid),
                "the policy file is not valid UTF-8".to_owned(),
                "save it as UTF-8 text".to_owned(),
            );
            Err(PolicyError {
                diagnostics: sink.finish(),
            })
        }
    }
}

/// Parses and validates policy text; `path` is used in diagnostics and for the default policy
/// name only.
pub fn load_policy_str(text: &str, path: &Path) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    // A file of the usual shape is read by the quick reader; any other file, and every file
    // with an error, by the `toml` crate, whose reading decides what a file means and how its
    // errors read.
    if let Some(raw) = quick::read(text) {
        let mut sink = Sink::new(text, path);
        let policy = build(&mut sink, raw, path);
        if !sink.has_errors() {
            return Ok((policy, sink.finish()));
        }
    }
    let mut sink = Sink::new(text, path);
    let policy = match toml::from_str::<RawPolicyFile>(text) {
        Ok(raw) => Some(build(&mut sink, raw, path)),
        Err(e) => {
            report_serde_error(&mut sink, text, &e);
            None
        }
    };
    match policy {
        Some(policy) if !sink.has_errors() => Ok((policy, sink.finish())),
        _ => Err(PolicyError {
            diagnostics: sink.finish(),
        }),
    }
}

/// Whether the quick reader reads `text` exactly as the `toml` crate and serde do, spans
/// included; `None` when it leaves `text` to them. For tests and the `policy_load` fuzz target.
#[doc(hidden)]
pub fn quick_reader_agrees(text: &str) -> Option<bool> {
    let quick = quick::read(text)?;
    Some(match toml::from_str::<RawPolicyFile>(text) {
        Ok(full) => format!("{quick:?}") == format!("{full:?}"),
        Err(_) => false,
    })
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ------------------------------------------------------------------ serde errors

/// Turns a TOML or serde error into one diagnostic in the project's words ("key", "list",
/// "table"), with a hint.
fn report_serde_error(sink: &mut Sink<'_>, text: &str, error: &toml::de::Error) {
    let span = error.span().unwrap_or(0..0);
    let raw_message = error.message().lines().next().unwrap_or_default().trim();
    let (message, hint) = describe_serde_error(raw_message, text, &span);
    sink.error(&span, message, hint);
}

/// The names between backticks in a serde message, in order.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// The table whose allowed keys are `keys`, for messages, with those keys.
fn table_of(keys: &[&str]) -> (&'static str, &'static [&'static str]) {
    let tables: [(&str, &[&str]); 5] = [
        ("at the top level", raw::TOP_KEYS),
        ("in [policy]", raw::HEADER_KEYS),
        ("in a [zones.NAME] table", raw::ZONE_KEYS),
        ("in a [services.NAME] table", raw::SERVICE_KEYS),
        ("in a [[rules]] table", raw::RULE_KEYS),
    ];
    let mut wanted = keys.to_vec();
    wanted.sort_unstable();
    for (table, allowed) in tables {
        let mut allowed_sorted = allowed.to_vec();
        allowed_sorted.sort_unstable();
        if allowed_sorted == wanted {
            return (table, allowed);
        }
    }
    ("in this table", &[])
}

fn describe_serde_error(message: &str, text: &str, span: &Range<usize>) -> (String, String) {
    if message.starts_with("unknown field") {
        let names = backticked(message);
        let unknown = names.first().copied().unwrap_or_default();
        let expected = names.get(1..).unwrap_or_default();
        let (table, allowed) = table_of(expected);
        let allowed = if allowed.is_empty() {
            expected
        } else {
            allowed
        };
        let mut hint = format!("the keys allowed {table} are {}", allowed.join(", "));
        if let Some(near) = closest(unknown, allowed.iter().copied()) {
            hint = format!("did you mean `{near}`? {hint}");
        }
        return (format!("unknown key `{unknown}` {table}"), hint);
    }
    if message.starts_with("missing field") {
        let field = backticked(message).first().copied().unwrap_or_default();
        let hint_of = |field: &str| match field {
            "name" => "give every rule a unique name, e.g. name = \"pumps-to-server\"",
            "from" => "add the initiator zones, e.g. from = [\"pumps\"], or from = [\"any\"]",
            "to" => "add the responder zones, e.g. to = [\"pump-server\"], or to = [\"any\"]",
            "action" => "add action = \"allow\" or action = \"alert\"",
            _ => "add the key",
        };
        // Only rules have required keys.
        if !raw::RULE_KEYS.contains(&field) {
            return (
                format!("missing key `{field}` in this table"),
                hint_of(field).to_owned(),
            );
        }
        // Serde names the first missing key; name them all at once.
        let mut missing = missing_rule_keys(text, span.start);
        if !missing.contains(&field) {
            missing = vec![field];
        }
        let hint: Vec<&str> = missing.iter().map(|f| hint_of(f)).collect();
        let keys: Vec<String> = missing.iter().map(|f| format!("`{f}`")).collect();
        let keys = match keys.as_slice() {
            [one] => format!("key {one}"),
            [init @ .., last] => format!("keys {} and {last}", init.join(", ")),
            [] => format!("key `{field}`"),
        };
        return (
            format!("missing {keys} in a [[rules]] table"),
            hint.join("; "),
        );
    }
    if message == "duplicate key" {
        let key = text.get(span.clone()).unwrap_or_default();
        return (
            format!("duplicate key `{key}`"),
            "a key or table may be written once only: remove or rename the repeated one".to_owned(),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let rest = rest
            .replace("expected a sequence", "expected a list")
            .replace("expected a map", "expected a table");
        return match key_at(text, span.start) {
            Some(key) => (format!("wrong type for `{key}`: {rest}"), key_hint(key)),
            None => (format!("wrong type: {rest}"), key_hint("")),
        };
    }
    let hint = match key_at(text, span.start) {
        Some(key) if !message.contains("expected") => key_hint(key),
        _ => "fix the TOML syntax here: strings go in double quotes, lists in [ ], \
              one key = value per line"
            .to_owned(),
    };
    (lowercase_first(message), hint)
}

/// The required keys (`name`, `from`, `to`, `action`) that the `[[rules]]`
/// table at `offset` lacks: that table is the last `[[rules]]` header at or
/// before `offset`, counted in the document as TOML reads it. Empty when
/// the text does not show which table it is.
fn missing_rule_keys(text: &str, offset: usize) -> Vec<&'static str> {
    let line_end = text
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| offset + i);
    let headers = text
        .get(..line_end)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.trim() == "[[rules]]")
        .count();
    let Ok(document) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(rule) = headers
        .checked_sub(1)
        .and_then(|index| document.get("rules")?.as_array()?.get(index))
        .and_then(toml::Value::as_table)
    else {
        return Vec::new();
    };
    ["name", "from", "to", "action"]
        .into_iter()
        .filter(|key| !rule.contains_key(*key))
        .collect()
}

/// The key whose value holds `offset`: the last `key =` before it on its line, or on an earlier
/// line of a multi-line value, stopping at a table header. A heuristic, for hints only.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    for line in before.rsplit('\n').take(100) {
        if let Some((left, _)) = line.rsplit_once('=') {
            let left = left.trim_end();
            let start = left
                .rfind(|c: char| !(c.is_alphanumeric() || "_-.\"'".contains(c)))
                .map_or(0, |i| i + 1);
            let key = left
                .get(start..)?
                .rsplit('.')
                .next()?
                .trim_matches(['"', '\'']);
            return (!key.is_empty()).then_some(key);
        }
        if line.trim_start().starts_with('[') && !line.trim_end().ends_with(',') {
            return None;
        }
    }
    None
}

/// What type a key takes, for wrong-type hints.
fn key_hint(key: &str) -> String {
    let hint = match key {
        "name" | "description" | "criticality" => "this key takes a string in double quotes",
        "default_action" | "action" => "the action is \"allow\" or \"alert\", in double quotes",
        "default_severity" | "severity" => {
            "the severity is \"low\", \"medium\", \"high\" or \"critical\", in double quotes"
        }
        "networks" => "networks is a list of CIDR strings, e.g. networks = [\"10.20.0.0/22\"]",
        "tcp" | "udp" => {
            "ports are a list of numbers or \"LO-HI\" strings, e.g. [443, \"8080-8089\"]"
        }
        "icmp" => "icmp is true or false",
        "from" | "to" => "zones are a list of zone names, e.g. [\"pumps\"] or [\"any\"]",
        "services" => {
            "services is a list of service names or inline services, \
             e.g. services = [\"dicom\", \"tcp/8080-8089\"]"
        }
        "policy" => "[policy] is a table: write it as a [policy] header",
        "zones" => "zones are tables: write each as a [zones.NAME] header",
        "rules" => "rules are an array of tables: write each as a [[rules]] header",
        _ => "check the type of the value against the policy format",
    };
    hint.to_owned()
}

// ------------------------------------------------------------------ build

/// Emits `problem` at `span` as an error.
fn report(sink: &mut Sink<'_>, span: &Range<usize>, problem: Problem) {
    sink.error(span, problem.message, problem.hint);
}

/// Checks a string value with `check`, reporting a failure at the value.
fn checked<T>(
    sink: &mut Sink<'_>,
    value: &Str,
    check: impl FnOnce(&str) -> Result<T, Problem>,
) -> Option<T> {
    check(value.get_ref())
        .map_err(|p| report(sink, &value.span(), p))
        .ok()
}

/// Produces the policy from its raw form, reporting every problem to `sink`. The result is
/// meaningful only when no error was reported.
fn build(sink: &mut Sink<'_>, raw: RawPolicyFile, path: &Path) -> Policy {
    let header = raw.policy;
    let name = match header.name {
        Some(name) => name.into_inner().into_string(),
        None => default_name(path),
    };
    let default_action = header
        .default_action
        .and_then(|a| checked(sink, &a, values::action))
        .unwrap_or(Action::Alert);
    let default_severity = header
        .default_severity
        .and_then(|s| checked(sink, &s, values::severity))
        .unwrap_or(Severity::Medium);

    let (zones, zone_index) = build_zones(sink, raw.zones.0);
    let services = build_services(sink, raw.services.0);
    let rules = build_rules(
        sink,
        raw.rules,
        &zones,
        &zone_index,
        &services,
        default_severity,
    );

    let mut model = Vec::with_capacity(rules.len());
    let mut name_spans = Vec::with_capacity(rules.len());
    let mut usable = Vec::with_capacity(rules.len());
    for built in rules {
        model.push(built.rule);
        name_spans.push(built.name_span);
        usable.push(built.usable);
    }
    // Rules that look at the application are left out of the shadow check:
    // ports alone do not tell which flows they match.
    let comparable: Vec<bool> = model
        .iter()
        .zip(&usable)
        .map(|(rule, &usable)| usable && !rule.depends_on_app())
        .collect();
    for (later, earlier) in shadow::shadowed(&model, &comparable, zones.len()) {
        let (a, b, a_span, b_span) = (
            &model[earlier],
            &model[later],
            &name_spans[earlier],
            &name_spans[later],
        );
        let a_line = sink.line_of(a_span);
        let same = a.action == b.action && (a.action == Action::Allow || a.severity == b.severity);
        let hint = if same {
            format!(
                "rule `{}` already does the same: remove `{}`",
                a.name, b.name
            )
        } else {
            format!(
                "if `{}` is meant to take effect, move it above `{}` or narrow `{}`",
                b.name, a.name, a.name
            )
        };
        sink.warning(
            b_span,
            format!(
                "rule `{}` can never match: rule `{}` (line {a_line}) matches every flow it would",
                b.name, a.name
            ),
            hint,
        );
    }

    let clinical = raw
        .clinical
        .map(|c| build_clinical(sink, c.into_inner(), default_severity))
        .unwrap_or_default();
    Policy {
        name,
        default_action,
        default_severity,
        zones,
        services: services.into_iter().map(|s| s.service).collect(),
        rules: model,
        clinical,
    }
}

/// `[clinical]`.
fn build_clinical(
    sink: &mut Sink<'_>,
    raw: raw::RawClinical,
    default_severity: Severity,
) -> crate::policy::ClinicalChecks {
    let severity = |sink: &mut Sink<'_>, value: &Option<Str>| {
        value
            .as_ref()
            .and_then(|s| checked(sink, s, values::severity))
    };
    let names = |values: Option<Vec<Str>>| -> Vec<String> {
        values
            .into_iter()
            .flatten()
            .map(|v| v.into_inner().trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    crate::policy::ClinicalChecks {
        unexpected_port: severity(sink, &raw.unexpected_port),
        unknown_ae_title: severity(sink, &raw.unknown_ae_title).unwrap_or(default_severity),
        unknown_hl7_sender: severity(sink, &raw.unknown_hl7_sender).unwrap_or(default_severity),
        known_ae_titles: names(raw.known_ae_titles),
        known_hl7_senders: names(raw.known_hl7_senders),
    }
}

/// The file name without its extension, or `policy`.
fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "policy".to_owned())
}

/// Zones in file order, and the index of each zone name usable in rules.
fn build_zones(
    sink: &mut Sink<'_>,
    raw: Vec<(Str, RawZone)>,
) -> (Vec<Zone>, FastMap<String, usize>) {
    let mut zones = Vec::with_capacity(raw.len());
    let mut index = FastMap::default();
    // Each network seen so far: the zone holding it and where it was written (its line is
    // worked out only for a message).
    let mut owners: FastMap<IpNetwork, (usize, usize)> = FastMap::default();
    for (key, raw_zone) in raw {
        let name = key.get_ref().as_str();
        let me = zones.len();
        match name {
            "any" => sink.error(
                &key.span(),
                "zone name `any` is reserved".to_owned(),
                "in rules `any` means every zone: give this zone another name".to_owned(),
            ),
            "unknown" => sink.error(
                &key.span(),
                "zone name `unknown` is reserved".to_owned(),
                "`unknown` is where addresses that no zone holds fall: give this zone another name"
                    .to_owned(),
            ),
            _ => {
                if let Err(p) = values::check_name("zone", name) {
                    report(sink, &key.span(), p);
                }
                // Registered even when invalid, so that rules naming it get no second error.
                index.insert(name.to_owned(), me);
            }
        }

        let mut networks = Vec::new();
        let listed = raw_zone.networks.as_ref().map(|n| n.get_ref());
        for text in listed.into_iter().flatten() {
            let span = text.span();
            let Some(net) = checked(sink, text, values::network) else {
                continue;
            };
            match owners
                .get(&net)
                .map(|&(zone, at)| (zone, sink.position(at).0))
            {
                Some((zone, line)) if zone == me => sink.warning(
                    &span,
                    format!(
                        "network {net} is listed twice in zone `{name}` (first at line {line})"
                    ),
                    "remove the repeated entry".to_owned(),
                ),
                Some((zone, line)) => {
                    let other: &Zone = &zones[zone];
                    sink.error(
                        &span,
                        format!(
                            "network {net} is already in zone `{}` (line {line})",
                            other.name
                        ),
                        "an address range belongs to one zone: remove it from one of the two"
                            .to_owned(),
                    );
                }
                None => {
                    owners.insert(net, (me, span.start));
                    networks.push(net);
                }
            }
        }
        if listed.is_none_or(Vec::is_empty) {
            let span = raw_zone.networks.as_ref().map_or(key.span(), Spanned::span);
            sink.warning(
                &span,
                format!("zone `{name}` has no networks, so no address is ever in it"),
                "add networks = [\"CIDR\", ...] or remove the zone".to_owned(),
            );
        }

        zones.push(Zone {
            name: key.into_inner().into_string(),
            description: raw_zone.description,
            networks,
            criticality: raw_zone.criticality,
        });
    }
    (zones, index)
}

/// A named service and whether it was free of errors (a rule using a broken one is left out of
/// the shadowing check).
struct BuiltService {
    service: Service,
    ok: bool,
}

fn build_services(sink: &mut Sink<'_>, raw: Vec<(Str, RawService)>) -> Vec<BuiltService> {
    let mut services = Vec::with_capacity(raw.len());
    for (key, raw_service) in raw {
        let mut ok = true;
        if let Err(p) = values::check_name("service", key.get_ref()) {
            report(sink, &key.span(), p);
        }
        let mut ports = |list: &Option<Vec<Spanned<raw::PortItem>>>| -> Vec<_> {
            let mut ranges = Vec::new();
            for item in list.iter().flatten() {
                match values::port_item(item.get_ref()) {
                    Ok(range) => ranges.push(range),
                    Err(p) => {
                        report(sink, &item.span(), p);
                        ok = false;
                    }
                }
            }
            ranges
        };
        let tcp = ports(&raw_service.tcp);
        let udp = ports(&raw_service.udp);
        let app = raw_service.app.as_ref().and_then(|app| {
            let known: Vec<&str> = crate::app::App::ALL.iter().map(|a| a.as_str()).collect();
            if known.contains(&app.get_ref().as_str()) {
                Some(app.get_ref().as_str().to_owned())
            } else {
                sink.error(
                    &app.span(),
                    format!("unknown application `{}`", app.get_ref()),
                    format!("use one of {}", known.join(", ")),
                );
                ok = false;
                None
            }
        });
        let spec = ServiceSpec {
            tcp,
            udp,
            icmp: raw_service.icmp.unwrap_or(false),
            app,
        };
        let no_ports = |list: &Option<Vec<_>>| list.as_ref().is_none_or(Vec::is_empty);
        if no_ports(&raw_service.tcp)
            && no_ports(&raw_service.udp)
            && !spec.icmp
            && spec.app.is_none()
        {
            sink.warning(
                &key.span(),
                format!(
                    "service `{}` matches nothing: it has no tcp or udp ports and icmp is not true",
                    key.get_ref()
                ),
                "add tcp = [...], udp = [...] or icmp = true, or remove the service".to_owned(),
            );
        }
        services.push(BuiltService {
            service: Service {
                name: key.into_inner().into_string(),
                spec,
            },
            ok,
        });
    }
    services
}

/// A rule, where its name is written, and whether it resolved without errors.
struct BuiltRule {
    rule: Rule,
    name_span: Range<usize>,
    usable: bool,
}

fn build_rules<'a>(
    sink: &mut Sink<'_>,
    raw: Vec<Spanned<RawRule<'a>>>,
    zones: &[Zone],
    zone_index: &FastMap<String, usize>,
    services: &[BuiltService],
    default_severity: Severity,
) -> Vec<BuiltRule> {
    let service_index: FastMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.service.name.as_str(), i))
        .collect();
    // Where each rule name was first written (its line is worked out only for a message).
    let mut names: FastMap<std::borrow::Cow<'a, str>, usize> = FastMap::default();
    let mut rules = Vec::with_capacity(raw.len());
    for raw_rule in raw {
        let raw_rule = raw_rule.into_inner();
        let name_span = raw_rule.name.span();
        let name = raw_rule.name.get_ref();
        if name.as_str() == "default" {
            sink.error(
                &name_span,
                "rule name `default` is reserved".to_owned(),
                "events name the verdict for flows no rule matches `default`: \
                 give this rule another name"
                    .to_owned(),
            );
        }
        if let Some(&at) = names.get(name.as_str()) {
            let first = sink.position(at).0;
            sink.error(
                &name_span,
                format!("duplicate rule name `{name}`: it is already used at line {first}"),
                "rule names must be unique: rename one of the two".to_owned(),
            );
        } else {
            names.insert(name.to_cow(), name_span.start);
        }

        let mut usable = true;
        let from = zone_refs(sink, &raw_rule.from, "from", zones, zone_index, &mut usable);
        let to = zone_refs(sink, &raw_rule.to, "to", zones, zone_index, &mut usable);
        let mut refs = Vec::new();
        for label in raw_rule.services.iter().flatten() {
            match service_ref(label, services, &service_index) {
                Ok(r) => {
                    usable &= r.named.is_none_or(|i| services[i].ok);
                    refs.push(r);
                }
                Err(p) => {
                    report(sink, &label.span(), p);
                    usable = false;
                }
            }
        }
        let mut list = |values: &Option<Vec<Str<'_>>>, key: &str| -> Vec<String> {
            let mut out = Vec::new();
            for value in values.iter().flatten() {
                let text = value.get_ref();
                // A wildcard only as the whole first label: `*.example.org`.
                let wildcard_ok = match text.strip_prefix("*.") {
                    Some(rest) => !rest.contains('*'),
                    None => !text.contains('*'),
                };
                let bad_wildcard = key == "tls_server_names" && !wildcard_ok;
                if text.trim().is_empty() || bad_wildcard {
                    sink.error(
                        &value.span(),
                        format!("`{key}` holds {text:?}, which matches nothing"),
                        if key == "tls_server_names" {
                            "write a server name, or `*.example.org` for its subdomains".to_owned()
                        } else {
                            "write the value as the protocol carries it, e.g. \"PACS1\"".to_owned()
                        },
                    );
                    usable = false;
                } else {
                    out.push(text.as_str().to_owned());
                }
            }
            out
        };
        let conditions = crate::policy::AppConditions {
            dicom_called_ae: list(&raw_rule.dicom_called_ae, "dicom_called_ae"),
            dicom_calling_ae: list(&raw_rule.dicom_calling_ae, "dicom_calling_ae"),
            hl7_sending_app: list(&raw_rule.hl7_sending_app, "hl7_sending_app"),
            hl7_sending_facility: list(&raw_rule.hl7_sending_facility, "hl7_sending_facility"),
            hl7_message_types: list(&raw_rule.hl7_message_types, "hl7_message_types"),
            tls_server_names: list(&raw_rule.tls_server_names, "tls_server_names"),
        };
        let action = checked(sink, &raw_rule.action, values::action).unwrap_or(Action::Alert);
        let severity = match &raw_rule.severity {
            Some(s) => checked(sink, s, values::severity).unwrap_or(default_severity),
            None => default_severity,
        };
        rules.push(BuiltRule {
            rule: Rule {
                name: raw_rule.name.into_inner().into_string(),
                from,
                to,
                services: refs,
                action,
                severity,
                conditions,
            },
            name_span,
            usable,
        });
    }
    rules
}

/// Resolves a rule's `from` or `to` list (`key`). Clears `usable` on an error.
fn zone_refs(
    sink: &mut Sink<'_>,
    list: &Spanned<Vec<Str>>,
    key: &str,
    zones: &[Zone],
    index: &FastMap<String, usize>,
    usable: &mut bool,
) -> Vec<ZoneRef> {
    if list.get_ref().is_empty() {
        let role = if key == "from" {
            "initiator"
        } else {
            "responder"
        };
        sink.error(
            &list.span(),
            format!("empty `{key}` list: the rule can never match"),
            format!("list the {role} zones, e.g. {key} = [\"pumps\"], or {key} = [\"any\"]"),
        );
        *usable = false;
    }
    let mut refs = Vec::with_capacity(list.get_ref().len());
    for entry in list.get_ref() {
        let name = entry.get_ref().as_str();
        let zone = match name {
            "any" => ZoneRef::Any,
            "unknown" => ZoneRef::Unknown,
            _ => match index.get(name) {
                Some(&i) => ZoneRef::Zone(i),
                None => {
                    let names = index.keys().map(String::as_str);
                    let hint = match closest(name, names.chain(["any", "unknown"])) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!(
                            "define [zones.{name}], or use one of {}",
                            listing(zones.iter().map(|z| z.name.as_str()), &["any", "unknown"])
                        ),
                    };
                    sink.error(&entry.span(), format!("unknown zone `{name}`"), hint);
                    *usable = false;
                    continue;
                }
            },
        };
        refs.push(zone);
    }
    refs
}

/// Names for a hint: at most ten from `names`, then `extra`.
fn listing<'a>(names: impl Iterator<Item = &'a str>, extra: &[&str]) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.collect();
    let mut shown: Vec<String> = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    if names.len() > SHOWN {
        shown.push(format!("... ({} in all)", names.len()));
    }
    shown.extend(extra.iter().map(|n| format!("`{n}`")));
    shown.join(", ")
}

/// Resolves one entry of a rule's `services`: a named service first, then an inline one.
fn service_ref(
    label: &Str,
    services: &[BuiltService],
    index: &FastMap<&str, usize>,
) -> Result<ServiceRef, Problem> {
    let text = label.get_ref();
    if let Some(&i) = index.get(text.as_str()) {
        return Ok(ServiceRef {
            label: text.as_str().to_owned(),
            named: Some(i),
            spec: services[i].service.spec.clone(),
        });
    }
    if let Some(inline) = values::inline_service(text) {
        return inline.map(|spec| ServiceRef {
            label: text.as_str().to_owned(),
            named: None,
            spec,
        });
    }
    let names = services.iter().map(|s| s.service.name.as_str());
    let hint = match closest(text, names.clone().chain(["tcp", "udp", "icmp"])) {
        Some(near) => format!("did you mean `{near}`?"),
        None => match values::inline_guess(text) {
            Some(guess) => format!("did you mean the inline service `{guess}`?"),
            None if services.is_empty() => {
                format!("define [services.{text}], or write an inline service such as tcp/443")
            }
            None => format!(
                "define [services.{text}], write an inline service such as tcp/443, \
                 or use one of {}",
                listing(names, &[])
            ),
        },
    };
    Err(Problem {
        message: format!("unknown service `{text}`"),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::policy::PortRange;

    /// Eight lines: two zones and a service, so that snippets appended to it start at line 9.
    const HEAD: &str = "\
[zones.pumps]
networks = [\"10.20.0.0/22\"]

[zones.pump-server]
networks = [\"10.20.8.10\"]

[services.https]
tcp = [443]
";

    fn load(text: &str) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
        load_policy_str(text, Path::new("test.toml"))
    }

    fn diagnostics(text: &str) -> Vec<Diagnostic> {
        match load(text) {
            Ok((_, warnings)) => warnings,
            Err(e) => e.diagnostics,
        }
    }

    /// The one error in `text`, after checking it is the only one and that it has a hint.
    #[track_caller]
    fn only_error(text: &str) -> Diagnostic {
        let errors: Vec<_> = diagnostics(text)
            .into_iter()
            .filter(|d| d.is_error())
            .collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = errors.into_iter().next().unwrap();
        assert!(
            error.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "no hint: {error}"
        );
        assert_eq!(error.file, PathBuf::from("test.toml"));
        error
    }

    /// Asserts the place of a diagnostic and that its message contains `needle`.
    #[track_caller]
    fn assert_at(d: &Diagnostic, line: usize, column: usize, needle: &str) {
        assert_eq!((d.line, d.column), (line, column), "{d}");
        assert!(d.message.contains(needle), "{d}");
    }

    fn hint(d: &Diagnostic) -> &str {
        d.hint.as_deref().unwrap_or_default()
    }

    fn rule(name: &str, from: &str, to: &str, services: &str, action: &str) -> String {
        format!(
            "\n[[rules]]\nname = \"{name}\"\nfrom = {from}\nto = {to}\nservices = {services}\n\
             action = \"{action}\"\n"
        )
    }

    // ---------------------------------------------------------------- serde-level errors

    #[test]
    fn unknown_key_in_policy_table() {
        let e = only_error("[policy]\nname = \"x\"\nseverity = \"high\"\n");
        assert_at(&e, 3, 1, "unknown key `severity` in [policy]");
        assert!(
            hint(&e).contains("name, default_action, default_severity"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_at_top_level() {
        let e = only_error(&format!("{HEAD}[zone.monitors]\n"));
        assert_at(&e, 9, 2, "unknown key `zone` at the top level");
        assert!(hint(&e).starts_with("did you mean `zones`?"), "{e}");
    }

    #[test]
    fn unknown_key_in_zone() {
        let e = only_error("[zones.pumps]\nnetwork = [\"10.20.0.0/22\"]\n");
        assert_at(&e, 2, 1, "unknown key `network` in a [zones.NAME] table");
        assert!(hint(&e).starts_with("did you mean `networks`?"), "{e}");
    }

    #[test]
    fn unknown_key_in_service() {
        let e = only_error(&format!(
            "{HEAD}[services.dns]\nudp = [53]\n  sctp = [53]\n"
        ));
        assert_at(&e, 11, 3, "unknown key `sctp` in a [services.NAME] table");
        assert!(hint(&e).contains("description, tcp, udp, icmp"), "{e}");
    }

    #[test]
    fn unknown_key_in_rule() {
        let text = format!(
            "{HEAD}[[rules]]\nname = \"a\"\nfrom = [\"pumps\"]\nto = [\"any\"]\naction = \"allow\"\n\
             service = [\"https\"]\n"
        );
        let e = only_error(&text);
        assert_at(&e, 14, 1, "unknown key `service` in a [[rules]] table");
        assert!(hint(&e).starts_with("did you mean `services`?"), "{e}");
    }

    #[test]
    fn missing_required_key() {
        let text = format!("{HEAD}[[rules]]\nname = \"a\"\nfrom = [\"pumps\"]\nto = [\"any\"]\n");
        let e = only_error(&text);
        assert_at(&e, 9, 1, "missing key `action` in a [[rules]] table");
        assert!(hint(&e).contains("action = \"allow\""), "{e}");
    }

    /// Issue 15.12: every missing key of a rule in one error, not one per
    /// run of `check`.
    #[test]
    fn all_missing_keys_of_a_rule_at_once() {
        let text = format!(
            "{HEAD}[[rules]]\nname = \"a\"\nfrom = [\"pumps\"]\nto = [\"any\"]\naction = \"allow\"\n\
             [[rules]]\nname = \"b\"\n"
        );
        let e = only_error(&text);
        assert!(
            e.message
                .contains("missing keys `from`, `to` and `action` in a [[rules]] table"),
            "{e}"
        );
        for key in ["from = ", "to = ", "action = "] {
            assert!(hint(&e).contains(key), "{e}");
        }
    }

    #[test]
    fn wrong_types() {
        let e = only_error("[zones.a]\nnetworks = \"10.0.0.0/8\"\n");
        assert_at(&e, 2, 12, "wrong type for `networks`");
        let e = only_error("[services.a]\ntcp = [\n  80,\n  true,\n]\n");
        assert_at(&e, 4, 3, "wrong type for `tcp`");
        let e = only_error(
            "rules = [{name = \"a\", from = \"any\", to = [\"any\"], action = \"allow\"}]\n",
        );
        assert_at(&e, 1, 30, "wrong type for `from`");
    }

    #[test]
    fn toml_syntax_error() {
        let e = only_error("[policy]\nname = \"unterminated\n");
        assert_at(&e, 2, 21, "invalid basic string");
        let e = only_error("[policy]\n[policy]\n");
        assert_at(&e, 2, 2, "duplicate key `policy`");
    }

    // ---------------------------------------------------------------- names

    #[test]
    fn unknown_zone() {
        let text = format!(
            "{HEAD}{}",
            rule(
                "r",
                "[\"pumps\", \"pump-srever\"]",
                "[\"any\"]",
                "[]",
                "allow"
            )
        );
        let e = only_error(&text);
        assert_at(&e, 12, 18, "unknown zone `pump-srever`");
        assert_eq!(hint(&e), "did you mean `pump-server`?");
        // No close name: the hint lists what exists.
        let text = format!(
            "{HEAD}{}",
            rule("r", "[\"any\"]", "[\"internet\"]", "[]", "allow")
        );
        let e = only_error(&text);
        assert_at(&e, 13, 7, "unknown zone `internet`");
        assert!(
            hint(&e).contains("`pumps`, `pump-server`, `any`, `unknown`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_service() {
        let text = format!(
            "{HEAD}{}",
            rule(
                "r",
                "[\"any\"]",
                "[\"any\"]",
                "[\"https\", \"htps\"]",
                "allow"
            )
        );
        let e = only_error(&text);
        assert_at(&e, 14, 22, "unknown service `htps`");
        assert_eq!(hint(&e), "did you mean `https`?");
    }

    #[test]
    fn reserved_zone_name_any() {
        let e = only_error(&format!(
            "{HEAD}[zones.any]\nnetworks = [\"10.9.0.0/16\"]\n"
        ));
        assert_at(&e, 9, 8, "zone name `any` is reserved");
    }

    #[test]
    fn reserved_zone_name_unknown() {
        let e = only_error(&format!(
            "{HEAD}\n[zones.unknown]\nnetworks = [\"10.9.0.0/16\"]\n"
        ));
        assert_at(&e, 10, 8, "zone name `unknown` is reserved");
    }

    #[test]
    fn reserved_rule_name_default() {
        let text = format!(
            "{HEAD}{}",
            rule("default", "[\"any\"]", "[\"any\"]", "[]", "alert")
        );
        let e = only_error(&text);
        assert_at(&e, 11, 8, "rule name `default` is reserved");
    }

    #[test]
    fn invalid_zone_name() {
        let e = only_error(&format!(
            "{HEAD}[zones.Guest_WiFi]\nnetworks = [\"172.16.0.0/16\"]\n"
        ));
        assert_at(&e, 9, 8, "invalid zone name `Guest_WiFi`");
        assert!(hint(&e).ends_with("did you mean `guest_wifi`?"), "{e}");
        let e = only_error(&format!(
            "{HEAD}[zones.\"icu beds\"]\nnetworks = [\"10.9.0.0/16\"]\n"
        ));
        assert_at(&e, 9, 8, "invalid zone name `icu beds`");
        assert!(hint(&e).ends_with("did you mean `icu-beds`?"), "{e}");
    }

    #[test]
    fn invalid_service_name() {
        let e = only_error(&format!("{HEAD}[services._hl7]\ntcp = [2575]\n"));
        assert_at(&e, 9, 11, "invalid service name `_hl7`");
        assert!(hint(&e).ends_with("did you mean `hl7`?"), "{e}");
    }

    // ---------------------------------------------------------------- networks

    #[test]
    fn invalid_cidr() {
        let e = only_error("[zones.a]\nnetworks = [\"10.0.0.0/8\", \"10.300.0.0/16\"]\n");
        assert_at(&e, 2, 27, "invalid network \"10.300.0.0/16\"");
        let e = only_error("[zones.a]\nnetworks = [\"10.0.0.0/33\"]\n");
        assert_at(&e, 2, 13, "invalid network \"10.0.0.0/33\"");
        assert!(hint(&e).contains("0 to 32"), "{e}");
    }

    #[test]
    fn cidr_with_host_bits_set() {
        let e = only_error("[zones.pump-server]\nnetworks = [\"10.20.8.9/24\"]\n");
        assert_at(&e, 2, 13, "network \"10.20.8.9/24\" has host bits set");
        assert!(hint(&e).starts_with("did you mean 10.20.8.0/24?"), "{e}");
    }

    #[test]
    fn same_cidr_in_two_zones() {
        let e = only_error(&format!(
            "{HEAD}[zones.servers]\nnetworks = [\"10.1.0.0/24\", \"10.20.8.10/32\"]\n"
        ));
        assert_at(
            &e,
            10,
            28,
            "network 10.20.8.10/32 is already in zone `pump-server` (line 5)",
        );
    }

    // ---------------------------------------------------------------- ports

    #[test]
    fn port_zero_in_named_service() {
        let e = only_error(&format!("{HEAD}[services.dns]\nudp = [53, 0]\n"));
        assert_at(&e, 10, 12, "port 0 is out of range");
        assert_eq!(hint(&e), "ports run from 1 to 65535");
    }

    #[test]
    fn port_65536_in_named_service() {
        let e = only_error(&format!("{HEAD}[services.x]\ntcp = [\"1000-65536\"]\n"));
        assert_at(&e, 10, 8, "port 65536 in \"1000-65536\" is out of range");
        let e = only_error(&format!("{HEAD}[services.x]\ntcp = [65536]\n"));
        assert_at(&e, 10, 8, "port 65536 is out of range");
        let e = only_error(&format!("{HEAD}[services.x]\ntcp = [-443]\n"));
        assert_at(&e, 10, 8, "port -443 is out of range");
    }

    #[test]
    fn port_out_of_range_inline() {
        let text = format!(
            "{HEAD}{}",
            rule(
                "r",
                "[\"any\"]",
                "[\"any\"]",
                "[\"tcp/0\", \"udp/65536\"]",
                "allow"
            )
        );
        let errors: Vec<_> = diagnostics(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_at(
            &errors[0],
            14,
            13,
            "port 0 in inline service `tcp/0` is out of range",
        );
        assert_at(
            &errors[1],
            14,
            22,
            "port 65536 in inline service `udp/65536` is out of range",
        );
        assert!(errors.iter().all(|e| e.is_error() && e.hint.is_some()));
    }

    #[test]
    fn reversed_range_in_named_service() {
        let e = only_error(&format!("{HEAD}[services.x]\ntcp = [80, \"8089-8080\"]\n"));
        assert_at(
            &e,
            10,
            12,
            "port range 8089-8080 in \"8089-8080\" runs backwards",
        );
        assert_eq!(hint(&e), "write it as \"8080-8089\"");
    }

    #[test]
    fn reversed_range_inline() {
        let text = format!(
            "{HEAD}{}",
            rule(
                "r",
                "[\"any\"]",
                "[\"any\"]",
                "[\"udp/5010-5000\"]",
                "allow"
            )
        );
        let e = only_error(&text);
        assert_at(
            &e,
            14,
            13,
            "port range 5010-5000 in inline service `udp/5010-5000` runs backwards",
        );
        assert_eq!(hint(&e), "write it as udp/5000-5010");
    }

    #[test]
    fn malformed_inline_service() {
        let text = format!(
            "{HEAD}{}",
            rule("r", "[\"any\"]", "[\"any\"]", "[\"tcp/x\"]", "allow")
        );
        let e = only_error(&text);
        assert_at(&e, 14, 13, "invalid port `x` in inline service `tcp/x`");
        let text = format!(
            "{HEAD}{}",
            rule(
                "r",
                "[\"any\"]",
                "[\"any\"]",
                "[\"https\", \"sctp/5\"]",
                "allow"
            )
        );
        let e = only_error(&text);
        assert_at(
            &e,
            14,
            22,
            "unknown protocol `sctp` in inline service `sctp/5`",
        );
        assert!(
            hint(&e).contains("a rule without services matches every protocol"),
            "{e}"
        );
    }

    #[test]
    fn malformed_named_port() {
        let e = only_error(&format!("{HEAD}[services.x]\ntcp = [\"80:90\"]\n"));
        assert_at(&e, 10, 8, "invalid port range \"80:90\"");
    }

    // ---------------------------------------------------------------- rules

    #[test]
    fn duplicate_rule_names() {
        let text = format!(
            "{HEAD}{}{}",
            rule(
                "pumps-out",
                "[\"pumps\"]",
                "[\"any\"]",
                "[\"https\"]",
                "alert"
            ),
            rule(
                "pumps-out",
                "[\"pump-server\"]",
                "[\"any\"]",
                "[\"https\"]",
                "alert"
            )
        );
        let e = only_error(&text);
        assert_at(
            &e,
            18,
            8,
            "duplicate rule name `pumps-out`: it is already used at line 11",
        );
    }

    #[test]
    fn empty_from() {
        let text = format!("{HEAD}{}", rule("r", "[]", "[\"any\"]", "[]", "alert"));
        let e = only_error(&text);
        assert_at(&e, 12, 8, "empty `from` list");
        assert!(hint(&e).contains("from = [\"any\"]"), "{e}");
    }

    #[test]
    fn empty_to() {
        let text = format!("{HEAD}{}", rule("r", "[\"any\"]", "[ ]", "[]", "alert"));
        let e = only_error(&text);
        assert_at(&e, 13, 6, "empty `to` list");
    }

    #[test]
    fn bad_action_and_severity_values() {
        let e = only_error("[policy]\ndefault_severity = \"severe\"\n");
        assert_at(&e, 2, 20, "unknown severity \"severe\"");
        let text = format!(
            "{HEAD}{}",
            rule("r", "[\"any\"]", "[\"any\"]", "[]", "deny")
        );
        let e = only_error(&text);
        assert_at(&e, 15, 10, "unknown action \"deny\"");
        let text = format!(
            "{HEAD}{}severity = \"hihg\"\n",
            rule("r", "[\"any\"]", "[\"any\"]", "[]", "alert")
        );
        let e = only_error(&text);
        assert_at(&e, 16, 12, "unknown severity \"hihg\"");
        assert!(hint(&e).starts_with("did you mean \"high\"?"), "{e}");
    }

    #[test]
    fn every_error_in_one_pass_in_file_order() {
        let text = "\
[policy]
default_action = \"block\"

[zones.Pumps]
networks = [\"10.20.8.9/24\"]

[zones.monitors]
networks = [\"10.21.0.0/22\", \"10.21.0.0/22\"]

[services.web]
tcp = [80, 0]

[[rules]]
name = \"a\"
from = [\"pumps\", \"monitor\"]
to = []
services = [\"web\", \"tcp/99999\"]
action = \"allow\"

[[rules]]
name = \"a\"
from = [\"any\"]
to = [\"any\"]
action = \"alert\"
";
        let got: Vec<_> = diagnostics(text)
            .iter()
            .map(|d| (d.level, d.line, d.column))
            .collect();
        use Level::{Error as E, Warning as W};
        assert_eq!(
            got,
            [
                (E, 2, 18),  // default_action
                (E, 4, 8),   // zone name
                (E, 5, 13),  // host bits
                (W, 8, 29),  // same network twice in one zone
                (E, 11, 12), // port 0
                (E, 15, 9),  // unknown zone `pumps` (the zone is `Pumps`)
                (E, 15, 18), // unknown zone `monitor`
                (E, 16, 6),  // empty to
                (E, 17, 20), // port 99999
                (E, 21, 8),  // duplicate rule name
            ]
        );
        let e = load(text).unwrap_err();
        assert!(e.diagnostics.iter().all(|d| d.hint.is_some()));
        assert!(e.to_string().ends_with("(+8 more errors)"), "{e}");
    }

    // ---------------------------------------------------------------- warnings

    #[test]
    fn warnings_for_things_that_match_nothing() {
        let text = format!(
            "{HEAD}[zones.spare]\n[zones.lab]\nnetworks = []\n[services.nothing]\nicmp = false\n"
        );
        let (_, warnings) = load(&text).unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(
            warnings
                .iter()
                .all(|w| w.level == Level::Warning && w.hint.is_some())
        );
        assert_at(&warnings[0], 9, 8, "zone `spare` has no networks");
        assert_at(&warnings[1], 11, 12, "zone `lab` has no networks");
        assert_at(&warnings[2], 12, 11, "service `nothing` matches nothing");
    }

    #[test]
    fn same_network_twice_in_one_zone_is_a_warning() {
        let text = "[zones.a]\nnetworks = [\"10.0.0.0/8\", \"fd00::/8\", \"fd00::/8\"]\n";
        let (policy, warnings) = load(text).unwrap();
        assert_eq!(warnings.len(), 1);
        assert_at(
            &warnings[0],
            2,
            39,
            "network fd00::/8 is listed twice in zone `a` (first at line 2)",
        );
        assert_eq!(policy.zones[0].networks.len(), 2);
    }

    /// The shadow warnings of a policy made of HEAD, the extra zone `lab`, the named services
    /// `web` (tcp 80, 443, 8000-8099) and `ping`, and `rules`.
    fn shadow_warnings(rules: &[String]) -> Vec<Diagnostic> {
        let text = format!(
            "{HEAD}[zones.lab]\nnetworks = [\"10.70.0.0/24\"]\n\
             [services.web]\ntcp = [80, 443, \"8000-8099\"]\n[services.ping]\nicmp = true\n{}",
            rules.concat()
        );
        let (_, warnings) = load(&text).unwrap();
        warnings
    }

    #[test]
    fn shadowed_rule_positive_cases() {
        let cases = [
            // Same zones, narrower ports.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"web\"]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/8080-8089\", \"https\"]",
            ),
            // `any` covers named zones and `unknown`.
            (
                "[\"any\"]",
                "[\"lab\"]",
                "[\"web\"]",
                "[\"unknown\", \"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/80\"]",
            ),
            (
                "[\"pumps\"]",
                "[\"any\"]",
                "[]",
                "[\"pumps\"]",
                "[\"unknown\"]",
                "[]",
            ),
            // `unknown` listed covers `unknown`.
            (
                "[\"unknown\", \"lab\"]",
                "[\"lab\"]",
                "[\"ping\"]",
                "[\"unknown\"]",
                "[\"lab\"]",
                "[\"icmp\"]",
            ),
            // Every zone and `unknown` is the universe, `any` included.
            (
                "[\"pumps\", \"pump-server\", \"lab\", \"unknown\"]",
                "[\"lab\"]",
                "[]",
                "[\"any\"]",
                "[\"lab\"]",
                "[\"web\"]",
            ),
            // An empty service list covers everything, an empty one included.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"web\", \"ping\", \"udp\"]",
            ),
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
            ),
            // Touching ranges merge; bare `tcp` is every TCP port.
            (
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"tcp/1-999\", \"tcp/1000-65535\"]",
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"tcp\"]",
            ),
            (
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"tcp\", \"icmp\"]",
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"web\", \"ping\"]",
            ),
        ];
        for (i, (f1, t1, s1, f2, t2, s2)) in cases.into_iter().enumerate() {
            let warnings = shadow_warnings(&[
                rule("early", f1, t1, s1, "allow"),
                rule("late", f2, t2, s2, "alert"),
            ]);
            assert_eq!(warnings.len(), 1, "case {i}: {warnings:#?}");
            // HEAD (8 lines) + 6 lines of zones and services; each rule takes 7 lines.
            assert_at(
                &warnings[0],
                24,
                8,
                "rule `late` can never match: rule `early` (line 17) matches every flow it would",
            );
            assert!(
                hint(&warnings[0]).contains("move it above `early`"),
                "case {i}"
            );
        }
    }

    #[test]
    fn shadowed_rule_negative_cases() {
        let cases = [
            // Wider ports.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/8080-8089\"]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/8080-8090\"]",
            ),
            // Same ports, other protocol.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/53\"]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"udp/53\"]",
            ),
            // ICMP not in the earlier rule.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"web\"]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"https\", \"ping\"]",
            ),
            // `unknown` not covered by named zones; `any` not covered by a list without it.
            (
                "[\"pumps\", \"lab\"]",
                "[\"lab\"]",
                "[]",
                "[\"unknown\"]",
                "[\"lab\"]",
                "[]",
            ),
            (
                "[\"pumps\", \"pump-server\", \"lab\"]",
                "[\"lab\"]",
                "[]",
                "[\"any\"]",
                "[\"lab\"]",
                "[]",
            ),
            (
                "[\"pumps\"]",
                "[\"unknown\"]",
                "[]",
                "[\"pumps\"]",
                "[\"any\"]",
                "[]",
            ),
            // An empty service list is wider than every list of services, bare tcp and udp too.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp\", \"udp\", \"icmp\"]",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
            ),
            // Larger zone lists.
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
                "[\"pumps\", \"lab\"]",
                "[\"lab\"]",
                "[\"web\"]",
            ),
            (
                "[\"pumps\"]",
                "[\"lab\"]",
                "[]",
                "[\"pumps\"]",
                "[\"lab\", \"pumps\"]",
                "[\"web\"]",
            ),
            // A gap between ranges.
            (
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"tcp/1-999\", \"tcp/1001-65535\"]",
                "[\"lab\"]",
                "[\"lab\"]",
                "[\"tcp\"]",
            ),
        ];
        for (i, (f1, t1, s1, f2, t2, s2)) in cases.into_iter().enumerate() {
            let warnings = shadow_warnings(&[
                rule("early", f1, t1, s1, "allow"),
                rule("late", f2, t2, s2, "alert"),
            ]);
            assert!(warnings.is_empty(), "case {i}: {warnings:#?}");
        }
    }

    #[test]
    fn shadowing_names_the_first_covering_rule_and_checks_later_rules_too() {
        let warnings = shadow_warnings(&[
            rule(
                "narrow",
                "[\"pumps\"]",
                "[\"lab\"]",
                "[\"tcp/80\"]",
                "allow",
            ),
            rule("wide", "[\"any\"]", "[\"any\"]", "[]", "alert"),
            rule("dead", "[\"pumps\"]", "[\"lab\"]", "[\"tcp/80\"]", "allow"),
        ]);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_at(
            &warnings[0],
            31,
            8,
            "rule `dead` can never match: rule `narrow` (line 17)",
        );
        assert_eq!(
            hint(&warnings[0]),
            "rule `narrow` already does the same: remove `dead`"
        );
    }

    #[test]
    fn rules_with_errors_cause_no_shadow_warning() {
        let text = format!(
            "{HEAD}{}{}",
            rule("a", "[\"pumps\", \"nope\"]", "[\"any\"]", "[]", "alert"),
            rule("b", "[\"pumps\"]", "[\"any\"]", "[]", "alert")
        );
        let diagnostics = load(&text).unwrap_err().diagnostics;
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    }

    // ---------------------------------------------------------------- the model

    #[test]
    fn defaults() {
        let (policy, warnings) = load_policy_str(
            "[zones.a]\nnetworks = [\"10.0.0.0/8\"]\n",
            Path::new("dir/clinic.toml"),
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(policy.name, "clinic");
        assert_eq!(policy.default_action, Action::Alert);
        assert_eq!(policy.default_severity, Severity::Medium);
        assert!(policy.rules.is_empty() && policy.services.is_empty());
        let (policy, _) = load_policy_str("", Path::new("")).unwrap();
        assert_eq!(policy.name, "policy");
    }

    #[test]
    fn severity_defaults_to_the_policy_default() {
        let text = format!(
            "[policy]\ndefault_severity = \"high\"\n{HEAD}{}",
            rule("r", "[\"any\"]", "[\"any\"]", "[]", "alert")
        );
        let (policy, _) = load(&text).unwrap();
        assert_eq!(policy.default_severity, Severity::High);
        assert_eq!(policy.rules[0].severity, Severity::High);
    }

    #[test]
    fn named_services_win_over_inline_names() {
        let text = "[services.icmp]\ntcp = [7]\n[services.x]\nicmp = true\n\n[[rules]]\n\
                    name = \"r\"\nfrom = [\"any\"]\nto = [\"any\"]\nservices = [\"icmp\"]\naction = \"allow\"\n\
                    [[rules]]\nname = \"s\"\nfrom = [\"any\"]\nto = [\"unknown\"]\n\
                    services = [\"udp\", \"tcp/80\", \"x\"]\naction = \"allow\"\n";
        let (policy, warnings) = load(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:#?}");
        let icmp = &policy.rules[0].services[0];
        assert_eq!((icmp.label.as_str(), icmp.named), ("icmp", Some(0)));
        assert_eq!(icmp.spec.tcp, [PortRange { lo: 7, hi: 7 }]);
        assert!(!icmp.spec.icmp);
        let s = &policy.rules[1].services;
        assert_eq!(s[0].named, None);
        assert_eq!(s[0].spec.udp, [PortRange { lo: 1, hi: 65535 }]);
        assert_eq!(s[1].spec.tcp, [PortRange { lo: 80, hi: 80 }]);
        assert_eq!(s[2].named, Some(1));
        assert_eq!(policy.rules[1].to, [ZoneRef::Unknown]);
    }

    #[test]
    fn named_service_port_forms() {
        let text = "[services.s]\ndescription = \"mixed\"\ntcp = [22, \"80\", \"8080-8089\"]\nudp = [\"53\"]\n";
        let (policy, _) = load(text).unwrap();
        let spec = &policy.services[0].spec;
        let pr = |lo, hi| PortRange { lo, hi };
        assert_eq!(spec.tcp, [pr(22, 22), pr(80, 80), pr(8080, 8089)]);
        assert_eq!(spec.udp, [pr(53, 53)]);
    }

    fn policies_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
    }

    #[test]
    fn bundled_policies_load_without_diagnostics() {
        let mut count = 0;
        for entry in std::fs::read_dir(policies_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let (_, warnings) = load_policy_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {:#?}", path.display(), e.diagnostics));
                assert!(warnings.is_empty(), "{}: {warnings:#?}", path.display());
                count += 1;
            }
        }
        assert!(count >= 3, "found {count} policies");
    }

    #[test]
    fn example_hospital_resolves() {
        let (policy, warnings) =
            load_policy_file(&policies_dir().join("example-hospital.toml")).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(policy.name, "example-hospital");
        assert_eq!(policy.default_action, Action::Alert);
        assert_eq!(policy.default_severity, Severity::Medium);
        assert_eq!(policy.zones.len(), 14);
        // Twelve `[services.*]` tables; with the inline `tcp/5000-5010`, rules name thirteen
        // distinct services.
        assert_eq!(policy.services.len(), 12);
        let mut labels: Vec<_> = policy
            .rules
            .iter()
            .flat_map(|r| r.services.iter().map(|s| s.label.as_str()))
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 13);
        assert_eq!(policy.rules.len(), 20);

        let rule = |name: &str| policy.rules.iter().find(|r| r.name == name).unwrap();
        let zone = |name: &str| policy.zones.iter().position(|z| z.name == name).unwrap();

        let lab = rule("lab-results");
        assert_eq!(lab.services.len(), 2);
        assert_eq!(lab.services[0].label, "hl7-mllp");
        let hl7 = lab.services[0].named.unwrap();
        assert_eq!(policy.services[hl7].name, "hl7-mllp");
        assert_eq!(lab.services[0].spec.tcp, [PortRange { lo: 2575, hi: 2575 }]);
        assert_eq!(lab.services[1].label, "tcp/5000-5010");
        assert_eq!(lab.services[1].named, None);
        assert_eq!(lab.services[1].spec.tcp, [PortRange { lo: 5000, hi: 5010 }]);
        assert!(lab.services[1].spec.udp.is_empty() && !lab.services[1].spec.icmp);
        assert_eq!(lab.from, [ZoneRef::Zone(zone("lab-analyzers"))]);
        assert_eq!(lab.action, Action::Allow);

        assert_eq!(rule("shared-services").from, [ZoneRef::Any]);
        assert_eq!(
            rule("shared-services").to,
            [ZoneRef::Zone(zone("core-services"))]
        );
        assert_eq!(rule("pump-peer").severity, Severity::High);
        assert!(rule("pump-peer").services.is_empty());
        assert_eq!(rule("pumps-to-server").severity, Severity::Medium);
        assert_eq!(rule("medical-device-internet").severity, Severity::Critical);
        assert_eq!(rule("vendor-remote-session").severity, Severity::Low);
        assert_eq!(rule("guest-isolation").to, [ZoneRef::Any]);

        let server = &policy.zones[zone("pump-server")];
        assert_eq!(
            server.networks,
            ["10.20.8.10/32".parse::<IpNetwork>().unwrap()]
        );
        assert_eq!(server.criticality.as_deref(), Some("clinical"));
        let pumps = &policy.zones[zone("pumps")];
        assert_eq!(
            pumps.networks[1],
            "fd00:20::/48".parse::<IpNetwork>().unwrap()
        );
        assert_eq!(policy.zones[zone("internet")].description, None);
        assert_eq!(policy.services[policy.services.len() - 1].name, "ping");
        assert!(policy.services[policy.services.len() - 1].spec.icmp);
    }

    #[test]
    fn bundled_example_matches_the_shared_spec() {
        let shared =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/example-hospital.toml");
        // The shared folder sits beside the checkout in development and CI; skip without it.
        if let Ok(spec) = std::fs::read(&shared) {
            let ours = std::fs::read(policies_dir().join("example-hospital.toml")).unwrap();
            assert!(
                spec == ours,
                "policies/example-hospital.toml differs from the spec's"
            );
        }
    }

    // ---------------------------------------------------------------- files

    #[test]
    fn unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let e = load_policy_file(&missing).unwrap_err();
        assert_eq!(e.diagnostics.len(), 1);
        let d = &e.diagnostics[0];
        assert_at(d, 1, 1, "cannot read the policy file");
        assert_eq!(d.file, missing);
        assert!(d.hint.is_some());
        let e = load_policy_file(dir.path()).unwrap_err();
        assert_at(&e.diagnostics[0], 1, 1, "cannot read the policy file");
    }

    #[test]
    fn non_utf8_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        std::fs::write(&path, b"[zones.a]\ndescription = \"Stra\xdfe\"\n").unwrap();
        let e = load_policy_file(&path).unwrap_err();
        assert_eq!(e.diagnostics.len(), 1);
        assert_at(&e.diagnostics[0], 2, 20, "not valid UTF-8");
    }

    // ---------------------------------------------------------------- no panics

    #[test]
    fn every_prefix_of_the_example_loads_or_fails_cleanly() {
        let text = std::fs::read_to_string(policies_dir().join("example-hospital.toml")).unwrap();
        for (i, _) in text.char_indices() {
            let result = load(&text[..i]);
            if let Err(e) = result {
                assert!(e.diagnostics.iter().any(Diagnostic::is_error), "prefix {i}");
            }
        }
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        const EXAMPLE: &str = include_str!("../../policies/example-hospital.toml");

        /// Bytes that tend to break TOML and the checks: quotes, brackets, separators,
        /// digits and the letters of keywords.
        const INTERESTING: &[u8] = b"\"'[]{}=,.-/\n#\\ 0123456789aunyicmpt\xff";

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn mutated_example_never_panics(
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8)
            ) {
                let mut bytes = EXAMPLE.as_bytes().to_vec();
                for (at, byte, kind) in edits {
                    let i = at.index(bytes.len());
                    let byte = if byte < 128 { INTERESTING[usize::from(byte) % INTERESTING.len()] } else { byte };
                    match kind {
                        0 => bytes[i] = byte,
                        1 => bytes.insert(i, byte),
                        _ => { bytes.remove(i); }
                    }
                }
                let text = String::from_utf8_lossy(&bytes);
                if let Err(e) = load(&text) {
                    prop_assert!(e.diagnostics.iter().any(Diagnostic::is_error));
                    for d in &e.diagnostics {
                        prop_assert!(d.line >= 1 && d.column >= 1 && d.hint.is_some());
                    }
                }
            }

            #[test]
            fn arbitrary_text_never_panics(text in "(\\PC|\n){0,200}") {
                let _ = load(&text);
            }

            #[test]
            fn tomlish_text_never_panics(
                text in "((\\[\\[?(zones|services|rules|policy)(\\.[a-zA-Z_-]{0,6})?\\]\\]?)|([a-z_]{1,16} = (\\[((\"[^\"\\n]{0,20}\"|-?[0-9]{1,6}|true), ?){0,4}\\]|\"[^\"\\n]{0,24}\"|-?[0-9]{1,7}|true|false))|\n){0,40}"
            ) {
                let _ = load(&text);
            }
        }
    }
}
