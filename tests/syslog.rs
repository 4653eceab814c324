//! The SOC feed against a real syslog server: rsyslog, started by each test
//! on loopback, receives segwatch's UDP, TCP and TLS feeds in all four
//! formats; every event arrives and parses; events produced while the TCP
//! receiver is down arrive after it is back, in order, once each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use segwatch::synth::{Capture, Pkt, Resolution, at};

use crate::common::root;
use crate::daemon::{Daemon, free_port, metric, wait_for};

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One rsyslog input and the file its messages land in.
struct Input {
    /// `imudp` or `imtcp`.
    module: &'static str,
    port: u16,
    file: PathBuf,
}

/// A real rsyslog in the foreground, stopped on drop.
struct Rsyslog {
    child: Option<Child>,
    config: PathBuf,
    pid_file: PathBuf,
}

/// The TLS files of a throwaway CA made with openssl.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Rsyslog {
    /// Writes a config with `inputs` (and, with `tls`, TLS on every TCP
    /// input, client certificates required) and starts rsyslog.
    fn start(dir: &Path, inputs: &[Input], tls: Option<&Pki>) -> Rsyslog {
        assert!(
            Path::new("/usr/sbin/rsyslogd").exists()
                || Command::new("rsyslogd").arg("-v").output().is_ok(),
            "rsyslogd is needed (Debian packages rsyslog and rsyslog-gnutls; .ci/run installs them)"
        );
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let mut config = String::new();
        // Control characters (LEEF's tabs) are kept as they came.
        config.push_str(&format!(
            "global(workDirectory=\"{}\" parser.escapeControlCharactersOnReceive=\"off\"",
            work.display()
        ));
        if let Some(pki) = tls {
            config.push_str(&format!(
                " defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" \
                 defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display()
            ));
        }
        config.push_str(")\n");
        config.push_str("template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n");
        if inputs.iter().any(|i| i.module == "imudp") {
            config.push_str("module(load=\"imudp\")\n");
        }
        if tls.is_some() {
            config.push_str(
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                 streamDriver.authMode=\"x509/certvalid\")\n",
            );
        } else if inputs.iter().any(|i| i.module == "imtcp") {
            config.push_str("module(load=\"imtcp\")\n");
        }
        for (n, input) in inputs.iter().enumerate() {
            // Only segwatch's messages, not rsyslog's own.
            config.push_str(&format!(
                "ruleset(name=\"in{n}\") {{ if $app-name == \"segwatch\" then \
                 action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n\
                 input(type=\"{}\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"in{n}\")\n",
                input.file.display(),
                input.module,
                input.port
            ));
        }
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, config).unwrap();
        let check = Command::new("rsyslogd")
            .args(["-N1", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rsyslog config invalid: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut server = Rsyslog {
            child: None,
            config: path,
            pid_file: dir.join("rsyslog.pid"),
        };
        server.restart(inputs);
        server
    }

    /// Starts (again) and waits until every TCP input accepts connections;
    /// UDP inputs are bound before rsyslog starts its TCP listeners.
    fn restart(&mut self, inputs: &[Input]) {
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&self.config)
            .arg("-i")
            .arg(&self.pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for input in inputs.iter().filter(|i| i.module == "imtcp") {
            wait_for("rsyslog listening", Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", input.port)).ok()
            });
        }
    }

    /// SIGTERM, and waits for the exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
            child.wait().unwrap();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client
    /// certificate, made fresh for the test.
    fn make(dir: &Path) -> Pki {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=segwatch test CA",
        ]);
        openssl(dir, &ca);
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                     extendedKeyUsage={usage}\n"
                ),
            )
            .unwrap();
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let mut request = vec!["req", "-nodes"];
            request.extend(ec);
            request.extend(["-keyout", &key, "-out", &csr, "-subj"]);
            let subject = format!("/CN={name}.segwatch.test");
            request.push(&subject);
            openssl(dir, &request);
            let (cert, ext) = (format!("{name}.pem"), format!("{name}.ext"));
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &cert,
                    "-extfile",
                    &ext,
                ],
            );
        }
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` holds at least `count` lines.
fn wait_lines(path: &Path, count: usize, limit: Duration) -> Vec<String> {
    wait_for(
        &format!("{count} lines in {}", path.display()),
        limit,
        || {
            let found = lines(path);
            (found.len() >= count).then_some(found)
        },
    )
}

/// An RFC 5424 message: (PRI, HOSTNAME, APP-NAME, MSGID, SD, MSG).
struct Syslog {
    pri: u16,
    hostname: String,
    app: String,
    msgid: String,
    sd: String,
    msg: String,
}

fn parse_rfc5424(line: &str) -> Syslog {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once(">1 ").unwrap();
    let mut parts = rest.splitn(6, ' ');
    let _timestamp = parts.next().unwrap();
    let hostname = parts.next().unwrap().to_string();
    let app = parts.next().unwrap().to_string();
    let _procid = parts.next().unwrap();
    let msgid = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    let (sd, msg) = if let Some(msg) = rest.strip_prefix("- ") {
        ("-".to_string(), msg.to_string())
    } else {
        // The SD element ends at the first ']' not escaped.
        let bytes = rest.as_bytes();
        let mut end = 0;
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\\' if !escaped => escaped = true,
                b']' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        (rest[..=end].to_string(), rest[end + 2..].to_string())
    };
    Syslog {
        pri: pri.parse().unwrap(),
        hostname,
        app,
        msgid,
        sd,
        msg,
    }
}

/// The structured data element's id and parameters.
fn sd_params(sd: &str) -> (String, BTreeMap<String, String>) {
    let inner = sd.strip_prefix('[').unwrap().strip_suffix(']').unwrap();
    let (id, mut rest) = inner.split_once(' ').unwrap();
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => value.push(c),
            }
        }
        params.insert(name.to_string(), value);
        rest = after[end..].trim_start();
    }
    (id.to_string(), params)
}

/// An event object rebuilt from RFC 5424 structured data.
fn event_from_sd(params: &BTreeMap<String, String>) -> Value {
    let mut event = serde_json::Map::new();
    for (name, value) in params {
        let value = match name.as_str() {
            "src_port" | "dest_port" | "vlan" => json!(value.parse::<u64>().unwrap()),
            _ => json!(value),
        };
        event.insert(name.clone(), value);
    }
    Value::Object(event)
}

/// CEF: the seven header fields (unescaped) and the extensions.
fn parse_cef(text: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars();
    while fields.len() < 7 {
        match chars.next().unwrap() {
            '\\' => field.push(chars.next().unwrap()),
            '|' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    let extension: String = chars.collect();
    // Keys are words followed by '='; an escaped '=' belongs to a value.
    let mut pairs = BTreeMap::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut chars = extension.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_value) {
            ('=', false) => in_value = true,
            ('\\', true) => value.push(chars.next().unwrap()),
            (' ', true) => {
                // A space ends the value when a `key=` follows.
                let ahead: String = chars.clone().take_while(|c| *c != ' ').collect();
                if ahead.contains('=') && !ahead.starts_with('=') {
                    pairs.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                    in_value = false;
                } else {
                    value.push(' ');
                }
            }
            (c, true) => value.push(c),
            (c, false) => key.push(c),
        }
    }
    pairs.insert(key, value);
    (fields, pairs)
}

/// Epoch milliseconds of an event's timestamp.
fn millis(timestamp: &str) -> u128 {
    humantime::parse_rfc3339(timestamp)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn syslog_severity(severity: &str) -> u16 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    }
}

fn scale(severity: &str) -> String {
    match severity {
        "critical" => "10",
        "high" => "8",
        "medium" => "5",
        _ => "3",
    }
    .to_string()
}

fn text(event: &Value, key: &str) -> Option<String> {
    match &event[key] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Checks a CEF message against the event it came from.
fn check_cef(message: &str, event: &Value) {
    let cef = message
        .strip_prefix("CEF:")
        .unwrap_or_else(|| panic!("{message}"));
    let (header, ext) = parse_cef(cef);
    let rule = text(event, "rule").unwrap();
    assert_eq!(
        header,
        [
            "0",
            "segwatch",
            "segwatch",
            env!("CARGO_PKG_VERSION"),
            &rule,
            &format!("{rule} violation"),
            &scale(&text(event, "severity").unwrap()),
        ]
    );
    let mut expected = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            expected.insert(k.to_string(), v);
        }
    };
    put(
        "rt",
        Some(millis(&text(event, "timestamp").unwrap()).to_string()),
    );
    put("src", text(event, "src_ip"));
    put("spt", text(event, "src_port"));
    put("dst", text(event, "dest_ip"));
    put("dpt", text(event, "dest_port"));
    put("proto", text(event, "proto"));
    put("externalId", text(event, "flow_id"));
    put("cs1Label", Some("srcZone".into()));
    put("cs1", text(event, "src_zone"));
    put("cs2Label", Some("destZone".into()));
    put("cs2", text(event, "dest_zone"));
    if event.get("service").is_some() {
        put("cs3Label", Some("service".into()));
        put("cs3", text(event, "service"));
    }
    if event.get("vlan").is_some() {
        put("cn1Label", Some("vlan".into()));
        put("cn1", text(event, "vlan"));
    }
    assert_eq!(ext, expected, "{message}");
}

/// Checks a LEEF 2.0 message against the event it came from.
fn check_leef(message: &str, event: &Value) {
    let rest = message
        .strip_prefix(&format!(
            "LEEF:2.0|segwatch|segwatch|{}|violation|",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{message}"));
    let attributes: BTreeMap<String, String> = rest
        .split('\t')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let time = humantime::parse_rfc3339(&attributes["devTime"]).unwrap();
    let time = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(time, millis(&text(event, "timestamp").unwrap()));
    assert_eq!(attributes["devTimeFormat"], "yyyy-MM-dd'T'HH:mm:ss.SSSX");
    for (leef, key) in [
        ("src", "src_ip"),
        ("srcPort", "src_port"),
        ("dst", "dest_ip"),
        ("dstPort", "dest_port"),
        ("proto", "proto"),
        ("srcZone", "src_zone"),
        ("dstZone", "dest_zone"),
        ("rule", "rule"),
        ("service", "service"),
        ("vlan", "vlan"),
        ("flowId", "flow_id"),
    ] {
        assert_eq!(
            attributes.get(leef).cloned(),
            text(event, key),
            "{leef} in {message}"
        );
    }
    assert_eq!(attributes["sev"], scale(&text(event, "severity").unwrap()));
}

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn read_events(path: &Path) -> Vec<Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_format_over_udp_and_tcp_reaches_rsyslog_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let formats = ["rfc5424", "cef", "leef", "json"];
    // rfc5424 over UDP, the others over TCP.
    let inputs: Vec<Input> = formats
        .iter()
        .enumerate()
        .map(|(n, format)| Input {
            module: if n == 0 { "imudp" } else { "imtcp" },
            port: if n == 0 { free_udp_port() } else { free_port() },
            file: dir.path().join(format!("{format}.log")),
        })
        .collect();
    let _rsyslog = Rsyslog::start(dir.path(), &inputs, None);
    let mut config = String::from("[policy]\nwatch = false\n");
    for (format, input) in formats.iter().zip(&inputs) {
        let scheme = if input.module == "imudp" {
            "udp"
        } else {
            "tcp"
        };
        config.push_str(&format!(
            "[[syslog]]\nurl = \"{scheme}://127.0.0.1:{}\"\nformat = \"{format}\"\n\
             facility = \"local3\"\nhostname = \"ward-3-sensor\"\n",
            input.port
        ));
    }
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let events_path = dir.path().join("events.jsonl");

    let replayed = Command::new(crate::common::SEGWATCH)
        .args(["replay", "--policy"])
        .arg(example_policy())
        .arg(sample())
        .output()
        .unwrap();
    let expected = String::from_utf8(replayed.stdout).unwrap().lines().count();
    assert!(
        expected >= 10,
        "the sample has violations of every severity"
    );

    let daemon = Daemon::start(&[
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
        "--events",
        events_path.to_str().unwrap(),
    ]);
    wait_lines(&events_path, expected, Duration::from_secs(20));
    let events = read_events(&events_path);
    assert_eq!(events.len(), expected);

    for (format, input) in formats.iter().zip(&inputs) {
        let received = wait_lines(&input.file, expected, Duration::from_secs(20));
        assert_eq!(received.len(), expected, "{format}: every event, once");
        let mut messages: Vec<Syslog> = received.iter().map(|l| parse_rfc5424(l)).collect();
        if input.module == "imudp" {
            // Datagrams may be reordered; TCP keeps the order.
            messages.sort_by_key(|m| sd_params(&m.sd).1["flow_id"].clone());
        }
        let mut ordered: Vec<&Value> = events.iter().collect();
        if input.module == "imudp" {
            ordered.sort_by_key(|e| text(e, "flow_id"));
        }
        for (message, event) in messages.iter().zip(ordered) {
            let severity = text(event, "severity").unwrap();
            assert_eq!(message.pri, 19 * 8 + syslog_severity(&severity), "{format}");
            assert_eq!(message.hostname, "ward-3-sensor");
            assert_eq!(message.app, "segwatch");
            assert_eq!(message.msgid, "violation");
            match *format {
                "rfc5424" => {
                    let (id, params) = sd_params(&message.sd);
                    assert_eq!(id, "segwatch@32473");
                    assert_eq!(&event_from_sd(&params), event);
                    let mut summary = format!(
                        "{} -> {} {}",
                        text(event, "src_zone").unwrap(),
                        text(event, "dest_zone").unwrap(),
                        text(event, "proto").unwrap()
                    );
                    if let Some(port) = text(event, "dest_port") {
                        summary.push_str(&format!("/{port}"));
                    }
                    summary.push_str(&format!(" violates {}", text(event, "rule").unwrap()));
                    assert_eq!(message.msg, summary);
                }
                "cef" => check_cef(&message.msg, event),
                "leef" => check_leef(&message.msg, event),
                "json" => {
                    let back: Value = serde_json::from_str(&message.msg).unwrap();
                    assert_eq!(&back, event);
                }
                _ => unreachable!(),
            }
        }
    }
    let text = daemon.metrics();
    for sink in ["syslog0", "syslog1", "syslog2", "syslog3", "events_file"] {
        let filter = format!("sink=\"{sink}\"");
        assert_eq!(
            metric(&text, "segwatch_sink_events_sent_total", &filter),
            Some(expected as f64),
            "{sink}"
        );
        assert_eq!(
            metric(&text, "segwatch_events_dropped_total", &filter),
            Some(0.0),
            "{sink}"
        );
    }
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn tls_feed_with_a_client_certificate_reaches_rsyslog() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let input = Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("tls.log"),
    };
    let _rsyslog = Rsyslog::start(dir.path(), std::slice::from_ref(&input), Some(&pki));
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "[policy]\nwatch = false\n[[syslog]]\nurl = \"tls://127.0.0.1:{}\"\n\
             format = \"rfc5424\"\nsd_id = \"hospital@32473\"\nca_file = \"{}\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\nserver_name = \"localhost\"\n",
            input.port,
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    )
    .unwrap();
    let events_path = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
        "--events",
        events_path.to_str().unwrap(),
    ]);
    let replayed = Command::new(crate::common::SEGWATCH)
        .args(["replay", "--policy"])
        .arg(example_policy())
        .arg(sample())
        .output()
        .unwrap();
    let expected = String::from_utf8(replayed.stdout).unwrap().lines().count();
    wait_lines(&events_path, expected, Duration::from_secs(20));
    let events = read_events(&events_path);
    let received = wait_lines(&input.file, expected, Duration::from_secs(20));
    let from_tls: Vec<Value> = received
        .iter()
        .map(|l| {
            let (id, params) = sd_params(&parse_rfc5424(l).sd);
            assert_eq!(id, "hospital@32473");
            event_from_sd(&params)
        })
        .collect();
    assert_eq!(from_tls, events, "every event, in order, through TLS");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_tls_feed_refuses_a_server_its_ca_did_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_pki = Pki::make(&other);
    let input = Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("tls.log"),
    };
    let _rsyslog = Rsyslog::start(dir.path(), std::slice::from_ref(&input), Some(&pki));
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "[policy]\nwatch = false\n[[syslog]]\nurl = \"tls://127.0.0.1:{}\"\n\
             ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n\
             server_name = \"localhost\"\n",
            input.port,
            other_pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
    ]);
    // The events wait in the queue: none is sent, none reaches the file.
    wait_for("events queued", Duration::from_secs(20), || {
        let queued = metric(
            &daemon.metrics(),
            "segwatch_sink_queue_depth_events",
            "sink=\"syslog0\"",
        )?;
        (queued >= 10.0).then_some(())
    });
    assert_eq!(
        metric(
            &daemon.metrics(),
            "segwatch_sink_events_sent_total",
            "sink=\"syslog0\""
        ),
        Some(0.0)
    );
    // The queued events are neither delivered nor spooled (this feed has
    // no spool): the stop says how many, and exits 1.
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Syslog receiver unreachable") && stderr.contains("certificate"),
        "the log says why: {stderr}"
    );
    assert!(
        stderr.contains("events neither delivered nor spooled"),
        "{stderr}"
    );
    assert!(lines(&input.file).is_empty());
}

/// One violating UDP flow every 100 ms for `flows` flows.
fn steady_violations(path: &Path, flows: u16) {
    let mut capture = Capture::new();
    for i in 0..flows {
        capture.add(
            at(f64::from(i) * 0.1),
            &Pkt::udp(&format!("10.60.1.5:{}", 40000 + i), "10.21.0.20:9000"),
        );
    }
    capture.write_pcap(path, Resolution::Micro).unwrap();
}

#[test]
fn events_produced_while_the_tcp_receiver_is_down_arrive_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let flows = 120;
    let capture = dir.path().join("steady.pcap");
    steady_violations(&capture, flows);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n\
         [zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n",
    )
    .unwrap();
    let inputs = [Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("received.log"),
    }];
    let mut rsyslog = Rsyslog::start(dir.path(), &inputs, None);
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(&config_path, "[policy]\nwatch = false\n").unwrap();
    let events_path = dir.path().join("events.jsonl");
    let syslog = format!("tcp://127.0.0.1:{}", inputs[0].port);
    let daemon = Daemon::start(&[
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events_path.to_str().unwrap(),
        "--syslog",
        &syslog,
    ]);
    wait_lines(&inputs[0].file, 10, Duration::from_secs(20));
    rsyslog.stop();
    let at_stop = lines(&events_path).len();
    // Events keep coming while the receiver is down (the events file goes
    // on growing); they wait in the feed's queue.
    let queued = wait_for(
        "events queued during the outage",
        Duration::from_secs(20),
        || {
            let queued = metric(
                &daemon.metrics(),
                "segwatch_sink_queue_depth_events",
                "sink=\"syslog0\"",
            )?;
            (queued >= 15.0 && lines(&events_path).len() >= at_stop + 15).then_some(queued)
        },
    );
    assert!(
        (lines(&events_path).len() as u16) < flows,
        "the outage ended before the capture did"
    );
    let restarted = Instant::now();
    rsyslog.restart(&inputs);
    let received = wait_lines(&inputs[0].file, usize::from(flows), Duration::from_secs(40));
    let events = wait_lines(&events_path, usize::from(flows), Duration::from_secs(20));
    let flow_ids = |lines: &[String], pattern: &str| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let start = l.find(pattern).unwrap() + pattern.len();
                l[start..start + 16].to_string()
            })
            .collect()
    };
    assert_eq!(
        flow_ids(&received, "flow_id=\""),
        flow_ids(&events, "\"flow_id\":\""),
        "every event once, in order, {queued} of them queued during the outage \
         (back {:?} after the restart)",
        restarted.elapsed()
    );
    let text = daemon.metrics();
    assert_eq!(
        metric(&text, "segwatch_sink_events_lost_total", "sink=\"syslog0\""),
        Some(0.0)
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("reconnected"), "{stderr}");
}

/// Starts `segwatch run` (logging at info) with `env` set, as
/// [`Daemon::start`] does otherwise: the platform's trust store is read
/// from `SSL_CERT_FILE` when it is set, as openssl reads it.
fn start_with_env(env: &[(&str, &Path)], args: &[&str]) -> Daemon {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let child = Command::new(crate::common::SEGWATCH)
        .args(["--log-level", "info", "run", "--metrics-listen", &listen])
        .args(args)
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon = Daemon {
        child,
        metrics_port,
    };
    wait_for("/healthz", Duration::from_secs(10), || {
        crate::daemon::http_get(metrics_port, "/healthz")
    });
    daemon
}

/// The number of events replaying the sample gives.
fn sample_events() -> usize {
    let replayed = Command::new(crate::common::SEGWATCH)
        .args(["replay", "--policy"])
        .arg(example_policy())
        .arg(sample())
        .output()
        .unwrap();
    String::from_utf8(replayed.stdout).unwrap().lines().count()
}

/// Without `ca_file` a TLS feed trusts the platform's store (here the
/// test CA, named by `SSL_CERT_FILE` as openssl would read it), not a
/// bundle at one distribution's path; a store without a usable
/// certificate stops the start with one line saying how to name a CA.
#[test]
fn a_tls_feed_without_ca_file_trusts_the_platform_store() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let input = Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("tls.log"),
    };
    let _rsyslog = Rsyslog::start(dir.path(), std::slice::from_ref(&input), Some(&pki));
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "[policy]\nwatch = false\n[[syslog]]\nurl = \"tls://127.0.0.1:{}\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\n",
            input.port,
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    )
    .unwrap();
    let (sample, policy) = (sample(), example_policy());
    let args = [
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        sample.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    let expected = sample_events();
    let daemon = start_with_env(&[("SSL_CERT_FILE", &pki.ca)], &args);
    let received = wait_lines(&input.file, expected, Duration::from_secs(20));
    assert_eq!(received.len(), expected, "every event through TLS");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("unreachable"), "{stderr}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(crate::common::SEGWATCH)
        .args(["run", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "segwatch: error: syslog feed tls://127.0.0.1:{}: no usable CA certificate in the \
             platform's trust store",
            input.port
        )) && stderr.contains("ca_file (or --syslog-ca)"),
        "{stderr}"
    );
}

/// `--syslog tls://...` with `--syslog-ca`, `--syslog-client-cert` and
/// `--syslog-client-key`: no configuration file is needed for a TLS feed to
/// a receiver that requires a client certificate; the feed connects and
/// verifies the receiver as the daemon starts, and says so.
#[test]
fn the_tls_flags_name_the_ca_and_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let input = Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("tls.log"),
    };
    let _rsyslog = Rsyslog::start(dir.path(), std::slice::from_ref(&input), Some(&pki));
    let events_path = dir.path().join("events.jsonl");
    let syslog = format!("tls://127.0.0.1:{}", input.port);
    let daemon = Daemon::start(&[
        "--pcap",
        sample().to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
        "--events",
        events_path.to_str().unwrap(),
        "--syslog",
        &syslog,
        "--syslog-format",
        "json",
        "--syslog-ca",
        pki.ca.to_str().unwrap(),
        "--syslog-client-cert",
        pki.client_cert.to_str().unwrap(),
        "--syslog-client-key",
        pki.client_key.to_str().unwrap(),
    ]);
    let expected = sample_events();
    let events = wait_lines(&events_path, expected, Duration::from_secs(20));
    let received = wait_lines(&input.file, expected, Duration::from_secs(20));
    let from_tls: Vec<Value> = received
        .iter()
        .map(|l| serde_json::from_str(&parse_rfc5424(l).msg).unwrap())
        .collect();
    let events: Vec<Value> = events
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(from_tls, events, "every event, in order, through TLS");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Syslog receiver reachable; its TLS certificate verified"),
        "{stderr}"
    );

    // A key without its certificate, or a CA without a feed, is refused
    // before anything starts; so is a CA file that cannot be read.
    let run = |args: &[&str]| {
        Command::new(crate::common::SEGWATCH)
            .args(["run", "--metrics-listen", "127.0.0.1:0", "--pcap"])
            .arg(sample())
            .arg("--policy")
            .arg(example_policy())
            .args(args)
            .output()
            .unwrap()
    };
    let key = pki.client_key.to_str().unwrap();
    for args in [
        vec!["--syslog", &syslog, "--syslog-client-key", key],
        vec!["--syslog", &syslog, "--syslog-client-cert", key],
        vec!["--syslog-ca", key],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("required"),
            "{args:?}"
        );
    }
    let out = run(&["--syslog", "udp://127.0.0.1:514", "--syslog-ca", key]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "segwatch: error: command line:1:1: --syslog-ca: applies to the --syslog tls://... \
         feeds, and none is given\n"
    );
    let missing = dir.path().join("missing-ca.pem");
    let out = run(&[
        "--syslog",
        &syslog,
        "--syslog-ca",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "segwatch: error: syslog feed {syslog}: {}: ",
            missing.display()
        )) && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// The feeds are checked as the daemon starts, before any event: a
