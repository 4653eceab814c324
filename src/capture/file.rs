//! Opening capture files and iterating their records. (placeholder: being written)

use std::path::{Path, PathBuf};

use super::{CaptureError, Frame};
use crate::wire::LinkType;

/// The container format of a capture file, read from its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap {
        /// True when timestamps carry nanoseconds (magic 0xa1b23c4d).
        nanosecond: bool,
        /// True when the file was written big-endian.
        big_endian: bool,
        /// The one link type of every record.
        link: LinkType,
    },
    /// pcapng: each interface has its own link type and timestamp resolution.
    PcapNg,
}

/// Where a capture file was cut inside its last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset at which the incomplete record starts.
    pub offset: u64,
    /// Complete frames read before it.
    pub frames_before: u64,
}

/// A capture file, memory-mapped.
#[derive(Debug)]
pub struct CaptureFile {
    path: PathBuf,
}

impl CaptureFile {
    /// Opens and maps `path` and reads its file header.
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        Err(CaptureError::NotACapture {
            path: path.to_owned(),
            detail: "unimplemented".into(),
        })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader over the file's frames, from the first.
    pub fn reader(&self) -> FrameReader<'_> {
        FrameReader { _file: self }
    }
}

/// Iterates the frames of a [`CaptureFile`].
#[derive(Debug)]
pub struct FrameReader<'a> {
    _file: &'a CaptureFile,
}

impl<'a> FrameReader<'a> {
    /// The next frame; `Ok(None)` at the end of the file, or where the file
    /// was cut inside its last record (then [`FrameReader::truncation`] says
    /// where).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'a>>, CaptureError> {
        Ok(None)
    }

    /// Where the file was cut inside its last record, once the reader got there.
    pub fn truncation(&self) -> Option<Truncation> {
        None
    }
}
