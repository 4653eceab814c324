//! `segwatch check`: validate policy files.

use segwatch::policy::{Level, load_policy_file};

use super::{CheckArgs, Error, Status};

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
                status = Status::BadInput;
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
    Ok(status)
}
