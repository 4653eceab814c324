//! The `segwatch` binary: parse the command line, run the command, exit with
//! its status. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    segwatch::cli::run(segwatch::cli::Cli::parse())
}
