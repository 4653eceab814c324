//! `segwatch replay`: judge capture files offline.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use segwatch::capture::CaptureFile;
use segwatch::classify::CompiledPolicy;
use segwatch::policy::{Severity, load_policy_file};
use segwatch::replay::{PolicyCache, PolicySource, ReplayOptions, replay};

use super::output::{OutputFile, refuse_an_input};
use super::{Error, ReplayArgs, Status};

/// Runs `segwatch replay`.
pub fn run(args: &ReplayArgs) -> Result<Status, Error> {
    let policy_start = std::time::Instant::now();
    let (policy, source) = load_policy(&args.policy, args.policy_cache.as_deref())?;
    let policy_time = policy_start.elapsed();
    tracing::info!(
        policy = %args.policy.display(),
        zones = policy.zone_count(),
        rules = policy.rules().len(),
        pair_tables = policy.distinct_pair_tables(),
        ms = policy_time.as_millis() as u64,
        source = ?source,
        "Policy loaded and compiled"
    );

    // Open every capture before judging anything, so a bad file name fails
    // the run before it writes a single event.
    let captures = open_captures(&args.captures)?;

    // No output may be one of the inputs; both are checked before the
    // first event is written.
    let mut inputs: Vec<&Path> = args.captures.iter().map(PathBuf::as_path).collect();
    inputs.push(&args.policy);
    inputs.extend(args.exceptions.as_deref());
    if let Some(path) = &args.inventory {
        refuse_an_input(path, &inputs)?;
    }
    let mut out = match &args.output {
        Some(path) => Events::File(OutputFile::create(path, &inputs)?),
        None => Events::Stdout(BufWriter::with_capacity(1 << 16, std::io::stdout())),
    };

    let mut options = options_of(args);
    let inventory = args.inventory.as_ref().map(|_| {
        std::sync::Arc::new(segwatch::inventory::Inventory::new(
            segwatch::inventory::DEFAULT_CAPACITY,
            std::sync::Arc::new(segwatch::inventory::OuiRegistry::load_default()),
        ))
    });
    options.inventory = inventory.clone();
    // A policy whose verdicts depend on applications needs detection.
    options.detect_apps = args.apps || policy.needs_app();
    options.exiting_after = true;
    tracing::info!(
        files = captures.len(),
        threads = options.threads,
        "Replaying captures"
    );
    let mut policy = segwatch::classify::PolicyInForce::new(policy, 0);
    if let Some(path) = &args.exceptions {
        policy.exceptions = load_exceptions(path, &args.policy)?;
    }
    let outcome = replay(&captures, &policy, &options, &mut out);
    // The events written stay written whatever happened: an output file is
    // put in place before any error is returned.
    let finished = out.finish();
    let outcome = outcome?;
    finished?;
    if let (Some(path), Some(inventory)) = (&args.inventory, &inventory) {
        write_inventory(path, inventory, &inputs)?;
    }

    tracing::info!(
        packets = outcome.stats.packets.packets,
        violations = outcome.stats.violations.total(),
        "Replay finished"
    );
    for (path, cut) in &outcome.truncations {
        super::stderr_line(format_args!(
            "segwatch: warning: {}: capture cut inside its last record at byte {}; judged the {} \
             frames before the cut",
            path.display(),
            cut.offset,
            cut.frames_before
        ));
    }
    if !args.quiet {
        use std::fmt::Write as _;
        let policy_in_force = &policy;
        let policy = &policy.policy;
        let mut summary = outcome.stats.summary(policy, outcome.elapsed);
        let stages = outcome.stages;
        // Writing to a String cannot fail.
        let _ = write!(
            summary,
            "\n  policy         {}, {}, {} in {:.3} s\n  \
             stages         read {:.3} s, decode {:.3} s, track {:.3} s (reading and decoding \
             overlap tracking)",
            super::counted(policy.zone_count() as u64, "zone"),
            super::counted(policy.rules().len() as u64, "rule"),
            match source {
                Some(PolicySource::Cache) => "read from the policy cache",
                Some(PolicySource::CompiledAndStored) => "read, compiled and cached",
                Some(PolicySource::Compiled(_)) => "read and compiled (not cached)",
                None => "read and compiled",
            },
            policy_time.as_secs_f64(),
            stages.read.as_secs_f64(),
            stages.decode.as_secs_f64(),
            stages.track.as_secs_f64()
        );
        if let Some(counters) = &outcome.incidents {
            let _ = write!(summary, "\n{}", incidents_line(counters));
        }
        if args.exceptions.is_some() {
            let _ = write!(
                summary,
                "\n{}",
                excepted_line(&outcome.stats.violations, &policy_in_force.exceptions)
            );
        }
        super::stderr_line(summary);
    }
    // Events written before a corrupt record stay written: the error comes
    // after them and the summary.
    if let Some(error) = outcome.capture_error {
        return Err(error.into());
    }
    let status = match args.fail_on.map(Severity::from) {
        Some(threshold) if outcome.stats.violations.any_at_or_above(threshold) => {
            // Said even with --quiet: a CI log must tell why the job failed.
            let n = outcome.stats.violations.at_or_above(threshold);
            super::stderr_line(format_args!(
                "segwatch: exit status 1: {n} violation{} at or above {} (--fail-on {})",
                if n == 1 { "" } else { "s" },
                threshold.as_str(),
                threshold.as_str()
            ));
            Status::Findings
        }
        _ => Status::Ran,
    };
    // The process exits now: the kernel unmaps the captures with the rest,
    // and takes back the policy's memory without freeing its thousands of
    // allocations one by one (2-3 ms for a 5,000-rule policy).
    std::mem::forget(captures);
    std::mem::forget(policy);
    Ok(status)
}

