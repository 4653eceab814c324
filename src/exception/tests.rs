use std::path::Path;

use super::*;
use crate::classify::{CompiledPolicy, Verdict, ZoneTable};
use crate::policy::load_policy_str;

const POLICY: &str = r#"
[policy]
default_action = "alert"
[zones.vendor-vpn]
networks = ["10.90.0.0/24"]
[zones.imaging]
networks = ["10.40.0.0/24"]
[zones.office]
networks = ["10.10.0.0/16"]
[services.rdp]
tcp = [3389]
[[rules]]
name = "office-ok"
from = ["office"]
to = ["office"]
action = "allow"
[[rules]]
name = "vendor-remote-session"
from = ["vendor-vpn"]
to = ["imaging"]
severity = "high"
action = "alert"
"#;

fn policy() -> (CompiledPolicy, PolicyNames) {
    let (policy, _) = load_policy_str(POLICY, Path::new("p.toml")).unwrap();
    (CompiledPolicy::compile(&policy), PolicyNames::of(&policy))
}

fn load(text: &str) -> Result<Vec<Exception>, Vec<String>> {
    let (_, names) = policy();
    load_exceptions_str(text, Path::new("ex.toml"), &names, None)
        .map(|(list, _)| list)
        .map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect())
}

const GOOD: &str = r#"
[[exceptions]]
id = "EX-2026-014"
reason = "CT vendor VPN until the jump host is in place"
owner = "Imaging IT"
ticket = "CHG-4411"
created = 2026-11-01
expires = 2027-02-01
rule = "vendor-remote-session"
from = ["vendor-vpn"]
to = ["10.40.0.12"]
services = ["rdp"]
"#;

fn subject(src: u32, dest: u32, port: u16, ts_ns: u64) -> Subject {
    let (compiled, _) = policy();
    let zone = |a: u32| compiled.zone_of(false, u128::from(a)).zone;
    Subject {
        rule: RuleScope::Rule(1),
        ipv6: false,
        src: (u128::from(src), zone(src)),
        dest: Some((u128::from(dest), zone(dest))),
        service: Some((Transport::Tcp, port)),
        ts_ns,
    }
}

const VPN: u32 = 0x0a5a_0005; // 10.90.0.5
const CT: u32 = 0x0a28_000c; // 10.40.0.12
const OTHER_CT: u32 = 0x0a28_000d; // 10.40.0.13

fn day(y: i64, m: u32, d: u32) -> u64 {
    days_from_civil(y, m, d) as u64 * DAY_NS
}

#[test]
fn the_contract_example_loads_and_matches_by_every_key() {
    let list = load(GOOD).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].rule, Some(RuleScope::Rule(1)));
    let exceptions = Exceptions::new(list);
    let at = day(2026, 12, 1);
    assert_eq!(
        exceptions
            .match_subject(&subject(VPN, CT, 3389, at))
            .excepted,
        Some(0)
    );
    // Each scope key on its own can refuse.
    assert_eq!(
        exceptions
            .match_subject(&subject(VPN, OTHER_CT, 3389, at))
            .excepted,
        None
    );
    assert_eq!(
        exceptions
            .match_subject(&subject(VPN, CT, 3390, at))
            .excepted,
        None
    );
    assert_eq!(
        exceptions
            .match_subject(&subject(CT, CT, 3389, at))
            .excepted,
        None
    );
    let mut other_rule = subject(VPN, CT, 3389, at);
    other_rule.rule = RuleScope::Rule(Verdict::DEFAULT_RULE);
    assert_eq!(exceptions.match_subject(&other_rule).excepted, None);
}

#[test]
fn validity_is_created_inclusive_expires_exclusive_by_capture_time() {
    let exceptions = Exceptions::new(load(GOOD).unwrap());
    let created = day(2026, 11, 1);
    let expires = day(2027, 2, 1);
    let m = |ts| exceptions.match_subject(&subject(VPN, CT, 3389, ts));
    assert_eq!(m(created - 1), Matched::default());
    assert_eq!(m(created).excepted, Some(0));
    assert_eq!(m(expires - 1).excepted, Some(0));
    // At expiry it no longer excepts, and counts an expired hit.
    assert_eq!(
        m(expires),
        Matched {
            excepted: None,
            expired: Some(0)
        }
    );
}

