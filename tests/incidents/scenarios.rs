//! Every clause of contract section 7 on generated captures spanning hours
//! of capture time: each scenario's output is held in a golden file, and
//! the clause it tests is asserted on top.

use segwatch::synth::{Capture, Pkt};
use segwatch::wire::tcp_flags::{ACK, SYN};
use serde_json::Value;

use super::{Case, at, golden, lines};

fn syn(c: &mut Capture, t: f64, src: &str, dst: &str) {
    c.add(at(t), &Pkt::tcp(src, dst, SYN));
}

/// A packet of an existing, allowed flow: time passes on the wire.
fn filler(c: &mut Capture, t: f64) {
    c.add(at(t), &Pkt::tcp("10.10.0.1:50000", "10.10.0.2:445", ACK));
}

fn records(out: &[Value]) -> Vec<&Value> {
    out.iter()
        .filter(|v| v["event_type"] == "incident")
        .collect()
}

fn summary(r: &Value) -> String {
    format!(
        "{} {} {} flows={} dests={} first={} last={} at={}",
        r["state"].as_str().unwrap(),
        r["kind"].as_str().unwrap(),
        r["rule"].as_str().unwrap(),
        r["flows"],
        r["dest_count"],
        &r["first_seen"].as_str().unwrap()[11..19],
        &r["last_seen"].as_str().unwrap()[11..19],
        &r["timestamp"].as_str().unwrap()[11..19],
    )
}

