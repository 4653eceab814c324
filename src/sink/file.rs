//! The events file: violation events as JSON lines (contract section 3),
//! appended, and reopened on SIGHUP so that logrotate can move it away.
//! Also stdout, for the demo.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Inbox, Next, SinkError, SinkEvent, SinkHandle};

/// Starts the sink that appends events to `path`, holding at most `queue`
/// events. The file is opened (and created, mode 0640) before this returns,
/// so that a path that cannot be written fails the start.
pub fn spawn_events_file(path: &Path, queue: usize) -> Result<SinkHandle, SinkError> {
    let file =
        open_append(path).map_err(|e| SinkError(format!("events file {}: {e}", path.display())))?;
    let output = Output::File {
        path: path.to_path_buf(),
        writer: BufWriter::new(file),
    };
    SinkHandle::spawn("events_file".into(), queue, move |inbox| {
        write_lines(output, inbox)
    })
}

/// Starts the sink that prints events on stdout, one JSON line each.
pub fn spawn_stdout(queue: usize) -> Result<SinkHandle, SinkError> {
    let output = Output::Stdout(BufWriter::new(io::stdout()));
    SinkHandle::spawn("stdout".into(), queue, move |inbox| {
        write_lines(output, inbox)
    })
}

/// Opens the events file to append, creating it (mode 0640) when missing;
/// never through a symbolic link (see [`super::open`]).
fn open_append(path: &Path) -> io::Result<File> {
    super::open::open_written(path, &super::open::append_or_create(0o640))
}

enum Output {
    File {
        path: PathBuf,
        writer: BufWriter<File>,
    },
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::File { writer, .. } => writer,
            Output::Stdout(writer) => writer,
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::File { path, .. } => path.display().to_string(),
            Output::Stdout(_) => "stdout".into(),
        }
    }

    /// Flushes the old file and opens the path anew (after logrotate moved
    /// it). When the new file cannot be opened the old one is kept.
    fn reopen(&mut self) -> io::Result<()> {
        if let Output::File { path, writer } = self {
            writer.flush()?;
            *writer = BufWriter::new(open_append(path)?);
        }
        Ok(())
    }
}

/// Events written per batch at most before the sink looks at its requests.
const BATCH: usize = 1024;

/// Events written to the buffer but not yet flushed; flushed when the queue
/// runs dry, so a burst costs one write and a lone event goes out at once.
struct Unflushed(u64);

/// The sink thread: events in queue order, one JSON line each.
fn write_lines(mut output: Output, mut inbox: Inbox) -> u64 {
    let mut unflushed = Unflushed(0);
    let mut failing = false;
    loop {
        match inbox.next(None) {
            Next::Event(event) => {
                write_event(&mut output, &event, &mut unflushed);
                // Batch while more is queued (a full buffer flushes itself),
                // but not forever: a reopen request must get its turn.
                for _ in 0..BATCH {
                    let Some(event) = inbox.ready_event() else {
                        break;
                    };
                    write_event(&mut output, &event, &mut unflushed);
                }
                flush(&mut output, &mut unflushed, &inbox, &mut failing);
            }
            Next::Reopen => {
                flush(&mut output, &mut unflushed, &inbox, &mut failing);
                match output.reopen() {
                    Ok(()) => tracing::info!(file = %output.describe(), "Events file reopened"),
                    Err(e) => tracing::error!(
                        file = %output.describe(),
                        "Cannot reopen the events file, still writing the old one: {e}"
                    ),
                }
            }
            Next::Idle => {}
            Next::Stop => {
                flush(&mut output, &mut unflushed, &inbox, &mut failing);
                return inbox.left();
            }
        }
    }
}

fn write_event(output: &mut Output, event: &SinkEvent, unflushed: &mut Unflushed) {
    let mut line = event.record.to_json();
    line.push('\n');
    // A failed buffered write surfaces again at the flush, which counts it.
    let _ = output.writer().write_all(line.as_bytes());
    unflushed.0 += 1;
}

fn flush(output: &mut Output, unflushed: &mut Unflushed, inbox: &Inbox, failing: &mut bool) {
    if unflushed.0 == 0 {
        return;
    }
    let count = std::mem::replace(&mut unflushed.0, 0);
    inbox.finished(count);
    match output.writer().flush() {
        Ok(()) => {
            inbox.stats().sent.fetch_add(count, Ordering::Relaxed);
            if std::mem::take(failing) {
                tracing::info!(file = %output.describe(), "Events file writable again");
            }
        }
        Err(e) => {
            inbox.stats().lost.fetch_add(count, Ordering::Relaxed);
            // One error line per streak of failures, not one per event.
            if !std::mem::replace(failing, true) {
                tracing::error!(
                    file = %output.describe(),
                    "Cannot write events: {e}; counting them as lost until it recovers"
                );
            }
            // What a failed flush leaves in the buffer is counted above:
            // start the next batch on an empty buffer.
            if let Output::File { path, writer } = output
                && let Ok(file) = open_append(path)
            {
                // Dropped without the flush a BufWriter tries on drop.
                let (_file, _unwritten) =
                    std::mem::replace(writer, BufWriter::new(file)).into_parts();
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

    #[test]
    fn an_unwritable_path_fails_the_start_naming_it() {
        let error = spawn_events_file(Path::new("/nonexistent-dir/events.jsonl"), 4).unwrap_err();
        assert_eq!(
            error.to_string(),
            "events file /nonexistent-dir/events.jsonl: No such file or directory (os error 2)"
        );
    }
}