/// receiver that refuses connections and one whose certificate the CA did
/// not sign are each logged as unreachable, with the reason, and the daemon
/// runs on (their events would wait in the queues).
#[test]
fn feeds_are_checked_at_start_and_an_unreachable_receiver_does_not_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_pki = Pki::make(&other);
    let input = Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("tls.log"),
    };
    let _rsyslog = Rsyslog::start(dir.path(), std::slice::from_ref(&input), Some(&pki));
    // One allowed flow: no event, so nothing but the start connects.
    let capture = dir.path().join("allowed.pcap");
    let mut allowed = Capture::new();
    allowed.add(
        at(0.0),
        &Pkt::tcp(
            "10.20.1.8:50000",
            "10.20.8.10:443",
            segwatch::synth::tcp_flags::SYN,
        ),
    );
    allowed.write_pcap(&capture, Resolution::Micro).unwrap();
    assert_eq!(
        Command::new(crate::common::SEGWATCH)
            .args(["replay", "--policy"])
            .arg(example_policy())
            .arg(&capture)
            .output()
            .unwrap()
            .stdout,
        b"",
        "the capture has no violation"
    );
    let refused = format!("tls://127.0.0.1:{}", free_port());
    let untrusted = format!("tls://127.0.0.1:{}", input.port);
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
        "--syslog",
        &refused,
        "--syslog",
        &untrusted,
        "--syslog-ca",
        other_pki.ca.to_str().unwrap(),
        "--syslog-client-cert",
        pki.client_cert.to_str().unwrap(),
        "--syslog-client-key",
        pki.client_key.to_str().unwrap(),
    ]);
    // Each feed's thread checks its receiver before it takes anything from
    // its queue, and a stop waits for the thread: the log is whole at exit.
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let unreachable = |feed: &str| {
        stderr
            .lines()
            .find(|line| line.contains("Syslog receiver unreachable") && line.contains(feed))
            .unwrap_or_else(|| panic!("no warning for {feed}: {stderr}"))
            .to_string()
    };
    assert!(unreachable(&refused).contains("refused"), "{stderr}");
    assert!(
        unreachable(&untrusted)
            .to_lowercase()
            .contains("certificate"),
        "{stderr}"
    );
    assert!(lines(&input.file).is_empty());
}

