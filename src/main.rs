//! The `segwatch` binary: parse the command line, run the command, and turn
//! its outcome into the contract's exit status (section 4). Errors are typed
//! in the library and the commands; only here are they printed, one line
//! each, and mapped to a status. Everything that judges traffic lives in the
//! library.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A flag clap refuses exits with clap's status 2, which is bad input too.
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(status) => status.into(),
        Err(error) => {
            error.print();
            cli::Status::BadInput.into()
        }
    }
}
