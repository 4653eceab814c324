//! The events file: violation events as JSON lines (contract section 3),
//! appended, and reopened on SIGHUP so that logrotate can move it away.
//! Also stdout, for the demo.
//!
//! Every line a reader of the file sees is a whole JSON object. A write
//! cut short (a full disk: ENOSPC) leaves part of a line at the end of the
//! file; before anything else is written, the file is cut back to its last
//! complete line, the events of the lines that did not make it whole are
//! counted as lost, and the next event starts on a line of its own. A file
//! that already ends inside a line when it is opened (a write cut short by
//! a crash, or by an earlier version on a full disk) is cut back the same
//! way, with a warning.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Inbox, Next, SinkError, SinkEvent, SinkHandle};

/// Starts the sink that appends events to `path`, holding at most `queue`
/// events. The file is opened (and created, mode 0640) before this returns,
/// so that a path that cannot be written fails the start.
pub fn spawn_events_file(path: &Path, queue: usize) -> Result<SinkHandle, SinkError> {
    let file = EventsFile::open(path)
        .map_err(|e| SinkError(format!("events file {}: {e}", path.display())))?;
    SinkHandle::spawn("events_file".into(), queue, move |inbox| {
        write_lines(Output::File(file), inbox)
    })
}

/// Starts the sink that prints events on stdout, one JSON line each.
pub fn spawn_stdout(queue: usize) -> Result<SinkHandle, SinkError> {
    let output = Output::Stdout(BufWriter::new(io::stdout()));
    SinkHandle::spawn("stdout".into(), queue, move |inbox| {
        write_lines(output, inbox)
    })
}

/// Bytes buffered before they are written, within a batch.
const WRITE_CHUNK: usize = 64 << 10;

/// How far back from its end the file is searched for its last complete
/// line: far more than the longest record.
const LINE_SEARCH: u64 = 16 << 20;

/// The events file, written in whole lines.
struct EventsFile {
    path: PathBuf,
    file: File,
    /// Lines not yet written.
    buffer: Vec<u8>,
    /// Set when a cut line could not be taken back: the next write starts
    /// with a newline, so the damage stays within one line.
    broken_line: bool,
}

impl EventsFile {
    /// Opens the file to append (read too: to find its last line), never
    /// through a symbolic link (see [`super::open`]), and cuts a partial
    /// last line back.
    fn open(path: &Path) -> io::Result<EventsFile> {
        let mut options = super::open::append_or_create(0o640);
        options.read(true);
        let file = super::open::open_written(path, &options)?;
        let mut events = EventsFile {
            path: path.to_owned(),
            file,
            buffer: Vec::with_capacity(WRITE_CHUNK * 2),
            broken_line: false,
        };
        match events.cut_to_last_line() {
            Ok(0) => {}
            Ok(cut) => tracing::warn!(
                file = %path.display(),
                bytes = cut,
                "Events file ended inside a line (a write cut short before this start): cut \
                 back to its last complete line"
            ),
            Err(error) => {
                events.broken_line = true;
                tracing::warn!(
                    file = %path.display(),
                    "Events file may end inside a line and cannot be cut back ({error}): the \
                     next event starts on a new line"
                );
            }
        }
        Ok(events)
    }

