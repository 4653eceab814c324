//! The daemon's control plane (`segwatch run`, `segwatch demo`): it opens the
//! sources and sinks, starts the capture workers, serves `/metrics` and
//! `/healthz`, reloads the policy on SIGHUP or when its file changes, and on
//! SIGTERM/SIGINT stops capture and drains the sinks.
//!
//! Workers are plain threads that own their pipelines; the control plane
//! runs on a single-threaded tokio runtime on the main thread. What they
//! share is read-mostly: the policy (arc-swap), a stop flag, and counters
//! that workers publish and scrapes read.

#![forbid(unsafe_code)]

pub mod evidence;
mod http;
mod incidents;
pub mod logging;
mod policy;
mod privileges;
mod report;
mod source;
mod tls;
mod worker;

pub use http::{API_CONCURRENCY, ApiTokenError, DEFAULT_PAGE, MAX_PAGE};
pub use incidents::{IncidentQueue, IncidentThread, IncidentView};
pub use policy::{LivePolicy, PolicyHandle, PolicyLoadError};
pub use privileges::PrivilegeError;
pub use tls::{HANDSHAKE_TIMEOUT, TlsFileError};
pub use worker::{Pipeline, PipelineSetup};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::capture::CaptureError;
use crate::capture::live::LiveError;
use crate::config::{RunSettings, Source};
use crate::metrics::{InterfaceStats, Metrics, Telemetry};
use crate::pipeline::PublishedCounters;
use crate::policy::Diagnostic;
use crate::sink::syslog::FeedError;
use crate::sink::{SinkError, SinkHandle};

/// The demo's policy: `policies/example-hospital.toml`, built in so that the
/// demo runs from anywhere.
const DEMO_POLICY: &str = crate::synth::policy::EXAMPLE_HOSPITAL;

