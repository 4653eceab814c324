//! Live-capture throughput on a veth pair between two network namespaces:
//! the packets/s that segwatch's AF_PACKET ring (1 and 2 workers), libpcap
//! (with the `pcap` feature) and a plain pnet datalink receiver take without
//! loss, and segwatch's CPU time per million packets.
//!
//! `cargo bench --bench live_capture` (as root; `--features pcap` adds the
//! libpcap row). One tcpreplay tops out near 200 k packets/s here, so the
//! sender is built in: an AF_PACKET socket sending 256 frames per
//! `sendmmsg` past the queueing discipline. On a veth pair the receiving
//! kernel's work (the copy into the capture's ring among it) runs in the
//! sender's system calls, on the sender's CPU; segwatch's workers read the
//! rings on the other cores.
//!
//! Environment: `SEGWATCH_BENCH_PACKETS` (the generated capture, default
//! 200,000 frames), `SEGWATCH_BENCH_REPEAT` (times each sender sends it,
//! default 5), `SEGWATCH_BENCH_SENDERS` (parallel senders, default 1),
//! `SEGWATCH_BENCH_RUNS` (default 3), `SEGWATCH_BENCH_SENDER=tcpreplay`
//! (tcpreplay processes instead, each sending the capture once; 3 by
//! default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic};

