//! Incidents and exceptions (contract sections 7 and 8) through the
//! command line, on generated captures spanning hours of capture time: the
//! expected outputs are held in `tests/golden/incidents/` (rewritten with
//! `SEGWATCH_BLESS=1`), and the facts each clause states are asserted on
//! top, so a blessed mistake still fails.

mod exceptions;
mod memory;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::Command;

use segwatch::synth::{Capture, Resolution};
use serde_json::Value;

use crate::common::SEGWATCH;

/// The policy of these tests: a vendor VPN reaching imaging over RDP is a
/// known risk; guests reaching clinical zones is critical; everything not
/// described alerts at medium.
pub const POLICY: &str = r#"
[policy]
name = "incidents-test"
default_action = "alert"
default_severity = "medium"

[zones.vendor-vpn]
networks = ["10.90.0.0/24"]
[zones.imaging]
networks = ["10.40.0.0/24"]
criticality = "clinical"
[zones.office]
networks = ["10.10.0.0/16"]
[zones.guest]
networks = ["10.66.0.0/16"]
criticality = "untrusted"

[services.rdp]
tcp = [3389]
[services.https]
tcp = [443]
[services.ping]
icmp = true

[[rules]]
name = "office-internal"
from = ["office"]
to = ["office"]
action = "allow"

[[rules]]
name = "vendor-remote-session"
from = ["vendor-vpn"]
to = ["imaging"]
services = ["rdp"]
action = "alert"
severity = "high"

[[rules]]
name = "guest-to-clinical"
from = ["guest"]
to = ["imaging", "office"]
action = "alert"
severity = "critical"
"#;

/// A case's files in a temporary directory: the policy, the capture, and
/// an exceptions file when given.
pub struct Case {
    pub dir: tempfile::TempDir,
}

impl Case {
    pub fn new(capture: &Capture, exceptions: Option<&str>) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        capture
            .write_pcap(&dir.path().join("capture.pcap"), Resolution::Micro)
            .unwrap();
        if let Some(text) = exceptions {
            std::fs::write(dir.path().join("exceptions.toml"), text).unwrap();
        }
        Case { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `segwatch replay` of the case with `args`: (exit status, stdout,
    /// stderr).
    pub fn replay(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(SEGWATCH);
        command
            .current_dir(self.dir.path())
            .args(["replay", "--policy", "policy.toml"]);
        if self.path("exceptions.toml").exists() {
            command.args(["--exceptions", "exceptions.toml"]);
        }
        let out = command.args(args).arg("capture.pcap").output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

/// The JSON lines of an output.
pub fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Compares `actual` with `tests/golden/incidents/NAME`, or writes it when
/// blessing.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/incidents")
        .join(name);
    if std::env::var_os("SEGWATCH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (SEGWATCH_BLESS=1 records it)", path.display()));
    assert_eq!(expected, actual, "{} differs", path.display());
}

/// Seconds after the fixture epoch, in ns.
pub fn at(seconds: f64) -> u64 {
    segwatch::synth::at(seconds)
}
