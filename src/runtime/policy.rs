//! The policy in force, swapped whole on reload.
//!
//! Workers load the current [`LivePolicy`] once per batch (an `arc-swap`
//! load: no lock) and judge with it; a flow judged under an older generation
//! is judged again at its next packet (contract section 2). A policy that
//! does not load is refused: the one in force stays, and the failure is
//! logged and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::classify::CompiledPolicy;
use crate::metrics::PolicyStats;
use crate::policy::{Diagnostic, Level, load_policy_file, load_policy_str};

/// A compiled policy and its generation (1 for the first, +1 per reload).
pub use crate::classify::PolicyInForce as LivePolicy;

/// Where the policy comes from.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Embedded,
}

/// The policy in force, and its reload history.
#[derive(Debug)]
pub struct PolicyHandle {
    current: ArcSwap<LivePolicy>,
    origin: Origin,
    /// Reloads by outcome and the generation in force, for the metrics.
    pub stats: Arc<PolicyStats>,
    /// The file's modification time and length when last loaded or tried.
    /// Control plane only (reload and the watch timer), never workers.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

/// Why a policy did not load: its error lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", .lines.join("; "))]
pub struct PolicyLoadError {
    /// One line per error (file:line:col: error: ...).
    pub lines: Vec<String>,
}

/// Loads and compiles the policy file, with its warnings.
fn compile_file(path: &Path) -> Result<(CompiledPolicy, Vec<Diagnostic>), PolicyLoadError> {
    match load_policy_file(path) {
        Ok((policy, warnings)) => Ok((CompiledPolicy::compile(&policy), warnings)),
        Err(error) => {
            let lines: Vec<String> = error
                .diagnostics
                .iter()
                .filter(|d| d.level == Level::Error)
                .map(ToString::to_string)
                .collect();
            let lines = if lines.is_empty() {
                vec![format!("{}: invalid policy", path.display())]
            } else {
                lines
            };
            Err(PolicyLoadError { lines })
        }
    }
}

/// The metrics' view of a policy just loaded: generation 1, no reloads.
fn first_generation_stats() -> Arc<PolicyStats> {
    let stats = PolicyStats::default();
    stats.generation.store(1, Ordering::Relaxed);
    Arc::new(stats)
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl PolicyHandle {
    /// Loads the policy file, with its warnings for the caller to report;
    /// an invalid one is an error.
    pub fn from_file(path: &Path) -> Result<(PolicyHandle, Vec<Diagnostic>), PolicyLoadError> {
        let stamp = file_stamp(path);
        let (policy, warnings) = compile_file(path)?;
        let handle = PolicyHandle {
            current: ArcSwap::from_pointee(LivePolicy::new(policy, 1)),
            origin: Origin::File(path.to_owned()),
            stats: first_generation_stats(),
            seen: std::sync::Mutex::new(stamp),
        };
        Ok((handle, warnings))
    }

    /// A policy built into the binary (the demo's), with its warnings.
    pub fn embedded(
        text: &'static str,
        name: &str,
    ) -> Result<(PolicyHandle, Vec<Diagnostic>), PolicyLoadError> {
        let (policy, warnings) =
            load_policy_str(text, Path::new(name)).map_err(|e| PolicyLoadError {
                lines: vec![e.to_string()],
            })?;
        let handle = PolicyHandle {
            current: ArcSwap::from_pointee(LivePolicy::new(CompiledPolicy::compile(&policy), 1)),
            origin: Origin::Embedded,
            stats: first_generation_stats(),
            seen: std::sync::Mutex::new(None),
        };
        Ok((handle, warnings))
    }

    /// The policy in force.
    #[inline]
    pub fn current(&self) -> Arc<LivePolicy> {
        self.current.load_full()
    }

    /// Loads the file again and swaps it in; on failure the policy in force
    /// stays. Either way the outcome is logged and counted: a reload happens
    /// while the daemon runs, so its log is where it is reported.
    pub fn reload(&self) -> Result<u32, PolicyLoadError> {
        let Origin::File(path) = &self.origin else {
            return Ok(self.current().generation);
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = file_stamp(path);
        }
        match compile_file(path) {
            Ok((policy, warnings)) => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
                let generation = self.current().generation + 1;
                self.current
                    .store(Arc::new(LivePolicy::new(policy, generation)));
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .generation
                    .store(u64::from(generation), Ordering::Relaxed);
                tracing::info!(policy = %path.display(), generation, "Policy reloaded");
                Ok(generation)
            }
            Err(error) => {
                self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for line in &error.lines {
                    tracing::error!("Policy reload refused, keeping the policy in force: {line}");
                }
                Err(error)
            }
        }
    }

    /// True when the file changed (time or length) since it was last read.
    pub fn changed_on_disk(&self) -> bool {
        let Origin::File(path) = &self.origin else {
            return false;
        };
        let now = file_stamp(path);
        self.seen
            .lock()
            .map(|seen| now.is_some() && *seen != now)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[zones.a]\nnetworks = [\"10.0.0.0/8\"]\n";

    #[test]
    fn reload_swaps_a_valid_policy_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, GOOD).unwrap();
        let (handle, _) = PolicyHandle::from_file(&path).unwrap();
        assert_eq!(handle.current().generation, 1);
        assert!(!handle.changed_on_disk());

        std::fs::write(&path, "[zones.a]\nnetworks = [\"not-a-network\"]\n").unwrap();
        assert!(handle.changed_on_disk());
        let error = handle.reload().unwrap_err();
        assert!(error.lines[0].contains("p.toml:2:"), "{error}");
        assert_eq!(handle.current().generation, 1, "the old policy stays");
        assert_eq!(handle.stats.reloads_failed.load(Ordering::Relaxed), 1);
        assert!(
            !handle.changed_on_disk(),
            "a refused file is not retried until it changes"
        );

        std::fs::write(
            &path,
            format!("{GOOD}[zones.b]\nnetworks = [\"192.168.0.0/16\"]\n"),
        )
        .unwrap();
        assert_eq!(handle.reload().unwrap(), 2);
        assert_eq!(handle.current().policy.zone_count(), 2);
        assert_eq!(handle.stats.reloads_ok.load(Ordering::Relaxed), 1);
    }
}
