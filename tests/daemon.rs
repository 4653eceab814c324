//! `segwatch run` as an operator runs it: configuration errors, metrics
//! scraped by a real Prometheus server, policy reload on SIGHUP (refused
//! when broken), and a clean stop on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled metric (or the sum of a metric's series
/// matching `filter`) in a text exposition.
pub fn metric(exposition: &str, name: &str, filter: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = series == name || series.starts_with(&format!("{name}{{"));
        if matches && series.contains(filter) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// A running daemon, stopped (SIGKILL) if the test fails before SIGTERM.
pub struct Daemon {
    pub child: Child,
    pub metrics_port: u16,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_logged("info", args)
    }

    /// Starts `segwatch run` logging at `level`.
    pub fn start_logged(level: &str, args: &[&str]) -> Daemon {
        Daemon::spawn(&["--log-level", level], args)
    }

    /// Starts `segwatch run` with `log` (logging flags, or none for the
    /// default level) and `args`.
    fn spawn(log: &[&str], args: &[&str]) -> Daemon {
        let metrics_port = free_port();
        let listen = format!("127.0.0.1:{metrics_port}");
        let child = Command::new(SEGWATCH)
            .env_remove("SEGWATCH_LOG")
            .args(log)
            .args(["run", "--metrics-listen", &listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let daemon = Daemon {
            child,
            metrics_port,
        };
        wait_for("/healthz", Duration::from_secs(10), || {
            http_get(metrics_port, "/healthz")
        });
        daemon
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "segwatch did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (status.code(), stderr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

#[test]
fn invalid_configuration_is_one_line_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(
        &config,
        "[capture]\npcap = \"x.pcap\"\n[flows]\ntcp_timeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(SEGWATCH)
        .args(["run", "--policy"])
        .arg(example_policy())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("segwatch.toml:4:1") && stderr.contains("flows.tcp_timeout"),
        "{stderr}"
    );

    std::fs::write(&config, "[capture]\npcap = \"x.pcap\"\nspeed = 3\n").unwrap();
    let out = Command::new(SEGWATCH)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("segwatch.toml:3:1") && stderr.contains("speed"),
        "{stderr}"
    );

    // A policy that does not load, and a capture that does not exist.
    let out = Command::new(SEGWATCH)
        .args(["run", "--pcap"])
        .arg(sample())
        .args(["--policy", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(SEGWATCH)
        .args(["run", "--pcap", "/nonexistent.pcap", "--policy"])
        .arg(example_policy())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pcap"));
}

#[test]
fn a_busy_metrics_port_is_a_start_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = Command::new(SEGWATCH)
        .args(["run", "--metrics-listen", &listen, "--pcap"])
        .arg(sample())
        .arg("--policy")
        .arg(example_policy())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&listen));
}

#[test]
fn metrics_count_what_replay_counts_and_sigterm_exits_zero() {
    let daemon = Daemon::start(&[
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
    ]);
    let exposition = wait_for("all 400 packets", Duration::from_secs(10), || {
        let text = daemon.metrics();
        (metric(&text, "segwatch_packets_total", "") == Some(400.0)).then_some(text)
    });
    // The same capture through `replay` gives the same figures.
    let replay = Command::new(SEGWATCH)
        .args(["replay", "--policy"])
        .arg(example_policy())
        .arg(sample())
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        metric(&exposition, "segwatch_violations_total", ""),
        Some(events.len() as f64)
    );
    let critical = events
        .iter()
        .filter(|e| e["severity"] == "critical")
        .count();
    assert_eq!(
        metric(
            &exposition,
            "segwatch_violations_total",
            "severity=\"critical\""
        ),
        Some(critical as f64)
    );
    assert_eq!(
        metric(&exposition, "segwatch_bytes_total", ""),
        Some(30168.0)
    );
    assert_eq!(
        metric(
            &exposition,
            "segwatch_packets_not_judged_total",
            "reason=\"not_ip\""
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&exposition, "segwatch_policy_generation", ""),
        Some(1.0)
    );
    assert_eq!(metric(&exposition, "segwatch_build_info", ""), Some(1.0));
    assert!(metric(&exposition, "segwatch_flows_active", "").unwrap() > 0.0);
    assert_eq!(
        metric(&exposition, "segwatch_capture_dropped_packets_total", ""),
        Some(0.0)
    );
    // No label ever holds an address.
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        assert!(
            !series.contains("10.") && !series.contains("fd00"),
            "address in a label: {line}"
        );
    }
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A capture whose one TCP flow, from a workstation to a monitor on port
/// 8443, lasts about 4 s at capture pace: a packet every 100 ms.
fn slow_flow(path: &Path) {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("10.60.1.5:40000", "10.21.0.20:8443", SYN),
    );
    for i in 1..40 {
        c.add(
            at(i as f64 * 0.1),
            &Pkt::tcp("10.60.1.5:40000", "10.21.0.20:8443", ACK),
        );
    }
    c.write_pcap(path, Resolution::Micro).unwrap();
}