/// Where the events go.
enum Events {
    Stdout(BufWriter<std::io::Stdout>),
    File(OutputFile),
}

impl Events {
    /// Writes what is buffered and puts an output file in place.
    fn finish(self) -> Result<(), Error> {
        match self {
            Events::Stdout(mut out) => out.flush().map_err(|source| Error::Write {
                what: "writing to stdout",
                source,
            }),
            Events::File(file) => file.finish(),
        }
    }
}

impl Write for Events {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Events::Stdout(out) => out.write(buf),
            Events::File(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Events::Stdout(out) => out.write_all(buf),
            Events::File(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Events::Stdout(out) => out.flush(),
            Events::File(out) => out.flush(),
        }
    }
}

/// The summary's line of incidents: by kind, and each kind by severity.
fn incidents_line(counters: &segwatch::incident::FoldCounters) -> String {
    use segwatch::event::IncidentKind;
    use segwatch::policy::Severity;
    let total: u64 = counters.opened.iter().flatten().sum();
    let kinds: Vec<String> = IncidentKind::ALL
        .iter()
        .zip(&counters.opened)
        .map(|(kind, by_severity)| {
            let n: u64 = by_severity.iter().sum();
            let severities: Vec<String> = Severity::ALL
                .iter()
                .rev()
                .filter(|s| by_severity[**s as usize] > 0)
                .map(|s| format!("{} {}", by_severity[*s as usize], s.as_str()))
                .collect();
            if severities.is_empty() {
                format!("{n} {}", kind.as_str())
            } else {
                format!("{n} {} ({})", kind.as_str(), severities.join(", "))
            }
        })
        .collect();
    let mut line = format!("  incidents      {total}: {}", kinds.join("; "));
    if counters.opened_excepted > 0 {
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "; {} sweeps and scans excepted",
            counters.opened_excepted
        );
    }
    if counters.untracked > 0 || counters.not_opened > 0 {
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "; {} sweep/scan trackings dropped, {} not opened (too many open)",
            counters.untracked, counters.not_opened
        );
    }
    line
}

/// The summary's line of excepted violations: the total, then each
/// exception of the file in file order with the violations it excepted (and
/// those its scope covered after it expired).
fn excepted_line(
    violations: &segwatch::pipeline::ViolationCounts,
    exceptions: &segwatch::exception::Exceptions,
) -> String {
    let mut unused = 0;
    let per_exception: Vec<String> = exceptions
        .list()
        .iter()
        .filter_map(|exception| {
            let hits = violations
                .by_exception()
                .iter()
                .find(|h| h.id == exception.id);
            let (n, expired) = hits.map_or((0, 0), |h| (h.hits, h.expired_hits));
            match (n, expired) {
                (0, 0) => {
                    unused += 1;
                    None
                }
                (n, 0) => Some(format!("{} {n}", exception.id)),
                (n, expired) => Some(format!("{} {n}, {expired} after expiry", exception.id)),
            }
        })
        .collect();
    let mut parts = per_exception;
    if unused > 0 {
        parts.push(format!("{unused} without a hit"));
    }
    format!(
        "  excepted       {} ({})",
        violations.excepted_total(),
        parts.join("; ")
    )
}

/// Writes the inventory as CSV (a `.csv` path) or JSON.
fn write_inventory(
    path: &Path,
    inventory: &segwatch::inventory::Inventory,
    inputs: &[&Path],
) -> Result<(), Error> {
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let bytes = if csv {
        segwatch::inventory::to_csv(inventory)
            .map_err(|e| Error::file(path, std::io::Error::other(e)))?
    } else {
        let mut text = segwatch::inventory::to_json(inventory);
        text.push('\n');
        text.into_bytes()
    };
    let mut out = OutputFile::create(path, inputs)?;
    out.write_all(&bytes).map_err(|e| Error::file(path, e))?;
    out.finish()
}