const SEGWATCH: &str = env!("CARGO_BIN_EXE_segwatch");

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inside") {
        inside(
            &args[i + 1],
            &args[i + 2],
            &args[i + 3],
            Path::new(&args[i + 4]),
        );
        return;
    }
    if args.iter().any(|a| a == "--pnet-receiver") {
        pnet_receiver(&args[args.len() - 1]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--sender") {
        let repeat = args[i + 3].parse().expect("repeat count");
        fast_sender(&args[i + 1], Path::new(&args[i + 2]), repeat);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs us
    // without it, and then the benchmark (namespaces, millions of packets,
    // a debug build) is skipped: only that it builds is checked.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("live_capture: run it with cargo bench");
        return;
    }
    let root = run(Command::new("id").arg("-u")).trim() == "0";
    let tools = Command::new("tcpreplay").arg("-V").output().is_ok();
    if !root || !tools {
        eprintln!("live_capture: skipped (needs root and tcpreplay)");
        return;
    }
    // Generate the capture: small packets of many short hospital flows.
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("live.pcap");
    let packets = env_number("SEGWATCH_BENCH_PACKETS", 200_000);
    let traffic = HospitalTraffic::new(HospitalOptions {
        packets,
        concurrent_flows: 5_000,
        violation_share: 0.02,
        seed: 3,
        start_ns: 1_800_000_000_000_000_000,
        gap_ns: 5_000,
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(&capture).unwrap());
    segwatch::synth::write_pcap(&mut file, segwatch::synth::Resolution::Micro, traffic).unwrap();
    file.flush().unwrap();
    drop(file);

    let (a, b, sender, receiver) = ("swbenchA", "swbenchB", "swbs0", "swbr0");
    let _ = Command::new("ip").args(["netns", "del", a]).status();
    let _ = Command::new("ip").args(["netns", "del", b]).status();
    run(Command::new("ip").args(["netns", "add", a]));
    run(Command::new("ip").args(["netns", "add", b]));
    run(Command::new("ip").args([
        "link", "add", sender, "type", "veth", "peer", "name", receiver,
    ]));
    run(Command::new("ip").args(["link", "set", sender, "netns", a]));
    run(Command::new("ip").args(["link", "set", receiver, "netns", b]));
    for (ns, dev) in [(a, sender), (b, receiver)] {
        // No IPv6 on the pair: link-up neighbour discovery stays out.
        let _ = Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{dev}.disable_ipv6=1"))
            .status();
        run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
    }
    let me = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", b])
        .arg(&me)
        .args(["--inside", a, sender, receiver])
        .arg(&capture)
        .status()
        .unwrap();
    let _ = Command::new("ip").args(["netns", "del", a]).status();
    let _ = Command::new("ip").args(["netns", "del", b]).status();
    assert!(status.success());
}

/// One measured run.
struct Sample {
    sent: u64,
    seconds: f64,
    received: u64,
    /// The kernel's drop count; `None` for pnet, which has none.
    dropped: Option<u64>,
    judged: u64,
    cpu_seconds: f64,
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 11 and 12
    // after the command name; clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Sends the capture's frames `repeat` times, as fast as the kernel takes
/// them: an AF_PACKET socket bound for sending only (protocol 0), past the
/// queueing discipline (PACKET_QDISC_BYPASS), 256 frames per `sendmmsg`.
/// Prints the frames sent and the seconds taken. On a veth pair the
/// receiving side's kernel work (the capture's copy into its ring among it)
/// runs on the sender's CPU, in its system call.
#[allow(unsafe_code)] // libc socket calls; every pointer outlives its call.
fn fast_sender(interface: &str, capture: &Path, repeat: u64) {
    const BATCH: usize = 256;
    const PACKET_QDISC_BYPASS: libc::c_int = 20;
    let file = segwatch::capture::CaptureFile::open(capture).unwrap();
    let mut reader = file.reader();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames.push(frame.data.to_vec());
    }
    let name = std::ffi::CString::new(interface).unwrap();
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index != 0, "no interface {interface}");
    // SAFETY: plain socket creation, checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = index as i32;
    // SAFETY: `address` is a sockaddr_ll of the size given.
    let bound = unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int of the size given. Best effort: without
    // the bypass, frames go through the qdisc.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let total = frames.len() as u64 * repeat;
    // SAFETY: all-zero iovecs and mmsghdrs are valid; pointers are set
    // before each call.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut messages: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut sent = 0u64;
    let started = Instant::now();
    while sent < total {
        let count = (total - sent).min(BATCH as u64) as usize;
        for k in 0..count {
            let frame = &frames[((sent + k as u64) % frames.len() as u64) as usize];
            iovecs[k].iov_base = frame.as_ptr() as *mut libc::c_void;
            iovecs[k].iov_len = frame.len();
            messages[k].msg_hdr.msg_iov = &mut iovecs[k];
            messages[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `count` messages, each pointing at one iovec over a live
        // frame.
        let done = unsafe { libc::sendmmsg(fd, messages.as_mut_ptr(), count as u32, 0) };
        if done < 0 {
            let error = std::io::Error::last_os_error();
            // The device queue is full: try again.
            assert!(
                matches!(error.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)),
                "sendmmsg: {error}"
            );
            continue;
        }
        sent += done as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    println!("{sent} {seconds}");
}

/// Which sender `send` uses (`SEGWATCH_BENCH_SENDER`).
fn tcpreplay_sender() -> bool {
    std::env::var("SEGWATCH_BENCH_SENDER").as_deref() == Ok("tcpreplay")
}

/// Sends the benchmark's traffic into `interface` from `namespace` with
/// `senders` processes at full speed: the built-in `sendmmsg` sender (each
/// sending the capture `SEGWATCH_BENCH_REPEAT` times), or with
/// `SEGWATCH_BENCH_SENDER=tcpreplay` tcpreplay (each sending it once).
/// Returns packets sent and the wall time.
fn send(namespace: &str, interface: &str, capture: &Path, senders: u64) -> (u64, f64) {
    if !tcpreplay_sender() {
        let repeat = env_number("SEGWATCH_BENCH_REPEAT", 5);
        let me = std::env::current_exe().unwrap();
        let children: Vec<Child> = (0..senders)
            .map(|_| {
                Command::new("ip")
                    .args(["netns", "exec", namespace])
                    .arg(&me)
                    .args(["--sender", interface])
                    .arg(capture)
                    .arg(repeat.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let (mut sent, mut seconds) = (0, 0.0f64);
        for child in children {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            sent += fields
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let took = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
            seconds = seconds.max(took);
        }
        return (sent, seconds);
    }
    let started = Instant::now();
    let children: Vec<Child> = (0..senders)
        .map(|_| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    namespace,
                    "tcpreplay",
                    "--topspeed",
                    "-i",
                    interface,
                ])
                .arg(capture)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sent = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // "Actual: 200000 packets (...) sent in ..."
        if let Some(rest) = text.split("Actual: ").nth(1) {
            sent += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (sent, started.elapsed().as_secs_f64())
}

fn measure_segwatch(
    args: &[&str],
    namespace: &str,
    sender: &str,
    receiver: &str,
    capture: &Path,
    senders: u64,
) -> Sample {
    let port = 19_500;
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/example-hospital.toml");
    let mut child = Command::new(SEGWATCH)
        .args(["run", "--interface", receiver, "--policy"])
        .arg(&policy)
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--config", "/dev/null"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "segwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_seconds(child.id());
    let (sent, seconds) = send(namespace, sender, capture, senders);
    // Wait for the last blocks and the kernel's final counters (read once a
    // second): the kernel has counted every frame sent (drops included),
    // and each was judged or dropped; or nothing moved for longer than the
    // counters' period.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut last, mut still_since) = ((0, 0, 0), Instant::now());
    let mut text;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        text = http_get(port, "/metrics").unwrap_or_default();
        let now = (
            metric(&text, "segwatch_capture_interface_received_packets_total"),
            metric(&text, "segwatch_capture_interface_dropped_packets_total"),
            metric(&text, "segwatch_packets_total"),
        );
        let (received, dropped, judged) = now;
        if received >= sent && judged + dropped >= received {
            break;
        }
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() > Duration::from_millis(2_500) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Sample {
        sent,
        seconds,
        received: metric(&text, "segwatch_capture_interface_received_packets_total"),
        dropped: Some(metric(
            &text,
            "segwatch_capture_interface_dropped_packets_total",
        )),
        judged: metric(&text, "segwatch_packets_total"),
        cpu_seconds: cpu,
    }
}

fn measure_pnet(
    namespace: &str,
    sender: &str,
    receiver: &str,
    capture: &Path,
    senders: u64,
) -> Sample {
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new(&me)
        .args(["--pnet-receiver", receiver])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(child.id());
    let (sent, seconds) = send(namespace, sender, capture, senders);
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    let received = out.trim().parse().unwrap_or(0);
    Sample {
        sent,
        seconds,
        received,
        dropped: None,
        judged: received,
        cpu_seconds: cpu,
    }
}

/// A pnet datalink receiver: counts packets until 2 s pass without one.
fn pnet_receiver(interface: &str) {
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .expect("interface");
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let Ok(pnet_datalink::Channel::Ethernet(_, mut rx)) =
        pnet_datalink::channel(&interface, config)
    else {
        panic!("pnet channel");
    };
    let mut count = 0u64;
    let mut last = Instant::now();
    loop {
        match rx.next() {
            Ok(_) => {
                count += 1;
                last = Instant::now();
            }
            Err(_) if count > 0 && last.elapsed() > Duration::from_secs(2) => break,
            Err(_) if last.elapsed() > Duration::from_secs(60) => break,
            Err(_) => {}
        }
    }
    println!("{count}");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs inside the capture namespace.
fn inside(sender_ns: &str, sender: &str, receiver: &str, capture: &Path) {
    let tcpreplay = tcpreplay_sender();
    let senders = env_number("SEGWATCH_BENCH_SENDERS", if tcpreplay { 3 } else { 1 });
    let runs = env_number("SEGWATCH_BENCH_RUNS", 3);
    let mut rows: Vec<(&str, Vec<Sample>)> = vec![
        ("pnet datalink (recvfrom, no ring)", Vec::new()),
        ("segwatch af-packet, 1 worker", Vec::new()),
        ("segwatch af-packet, 2 workers", Vec::new()),
    ];
    if cfg!(feature = "pcap") {
        rows.push(("segwatch pcap, 1 worker", Vec::new()));
    }
    for _ in 0..runs {
        for (name, samples) in rows.iter_mut() {
            let sample = match *name {
                "pnet datalink (recvfrom, no ring)" => {
                    measure_pnet(sender_ns, sender, receiver, capture, senders)
                }
                "segwatch af-packet, 1 worker" => measure_segwatch(
                    &["--workers", "1"],
                    sender_ns,
                    sender,
                    receiver,
                    capture,
                    senders,
                ),
                "segwatch af-packet, 2 workers" => measure_segwatch(
                    &["--workers", "2"],
                    sender_ns,
                    sender,
                    receiver,
                    capture,
                    senders,
                ),
                _ => measure_segwatch(
                    &["--backend", "pcap", "--workers", "1"],
                    sender_ns,
                    sender,
                    receiver,
                    capture,
                    senders,
                ),
            };
            samples.push(sample);
        }
    }
    let sender = if tcpreplay { "tcpreplay" } else { "sendmmsg" };
    println!(
        "\n{senders} {sender} sender(s) at full speed, {runs} runs, medians\n\n\
         | receiver | offered packets/s | judged | kernel drops | loss | CPU s per M packets |\n\
         |---|---|---|---|---|---|"
    );
    for (name, samples) in &rows {
        let rate = median(samples.iter().map(|s| s.sent as f64 / s.seconds).collect());
        let received = median(samples.iter().map(|s| s.judged as f64).collect());
        let sent = median(samples.iter().map(|s| s.sent as f64).collect());
        let dropped = if samples.iter().all(|s| s.dropped.is_some()) {
            let dropped = median(
                samples
                    .iter()
                    .map(|s| s.dropped.unwrap_or(0) as f64)
                    .collect(),
            );
            format!("{dropped:.0}")
        } else {
            "-".to_string()
        };
        let loss = median(
            samples
                .iter()
                .map(|s| 1.0 - s.judged as f64 / s.sent.max(1) as f64)
                .collect(),
        );
        let cpu = median(
            samples
                .iter()
                .map(|s| s.cpu_seconds / (s.received.max(s.judged).max(1) as f64 / 1e6))
                .collect(),
        );
        println!(
            "| {name} | {:.0} k | {received:.0} of {sent:.0} | {dropped} | {:.2}% | {cpu:.2} |",
            rate / 1000.0,
            loss.max(0.0) * 100.0
        );
    }
}
