//! Opening capture files and iterating their records.
//!
//! [`CaptureFile::open`] memory-maps the file, decides the format by the
//! magic number and checks the file header. [`FrameReader`] then walks the
//! records; every [`Frame`] borrows its bytes from the mapping.
//!
//! Standard input (`-`) and anything else that is not a regular file (a
//! pipe, a FIFO, a character device) cannot be mapped: it is read to its end
//! into an unlinked temporary file, which is then mapped like any capture,
//! so the rest of the pipeline reads it the same way. A pipe is therefore
//! read whole before its first frame is judged.
//!
//! A mapped file that shrinks while it is read (truncated or rewritten by
//! another program) does not kill the process: see [`mapping`]. The reader
//! ends with [`CaptureError::Shrank`] after the frames read intact.
//!
//! The record walkers live in the submodules: [`pcap`] for classic libpcap
//! files, [`pcapng`] for pcapng. They report a [`Step`] and know nothing of
//! the path or the frame count, which this module adds.

mod mapping;
mod pcap;
mod pcapng;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mapping::Mapping;

use super::{CaptureError, Frame};
use crate::wire::LinkType;

/// Magic number of classic pcap with microsecond timestamps, as written by a
/// host of the file's byte order.
const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number of classic pcap with nanosecond timestamps.
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Magic number of the "modified" (Kuznetzov) pcap format, which has a longer
/// record header: recognised only to say that it is not supported.
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
/// Block type of a pcapng section header block, the first bytes of a pcapng
/// file (the same in both byte orders).
const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;

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

/// The bytes of a capture: a read-only mapping of a regular file (or of the
/// temporary file a pipe was read into), or bytes held in memory.
enum Bytes {
    Mapped(Mapping),
    Read(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map.bytes(),
            Bytes::Read(vec) => vec,
        }
    }

    fn mapping(&self) -> Option<&Mapping> {
        match self {
            Bytes::Mapped(map) => Some(map),
            Bytes::Read(_) => None,
        }
    }
}

/// A capture file, memory-mapped.
pub struct CaptureFile {
    path: PathBuf,
    bytes: Bytes,
    format: CaptureFormat,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("bytes", &self.byte_len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl CaptureFile {
    /// Where `bytes`, a slice of this capture (a frame's data), starts in it.
    pub fn offset_of(&self, bytes: &[u8]) -> Option<usize> {
        let all = self.bytes.as_slice();
        let offset = (bytes.as_ptr() as usize).checked_sub(all.as_ptr() as usize)?;
        (offset < all.len()).then_some(offset)
    }

    /// Lets the pages of `range` leave this process's memory: a replay that
    /// is done with them says so, so that its resident memory does not grow
    /// with the capture, and so that unmapping the file at exit has less to
    /// undo. The pages stay in the kernel's page cache, and reading them
    /// again reads them back, unchanged. Does nothing for a capture that is
    /// not memory-mapped. Only whole pages inside `range` are released.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Bytes::Mapped(mapping) = &self.bytes else {
            return;
        };
        let map = mapping.map();
        let page = crate::sys::page_size();
        let base = map.as_ptr() as usize;
        // Whole pages only: a page that `range` shares with bytes still in
        // use is kept.
        let start = (base + range.start).next_multiple_of(page) - base;
        let end = ((base + range.end.min(map.len())) & !(page - 1)).saturating_sub(base);
        if start >= end {
            return;
        }
        #[cfg(unix)]
        // SAFETY: `unchecked_advise_range` is unsafe because MADV_DONTNEED
        // on a private mapping throws away the process's changes to its
        // pages. This mapping is shared and read-only (`Mmap::map`): there
        // are no changes, and after the advice the pages read back from the
        // page cache exactly as they were, so every frame borrowed from them
        // stays valid. (A file rewritten or truncated by another process
        // meanwhile is the caveat `mapping` handles.)
        #[allow(unsafe_code)]
        let released = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
        // Only advice: if the kernel declines, the pages stay mapped.
        #[cfg(unix)]
        let _ = released;
    }

    /// Opens and maps `path` and reads its file header.
    ///
    /// A regular file is memory-mapped. `-` is standard input; it, and
    /// anything else that is not a regular file (a pipe, a FIFO,
    /// `/dev/stdin` on a pipe), is read to its end into an unlinked
    /// temporary file that is then mapped. The format is decided by the
    /// magic number, never by the file name.
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let bytes = load(path)?;
        let format = check_header(path, bytes.as_slice())?;
        Ok(CaptureFile {
            path: path.to_owned(),
            bytes,
            format,
        })
    }

    /// A capture held in memory, e.g. one generated for a test or a
    /// benchmark, or read from a source that is not a file. `path` only names
    /// it in error messages.
    pub fn from_bytes(
        path: impl Into<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<CaptureFile, CaptureError> {
        let path = path.into();
        let format = check_header(&path, &bytes)?;
        Ok(CaptureFile {
            path,
            bytes: Bytes::Read(bytes),
            format,
        })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format, from the magic number.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Size of the capture in bytes.
    pub fn byte_len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// True when the file is memory-mapped, false when it was read into
    /// memory (a pipe, another file that cannot be mapped, or
    /// [`CaptureFile::from_bytes`]).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// A reader over the file's frames, from the first.
    pub fn reader(&self) -> FrameReader<'_> {
        let bytes = self.bytes.as_slice();
        let records = match self.format {
            CaptureFormat::Pcap {
                nanosecond,
                big_endian,
                link,
            } => Records::Pcap(pcap::Records::new(bytes, nanosecond, big_endian, link)),
            CaptureFormat::PcapNg => match pcapng::Records::new(bytes) {
                Ok(records) => Records::PcapNg(Box::new(records)),
                // `open` parsed the same section header, so this cannot
                // happen; report it rather than panic.
                Err(corrupt) => Records::Failed(Some(corrupt)),
            },
        };
        FrameReader {
            path: &self.path,
            mapping: self.bytes.mapping(),
            records,
            frames: 0,
            done: false,
            truncation: None,
        }
    }
}

/// The path that names standard input.
const STDIN: &str = "-";