/// Loads and compiles a policy and prints its warnings. With a cache
/// directory, the policy may come from the cache (see [`PolicyCache`]); the
/// source is `None` without one. For a command that exits after using it:
/// the policy as read is not freed (see the end of [`run`]).
pub(super) fn load_policy(
    path: &std::path::Path,
    cache: Option<&std::path::Path>,
) -> Result<(CompiledPolicy, Option<PolicySource>), Error> {
    let loaded = match cache {
        Some(cache) => PolicyCache::new(cache)
            .load(path)
            .map(|loaded| (loaded.compiled, loaded.warnings, Some(loaded.source))),
        None => load_policy_file(path).map(|(policy, warnings)| {
            let compiled = CompiledPolicy::compile(&policy);
            std::mem::forget(policy);
            (compiled, warnings, None)
        }),
    };
    let (compiled, warnings, source) = loaded.map_err(|error| Error::Policy {
        path: path.to_owned(),
        error,
    })?;
    print_policy_warnings(&warnings);
    Ok((compiled, source))
}

/// Loads the exceptions file, checked against the policy file (read again
/// for its names: a policy from the cache holds only what judging needs),
/// and prints its warnings.
pub(super) fn load_exceptions(
    path: &std::path::Path,
    policy_path: &std::path::Path,
) -> Result<segwatch::exception::Exceptions, Error> {
    use segwatch::exception::{Exceptions, PolicyNames, load_exceptions_file};
    let (policy, _) = load_policy_file(policy_path).map_err(|error| Error::Policy {
        path: policy_path.to_owned(),
        error,
    })?;
    let (list, warnings) =
        load_exceptions_file(path, &PolicyNames::of(&policy), None).map_err(|error| {
            Error::Policy {
                path: path.to_owned(),
                error,
            }
        })?;
    print_policy_warnings(&warnings);
    Ok(Exceptions::new(list))
}

/// Loads a policy and prints its warnings.
pub(super) fn read_policy(path: &std::path::Path) -> Result<segwatch::policy::Policy, Error> {
    let (policy, warnings) = load_policy_file(path).map_err(|error| Error::Policy {
        path: path.to_owned(),
        error,
    })?;
    print_policy_warnings(&warnings);
    Ok(policy)
}

/// Prints a policy's warnings, one line each.
fn print_policy_warnings(warnings: &[segwatch::policy::Diagnostic]) {
    for warning in warnings {
        super::stderr_line(format_args!("segwatch: {warning}"));
    }
}

/// The replay's options from the command line (the inventory and application
/// detection are added by the caller, which knows the policy).
fn options_of(args: &ReplayArgs) -> ReplayOptions {
    let mut options = ReplayOptions {
        flows: args.flows.config(),
        batch_size: args.batch_size,
        incidents: args.incidents.settings(),
        ..ReplayOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    if let Some(decapsulation) = &args.decapsulate {
        options.decapsulation = decapsulation.clone();
    }
    if !args.tunnel_endpoints.is_empty() {
        options.decapsulation.endpoints = args.tunnel_endpoints.clone();
    }
    options
}

/// Opens every capture before anything is judged, so that a bad file name
/// fails the command first.
pub(super) fn open_captures(paths: &[std::path::PathBuf]) -> Result<Vec<CaptureFile>, Error> {
    let mut captures = Vec::with_capacity(paths.len());
    for path in paths {
        captures.push(CaptureFile::open(path)?);
    }
    Ok(captures)
}

/// Warns about captures cut inside their last record.
pub(super) fn warn_truncations(
    truncations: &[(std::path::PathBuf, segwatch::capture::Truncation)],
) {
    for (path, cut) in truncations {
        super::stderr_line(format_args!(
            "segwatch: warning: {}: capture cut inside its last record at byte {}; judged up to the cut",
            path.display(),
            cut.offset
        ));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn options(args: &[&str]) -> ReplayOptions {
        let cli = Cli::try_parse_from(
            ["segwatch", "replay", "--policy", "p.toml"]
                .iter()
                .chain(args)
                .chain(&["c.pcap"]),
        )
        .unwrap();
        let Command::Replay(args) = cli.command else {
            panic!("not a replay");
        };
        options_of(&args)
    }

    /// Every tuning flag reaches the replay (`--batch-size` was once parsed
    /// and then ignored).
    #[test]
    fn the_command_line_reaches_the_replay_options() {
        let defaults = options(&[]);
        assert_eq!(defaults.batch_size, ReplayOptions::default().batch_size);
        assert_eq!(defaults.threads, ReplayOptions::default().threads);
        let set = options(&["--batch-size", "7", "--threads", "3", "--udp-timeout", "9s"]);
        assert_eq!(set.batch_size, 7);
        assert_eq!(set.threads, 3);
        assert_eq!(set.flows.udp_timeout, std::time::Duration::from_secs(9));
    }
}
