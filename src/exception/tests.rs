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

/// Reads `text` with both readers: `true` when the quick one read it (and then it must agree),
/// `false` when it left it to the `toml` crate.
fn quick_reads(text: &str) -> bool {
    match quick_reader_agrees(text) {
        Some(agrees) => {
            assert!(agrees, "the readers disagree on:\n{text}");
            true
        }
        None => false,
    }
}

#[test]
fn the_usual_files_read_alike_with_the_quick_reader() {
    assert!(quick_reads(GOOD));
    let thousand: String = (0..1_000)
        .map(|i| {
            format!(
                "[[exceptions]]\nid = \"EX-{i:04}\"\nreason = \"benchmark\"\nowner = \"bench\"\n\
                 expires = 2099-01-01\nrule = \"vendor-remote-session\"\nfrom = [\"vendor-vpn\"]\n\
                 to = [\"192.0.2.{}\"]\nservices = [\"tcp/{}\"]\n\n",
                i % 256,
                1000 + i
            )
        })
        .collect();
    assert!(quick_reads(&thousand));
    let snippets = [
        "",
        "# only a comment\r\n\n",
        "[[exceptions]]\nid=\"a\"\nreason=\"\"\nowner=\"o\"\nexpires=2028-02-29\n",
        "[[exceptions]] # c\n  id = \"a\" # c\n\treason = \"é\"\nowner = \"o\"\n\
         created = 2026-12-31\nexpires = 2027-01-01\nfrom = [\n \"a\", # x\n\n \"b\",\n]\n\
         to = []\nservices = [\"tcp/1\"]\nticket = \"T\"\nrule = \"sweep\"\n",
        "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n\
         [[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\nexpires = 1969-12-31\n",
    ];
    for text in snippets {
        assert!(quick_reads(text), "left to the toml crate:\n{text}");
    }
}

#[test]
fn what_lies_outside_the_quick_subset_is_left_to_the_toml_crate() {
    let head = "[[exceptions]]\nid = \"a\"\nreason = \"r\"\nowner = \"o\"\n";
    let outside = [
        "id = \"top\"\n".to_owned(),
        "[exceptions]\n".to_owned(),
        "[[ exceptions ]]\n".to_owned(),
        "[[exception]]\n".to_owned(),
        "\u{feff}[[exceptions]]\n".to_owned(),
        head.to_owned(),
        format!("{head}expires = 2027-02-29\n"),
        format!("{head}expires = 2027-13-01\n"),
        format!("{head}expires = 2027-04-31\n"),
        format!("{head}expires = 2027-00-10\n"),
        format!("{head}expires = 2027-01-00\n"),
        format!("{head}expires = 2100-02-29\n"),
        format!("{head}expires = 2027-01-01T00:00:00Z\n"),
        format!("{head}expires = 2027-01-01 08:00:00\n"),
        format!("{head}expires = 27-01-01\n"),
        format!("{head}expires = \"2027-01-01\"\n"),
        format!("{head}expires = 2027-01-01\nexpires = 2027-01-01\n"),
        format!("{head}expires = 2027-01-01\nrule = 'lit'\n"),
        format!("{head}expires = 2027-01-01\nrule = \"esc\\\"\"\n"),
        format!("{head}expires = 2027-01-01\nfrom = \"a\"\n"),
        format!("{head}expires = 2027-01-01\nfrom.x = [\"a\"]\n"),
        format!("{head}expires = 2027-01-01\nfrm = [\"a\"]\n"),
        format!("{head}expires = 2027-01-01\nfrom = [1]\n"),
        format!("{head}expires = 2027-01-01\n[policy]\n"),
    ];
    for text in &outside {
        assert!(!quick_reads(text), "read quickly:\n{text}");
    }
}

#[test]
fn every_small_edit_of_an_exceptions_file_reads_alike_or_is_left_to_the_toml_crate() {
    let text =
        format!("{GOOD}\n# second\n{GOOD}").replace("EX-2026-014\"\nreason", "EX-2\"\nreason");
    let mut rng = fastrand::Rng::with_seed(23);
    let inserts = [
        "\"", "'", "[", "]", "=", ",", "#", "\n", "\r", "\t", " ", ".", "\\", "x", "1", "-", "T",
        "0", "9", ":", "{", "\u{7}", "é",
    ];
    let mut quick = 0;
    for _ in 0..3_000 {
        let mut edited = text.clone();
        for _ in 0..rng.usize(1..4) {
            let mut at = rng.usize(..=edited.len());
            while !edited.is_char_boundary(at) {
                at -= 1;
            }
            if rng.bool() {
                edited.insert_str(at, inserts[rng.usize(..inserts.len())]);
            } else if let Some(c) = edited[at..].chars().next() {
                edited.replace_range(at..at + c.len_utf8(), "");
            }
        }
        quick += usize::from(quick_reads(&edited));
        // Read either way, the diagnostics are the `toml` crate's.
        let _ = load(&edited);
    }
    assert!(quick > 300, "{quick}");
}

