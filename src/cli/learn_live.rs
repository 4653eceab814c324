//! `segwatch learn --interface IF --duration D`: records live traffic's
//! headers for a while, for learning to replay.
//!
//! Learning judges the same traffic several times (contract section 2: the
//! services it learns change who initiates), so the packets must be kept.
//! Only their headers are: each frame is cut where its transport payload
//! begins, so no payload byte (clinical payloads carry patient data) is
//! ever stored. The headers go to a capture file (nanosecond pcap, written
//! by pcap-file) in a private temporary directory (mode 0700), removed when
//! learning is done.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use segwatch::capture::live::{CaptureOptions, LiveError, open_interface};
use segwatch::wire::{Headers, Outcome};

/// Headers kept per frame at most: Ethernet, two VLAN tags, IPv6 with
/// extension headers and TCP with options fit.
const MAX_HEADERS: usize = 256;

/// Why live traffic could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A capture that cannot be opened or read.
    #[error(transparent)]
    Capture(#[from] LiveError),
    /// A file of the recording that cannot be created or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The recording's file could not be written.
    #[error("{0}")]
    Write(#[source] std::io::Error),
    /// A capture thread panicked.
    #[error("a capture thread failed")]
    Thread,
}

/// A private directory removed on drop.
pub struct PrivateDir(pub PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Watches `interfaces` for `duration` (or until SIGINT/SIGTERM) and writes
/// one headers-only pcap per interface into a private directory.
pub fn record(
    interfaces: &[String],
    backend: &str,
    duration: Duration,
) -> Result<(PrivateDir, Vec<PathBuf>), RecordError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "segwatch-learn-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| RecordError::File {
            path: dir.clone(),
            source,
        })?;
    let dir = PrivateDir(dir);
    // Set when a capture thread fails, so the others stop early too, and by
    // SIGINT or SIGTERM: the recording ends early, learning goes on from what
    // was kept, and the private directory is removed as after a full run.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let interrupts = Interrupts::register(&stop).map_err(RecordError::Write)?;
    // Frames kept so far, over every interface, for the progress line.
    let kept_so_far = std::sync::Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut files = Vec::new();
    for name in interfaces {
        let options = CaptureOptions {
            interface: name.clone(),
            snaplen: MAX_HEADERS as u32,
            buffer_bytes: 16 << 20,
            promiscuous: true,
            bpf: None,
        };
        let mut captures = open_interface(&options, backend, 1)?;
        let Some(mut capture) = captures.pop() else {
            continue;
        };
        let path = dir.0.join(format!("{name}.pcap"));
        files.push(path.clone());
        let stop = stop.clone();
        let kept_so_far = kept_so_far.clone();
        threads.push(std::thread::spawn(move || -> Result<u64, RecordError> {
            let file = File::create(&path).map_err(RecordError::Write)?;
            let mut out = Recording::Unstarted(BufWriter::new(file));
            let mut headers = Headers::default();
            let mut kept = 0u64;
            let mut counted = 0u64;
            let mut error = None;
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let result = capture.dispatch(Duration::from_millis(100), |frame| {
                    if error.is_some() || frame.decode(&mut headers) != Outcome::Judge {
                        return;
                    }
                    let cut = (headers.payload_offset as usize)
                        .min(frame.data.len())
                        .min(MAX_HEADERS);
                    let headers_only = &frame.data[..cut];
                    // A cut frame was longer on the wire than what is kept.
                    let orig_len = frame.orig_len.max(cut as u32);
                    let packet =
                        PcapPacket::new(Duration::from_nanos(frame.ts_ns), orig_len, headers_only);
                    match out.writer(frame.link.0) {
                        Ok(writer) => match writer.write_packet(&packet) {
                            Ok(_) => kept += 1,
                            Err(e) => error = Some(io_error(e)),
                        },
                        Err(e) => error = Some(e),
                    }
                });
                if let Err(e) = result {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.into());
                }
                kept_so_far.fetch_add(kept - counted, Ordering::Relaxed);
                counted = kept;
                if let Some(source) = error.take() {
                    stop.store(true, Ordering::Relaxed);
                    return Err(RecordError::File { path, source });
                }
            }
            out.finish().map_err(RecordError::Write)?;
            Ok(kept)
        }));
    }
    tracing::info!(
        interfaces = %interfaces.join(","),
        seconds = duration.as_secs_f64(),
        "Capturing headers to learn from"
    );
    let mut progress = Progress::new(interfaces, duration);
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        progress.show(kept_so_far.load(Ordering::Relaxed));
    }
    progress.done(kept_so_far.load(Ordering::Relaxed));
    if interrupts.recording_done() {
        tracing::info!("Interrupted: learning from what was recorded");
    }
    let mut total = 0;
    for thread in threads {
        total += thread.join().map_err(|_| RecordError::Thread)??;
    }
    tracing::info!(packets = total, "Capture done; learning");
    Ok((dir, files))
}

/// SIGINT and SIGTERM while a recording runs: the first of them ends the
/// recording (it sets `stop` and `interrupted`); once `interrupted` is set,
/// the next one ends the process with the signal's usual status, so an
/// impatient operator is never stuck and learning stays interruptible.
struct Interrupts {
    interrupted: std::sync::Arc<AtomicBool>,
}

impl Interrupts {
    fn register(stop: &std::sync::Arc<AtomicBool>) -> std::io::Result<Interrupts> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let interrupted = std::sync::Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // The conditional shutdown first: it sees the flag as the
            // previous signal left it.
            flag::register_conditional_shutdown(signal, 128 + signal, interrupted.clone())?;
            flag::register(signal, interrupted.clone())?;
            flag::register(signal, stop.clone())?;
        }
        Ok(Interrupts { interrupted })
    }

    /// True when a signal ended the recording; from here on, the next
    /// signal ends the process (signal-hook cannot give the default action
    /// back, so it is emulated by exiting).
    fn recording_done(self) -> bool {
        self.interrupted.swap(true, Ordering::Relaxed)
    }
}

