//! Issue 16: what a crowded host, a hostile user and a full disk do to the
//! daemon's files and its log. Tests that need root (planting a link for a
//! daemon that drops privileges, mounting a small file system) run as root,
//! as CI does, and are skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{SEGWATCH, root};

/// True when the tests run as root (CI does).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            Some(line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

fn mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 16.4: the unprivileged user a root-started daemon drops to plants
/// a link where the events file goes, pointing at a root-only file; the
/// daemon refuses it with one line naming the path, before anything is
/// written, and the root-only file is untouched.
#[test]
fn a_symlink_planted_in_place_of_the_events_file_is_refused() {
    if !is_root() {
        eprintln!("skipped: the planted-link test needs root (a daemon that drops privileges)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The directory the events go to belongs to the user the daemon drops
    // to, as /var/log/segwatch does.
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    mode(dir.path(), 0o755);
    mode(&logs, 0o777);
    let secret = dir.path().join("root-only");
    std::fs::write(&secret, "root's own\n").unwrap();
    mode(&secret, 0o600);
    let events = logs.join("events.jsonl");
    std::os::unix::fs::symlink(&secret, &events).unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[process]\nuser = \"nobody\"\n").unwrap();
    let out = Command::new(SEGWATCH)
        .args(["run", "--metrics-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--pcap")
        .arg(sample())
        .arg("--policy")
        .arg(example_policy())
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "segwatch: error: events file {}: is a symbolic link: refusing to follow it (name \
             the file itself, or remove the link)\n",
            events.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's own\n");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    /// Mounts a tmpfs of `kib` KiB on `dir` (created); `None` when the
    /// mount is refused (no root, or a sandbox without mounts).
    fn mount(dir: &Path, kib: u32) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| SmallFs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// One violating UDP flow every `gap` seconds for `flows` flows, with the
/// policy that alerts on them.
pub fn steady_violations(dir: &Path, flows: u16, gap: f64) -> (PathBuf, PathBuf) {
    use segwatch::synth::{Capture, Pkt, Resolution, at};
    let mut capture = Capture::new();
    for i in 0..flows {
        capture.add(
            at(f64::from(i) * gap),
            &Pkt::udp(
                &format!("10.60.{}.5:{}", i / 250, 40000 + i),
                "10.21.0.20:9000",
            ),
        );
    }
    let path = dir.join("steady.pcap");
    capture.write_pcap(&path, Resolution::Micro).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n\
         [zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n",
    )
    .unwrap();
    (path, policy)
}

/// Issue 16.7: the events file on a file system that fills up. Writes cut
/// short by ENOSPC are taken back to the last complete line and counted as
/// lost; once space is freed the events that follow are whole lines again:
/// every line of the file parses, none is counted twice, and lines written
/// plus events lost are all the events.
#[test]
fn a_full_disk_leaves_only_whole_lines_in_the_events_file() {
    use crate::daemon::{Daemon, metric, wait_for};
    use std::time::Duration;
    if !is_root() {
        eprintln!("skipped: the full-disk test mounts a small tmpfs, which needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("small"), 128) else {
        eprintln!("skipped: mounting a tmpfs was refused");
        return;
    };
    // Leave about 24 KiB free: some 70 events fit, then the disk is full.
    let filler = fs.dir.join("filler");
    std::fs::write(&filler, vec![0u8; 104 << 10]).unwrap();
    let flows = 400;
    let (capture, policy) = steady_violations(dir.path(), flows, 0.01);
    let events = fs.dir.join("events.jsonl");
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    let sink = "sink=\"events_file\"";
    wait_for(
        "a write refused for want of space",
        Duration::from_secs(20),
        || {
            let lost = metric(&daemon.metrics(), "segwatch_sink_events_lost_total", sink)?;
            (lost > 0.0).then_some(())
        },
    );
    std::fs::remove_file(&filler).unwrap();
    let (sent, lost) = wait_for(
        "every event written or lost",
        Duration::from_secs(30),
        || {
            let text = daemon.metrics();
            let sent = metric(&text, "segwatch_sink_events_sent_total", sink)?;
            let lost = metric(&text, "segwatch_sink_events_lost_total", sink)?;
            (sent + lost == f64::from(flows)).then_some((sent, lost))
        },
    );
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(text.ends_with('\n'), "the file ends with a whole line");
    let mut ids = std::collections::BTreeSet::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line that is not whole JSON ({e}): {line}"));
        assert!(ids.insert(event["flow_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len() as f64, sent, "every line written is counted once");
    assert!(lost > 0.0 && sent > 70.0, "sent {sent}, lost {lost}");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("Cannot write events").count(),
        1,
        "one error line for the streak: {stderr}"
    );
    drop(fs);
}

/// Issue 16.6: a UDP feed whose receiver is missing. Every other datagram
/// comes back refused (the ICMP error of the one before), which used to
/// log two lines per event; now each kind of line is written at most once
/// per 5 s, and a line written after others were left out says how many.
#[test]
fn a_missing_udp_receiver_does_not_flood_the_log() {
    use crate::daemon::{Daemon, metric, wait_for};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // 1,500 events over 7.5 s, so that the period comes round once.
    let flows = 1500;
    let (capture, policy) = steady_violations(dir.path(), flows, 0.005);
    // A port that nothing listens on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let syslog = format!("udp://127.0.0.1:{port}");
    let started = Instant::now();
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
        "--syslog",
        &syslog,
    ]);
    let lost = wait_for(
        "every event sent or refused",
        Duration::from_secs(30),
        || {
            let text = daemon.metrics();
            let sink = "sink=\"syslog0\"";
            let sent = metric(&text, "segwatch_sink_events_sent_total", sink)?;
            let lost = metric(&text, "segwatch_sink_events_lost_total", sink)?;
            (sent + lost == f64::from(flows)).then_some(lost)
        },
    );
    let elapsed = started.elapsed();
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(lost >= 300.0, "the receiver refused many datagrams: {lost}");
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Syslog UDP send failed"))
        .collect();
    let recoveries = stderr
        .lines()
        .filter(|l| l.contains("Syslog UDP sends work again"))
        .count();
    // One of each kind per started 5 s, and the stop.
    let most = elapsed.as_secs() as usize / 5 + 2;
    assert!(
        !failures.is_empty() && failures.len() <= most && recoveries <= most,
        "{} failure and {recoveries} recovery lines in {elapsed:?}: {stderr}",
        failures.len()
    );
    let noted: u64 = failures
        .iter()
        .filter_map(|l| {
            let (_, after) = l.split_once(" [")?;
            after.split(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert!(
        noted > 100 && noted < lost as u64,
        "a later line counts those left out ({noted} of {lost}): {stderr}"
    );
}

/// The peak resident memory of process `pid` (VmHWM), bytes.
fn peak_resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Issue 16.8: `run --pcap` reads a capture much larger than its working
/// set (here 200 MB of 1,456-byte frames of one flow) and hands the pages
/// it has read back to the kernel, as `replay` does: its peak resident
/// memory stays far below the file's size.
#[test]
fn run_pcap_does_not_keep_the_capture_resident() {
    use crate::daemon::{Daemon, metric, wait_for};
    use std::io::Write;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let frame = segwatch::synth::Pkt::udp("10.60.0.5:40000", "10.21.0.20:9000")
        .payload(&[0x5a; 1400])
        .build();
    let frames: u32 = 140_000;
    let path = dir.path().join("big.pcap");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // pcap header: magic, version 2.4, zone, accuracy, snap length, Ethernet.
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        out.write_all(&word.to_le_bytes()).unwrap();
    }
    let length = frame.len() as u32;
    for i in 0..frames {
        let record = [1_764_316_800 + i / 1000, (i % 1000) * 1000, length, length];
        for word in record {
            out.write_all(&word.to_le_bytes()).unwrap();
        }
        out.write_all(&frame).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 200_000_000, "{size}");
    let (_, policy) = steady_violations(dir.path(), 1, 1.0);
    let daemon = Daemon::start(&[
        "--pcap",
        path.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    wait_for("the whole capture read", Duration::from_secs(120), || {
        let packets = metric(&daemon.metrics(), "segwatch_packets_total", "")?;
        (packets == f64::from(frames)).then_some(())
    });
    let peak = peak_resident(daemon.child.id());
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        peak < size / 4,
        "peak resident memory {} MB for a {} MB capture",
        peak >> 20,
        size >> 20
    );
}

/// Issue 16.9: a stop while a TCP feed's receiver is away. With a spool,
/// what is queued goes to disk, the stop exits 0, and the next start sends
/// it first, in order, each once (to a plain TCP receiver here, reading
/// RFC 6587 octet-counted frames); without one, the stop exits 1 and says
/// how many events it lost.
#[test]
fn a_stop_spools_what_the_receiver_has_not_taken() {
    use crate::daemon::{Daemon, free_port, metric, wait_for};
    use std::io::Read;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let flows = 40;
    let (capture, policy) = steady_violations(dir.path(), flows, 0.001);
    let port = free_port();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nwatch = false\n[detection]\nenabled = false\n[spool]\ndir = \"{}\"\n\
             [[syslog]]\nurl = \"tcp://127.0.0.1:{port}\"\nformat = \"json\"\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let events = dir.path().join("events.jsonl");
    let start = |capture: &Path| {
        Daemon::start(&[
            "--config",
            config.to_str().unwrap(),
            "--pcap",
            capture.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ])
    };
    let sink = "sink=\"syslog0\"";
    let daemon = start(&capture);
    wait_for(
        "every event queued or spooled",
        Duration::from_secs(20),
        || {
            let text = daemon.metrics();
            let held = metric(&text, "segwatch_sink_queue_depth_events", sink)?
                + metric(&text, "segwatch_sink_spool_events", sink)?;
            (held == f64::from(flows)).then_some(())
        },
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("events in its spool"), "{stderr}");

    // The next start, with a policy that allows everything, and a receiver.
    let receiver = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let allowed = dir.path().join("allowed.toml");
    std::fs::write(&allowed, "[policy]\ndefault_action = \"allow\"\n").unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        allowed.to_str().unwrap(),
    ]);
    let (mut stream, _) = receiver.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut received = Vec::new();
    while received.len() < usize::from(flows) {
        let mut length = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() && byte[0] != b' ' {
            length.push(byte[0]);
        }
        let length: usize = String::from_utf8(length).unwrap().parse().unwrap();
        let mut message = vec![0u8; length];
        stream.read_exact(&mut message).unwrap();
        let message = String::from_utf8(message).unwrap();
        let json = &message[message.find('{').unwrap()..];
        let event: serde_json::Value = serde_json::from_str(json).unwrap();
        received.push(event["flow_id"].as_str().unwrap().to_string());
    }
    let written: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["flow_id"].to_string())
        .map(|id| id.trim_matches('"').to_string())
        .collect();
    assert_eq!(received, written, "each spooled event once, in order");
    wait_for("the spool emptied", Duration::from_secs(10), || {
        let left = metric(&daemon.metrics(), "segwatch_sink_spool_events", sink)?;
        (left == 0.0).then_some(())
    });
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // Without a spool, the same stop loses the queued events: exit 1.
    std::fs::write(
        &config,
        format!(
            "[policy]\nwatch = false\n[[syslog]]\nurl = \"tcp://127.0.0.1:{}\"\n",
            free_port()
        ),
    )
    .unwrap();
    let daemon = start(&capture);
    wait_for("every event queued", Duration::from_secs(20), || {
        let held = metric(&daemon.metrics(), "segwatch_sink_queue_depth_events", sink)?;
        (held == f64::from(flows)).then_some(())
    });
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Stopped with {flows} events neither delivered nor spooled"
        )),
        "{stderr}"
    );
}
