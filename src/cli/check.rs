//! `segwatch check`: validate policy files.

use super::{CheckArgs, EXIT_BAD_INPUT, EXIT_OK};
use crate::policy::{Level, load_policy_file};

/// Runs `segwatch check`; returns the exit status.
///
/// Diagnostics go to stderr, one line each (`FILE:LINE:COL: error: ...`); a
/// one-line verdict per file goes to stdout.
pub fn run(args: &CheckArgs) -> u8 {
    let mut status = EXIT_OK;
    for path in &args.files {
        match load_policy_file(path) {
            Ok((policy, warnings)) => {
                for warning in &warnings {
                    super::stderr_line(warning);
                }
                println!(
                    "{}: ok: policy {:?}, {} zones, {} services, {} rules, {} warnings",
                    path.display(),
                    policy.name,
                    policy.zones.len(),
                    policy.services.len(),
                    policy.rules.len(),
                    warnings.len()
                );
            }
            Err(error) => {
                status = EXIT_BAD_INPUT;
                for diagnostic in &error.diagnostics {
                    super::stderr_line(diagnostic);
                }
                let errors = error
                    .diagnostics
                    .iter()
                    .filter(|d| d.level == Level::Error)
                    .count();
                println!("{}: invalid: {} errors", path.display(), errors.max(1));
            }
        }
    }
    status
}