/// The progress of a recording on standard error: the line rewritten every
/// second on a terminal; otherwise (a CI log, a file) a line every tenth of
/// the duration, at least 1 s and at most 10 s apart.
struct Progress {
    what: String,
    duration: Duration,
    started: Instant,
    every: Duration,
    next: Duration,
    terminal: bool,
}

impl Progress {
    fn new(interfaces: &[String], duration: Duration) -> Progress {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let every = if terminal {
            Duration::from_secs(1)
        } else {
            (duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
        };
        Progress {
            what: interfaces.join(", "),
            duration,
            started: Instant::now(),
            every,
            next: every,
            terminal,
        }
    }

    fn line(&self, elapsed: Duration, kept: u64) -> String {
        let whole = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        format!(
            "segwatch learn: recording {}: {} of {}, {kept} packet{} kept",
            self.what,
            whole(elapsed.min(self.duration)),
            whole(self.duration),
            if kept == 1 { "" } else { "s" }
        )
    }

    /// Shows the progress when it is due.
    fn show(&mut self, kept: u64) {
        let elapsed = self.started.elapsed();
        if elapsed < self.next {
            return;
        }
        self.next = elapsed + self.every;
        let line = self.line(elapsed, kept);
        if self.terminal {
            // Rewritten in place: no newline until the last line.
            let _ = std::io::stderr().write_all(format!("\r\x1b[K{line}").as_bytes());
        } else {
            super::stderr_line(line);
        }
    }

    /// The last line: what was recorded, and that learning starts.
    fn done(&self, kept: u64) {
        let line = self.line(self.started.elapsed(), kept);
        let clear = if self.terminal { "\r\x1b[K" } else { "" };
        super::stderr_line(format_args!("{clear}{line}; done, learning"));
    }
}

/// One interface's recording: a pcap file whose header names the link
/// type of the first frame kept (Ethernet when none was).
enum Recording {
    /// No frame yet: the header waits for its link type.
    Unstarted(BufWriter<File>),
    /// The header is written.
    Started(PcapWriter<BufWriter<File>>),
    /// Writing the header failed.
    Broken,
}

impl Recording {
    /// The writer, writing the header first with `link` when no frame was.
    fn writer(&mut self, link: u32) -> std::io::Result<&mut PcapWriter<BufWriter<File>>> {
        *self = match std::mem::replace(self, Recording::Broken) {
            Recording::Unstarted(file) => {
                Recording::Started(PcapWriter::with_header(file, header(link)).map_err(io_error)?)
            }
            other => other,
        };
        match self {
            Recording::Started(writer) => Ok(writer),
            Recording::Unstarted(_) | Recording::Broken => Err(std::io::Error::other(
                "the capture file's header was not written",
            )),
        }
    }

    /// Writes what is buffered (and the header of an empty recording).
    fn finish(mut self) -> std::io::Result<()> {
        self.writer(DataLink::ETHERNET.into())?;
        match self {
            Recording::Started(writer) => writer.into_writer().flush(),
            Recording::Unstarted(_) | Recording::Broken => Err(std::io::Error::other(
                "the capture file's header was not written",
            )),
        }
    }
}

/// A nanosecond little-endian pcap header for frames of `link`, cut to
/// [`MAX_HEADERS`].
fn header(link: u32) -> PcapHeader {
    PcapHeader {
        snaplen: MAX_HEADERS as u32,
        datalink: DataLink::from(link),
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    }
}

/// pcap-file's error as the I/O error it usually wraps.
fn io_error(error: PcapError) -> std::io::Error {
    match error {
        PcapError::IoError(error) => error,
        other => std::io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header and records are those the hand-written writer produced:
    /// nanosecond magic, version 2.4, the snap length, the first frame's
    /// link type, and records with the kept length and the wire length.
    #[test]
    fn a_recording_is_a_nanosecond_pcap_of_the_first_frames_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lo.pcap");
        let mut recording = Recording::Unstarted(BufWriter::new(File::create(&path).unwrap()));
        let frame = [0xaa_u8; 54];
        recording
            .writer(113)
            .unwrap()
            .write_packet(&PcapPacket::new(
                Duration::from_nanos(1_700_000_000_123_456_789),
                1514,
                &frame,
            ))
            .unwrap();
        recording.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&0xa1b2_3c4d_u32.to_le_bytes());
        expected.extend_from_slice(&2u16.to_le_bytes());
        expected.extend_from_slice(&4u16.to_le_bytes());
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&256u32.to_le_bytes());
        expected.extend_from_slice(&113u32.to_le_bytes());
        expected.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        expected.extend_from_slice(&123_456_789u32.to_le_bytes());
        expected.extend_from_slice(&54u32.to_le_bytes());
        expected.extend_from_slice(&1514u32.to_le_bytes());
        expected.extend_from_slice(&frame);
        assert_eq!(bytes, expected);
        let read = segwatch::capture::CaptureFile::open(&path).unwrap();
        let frames: Vec<_> = read.reader().collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_789);
        assert_eq!((frames[0].orig_len, frames[0].data.len()), (1514, 54));
    }

    #[test]
    fn an_empty_recording_is_an_ethernet_pcap_without_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idle.pcap");
        Recording::Unstarted(BufWriter::new(File::create(&path).unwrap()))
            .finish()
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24);
        assert_eq!(bytes[20..24], 1u32.to_le_bytes());
    }
}
