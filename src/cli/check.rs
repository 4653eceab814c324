//! `segwatch check`: validate policy files.

use segwatch::classify::{CompiledPolicy, exception_warnings};
use segwatch::exception::{PolicyNames, load_exceptions_file};
use segwatch::policy::{Level, Policy, load_policy_file};

use super::{CheckArgs, Error, Status, counted};

/// Runs `segwatch check`: [`Status::BadInput`] when a policy is invalid.
///
/// Diagnostics go to stderr, one line each (`FILE:LINE:COL: error: ...`); a
/// one-line verdict per file goes to stdout. An invalid file does not stop
/// the others from being checked.
pub fn run(args: &CheckArgs) -> Result<Status, Error> {
    let mut status = Status::Ran;
    for path in &args.files {
        match load_policy_file(path) {
            Ok((policy, warnings)) => {
                for warning in &warnings {
                    super::stderr_line(warning);
                }
                println!(
                    "{}: ok: policy {:?}, {}, {}, {}, {}",
                    path.display(),
                    policy.name,
                    counted(policy.zones.len() as u64, "zone"),
                    counted(policy.services.len() as u64, "service"),
                    counted(policy.rules.len() as u64, "rule"),
                    counted(warnings.len() as u64, "warning")
                );
                if let Some(exceptions) = &args.exceptions
                    && !check_exceptions(exceptions, &policy)
                {
                    status = Status::BadInput;
                }
            }
            Err(error) => {
                status = Status::BadInput;
                for diagnostic in &error.diagnostics {
                    super::stderr_line(diagnostic);
                }
                let errors = error
                    .diagnostics
                    .iter()
                    .filter(|d| d.level == Level::Error)
                    .count();
                println!(
                    "{}: invalid: {}",
                    path.display(),
                    counted(errors.max(1) as u64, "error")
                );
            }
        }
    }
    Ok(status)
}

/// Checks the exceptions file against `policy`, printing its diagnostics and
/// a verdict line; false when it is invalid.
fn check_exceptions(path: &std::path::Path, policy: &Policy) -> bool {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    match load_exceptions_file(path, &PolicyNames::of(policy), Some(now_ns)) {
        Ok((exceptions, mut warnings)) => {
            let compiled = CompiledPolicy::compile(policy);
            warnings.extend(exception_warnings(&exceptions, path, &compiled, now_ns));
            warnings.sort_by_key(|w| (w.line, w.column));
            for warning in &warnings {
                super::stderr_line(warning);
            }
            println!(
                "{}: ok: {} for policy {:?}, {}",
                path.display(),
                counted(exceptions.len() as u64, "exception"),
                policy.name,
                counted(warnings.len() as u64, "warning")
            );
            true
        }
        Err(error) => {
            for diagnostic in &error.diagnostics {
                super::stderr_line(diagnostic);
            }
            println!(
                "{}: invalid: {}",
                path.display(),
                counted(error.errors().count().max(1) as u64, "error")
            );
            false
        }
    }
}