    /// Cuts the file back to just after its last newline (to empty when it
    /// has none); returns how many bytes were cut.
    fn cut_to_last_line(&self) -> io::Result<u64> {
        let length = self.file.metadata()?.len();
        let mut end = length;
        let mut chunk = [0u8; 4096];
        while end > 0 && length - end < LINE_SEARCH {
            let start = end.saturating_sub(chunk.len() as u64);
            let part = &mut chunk[..(end - start) as usize];
            self.file.read_exact_at(part, start)?;
            if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
                let keep = start + at as u64 + 1;
                if keep < length {
                    self.file.set_len(keep)?;
                }
                return Ok(length - keep);
            }
            end = start;
        }
        if end > 0 {
            return Err(io::Error::other("no newline in its last 16 MiB"));
        }
        self.file.set_len(0)?;
        Ok(length)
    }

    /// Writes the buffered lines: the number written whole, or the error
    /// and how many of them were written whole before it.
    fn write_buffer(&mut self) -> Result<u64, (io::Error, u64)> {
        let lines = memchr_count(&self.buffer);
        let prefix = usize::from(std::mem::take(&mut self.broken_line));
        if prefix > 0 {
            self.buffer.insert(0, b'\n');
        }
        let before = self.file.metadata().map(|m| m.len());
        let written = (&self.file).write_all(&self.buffer);
        let result = match written {
            Ok(()) => Ok(lines),
            Err(error) => {
                // What reached the file: whole lines stay, a partial one is
                // taken back. A file truncated meanwhile (copytruncate)
                // holds none of this batch for sure.
                let whole = match (before, self.cut_to_last_line(), self.file.metadata()) {
                    (Ok(before), Ok(_), Ok(after)) if after.len() > before => {
                        let kept = ((after.len() - before) as usize).min(self.buffer.len());
                        memchr_count(self.buffer.get(prefix..kept).unwrap_or_default())
                    }
                    (_, Err(_), _) => {
                        self.broken_line = true;
                        0
                    }
                    _ => 0,
                };
                Err((error, whole))
            }
        };
        self.buffer.clear();
        result
    }

    /// Opens the path anew (after logrotate moved it). When the new file
    /// cannot be opened the old one is kept.
    fn reopen(&mut self) -> io::Result<()> {
        let reopened = EventsFile::open(&self.path)?;
        self.file = reopened.file;
        self.broken_line = reopened.broken_line;
        Ok(())
    }
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

enum Output {
    File(EventsFile),
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    fn describe(&self) -> String {
        match self {
            Output::File(file) => file.path.display().to_string(),
            Output::Stdout(_) => "stdout".into(),
        }
    }

    /// Flushes what is buffered for the old file and opens the path anew.
    fn reopen(&mut self, inbox: &Inbox, unflushed: &mut Unflushed, failing: &mut bool) {
        flush(self, unflushed, inbox, failing);
        if let Output::File(file) = self {
            match file.reopen() {
                Ok(()) => tracing::info!(file = %file.path.display(), "Events file reopened"),
                Err(e) => tracing::error!(
                    file = %file.path.display(),
                    "Cannot reopen the events file, still writing the old one: {e}"
                ),
            }
        }
    }

    /// Appends one line to the buffer; true when the buffer is worth
    /// writing now.
    fn push_line(&mut self, line: &str) -> bool {
        match self {
            Output::File(file) => {
                file.buffer.extend_from_slice(line.as_bytes());
                file.buffer.push(b'\n');
                file.buffer.len() >= WRITE_CHUNK
            }
            Output::Stdout(writer) => {
                // A failed buffered write surfaces again at the flush,
                // which counts it.
                let _ = writer.write_all(line.as_bytes());
                let _ = writer.write_all(b"\n");
                false
            }
        }
    }

    /// Writes what is buffered: `count` events. Returns the number written
    /// whole, or the error and that number.
    fn write_out(&mut self, count: u64) -> Result<u64, (io::Error, u64)> {
        match self {
            Output::File(file) => file.write_buffer(),
            Output::Stdout(writer) => writer.flush().map(|()| count).map_err(|e| {
                // What a failed flush leaves in the buffer is counted as
                // lost: start the next batch on an empty buffer.
                let _ = std::mem::replace(writer, BufWriter::new(io::stdout())).into_parts();
                (e, 0)
            }),
        }
    }
}

/// Events written per batch at most before the sink looks at its requests.
const BATCH: usize = 1024;

/// Events buffered but not yet written; written when the queue runs dry (or
/// the buffer is full), so a burst costs few writes and a lone event goes
/// out at once.
struct Unflushed(u64);

/// The sink thread: events in queue order, one JSON line each.
fn write_lines(mut output: Output, mut inbox: Inbox) -> u64 {
    let mut unflushed = Unflushed(0);
    let mut failing = false;
    loop {
        match inbox.next(None) {
            Next::Event(event) => {
                write_event(&mut output, &event, &mut unflushed, &inbox, &mut failing);
                // Batch while more is queued, but not forever: a reopen
                // request must get its turn.
                for _ in 0..BATCH {
                    let Some(event) = inbox.ready_event() else {
                        break;
                    };
                    write_event(&mut output, &event, &mut unflushed, &inbox, &mut failing);
                }
                flush(&mut output, &mut unflushed, &inbox, &mut failing);
            }
            Next::Reopen => output.reopen(&inbox, &mut unflushed, &mut failing),
            Next::Idle => {}
            Next::Stop => {
                flush(&mut output, &mut unflushed, &inbox, &mut failing);
                return inbox.left();
            }
        }
    }
}

