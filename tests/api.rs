//! The daemon's HTTP API under load and without credentials (issue 16,
//! item 5): slow clients of `/api/v1/devices` never starve `/healthz` and
//! `/metrics`, a request without the bearer token (or with a wrong one) gets
//! 401, and the pages of `/api/v1/devices` hold every device once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::root;
use crate::daemon::{Daemon, metric, wait_for};

/// One HTTP/1.0 request on loopback: the status and the body.
fn request(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// `hosts` workstations each opening one flow to a server that answers.
fn many_devices(hosts: u32) -> Capture {
    let mut c = Capture::new();
    for n in 0..hosts {
        let client = format!("10.60.{}.{}:40000", n / 250, n % 250 + 1);
        let t = f64::from(n) * 0.00001;
        c.add(at(t), &Pkt::tcp(&client, "10.50.0.10:443", SYN));
        c.add(
            at(t + 0.000_001),
            &Pkt::tcp("10.50.0.10:443", &client, SYN | ACK),
        );
    }
    c
}

fn start_daemon(dir: &Path, hosts: u32, api: &str) -> Daemon {
    let capture = dir.join("devices.pcap");
    many_devices(hosts)
        .write_pcap(&capture, Resolution::Micro)
        .unwrap();
    let config = dir.join("segwatch.toml");
    std::fs::write(&config, format!("[policy]\nwatch = false\n{api}")).unwrap();
    let policy = root().join("policies/example-hospital.toml");
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let devices = f64::from(hosts + 1);
    wait_for("every device", Duration::from_secs(60), || {
        (metric(&daemon.metrics(), "segwatch_devices", "") == Some(devices)).then_some(())
    });
    daemon
}

/// Issue 16, item 5: eight clients asking for the largest pages of a 30,000
/// device inventory and reading them slowly, again and again, while
/// `/healthz` and `/metrics` must each answer within a second.
#[test]
fn regression_16_5_slow_api_clients_do_not_starve_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path(), 30_000, "");
    let port = daemon.metrics_port;
    let done = Arc::new(AtomicBool::new(false));
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (done, served, refused) = (done.clone(), served.clone(), refused.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    write!(
                        stream,
                        "GET /api/v1/devices?limit=10000 HTTP/1.0\r\nHost: x\r\n\r\n"
                    )
                    .unwrap();
                    // Slow: 4 KiB every 20 ms.
                    let mut head = [0u8; 12];
                    if stream.read_exact(&mut head).is_err() {
                        continue;
                    }
                    match &head[9..12] {
                        b"200" => served.fetch_add(1, Ordering::Relaxed),
                        b"503" => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("API answered {}", String::from_utf8_lossy(other)),
                    };
                    let mut chunk = [0u8; 4096];
                    while !done.load(Ordering::Relaxed) {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(8) {
        for path in ["/healthz", "/metrics"] {
            let asked = Instant::now();
            let (status, _) = request(port, path, None);
            assert_eq!(status, 200, "{path}");
            slowest = slowest.max(asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz or /metrics took {slowest:?} under API load"
    );
    assert!(served.load(Ordering::Relaxed) > 0, "no API request served");
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "eight clients at once were never bounded"
    );
}

/// Issue 16, item 5: `/api/*` asks the bearer token of `api.token_file`;
/// `/healthz` never does; `/metrics` does only with `api.protect_metrics`.
#[test]
fn regression_16_5_the_api_asks_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, "  Zq8-token-of-the-site\n").unwrap();
    let api = format!(
        "[api]\ntoken_file = \"{}\"\nprotect_metrics = true\n",
        token_file.display()
    );
    let daemon = {
        // Daemon::start waits for the devices through /metrics, which asks
        // the token here: start it by hand.
        let capture = dir.path().join("devices.pcap");
        many_devices(10)
            .write_pcap(&capture, Resolution::Micro)
            .unwrap();
        let config = dir.path().join("segwatch.toml");
        std::fs::write(&config, format!("[policy]\nwatch = false\n{api}")).unwrap();
        let policy = root().join("policies/example-hospital.toml");
        Daemon::start(&[
            "--config",
            config.to_str().unwrap(),
            "--pcap",
            capture.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
    };
    let port = daemon.metrics_port;
    let token = Some("Zq8-token-of-the-site");
    for path in ["/api/v1/devices", "/api/v1/incidents", "/metrics"] {
        assert_eq!(request(port, path, None).0, 401, "{path} without a token");
        assert_eq!(
            request(port, path, Some("Zq8-token-of-the-sit")).0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            request(port, path, Some("Zq8-token-of-the-site-and-more")).0,
            401,
            "{path} with a longer token"
        );
        assert_eq!(request(port, path, token).0, 200, "{path} with the token");
    }
    assert_eq!(request(port, "/healthz", None), (200, "ok\n".into()));
    let body = wait_for("the devices", Duration::from_secs(10), || {
        let (_, body) = request(port, "/api/v1/devices", token);
        let page: Value = serde_json::from_str(&body).unwrap();
        (page["devices"].as_array().unwrap().len() == 11).then_some(body)
    });
    assert!(body.contains("10.50.0.10"), "{body}");
    // A rotated token takes effect on SIGHUP; the old one is refused after.
    std::fs::write(&token_file, "rotated-Zq9\n").unwrap();
    daemon.signal("HUP");
    wait_for("the rotated token", Duration::from_secs(10), || {
        (request(port, "/api/v1/devices", Some("rotated-Zq9")).0 == 200).then_some(())
    });
    assert_eq!(request(port, "/api/v1/devices", token).0, 401);
    // A token file emptied by mistake keeps the token in force. The token is
    // read after the policy in the same SIGHUP, and the daemon finishes it
    // before it handles the SIGTERM of its stop.
    std::fs::write(&token_file, "").unwrap();
    daemon.signal("HUP");
    wait_for("the second reload", Duration::from_secs(10), || {
        let (_, text) = request(port, "/metrics", Some("rotated-Zq9"));
        (metric(&text, "segwatch_policy_reloads_total", "success") == Some(2.0)).then_some(())
    });
    assert_eq!(request(port, "/api/v1/devices", Some("rotated-Zq9")).0, 200);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("Keeping the API token in force"),
        "{stderr}"
    );
    assert!(stderr.contains("API token replaced"), "{stderr}");
    assert!(
        !stderr.contains("Zq9"),
        "the token reached the log: {stderr}"
    );
}

/// A token file that is empty stops the start with a line naming it.
#[test]
fn an_empty_token_file_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, "\n").unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(
        &config,
        format!("[api]\ntoken_file = \"{}\"\n", token_file.display()),
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::SEGWATCH)
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
        ])
        .arg("127.0.0.1:0")
        .args(["--pcap", "tests/fixtures/hospital-sample.pcap"])
        .args(["--policy", "policies/example-hospital.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains(&format!(
            "api.token_file {}: the file is empty",
            token_file.display()
        )),
        "{stderr}"
    );
}

