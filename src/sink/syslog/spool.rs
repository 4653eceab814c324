//! A TCP or TLS feed's disk spool, like rsyslog's disk-assisted queues:
//! when the receiver is away longer than the memory queue lasts, and at a
//! stop, the feed's messages go to disk in order, and they go out first,
//! still in order, once the receiver is back (or at the next start).
//!
//! On disk, in the feed's own directory: segment files
//! (`00000000000000000001.seg`, ...) of records, each `LEN` (u32, little
//! endian), `CHECK` (the first four bytes of the message's BLAKE3 hash) and
//! the framed message as the feed writes it on the wire; `head` names the
//! segment and offset of the first message not yet delivered; `lock` keeps
//! a second daemon out. Appends are flushed to disk (`fdatasync`) before
//! the events count as spooled; `head` is replaced whole (written beside,
//! then renamed). After a crash, a record cut short at the end of a segment
//! fails its length or check and is cut off (it was never counted as
//! spooled); messages delivered after the last `head` update go out again.
//!
//! The spool is bounded by the bytes its segments take on disk: a message
//! that would go past the bound is refused and the feed counts it as
//! dropped. Every file is opened without following links (see
//! [`crate::sink::open`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use crate::sink::open::{append_or_create, open_written};

/// Bytes of a record's header: length and check.
const HEADER: u64 = 8;
/// The longest message a record may hold; a longer length is damage.
const MAX_MESSAGE: u32 = 1 << 20;
/// Segment size bounds: a segment is deleted once delivered, so this is
/// also how much delivered data may stay on disk.
const SEGMENT_MIN: u64 = 64 << 10;
const SEGMENT_MAX: u64 = 4 << 20;

/// What the feed is told about a spool it cannot use.
#[derive(Debug, thiserror::Error)]
#[error("spool {}: {source}", path.display())]
pub struct SpoolError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.to_owned(),
        source,
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes of whole records in it.
    len: u64,
    /// Records in it.
    records: u64,
}