/// Why the daemon could not start, or stopped on an error rather than a
/// signal. Each displays as one line naming what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A sink (events file, stdout) that cannot start.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A syslog feed that cannot start (its TLS settings cannot work).
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A syslog feed's disk spool that cannot be opened.
    #[error("syslog feed {feed}: {source}")]
    Spool {
        /// The feed's receiver.
        feed: crate::sink::syslog::Endpoint,
        /// Why.
        source: crate::sink::syslog::SpoolError,
    },
    /// The capture file that cannot be opened.
    #[error(transparent)]
    CaptureFile(#[from] CaptureError),
    /// An interface that cannot be captured on.
    #[error(transparent)]
    Capture(#[from] LiveError),
    /// A worker thread that cannot start.
    #[error("cannot start a worker: {0}")]
    Worker(#[source] std::io::Error),
    /// The metrics registry that cannot be built.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The metrics listener's address that cannot be bound (in use, or
    /// needing privileges).
    #[error("metrics listener {address}: {source}")]
    Listener {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `process.user` that cannot be switched to.
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    /// The API's token that cannot be read.
    #[error(transparent)]
    ApiToken(#[from] ApiTokenError),
    /// The listener's TLS certificate or key that cannot be used.
    #[error(transparent)]
    ListenerTls(#[from] TlsFileError),
    /// The control plane's runtime that cannot start.
    #[error("cannot start the control plane: {0}")]
    ControlPlane(#[source] std::io::Error),
    /// Signals that cannot be handled.
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Loads the policy the settings name (the demo's built-in policy when they
/// name none), with its warnings, for [`run`].
pub fn load_policy(
    settings: &RunSettings,
) -> Result<(PolicyHandle, Vec<Diagnostic>), PolicyLoadError> {
    match &settings.policy {
        Some(path) => PolicyHandle::from_files(path, settings.exceptions.as_deref()),
        None => PolicyHandle::embedded(DEMO_POLICY, "example-hospital.toml"),
    }
}

/// Runs the daemon with `policy` until SIGTERM or SIGINT: after the stop,
/// the number of events it left neither delivered nor spooled (0 after a
/// clean drain).
pub fn run(settings: RunSettings, policy: PolicyHandle) -> Result<u64, RunError> {
    // Read before dropping privileges: the token file may be readable by
    // root only.
    let access = http::ApiAccess::load(
        settings.api_token_file.as_deref(),
        settings.protect_metrics,
        settings.metrics_listen,
    )?;
    // Likewise the TLS key.
    let tls = match &settings.api_tls {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None => None,
    };
    if access.api_closed() {
        tracing::warn!(
            listen = %settings.metrics_listen,
            "The API (/api/v1/...) is refused on this listener: set api.token_file to serve it"
        );
    }
    let policy = Arc::new(policy);
    let mut sink_list = open_sinks(&settings)?;
    // The events file, stdout and the feeds, in that order; the evidence
    // writer comes after them.
    let opened_sinks = sink_list.len();
    let inventory = Arc::new(crate::inventory::Inventory::new(
        settings.max_devices,
        Arc::new(crate::inventory::OuiRegistry::load_default()),
    ));
    // The evidence writer takes records as a sink does, last of the sinks.
    let evidence = match &settings.state {
        Some(state) => {
            let (sink, queue) = evidence::spawn(state, inventory.clone(), settings.queue)?;
            sink_list.push(sink);
            Some(queue)
        }
        None => None,
    };
    let sinks = Arc::new(sink_list);
    tracing::debug!(
        registry = ?inventory.registry().source(),
        vendors = inventory.registry().len(),
        "Device inventory ready"
    );
    let salt = flow_id_salt();
    let incidents = match &settings.incidents {
        Some(incident_settings) => Some(
            IncidentThread::start(
                incident_settings,
                salt,
                sinks.clone(),
                Some(inventory.clone()),
            )
            .map_err(RunError::Worker)?,
        ),
        None => None,
    };
    let tracked = settings
        .incidents
        .as_ref()
        .map(|s| crate::pipeline::TrackedRanges::new(s.track_to.clone()));
    let hand_over = Handover {
        queue: incidents.as_ref().map(|i| i.queue.clone()),
        tracked,
        salt,
        evidence,
    };
    let workers = start_workers(&settings, &policy, &sinks, &inventory, &hand_over)?;
    let telemetry = Arc::new(Telemetry {
        workers: workers.stats.clone(),
        interfaces: workers.interfaces.clone(),
        sinks: sinks
            .iter()
            .map(|s| (s.name().to_string(), s.stats().clone()))
            .collect(),
        policy: policy.stats.clone(),
        inventory: Some(inventory.clone()),
        incidents: incidents.as_ref().map(|i| i.view.stats.clone()),
        evidence: hand_over.evidence.as_ref().map(|queue| queue.stats.clone()),
    });
    let metrics = Arc::new(Metrics::new(settings.flows.max_flows)?);
    // Bind before dropping privileges: the port may need them.
    let listener = match std::net::TcpListener::bind(settings.metrics_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(listener) => listener,
        Err(source) => {
            workers.stop.store(true, Ordering::Relaxed);
            return Err(RunError::Listener {
                address: settings.metrics_listen,
                source,
            });
        }
    };
    if let Some(Err(error)) = settings.user.as_deref().map(privileges::drop_to) {
        workers.stop.store(true, Ordering::Relaxed);
        return Err(error.into());
    }
    // Spools are opened as the user the daemon runs as from here on, so
    // that it can go on writing them.
    if let Err(error) = attach_spools(&settings, &sinks[..opened_sinks]) {
        workers.stop.store(true, Ordering::Relaxed);
        return Err(error);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::ControlPlane)?;
    let incident_view = incidents.as_ref().map(|i| i.view.clone());
    let http = http::HttpState {
        metrics,
        telemetry: telemetry.clone(),
        incidents: incident_view,
        access,
        api_slots: Arc::new(tokio::sync::Semaphore::new(API_CONCURRENCY)),
    };
    let serve = runtime.block_on(control_plane(
        &settings,
        listener,
        policy.clone(),
        sinks.clone(),
        http,
        tls,
        workers.stop.clone(),
    ));
    workers.stop.store(true, Ordering::Relaxed);
    for handle in workers.threads {
        let _ = handle.join();
    }
    // The workers' last batches are folded, every open incident closed,
    // before the sinks drain.
    if let Some(incidents) = incidents {
        incidents.stop();
    }
    // The evidence writer writes the hour in progress before the sinks go.
    if let Some(evidence) = &hand_over.evidence {
        evidence.finish(settings.drain_timeout);
    }
    let deadline = Instant::now() + settings.drain_timeout;
    let mut undelivered = 0;
    if let Ok(sinks) = Arc::try_unwrap(sinks) {
        for sink in sinks {
            let left = deadline.saturating_duration_since(Instant::now());
            undelivered += sink.shutdown(left);
        }
    }
    serve?;
    report::stopped(&telemetry, undelivered);
    if undelivered > 0 {
        tracing::error!(
            undelivered,
            "Stopped with {undelivered} events neither delivered nor spooled"
        );
    }
    Ok(undelivered)
}

/// Opens each spooled feed's disk spool and hands it over; `sinks` are
/// those [`open_sinks`] opened, whose feeds come last, in order.
fn attach_spools(settings: &RunSettings, sinks: &[SinkHandle]) -> Result<(), RunError> {
    let first_feed = sinks.len() - settings.syslog.len();
    for (feed, sink) in settings.syslog.iter().zip(&sinks[first_feed..]) {
        let Some(at) = &feed.spool_at else { continue };
        if feed.url.scheme == crate::sink::syslog::Scheme::Udp {
            continue;
        }
        let spool = crate::sink::syslog::Spool::open(&at.dir, at.max_bytes).map_err(|source| {
            RunError::Spool {
                feed: feed.url.clone(),
                source,
            }
        })?;
        sink.attach_spool(spool);
    }
    Ok(())
}

/// The events sinks the settings ask for.
fn open_sinks(settings: &RunSettings) -> Result<Vec<SinkHandle>, RunError> {
    let mut sinks = Vec::new();
    if let Some(path) = &settings.events_file {
        sinks.push(
            crate::sink::spawn_events_file(path, settings.queue)?
                .with_filter(settings.events_records),
        );
    }
    if settings.events_stdout {
        sinks.push(crate::sink::spawn_stdout(settings.queue)?.with_filter(settings.stdout_records));
    }
    for (index, feed) in settings.syslog.iter().enumerate() {
        sinks.push(crate::sink::syslog::spawn_feed(
            index,
            feed,
            settings.queue,
        )?);
    }
    Ok(sinks)
}

/// The running workers.
struct Workers {
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<PublishedCounters>>,
    interfaces: Vec<Arc<InterfaceStats>>,
    stop: Arc<AtomicBool>,
}

fn flow_id_salt() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What workers hand incidents to, and the salt of flow and incident ids.
struct Handover {
    queue: Option<IncidentQueue>,
    tracked: Option<Arc<crate::pipeline::TrackedRanges>>,
    salt: u64,
    evidence: Option<evidence::EvidenceQueue>,
}

fn start_workers(
    settings: &RunSettings,
    policy: &Arc<PolicyHandle>,
    sinks: &Arc<Vec<SinkHandle>>,
    inventory: &Arc<crate::inventory::Inventory>,
    hand_over: &Handover,
) -> Result<Workers, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let setup = PipelineSetup {
        flows: settings.flows,
        sinks: sinks.clone(),
        flow_id_salt: hand_over.salt,
        inventory: inventory.clone(),
        // A policy whose verdicts depend on applications needs detection.
        detect_apps: settings.detect_apps || policy.current().policy.needs_app(),
        decapsulation: Arc::new(settings.decapsulation.clone()),
        evidence: hand_over.evidence.clone(),
        incidents: hand_over.queue.clone(),
        tracked: hand_over.tracked.clone(),
    };
    let mut workers = Workers {
        threads: Vec::new(),
        stats: Vec::new(),
        interfaces: Vec::new(),
        stop: stop.clone(),
    };
    match &settings.source {
        Source::File { path, realtime } => {
            // Open it here, so a missing or corrupt file fails the start.
            crate::capture::CaptureFile::open(path)?;
            let stats = Arc::new(PublishedCounters::default());
            let mut pipeline = Pipeline::new(0, 1, settings.flows.max_flows, stats.clone(), &setup);
            let (path, realtime, policy) = (path.clone(), *realtime, policy.clone());
            let thread = std::thread::Builder::new()
                .name("segwatch-file".into())
                .spawn(move || {
                    match source::run_file(&path, realtime, &mut pipeline, &policy, &stop) {
                        Ok(source::FileEnd::Done) => tracing::info!(
                            file = %path.display(),
                            "Capture file read; serving until stopped"
                        ),
                        Ok(source::FileEnd::Truncated(offset)) => tracing::warn!(
                            file = %path.display(),
                            offset,
                            "Capture file cut inside its last record; judged up to the cut"
                        ),
                        Ok(source::FileEnd::Stopped) => {}
                        Err(error) => tracing::error!("Capture file unreadable: {error}"),
                    }
                })
                .map_err(RunError::Worker)?;
            workers.threads.push(thread);
            workers.stats.push(stats);
            workers.interfaces.push(Arc::new(InterfaceStats {
                name: "pcap-file".into(),
                ..InterfaceStats::default()
            }));
        }
        Source::Synthetic => {
            let stats = Arc::new(PublishedCounters::default());
            let mut pipeline = Pipeline::new(0, 1, settings.flows.max_flows, stats.clone(), &setup);
            let policy = policy.clone();
            let thread = std::thread::Builder::new()
                .name("segwatch-demo".into())
                .spawn(move || source::run_synthetic(&mut pipeline, &policy, &stop))
                .map_err(RunError::Worker)?;
            workers.threads.push(thread);
            workers.stats.push(stats);
            workers.interfaces.push(Arc::new(InterfaceStats {
                name: "synthetic".into(),
                ..InterfaceStats::default()
            }));
        }
        Source::Interfaces {
            names,
            backend,
            workers: per_interface,
            snaplen,
            buffer_bytes,
            promiscuous,
            bpf,
        } => {
            // Open every capture before any worker starts (and before
            // privileges are dropped): one that fails fails the start.
            let mut opened = Vec::new();
            for name in names {
                let options = crate::capture::live::CaptureOptions {
                    interface: name.clone(),
                    snaplen: *snaplen,
                    buffer_bytes: *buffer_bytes,
                    promiscuous: *promiscuous,
                    bpf: bpf.clone(),
                };
                let captures = crate::capture::live::open_interface(
                    &options,
                    backend.as_str(),
                    *per_interface,
                )?;
                opened.push((name.clone(), captures));
            }
            let total: usize = opened.iter().map(|(_, c)| c.len()).sum();
            let mut index = 0;
            for (name, captures) in opened {
                let interface = Arc::new(InterfaceStats {
                    name: name.clone(),
                    ..InterfaceStats::default()
                });
                workers.interfaces.push(interface.clone());
                for mut capture in captures {
                    let stats = Arc::new(PublishedCounters::default());
                    let mut pipeline = Pipeline::new(
                        index,
                        total,
                        settings.flows.max_flows.div_ceil(total),
                        stats.clone(),
                        &setup,
                    );
                    let (policy, stop, interface) =
                        (policy.clone(), stop.clone(), interface.clone());
                    let thread = std::thread::Builder::new()
                        .name(format!("segwatch-{name}-{index}"))
                        .spawn(move || {
                            source::run_live(
                                &mut capture,
                                &mut pipeline,
                                &policy,
                                &stop,
                                &interface,
                            )
                        })
                        .map_err(RunError::Worker)?;
                    workers.threads.push(thread);
                    workers.stats.push(stats);
                    index += 1;
                }
            }
        }
    }
    Ok(workers)
}

/// Serves metrics and handles signals until SIGTERM or SIGINT.
async fn control_plane(
    settings: &RunSettings,
    listener: std::net::TcpListener,
    policy: Arc<PolicyHandle>,
    sinks: Arc<Vec<SinkHandle>>,
    http: http::HttpState,
    tls: Option<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};

    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| RunError::Listener {
            address: settings.metrics_listen,
            source,
        })?;
    let worker_count = http.telemetry.workers.len();
    let access = http.access.clone();
    let app = http::router(http);
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    // Logged once SIGTERM and SIGHUP are handled: from here on a signal
    // never kills the daemon undrained.
    report::started(settings, &policy, worker_count);
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = shutdown_rx.await;
    };
    let server = match tls {
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        }),
        Some(config) => {
            let listener =
                tls::TlsListener::new(listener, config).map_err(|source| RunError::Listener {
                    address: settings.metrics_listen,
                    source,
                })?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
            })
        }
    };

    let mut watch = tokio::time::interval(settings.watch_interval);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the policy and reopening files");
                let _ = policy.reload();
                for sink in sinks.iter() {
                    sink.reopen();
                }
                match access.reload_token() {
                    Ok(true) => tracing::info!("API token replaced from api.token_file"),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "Keeping the API token in force")
                    }
                }
            }
            _ = watch.tick(), if settings.watch_policy => {
                if policy.changed_on_disk() {
                    tracing::info!("Policy file changed: reloading");
                    let _ = policy.reload();
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("Stopping: capture first, then the queued events");
    stop.store(true, Ordering::Relaxed);
    let _ = shutdown_tx.send(());
    let _ = server.await;
    Ok(())
}
