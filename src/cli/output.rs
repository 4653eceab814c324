//! Files the commands write (`replay --output` and `--inventory`, `learn
//! --output`, `synth --output`), written so that a typo cannot destroy data.
//!
//! - An output that is the same file as one of the command's inputs (same
//!   device and inode, whatever links or symbolic links name it) is refused
//!   before anything is written: truncating a capture while it is read
//!   loses it.
//! - A regular file is written under a temporary name in its own directory
//!   and renamed into place when the command ends, whatever its exit
//!   status: events written before a corrupt record stay written (contract
//!   section 4), and an old file is replaced whole or not at all. A
//!   symbolic link to a regular file keeps pointing to it: its target is
//!   what is replaced.
//! - Anything else (a pipe, a FIFO, a terminal, `/dev/stdout`, `/dev/null`,
//!   `/proc/self/fd/N`) is written directly: it cannot be renamed over.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Error;

/// Bytes buffered before a write reaches the file.
const BUFFER: usize = 1 << 16;

/// Refuses `output` when it names the same file as one of `inputs` (`-`
/// standing for standard input). An output that does not exist yet is no
/// input.
pub fn refuse_an_input(output: &Path, inputs: &[&Path]) -> Result<(), Error> {
    let Ok(written) = std::fs::metadata(output) else {
        return Ok(());
    };
    for input in inputs {
        let read = if *input == Path::new("-") {
            std::fs::metadata("/dev/stdin")
        } else {
            std::fs::metadata(input)
        };
        if read.is_ok_and(|read| same_file(&read, &written)) {
            return Err(Error::OutputIsAnInput {
                output: output.to_owned(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A file being written; see the module documentation. [`finish`] puts it
/// in place and reports the last error; dropping it unfinished (a command
/// that stops on an error) still puts in place what was written.
///
/// [`finish`]: OutputFile::finish
pub struct OutputFile {
    out: BufWriter<File>,
    /// The path the user gave, for messages.
    path: PathBuf,
    /// The temporary file and the file it replaces, when the output is a
    /// regular file.
    staged: Option<(PathBuf, PathBuf)>,
}

impl OutputFile {
    /// Checks `path` against `inputs` (see [`refuse_an_input`]) and opens it
    /// for writing.
    pub fn create(path: &Path, inputs: &[&Path]) -> Result<OutputFile, Error> {
        refuse_an_input(path, inputs)?;
        let error = |e| Error::file(path, e);
        let target = match std::fs::metadata(path) {
            _ if is_a_process_file(path) => None,
            Ok(metadata) if !metadata.is_file() => None,
            Ok(_) => Some(std::fs::canonicalize(path).map_err(error)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(path.to_owned()),
            Err(e) => return Err(error(e)),
        };
        let Some(target) = target else {
            let file = File::create(path).map_err(error)?;
            return Ok(OutputFile {
                out: BufWriter::with_capacity(BUFFER, file),
                path: path.to_owned(),
                staged: None,
            });
        };
        let (temp, file) = create_temporary(&target).map_err(error)?;
        // The replaced file's permissions carry over to the new one.
        if let Ok(old) = std::fs::metadata(&target) {
            let _ = file.set_permissions(old.permissions());
        }
        Ok(OutputFile {
            out: BufWriter::with_capacity(BUFFER, file),
            path: path.to_owned(),
            staged: Some((temp, target)),
        })
    }

    /// Writes what is buffered and puts the file in place.
    pub fn finish(mut self) -> Result<(), Error> {
        let flushed = self.out.flush();
        let placed = self.place();
        flushed.and(placed).map_err(|e| Error::file(&self.path, e))
    }

    /// Renames the temporary file over the target, once.
    fn place(&mut self) -> std::io::Result<()> {
        match self.staged.take() {
            Some((temp, target)) => std::fs::rename(&temp, &target).inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            }),
            None => Ok(()),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.staged.is_none() {
            return;
        }
        let flushed = self.out.flush();
        if let Err(e) = flushed.and(self.place()) {
            super::stderr_line(format_args!(
                "segwatch: error: {}: {e}",
                self.path.display()
            ));
        }
    }
}

/// Files of the process's own descriptors (`/dev/stdout`, `/dev/fd/1`,
/// `/proc/self/fd/1`) lead to whatever the descriptor holds, maybe a regular
/// file a shell opened with `>>`: they are written through, never replaced.
fn is_a_process_file(path: &Path) -> bool {
    path.starts_with("/dev") || path.starts_with("/proc")
}

/// Creates a fresh file beside `target`, named after it and this process.
fn create_temporary(target: &Path) -> std::io::Result<(PathBuf, File)> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy());
    let mut attempt = 0u32;
    loop {
        let temp = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    fn written(path: &Path, text: &str) -> Result<(), Error> {
        let mut out = OutputFile::create(path, &[])?;
        out.write_all(text.as_bytes()).unwrap();
        out.finish()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn an_input_named_by_a_link_or_a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("capture.pcap");
        std::fs::write(&input, "capture").unwrap();
        let hard = dir.path().join("hard.pcap");
        std::fs::hard_link(&input, &hard).unwrap();
        let soft = dir.path().join("soft.pcap");
        std::os::unix::fs::symlink(&input, &soft).unwrap();
        for output in [&input, &hard, &soft] {
            let error = OutputFile::create(output, &[&input]).err().unwrap();
            assert!(matches!(error, Error::OutputIsAnInput { .. }), "{error}");
            assert!(error.to_string().starts_with(&output.display().to_string()));
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"capture");
        assert!(leftovers(dir.path()).is_empty());
        // Another file is fine.
        written(&dir.path().join("events.jsonl"), "e\n").unwrap();
    }

    #[test]
    fn a_regular_file_appears_whole_when_finished_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut out = OutputFile::create(&path, &[]).unwrap();
        out.write_all(b"new\n").unwrap();
        out.flush().unwrap();
        // Until the end the old file is untouched.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        drop(out);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_symbolic_link_keeps_pointing_to_the_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.jsonl");
        std::fs::write(&target, "old\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        written(&link, "new\n").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
    }

    #[test]
    fn a_fifo_is_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("events.fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        written(&fifo, "through\n").unwrap();
        assert_eq!(reader.join().unwrap(), "through\n");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn dev_null_is_written_directly() {
        written(Path::new("/dev/null"), "gone\n").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
}