#[test]
fn sighup_refuses_a_broken_policy_and_a_valid_one_rejudges_existing_flows() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let allow = "[policy]\ndefault_action = \"allow\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n[zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n";
    std::fs::write(&policy, allow).unwrap();
    let capture = dir.path().join("slow.pcap");
    slow_flow(&capture);
    let config = dir.path().join("segwatch.toml");
    // File watching off: only SIGHUP reloads, so the test controls when.
    std::fs::write(&config, "[policy]\nwatch = false\n").unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    wait_for("the flow to start", Duration::from_secs(10), || {
        (metric(&daemon.metrics(), "segwatch_flows_started_total", "") == Some(1.0)).then_some(())
    });
    assert_eq!(
        metric(&daemon.metrics(), "segwatch_violations_total", ""),
        None,
        "allowed so far"
    );

    std::fs::write(&policy, "[zones.ws]\nnetworks = [\"10.60.0.0/16\"\n").unwrap();
    daemon.signal("HUP");
    wait_for("the refused reload", Duration::from_secs(10), || {
        (metric(
            &daemon.metrics(),
            "segwatch_policy_reloads_total",
            "failure",
        ) == Some(1.0))
        .then_some(())
    });
    let text = daemon.metrics();
    assert_eq!(metric(&text, "segwatch_policy_generation", ""), Some(1.0));
    // The outcome of the last reload (issue 15.11): refused, after the
    // start's load.
    let success = "segwatch_policy_last_reload_success_timestamp_seconds";
    let failure = "segwatch_policy_last_reload_failure_timestamp_seconds";
    let started = metric(&text, success, "").unwrap();
    let refused = metric(&text, failure, "").unwrap();
    assert!(started > 1.7e9 && refused >= started, "{started} {refused}");

    std::fs::write(&policy, allow.replace("\"allow\"", "\"alert\"")).unwrap();
    daemon.signal("HUP");
    let text = wait_for(
        "the flow's event under the new policy",
        Duration::from_secs(10),
        || {
            let text = daemon.metrics();
            (metric(&text, "segwatch_violations_total", "rule=\"default\"") == Some(1.0))
                .then_some(text)
        },
    );
    assert_eq!(
        metric(&text, "segwatch_policy_reloads_total", "success"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "segwatch_policy_generation", ""), Some(2.0));
    // The last attempt took effect: the alert's condition is false again.
    assert!(metric(&text, success, "").unwrap() >= refused);
    assert_eq!(metric(&text, failure, ""), Some(refused));
    assert_eq!(
        metric(&text, "segwatch_flows_started_total", ""),
        Some(1.0),
        "the same flow, judged again"
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(stderr.contains("Policy reload refused"), "{stderr}");
}

/// Issue 15.9: at the default log level the daemon says what it runs with
/// when it starts, each reload's outcome and generation, and its totals
/// when it stops.
#[test]
fn regression_15_9_the_daemon_reports_start_reloads_and_stop_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let text = "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n[zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n";
    std::fs::write(&policy, text).unwrap();
    let capture = root().join("tests/fixtures/hospital-sample.pcap");
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[policy]\nwatch = false\n").unwrap();
    let daemon = Daemon::spawn(
        &[],
        &[
            "--config",
            config.to_str().unwrap(),
            "--pcap",
            capture.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    wait_for("the capture read", Duration::from_secs(20), || {
        (metric(&daemon.metrics(), "segwatch_packets_total", "") == Some(400.0)).then_some(())
    });
    std::fs::write(&policy, "[zones.ws\n").unwrap();
    daemon.signal("HUP");
    wait_for("the refused reload", Duration::from_secs(10), || {
        (metric(
            &daemon.metrics(),
            "segwatch_policy_reloads_total",
            "failure",
        ) == Some(1.0))
        .then_some(())
    });
    std::fs::write(&policy, text).unwrap();
    daemon.signal("HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        (metric(&daemon.metrics(), "segwatch_policy_generation", "") == Some(2.0)).then_some(())
    });
    let violations = metric(&daemon.metrics(), "segwatch_violations_total", "").unwrap();
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0));
    let line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {stderr}"))
            .to_string()
    };
    let started = line("Started");
    for part in [
        "capture file",
        "hospital-sample.pcap",
        "workers=1",
        "policy.toml",
        "zones=2",
        "rules=0",
        "events file",
        "127.0.0.1:",
    ] {
        assert!(started.contains(part), "{part:?} not in {started}");
    }
    let refused = line("Policy reload refused");
    assert!(refused.contains("generation=1"), "{refused}");
    let reloaded = line("Policy reloaded");
    assert!(reloaded.contains("generation=2"), "{reloaded}");
    let stopped = line("Stopped");
    for part in [
        "packets=400".to_string(),
        format!("violations={violations}"),
        "flows=".into(),
        "capture_dropped=0".into(),
        "events_dropped=0".into(),
        "undelivered=0".into(),
    ] {
        assert!(stopped.contains(&part), "{part:?} not in {stopped}");
    }
}

