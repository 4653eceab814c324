//! `segwatch run` and `segwatch demo`: the daemon.

use std::path::Path;

use segwatch::config::{ConfigFile, Overrides, source_name};

use super::{DemoArgs, Error, RunArgs, Status};

/// Runs `segwatch run` until SIGTERM or SIGINT.
pub fn run(args: &RunArgs) -> Result<Status, Error> {
    let overrides = Overrides {
        interfaces: args.interfaces.clone(),
        pcap: args.pcap.clone(),
        pcap_pace: args.pcap_pace,
        policy: args.policy.clone(),
        metrics_listen: args.metrics_listen.clone(),
        syslog: args.syslog.clone(),
        syslog_format: args.syslog_format,
        syslog_ca_file: args.syslog_ca.clone(),
        syslog_client_cert: args
            .syslog_client_cert
            .clone()
            .zip(args.syslog_client_key.clone()),
        events: args.events.clone(),
        exceptions: args.exceptions.clone(),
        syslog_records: args.syslog_records.as_deref().map(|records| {
            use segwatch::sink::RecordKind::{Incidents, Violations};
            match records {
                "incidents" => vec![Incidents],
                "both" => vec![Violations, Incidents],
                _ => vec![Violations],
            }
        }),
        workers: args.workers,
        backend: args.backend,
        decapsulate: args.decapsulate.clone(),
        demo: false,
    };
    start(args.config.as_deref(), &overrides)
}

/// Runs `segwatch demo` until SIGTERM or SIGINT.
pub fn demo(args: &DemoArgs) -> Result<Status, Error> {
    let overrides = Overrides {
        metrics_listen: Some(args.metrics_listen.clone()),
        demo: true,
        ..Overrides::default()
    };
    super::stderr_line(format_args!(
        "segwatch demo: synthetic hospital traffic judged by the example hospital policy; \
         violations and incidents below, metrics at http://{}/metrics; Ctrl-C stops",
        args.metrics_listen
    ));
    start(None, &overrides)
}

/// Reads the configuration, applies the flags, loads the policy and runs
/// the daemon. The warnings of both go to the log, the daemon's voice.
fn start(config: Option<&Path>, overrides: &Overrides) -> Result<Status, Error> {
    let file = match config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let (settings, warnings) = file.build(overrides, &source_name(config))?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let (policy, warnings) = segwatch::runtime::load_policy(&settings)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    // Events neither delivered nor spooled at the stop: the log says how
    // many, the status says that some were.
    match segwatch::runtime::run(settings, policy)? {
        0 => Ok(Status::Ran),
        _ => Ok(Status::Findings),
    }
}
