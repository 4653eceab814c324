//! What the commands return, and how it is printed: the exit statuses of the
//! contract (section 4), defined here once, and the error that stops a
//! command, printed by `main` after `segwatch: ` and mapped to status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use segwatch::capture::CaptureError;
use segwatch::config::ConfigError;
use segwatch::policy::PolicyError;
use segwatch::replay::ObserveError;
use segwatch::replay::OutputError;
use segwatch::runtime::{PolicyLoadError, RunError};

use super::learn_live::RecordError;
use super::stderr_line;

/// The exit status of a command that ran to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 0: ran; for `check` every policy is valid, for `diff` nothing changes.
    Ran = 0,
    /// 1: a violation at or above `replay --fail-on`, changes `diff` was
    /// asked to fail on, or a daemon that stopped with events neither
    /// delivered nor spooled.
    Findings = 1,
    /// 2: bad input (a capture, a policy, a configuration, a flag); it wins
    /// over 1. `check` returns it after printing each file's problems; a
    /// command stopped by an [`Error`] exits with it too.
    BadInput = 2,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// Why a command stopped before its end. Each prints as one line naming the
/// file and the problem, except a policy that does not load, which prints
/// each of its errors on its own line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy file that does not load (`replay`, `learn`, `diff`).
    #[error("{error}")]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// Its errors and warnings.
        error: PolicyError,
    },
    /// The daemon's policy that does not load.
    #[error(transparent)]
    DaemonPolicy(#[from] PolicyLoadError),
    /// A configuration file or flags that cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A capture that cannot be opened or read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// Captures that could not be replayed to learn or compare.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// Events that could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The daemon could not start or stopped on an error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Live traffic could not be recorded to learn from.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An evidence report that could not be made.
    #[error(transparent)]
    Report(#[from] segwatch::report::ReportError),
    /// A file that cannot be created, read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An output file that is one of the command's inputs: writing it would
    /// destroy the input.
    #[error(
        "{}: is the same file as the input {}; write the output to another file",
        output.display(),
        input.display()
    )]
    OutputIsAnInput {
        /// The output as given.
        output: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// Output that cannot be produced or written.
    #[error("{what}: {source}")]
    Write {
        /// What was being done, e.g. `writing to stdout`.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The policy `learn` wrote does not load: a bug, never the input's fault.
    #[error(
        "the learned policy does not load (a bug): {}",
        .0.diagnostics.first().map_or_else(String::new, ToString::to_string)
    )]
    LearnedPolicy(PolicyError),
}

impl Error {
    /// The error of a file that cannot be created, read or written.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::File {
            path: path.into(),
            source,
        }
    }

    /// Prints the error to standard error, each line in one write.
    pub fn print(&self) {
        match self {
            Error::Policy { path, error } => {
                for diagnostic in error.errors() {
                    stderr_line(format_args!("segwatch: {diagnostic}"));
                }
                if error.diagnostics.is_empty() {
                    stderr_line(format_args!(
                        "segwatch: error: {}: invalid policy",
                        path.display()
                    ));
                }
            }
            Error::DaemonPolicy(error) => {
                for line in &error.lines {
                    stderr_line(format_args!("segwatch: {line}"));
                }
            }
            other => stderr_line(format_args!("segwatch: error: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_contracts() {
        assert_eq!(Status::Ran as u8, 0);
        assert_eq!(Status::Findings as u8, 1);
        assert_eq!(Status::BadInput as u8, 2);
    }

    #[test]
    fn an_error_names_the_file_in_one_line() {
        let error = Error::file(
            "out/events.jsonl",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        let line = error.to_string();
        assert!(line.starts_with("out/events.jsonl: "), "{line}");
        assert_eq!(line.lines().count(), 1);
    }
}
