//! Issue 16: what a crowded host, a hostile user and a full disk do to the
//! daemon's files and its log. Tests that need root (planting a link for a
//! daemon that drops privileges, mounting a small file system) run as root,
//! as CI does, and are skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{SEGWATCH, root};

/// True when the tests run as root (CI does).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            Some(line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

fn mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 16.4: the unprivileged user a root-started daemon drops to plants
/// a link where the events file goes, pointing at a root-only file; the
/// daemon refuses it with one line naming the path, before anything is
/// written, and the root-only file is untouched.
#[test]
fn a_symlink_planted_in_place_of_the_events_file_is_refused() {
    if !is_root() {
        eprintln!("skipped: the planted-link test needs root (a daemon that drops privileges)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The directory the events go to belongs to the user the daemon drops
    // to, as /var/log/segwatch does.
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    mode(dir.path(), 0o755);
    mode(&logs, 0o777);
    let secret = dir.path().join("root-only");
    std::fs::write(&secret, "root's own\n").unwrap();
    mode(&secret, 0o600);
    let events = logs.join("events.jsonl");
    std::os::unix::fs::symlink(&secret, &events).unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[process]\nuser = \"nobody\"\n").unwrap();
    let out = Command::new(SEGWATCH)
        .args(["run", "--metrics-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--pcap")
        .arg(sample())
        .arg("--policy")
        .arg(example_policy())
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "segwatch: error: events file {}: is a symbolic link: refusing to follow it (name \
             the file itself, or remove the link)\n",
            events.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's own\n");
}
