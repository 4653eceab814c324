//! `segwatch report`: the segmentation evidence report.

use std::path::Path;

use segwatch::classify::{CompiledPolicy, PolicyInForce};
use segwatch::event::Timestamp;
use segwatch::evidence::HOUR_NS;
use segwatch::report::{Context, Input, Report, ReportError};

use super::{Error, ReportArgs, Status};

/// Runs `segwatch report`.
pub fn run(args: &ReportArgs) -> Result<Status, Error> {
    let generated_at = generated_at(args.generated_at.as_deref())?;
    let policy = super::replay::read_policy(&args.policy)?;
    let compiled = CompiledPolicy::compile(&policy);
    let mut in_force = PolicyInForce::new(compiled, 0);
    if let Some(path) = &args.exceptions {
        in_force.exceptions = super::replay::load_exceptions(path, &args.policy)?;
    }
    let previous = args
        .previous
        .as_deref()
        .map(segwatch::report::read_previous)
        .transpose()?;
    if !args.state.is_empty() {
        return from_state(
            args,
            &args.state,
            &policy,
            &in_force,
            generated_at,
            previous,
        );
    }
    let captures = super::replay::open_captures(&args.captures)?;

    let mut options = segwatch::replay::ReplayOptions {
        flows: args.flows.config(),
        ..segwatch::replay::ReplayOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    // The inputs are hashed while the captures are judged: both read the
    // same files, and the page cache serves the second.
    let (gathered, inputs) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| hash_inputs(args));
        let gathered = segwatch::report::evidence_from_captures(&captures, &in_force, options);
        let inputs = hashing.join().unwrap_or_else(|_| {
            Err(ReportError::Previous {
                path: args.policy.clone(),
                reason: "hashing the inputs failed".into(),
            })
        });
        (gathered, inputs)
    });
    let gathered = gathered?;
    let inputs = inputs?;
    super::replay::warn_truncations(&gathered.outcome.truncations);
    let evidence = gathered.evidence;
    let period = match (evidence.hours.keys().next(), evidence.hours.keys().last()) {
        (Some(&first), Some(&last)) => (first * HOUR_NS, (last + 1) * HOUR_NS),
        _ => {
            return Err(Error::Report(ReportError::State {
                path: args.captures[0].clone(),
                reason: "no IP traffic in the captures: nothing to report on".into(),
            }));
        }
    };
    let report = Report::build(
        &evidence,
        Context {
            policy: &policy,
            exceptions: in_force.exceptions.list(),
            period,
            generated_at,
            source: "captures",
            inputs,
            previous,
        },
    );
    write_all(&report, args)?;
    Ok(Status::Ran)
}

/// `segwatch report --state DIR... --since --until`.
fn from_state(
    args: &ReportArgs,
    dirs: &[std::path::PathBuf],
    policy: &segwatch::policy::Policy,
    in_force: &PolicyInForce,
    generated_at: String,
    previous: Option<segwatch::report::Previous>,
) -> Result<Status, Error> {
    let since = period_bound("--since", args.since.as_deref())?;
    let until = period_bound("--until", args.until.as_deref())?;
    if until <= since {
        return Err(bad_flag("--until", "must be after --since".into()));
    }
    let mut evidence = segwatch::evidence::Evidence::default();
    let mut files = Vec::new();
    for dir in dirs {
        let (read, dir_files) =
            segwatch::evidence::state::read_period(dir, since, until).map_err(|e| {
                ReportError::State {
                    path: e.path,
                    reason: e.reason,
                }
            })?;
        if dir_files.is_empty() {
            return Err(no_evidence(dir, since, until));
        }
        if evidence.hours.is_empty() {
            evidence = read;
        } else {
            evidence.merge(&read);
        }
        files.extend(dir_files);
    }
    let mut inputs: Vec<Input> = files
        .into_iter()
        .map(|file| Input {
            kind: "state".into(),
            path: file.path.display().to_string(),
            bytes: file.bytes,
            sha256: file.sha256,
        })
        .collect();
    inputs.push(segwatch::report::input("policy", &args.policy)?);
    if let Some(path) = &args.exceptions {
        inputs.push(segwatch::report::input("exceptions", path)?);
    }
    if let Some(path) = &args.previous {
        inputs.push(segwatch::report::input("previous", path)?);
    }
    let report = Report::build(
        &evidence,
        Context {
            policy,
            exceptions: in_force.exceptions.list(),
            period: (since, until),
            generated_at,
            source: "state",
            inputs,
            previous,
        },
    );
    write_all(&report, args)?;
    Ok(Status::Ran)
}

/// A state directory without a file of the period.
fn no_evidence(dir: &Path, since: u64, until: u64) -> Error {
    Error::Report(ReportError::State {
        path: dir.to_owned(),
        reason: format!(
            "no evidence from {} to {} (the daemon writes an hour's file when the hour ends \
             and at stop)",
            segwatch::report::model::time_text(since),
            segwatch::report::model::time_text(until)
        ),
    })
}

fn bad_flag(flag: &str, reason: String) -> Error {
    Error::Report(ReportError::State {
        path: Path::new(flag).to_owned(),
        reason,
    })
}

/// A `--since` or `--until`: a date (midnight UTC) or an RFC 3339 time.
fn period_bound(flag: &str, text: Option<&str>) -> Result<u64, Error> {
    let text = text.unwrap_or_default();
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    Timestamp::parse(&full).map(|t| t.0).ok_or_else(|| {
        bad_flag(
            flag,
            format!("{text:?} is not a date (2026-11-01) or an RFC 3339 time"),
        )
    })
}

/// Writes the report's files, and the PDF when asked.
fn write_all(report: &Report, args: &ReportArgs) -> Result<(), Error> {
    let written = segwatch::report::write(report, &args.out)?;
    if args.pdf {
        let html = args.out.join("report.html");
        // `generated_at` was written from a parsed time: it parses back.
        let dated = Timestamp::parse(&report.generated_at).map_or(0, |t| t.0);
        segwatch::report::print_pdf(&html, &args.out.join("report.pdf"), dated)?;
    }
    super::stderr_line(format_args!(
        "segwatch: report of {} to {} written to {} ({}{}); conformance {:.2} %, {}, {} excepted, \
         {}",
        report.period.start,
        report.period.end,
        args.out.display(),
        super::counted(written.len() as u64, "file"),
        if args.pdf { " and report.pdf" } else { "" },
        report.summary.conformance_percent,
        super::counted(report.summary.violations, "violation"),
        report.summary.excepted,
        super::counted(report.summary.incidents, "incident")
    ));
    Ok(())
}

/// Every input file with its SHA-256: captures, policy, exceptions,
/// previous report.
fn hash_inputs(args: &ReportArgs) -> Result<Vec<Input>, ReportError> {
    let mut inputs = Vec::new();
    for capture in &args.captures {
        inputs.push(segwatch::report::input("capture", capture)?);
    }
    inputs.push(segwatch::report::input("policy", &args.policy)?);
    if let Some(path) = &args.exceptions {
        inputs.push(segwatch::report::input("exceptions", path)?);
    }
    if let Some(path) = &args.previous {
        inputs.push(segwatch::report::input("previous", path)?);
    }
    Ok(inputs)
}

/// `--generated-at` normalised to RFC 3339 seconds, or now.
fn generated_at(given: Option<&str>) -> Result<String, Error> {
    let ts = match given {
        Some(text) => Timestamp::parse(text).ok_or_else(|| {
            bad_flag(
                "--generated-at",
                format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-07T12:00:00Z)"),
            )
        })?,
        None => Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        ),
    };
    Ok(segwatch::report::model::time_text(ts.0))
}