/// Issue 14: the daemon's incidents through a real rsyslog in all four
/// formats, excepted violations kept off the feeds, and a reload of the
/// exceptions file (one that takes, one refused).
#[test]
fn incidents_reach_rsyslog_in_every_format_and_exceptions_reload() {
    use segwatch::wire::tcp_flags::SYN;
    let dir = tempfile::tempdir().unwrap();
    let formats = ["rfc5424", "cef", "leef", "json"];
    let inputs: Vec<Input> = formats
        .iter()
        .enumerate()
        .map(|(n, format)| Input {
            module: if n == 0 { "imudp" } else { "imtcp" },
            port: if n == 0 { free_udp_port() } else { free_port() },
            file: dir.path().join(format!("{format}.log")),
        })
        .collect();
    let _rsyslog = Rsyslog::start(dir.path(), &inputs, None);

    let mut capture = Capture::new();
    let guest = |c: &mut Capture, t: f64, port: u16| {
        c.add(
            at(t),
            &Pkt::tcp(&format!("10.66.0.9:{port}"), "10.40.0.12:443", SYN),
        );
    };
    guest(&mut capture, 0.0, 50000);
    guest(&mut capture, 0.2, 50001);
    for (i, t) in [0.5, 0.7, 0.9].into_iter().enumerate() {
        capture.add(
            at(t),
            &Pkt::tcp(&format!("10.90.0.5:{}", 40000 + i), "10.40.0.12:3389", SYN),
        );
    }
    // After the reload: the guest's flows are no longer excepted. The RDP
    // events wait up to 2 s for their application, so the reload comes at
    // about 3 s of capture time; the guest returns 6 s later, a margin that
    // holds on a loaded machine.
    guest(&mut capture, 9.0, 50002);
    guest(&mut capture, 9.2, 50003);
    let capture_path = dir.path().join("capture.pcap");
    capture
        .write_pcap(&capture_path, Resolution::Micro)
        .unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, crate::incidents::POLICY).unwrap();
    let exceptions_path = dir.path().join("exceptions.toml");
    let guest_exception = "[[exceptions]]\nid = \"EX-GUEST\"\nreason = \"pilot\"\nowner = \"IT\"\n\
                           expires = 2027-01-01\nfrom = [\"guest\"]\n";
    std::fs::write(&exceptions_path, guest_exception).unwrap();

    let mut config = format!(
        "[policy]\npath = \"{}\"\nexceptions = \"{}\"\nwatch = false\n\
         [incidents]\nenabled = true\nidle = \"1s\"\n",
        policy_path.display(),
        exceptions_path.display()
    );
    for (format, input) in formats.iter().zip(&inputs) {
        let scheme = if input.module == "imudp" {
            "udp"
        } else {
            "tcp"
        };
        config.push_str(&format!(
            "[[syslog]]\nurl = \"{scheme}://127.0.0.1:{}\"\nformat = \"{format}\"\n\
             records = [\"violations\", \"incidents\"]\n",
            input.port
        ));
    }
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let events_path = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--config",
        config_path.to_str().unwrap(),
        "--pcap",
        capture_path.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--events",
        events_path.to_str().unwrap(),
    ]);
    // The events file takes excepted violations too.
    let events = wait_lines(&events_path, 5, Duration::from_secs(10));
    let first: Vec<Value> = events
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(first[0]["exception"], "EX-GUEST");
    assert!(first[0].get("incident_id").is_none());
    assert!(first[2]["incident_id"].is_string());
    // The exceptions file changes: reloaded with the policy on SIGHUP.
    std::fs::write(
        &exceptions_path,
        guest_exception.replace("from = [\"guest\"]", "from = [\"10.66.9.9\"]"),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the reload", Duration::from_secs(5), || {
        let text = daemon.metrics();
        (metric(&text, "segwatch_policy_reloads_total", "result=\"success\"") == Some(1.0))
            .then_some(())
    });
    let events = wait_lines(&events_path, 7, Duration::from_secs(15));
    let last: Value = serde_json::from_str(&events[6]).unwrap();
    assert!(last.get("exception").is_none(), "{last}");
    assert!(last["incident_id"].is_string());
    // A file naming what the policy lacks is refused: both stay in force.
    std::fs::write(
        &exceptions_path,
        guest_exception.replace("from = [\"guest\"]", "rule = \"no-such-rule\""),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the refused reload", Duration::from_secs(5), || {
        let text = daemon.metrics();
        (metric(&text, "segwatch_policy_reloads_total", "result=\"failure\"") == Some(1.0))
            .then_some(())
    });
    let text = daemon.metrics();
    assert_eq!(
        metric(
            &text,
            "segwatch_exception_hits_total",
            "exception=\"EX-GUEST\""
        ),
        Some(2.0)
    );
    assert!(
        metric(
            &text,
            "segwatch_violations_excepted_total",
            "rule=\"guest-to-clinical\""
        ) == Some(2.0)
    );
    // The incident thread publishes its counters once a second, and the
    // RDP incident opens only when the guest's flows at 9 s release the
    // events that waited for their application: wait for the publication.
    wait_for("the incident counted", Duration::from_secs(20), || {
        let text = daemon.metrics();
        let high = "kind=\"violation\",severity=\"high\"";
        (metric(&text, "segwatch_incidents_total", high) == Some(1.0)).then_some(())
    });
    // Each feed: 5 violations (not the 2 excepted), and an open and a close
    // of each of the two incidents (the guest's closes by the clock or at
    // the stop).
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
    for (format, input) in formats.iter().zip(&inputs) {
        let received = wait_lines(&input.file, 9, Duration::from_secs(20));
        assert_eq!(received.len(), 9, "{format}: {received:#?}");
        let messages: Vec<Syslog> = received.iter().map(|l| parse_rfc5424(l)).collect();
        let incidents: Vec<&Syslog> = messages.iter().filter(|m| m.msgid == "incident").collect();
        assert_eq!(incidents.len(), 4, "{format}");
        for message in &incidents {
            match *format {
                "rfc5424" => {
                    let (_, params) = sd_params(&message.sd);
                    assert!(params.contains_key("flows") && params.contains_key("first_seen"));
                    assert!(["open", "close"].contains(&params["state"].as_str()));
                }
                "cef" => {
                    let (header, pairs) = parse_cef(&message.msg);
                    assert!(header[5].ends_with(" incident"), "{header:?}");
                    assert!(
                        pairs.contains_key("cnt")
                            && pairs.contains_key("start")
                            && pairs.contains_key("end")
                    );
                }
                "leef" => {
                    assert!(message.msg.contains("|incident|"));
                    for key in ["\tcnt=", "\tstart=", "\tend="] {
                        assert!(message.msg.contains(key), "{}", message.msg);
                    }
                }
                _ => {
                    let record: Value = serde_json::from_str(&message.msg).unwrap();
                    assert_eq!(record["event_type"], "incident");
                }
            }
        }
    }
}

