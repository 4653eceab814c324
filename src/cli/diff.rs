//! `segwatch diff`: what a candidate policy would change.

use std::io::Write;

use segwatch::diff::{ChangeKind, FlowChange, PolicyDiff, diff_policies};
use segwatch::replay::ReplayOptions;

use super::replay::{open_captures, read_policy, warn_truncations};
use super::{DiffArgs, DiffFailOn, Error, Status};

/// Runs `segwatch diff`: [`Status::Findings`] when the changes it was asked
/// to fail on are found.
pub fn run(args: &DiffArgs) -> Result<Status, Error> {
    let current = read_policy(&args.policy)?;
    let candidate = read_policy(&args.candidate)?;
    let captures = open_captures(&args.captures)?;
    let mut options = ReplayOptions {
        flows: args.flows.config(),
        ..ReplayOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    let diff = diff_policies(&current, &candidate, &captures, &options)?;
    warn_truncations(&diff.truncations);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if args.json {
        diff.changes.iter().try_for_each(|change| {
            let line = serde_json::to_string(change).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")
        })
    } else {
        report(&mut out, &diff, args.examples)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|source| Error::Write {
            what: "cannot write the report",
            source,
        })?;
    super::stderr_line(format_args!(
        "segwatch diff: {} judged; {} would change: {}, {} no longer alert, {} alert differently",
        super::counted(diff.flows as u64, "flow"),
        diff.changes.len(),
        super::counted(diff.count(ChangeKind::NewAlert) as u64, "new alert"),
        diff.count(ChangeKind::NoLongerAlert),
        diff.count(ChangeKind::AlertChanged),
    ));
    let fails = match args.fail_on {
        DiffFailOn::Any => !diff.changes.is_empty(),
        DiffFailOn::NewAlerts => diff.count(ChangeKind::NewAlert) > 0,
        DiffFailOn::Never => false,
    };
    Ok(if fails { Status::Findings } else { Status::Ran })
}

fn flow_line(change: &FlowChange) -> String {
    let flow = &change.flow;
    let endpoint = |ip: &std::net::IpAddr, port: Option<u16>| match (ip, port) {
        (std::net::IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    };
    format!(
        "{} {} -> {} ({} -> {}) flow {} at {}",
        flow.proto,
        endpoint(&flow.src_ip, flow.src_port),
        endpoint(&flow.dest_ip, flow.dest_port),
        flow.src_zone,
        flow.dest_zone,
        flow.flow_id,
        flow.timestamp
    )
}

/// The human report: per kind of change, per pair of deciding rules.
fn report(out: &mut impl Write, diff: &PolicyDiff, examples: usize) -> std::io::Result<()> {
    if diff.changes.is_empty() {
        writeln!(out, "No flow changes its verdict.")?;
        return Ok(());
    }
    let mut last_kind = None;
    for ((kind, now, then), changes) in diff.by_rule() {
        if last_kind != Some(kind) {
            if last_kind.is_some() {
                writeln!(out)?;
            }
            writeln!(out, "{}:", kind.describe())?;
            last_kind = Some(kind);
        }
        let first = changes[0];
        let severity = |s: &Option<String>| s.as_ref().map_or(String::new(), |s| format!(" ({s})"));
        writeln!(
            out,
            "  {} flow{}: now {} by {}{}, candidate {} by {}{}",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" },
            first.current.action,
            now,
            severity(&first.current.severity),
            first.candidate.action,
            then,
            severity(&first.candidate.severity),
        )?;
        for change in changes.iter().take(examples) {
            writeln!(out, "    {}", flow_line(change))?;
        }
        if changes.len() > examples {
            writeln!(out, "    ... and {} more", changes.len() - examples)?;
        }
    }
    Ok(())
}
