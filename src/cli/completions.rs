//! `segwatch completions SHELL` and `segwatch manpage`: shell completion
//! scripts and roff man pages, generated from the clap definition of the
//! command line, so they never drift from the flags the binary accepts.
//!
//! Packagers run them at install time (see `deploy/README.md`); nothing is
//! generated at build time, so a plain `cargo install` needs no build script.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::{Cli, CompletionsArgs, Error, ManpageArgs, Status};

/// Writes the completion script for one shell to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<Status, Error> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "segwatch", &mut out);
    write_stdout(&out)
}

/// Writes `segwatch.1` to stdout, or with `--dir` one page per command
/// (`segwatch.1`, `segwatch-run.1`, ...) into that directory.
pub fn manpage(args: &ManpageArgs) -> Result<Status, Error> {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            write_pages(command, dir).map_err(|e| Error::file(dir, e))?;
            Ok(Status::Ran)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|source| Error::Write {
                    what: "rendering the man page",
                    source,
                })?;
            write_stdout(&out)
        }
    }
}

fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)
}

fn write_stdout(bytes: &[u8]) -> Result<Status, Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Write {
            what: "writing to stdout",
            source,
        })?;
    Ok(Status::Ran)
}
