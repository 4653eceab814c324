//! Opening the files the daemon writes (the events file, the syslog feeds'
//! spools) without following what someone else planted there.
//!
//! A daemon started as root opens its events file before it drops to
//! `process.user`, and the directory it writes in is often that user's: a
//! symbolic link planted where the file should be would make root append
//! to whatever the link names (a root-only file among them). So every file
//! the daemon writes is opened with `O_NOFOLLOW`, which refuses a link in
//! the path's last component, and `O_NONBLOCK`, so that a FIFO planted
//! there cannot hold the open; what opens must then be a regular file with
//! one name (a hard link to another file is refused too). The caller names
//! the file in its error; the reason reads as one line after it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` with `options` (which say read, write, append, create),
/// refusing a symbolic link, a file other than a regular one, and a file
/// with more than one name.
pub(crate) fn open_written(path: &Path, options: &OpenOptions) -> io::Result<File> {
    let mut options = options.clone();
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path).map_err(|error| {
        if error.raw_os_error() == Some(libc::ELOOP) && is_symlink(path) {
            io::Error::other(
                "is a symbolic link: refusing to follow it (name the file itself, or remove \
                 the link)",
            )
        } else {
            error
        }
    })?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::other(
            "is not a regular file: refusing to write to it",
        ));
    }
    if metadata.nlink() > 1 {
        return Err(io::Error::other(format!(
            "has {} hard links: refusing to write to a file that has other names",
            metadata.nlink()
        )));
    }
    Ok(file)
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Options that append to a file, creating it with `mode` when missing.
pub(crate) fn append_or_create(mode: u32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.append(true).create(true).mode(mode);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_a_fifo_and_a_hard_link_are_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "secret\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = open_written(&link, &append_or_create(0o640)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "is a symbolic link: refusing to follow it (name the file itself, or remove the link)"
        );
        // A dangling link is refused as well, and nothing is created.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(open_written(&dangling, &append_or_create(0o640)).is_err());
        assert!(!dir.path().join("nowhere").exists());

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Without O_NONBLOCK this open would wait for a reader forever.
        let error = open_written(&fifo, &append_or_create(0o640)).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENXIO), "{error}");

        let hard = dir.path().join("hard");
        std::fs::hard_link(&target, &hard).unwrap();
        let error = open_written(&hard, &append_or_create(0o640)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "has 2 hard links: refusing to write to a file that has other names"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret\n");

        let plain = dir.path().join("plain");
        open_written(&plain, &append_or_create(0o640)).unwrap();
        assert!(plain.is_file());
    }
}