#[test]
fn the_first_match_in_file_order_names_it_across_the_rule_index() {
    let text = r#"
[[exceptions]]
id = "A-ruleless"
reason = "r"
owner = "o"
expires = 2027-01-01
from = ["vendor-vpn"]
[[exceptions]]
id = "B-by-rule"
reason = "r"
owner = "o"
expires = 2027-01-01
rule = "vendor-remote-session"
"#;
    let exceptions = Exceptions::new(load(text).unwrap());
    let s = subject(VPN, CT, 3389, day(2026, 12, 1));
    assert_eq!(exceptions.match_subject(&s).excepted, Some(0));
    let swapped = text
        .replace("A-ruleless", "X")
        .replace("B-by-rule", "A-ruleless");
    let list = load(&swapped).unwrap();
    assert_eq!(list[0].id, "X");
    // An expired earlier one does not hide a valid later one.
    let expired_first = text.replacen("expires = 2027-01-01", "expires = 2026-01-01", 1);
    let exceptions = Exceptions::new(load(&expired_first).unwrap());
    assert_eq!(
        exceptions.match_subject(&s),
        Matched {
            excepted: Some(1),
            expired: None
        }
    );
}

#[test]
fn zones_cidrs_and_unknown_scope_endpoints() {
    let text = r#"
[[exceptions]]
id = "net"
reason = "r"
owner = "o"
expires = 2027-01-01
from = ["10.90.0.0/28", "unknown"]
to = ["imaging"]
"#;
    let list = load(text).unwrap();
    assert_eq!(
        list[0].from.as_deref().unwrap()[1],
        EndpointScope::Zone(ZoneTable::UNKNOWN)
    );
    let exceptions = Exceptions::new(list);
    let at = day(2026, 12, 1);
    assert_eq!(
        exceptions.match_subject(&subject(VPN, CT, 1, at)).excepted,
        Some(0)
    );
    assert_eq!(
        exceptions
            .match_subject(&subject(0x0a5a_0010, CT, 1, at))
            .excepted,
        None
    );
    assert_eq!(
        exceptions
            .match_subject(&subject(0xc0a8_0001, CT, 1, at))
            .excepted,
        Some(0)
    );
}

#[test]
fn errors_name_file_line_column_and_hint() {
    let cases: &[(&str, &str)] = &[
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nrule = \"no-such\"\n",
            "ex.toml:6:8: error: unknown rule \"no-such\"",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nfrom = [\"any\"]\n",
            "ex.toml:6:9: error: `any` is not accepted in an exception's from",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n",
            "has no scope",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\ncreated = 2026-01-01\nexpires = 2027-01-03\nto = [\"imaging\"]\n",
            "ex.toml:6:11: error: expires is 367 days after created, more than 366",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"imagng\"]\n",
            "unknown zone \"imagng\" in to",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nservices = [\"rdpp\"]\n",
            "unknown service \"rdpp\"",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"10.40.0.1/24\"]\n",
            "host bits set",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"imaging\"]\n",
            "missing field `reason`",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nrule = \"scan\"\nto = [\"imaging\"]\n",
            "a scan exception is scoped by from only",
        ),
        (
            "[[exceptions]]\nid = \"-a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"imaging\"]\n",
            "invalid exception id",
        ),
        (
            "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"imaging\"]\n[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nto = [\"imaging\"]\n",
            "ex.toml:8:6: error: duplicate exception id \"a\"",
        ),
    ];
    for (text, expected) in cases {
        let errors = load(text).expect_err(text);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(expected) && e.contains("(hint: ")),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn check_warns_about_expired_and_unmatchable_exceptions() {
    let (compiled, names) = policy();
    let text = r#"
[[exceptions]]
id = "old"
reason = "r"
owner = "o"
expires = 2026-01-01
to = ["imaging"]
[[exceptions]]
id = "allowed-anyway"
reason = "r"
owner = "o"
expires = 2027-06-01
from = ["office"]
to = ["office"]
[[exceptions]]
id = "allow-rule"
reason = "r"
owner = "o"
expires = 2027-06-01
rule = "office-ok"
[[exceptions]]
id = "far"
reason = "r"
owner = "o"
expires = 2029-06-01
rule = "vendor-remote-session"
"#;
    let today = day(2026, 12, 7);
    let (list, warnings) =
        load_exceptions_str(text, Path::new("ex.toml"), &names, Some(today)).unwrap();
    let mut all: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    all.extend(
        crate::classify::exception_warnings(&list, Path::new("ex.toml"), &compiled, today)
            .iter()
            .map(ToString::to_string),
    );
    let has = |s: &str| all.iter().any(|w| w.contains(s));
    assert!(has("exception \"old\" expired on 2026-01-01"), "{all:?}");
    assert!(
        has("exception \"allowed-anyway\" can never match"),
        "{all:?}"
    );
    assert!(has("exception \"allow-rule\" can never match"), "{all:?}");
    assert!(
        has("exception \"far\" expires 2029-06-01, more than 366 days"),
        "{all:?}"
    );
    assert!(!has("exception \"old\" can never match"), "{all:?}");
}
