//! Files replaced whole: a reader sees the old file or the new one, never a
//! part, and a crash leaves one of the two.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `dir/name` with `bytes`: written to a fresh temporary file beside
/// it (created with `mode`, never through a link), flushed to disk, renamed
/// over the old file, and the directory flushed so that the rename lasts.
/// The error names neither file: the caller does.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        replace_file(dir.path(), "f", b"one", 0o600).unwrap();
        replace_file(dir.path(), "f", b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