/// An open spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    writer: File,
    /// Offset of the first undelivered record in the first segment, and
    /// how many records lie before it there.
    head: u64,
    head_records: u64,
    /// Records appended but not yet flushed.
    unwritten: Vec<u8>,
    unwritten_records: u64,
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, bounded to `max_bytes` on
    /// disk, and checks what an earlier run left: records cut short are cut
    /// off, delivered segments removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(at(dir)(io::Error::other(
                "is a symbolic link: refusing to follow it (name the directory itself)",
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(at(dir))?;
        let lock_path = dir.join("lock");
        let lock = open_written(&lock_path, &append_or_create(0o600)).map_err(at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(at(dir)(io::Error::other(
                    "in use by another segwatch (each feed needs a spool of its own)",
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(at(&lock_path)(e)),
        }
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(at(dir))? {
            let entry = entry.map_err(at(dir))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            seqs.push(seq);
        }
        seqs.sort_unstable();
        let mut segments = VecDeque::new();
        for seq in seqs {
            let path = segment_path(dir, seq);
            let file = open_written(&path, OpenOptions::new().read(true).write(true))
                .map_err(at(&path))?;
            let (len, records, size) = scan(&file).map_err(at(&path))?;
            if len < size {
                tracing::warn!(
                    spool = %path.display(),
                    bytes = size - len,
                    "Spool segment ends in a record cut short (a stop during a write): cut off"
                );
                file.set_len(len).map_err(at(&path))?;
            }
            segments.push_back(Segment { seq, len, records });
        }
        let (head_seq, head) = read_head(dir);
        // Segments before the head were delivered.
        while segments.len() > 1 && segments.front().is_some_and(|s| s.seq < head_seq) {
            if let Some(done) = segments.pop_front() {
                let _ = std::fs::remove_file(segment_path(dir, done.seq));
            }
        }
        let (head, head_records) = match segments.front() {
            Some(first) if first.seq == head_seq && head <= first.len => {
                let path = segment_path(dir, first.seq);
                let file = open_written(&path, OpenOptions::new().read(true).write(true))
                    .map_err(at(&path))?;
                match records_before(&file, head).map_err(at(&path))? {
                    Some(records) => (head, records),
                    // Not at a record's start: deliver the segment whole.
                    None => (0, 0),
                }
            }
            _ => (0, 0),
        };
        if segments.is_empty() {
            segments.push_back(Segment {
                seq: head_seq.max(1),
                len: 0,
                records: 0,
            });
        }
        let last = segments.back().map_or(1, |s| s.seq);
        let writer_path = segment_path(dir, last);
        let writer =
            open_written(&writer_path, &append_or_create(0o600)).map_err(at(&writer_path))?;
        let segment_bytes = (max_bytes / 8).clamp(SEGMENT_MIN, SEGMENT_MAX);
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            segments,
            writer,
            head,
            head_records,
            unwritten: Vec::new(),
            unwritten_records: 0,
            _lock: lock,
        };
        Ok(spool)
    }

    /// Undelivered messages in it (appended ones included).
    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum::<u64>() - self.head_records
            + self.unwritten_records
    }

    /// Bytes its segments take on disk (what the bound counts).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum::<u64>() + self.unwritten.len() as u64
    }

    /// True when nothing is left to deliver.
    pub fn is_empty(&self) -> bool {
        self.events() == 0
    }

    /// Appends a message (not yet on disk until [`Spool::commit`]); false
    /// when it would take the spool past its bound.
    pub fn push(&mut self, message: &[u8]) -> bool {
        let record = HEADER + message.len() as u64;
        if message.is_empty()
            || message.len() > MAX_MESSAGE as usize
            || self.disk_bytes() + record > self.max_bytes
        {
            return false;
        }
        let check = blake3::hash(message);
        self.unwritten
            .extend_from_slice(&(message.len() as u32).to_le_bytes());
        self.unwritten.extend_from_slice(&check.as_bytes()[..4]);
        self.unwritten.extend_from_slice(message);
        self.unwritten_records += 1;
        true
    }

    /// Writes what was appended and waits until it is on disk. On an error
    /// (a full disk) what did not reach the disk is taken back, and the
    /// number of those messages is returned with the error.
    pub fn commit(&mut self) -> Result<(), (io::Error, u64)> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        self.unwritten_records = 0;
        let bytes = std::mem::take(&mut self.unwritten);
        self.write_records(&bytes)
    }

    /// Writes whole records, starting a new segment when the last is full.
    fn write_records(&mut self, bytes: &[u8]) -> Result<(), (io::Error, u64)> {
        let mut start = 0;
        while start < bytes.len() {
            if self
                .segments
                .back()
                .is_some_and(|s| s.len >= self.segment_bytes)
            {
                self.roll()
                    .map_err(|e| (e, count_records(&bytes[start..])))?;
            }
            let Some(last) = self.segments.back_mut() else {
                return Err((
                    io::Error::other("no segment"),
                    count_records(&bytes[start..]),
                ));
            };
            let room = self.segment_bytes.saturating_sub(last.len);
            let (mut end, mut records) = (start, 0);
            while let Some(record) = record_len(&bytes[end..]) {
                if records > 0 && (end - start + record) as u64 > room {
                    break;
                }
                end += record;
                records += 1;
            }
            let written = (&self.writer)
                .write_all(&bytes[start..end])
                .and_then(|()| self.writer.sync_data());
            if let Err(error) = written {
                // Take back whatever part reached the file.
                let _ = self.writer.set_len(last.len);
                return Err((error, count_records(&bytes[start..])));
            }
            last.len += (end - start) as u64;
            last.records += records;
            start = end;
        }
        Ok(())
    }

    /// Starts a new segment.
    fn roll(&mut self) -> io::Result<()> {
        let seq = self.segments.back().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.dir, seq);
        self.writer = open_written(&path, &append_or_create(0o600))?;
        self.segments.push_back(Segment {
            seq,
            len: 0,
            records: 0,
        });
        Ok(())
    }

    /// Up to `max` of the oldest undelivered messages, in order, without
    /// taking them out (see [`Spool::consume`]). What was appended is
    /// committed first.
    pub fn peek(&mut self, max: usize) -> Result<Vec<Vec<u8>>, (io::Error, u64)> {
        self.commit()?;
        let mut out = Vec::new();
        let mut offset = self.head;
        for segment in &self.segments {
            if out.len() >= max {
                break;
            }
            if offset >= segment.len {
                offset = 0;
                continue;
            }
            let path = segment_path(&self.dir, segment.seq);
            let file = open_written(&path, OpenOptions::new().read(true).write(true))
                .map_err(|e| (e, 0))?;
            while offset < segment.len && out.len() < max {
                match read_record(&file, offset, segment.len).map_err(|e| (e, 0))? {
                    Some(message) => {
                        offset += HEADER + message.len() as u64;
                        out.push(message);
                    }
                    None => break,
                }
            }
            offset = 0;
        }
        Ok(out)
    }

    /// Takes out the oldest `count` messages (delivered): deletes the
    /// segments they emptied and records the new head.
    pub fn consume(&mut self, sizes: impl IntoIterator<Item = usize>) -> io::Result<()> {
        for size in sizes {
            self.head += HEADER + size as u64;
            self.head_records += 1;
            while let Some(first) = self.segments.front()
                && self.head >= first.len
                && self.segments.len() > 1
            {
                let seq = first.seq;
                self.segments.pop_front();
                let _ = std::fs::remove_file(segment_path(&self.dir, seq));
                self.head = 0;
                self.head_records = 0;
            }
        }
        // The last segment delivered whole: start it over.
        let single = self.segments.len() == 1;
        if let Some(last) = self.segments.back_mut()
            && single
            && self.head >= last.len
            && self.unwritten.is_empty()
        {
            self.writer.set_len(0)?;
            last.len = 0;
            last.records = 0;
            self.head = 0;
            self.head_records = 0;
        }
        self.write_head()
    }

    fn write_head(&self) -> io::Result<()> {
        let seq = self.segments.front().map_or(1, |s| s.seq);
        let head = format!("{seq} {}\n", self.head);
        crate::sys::replace_file(&self.dir, "head", head.as_bytes(), 0o600)
    }
}

