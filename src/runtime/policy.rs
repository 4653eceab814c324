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
use crate::exception::{Exceptions, PolicyNames, load_exceptions_file};
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
    /// The exceptions file, loaded and reloaded with the policy.
    exceptions: Option<PathBuf>,
    /// Reloads by outcome and the generation in force, for the metrics.
    pub stats: Arc<PolicyStats>,
    /// The file's modification time and length when last loaded or tried.
    /// Control plane only (reload and the watch timer), never workers.
    seen: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
}

/// Why a policy did not load: its error lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", .lines.join("; "))]
pub struct PolicyLoadError {
    /// One line per error (file:line:col: error: ...).
    pub lines: Vec<String>,
}

/// Loads and compiles the policy file and, when given, the exceptions file
/// checked against it (contract section 8: they load, and reload,
/// together), with their warnings.
fn compile_file(
    path: &Path,
    exceptions: Option<&Path>,
) -> Result<(CompiledPolicy, Exceptions, Vec<Diagnostic>), PolicyLoadError> {
    match load_policy_file(path) {
        Ok((policy, mut warnings)) => {
            let exceptions = match exceptions {
                Some(file) => {
                    let (list, more) = load_exceptions_file(file, &PolicyNames::of(&policy), None)
                        .map_err(|error| load_error(file, &error))?;
                    warnings.extend(more);
                    Exceptions::new(list)
                }
                None => Exceptions::default(),
            };
            let compiled = CompiledPolicy::compile(&policy);
            // Freeing the policy as read (tens of thousands of allocations for a large one)
            // is left to a thread of its own: the compiled policy goes into force without
            // waiting for it.
            let freeing = std::thread::Builder::new().name("segwatch-policy-free".into());
            if let Err(not_spawned) = freeing.spawn(move || drop(policy)) {
                tracing::debug!("Freeing the parsed policy inline: {not_spawned}");
            }
            Ok((compiled, exceptions, warnings))
        }
        Err(error) => Err(load_error(path, &error)),
    }
}

/// The error lines of a file that did not load.
fn load_error(path: &Path, error: &crate::policy::PolicyError) -> PolicyLoadError {
    let lines: Vec<String> = error
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(ToString::to_string)
        .collect();
    let lines = if lines.is_empty() {
        vec![format!("{}: invalid file", path.display())]
    } else {
        lines
    };
    PolicyLoadError { lines }
}

/// Tells the metrics which exceptions are in force, and when each expires.
fn set_exceptions(stats: &PolicyStats, live: &LivePolicy) {
    if let Ok(mut held) = stats.exceptions.lock() {
        *held = live
            .exceptions
            .list()
            .iter()
            .map(|e| (e.id.clone(), e.expires))
            .collect();
    }
}

/// The metrics' view of a policy just loaded: generation 1, no reloads.
fn first_generation_stats() -> Arc<PolicyStats> {
    let stats = PolicyStats::default();
    stats.loaded(1);
    Arc::new(stats)
}

/// The stamps of the policy file and the exceptions file.
fn stamps(path: &Path, exceptions: Option<&Path>) -> Vec<Option<(SystemTime, u64)>> {
    std::iter::once(path)
        .chain(exceptions)
        .map(file_stamp)
        .collect()
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl PolicyHandle {
    /// Loads the policy file, with its warnings for the caller to report;
    /// an invalid one is an error.
    pub fn from_file(path: &Path) -> Result<(PolicyHandle, Vec<Diagnostic>), PolicyLoadError> {
        Self::from_files(path, None)
    }

    /// Loads the policy file and the exceptions file checked against it.
    pub fn from_files(
        path: &Path,
        exceptions: Option<&Path>,
    ) -> Result<(PolicyHandle, Vec<Diagnostic>), PolicyLoadError> {
        let stamps = stamps(path, exceptions);
        let (policy, exceptions_in_force, warnings) = compile_file(path, exceptions)?;
        let mut live = LivePolicy::new(policy, 1);
        live.exceptions = exceptions_in_force;
        let stats = first_generation_stats();
        set_exceptions(&stats, &live);
        let handle = PolicyHandle {
            current: ArcSwap::from_pointee(live),
            origin: Origin::File(path.to_owned()),
            exceptions: exceptions.map(Path::to_owned),
            stats,
            seen: std::sync::Mutex::new(stamps),
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
            exceptions: None,
            stats: first_generation_stats(),
            seen: std::sync::Mutex::new(Vec::new()),
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
        let exceptions = self.exceptions.as_deref();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamps(path, exceptions);
        }
        match compile_file(path, exceptions) {
            Ok((policy, exceptions_in_force, warnings)) => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
                let generation = self.current().generation + 1;
                let mut live = LivePolicy::new(policy, generation);
                live.exceptions = exceptions_in_force;
                set_exceptions(&self.stats, &live);
                self.current.store(Arc::new(live));
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.stats.loaded(generation);
                tracing::info!(policy = %path.display(), generation, "Policy reloaded");
                Ok(generation)
            }
            Err(error) => {
                self.stats.refused();
                let generation = self.current().generation;
                for line in &error.lines {
                    tracing::error!(
                        policy = %path.display(),
                        generation,
                        "Policy reload refused, keeping the policy and exceptions in force: {line}"
                    );
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
        let now = stamps(path, self.exceptions.as_deref());
        self.seen
            .lock()
            .map(|seen| now.iter().all(Option::is_some) && *seen != now)
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
        let started = handle.stats.last_success_ms.load(Ordering::Relaxed);
        let refused = handle.stats.last_failure_ms.load(Ordering::Relaxed);
        assert!(started > 0 && refused >= started, "{started} {refused}");
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
        // The last attempt took effect: the success is not the earlier time.
        assert!(handle.stats.last_success_ms.load(Ordering::Relaxed) >= refused);
        assert_eq!(
            handle.stats.last_failure_ms.load(Ordering::Relaxed),
            refused,
            "a success leaves the failure's time"
        );
    }
}
