//! Drives `segwatch run --pcap` on a `segwatch synth flood` capture with a
//! configuration whose bounds and sinks are given, and reads what the
//! daemon held at the end: its metrics and its peak resident memory
//! (VmHWM). Shared by `tests/memory_flood.rs` and `benches/memory_flood.rs`
//! (README, "Memory: sizing a sensor").

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bounds a run's configuration sets.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// `flows.max_flows`.
    pub max_flows: u64,
    /// `inventory.max_devices`.
    pub max_devices: u64,
    /// `incidents.max_initiators`.
    pub max_initiators: u64,
    /// `incidents.max_open`.
    pub max_open: u64,
    /// `events.queue` (every sink's queue).
    pub queue: u64,
    /// `spool.max_mib`.
    pub spool_mib: u64,
}

impl Bounds {
    /// The daemon's defaults (and `deploy/segwatch.toml`'s), but for the
    /// spool's size on disk, which costs no memory.
    pub const DEFAULT: Bounds = Bounds {
        max_flows: 1_000_000,
        max_devices: 100_000,
        max_initiators: 100_000,
        max_open: 1_000_000,
        queue: 10_000,
        spool_mib: 16,
    };
}

/// What a run's configuration turns on.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Its bounds.
    pub bounds: Bounds,
    /// `incidents.enabled`.
    pub incidents: bool,
    /// `detection.enabled`.
    pub detection: bool,
    /// Violations and incident records to the events file (else violations
    /// only).
    pub events_file: bool,
    /// Every record to stdout, a pipe nobody reads: its queue fills.
    pub stdout_blocked: bool,
    /// A TCP syslog feed (incident records) to a port nobody listens on,
    /// with a disk spool: the spool fills.
    pub spooled_feed: bool,
    /// A TCP syslog feed (violations) to a port nobody listens on, without
    /// a spool: its memory queue fills.
    pub queued_feed: bool,
}

impl Setup {
    /// Everything on, as `deploy/segwatch.toml` has it (plus the blocked
    /// stdout and the feed without a spool, so that every kind of queue
    /// fills).
    pub fn everything(bounds: Bounds) -> Setup {
        Setup {
            bounds,
            incidents: true,
            detection: true,
            events_file: true,
            stdout_blocked: true,
            spooled_feed: true,
            queued_feed: true,
        }
    }

    /// Nothing on but what is turned on afterwards: bounds of one, no
    /// incidents, no detection, violations to the events file only.
    pub fn nothing() -> Setup {
        Setup {
            bounds: Bounds {
                max_flows: 1,
                max_devices: 1,
                max_initiators: 1,
                max_open: 1,
                queue: 1,
                spool_mib: 1,
            },
            incidents: false,
            detection: false,
            events_file: false,
            stdout_blocked: false,
            spooled_feed: false,
            queued_feed: false,
        }
    }
}

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration file of `setup`, reading `pcap` and writing under `dir`.
pub fn config(setup: &Setup, dir: &Path, pcap: &Path, policy: &Path, metrics: u16) -> String {
    let b = &setup.bounds;
    let mut c = format!(
        "[capture]\npcap = {pcap:?}\n\
         [policy]\npath = {policy:?}\nwatch = false\n\
         [flows]\nmax_flows = {}\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [inventory]\nmax_devices = {}\n\
         [detection]\nenabled = {}\n\
         [process]\ndrain_timeout = \"1s\"\n",
        b.max_flows, b.max_devices, setup.detection
    );
    let events = dir.join("events.jsonl");
    c += &format!("[events]\nfile = {events:?}\nqueue = {}\n", b.queue);
    if setup.events_file {
        c += "records = [\"violations\", \"incidents\"]\n";
    }
    if setup.stdout_blocked {
        c += "stdout = true\nstdout_records = [\"violations\", \"incidents\"]\n";
    }
    if setup.incidents {
        c += &format!(
            "[incidents]\nenabled = true\nmax_initiators = {}\nmax_open = {}\n",
            b.max_initiators, b.max_open
        );
    }
    if setup.spooled_feed {
        c += &format!(
            "[[syslog]]\nurl = \"tcp://127.0.0.1:{}\"\nrecords = [\"incidents\"]\nqueue = {}\n",
            dead_port(),
            b.queue
        );
    }
    if setup.queued_feed {
        c += &format!(
            "[[syslog]]\nurl = \"tcp://127.0.0.1:{}\"\nrecords = [\"violations\"]\nqueue = {}\n\
             spool = false\n",
            dead_port(),
            b.queue
        );
    }
    if setup.spooled_feed {
        let spool = dir.join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        c += &format!("[spool]\ndir = {spool:?}\nmax_mib = {}\n", b.spool_mib);
    }
    c
}