/// A real Prometheus server, started on loopback and stopped on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target_port: u16) -> Prometheus {
        Prometheus::start(&format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: segwatch\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ))
    }

    /// Starts a server with this configuration (YAML) and waits until it is
    /// ready. Rule files in it are best given as absolute paths.
    pub fn start(config_yaml: &str) -> Prometheus {
        assert!(
            Command::new("prometheus").arg("--version").output().is_ok(),
            "the prometheus server is needed (Debian package prometheus; .ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Prometheus {
            child,
            port,
            _dir: dir,
        };
        wait_for("prometheus ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready")
        });
        server
    }

    /// The `data` of an HTTP API answer (`/api/v1/...`), or the error
    /// Prometheus gave.
    pub fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let body = http_get(self.port, path).ok_or("prometheus did not answer")?;
        let mut json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if json["status"] == "success" {
            Ok(json["data"].take())
        } else {
            Err(format!("{}: {}", json["errorType"], json["error"]))
        }
    }

    /// The result vector of an instant query (`/api/v1/query`).
    pub fn query_result(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let data = self.api(&format!("/api/v1/query?query={encoded}"))?;
        data["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("not a vector: {data}"))
    }

    /// The value of an instant query's single result, once there is one.
    fn query(&self, promql: &str) -> Option<f64> {
        let result = self.query_result(promql).ok()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_expected_counters() {
    let daemon = Daemon::start(&[
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
    ]);
    let prometheus = Prometheus::scraping(daemon.metrics_port);
    // Target discovery takes about 5 s; the first samples come after it.
    let packets = wait_for(
        "segwatch_packets_total in Prometheus",
        Duration::from_secs(60),
        || {
            prometheus
                .query("segwatch_packets_total")
                .filter(|&v| v == 400.0)
        },
    );
    assert_eq!(packets, 400.0);
    let total = wait_for("violations", Duration::from_secs(30), || {
        prometheus.query("sum(segwatch_violations_total)")
    });
    assert_eq!(total, 14.0);
    let critical = prometheus
        .query("sum(segwatch_violations_total{severity=\"critical\"})")
        .unwrap();
    assert_eq!(critical, 4.0);
    assert_eq!(prometheus.query("up{job=\"segwatch\"}"), Some(1.0));
    assert_eq!(
        prometheus.query("segwatch_policy_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn drops_to_an_unprivileged_user_after_opening_its_sockets() {
    assert!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("Uid:\t0\t"),
        "this test runs as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[process]\nuser = \"nobody\"\n").unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
    ]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        !uid_line.contains("\t0\t") && !uid_line.ends_with("\t0"),
        "still root: {uid_line}"
    );
    // Still serving, and still stopping cleanly.
    assert!(daemon.metrics().contains("segwatch_packets_total"));
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Dropped privileges"), "{stderr}");
}

#[test]
fn the_demo_prints_violations_and_serves_metrics() {
    use std::io::BufRead;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(SEGWATCH)
        .args(["demo", "--metrics-listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut rules = std::collections::BTreeSet::new();
    let mut incidents = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rules.len() < 3 || incidents == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the demo prints violations and incidents within 30 s");
        let event: serde_json::Value =
            serde_json::from_str(&line).expect("each stdout line is an event or a record");
        match event["event_type"].as_str() {
            Some("violation") => {
                rules.insert(event["rule"].as_str().unwrap().to_string());
            }
            Some("incident") => {
                // The demo shows incidents: the open record of each.
                assert!(
                    event["incident_id"]
                        .as_str()
                        .is_some_and(|id| id.len() == 16)
                );
                incidents += 1;
            }
            other => panic!("unexpected line type {other:?}: {line}"),
        }
    }
    let api = http_get(port, "/api/v1/incidents").expect("incidents served");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(api["open"].is_array() && api["closed"].is_array(), "{api}");
    let text = http_get(port, "/metrics").expect("metrics served");
    assert!(metric(&text, "segwatch_packets_total", "").unwrap() > 0.0);
    let daemon = Daemon {
        child,
        metrics_port: port,
    };
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn sighup_reopens_the_events_file_after_logrotate_moved_it() {
    let dir = tempfile::tempdir().unwrap();
    // One violating flow every 100 ms for 6 s.
    let mut capture = Capture::new();
    for i in 0..60u16 {
        capture.add(
            at(f64::from(i) * 0.1),
            &Pkt::udp(&format!("10.60.1.5:{}", 40000 + i), "10.21.0.20:9000"),
        );
    }
    let capture_path = dir.path().join("steady.pcap");
    capture
        .write_pcap(&capture_path, Resolution::Micro)
        .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n",
    )
    .unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[policy]\nwatch = false\n").unwrap();
    let events = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        capture_path.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    let count = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_for("some events", Duration::from_secs(10), || {
        (count(&events) >= 5).then_some(())
    });
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&events, &rotated).unwrap();
    daemon.signal("HUP");
    wait_for("events in the new file", Duration::from_secs(10), || {
        (count(&events) >= 5).then_some(())
    });
    wait_for("every event written", Duration::from_secs(20), || {
        (count(&events) + count(&rotated) == 60).then_some(())
    });
    let mut ids = std::collections::BTreeSet::new();
    for path in [&rotated, &events] {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(ids.insert(event["flow_id"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(ids.len(), 60, "each event once, across the two files");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}