/// Reads the whole of `path`: maps a regular file; reads anything else to
/// its end into an unlinked temporary file (in `TMPDIR`: nothing else can
/// reach it, so it cannot shrink under the reader, and the page cache holds
/// it rather than the heap) and maps that.
fn load(path: &Path) -> Result<Bytes, CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    };
    let empty = || CaptureError::NotACapture {
        path: path.to_owned(),
        detail: "empty file".into(),
    };
    let mut file = if path.as_os_str() == STDIN {
        stdin_file().map_err(io)?
    } else {
        File::open(path).map_err(io)?
    };
    if !file.metadata().map_err(io)?.is_file() {
        match tempfile::tempfile() {
            Ok(mut spooled) => {
                std::io::copy(&mut file, &mut spooled).map_err(io)?;
                file = spooled;
            }
            // No writable temporary directory: read it into memory.
            Err(_) => return read_whole(&mut file, path),
        }
    }
    // An empty file cannot be mapped (mmap of length 0 fails).
    if file.metadata().map_err(io)?.len() == 0 {
        return Err(empty());
    }
    match Mapping::new(file) {
        Ok(map) => Ok(Bytes::Mapped(map)),
        // Every guarded mapping slot is taken, or the file system cannot map
        // files: read it into memory instead.
        Err(mut file) => read_whole(&mut file, path),
    }
}

/// Reads what is left of `file` into memory.
fn read_whole(file: &mut File, path: &Path) -> Result<Bytes, CaptureError> {
    let mut vec = Vec::new();
    file.read_to_end(&mut vec)
        .map_err(|source| CaptureError::Io {
            path: path.to_owned(),
            source,
        })?;
    if vec.is_empty() {
        return Err(CaptureError::NotACapture {
            path: path.to_owned(),
            detail: "empty file".into(),
        });
    }
    Ok(Bytes::Read(vec))
}

/// Standard input as a file of its own (a duplicate of descriptor 0).
fn stdin_file() -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reading a capture from standard input needs a Unix system",
        ))
    }
}

/// Decides the format from the magic number and checks the file header.
fn check_header(path: &Path, bytes: &[u8]) -> Result<CaptureFormat, CaptureError> {
    let not_a_capture = |detail: String| CaptureError::NotACapture {
        path: path.to_owned(),
        detail,
    };
    let Some(&magic) = bytes.first_chunk::<4>() else {
        return Err(not_a_capture(match bytes.len() {
            0 => "empty file".into(),
            n => format!("file too short for a magic number: {n} bytes"),
        }));
    };
    let (be, le) = (u32::from_be_bytes(magic), u32::from_le_bytes(magic));
    let pcap = |nanosecond, big_endian| -> Result<CaptureFormat, CaptureError> {
        let link = pcap::read_header(bytes).map_err(|detail| CaptureError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            detail,
        })?;
        Ok(CaptureFormat::Pcap {
            nanosecond,
            big_endian,
            link,
        })
    };
    match (be, le) {
        (PCAP_MAGIC_MICROS, _) => pcap(false, true),
        (_, PCAP_MAGIC_MICROS) => pcap(false, false),
        (PCAP_MAGIC_NANOS, _) => pcap(true, true),
        (_, PCAP_MAGIC_NANOS) => pcap(true, false),
        (PCAPNG_MAGIC, _) => match pcapng::Records::new(bytes) {
            Ok(_) => Ok(CaptureFormat::PcapNg),
            Err(corrupt) => Err(corrupt.into_error(path)),
        },
        (PCAP_MAGIC_MODIFIED, _) | (_, PCAP_MAGIC_MODIFIED) => Err(not_a_capture(format!(
            "starts with {be:#010x}, the modified (kuznetzov) pcap format, which is not supported"
        ))),
        _ => Err(not_a_capture(format!("starts with {be:#010x}"))),
    }
}

/// What a record walker found next.
enum Step<'a> {
    /// A frame; its bytes borrow from the capture.
    Frame(Frame<'a>),
    /// The clean end of the file.
    End,
    /// The file ends inside the record starting at this byte offset.
    Truncated(u64),
    /// A structurally impossible record.
    Corrupt(Corrupt),
}

/// A corrupt header or record, before the path is attached.
#[derive(Debug)]
struct Corrupt {
    offset: u64,
    detail: String,
}

impl Corrupt {
    fn new(offset: u64, detail: impl Into<String>) -> Corrupt {
        Corrupt {
            offset,
            detail: detail.into(),
        }
    }

    fn into_error(self, path: &Path) -> CaptureError {
        CaptureError::Corrupt {
            path: path.to_owned(),
            offset: self.offset,
            detail: self.detail,
        }
    }
}

/// The record walker of each format.
enum Records<'a> {
    Pcap(pcap::Records<'a>),
    // Boxed: the pcapng parser state is much larger than the pcap one, and
    // the pcap variant is the hot one.
    PcapNg(Box<pcapng::Records<'a>>),
    /// The reader could not even start; reported once by `next_frame`.
    Failed(Option<Corrupt>),
}

/// Iterates the frames of a [`CaptureFile`].
///
/// Also an [`Iterator`] of `Result<Frame, CaptureError>` that ends at the end
/// of the file, at a truncation, or after the first error.
pub struct FrameReader<'a> {
    path: &'a Path,
    /// The mapping read, to notice it losing bytes (see [`mapping`]).
    mapping: Option<&'a Mapping>,
    records: Records<'a>,
    /// Frames returned so far.
    frames: u64,
    /// Set at the end of the file, at a truncation or after an error: from
    /// then on `next_frame` returns `Ok(None)`.
    done: bool,
    truncation: Option<Truncation>,
}

impl fmt::Debug for FrameReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .field("position", &self.position())
            .field("done", &self.done)
            .field("truncation", &self.truncation)
            .finish()
    }
}