#[test]
fn a_file_the_quick_reader_reads_gives_the_same_diagnostics_as_the_toml_crate() {
    // Errors found after reading (an unknown rule, a duplicate id) are reported alike
    // whichever reader read the file: the quick reader's result is read again by the `toml`
    // crate when it has an error.
    let text = format!(
        "{GOOD}{GOOD}{}",
        GOOD.replace("vendor-remote-session", "nope")
            .replace("EX-2026-014", "EX-2")
    );
    assert!(quick_reads(&text));
    let errors = load(&text).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("unknown rule \"nope\"")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("duplicate exception id")),
        "{errors:?}"
    );
}

/// The first exception in file order that covers `subject` and is valid,
/// else the first that covers it and has expired: the contract's reading,
/// by trying every exception.
fn match_by_scan(list: &[Exception], subject: &Subject) -> Matched {
    let mut matched = Matched::default();
    for (i, exception) in list.iter().enumerate() {
        if !exception.covers(subject) {
            continue;
        }
        if exception.valid_at(subject.ts_ns) {
            return Matched {
                excepted: Some(i as u32),
                expired: None,
            };
        }
        if subject.ts_ns >= exception.expires && matched.expired.is_none() {
            matched.expired = Some(i as u32);
        }
    }
    matched
}

/// The index by rule, `from` zone and port finds exactly what trying every
/// exception in file order finds, whatever the scopes (zones, networks,
/// port ranges narrow and wide, ICMP, sweeps and scans without a port).
#[test]
fn the_index_matches_as_a_scan_of_every_exception() {
    let mut rng = fastrand::Rng::with_seed(14);
    let rules = [
        RuleScope::Rule(0),
        RuleScope::Rule(1),
        RuleScope::Rule(DEFAULT_RULE),
        RuleScope::Sweep,
        RuleScope::Scan,
    ];
    let zones = [0, 1, 2, UNKNOWN_ZONE];
    for round in 0..300 {
        let endpoint = |rng: &mut fastrand::Rng| {
            if rng.u8(..4) == 0 {
                let bits = rng.u32(24..=32);
                let mask = (u128::MAX << (32 - bits)) & u128::from(u32::MAX);
                EndpointScope::Network {
                    ipv6: false,
                    addr: u128::from(rng.u32(..8)) & mask,
                    mask,
                }
            } else {
                EndpointScope::Zone(zones[rng.usize(..zones.len())])
            }
        };
        let range = |rng: &mut fastrand::Rng| {
            let lo = rng.u16(1..12);
            let wide = rng.u8(..5) == 0;
            PortRange {
                lo,
                hi: lo + if wide { rng.u16(..40) } else { rng.u16(..2) },
            }
        };
        let list: Vec<Exception> = (0..rng.usize(1..40))
            .map(|i| {
                let endpoints = |rng: &mut fastrand::Rng| {
                    (rng.bool()).then(|| (0..rng.usize(0..3)).map(|_| endpoint(rng)).collect())
                };
                let from = endpoints(&mut rng);
                let to = endpoints(&mut rng);
                let services = rng.bool().then(|| {
                    (0..rng.usize(0..3))
                        .map(|_| ServiceScope {
                            tcp: (0..rng.usize(0..3)).map(|_| range(&mut rng)).collect(),
                            udp: (0..rng.usize(0..2)).map(|_| range(&mut rng)).collect(),
                            icmp: rng.u8(..4) == 0,
                        })
                        .collect()
                });
                let created = rng.bool().then(|| rng.u64(0..50));
                Exception {
                    id: format!("E{i}"),
                    reason: "r".into(),
                    owner: "o".into(),
                    ticket: None,
                    created,
                    expires: rng.u64(20..100),
                    rule: rng.bool().then(|| rules[rng.usize(..rules.len())]),
                    from,
                    to,
                    services,
                    line: i,
                }
            })
            .collect();
        let exceptions = Exceptions::new(list.clone());
        for step in 0..200 {
            let rule = rules[rng.usize(..rules.len())];
            let tracked = matches!(rule, RuleScope::Sweep | RuleScope::Scan);
            let transport =
                [Transport::Tcp, Transport::Udp, Transport::EchoRequest][rng.usize(..3)];
            let subject = Subject {
                rule,
                ipv6: rng.u8(..8) == 0,
                src: (u128::from(rng.u32(..8)), zones[rng.usize(..zones.len())]),
                dest: (!tracked || rule == RuleScope::Scan)
                    .then(|| (u128::from(rng.u32(..8)), zones[rng.usize(..zones.len())])),
                service: (!tracked).then(|| (transport, rng.u16(0..60))),
                ts_ns: rng.u64(0..120),
            };
            assert_eq!(
                exceptions.match_subject(&subject),
                match_by_scan(&list, &subject),
                "round {round}, step {step}: {subject:?}"
            );
        }
    }
}
