//! `segwatch learn --interface IF --duration D`: records live traffic's
//! headers for a while, for learning to replay.
//!
//! Learning judges the same traffic several times (contract section 2: the
//! services it learns change who initiates), so the packets must be kept.
//! Only their headers are: each frame is cut where its transport payload
//! begins, so no payload byte (clinical payloads carry patient data) is
//! ever stored. The headers go to a capture file in a private temporary
//! directory (mode 0700), removed when learning is done.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    // Set when a capture thread fails, so the others stop early too.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
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
        threads.push(std::thread::spawn(move || -> Result<u64, RecordError> {
            let file = std::fs::File::create(&path).map_err(RecordError::Write)?;
            let mut out = BufWriter::new(file);
            let mut wrote_header = false;
            let mut headers = Headers::default();
            let mut kept = 0u64;
            let mut error = None;
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let result = capture.dispatch(Duration::from_millis(100), |frame| {
                    if error.is_some() || frame.decode(&mut headers) != Outcome::Judge {
                        return;
                    }
                    let cut = (headers.payload_offset as usize).min(frame.data.len());
                    if !wrote_header {
                        error = write_header(&mut out, frame.link.0).err();
                        wrote_header = true;
                    }
                    let record =
                        write_record(&mut out, frame.ts_ns, &frame.data[..cut], frame.orig_len);
                    if let Err(e) = record {
                        error = Some(e);
                    }
                    kept += 1;
                });
                if let Err(e) = result {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.into());
                }
                if let Some(source) = error.take() {
                    stop.store(true, Ordering::Relaxed);
                    return Err(RecordError::File { path, source });
                }
            }
            if !wrote_header {
                write_header(&mut out, 1).map_err(RecordError::Write)?;
            }
            out.flush().map_err(RecordError::Write)?;
            Ok(kept)
        }));
    }
    tracing::info!(
        interfaces = %interfaces.join(","),
        seconds = duration.as_secs_f64(),
        "Capturing headers to learn from"
    );
    let mut total = 0;
    for thread in threads {
        total += thread.join().map_err(|_| RecordError::Thread)??;
    }
    tracing::info!(packets = total, "Capture done; learning");
    Ok((dir, files))
}

fn write_header(out: &mut impl Write, link: u32) -> std::io::Result<()> {
    out.write_all(&0xa1b2_3c4d_u32.to_le_bytes())?; // nanosecond pcap
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&(MAX_HEADERS as u32).to_le_bytes())?;
    out.write_all(&link.to_le_bytes())
}

fn write_record(
    out: &mut impl Write,
    ts_ns: u64,
    data: &[u8],
    orig_len: u32,
) -> std::io::Result<()> {
    out.write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
    out.write_all(&((ts_ns % 1_000_000_000) as u32).to_le_bytes())?;
    out.write_all(&(data.len() as u32).to_le_bytes())?;
    out.write_all(&orig_len.max(data.len() as u32).to_le_bytes())?;
    out.write_all(data)
}