impl<'a> FrameReader<'a> {
    /// The next frame; `Ok(None)` at the end of the file, or where the file
    /// was cut inside its last record (then [`FrameReader::truncation`] says
    /// where).
    ///
    /// After an error, or once the end is reached, every later call returns
    /// `Ok(None)`.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'a>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let step = match &mut self.records {
            Records::Pcap(records) => records.next(),
            Records::PcapNg(records) => records.next(),
            Records::Failed(corrupt) => match corrupt.take() {
                Some(corrupt) => Step::Corrupt(corrupt),
                None => Step::End,
            },
        };
        match step {
            Step::Frame(frame) => {
                // A zero-length record is what the zeroed tail of a shrunk
                // file's last page reads as: ask the file system then (real
                // captures rarely hold one).
                if (self.lost_pages() || (frame.data.is_empty() && self.mapping.is_some()))
                    && self
                        .lost_from()
                        .is_some_and(|lost| self.end_of(&frame) > lost)
                {
                    return Err(self.shrank(&mut Vec::new(), 0));
                }
                self.frames += 1;
                Ok(Some(frame))
            }
            other => self.finish(other),
        }
    }

    /// True once the mapping lost pages to the file shrinking.
    #[inline]
    fn lost_pages(&self) -> bool {
        self.mapping.is_some_and(Mapping::lost_pages)
    }

    /// Offset from which the file's bytes were lost (see
    /// [`Mapping::lost_from`]).
    fn lost_from(&self) -> Option<usize> {
        self.mapping?.lost_from()
    }

    /// Offset of the end of `frame`'s bytes in the file.
    fn end_of(&self, frame: &Frame<'_>) -> usize {
        let base = self.mapping.map_or(0, |m| m.bytes().as_ptr() as usize);
        (frame.data.as_ptr() as usize - base) + frame.data.len()
    }

    /// Ends reading because the file shrank: drops from `batch` (from
    /// index `from` on) the frames whose bytes reach into what was lost,
    /// and everything after them.
    #[cold]
    fn shrank(&mut self, batch: &mut Vec<Frame<'a>>, from: usize) -> CaptureError {
        if let Some(lost) = self.lost_from() {
            let keep = batch[from..]
                .iter()
                .position(|frame| self.end_of(frame) > lost)
                .map_or(batch.len(), |at| from + at);
            self.frames -= (batch.len() - keep) as u64;
            batch.truncate(keep);
        }
        self.done = true;
        self.truncation = None;
        CaptureError::Shrank {
            path: self.path.to_owned(),
        }
    }

    /// Appends frames to `batch` until it holds `max` of them or the file
    /// ends; `Ok(false)` once the file has ended (cleanly or at a
    /// truncation, see [`FrameReader::truncation`]). The same frames as
    /// [`FrameReader::next_frame`] called in a loop, in a tight loop over
    /// the records of a classic pcap file.
    pub fn read_into(
        &mut self,
        batch: &mut Vec<Frame<'a>>,
        max: usize,
    ) -> Result<bool, CaptureError> {
        if self.done {
            return Ok(false);
        }
        let from = batch.len();
        let read = self.read_into_unchecked(batch, max);
        // Once per batch (one `fstat`): the frames read may reach into
        // bytes that the file lost while they were read, in lost pages or
        // in the zeroed tail of its new last page.
        if self.mapping.is_some()
            && (matches!(read, Err(CaptureError::Shrank { .. })) || self.lost_from().is_some())
        {
            return Err(self.shrank(batch, from));
        }
        read
    }

    #[inline]
    fn read_into_unchecked(
        &mut self,
        batch: &mut Vec<Frame<'a>>,
        max: usize,
    ) -> Result<bool, CaptureError> {
        if matches!(self.records, Records::Pcap(_)) {
            while batch.len() < max && !self.done {
                let before = batch.len();
                let Records::Pcap(records) = &mut self.records else {
                    break;
                };
                let step = records.fill(batch, max);
                self.frames += (batch.len() - before) as u64;
                match step {
                    None => {}
                    Some(Step::Frame(frame)) => {
                        self.frames += 1;
                        batch.push(frame);
                    }
                    Some(other) => {
                        self.finish(other)?;
                    }
                }
            }
            return Ok(!self.done);
        }
        while batch.len() < max {
            match self.next_frame()? {
                Some(frame) => batch.push(frame),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Ends iteration on anything but a frame.
    #[cold]
    fn finish(&mut self, step: Step<'a>) -> Result<Option<Frame<'a>>, CaptureError> {
        if self.lost_from().is_some() {
            // Whatever the walker made of the lost bytes (zeros), the file
            // shrank.
            return Err(self.shrank(&mut Vec::new(), 0));
        }
        self.done = true;
        match step {
            Step::Frame(frame) => Ok(Some(frame)),
            Step::End => Ok(None),
            Step::Truncated(offset) => {
                self.truncation = Some(Truncation {
                    offset,
                    frames_before: self.frames,
                });
                Ok(None)
            }
            Step::Corrupt(corrupt) => Err(corrupt.into_error(self.path)),
        }
    }

    /// Where the file was cut inside its last record, once the reader got there.
    pub fn truncation(&self) -> Option<Truncation> {
        self.truncation
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// Byte offset of the next record to read: how far into the file the
    /// reader is (for progress reports). At a truncation or an error it stays
    /// at the start of the record that could not be read.
    pub fn position(&self) -> u64 {
        match &self.records {
            Records::Pcap(records) => records.position(),
            Records::PcapNg(records) => records.position(),
            Records::Failed(_) => 0,
        }
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Result<Frame<'a>, CaptureError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Builders of capture bytes and helpers shared by the tests of this module
/// and its submodules. Captures are hand-assembled so that every length and
/// option is under the test's control.
#[cfg(test)]
mod testutil {
    use std::io::Write;

    use super::{CaptureError, CaptureFile, Truncation};

    /// A frame copied out of its capture, to compare in assertions.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(super) struct Owned {
        pub ts_ns: u64,
        pub orig_len: u32,
        pub link: u32,
        pub data: Vec<u8>,
    }

    /// Everything a reader gave: its frames, how it ended, the truncation.
    #[derive(Debug)]
    pub(super) struct ReadAll {
        pub frames: Vec<Owned>,
        pub error: Option<CaptureError>,
        pub truncation: Option<Truncation>,
    }

    /// Reads every frame of `file`, then checks that the reader stays ended.
    pub(super) fn read_all(file: &CaptureFile) -> ReadAll {
        let mut reader = file.reader();
        let mut frames = Vec::new();
        let error = loop {
            match reader.next_frame() {
                Ok(Some(f)) => frames.push(Owned {
                    ts_ns: f.ts_ns,
                    orig_len: f.orig_len,
                    link: f.link.0,
                    data: f.data.to_vec(),
                }),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        for _ in 0..3 {
            assert!(
                matches!(reader.next_frame(), Ok(None)),
                "reader did not stay ended"
            );
        }
        assert_eq!(reader.frames_read(), frames.len() as u64);
        ReadAll {
            frames,
            error,
            truncation: reader.truncation(),
        }
    }

    /// Writes `bytes` to a temporary file.
    pub(super) fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file.flush().unwrap();
        file
    }

    /// Writes `bytes` to a temporary file and opens it as a capture.
    pub(super) fn open_bytes(
        bytes: &[u8],
    ) -> (tempfile::NamedTempFile, Result<CaptureFile, CaptureError>) {
        let file = temp_file(bytes);
        let capture = CaptureFile::open(file.path());
        (file, capture)
    }

    /// Writes `bytes` to a temporary file, opens it and reads it whole.
    pub(super) fn read_bytes(bytes: &[u8]) -> ReadAll {
        let (_file, capture) = open_bytes(bytes);
        let capture = capture.unwrap();
        assert!(capture.is_mapped());
        read_all(&capture)
    }

    fn put_u16(out: &mut Vec<u8>, big_endian: bool, v: u16) {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put_u32(out: &mut Vec<u8>, big_endian: bool, v: u32) {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put_u64(out: &mut Vec<u8>, big_endian: bool, v: u64) {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn pad4(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    pub(super) const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
    pub(super) const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

    /// A classic pcap file being assembled.
    pub(super) struct Pcap {
        pub bytes: Vec<u8>,
        big_endian: bool,
    }

    impl Pcap {
        /// The 24-byte file header.
        pub fn new(magic: u32, big_endian: bool, link: u32) -> Pcap {
            let mut bytes = Vec::new();
            put_u32(&mut bytes, big_endian, magic);
            put_u16(&mut bytes, big_endian, 2); // version 2.4
            put_u16(&mut bytes, big_endian, 4);
            put_u32(&mut bytes, big_endian, 0); // thiszone
            put_u32(&mut bytes, big_endian, 0); // sigfigs
            put_u32(&mut bytes, big_endian, 65_535); // snaplen
            put_u32(&mut bytes, big_endian, link);
            Pcap { bytes, big_endian }
        }

        /// A record whose header says `incl_len` and `orig_len` as given.
        pub fn raw_record(
            mut self,
            ts_sec: u32,
            ts_frac: u32,
            incl_len: u32,
            orig_len: u32,
            data: &[u8],
        ) -> Pcap {
            let be = self.big_endian;
            put_u32(&mut self.bytes, be, ts_sec);
            put_u32(&mut self.bytes, be, ts_frac);
            put_u32(&mut self.bytes, be, incl_len);
            put_u32(&mut self.bytes, be, orig_len);
            self.bytes.extend_from_slice(data);
            self
        }

        /// A record of `data`, whole on the wire.
        pub fn record(self, ts_sec: u32, ts_frac: u32, data: &[u8]) -> Pcap {
            let len = data.len() as u32;
            self.raw_record(ts_sec, ts_frac, len, len, data)
        }
    }

    pub(super) const SHB: u32 = 0x0a0d_0d0a;
    pub(super) const IDB: u32 = 1;
    pub(super) const PB: u32 = 2;
    pub(super) const SPB: u32 = 3;
    pub(super) const NRB: u32 = 4;
    pub(super) const EPB: u32 = 6;
    pub(super) const OPT_ENDOFOPT: u16 = 0;
    pub(super) const OPT_COMMENT: u16 = 1;
    pub(super) const IF_TSRESOL: u16 = 9;
    pub(super) const IF_TSOFFSET: u16 = 14;

    /// A pcapng file being assembled; each section has its own byte order.
    pub(super) struct PcapNg {
        pub bytes: Vec<u8>,
        big_endian: bool,
    }

    impl PcapNg {
        /// A file starting with a section header block.
        pub fn new(big_endian: bool) -> PcapNg {
            PcapNg {
                bytes: Vec::new(),
                big_endian,
            }
            .section(big_endian)
        }

        /// No block at all yet: the caller writes the section header.
        pub fn empty(big_endian: bool) -> PcapNg {
            PcapNg {
                bytes: Vec::new(),
                big_endian,
            }
        }

        /// A new section header block.
        pub fn section(mut self, big_endian: bool) -> PcapNg {
            self.big_endian = big_endian;
            let mut body = Vec::new();
            put_u32(&mut body, big_endian, 0x1a2b_3c4d); // byte-order magic
            put_u16(&mut body, big_endian, 1);
            put_u16(&mut body, big_endian, 0);
            put_u64(&mut body, big_endian, u64::MAX); // section length unknown
            self.block(SHB, &body)
        }

        /// Options: each (code, value), then opt_endofopt.
        pub fn options(&self, options: &[(u16, &[u8])]) -> Vec<u8> {
            let mut out = Vec::new();
            if options.is_empty() {
                return out;
            }
            for (code, value) in options {
                put_u16(&mut out, self.big_endian, *code);
                put_u16(&mut out, self.big_endian, value.len() as u16);
                out.extend_from_slice(value);
                pad4(&mut out);
            }
            put_u16(&mut out, self.big_endian, OPT_ENDOFOPT);
            put_u16(&mut out, self.big_endian, 0);
            out
        }

        /// An interface description block.
        pub fn idb(self, link: u16, snaplen: u32, options: &[(u16, &[u8])]) -> PcapNg {
            let mut body = Vec::new();
            put_u16(&mut body, self.big_endian, link);
            put_u16(&mut body, self.big_endian, 0);
            put_u32(&mut body, self.big_endian, snaplen);
            body.extend(self.options(options));
            self.block(IDB, &body)
        }

        /// An `if_tsoffset` option value in this section's byte order.
        pub fn u64_value(&self, v: u64) -> Vec<u8> {
            let mut out = Vec::new();
            put_u64(&mut out, self.big_endian, v);
            out
        }

        /// An enhanced packet block body.
        pub fn epb_body(&self, interface: u32, raw_ts: u64, orig_len: u32, data: &[u8]) -> Vec<u8> {
            let mut body = Vec::new();
            put_u32(&mut body, self.big_endian, interface);
            put_u32(&mut body, self.big_endian, (raw_ts >> 32) as u32);
            put_u32(&mut body, self.big_endian, raw_ts as u32);
            put_u32(&mut body, self.big_endian, data.len() as u32);
            put_u32(&mut body, self.big_endian, orig_len);
            body.extend_from_slice(data);
            pad4(&mut body);
            body
        }

        /// An enhanced packet block of `data`, whole on the wire.
        pub fn epb(self, interface: u32, raw_ts: u64, data: &[u8]) -> PcapNg {
            let body = self.epb_body(interface, raw_ts, data.len() as u32, data);
            self.block(EPB, &body)
        }

        /// A simple packet block.
        pub fn spb(self, orig_len: u32, data: &[u8]) -> PcapNg {
            let mut body = Vec::new();
            put_u32(&mut body, self.big_endian, orig_len);
            body.extend_from_slice(data);
            pad4(&mut body);
            self.block(SPB, &body)
        }

        /// An obsolete packet block.
        pub fn pb(self, interface: u16, raw_ts: u64, data: &[u8]) -> PcapNg {
            let mut body = Vec::new();
            put_u16(&mut body, self.big_endian, interface);
            put_u16(&mut body, self.big_endian, 0); // drops
            put_u32(&mut body, self.big_endian, (raw_ts >> 32) as u32);
            put_u32(&mut body, self.big_endian, raw_ts as u32);
            put_u32(&mut body, self.big_endian, data.len() as u32);
            put_u32(&mut body, self.big_endian, data.len() as u32);
            body.extend_from_slice(data);
            pad4(&mut body);
            self.block(PB, &body)
        }

        /// A block of any type around `body` (padded to 4 bytes).
        pub fn block(self, block_type: u32, body: &[u8]) -> PcapNg {
            let mut body = body.to_vec();
            pad4(&mut body);
            let len = 12 + body.len() as u32;
            self.raw_block(block_type, len, &body, len)
        }

        /// A block with the lengths given, right or wrong.
        pub fn raw_block(
            mut self,
            block_type: u32,
            len: u32,
            body: &[u8],
            trailing_len: u32,
        ) -> PcapNg {
            let be = self.big_endian;
            put_u32(&mut self.bytes, be, block_type);
            put_u32(&mut self.bytes, be, len);
            self.bytes.extend_from_slice(body);
            put_u32(&mut self.bytes, be, trailing_len);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::testutil::*;
    use super::*;

    fn not_a_capture_detail(result: Result<CaptureFile, CaptureError>) -> String {
        match result {
            Err(CaptureError::NotACapture { detail, .. }) => detail,
            other => panic!("expected NotACapture, got {other:?}"),
        }
    }

    /// Replay shares a capture between threads and may move readers.
    #[test]
    fn capture_is_shareable_and_readers_movable() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<CaptureFile>();
        send::<FrameReader<'static>>();
    }

    #[test]
    fn empty_file_is_not_a_capture() {
        let (_f, result) = open_bytes(b"");
        assert_eq!(not_a_capture_detail(result), "empty file");
    }

    #[test]
    fn text_file_is_not_a_capture_and_the_message_names_the_file() {
        let (file, result) = open_bytes(b"{\n \"zones\": []\n}\n");
        let error = result.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("starts with 0x7b0a2022"), "{message}");
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn file_shorter_than_a_magic_number_is_not_a_capture() {
        let (_f, result) = open_bytes(&[0xd4, 0xc3, 0xb2]);
        assert_eq!(
            not_a_capture_detail(result),
            "file too short for a magic number: 3 bytes"
        );
    }

    #[test]
    fn modified_pcap_is_named_as_unsupported() {
        let (_f, result) = open_bytes(&Pcap::new(0xa1b2_cd34, false, 1).bytes);
        assert!(not_a_capture_detail(result).contains("kuznetzov"));
    }

    #[test]
    fn missing_file_and_directory_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pcap");
        assert!(matches!(
            CaptureFile::open(&missing),
            Err(CaptureError::Io { .. })
        ));
        assert!(matches!(
            CaptureFile::open(dir.path()),
            Err(CaptureError::Io { .. })
        ));
    }

    #[test]
    fn format_is_decided_by_magic_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let named_pcap = dir.path().join("really-pcapng.pcap");
        std::fs::write(
            &named_pcap,
            PcapNg::new(false).idb(1, 0, &[]).epb(0, 7, b"x").bytes,
        )
        .unwrap();
        let capture = CaptureFile::open(&named_pcap).unwrap();
        assert_eq!(capture.format(), CaptureFormat::PcapNg);
        assert_eq!(capture.path(), named_pcap.as_path());

        let named_pcapng = dir.path().join("really-pcap.pcapng");
        std::fs::write(&named_pcapng, Pcap::new(MAGIC_NANOS, true, 101).bytes).unwrap();
        let capture = CaptureFile::open(&named_pcapng).unwrap();
        assert_eq!(
            capture.format(),
            CaptureFormat::Pcap {
                nanosecond: true,
                big_endian: true,
                link: LinkType::RAW
            }
        );
        assert_eq!(capture.byte_len(), 24);
    }

    #[test]
    fn from_bytes_reads_like_a_file() {
        let bytes = Pcap::new(MAGIC_MICROS, false, 1).record(1, 2, b"abc").bytes;
        let capture = CaptureFile::from_bytes("generated", bytes).unwrap();
        assert!(!capture.is_mapped());
        let all = read_all(&capture);
        assert_eq!(all.frames.len(), 1);
        assert_eq!(all.frames[0].ts_ns, 1_000_002_000);
        assert!(matches!(
            CaptureFile::from_bytes("generated", Vec::new()),
            Err(CaptureError::NotACapture { .. })
        ));
    }

    /// Released pages leave the process but read back unchanged, so frames
    /// borrowed from them stay valid; offsets name where a frame lies.
    #[test]
    fn released_pages_read_back_unchanged() {
        let mut pcap = Pcap::new(MAGIC_MICROS, false, 1);
        for n in 0..2_000u32 {
            let payload: Vec<u8> = (0..100).map(|i| (n as u8).wrapping_add(i)).collect();
            pcap = pcap.record(n, 0, &payload);
        }
        let (_file, capture) = open_bytes(&pcap.bytes);
        let capture = capture.unwrap();
        assert!(capture.is_mapped());
        let before = read_all(&capture);
        let mut reader = capture.reader();
        let mut borrowed = Vec::new();
        while let Ok(Some(frame)) = reader.next_frame() {
            borrowed.push(frame);
        }
        let last = borrowed.last().unwrap();
        let offset = capture.offset_of(last.data).unwrap();
        assert_eq!(offset, pcap.bytes.len() - 100);
        assert_eq!(capture.offset_of(b"elsewhere"), None);
        capture.release(0..capture.byte_len() as usize);
        capture.release(5..17); // inside one page: nothing to release
        // Frames borrowed before the release read the same bytes after it.
        for (frame, owned) in borrowed.iter().zip(&before.frames) {
            assert_eq!(frame.data, &owned.data[..]);
        }
        assert_eq!(read_all(&capture).frames, before.frames);
        // Nothing happens to a capture held in memory.
        let held = CaptureFile::from_bytes("generated", pcap.bytes.clone()).unwrap();
        held.release(0..held.byte_len() as usize);
        assert_eq!(read_all(&held).frames, before.frames);
    }

    #[test]
    fn reader_is_an_iterator_and_restarts() {
        let bytes = Pcap::new(MAGIC_MICROS, false, 1)
            .record(1, 0, b"a")
            .record(2, 0, b"bb")
            .bytes;
        let capture = CaptureFile::from_bytes("mem", bytes).unwrap();
        let lens: Vec<usize> = capture.reader().map(|f| f.unwrap().data.len()).collect();
        assert_eq!(lens, [1, 2]);
        // A second reader starts from the first frame again.
        assert_eq!(capture.reader().count(), 2);
        let mut reader = capture.reader();
        assert_eq!(reader.position(), 24);
        reader.next_frame().unwrap();
        assert_eq!(reader.position(), 24 + 16 + 1);
    }

    #[test]
    fn error_stops_the_iterator() {
        let bytes = Pcap::new(MAGIC_MICROS, false, 1)
            .record(1, 0, b"a")
            .raw_record(2, 0, 300_000, 300_000, b"")
            .bytes;
        let capture = CaptureFile::from_bytes("mem", bytes).unwrap();
        let items: Vec<_> = capture.reader().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(
            items[1],
            Err(CaptureError::Corrupt { offset: 41, .. })
        ));
    }

    /// A FIFO cannot be mapped: it is read to its end into a temporary
    /// file, which is mapped.
    #[test]
    fn fifo_is_spooled_then_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("capture.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !matches!(made, Ok(status) if status.success()) {
            eprintln!("note: mkfifo unavailable, skipping the FIFO test");
            return;
        }
        let bytes = Pcap::new(MAGIC_MICROS, false, 1)
            .record(10, 1, b"first")
            .record(11, 2, b"second")
            .bytes;
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
        };
        let capture = CaptureFile::open(&fifo).unwrap();
        writer.join().unwrap();
        assert!(capture.is_mapped());
        assert_eq!(capture.path(), fifo);
        let all = read_all(&capture);
        assert_eq!(all.frames.len(), 2);
        assert_eq!(all.frames[1].data, b"second");

        // A FIFO closed without a byte is an empty file.
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, b"").unwrap())
        };
        let result = CaptureFile::open(&fifo);
        writer.join().unwrap();
        assert_eq!(not_a_capture_detail(result), "empty file");
    }

    /// A capture of `count` records of 100 bytes, each filled with its
    /// index, so that a frame read from lost (zeroed) bytes shows.
    fn numbered_capture(count: u32) -> Vec<u8> {
        let mut pcap = Pcap::new(MAGIC_MICROS, false, 1);
        for i in 0..count {
            pcap = pcap.record(i, 0, &[(i % 250 + 1) as u8; 100]);
        }
        pcap.bytes
    }

    /// Record size in [`numbered_capture`]: header and data.
    const NUMBERED_RECORD: u64 = 16 + 100;

    /// Truncates the file at `path` to `len` bytes, as another program
    /// would, while it is mapped.
    fn truncate(path: &Path, len: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    fn assert_numbered(frames: &[Frame<'_>]) {
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame.ts_ns, i as u64 * 1_000_000_000, "frame {i}");
            assert!(
                frame.data.iter().all(|&b| b == (i % 250 + 1) as u8),
                "frame {i} read lost bytes"
            );
        }
    }

    /// A capture truncated by another program between two batches: the
    /// reader hands out the frames still whole, then ends with an error
    /// naming the file; no SIGBUS.
    #[test]
    fn a_capture_that_shrinks_while_read_ends_with_an_error_not_sigbus() {
        const FRAMES: u32 = 2_000; // 232 kB: many pages
        let file = temp_file(&numbered_capture(FRAMES));
        for (keep_bytes, batch_size) in [(100_000u64, 300), (24, 300), (60_000, 7), (4096 * 20, 1)]
        {
            std::fs::write(file.path(), numbered_capture(FRAMES)).unwrap();
            let capture = CaptureFile::open(file.path()).unwrap();
            assert!(capture.is_mapped());
            let mut reader = capture.reader();
            let mut frames = Vec::new();
            assert!(reader.read_into(&mut frames, 100).unwrap());
            truncate(file.path(), keep_bytes);
            let error = loop {
                let want = |more| frames.len() + more;
                let max = want(batch_size);
                match reader.read_into(&mut frames, max) {
                    Ok(true) => {}
                    Ok(false) => panic!("ended without noticing the shrink"),
                    Err(error) => break error,
                }
            };
            assert_eq!(
                error.to_string(),
                format!(
                    "{}: the file shrank while it was read",
                    file.path().display()
                )
            );
            // The reader notices at the end of the first batch after the
            // cut, keeping the records that end within what is left (the
            // first 100 were read before the cut).
            let whole = (keep_bytes - 24) / NUMBERED_RECORD;
            let expected = whole.min(100 + batch_size as u64).max(100);
            assert_eq!(frames.len() as u64, expected, "kept {keep_bytes}");
            assert_numbered(&frames[..whole.min(expected) as usize]);
            assert_eq!(reader.frames_read(), frames.len() as u64);
            assert!(matches!(reader.next_frame(), Ok(None)));
        }
    }

    /// The same, one frame at a time (the zeroed tail of the new last page
    /// reads as zero-length records, which are checked), and for a file cut
    /// within its last page, where no page is lost.
    #[test]
    fn shrinking_is_noticed_frame_by_frame_and_within_the_last_page() {
        let file = temp_file(&numbered_capture(2_000));
        let capture = CaptureFile::open(file.path()).unwrap();
        let mut reader = capture.reader();
        let mut frames = Vec::new();
        for _ in 0..10 {
            frames.push(reader.next_frame().unwrap().unwrap());
        }
        truncate(file.path(), 24 + 500 * NUMBERED_RECORD);
        let error = loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => panic!("ended without noticing the shrink"),
                Err(error) => break error,
            }
        };
        assert!(matches!(error, CaptureError::Shrank { .. }), "{error}");
        assert_eq!(frames.len(), 500);
        assert_numbered(&frames);

        let bytes = numbered_capture(20); // under a page
        let file = temp_file(&bytes);
        let capture = CaptureFile::open(file.path()).unwrap();
        let mut reader = capture.reader();
        let mut frames = Vec::new();
        assert!(reader.read_into(&mut frames, 5).unwrap());
        truncate(file.path(), bytes.len() as u64 - 300);
        let error = loop {
            let max = frames.len() + 5;
            match reader.read_into(&mut frames, max) {
                Ok(true) => {}
                Ok(false) => panic!("ended without noticing the shrink"),
                Err(error) => break error,
            }
        };
        assert!(matches!(error, CaptureError::Shrank { .. }), "{error}");
        assert_eq!(frames.len(), 10);
        assert_numbered(&frames);
    }

    /// Cheap deterministic random numbers for the mutation test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Hostile input: mutated and cut copies of valid captures never panic,
    /// and every reader ends.
    #[test]
    fn mutated_captures_never_panic() {
        let tsoffset = PcapNg::new(false).u64_value(1_000);
        let seeds = [
            Pcap::new(MAGIC_MICROS, false, 1)
                .record(1, 999_999, &[1; 60])
                .raw_record(2, 5, 10, 4, &[2; 10])
                .record(3, 0, &[3; 7])
                .bytes,
            Pcap::new(MAGIC_NANOS, true, 0).record(1, 2, &[4; 33]).bytes,
            PcapNg::new(false)
                .idb(1, 0, &[(IF_TSRESOL, &[9]), (IF_TSOFFSET, &tsoffset)])
                .idb(0, 64, &[(IF_TSRESOL, &[0x94])])
                .epb(0, 1 << 40, &[5; 61])
                .spb(70, &[6; 70])
                .block(NRB, &[1, 0, 6, 0, 10, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0])
                .epb(1, 3, &[7; 3])
                .section(true)
                .idb(101, 0, &[(OPT_COMMENT, b"hi")])
                .pb(0, 42, &[8; 20])
                .epb(0, 43, &[9; 12])
                .bytes,
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..6_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let i = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[i] = rng.next() as u8,
                    1 => bytes[i] ^= 0x80,
                    2 => bytes[i] = [0, 0xff, 12, 0x7f][rng.below(4)],
                    _ => bytes.truncate(i),
                }
            }
            if let Ok(capture) = CaptureFile::from_bytes("fuzz", bytes) {
                let mut reader = capture.reader();
                let mut frames = Vec::new();
                let ended = loop {
                    match reader.next_frame() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break Ok(reader.truncation()),
                        Err(e) => break Err(e.to_string()),
                    }
                    assert!(frames.len() < 100, "reader does not end");
                };
                assert!(matches!(reader.next_frame(), Ok(None)));
                // Reading in batches gives the same frames, and ends the same.
                for max in [1, 2, 3, 64] {
                    let mut reader = capture.reader();
                    let mut batch = Vec::new();
                    let batch_ended = loop {
                        let upto = batch.len() + max;
                        match reader.read_into(&mut batch, upto) {
                            Ok(true) => {}
                            Ok(false) => break Ok(reader.truncation()),
                            Err(e) => break Err(e.to_string()),
                        }
                    };
                    assert_eq!(batch, frames, "round {round}, batches of {max}");
                    assert_eq!(batch_ended, ended, "round {round}, batches of {max}");
                }
            }
        }
    }

    /// Frame count, link type and timestamp of the first frame of each shared
    /// capture, as tshark 4 reports them (`tshark -r F -T fields -e
    /// frame.number | wc -l`, `-c 1 -e frame.time_epoch`, capinfos for the
    /// link type).
    const SHARED_PCAPS: &[(&str, u64, u32, u64)] = &[
        ("nDPI/443-chrome.pcap", 1, 1, 1_581_109_434_258_190_000),
        ("nDPI/443-curl.pcap", 109, 1, 1_581_113_120_474_299_000),
        ("nDPI/NTPv4.pcap", 1, 1, 1_436_865_396_190_857_000),
        ("nDPI/bacnet.pcap", 23, 1, 1_680_268_949_991_615_000),
        ("nDPI/dhcp-fuzz.pcapng", 1, 1, 1_268_519_154_926_217_000),
        ("nDPI/dns.pcap", 5, 1, 1_112_172_654_366_527_000),
        ("nDPI/hl7.pcap", 9, 1, 1_517_275_422_250_397_000),
        ("nDPI/http.pcapng", 10, 1, 1_643_129_441_023_341_461),
        ("nDPI/ipp.pcap", 279, 1, 1_210_953_938_216_729_000),
        ("nDPI/kerberos.pcap", 77, 1, 1_549_337_929_790_448_000),
        ("nDPI/ldp.pcap", 7, 1, 1_216_142_593_122_052_000),
        ("nDPI/modbus.pcap", 102, 1, 1_223_541_953_927_963_000),
        ("nDPI/mqtt.pcap", 9, 1, 1_643_014_009_283_854_000),
        ("nDPI/netbios.pcap", 261, 1, 1_447_772_210_350_540_000),
        ("nDPI/os_detected.pcapng", 1, 1, 1_611_427_514_609_727_206),
        ("nDPI/rdp.pcap", 20, 0, 1_559_207_465_138_576_000),
        ("nDPI/smbv1.pcap", 7, 1, 1_492_191_036_092_974_000),
        ("nDPI/snmp.pcap", 72, 1, 1_597_326_815_572_660_000),
        ("nDPI/srvloc.pcap", 629, 1, 1_685_617_825_174_445_000),
        ("nDPI/ssdp-m-search.pcap", 19, 1, 1_532_054_645_808_785_000),
        ("nDPI/syslog.pcap", 94, 1, 108_743_144_000),
        ("nDPI/tls_ech.pcapng", 10, 1, 1_688_191_412_679_858_939),
        (
            "nDPI/tls_esni_sni_both.pcap",
            38,
            1,
            1_595_697_574_192_522_000,
        ),
        (
            "tapirx/HL7-ADT-UDI-OBX.pcap",
            9,
            1,
            1_517_275_422_250_397_000,
        ),
        (
            "tapirx/HL7-ADT-UDI-PRT.pcap",
            9,
            1,
            1_517_275_422_250_397_000,
        ),
        ("tapirx/HL7-ADT.pcap", 9, 1, 1_517_275_422_250_397_000),
        ("tapirx/HL7-ORM.pcap", 9, 1, 1_517_275_687_767_046_000),
        ("tapirx/HL7-ORU.pcap", 11, 1, 1_517_275_751_433_916_000),
        (
            "tapirx/dicom_arq_1_find_testclient.pcap",
            1,
            0,
            1_542_403_616_208_085_000,
        ),
        (
            "tapirx/dicom_arq_2_get_testclient.pcap",
            2,
            0,
            1_542_403_638_136_893_000,
        ),
        (
            "tapirx/dicom_arq_3_find_bogus_local.pcap",
            1,
            0,
            1_542_640_472_542_802_000,
        ),
        (
            "tapirx/dicom_arq_4_get_bogus_local.pcap",
            2,
            0,
            1_542_640_280_263_675_000,
        ),
        ("zeek/cdp-v1.pcap", 1, 1, 1_164_034_146_739_806_000),
        ("zeek/dhcp_dhcp.pcap", 9, 1, 1_370_200_442_323_173_000),
        (
            "zeek/dhcp_dhcp_ack_subscriber_id_and_agent_remote_id.pcap",
            1,
            1,
            1_102_274_184_387_798_000,
        ),
        (
            "zeek/dhcp_dhcp_discover_param_req_and_client_id.pcap",
            1,
            1,
            1_102_274_184_317_453_000,
        ),
        (
            "zeek/dhcp_dhcp_inform.pcap",
            2,
            1,
            1_374_432_420_186_878_000,
        ),
        (
            "zeek/dhcp_dhcp_time_and_nameserver.pcap",
            2,
            1,
            1_558_730_413_020_429_000,
        ),
        ("zeek/dns_mdns.pcap", 24, 1, 1_738_667_758_097_949_000),
        (
            "zeek/http_m57-long-49600-80.pcap",
            52,
            1,
            1_258_596_859_721_509_000,
        ),
        ("zeek/krb_kinit.pcap", 229, 1, 1_421_708_030_829_536_000),
        ("zeek/ldap_aduser1.pcap", 53, 1, 1_741_596_888_368_804_000),
        ("zeek/lldp.pcap", 1, 1, 1_258_531_220_093_410_000),
        (
            "zeek/modbus_modbusSmall.pcap",
            166,
            1,
            1_400_547_199_329_569_000,
        ),
        ("zeek/ntp_NTP_sync.pcap", 32, 1, 1_096_255_084_938_672_000),
        ("zeek/radius_radius.pcap", 4, 1, 1_217_631_137_872_968_000),
        (
            "zeek/rdp_rdp-to-ssl.pcap",
            658,
            1,
            1_297_551_041_283_662_000,
        ),
        ("zeek/smb_smb3.pcap", 54, 1, 1_495_015_336_523_633_000),
        (
            "zeek/snmp_snmpwalk-short.pcap",
            400,
            1,
            1_469_560_603_747_081_000,
        ),
        ("zeek/tcp-syslog.pcap", 10, 228, 1_784_225_621_110_059_000),
        (
            "zeek/tls_chrome-34-google.pcap",
            42,
            1,
            1_398_362_902_697_485_000,
        ),
        (
            "zeek/tls_client-certificate.pcap",
            31,
            1,
            1_677_601_192_606_743_000,
        ),
        ("zeek/tls_tls1.2.pcap", 22, 1, 1_357_328_848_512_314_000),
        ("zeek/tls_tls13-ech.pcap", 69, 1, 1_697_458_696_259_279_000),
        ("zeek/wikipedia.pcap", 136, 1, 1_300_475_167_096_535_000),
    ];

    /// Every capture under shared/pcaps opens and reads to the end with the
    /// frame count, first link type and first timestamp that tshark reports.
    #[test]
    fn shared_pcaps_match_tshark() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps"));
        if !root.is_dir() {
            eprintln!(
                "note: {} is absent, skipping the shared capture test",
                root.display()
            );
            return;
        }
        let mut seen = Vec::new();
        for dir in std::fs::read_dir(root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let capture = CaptureFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
                let mut reader = capture.reader();
                let mut count = 0u64;
                let mut first = None;
                let mut years_ok = true;
                while let Some(frame) = reader.next_frame().unwrap_or_else(|e| panic!("{e}")) {
                    count += 1;
                    first.get_or_insert((frame.link.0, frame.ts_ns));
                    // 2000-01-01 .. 2030-01-01, for the files that must not land in 1970.
                    years_ok &=
                        (946_684_800_000_000_000..1_893_456_000_000_000_000).contains(&frame.ts_ns);
                }
                assert_eq!(reader.truncation(), None, "{relative}");
                let Some(&(_, frames, link, ts_ns)) =
                    SHARED_PCAPS.iter().find(|row| row.0 == relative)
                else {
                    panic!(
                        "{relative}: not in the table; add its tshark frame count and first timestamp"
                    );
                };
                assert_eq!(count, frames, "{relative}: frame count");
                assert_eq!(
                    first,
                    Some((link, ts_ns)),
                    "{relative}: first frame's link type and timestamp"
                );
                if relative.starts_with("tapirx/dicom_arq_") {
                    assert_eq!(capture.format(), CaptureFormat::PcapNg, "{relative}");
                    assert!(years_ok, "{relative}: a timestamp outside 2000-2030");
                }
                seen.push(relative);
            }
        }
        assert_eq!(
            seen.len(),
            SHARED_PCAPS.len(),
            "files in the table but not on disk"
        );
    }
}