/// The flow ids of events (JSON lines) or of RFC 5424 messages, in order.
fn flow_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let at = l
                .find("flow_id=\"")
                .map(|i| i + 9)
                .or_else(|| l.find("\"flow_id\":\"").map(|i| i + 11))
                .unwrap_or_else(|| panic!("no flow_id: {l}"));
            l[at..at + 16].to_string()
        })
        .collect()
}

/// Issue 16.9: a TCP feed with a disk spool and a memory queue of 20
/// events. rsyslog is stopped for longer than that queue lasts; the
/// daemon is killed (SIGKILL) during the outage and started again (on the
/// rest of the traffic) while rsyslog is still away. Once rsyslog is back,
/// every event of both runs arrives, in order, once.
#[test]
fn a_disk_spool_keeps_a_long_outage_and_a_crash_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [Input {
        module: "imtcp",
        port: free_port(),
        file: dir.path().join("received.log"),
    }];
    let mut rsyslog = Rsyslog::start(dir.path(), &inputs, None);
    let (first, second) = (100u16, 60u16);
    let mut before = Capture::new();
    let mut after = Capture::new();
    for i in 0..first + second {
        // A pause after the first ten: rsyslog is stopped while nothing
        // is in flight (plain TCP cannot tell a message its receiver's
        // kernel took but the receiver dropped as it stopped; see the
        // README), so that what is checked is the spool.
        let (capture, t) = if i < 10 {
            (&mut before, f64::from(i) * 0.03)
        } else if i < first {
            (&mut before, 3.0 + f64::from(i) * 0.03)
        } else {
            (&mut after, f64::from(i - first) * 0.03)
        };
        capture.add(
            at(t),
            &Pkt::udp(&format!("10.60.1.5:{}", 40000 + i), "10.21.0.20:9000"),
        );
    }
    let (before_path, after_path) = (
        dir.path().join("before.pcap"),
        dir.path().join("after.pcap"),
    );
    before.write_pcap(&before_path, Resolution::Micro).unwrap();
    after.write_pcap(&after_path, Resolution::Micro).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n\
         [zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n",
    )
    .unwrap();
    let spool_dir = dir.path().join("spool");
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "[policy]\nwatch = false\n[detection]\nenabled = false\n\
             [spool]\ndir = \"{}\"\nmax_mib = 1\n\
             [[syslog]]\nurl = \"tcp://127.0.0.1:{}\"\nqueue = 20\n",
            spool_dir.display(),
            inputs[0].port
        ),
    )
    .unwrap();
    let events_path = dir.path().join("events.jsonl");
    let run = |capture: &Path| {
        Daemon::start(&[
            "--config",
            config_path.to_str().unwrap(),
            "--pcap",
            capture.to_str().unwrap(),
            "--pcap-pace",
            "realtime",
            "--policy",
            policy.to_str().unwrap(),
            "--events",
            events_path.to_str().unwrap(),
        ])
    };
    let sink = "sink=\"syslog0\"";
    let mut daemon = run(&before_path);
    wait_lines(&inputs[0].file, 10, Duration::from_secs(20));
    rsyslog.stop();
    // Every event of the first run is written, and each is either sent or
    // on disk (none waits in memory) when the daemon is killed.
    let spooled = wait_for("the first run spooled", Duration::from_secs(30), || {
        let text = daemon.metrics();
        let sent = metric(&text, "segwatch_sink_events_sent_total", sink)?;
        let spooled = metric(&text, "segwatch_sink_spool_events", sink)?;
        let written = lines(&events_path).len() as f64;
        (written == f64::from(first) && sent + spooled == written).then_some(spooled)
    });
    assert!(
        spooled > 20.0,
        "more than the memory queue holds: {spooled}"
    );
    assert!(
        metric(&daemon.metrics(), "segwatch_sink_spool_bytes", sink).unwrap() > 0.0,
        "its size is a metric"
    );
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    // Started again while the receiver is still away: the spool is taken
    // up where it was, and the new events go behind it.
    let daemon = run(&after_path);
    wait_for("the second run spooled", Duration::from_secs(30), || {
        let now = metric(&daemon.metrics(), "segwatch_sink_spool_events", sink)?;
        (now == spooled + f64::from(second)).then_some(())
    });
    rsyslog.restart(&inputs);
    let total = usize::from(first + second);
    let deadline = Instant::now() + Duration::from_secs(40);
    while lines(&inputs[0].file).len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = lines(&inputs[0].file);
    let events = lines(&events_path);
    assert_eq!(
        received.len(),
        total,
        "received {} of {total} (missing those at {:?}); the feed's metrics: {:?}",
        received.len(),
        {
            let got = flow_ids(&received);
            flow_ids(&events)
                .iter()
                .enumerate()
                .filter(|(_, id)| !got.contains(id))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        },
        daemon
            .metrics()
            .lines()
            .filter(|l| l.contains("syslog0"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        flow_ids(&received),
        flow_ids(&events),
        "every event of both runs once, in order ({spooled} spooled by the first)"
    );
    let text = daemon.metrics();
    assert_eq!(
        metric(&text, "segwatch_sink_spool_dropped_total", sink),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "segwatch_events_dropped_total", sink),
        Some(0.0)
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("spool holds events from before"),
        "{stderr}"
    );
}
