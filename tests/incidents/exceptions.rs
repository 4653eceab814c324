//! Exceptions (contract section 8) through `replay` and `check`.

use segwatch::synth::{Capture, Pkt};
use segwatch::wire::tcp_flags::SYN;

use super::{Case, at, golden, lines};

fn capture() -> Capture {
    let mut c = Capture::new();
    // 0: the vendor's session to the CT (excepted by EX-CT-VPN).
    c.add(
        at(0.0),
        &Pkt::tcp("10.90.0.5:40000", "10.40.0.12:3389", SYN),
    );
    // 1: the same rule to another host: the exception's `to` refuses it.
    c.add(
        at(10.0),
        &Pkt::tcp("10.90.0.5:40001", "10.40.0.13:3389", SYN),
    );
    // 2: a guest to the CT's web port: EX-GUEST has expired by then, the
    // later EX-HTTPS names it (first valid match in file order).
    c.add(
        at(20.0),
        &Pkt::tcp("10.66.0.9:50000", "10.40.0.12:443", SYN),
    );
    // 3: allowed: no violation at all.
    c.add(at(30.0), &Pkt::tcp("10.10.0.1:50000", "10.10.0.2:445", SYN));
    // 4: office to imaging (default): before EX-OFFICE's `created`.
    c.add(at(40.0), &Pkt::tcp("10.10.0.1:50001", "10.40.0.12:22", SYN));
    // 5: a guest to the office: only the expired EX-GUEST covers it.
    c.add(at(50.0), &Pkt::tcp("10.66.0.9:50001", "10.10.0.5:445", SYN));
    // 6: office to imaging again, now within EX-OFFICE.
    c.add(at(70.0), &Pkt::tcp("10.10.0.1:50002", "10.40.0.12:22", SYN));
    c
}

const EXCEPTIONS: &str = r#"
[[exceptions]]
id = "EX-CT-VPN"
reason = "CT vendor VPN until the jump host is in place"
owner = "Imaging IT"
ticket = "CHG-4411"
created = 2026-11-01
expires = 2027-02-01
rule = "vendor-remote-session"
from = ["vendor-vpn"]
to = ["10.40.0.12"]
services = ["rdp"]

[[exceptions]]
id = "EX-GUEST"
reason = "guest onboarding test"
owner = "Network team"
expires = 2026-11-28T08:00:15Z
from = ["guest"]

[[exceptions]]
id = "EX-HTTPS"
reason = "CT web console from the guest network during the pilot"
owner = "Imaging IT"
created = 2026-11-28T09:00:00+01:00
expires = 2026-12-31
to = ["imaging"]
services = ["https", "tcp/8443"]

[[exceptions]]
id = "EX-OFFICE"
reason = "admin SSH to imaging during the migration"
owner = "Imaging IT"
created = 2026-11-28T08:01:00Z
expires = 2026-11-29
from = ["10.10.0.0/24"]
to = ["imaging"]
"#;

#[test]
fn exceptions_name_violations_by_scope_validity_and_file_order() {
    let case = Case::new(&capture(), Some(EXCEPTIONS));
    let (status, stdout, stderr) = case.replay(&["--threads", "1"]);
    assert_eq!(status, 0, "{stderr}");
    let events = lines(&stdout);
    let exception_of = |i: usize| events[i]["exception"].as_str().map(str::to_owned);
    // Six violations (the allowed flow makes none), in capture order.
    assert_eq!(events.len(), 6, "{stdout}");
    assert_eq!(exception_of(0).as_deref(), Some("EX-CT-VPN"));
    assert_eq!(exception_of(1), None);
    assert_eq!(exception_of(2).as_deref(), Some("EX-HTTPS"));
    assert_eq!(exception_of(3), None, "before created");
    assert_eq!(exception_of(4), None, "after expires");
    assert_eq!(exception_of(5).as_deref(), Some("EX-OFFICE"));
    // The field comes last, after the contract's fields.
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(",\"exception\":\"EX-CT-VPN\"}")
    );
    assert!(
        stderr.contains(
            "  excepted       3 (EX-CT-VPN 1; EX-GUEST 0, 1 after expiry; EX-HTTPS 1; EX-OFFICE 1)"
        ),
        "{stderr}"
    );
    golden("exceptions.jsonl", &stdout);

    // Without the file, the same events without the field: nothing else
    // changes.
    std::fs::remove_file(case.path("exceptions.toml")).unwrap();
    let (_, plain, plain_stderr) = case.replay(&["--threads", "1"]);
    let stripped: String = stdout
        .lines()
        .map(|l| {
            let cut = l.find(",\"exception\":").map_or(l.len(), |i| i);
            if cut == l.len() {
                format!("{l}\n")
            } else {
                format!("{}}}\n", &l[..cut])
            }
        })
        .collect();
    assert_eq!(plain, stripped);
    assert!(!plain_stderr.contains("excepted"));
}

#[test]
fn excepted_violations_do_not_count_for_fail_on() {
    // Critical: the guest's two flows (2 excepted by EX-HTTPS, 5 not).
    let case = Case::new(&capture(), Some(EXCEPTIONS));
    assert_eq!(case.replay(&["-q", "--fail-on", "critical"]).0, 1);
    let covering = format!(
        "{EXCEPTIONS}\n[[exceptions]]\nid = \"EX-GUEST-OFFICE\"\nreason = \"r\"\nowner = \"o\"\n\
         expires = 2026-12-01\nfrom = [\"guest\"]\nto = [\"office\"]\n"
    );
    let case = Case::new(&capture(), Some(&covering));
    let (status, stdout, _) = case.replay(&["-q", "--fail-on", "critical"]);
    assert_eq!(status, 0, "{stdout}");
    // High: flow 1 is not excepted.
    assert_eq!(case.replay(&["-q", "--fail-on", "high"]).0, 1);
}

#[test]
fn a_bad_exceptions_file_is_one_error_line_per_problem_and_status_2() {
    let bad = "[[exceptions]]\nid = \"X\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n\
               from = [\"any\"]\nrule = \"no-such-rule\"\n";
    let case = Case::new(&capture(), Some(bad));
    let (status, stdout, stderr) = case.replay(&[]);
    assert_eq!(status, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("exceptions.toml:6:9: error: `any` is not accepted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exceptions.toml:7:8: error: unknown rule \"no-such-rule\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn check_validates_exceptions_and_warns() {
    let case = Case::new(&capture(), Some(EXCEPTIONS));
    let unmatchable = format!(
        "{EXCEPTIONS}\n[[exceptions]]\nid = \"EX-NEVER\"\nreason = \"r\"\nowner = \"o\"\n\
         expires = 2099-01-01\nrule = \"office-internal\"\n"
    );
    std::fs::write(case.path("exceptions.toml"), unmatchable).unwrap();
    let out = std::process::Command::new(crate::common::SEGWATCH)
        .current_dir(case.dir.path())
        .args(["check", "policy.toml", "--exceptions", "exceptions.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("exceptions.toml: ok: 5 exceptions"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning: exception \"EX-GUEST\" expired on 2026-11-28"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: exception \"EX-NEVER\" can never match"),
        "{stderr}"
    );
    assert!(stderr.contains("more than 366 days from today"), "{stderr}");

    std::fs::write(case.path("exceptions.toml"), "[[exceptions]]\nid = \"A\"\n").unwrap();
    let out = std::process::Command::new(crate::common::SEGWATCH)
        .current_dir(case.dir.path())
        .args(["check", "policy.toml", "--exceptions", "exceptions.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exceptions.toml:1:1: error: missing field"),
        "{stderr}"
    );
}