/// `/api/v1/devices` in pages of 1,000: every device exactly once, in
/// address order, and the last page says no `next`.
#[test]
fn pages_of_the_devices_hold_every_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path(), 2_500, "");
    let port = daemon.metrics_port;
    let mut seen = Vec::new();
    let mut path = "/api/v1/devices?limit=1000".to_string();
    let mut pages = 0;
    loop {
        let (status, body) = request(port, &path, None);
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        pages += 1;
        for device in page["devices"].as_array().unwrap() {
            seen.push(
                device["ip"]
                    .as_str()
                    .unwrap()
                    .parse::<std::net::IpAddr>()
                    .unwrap(),
            );
        }
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(next, seen.last().unwrap().to_string());
                path = format!("/api/v1/devices?limit=1000&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a device twice");
    assert_eq!(seen.len(), 2_501);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "not in address order");
    assert_eq!(request(port, "/api/v1/devices?limit=0", None).0, 400);
}

/// `[api] tls_cert_file` and `tls_key_file`: the listener speaks HTTPS
/// (curl with the certificate as its CA), the token still guards the API,
/// and plain HTTP gets no answer.
#[test]
fn the_listener_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, "tls-site-token\n").unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nwatch = false\n[api]\ntoken_file = \"{}\"\ntls_cert_file = \"{}\"\n\
             tls_key_file = \"{}\"\n",
            token_file.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let port = crate::daemon::free_port();
    let mut child = std::process::Command::new(crate::common::SEGWATCH)
        .args(["run", "--config", config.to_str().unwrap()])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--pcap", "tests/fixtures/hospital-sample.pcap"])
        .args(["--policy", "policies/example-hospital.toml"])
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |path: &str, token: Option<&str>| {
        let mut command = std::process::Command::new("curl");
        command
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(&cert);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = command
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("HTTPS /healthz", Duration::from_secs(10), || {
        (curl("/healthz", None) == "200").then_some(())
    });
    assert_eq!(curl("/metrics", None), "200");
    assert_eq!(curl("/api/v1/devices", None), "401");
    assert_eq!(curl("/api/v1/devices", Some("tls-site-token")), "200");
    // Plain HTTP to the TLS listener: no HTTP answer.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP answered");
    let _ = child.kill();
    let _ = child.wait();
}