/// The length of the record at the start of `bytes` (appended by
/// [`Spool::push`], so whole), header included.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let len = bytes.get(..4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    Some(HEADER as usize + len).filter(|&record| record <= bytes.len())
}

fn count_records(mut bytes: &[u8]) -> u64 {
    let mut records = 0;
    while let Some(record) = record_len(bytes) {
        bytes = &bytes[record..];
        records += 1;
    }
    records
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// The head as written: segment and offset; the start when unreadable.
fn read_head(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("head")).unwrap_or_default();
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next()) {
        (Some(Ok(seq)), Some(Ok(offset))) => (seq, offset),
        _ => (0, 0),
    }
}

/// The record at `offset`, or `None` when what is there is not a whole,
/// intact record.
fn read_record(file: &File, offset: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
    if offset + HEADER > end {
        return Ok(None);
    }
    let mut header = [0u8; HEADER as usize];
    file.read_exact_at(&mut header, offset)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if len == 0 || len > MAX_MESSAGE || offset + HEADER + u64::from(len) > end {
        return Ok(None);
    }
    let mut message = vec![0u8; len as usize];
    file.read_exact_at(&mut message, offset + HEADER)?;
    if blake3::hash(&message).as_bytes()[..4] != header[4..] {
        return Ok(None);
    }
    Ok(Some(message))
}

/// Bytes of whole, intact records from the start, their number, and the
/// file's size.
fn scan(file: &File) -> io::Result<(u64, u64, u64)> {
    let size = file.metadata()?.len();
    let mut offset = 0;
    let mut records = 0;
    while let Some(message) = read_record(file, offset, size)? {
        offset += HEADER + message.len() as u64;
        records += 1;
    }
    Ok((offset, records, size))
}

/// The number of records before `offset`, when a record starts there.
fn records_before(file: &File, offset: u64) -> io::Result<Option<u64>> {
    let mut at = 0;
    let mut records = 0;
    while at < offset {
        match read_record(file, at, offset)? {
            Some(message) => at += HEADER + message.len() as u64,
            None => return Ok(None),
        }
        records += 1;
    }
    Ok((at == offset).then_some(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(spool: &mut Spool) -> Vec<String> {
        spool
            .peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect()
    }

    #[test]
    fn messages_come_back_in_order_across_restarts_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed");
        let mut spool = Spool::open(&path, 1 << 19).unwrap();
        assert!(spool.is_empty());
        // 64 KiB segments: 300 messages of 1 KiB take five.
        let text = |n: usize| format!("{n:04}{}", "x".repeat(1020));
        for n in 0..300 {
            assert!(spool.push(text(n).as_bytes()));
        }
        spool.commit().unwrap();
        assert!(spool.segments.len() >= 4, "{:?}", spool.segments);
        assert_eq!(spool.events(), 300);
        let first = spool.peek(100).unwrap();
        assert_eq!(first.len(), 100);
        spool.consume(first.iter().map(Vec::len)).unwrap();
        assert_eq!(spool.events(), 200);
        drop(spool);

        // A second open (the next start) goes on from the head.
        let mut spool = Spool::open(&path, 1 << 19).unwrap();
        assert_eq!(spool.events(), 200);
        let rest = messages(&mut spool);
        assert_eq!(rest.len(), 200);
        assert!(rest.iter().enumerate().all(|(i, m)| *m == text(i + 100)));
        // A second spool on the same directory is refused.
        let error = Spool::open(&path, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("in use by another segwatch"), "{error}");
        spool.consume(rest.iter().map(String::len)).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.segments.len(), 1, "delivered segments are deleted");
        assert_eq!(spool.disk_bytes(), 0);
        assert!(spool.push(b"after"));
        assert_eq!(messages(&mut spool), ["after"]);
    }

    #[test]
    fn a_record_cut_short_is_cut_off_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed");
        let mut spool = Spool::open(&path, 100).unwrap();
        assert!(spool.push(b"one: forty bytes of framed message....."));
        assert!(spool.push(b"two: forty bytes of framed message....."));
        assert!(!spool.push(b"three: over the bound"), "100 bytes at most");
        spool.commit().unwrap();
        drop(spool);
        // A crash in the middle of a third record's write.
        let segment = segment_path(&path, 1);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, b'h', b'a'])
            .unwrap();
        drop(file);
        let mut spool = Spool::open(&path, 100).unwrap();
        assert_eq!(spool.events(), 2);
        assert_eq!(messages(&mut spool).len(), 2);
        // A damaged record (a flipped byte) ends what is read.
        drop(spool);
        let mut bytes = std::fs::read(&segment).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&segment, bytes).unwrap();
        let mut spool = Spool::open(&path, 100).unwrap();
        assert_eq!(messages(&mut spool).len(), 1);
    }

    #[test]
    fn a_linked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = Spool::open(&link, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("is a symbolic link"), "{error}");
    }
}
