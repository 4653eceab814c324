//! `segwatch run` and `segwatch demo`: the daemon.

use std::path::Path;

use super::{DemoArgs, EXIT_BAD_INPUT, RunArgs, error_line};
use crate::config::{ConfigFile, Overrides};

/// Runs `segwatch run`; returns the exit status.
pub fn run(args: &RunArgs) -> u8 {
    let overrides = Overrides {
        interfaces: args.interfaces.clone(),
        pcap: args.pcap.clone(),
        pcap_realtime: args.pcap_pace.as_deref().map(|pace| pace == "realtime"),
        policy: args.policy.clone(),
        metrics_listen: args.metrics_listen.clone(),
        syslog: args.syslog.clone(),
        syslog_format: args.syslog_format.clone(),
        events: args.events.clone(),
        workers: args.workers,
        backend: args.backend.clone(),
        demo: false,
    };
    start(args.config.as_deref(), &overrides)
}

/// Runs `segwatch demo`; returns the exit status.
pub fn demo(args: &DemoArgs) -> u8 {
    let overrides = Overrides {
        metrics_listen: Some(args.metrics_listen.clone()),
        demo: true,
        ..Overrides::default()
    };
    super::stderr_line(format_args!(
        "segwatch demo: synthetic hospital traffic judged by the example hospital policy; \
         violations below, metrics at http://{}/metrics; Ctrl-C stops",
        args.metrics_listen
    ));
    start(None, &overrides)
}

fn start(config: Option<&Path>, overrides: &Overrides) -> u8 {
    let (file, name) = match config {
        Some(path) => match ConfigFile::load(path) {
            Ok(file) => (file, path.to_owned()),
            Err(error) => {
                error_line(error);
                return EXIT_BAD_INPUT;
            }
        },
        None => (ConfigFile::default(), "command line".into()),
    };
    match file.build(overrides, &name) {
        Ok(settings) => crate::runtime::run(settings),
        Err(error) => {
            error_line(error);
            EXIT_BAD_INPUT
        }
    }
}