fn write_event(
    output: &mut Output,
    event: &SinkEvent,
    unflushed: &mut Unflushed,
    inbox: &Inbox,
    failing: &mut bool,
) {
    let line = event.record.to_json();
    unflushed.0 += 1;
    if output.push_line(&line) {
        flush(output, unflushed, inbox, failing);
    }
}

fn flush(output: &mut Output, unflushed: &mut Unflushed, inbox: &Inbox, failing: &mut bool) {
    if unflushed.0 == 0 {
        return;
    }
    let count = std::mem::replace(&mut unflushed.0, 0);
    inbox.finished(count);
    match output.write_out(count) {
        Ok(written) => {
            inbox.stats().sent.fetch_add(written, Ordering::Relaxed);
            if std::mem::take(failing) {
                tracing::info!(file = %output.describe(), "Events file writable again");
            }
        }
        Err((e, whole)) => {
            inbox.stats().sent.fetch_add(whole, Ordering::Relaxed);
            inbox
                .stats()
                .lost
                .fetch_add(count.saturating_sub(whole), Ordering::Relaxed);
            // One error line per streak of failures, not one per event.
            if !std::mem::replace(failing, true) {
                tracing::error!(
                    file = %output.describe(),
                    "Cannot write events: {e}; counting them as lost until it recovers (the \
                     file is kept to whole lines)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::tests::event;
    use std::time::Duration;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Polls until `path` holds `count` lines.
    fn wait_lines(path: &Path, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = lines(path);
            if found.len() >= count || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn appends_json_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "kept\n").unwrap();
        let sink = spawn_events_file(&path, 16).unwrap();
        sink.offer(&event(1));
        sink.offer(&event(2));
        let first = wait_lines(&path, 3);
        assert_eq!(first[0], "kept", "appends, never truncates");
        assert_eq!(first[1], event(1).record.to_json());
        assert_eq!(first[2], event(2).record.to_json());

        // logrotate: move the file away, then SIGHUP.
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        sink.offer(&event(3));
        assert_eq!(wait_lines(&path, 1), [event(3).record.to_json()]);
        assert_eq!(lines(&rotated).len(), 3);
        let stats = sink.stats().clone();
        assert_eq!(sink.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 3);
    }

    /// Issue 16: a link planted where the events file was (after logrotate
    /// moved it) is not followed by the reopen; the old file goes on.
    #[test]
    fn a_symlink_planted_after_rotation_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let target = dir.path().join("root-only");
        std::fs::write(&target, "untouched\n").unwrap();
        let sink = spawn_events_file(&path, 16).unwrap();
        sink.offer(&event(1));
        wait_lines(&path, 1);
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        sink.reopen();
        sink.offer(&event(2));
        assert_eq!(wait_lines(&rotated, 2).len(), 2, "still the old file");
        assert_eq!(sink.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");

        // At start, the same link is refused with one line naming it.
        let error = spawn_events_file(&path, 4).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "events file {}: is a symbolic link: refusing to follow it (name the file \
                 itself, or remove the link)",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    }

    /// A file left ending inside a line (a write cut short by a crash) is
    /// cut back to its last complete line when opened, so the next event
    /// does not run into the partial one.
    #[test]
    fn a_partial_last_line_is_cut_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let sink = spawn_events_file(&path, 16).unwrap();
        sink.offer(&event(1));
        assert_eq!(
            wait_lines(&path, 2),
            ["{\"whole\":1}".to_string(), event(1).record.to_json()]
        );
        assert_eq!(sink.shutdown(Duration::from_secs(5)), 0);
        // Without any newline at all, nothing of it is kept.
        std::fs::write(&path, "{\"cut\":").unwrap();
        let sink = spawn_events_file(&path, 16).unwrap();
        sink.offer(&event(2));
        assert_eq!(wait_lines(&path, 1), [event(2).record.to_json()]);
        assert_eq!(sink.shutdown(Duration::from_secs(5)), 0);
    }

    #[test]
    fn an_unwritable_path_fails_the_start_naming_it() {
        let error = spawn_events_file(Path::new("/nonexistent-dir/events.jsonl"), 4).unwrap_err();
        assert_eq!(
            error.to_string(),
            "events file /nonexistent-dir/events.jsonl: No such file or directory (os error 2)"
        );
    }
}