/// Runs the case with `--incidents` and `args`, checks the golden file, and
/// returns the records summarised, in output order.
fn run(name: &str, capture: &Capture, exceptions: Option<&str>, args: &[&str]) -> Vec<String> {
    let case = Case::new(capture, exceptions);
    let mut all = vec!["--incidents", "--threads", "2"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = case.replay(&all);
    assert_eq!(status, 0, "{stderr}");
    golden(&format!("{name}.jsonl"), &stdout);
    let out = lines(&stdout);
    records(&out).into_iter().map(summary).collect()
}

#[test]
fn idle_gaps_just_under_and_just_over_close_at_the_first_later_packet() {
    let mut c = Capture::new();
    let vendor = |port: u16| format!("10.90.0.5:{port}");
    syn(&mut c, 0.0, &vendor(40000), "10.40.0.12:3389");
    // 899 s later: within idle (15 min), joins.
    syn(&mut c, 899.0, &vendor(40001), "10.40.0.13:3389");
    // A packet exactly idle after last_seen is not "more than" idle.
    filler(&mut c, 1799.0);
    // The first packet more than idle after last_seen closes it, with its
    // time: an unrelated packet.
    filler(&mut c, 1799.5);
    // The next violation of the key opens a new incident.
    syn(&mut c, 3000.0, &vendor(40002), "10.40.0.12:3389");
    // Hours later, the end of the capture closes it with the last frame's
    // time.
    filler(&mut c, 3.0 * 3600.0);
    let got = run("idle", &c, None, &[]);
    assert_eq!(
        got,
        [
            "open violation vendor-remote-session flows=1 dests=1 first=08:00:00 last=08:00:00 at=08:00:00",
            "update violation vendor-remote-session flows=2 dests=2 first=08:00:00 last=08:14:59 at=08:14:59",
            "close violation vendor-remote-session flows=2 dests=2 first=08:00:00 last=08:14:59 at=08:29:59",
            "open violation vendor-remote-session flows=1 dests=1 first=08:50:00 last=08:50:00 at=08:50:00",
            "close violation vendor-remote-session flows=1 dests=1 first=08:50:00 last=08:50:00 at=11:00:00",
        ]
    );
}

#[test]
fn max_age_and_the_update_interval_boundary() {
    let mut c = Capture::new();
    // A violation every 10 minutes for 2.5 hours: never idle, but a
    // violation more than max_age (1 h) after first_seen opens a new one.
    for i in 0..16 {
        syn(
            &mut c,
            600.0 * f64::from(i),
            &format!("10.90.0.5:{}", 40000 + i),
            "10.40.0.12:3389",
        );
    }
    let got = run(
        "max-age",
        &c,
        None,
        &[
            "--incident-max-age",
            "1h",
            "--incident-update-interval",
            "20m",
        ],
    );
    let expected: Vec<&str> = vec![
        "open violation vendor-remote-session flows=1 dests=1 first=08:00:00 last=08:00:00 at=08:00:00",
        // Exactly 20 min after the previous record: an update.
        "update violation vendor-remote-session flows=3 dests=1 first=08:00:00 last=08:20:00 at=08:20:00",
        "update violation vendor-remote-session flows=5 dests=1 first=08:00:00 last=08:40:00 at=08:40:00",
        "update violation vendor-remote-session flows=7 dests=1 first=08:00:00 last=09:00:00 at=09:00:00",
        // 09:10 is more than 1 h after 08:00: closed at that violation,
        // which opens the next one and is not counted in the old.
        "close violation vendor-remote-session flows=7 dests=1 first=08:00:00 last=09:00:00 at=09:10:00",
        "open violation vendor-remote-session flows=1 dests=1 first=09:10:00 last=09:10:00 at=09:10:00",
    ];
    assert_eq!(got[..expected.len()], expected[..], "{got:#?}");
    assert_eq!(
        got.iter().filter(|l| l.starts_with("open")).count(),
        3,
        "{got:#?}"
    );
}

#[test]
fn keys_differing_in_one_field_are_different_incidents() {
    let mut c = Capture::new();
    // The key: (rule, src_ip, dest_zone, service).
    syn(&mut c, 0.0, "10.66.0.9:50000", "10.40.0.12:443"); // guest-to-clinical https imaging
    syn(&mut c, 1.0, "10.66.0.9:50001", "10.40.0.13:443"); // same key, other host: joins
    syn(&mut c, 2.0, "10.66.0.8:50002", "10.40.0.12:443"); // other src_ip
    syn(&mut c, 3.0, "10.66.0.9:50003", "10.10.0.12:443"); // other dest_zone (office)
    syn(&mut c, 4.0, "10.66.0.9:50004", "10.40.0.12:3389"); // other service (rdp)
    syn(&mut c, 5.0, "10.66.0.9:50005", "10.40.0.12:9999"); // no service at all
    syn(&mut c, 6.0, "10.10.0.9:50006", "10.40.0.12:443"); // other rule (default)
    let case = Case::new(&c, None);
    let (_, stdout, _) = case.replay(&["--incidents"]);
    golden("keys.jsonl", &stdout);
    let out = lines(&stdout);
    let opens: Vec<&Value> = records(&out)
        .into_iter()
        .filter(|r| r["state"] == "open")
        .collect();
    assert_eq!(opens.len(), 6);
    // Each event carries the id of its incident; the first two share one.
    let events: Vec<&Value> = out
        .iter()
        .filter(|v| v["event_type"] == "violation")
        .collect();
    assert_eq!(events[0]["incident_id"], events[1]["incident_id"]);
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["incident_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);
    // The record opening an incident comes right after its event.
    let first_open = out.iter().position(|v| v["state"] == "open").unwrap();
    assert_eq!(out[first_open - 1]["event_type"], "violation");
    assert_eq!(
        out[first_open]["incident_id"],
        out[first_open - 1]["incident_id"]
    );
    let no_service = opens.iter().find(|r| r["dest_ports"][0] == 9999).unwrap();
    assert!(no_service.get("service").is_none());
}

/// `n` flows from `src` to hosts 10.40.1.1.. on `port`, `step` s apart from
/// `t0`.
fn sweep(c: &mut Capture, t0: f64, step: f64, src: &str, n: u32, port: u16) {
    for i in 0..n {
        // Office to office: allowed, no violation.
        let dst = format!("10.10.1.{}:{port}", i + 1);
        syn(
            c,
            t0 + step * f64::from(i),
            &format!("{src}:{}", 30000 + i),
            &dst,
        );
    }
}

#[test]
fn sweeps_open_at_32_hosts_within_the_window() {
    let mut c = Capture::new();
    // 31 hosts: no sweep.
    sweep(&mut c, 0.0, 1.0, "10.10.0.31", 31, 445);
    // 32 hosts within 60 s: a sweep, opened at the 32nd flow with the 32
    // flows counted as its first; later flows join it.
    sweep(&mut c, 100.0, 1.5, "10.10.0.32", 34, 445);
    // 32 hosts, but the first is more than 60 s before the 32nd: the
    // flows counted are those of [t - 60 s, t].
    sweep(&mut c, 300.0, 1.94, "10.10.0.33", 32, 445);
    // ICMP echo to 32 hosts: a sweep with no port.
    for i in 0..32u16 {
        c.add(
            at(500.0 + f64::from(i) * 0.1),
            &Pkt::echo_request("10.10.0.40", &format!("10.10.2.{}", i + 1), 7 + i),
        );
    }
    filler(&mut c, 3600.0);
    let got = run("sweeps", &c, None, &[]);
    assert_eq!(
        got,
        [
            "open sweep sweep flows=32 dests=32 first=08:01:40 last=08:02:26 at=08:02:26",
            "open sweep sweep flows=32 dests=32 first=08:08:20 last=08:08:23 at=08:08:23",
            "close sweep sweep flows=34 dests=34 first=08:01:40 last=08:02:29 at=09:00:00",
            "close sweep sweep flows=32 dests=32 first=08:08:20 last=08:08:23 at=09:00:00",
        ],
        "{got:#?}"
    );
    let case = Case::new(&c, None);
    let (_, stdout, _) = case.replay(&["--incidents"]);
    let out = lines(&stdout);
    let tcp = records(&out)
        .into_iter()
        .find(|r| r["proto"] == "tcp")
        .unwrap();
    assert_eq!(tcp["src_ip"], "10.10.0.32");
    assert_eq!(tcp["dest_port"], 445);
    assert_eq!(tcp["severity"], "high");
    assert_eq!(tcp["dest_sample"].as_array().unwrap().len(), 16);
    assert_eq!(tcp["dest_ports"], serde_json::json!([445]));
    let icmp = records(&out)
        .into_iter()
        .find(|r| r["proto"] == "icmp")
        .unwrap();
    assert!(icmp.get("dest_port").is_none() && icmp.get("dest_ports").is_none());
    // Sweeps count allowed flows too (office to office is allowed): no
    // violation at all here, and --fail-on ignores incident records.
    assert!(out.iter().all(|v| v["event_type"] == "incident"));
    assert_eq!(case.replay(&["-q", "--incidents", "--fail-on", "low"]).0, 0);
}

#[test]
fn scans_open_at_32_ports_and_exceptions_name_known_scanners() {
    let mut c = Capture::new();
    let scan = |c: &mut Capture, t0: f64, src: &str, n: u16| {
        for i in 0..n {
            syn(
                c,
                t0 + f64::from(i) * 0.5,
                &format!("{src}:{}", 30000 + i),
                &format!("10.40.0.50:{}", 1000 + i),
            );
        }
    };
    scan(&mut c, 0.0, "10.10.0.31", 31);
    scan(&mut c, 100.0, "10.10.0.32", 40);
    // The vulnerability scanner: its scan is excepted.
    scan(&mut c, 200.0, "10.10.9.9", 32);
    filler(&mut c, 7200.0);
    let exceptions = r#"
[[exceptions]]
id = "EX-VULNSCAN"
reason = "weekly vulnerability scan"
owner = "Security"
expires = 2027-06-01
rule = "scan"
from = ["10.10.9.9"]
"#;
    let got = run("scans", &c, Some(exceptions), &["--incident-idle", "30m"]);
    let got: Vec<&String> = got.iter().filter(|l| !l.contains(" violation ")).collect();
    assert_eq!(
        got,
        [
            "open scan scan flows=32 dests=1 first=08:01:40 last=08:01:55 at=08:01:55",
            "open scan scan flows=32 dests=1 first=08:03:20 last=08:03:35 at=08:03:35",
            "close scan scan flows=40 dests=1 first=08:01:40 last=08:01:59 at=10:00:00",
            "close scan scan flows=32 dests=1 first=08:03:20 last=08:03:35 at=10:00:00",
        ],
        "{got:#?}"
    );
    let case = Case::new(&c, Some(exceptions));
    let (_, stdout, _) = case.replay(&["--incidents"]);
    let out = lines(&stdout);
    let scans: Vec<&Value> = records(&out)
        .into_iter()
        .filter(|r| r["kind"] == "scan")
        .collect();
    assert_eq!(scans[0]["dest_ip"], "10.40.0.50");
    assert_eq!(scans[0]["dest_ports"].as_array().unwrap().len(), 16);
    assert_eq!(scans[0]["dest_ports"][0], 1000);
    assert!(scans[0].get("exception").is_none());
    assert_eq!(scans[1]["exception"], "EX-VULNSCAN");
    // The scanned host is in imaging: its criticality is on the record.
    assert_eq!(scans[0]["dest_criticality"], "clinical");
}

#[test]
fn excepted_violations_join_no_incident() {
    let mut c = Capture::new();
    for i in 0..3 {
        syn(
            &mut c,
            f64::from(i),
            &format!("10.90.0.5:{}", 40000 + i),
            "10.40.0.12:3389",
        );
    }
    syn(&mut c, 3.0, "10.90.0.5:40009", "10.40.0.13:3389");
    let exceptions = r#"
[[exceptions]]
id = "EX-CT"
reason = "r"
owner = "o"
expires = 2027-01-01
to = ["10.40.0.12"]
"#;
    let got = run("excepted", &c, Some(exceptions), &[]);
    assert_eq!(
        got,
        [
            "open violation vendor-remote-session flows=1 dests=1 first=08:00:03 last=08:00:03 at=08:00:03",
            "close violation vendor-remote-session flows=1 dests=1 first=08:00:03 last=08:00:03 at=08:00:03",
        ]
    );
    let case = Case::new(&c, Some(exceptions));
    let (_, stdout, _) = case.replay(&["--incidents"]);
    let out = lines(&stdout);
    for event in out
        .iter()
        .filter(|v| v["event_type"] == "violation")
        .take(3)
    {
        assert_eq!(event["exception"], "EX-CT");
        assert!(event.get("incident_id").is_none());
    }
}

/// A capture with every kind of incident, interleaved: the determinism
/// test's input.
fn busy_capture() -> Capture {
    let mut c = Capture::new();
    let mut rng = fastrand::Rng::with_seed(14);
    let mut t = 0.0;
    for i in 0..3000u32 {
        t += rng.f64() * 2.0;
        let src = ["10.66.0.9", "10.90.0.5", "10.10.0.7", "10.10.0.8"][rng.usize(..4)];
        let dst = format!(
            "10.{}.{}.{}:{}",
            [40, 10, 66][rng.usize(..3)],
            rng.u8(0..2),
            rng.u8(1..60),
            [443, 3389, 445, 22, 8080][rng.usize(..5)]
        );
        syn(&mut c, t, &format!("{src}:{}", 20000 + i % 30000), &dst);
        if i % 7 == 0 {
            filler(&mut c, t + 0.01);
        }
        if i % 500 == 0 {
            t += 1000.0;
            for port in 0..10 {
                syn(
                    &mut c,
                    t + f64::from(port) * 0.2,
                    &format!("10.66.0.77:{}", 40000 + port),
                    &format!("10.40.0.50:{}", 2000 + port),
                );
            }
        }
    }
    c
}

#[test]
fn the_same_records_for_any_threads_and_batch_size() {
    let case = Case::new(&busy_capture(), None);
    let mut reference: Option<String> = None;
    for threads in ["1", "2", "3"] {
        for batch in ["1", "7", "64", "16384"] {
            let (status, stdout, stderr) = case.replay(&[
                "-q",
                "--incidents",
                "--sweep-hosts",
                "8",
                "--scan-ports",
                "4",
                "--threads",
                threads,
                "--batch-size",
                batch,
            ]);
            assert_eq!(status, 0, "{stderr}");
            match &reference {
                None => {
                    let out = lines(&stdout);
                    let kinds: std::collections::HashSet<&str> = records(&out)
                        .iter()
                        .map(|r| r["kind"].as_str().unwrap())
                        .collect();
                    assert_eq!(kinds.len(), 3, "every kind of incident: {kinds:?}");
                    reference = Some(stdout);
                }
                Some(expected) => assert!(
                    *expected == stdout,
                    "threads {threads}, batch {batch}: output differs"
                ),
            }
        }
    }
}

#[test]
fn src_device_comes_from_the_frames_before_the_record() {
    const BRAUN: [u8; 6] = [0x00, 0x12, 0x21, 1, 2, 3];
    const ROUTER: [u8; 6] = [0x00, 0x00, 0x5e, 0, 1, 1];
    let mut c = Capture::new();
    for i in 0..3u16 {
        c.add(
            at(f64::from(i) * 400.0),
            &Pkt::tcp(&format!("10.66.0.9:{}", 50000 + i), "10.40.0.12:443", SYN)
                .macs(BRAUN, ROUTER),
        );
    }
    let case = Case::new(&c, None);
    let mut outputs = Vec::new();
    for threads in ["1", "3"] {
        let (status, stdout, stderr) = case.replay(&[
            "--incidents",
            "--inventory",
            "inventory.json",
            "--threads",
            threads,
            "--batch-size",
            "1",
        ]);
        assert_eq!(status, 0, "{stderr}");
        outputs.push(stdout);
    }
    assert_eq!(outputs[0], outputs[1]);
    let out = lines(&outputs[0]);
    let recs = records(&out);
    // The open record comes at the first frame: nothing before it.
    assert_eq!(recs[0]["state"], "open");
    assert!(recs[0].get("src_device").is_none(), "{}", recs[0]);
    let update = recs.iter().find(|r| r["state"] == "update").unwrap();
    assert!(
        update["src_device"]["vendor"]
            .as_str()
            .unwrap()
            .contains("Braun"),
        "{update}"
    );
    // Vendor names come from Debian's ieee-data, which CI installs.
    if std::path::Path::new("/usr/share/ieee-data/oui.csv").is_file() {
        golden("src-device.jsonl", &outputs[0]);
    }
}
