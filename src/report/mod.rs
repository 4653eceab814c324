//! The segmentation evidence report (`segwatch report`, issue 18): figures
//! over a period from the hourly evidence (of captures judged here, or of
//! the daemon's state directory), compared with a previous report, written
//! as one self-contained HTML page, `report.json` and CSV annexes, and as
//! PDF through a headless Chromium.
//!
//! The same inputs and `generated_at` give byte-identical HTML, JSON and
//! CSV: every list is in a fixed order and nothing reads the clock.

#![forbid(unsafe_code)]

mod annex;
mod crosswalk;
mod gather;
pub mod html;
pub mod model;
mod pdf;

pub use crosswalk::{CROSSWALK, CrosswalkRow};
pub use gather::{CaptureEvidence, evidence_from_captures};
pub use model::{Context, Input, Previous, Report};
pub use pdf::{find_chromium, print_pdf};

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a report could not be made: one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `--previous` file that is not a segwatch report.
    #[error("{}: not a segwatch report.json ({reason})", path.display())]
    Previous {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A capture that cannot be read.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    /// The replay's output could not be gathered.
    #[error(transparent)]
    Output(#[from] crate::replay::OutputError),
    /// An annex could not be written.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The annex.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// The PDF could not be made.
    #[error("{}: {reason}", path.display())]
    Pdf {
        /// The PDF to write.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A state file or period that cannot be used.
    #[error("{}: {reason}", path.display())]
    State {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ReportError {
    fn file(path: &Path, source: std::io::Error) -> ReportError {
        ReportError::File {
            path: path.to_owned(),
            source,
        }
    }
}

/// SHA-256 of a file's bytes (lowercase hex) and its size, read in 1 MiB
/// steps.
pub fn hash_file(path: &Path) -> Result<(String, u64), ReportError> {
    let mut file = std::fs::File::open(path).map_err(|e| ReportError::file(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ReportError::file(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((hex(&hasher.finalize()), size))
}

/// SHA-256 of bytes, lowercase hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// The input record of a file, hashed.
pub fn input(kind: &str, path: &Path) -> Result<Input, ReportError> {
    let (sha256, bytes) = hash_file(path)?;
    Ok(Input {
        kind: kind.into(),
        path: path.display().to_string(),
        bytes,
        sha256,
    })
}

/// Reads a previous `report.json` for the comparison.
pub fn read_previous(path: &Path) -> Result<Previous, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::file(path, e))?;
    let report: Report = serde_json::from_slice(&bytes).map_err(|e| ReportError::Previous {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if report.format != model::FORMAT {
        return Err(ReportError::Previous {
            path: path.to_owned(),
            reason: format!("format {:?}, expected {:?}", report.format, model::FORMAT),
        });
    }
    Ok(report.as_previous(hash_bytes(&bytes)))
}

/// The files of a report: `report.html`, `report.json` and the CSV annexes,
/// in a fixed order.
pub fn render(report: &Report) -> Result<Vec<(&'static str, Vec<u8>)>, ReportError> {
    let mut files = vec![("report.html", html::render(report).into_bytes())];
    // Compact: it is read by programs (and `--previous`); `jq .` shows it
    // indented.
    let mut json = serde_json::to_vec(report).map_err(|e| ReportError::Previous {
        path: PathBuf::from("report.json"),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    files.push(("report.json", json));
    let annexes = annex::annexes(report).map_err(|source| ReportError::Csv {
        path: PathBuf::from("annex"),
        source,
    })?;
    files.extend(annexes);
    Ok(files)
}

/// Writes the report's files into `dir` (made when missing); returns their
/// paths.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::file(dir, e))?;
    let mut written = Vec::new();
    for (name, bytes) in render(report)? {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| ReportError::file(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