/// What a run left.
#[derive(Debug)]
pub struct Outcome {
    /// `/metrics` once the capture was read and the incident thread had
    /// folded it.
    pub metrics: String,
    /// Peak resident memory (VmHWM), bytes.
    pub peak: u64,
    /// Seconds from the start to the capture read.
    pub read_s: f64,
    /// Seconds SIGTERM took to stop it (`None`: killed instead).
    pub stop_s: Option<f64>,
    /// Its exit status (stopped by SIGTERM).
    pub status: Option<i32>,
    /// Its log.
    pub log: String,
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

/// [`metric`], 0 when absent.
pub fn value(exposition: &str, name: &str, filter: &str) -> u64 {
    metric(exposition, name, filter).unwrap_or(0.0) as u64
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// VmHWM of `pid`, bytes.
pub fn peak_resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Kills the daemon if a run fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `segwatch` on the capture `(pcap, frames)` with `setup` in `dir`,
/// judged by `policy`; waits (at most `limit`) until every frame is read
/// and, with incidents, folded; reads the metrics and VmHWM; stops it
/// with SIGTERM when `stop`, else kills it.
pub fn run(
    segwatch: &Path,
    setup: &Setup,
    dir: &Path,
    (pcap, frames): (&Path, u64),
    policy: &Path,
    limit: Duration,
    stop: bool,
) -> Outcome {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = dir.join("segwatch.toml");
    std::fs::write(&config_path, config(setup, dir, pcap, policy, port)).unwrap();
    let log_path = dir.join("segwatch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let child = Command::new(segwatch)
        .env_remove("SEGWATCH_LOG")
        .args(["--log-level", "warn", "run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        // Piped and never read while it runs: the stdout sink blocks.
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut daemon = Running(child);
    let pid = daemon.0.id();
    let deadline = started + limit;
    let mut read_s = None;
    let mut last: Option<String> = None;
    let metrics = loop {
        assert!(
            Instant::now() < deadline,
            "the flood was not read within {limit:?}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!(
                "segwatch stopped ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let Some(body) = scrape(port) else { continue };
        if value(&body, "segwatch_packets_total", "") < frames {
            continue;
        }
        read_s.get_or_insert(started.elapsed().as_secs_f64());
        if !setup.incidents {
            break body;
        }
        // The incident thread publishes once a second: done when its queue
        // is empty and two scrapes a second apart agree.
        let folded = |b: &str| {
            (
                value(b, "segwatch_incident_queue_batches", ""),
                value(b, "segwatch_incident_flows_total", ""),
                value(b, "segwatch_incidents_open", ""),
                value(b, "segwatch_incident_initiators", ""),
            )
        };
        let now = folded(&body);
        if now.0 == 0 && last.as_deref().is_some_and(|l| folded(l) == now) {
            break body;
        }
        last = Some(body);
        std::thread::sleep(Duration::from_millis(800));
    };
    let peak = peak_resident(pid);
    let (stop_s, status) = if stop {
        // The unread stdout is let go: its sink then fails instead of
        // waiting.
        drop(daemon.0.stdout.take());
        let signalled = Instant::now();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = loop {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < limit,
                "segwatch did not stop within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (Some(signalled.elapsed().as_secs_f64()), status.code())
    } else {
        (None, None)
    };
    drop(daemon);
    Outcome {
        metrics,
        peak,
        read_s: read_s.unwrap_or(0.0),
        stop_s,
        status,
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

/// Writes `segwatch synth flood` with `flags` to `path`.
pub fn synth_flood(segwatch: &Path, path: &Path, flags: &[String]) {
    let status = Command::new(segwatch)
        .args(["synth", "flood", "-o"])
        .arg(path)
        .args(flags)
        .status()
        .unwrap();
    assert!(status.success(), "segwatch synth flood");
}

/// A path under `dir`.
pub fn under(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
