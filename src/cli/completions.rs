//! `segwatch completions SHELL` and `segwatch manpage`: shell completion
//! scripts and roff man pages, generated from the clap definition of the
//! command line, so they never drift from the flags the binary accepts.
//!
//! Packagers run them at install time (see `deploy/README.md`); nothing is
//! generated at build time, so a plain `cargo install` needs no build script.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::{Cli, CompletionsArgs, EXIT_BAD_INPUT, EXIT_OK, ManpageArgs, error_line};

/// Writes the completion script for one shell to stdout.
pub fn completions(args: &CompletionsArgs) -> u8 {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "segwatch", &mut out);
    write_stdout(&out)
}

/// Writes `segwatch.1` to stdout, or with `--dir` one page per command
/// (`segwatch.1`, `segwatch-run.1`, ...) into that directory.
pub fn manpage(args: &ManpageArgs) -> u8 {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => match write_pages(command, dir) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                error_line(format_args!("{}: {e}", dir.display()));
                EXIT_BAD_INPUT
            }
        },
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(command).render(&mut out) {
                error_line(format_args!("rendering the man page: {e}"));
                return EXIT_BAD_INPUT;
            }
            write_stdout(&out)
        }
    }
}

fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)
}

fn write_stdout(bytes: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            error_line(format_args!("writing to stdout: {e}"));
            EXIT_BAD_INPUT
        }
    }
}
