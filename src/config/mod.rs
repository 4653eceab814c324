//! The daemon's configuration file (`segwatch run --config FILE`), and the
//! settings it builds with the command line's overrides.
//!
//! Two layers, as everywhere in segwatch: [`ConfigFile`] only describes the
//! TOML, typed (durations, names and addresses parse as serde reads them;
//! every table denies unknown keys), and [`ConfigFile::build`] applies the
//! flags, checks what no single value shows and produces [`RunSettings`].
//! `deploy/segwatch.toml` is a commented example of every key.
//!
//! Problems are located by the spans the TOML parser records: an error or a
//! warning names the file, the line and column of the key, and the key.
//! Values out of range that earlier versions accepted and silently brought
//! within it (workers, snap length, buffer, queues, bounds) still start the
//! daemon, with a warning; keys added from now on refuse bad values.

#![forbid(unsafe_code)]

mod locate;
mod value;

pub use locate::{ConfigError, ConfigWarning};
pub use value::{Backend, HumanDuration, ListenAddress, NotAnAddress, Pace, UnknownValue};

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::flow::FlowConfig;
use crate::sink::syslog::{Endpoint, FeedSettings, Format, Scheme};
use crate::wire::Decapsulation;
use locate::{COMMAND_LINE, Locator, Place};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where packets come from.
    #[serde(default)]
    pub capture: CaptureSection,
    /// The policy.
    #[serde(default)]
    pub policy: PolicySection,
    /// Flow timeouts and bound.
    #[serde(default)]
    pub flows: FlowSection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The events file.
    #[serde(default)]
    pub events: EventsSection,
    /// Syslog feeds, any number; their settings are the feed's own
    /// ([`FeedSettings`]).
    #[serde(default)]
    pub syslog: Vec<FeedSettings>,
    /// Process settings.
    #[serde(default)]
    pub process: ProcessSection,
    /// The device inventory.
    #[serde(default)]
    pub inventory: InventorySection,
    /// The HTTP API (`/api/v1/...`) on the metrics listener.
    #[serde(default)]
    pub api: ApiSection,
    /// Application detection.
    #[serde(default)]
    pub detection: DetectionSection,
    /// Incidents (contract section 7).
    #[serde(default)]
    pub incidents: IncidentsSection,
    /// The TCP and TLS syslog feeds' disk spools.
    #[serde(default)]
    pub spool: SpoolSection,
    /// The evidence state directory (issue 18).
    #[serde(default)]
    pub state: StateSection,
    /// The text it was read from, to locate problems by their spans.
    #[serde(skip)]
    text: String,
}

/// `[incidents]`: as the `replay --incident-*` flags. Independent of the
/// policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsSection {
    /// Fold violations into incidents and detect sweeps and scans. Default
    /// false. Sinks carry incident records only when their `records` ask
    /// for them.
    pub enabled: Option<bool>,
    /// An incident is over when nothing joined it for longer than this.
    /// Default "15m".
    pub idle: Option<HumanDuration>,
    /// A violation this long after its incident's first_seen opens a new
    /// incident. Default "24h".
    pub max_age: Option<HumanDuration>,
    /// At most one update record per incident per this much time. Default
    /// "5m".
    pub update_interval: Option<HumanDuration>,
    /// Distinct hosts on one protocol and port within `window` that make a
    /// sweep. Default 32.
    pub sweep_hosts: Option<Spanned<u32>>,
    /// Distinct protocol/port pairs of one host within `window` that make a
    /// scan. Default 32.
    pub scan_ports: Option<Spanned<u32>>,
    /// The sweep and scan window. Default "60s".
    pub window: Option<HumanDuration>,
    /// Responder ranges (CIDRs) counted for sweeps and scans besides the
    /// private ones. Default none.
    #[serde(default)]
    pub track_to: Vec<Spanned<String>>,
    /// Severity of sweep incidents. Default "high".
    pub sweep_severity: Option<Spanned<String>>,
    /// Severity of scan incidents. Default "high".
    pub scan_severity: Option<Spanned<String>>,
    /// Initiators tracked for sweeps and scans at once; the least recently
    /// active is dropped first, and counted. Default 100,000.
    pub max_initiators: Option<Spanned<usize>>,
    /// Incidents open at once; beyond, violations open none (counted).
    /// Default 1,000,000.
    pub max_open: Option<Spanned<usize>>,
}

/// `[spool]`: where the TCP and TLS syslog feeds keep, on disk, what their
/// receiver has not taken yet (an outage longer than the memory queue
/// lasts, or a stop), to send it in order once it is back or at the next
/// start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// The spools' directory; each TCP or TLS feed gets its own
    /// subdirectory, named after its URL (`tcp-HOST-PORT`). Default none:
    /// no disk spool, so events beyond a feed's queue are dropped and
    /// those queued at a stop are lost (counted, exit status 1).
    pub dir: Option<PathBuf>,
    /// The most a feed's spool may take on disk, MiB, 1-1,048,576; beyond
    /// it new events are dropped and counted. Default 1,024.
    pub max_mib: Option<Spanned<u64>>,
}

/// `[state]`: hourly evidence for `segwatch report --state`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Directory of the hourly evidence files (e.g. "/var/lib/segwatch"):
    /// one file per hour of capture time, written when the hour ends and at
    /// stop. Default: none (no evidence kept).
    pub dir: Option<PathBuf>,
    /// Hours older than this many days are removed. Default 400 (a year
    /// and a reporting quarter); 0 keeps every hour.
    pub retention_days: Option<Spanned<u32>>,
    /// This sensor's name in its evidence files and in reports (1 to 64
    /// printable characters). Default: the machine's host name.
    pub sensor: Option<Spanned<String>>,
}

/// The state directory's settings, when one is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSettings {
    /// The directory.
    pub dir: PathBuf,
    /// Hours older than this many days (of capture time) are removed; 0
    /// keeps every hour.
    pub retention_days: u32,
    /// This sensor's name, written into every evidence file.
    pub sensor: String,
}

/// The longest `[state] sensor` name.
pub const SENSOR_NAME_MAX: usize = 64;

/// `[state] retention_days`'s default.
pub const RETENTION_DAYS: u32 = 400;

/// `[detection]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSection {
    /// Detect each flow's application from its first bytes; events wait
    /// for it (at most 8 packets or 2 s). Default true.
    pub enabled: Option<bool>,
}

/// `[api]`: who may read `/api/v1/devices` and `/api/v1/incidents` (a
/// map of the network's devices, for an attacker a reconnaissance map).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// A file holding the bearer token that `/api/*` requests must send
    /// (`Authorization: Bearer TOKEN`); read at start, surrounding
    /// whitespace ignored. Without it, `/api/*` is served only on a
    /// loopback listener (and refused, 403, on any other). Keep it readable
    /// by the daemon's user only.
    pub token_file: Option<PathBuf>,
    /// Ask the token for `/metrics` too (Prometheus: `authorization:
    /// credentials_file`). Default false: `/metrics` stays open. `/healthz`
    /// is always open (liveness probes).
    pub protect_metrics: Option<bool>,
    /// Serve the listener over TLS with this PEM certificate chain (with
    /// `tls_key_file`; both or neither). Read at start.
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

/// `[inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// Most devices held; past it the least-evidenced are evicted (after
    /// each batch, down to a sixteenth under it). Default 100,000; 0 is
    /// taken as 1, with a warning.
    pub max_devices: Option<Spanned<usize>>,
}

/// `[capture]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Interfaces to capture on (SPAN/mirror ports). Default: none.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// A capture file to run through the daemon instead (tests, demos).
    pub pcap: Option<PathBuf>,
    /// `full` (as fast as possible, the default) or `realtime` (at capture
    /// pace).
    pub pcap_pace: Option<Pace>,
    /// `af-packet` (default, built in) or `pcap` (libpcap; needs the `pcap`
    /// build feature).
    pub backend: Option<Backend>,
    /// Capture workers per interface (AF_PACKET fanout), 1-64. Default 1.
    pub workers: Option<Spanned<usize>>,
    /// Bytes captured per frame, 64-262,144. Default 65,535.
    pub snaplen: Option<Spanned<u32>>,
    /// Kernel buffer per interface, MiB (1-4,096), shared evenly among its
    /// AF_PACKET workers' rings (each at least 4 MiB). Default 64. Too
    /// small a buffer drops packets in bursts.
    pub buffer_mib: Option<Spanned<usize>>,
    /// Put the interface in promiscuous mode. Default true (a SPAN port
    /// delivers frames addressed to other hosts).
    pub promiscuous: Option<bool>,
    /// A BPF filter (libpcap syntax). Default: none (so is a blank one).
    pub bpf: Option<String>,
    /// Tunnels to open besides ERSPAN (always opened): any of `vxlan`,
    /// `geneve`, `gre`. Default none: such traffic is judged as the `udp` or
    /// `gre` it is, which a site-to-site tunnel or an overlay really is.
    #[serde(default)]
    pub decapsulate: Vec<TunnelName>,
    /// Open those tunnels only when an outer address is in one of these
    /// networks (the tunnel endpoints of a mirror session). Default: any.
    #[serde(default)]
    pub tunnel_endpoints: Vec<ipnetwork::IpNetwork>,
}

/// A tunnel `capture.decapsulate` can open.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TunnelName {
    /// VXLAN, UDP 4789.
    Vxlan,
    /// Geneve, UDP 6081.
    Geneve,
    /// GRE carrying IPv4, IPv6, MPLS or Ethernet.
    Gre,
}

/// The decoder's setting for the tunnels `names` lists, limited to
/// `endpoints` when there are any.
fn decapsulation_of(names: &[TunnelName], endpoints: Vec<ipnetwork::IpNetwork>) -> Decapsulation {
    Decapsulation {
        vxlan: names.contains(&TunnelName::Vxlan),
        geneve: names.contains(&TunnelName::Geneve),
        gre: names.contains(&TunnelName::Gre),
        endpoints,
    }
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file.
    pub path: Option<PathBuf>,
    /// Reload when the file changes (checked every `watch_interval`), as
    /// well as on SIGHUP. Default true.
    pub watch: Option<bool>,
    /// How often the file is checked, e.g. "2s"; more than zero. Default 2 s.
    pub watch_interval: Option<Spanned<HumanDuration>>,
    /// The exceptions file (contract section 8), loaded, watched and
    /// reloaded with the policy. Default none.
    pub exceptions: Option<PathBuf>,
}

/// `[flows]`: as the `replay` flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSection {
    /// TCP idle timeout, e.g. "300s".
    pub tcp_timeout: Option<HumanDuration>,
    /// Closed TCP linger, e.g. "10s".
    pub tcp_closed_timeout: Option<HumanDuration>,
    /// UDP idle timeout.
    pub udp_timeout: Option<HumanDuration>,
    /// ICMP echo idle timeout.
    pub icmp_timeout: Option<HumanDuration>,
    /// Other protocols' idle timeout.
    pub other_timeout: Option<HumanDuration>,
    /// Most flows held at once, over all workers. Default 1,000,000; 0 is
    /// taken as 1, with a warning.
    pub max_flows: Option<Spanned<usize>>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of `/metrics` and `/healthz`. Default 127.0.0.1:9108.
    pub listen: Option<ListenAddress>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Write violation events as JSON lines to this file (reopened on SIGHUP).
    pub file: Option<PathBuf>,
    /// Also print them on stdout. Default false (`segwatch demo` sets it).
    pub stdout: Option<bool>,
    /// Events queued per sink before new ones are dropped, 1-10,000,000.
    /// Default 10,000.
    pub queue: Option<Spanned<usize>>,
    /// What the events file carries: `"violations"` and/or `"incidents"`.
    /// Default `["violations"]`. Excepted records always go to it.
    pub records: Option<Vec<crate::sink::RecordKind>>,
    /// What stdout carries, likewise. Default `["violations"]` (the demo:
    /// both).
    pub stdout_records: Option<Vec<crate::sink::RecordKind>>,
}

/// `[process]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// Drop to this user once the capture is open (needs root to start).
    pub user: Option<String>,
    /// How long SIGTERM waits for queued events to be delivered. Default "5s".
    pub drain_timeout: Option<HumanDuration>,
}

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Live interfaces.
    Interfaces {
        /// Interface names.
        names: Vec<String>,
        /// The capture backend.
        backend: Backend,
        /// Workers per interface.
        workers: usize,
        /// Snap length.
        snaplen: u32,
        /// Buffer bytes per interface.
        buffer_bytes: usize,
        /// Promiscuous mode.
        promiscuous: bool,
        /// BPF filter.
        bpf: Option<String>,
    },
    /// A capture file.
    File {
        /// The file.
        path: PathBuf,
        /// At capture pace instead of full speed.
        realtime: bool,
    },
    /// The demo's synthetic hospital traffic, endless, at capture pace.
    Synthetic,
}

/// Everything `segwatch run` needs, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// Packets' origin.
    pub source: Source,
    /// The policy file; `None` only for the demo (which embeds its policy).
    pub policy: Option<PathBuf>,
    /// Reload on change.
    pub watch_policy: bool,
    /// How often to look at the policy file (more than zero).
    pub watch_interval: Duration,
    /// Flow timeouts and bound.
    pub flows: FlowConfig,
    /// Metrics listener.
    pub metrics_listen: SocketAddr,
    /// The API's bearer token file.
    pub api_token_file: Option<PathBuf>,
    /// `/metrics` asks the token too.
    pub protect_metrics: bool,
    /// The listener's TLS certificate chain and key files, when it serves
    /// HTTPS.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    /// Events file.
    pub events_file: Option<PathBuf>,
    /// Events on stdout.
    pub events_stdout: bool,
    /// Queue bound of the events sinks, and of the feeds without their own.
    pub queue: usize,
    /// Syslog feeds.
    pub syslog: Vec<FeedSettings>,
    /// User to switch to after opening the capture.
    pub user: Option<String>,
    /// SIGTERM's drain bound.
    pub drain_timeout: Duration,
    /// The device inventory's bound.
    pub max_devices: usize,
    /// Application detection on.
    pub detect_apps: bool,
    /// The tunnels opened besides ERSPAN.
    pub decapsulation: Decapsulation,
    /// The exceptions file.
    pub exceptions: Option<PathBuf>,
    /// Incidents, when on.
    pub incidents: Option<crate::incident::IncidentSettings>,
    /// What the events file takes.
    pub events_records: crate::sink::RecordFilter,
    /// What stdout takes.
    pub stdout_records: crate::sink::RecordFilter,
    /// The evidence state directory, when set.
    pub state: Option<StateSettings>,
}

/// The command line's overrides (contract section 4).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--interface`, repeatable: replaces the file's interfaces.
    pub interfaces: Vec<String>,
    /// `--pcap FILE`.
    pub pcap: Option<PathBuf>,
    /// `--pcap-pace`.
    pub pcap_pace: Option<Pace>,
    /// `--policy FILE`.
    pub policy: Option<PathBuf>,
    /// `--metrics-listen ADDR:PORT`, as written.
    pub metrics_listen: Option<String>,
    /// `--syslog URL`, repeatable, as written: replaces the file's feeds.
    pub syslog: Vec<String>,
    /// `--syslog-format`: for the `--syslog` feeds.
    pub syslog_format: Option<Format>,
    /// `--syslog-ca FILE`: the CA of the `--syslog` TLS feeds.
    pub syslog_ca_file: Option<PathBuf>,
    /// `--syslog-client-cert FILE` and `--syslog-client-key FILE`, which go
    /// together: the `--syslog` TLS feeds' client certificate and key.
    pub syslog_client_cert: Option<(PathBuf, PathBuf)>,
    /// `--events FILE`.
    pub events: Option<PathBuf>,
    /// `--exceptions FILE`.
    pub exceptions: Option<PathBuf>,
    /// `--syslog-records`: for the `--syslog` feeds.
    pub syslog_records: Option<Vec<crate::sink::RecordKind>>,
    /// `--workers N`.
    pub workers: Option<usize>,
    /// `--backend`.
    pub backend: Option<Backend>,
    /// `--decapsulate`: replaces `capture.decapsulate` (endpoints stay).
    pub decapsulate: Option<Decapsulation>,
    /// The demo: synthetic traffic, events on stdout.
    pub demo: bool,
}

/// The default metrics listener (contract section 4).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9108";

/// Capture workers per interface: default and bounds.
const WORKERS: Bounded = Bounded::new(1, 1, 64);
/// Snap length: default and bounds (libpcap's largest frame).
const SNAPLEN: Bounded = Bounded::new(65_535, 64, 262_144);
/// Kernel buffer per interface, MiB: default and bounds.
const BUFFER_MIB: Bounded = Bounded::new(64, 1, 4096);
/// Events queued per sink: default and bounds.
const QUEUE: Bounded = Bounded::new(10_000, 1, 10_000_000);
/// A feed's own queue: at least one event (its default is the events
/// queue's).
const FEED_QUEUE: Bounded = Bounded::at_least(QUEUE.default, 1);
/// How often the policy file is looked at unless configured.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How long SIGTERM waits for queued events unless configured.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A feed's spool bound, MiB: default and bounds.
const SPOOL_MIB: (u64, u64, u64) = (1024, 1, 1 << 20);

/// A count's default and the range it is brought within.
#[derive(Clone, Copy, Debug)]
struct Bounded {
    default: usize,
    least: usize,
    most: usize,
}

impl Bounded {
    const fn new(default: usize, least: usize, most: usize) -> Bounded {
        Bounded {
            default,
            least,
            most,
        }
    }

    /// At least `least`, no upper bound.
    const fn at_least(default: usize, least: usize) -> Bounded {
        Bounded::new(default, least, usize::MAX)
    }
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        })?;
        ConfigFile::parse(&text, path)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        match toml::from_str::<ConfigFile>(text) {
            Ok(mut file) => {
                file.text = text.to_owned();
                Ok(file)
            }
            Err(error) => Err(parse_error(&Locator::new(path, text), &error)),
        }
    }

    /// Applies the command line's overrides and checks the result: the
    /// settings, and warnings about values used other than as written.
    /// `path` names the file in errors (`command line` when there is none).
    pub fn build(
        mut self,
        overrides: &Overrides,
        path: &Path,
    ) -> Result<(RunSettings, Vec<ConfigWarning>), ConfigError> {
        let text = std::mem::take(&mut self.text);
        let mut checks = Checks {
            locator: Locator::new(path, &text),
            warnings: Vec::new(),
        };
        let mut decapsulation = decapsulation_of(
            &self.capture.decapsulate,
            std::mem::take(&mut self.capture.tunnel_endpoints),
        );
        if let Some(asked) = &overrides.decapsulate {
            decapsulation = Decapsulation {
                endpoints: decapsulation.endpoints,
                ..asked.clone()
            };
        }
        let source = checks.source(self.capture, overrides)?;
        let policy = overrides.policy.clone().or(self.policy.path);
        if policy.is_none() && !overrides.demo {
            return Err(checks
                .locator
                .table("policy")
                .error("policy.path: no policy: give --policy FILE".into()));
        }
        let watch_interval = match self.policy.watch_interval {
            None => WATCH_INTERVAL,
            Some(interval) if interval.get_ref().0.is_zero() => {
                return Err(checks.at(interval.span()).error(
                    "policy.watch_interval: must be more than 0s (e.g. \"2s\"; `watch = false` \
                     turns watching off)"
                        .into(),
                ));
            }
            Some(interval) => interval.into_inner().0,
        };
        let defaults = FlowConfig::default();
        let f = &self.flows;
        let timeout = |value: Option<HumanDuration>, default| value.map_or(default, |d| d.0);
        let flows = FlowConfig {
            tcp_timeout: timeout(f.tcp_timeout, defaults.tcp_timeout),
            tcp_closed_timeout: timeout(f.tcp_closed_timeout, defaults.tcp_closed_timeout),
            udp_timeout: timeout(f.udp_timeout, defaults.udp_timeout),
            icmp_timeout: timeout(f.icmp_timeout, defaults.icmp_timeout),
            other_timeout: timeout(f.other_timeout, defaults.other_timeout),
            max_flows: checks.bounded(
                "flows.max_flows",
                self.flows.max_flows.as_ref(),
                Bounded::at_least(defaults.max_flows, 1),
            ),
        };
        let metrics_listen = match &overrides.metrics_listen {
            Some(flag) => flag
                .parse::<ListenAddress>()
                .map_err(|e| Place::command_line().error(format!("metrics.listen: {e}")))?,
            None => self
                .metrics
                .listen
                .unwrap_or(ListenAddress(SocketAddr::from(([127, 0, 0, 1], 9108)))),
        };
        let queue = checks.bounded("events.queue", self.events.queue.as_ref(), QUEUE);
        let mut syslog = checks.feeds(self.syslog, overrides)?;
        if let Some(records) = &overrides.syslog_records
            && !overrides.syslog.is_empty()
        {
            for feed in &mut syslog {
                feed.records.clone_from(records);
            }
        }
        checks.spools(&self.spool, &mut syslog)?;
        let incidents = checks.incidents(&self.incidents, overrides.demo)?;
        let both = [
            crate::sink::RecordKind::Violations,
            crate::sink::RecordKind::Incidents,
        ];
        let events_records =
            crate::sink::RecordFilter::of(self.events.records.as_deref().unwrap_or_default(), true);
        let stdout_records = crate::sink::RecordFilter::of(
            match (&self.events.stdout_records, overrides.demo) {
                (Some(records), _) => records,
                (None, true) => &both[..],
                (None, false) => &[],
            },
            true,
        );
        let max_devices = checks.bounded(
            "inventory.max_devices",
            self.inventory.max_devices.as_ref(),
            Bounded::at_least(crate::inventory::DEFAULT_CAPACITY, 1),
        );
        let sensor = match &self.state.sensor {
            Some(name) => {
                let text = name.get_ref();
                if text.is_empty()
                    || text.chars().count() > SENSOR_NAME_MAX
                    || text.chars().any(char::is_control)
                {
                    return Err(checks.at(name.span()).error(format!(
                        "state.sensor: must be 1 to {SENSOR_NAME_MAX} printable characters \
                         (e.g. \"sensor-ward-3\")"
                    )));
                }
                text.clone()
            }
            None => crate::sys::hostname().unwrap_or_else(|| "sensor".into()),
        };
        let settings = RunSettings {
            source,
            policy,
            watch_policy: self.policy.watch.unwrap_or(true),
            watch_interval,
            flows,
            metrics_listen: metrics_listen.0,
            api_token_file: self.api.token_file,
            protect_metrics: self.api.protect_metrics.unwrap_or(false),
            api_tls: match (self.api.tls_cert_file, self.api.tls_key_file) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(checks.locator.table("api").error(
                        "api.tls_cert_file and api.tls_key_file go together: set both".into(),
                    ));
                }
            },
            events_file: overrides.events.clone().or(self.events.file),
            events_stdout: overrides.demo || self.events.stdout.unwrap_or(false),
            queue,
            syslog,
            user: self.process.user,
            detect_apps: self.detection.enabled.unwrap_or(true),
            exceptions: overrides.exceptions.clone().or(self.policy.exceptions),
            incidents,
            events_records,
            stdout_records,
            max_devices,
            drain_timeout: self.process.drain_timeout.map_or(DRAIN_TIMEOUT, |d| d.0),
            decapsulation,
            state: self.state.dir.map(|dir| StateSettings {
                dir,
                sensor,
                retention_days: self
                    .state
                    .retention_days
                    .map_or(RETENTION_DAYS, Spanned::into_inner),
            }),
        };
        // In file order, as a reader goes through the file.
        let mut warnings = checks.warnings;
        warnings.sort_by_key(|w| (w.file.clone(), w.line, w.column));
        Ok((settings, warnings))
    }
}

/// The error of text that does not parse as a configuration: at the key
/// the parser's span falls in, named, unless the parser's message names it
/// already (an unknown or missing key), or the text is not TOML at all.
fn parse_error(locator: &Locator<'_>, error: &toml::de::Error) -> ConfigError {
    // toml's message can span lines (it quotes the source): its first line
    // says what is wrong.
    let message = error
        .message()
        .lines()
        .next()
        .unwrap_or("invalid configuration");
    let offset = error.span().map_or(0, |span| span.start);
    let names_its_key =
        message.starts_with("unknown field") || message.starts_with("missing field");
    match locator.key_at(offset).filter(|_| !names_its_key) {
        Some((key, place)) => place.error(format!("{key}: {message}")),
        None => locator.place(offset).error(message.to_owned()),
    }
}

/// The checks of [`ConfigFile::build`], and the warnings they collect.
struct Checks<'t> {
    locator: Locator<'t>,
    warnings: Vec<ConfigWarning>,
}

impl Checks<'_> {
    /// `[incidents]`: the settings when enabled (the demo turns them on).
    fn incidents(
        &mut self,
        section: &IncidentsSection,
        demo: bool,
    ) -> Result<Option<crate::incident::IncidentSettings>, ConfigError> {
        use crate::incident::IncidentSettings;
        if !section.enabled.unwrap_or(demo) {
            return Ok(None);
        }
        let defaults = IncidentSettings::default();
        let severity =
            |checks: &Self, value: &Option<Spanned<String>>, key: &str, default| match value {
                None => Ok(default),
                Some(text) => crate::policy::Severity::parse(text.get_ref()).ok_or_else(|| {
                    checks.at(text.span()).error(format!(
                        "incidents.{key}: unknown severity {:?} (low, medium, high or critical)",
                        text.get_ref()
                    ))
                }),
            };
        let mut track_to = Vec::new();
        for text in &section.track_to {
            let network: ipnetwork::IpNetwork = text.get_ref().parse().map_err(|e| {
                self.at(text.span())
                    .error(format!("incidents.track_to: {:?}: {e}", text.get_ref()))
            })?;
            track_to.push(match network {
                ipnetwork::IpNetwork::V4(n) => (
                    false,
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.mask())),
                ),
                ipnetwork::IpNetwork::V6(n) => {
                    (true, u128::from(n.network()), u128::from(n.mask()))
                }
            });
        }
        let duration = |value: Option<HumanDuration>, default| value.map_or(default, |d| d.0);
        let sweep_hosts = self.bounded(
            "incidents.sweep_hosts",
            section.sweep_hosts.as_ref(),
            Bounded::new(32, 2, 65_536),
        ) as u32;
        let scan_ports = self.bounded(
            "incidents.scan_ports",
            section.scan_ports.as_ref(),
            Bounded::new(32, 2, 65_536),
        ) as u32;
        Ok(Some(IncidentSettings {
            idle: duration(section.idle, defaults.idle),
            max_age: duration(section.max_age, defaults.max_age),
            update_interval: duration(section.update_interval, defaults.update_interval),
            sweep_hosts,
            scan_ports,
            window: duration(section.window, defaults.window),
            sweep_severity: severity(
                self,
                &section.sweep_severity,
                "sweep_severity",
                defaults.sweep_severity,
            )?,
            scan_severity: severity(
                self,
                &section.scan_severity,
                "scan_severity",
                defaults.scan_severity,
            )?,
            max_initiators: self.bounded(
                "incidents.max_initiators",
                section.max_initiators.as_ref(),
                Bounded::at_least(defaults.max_initiators, 1),
            ),
            max_keys_per_initiator: defaults.max_keys_per_initiator,
            max_open: self.bounded(
                "incidents.max_open",
                section.max_open.as_ref(),
                Bounded::at_least(defaults.max_open, 1),
            ),
            track_to,
        }))
    }

    /// `[spool]`: each TCP or TLS feed's spool directory and bound, unless
    /// the feed says `spool = false`.
    fn spools(
        &self,
        section: &SpoolSection,
        feeds: &mut [FeedSettings],
    ) -> Result<(), ConfigError> {
        let max_mib = match &section.max_mib {
            None => SPOOL_MIB.0,
            Some(value) => {
                let mib = *value.get_ref();
                if !(SPOOL_MIB.1..=SPOOL_MIB.2).contains(&mib) {
                    return Err(self.at(value.span()).error(format!(
                        "spool.max_mib: {mib} is out of range: write {}-{} (MiB per feed)",
                        SPOOL_MIB.1, SPOOL_MIB.2
                    )));
                }
                mib
            }
        };
        let mut names = std::collections::HashSet::new();
        for (index, feed) in feeds.iter_mut().enumerate() {
            let place = || self.locator.entry_key("syslog", index, "spool");
            match (feed.spool, &section.dir, feed.url.scheme) {
                (Some(false), _, _) | (None, None, _) | (None, _, Scheme::Udp) => continue,
                (Some(true), _, Scheme::Udp) => {
                    return Err(place().error(format!(
                        "syslog[{index}].spool: a UDP feed cannot be spooled (nothing tells \
                         what its receiver got); use tcp:// or tls://"
                    )));
                }
                (Some(true), None, _) => {
                    return Err(place().error(format!(
                        "syslog[{index}].spool: no spool directory: set spool.dir"
                    )));
                }
                (_, Some(dir), _) => {
                    let base = spool_name(&feed.url);
                    let mut name = base.clone();
                    let mut n = 1;
                    while !names.insert(name.clone()) {
                        n += 1;
                        name = format!("{base}-{n}");
                    }
                    feed.spool_at = Some(crate::sink::syslog::SpoolSettings {
                        dir: dir.join(name),
                        max_bytes: max_mib << 20,
                    });
                }
            }
        }
        Ok(())
    }

    /// The place of the key holding the value at `span`.
    fn at(&self, span: Range<usize>) -> Place {
        self.locator
            .key_at(span.start)
            .map_or_else(|| self.locator.place(span.start), |(_, place)| place)
    }

    /// A count from the file, its default when absent, or brought within
    /// its bounds with a warning naming `key`.
    fn bounded<T>(&mut self, key: &str, value: Option<&Spanned<T>>, bounds: Bounded) -> usize
    where
        T: Copy + TryInto<usize>,
    {
        match value {
            None => bounds.default,
            Some(value) => {
                let place = self.at(value.span());
                let written = (*value.get_ref()).try_into().unwrap_or(usize::MAX);
                self.within(key, written, bounds, &place)
            }
        }
    }

    /// `value` brought within `bounds`, with a warning at `place` when it
    /// was not.
    fn within(&mut self, key: &str, value: usize, bounds: Bounded, place: &Place) -> usize {
        let used = value.clamp(bounds.least, bounds.most);
        if used < value {
            self.warnings.push(place.warning(format!(
                "{key}: {value} is more than the most, {used}: using {used}"
            )));
        } else if used > value {
            self.warnings.push(place.warning(format!(
                "{key}: {value} is less than the least, {used}: using {used}"
            )));
        }
        used
    }

    /// Where packets come from: the file's `[capture]` with the flags.
    fn source(
        &mut self,
        capture: CaptureSection,
        overrides: &Overrides,
    ) -> Result<Source, ConfigError> {
        let interfaces = if overrides.interfaces.is_empty() {
            capture.interfaces
        } else {
            overrides.interfaces.clone()
        };
        let pcap = overrides.pcap.clone().or(capture.pcap);
        let pace = overrides
            .pcap_pace
            .or(capture.pcap_pace)
            .unwrap_or_default();
        if overrides.demo {
            return Ok(Source::Synthetic);
        }
        let here = self.locator.table("capture");
        match (pcap, interfaces.is_empty()) {
            (Some(path), true) => Ok(Source::File {
                path,
                realtime: pace == Pace::Realtime,
            }),
            (Some(_), false) => {
                Err(here
                    .error("capture: both a pcap file and interfaces are given: choose one".into()))
            }
            (None, true) => Err(here.error(
                "capture: nothing to capture: give --interface IF (or capture.interfaces), or \
                 --pcap FILE"
                    .into(),
            )),
            (None, false) => {
                let workers = match overrides.workers {
                    Some(flag) => self.within("--workers", flag, WORKERS, &Place::command_line()),
                    None => self.bounded("capture.workers", capture.workers.as_ref(), WORKERS),
                };
                let snaplen = self.bounded("capture.snaplen", capture.snaplen.as_ref(), SNAPLEN);
                let buffer_mib = self.bounded(
                    "capture.buffer_mib",
                    capture.buffer_mib.as_ref(),
                    BUFFER_MIB,
                );
                Ok(Source::Interfaces {
                    names: interfaces,
                    backend: overrides
                        .backend
                        .or(capture.backend)
                        .unwrap_or(Backend::AfPacket),
                    workers,
                    // Within SNAPLEN's bounds, so it fits.
                    snaplen: u32::try_from(snaplen).unwrap_or(u32::MAX),
                    buffer_bytes: buffer_mib << 20,
                    promiscuous: capture.promiscuous.unwrap_or(true),
                    bpf: capture.bpf.filter(|f| !f.trim().is_empty()),
                })
            }
        }
    }

    /// The syslog feeds: the file's, or the `--syslog` flags' (which
    /// replace them) with the `--syslog-*` flags applied.
    fn feeds(
        &mut self,
        file: Vec<FeedSettings>,
        overrides: &Overrides,
    ) -> Result<Vec<FeedSettings>, ConfigError> {
        let feeds = if overrides.syslog.is_empty() {
            let mut file = file;
            for (index, feed) in file.iter_mut().enumerate() {
                feed.check().map_err(|e| {
                    self.locator
                        .array_entry("syslog", index)
                        .error(format!("syslog[{index}]: {e}"))
                })?;
                // A feed's queue holds at least one event.
                if let Some(queue) = feed.queue {
                    let place = self.locator.entry_key("syslog", index, "queue");
                    let key = format!("syslog[{index}].queue");
                    feed.queue = Some(self.within(&key, queue, FEED_QUEUE, &place));
                }
            }
            file
        } else {
            let mut feeds = Vec::with_capacity(overrides.syslog.len());
            for url in &overrides.syslog {
                let endpoint: Endpoint = url
                    .parse()
                    .map_err(|e| Place::command_line().error(format!("syslog.url: {e}")))?;
                let mut feed = FeedSettings::new(endpoint);
                feed.format = overrides.syslog_format.unwrap_or_default();
                if feed.url.scheme == Scheme::Tls {
                    feed.ca_file.clone_from(&overrides.syslog_ca_file);
                    if let Some((cert, key)) = &overrides.syslog_client_cert {
                        feed.client_cert = Some(cert.clone());
                        feed.client_key = Some(key.clone());
                    }
                }
                feeds.push(feed);
            }
            feeds
        };
        // A CA or a certificate that no feed would use is a mistake to
        // point out, not to ignore.
        let flag_tls_feeds =
            !overrides.syslog.is_empty() && feeds.iter().any(|feed| feed.url.scheme == Scheme::Tls);
        let tls_flags = [
            ("--syslog-ca", overrides.syslog_ca_file.is_some()),
            (
                "--syslog-client-cert",
                overrides.syslog_client_cert.is_some(),
            ),
        ];
        match tls_flags.iter().find(|(_, given)| *given) {
            Some((flag, _)) if !flag_tls_feeds => Err(Place::command_line().error(format!(
                "{flag}: applies to the --syslog tls://... feeds, and none is given"
            ))),
            _ => Ok(feeds),
        }
    }
}

/// A feed's spool directory name: its scheme, host and port, with what a
/// file name should not hold replaced (`tls-siem.example.org-6514`).
fn spool_name(url: &Endpoint) -> String {
    let scheme = match url.scheme {
        Scheme::Udp => "udp",
        Scheme::Tcp => "tcp",
        Scheme::Tls => "tls",
    };
    let host: String = url
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{scheme}-{host}-{}", url.port)
}

/// The name `path` gives in messages: the file, or the command line.
pub fn source_name(path: Option<&Path>) -> PathBuf {
    path.map_or_else(|| PathBuf::from(COMMAND_LINE), Path::to_owned)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// What every configuration below needs to start.
    const BASE: &str = "[capture]\ninterfaces = [\"eth1\"]\n[policy]\npath = \"p.toml\"\n";

    fn build(text: &str, overrides: &Overrides) -> Result<RunSettings, ConfigError> {
        build_warned(text, overrides).map(|(settings, _)| settings)
    }

    fn build_warned(
        text: &str,
        overrides: &Overrides,
    ) -> Result<(RunSettings, Vec<ConfigWarning>), ConfigError> {
        let path = Path::new("segwatch.toml");
        ConfigFile::parse(text, path)?.build(overrides, path)
    }

    /// The one line of the error that `text` (after [`BASE`]) gives.
    fn error(extra: &str) -> String {
        let e = build(&format!("{BASE}{extra}"), &Overrides::default()).unwrap_err();
        let line = e.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        line
    }

    /// The warnings that `text` (after [`BASE`]) gives, as lines.
    fn warnings(extra: &str, overrides: &Overrides) -> Vec<String> {
        let (_, warnings) = build_warned(&format!("{BASE}{extra}"), overrides).unwrap();
        warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_deploy_example_is_valid_and_gives_no_warning() {
        let text = include_str!("../../deploy/segwatch.toml");
        let (settings, warnings) = build_warned(text, &Overrides::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(matches!(
            settings.source,
            Source::Interfaces {
                backend: Backend::AfPacket,
                workers: 2,
                snaplen: 65_535,
                ..
            }
        ));
        assert_eq!(settings.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(settings.watch_interval, Duration::from_secs(2));
        assert_eq!(settings.syslog.len(), 1);
        assert_eq!(settings.syslog[0].url.scheme, Scheme::Tls);
        assert_eq!(settings.syslog[0].format, Format::Rfc5424);
        assert_eq!(settings.syslog[0].facility.number(), 16);
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let s = build(BASE, &Overrides::default()).unwrap();
        assert_eq!(
            s.source,
            Source::Interfaces {
                names: vec!["eth1".into()],
                backend: Backend::AfPacket,
                workers: 1,
                snaplen: 65_535,
                buffer_bytes: 64 << 20,
                promiscuous: true,
                bpf: None,
            }
        );
        assert_eq!(s.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(s.flows, FlowConfig::default());
        assert_eq!(s.queue, 10_000);
        assert_eq!(s.max_devices, crate::inventory::DEFAULT_CAPACITY);
        assert_eq!(s.drain_timeout, Duration::from_secs(5));
        assert!(s.watch_policy && s.detect_apps && !s.events_stdout);
    }

    #[test]
    fn typed_values_are_read_as_written() {
        let s = build(
            &format!(
                "{BASE}[flows]\ntcp_timeout = \"1h 30m\"\nmax_flows = 5\n\
                 [process]\ndrain_timeout = \"250ms\"\n[metrics]\nlisten = \"[::1]:9\"\n"
            )
            .replace(
                "[capture]\n",
                "[capture]\nbackend = \"pcap\"\nbpf = \"  \"\n",
            ),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.flows.tcp_timeout, Duration::from_secs(5400));
        assert_eq!(s.flows.max_flows, 5);
        assert_eq!(s.drain_timeout, Duration::from_millis(250));
        assert_eq!(s.metrics_listen.to_string(), "[::1]:9");
        let Source::Interfaces { backend, bpf, .. } = s.source else {
            panic!("interfaces");
        };
        assert_eq!(
            (backend, bpf),
            (Backend::Pcap, None),
            "a blank filter is none"
        );
    }

    #[test]
    fn the_sensor_is_named_as_written_or_by_the_host() {
        let named = build(
            &format!("{BASE}[state]\ndir = \"/s\"\nsensor = \"icu-3\"\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(named.state.unwrap().sensor, "icu-3");
        let host = build(
            &format!("{BASE}[state]\ndir = \"/s\"\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            Some(host.state.unwrap().sensor),
            crate::sys::hostname().or(Some("sensor".into()))
        );
        let line = error("[state]\ndir = \"/s\"\nsensor = \"\"\n");
        assert!(line.starts_with("segwatch.toml:7:"), "{line}");
        assert!(line.contains("state.sensor: must be 1 to 64"), "{line}");
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let e = build(
            "[capture]\ninterfaces = [\"eth1\"]\nworkerz = 2\n",
            &Overrides::default(),
        )
        .unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("segwatch.toml:3:1: "), "{line}");
        assert!(line.contains("unknown field `workerz`"), "{line}");
        assert_eq!(line.lines().count(), 1);
        let e = build("[metric]\nlisten = \"x\"\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("metric"), "{e}");
        let e = build(
            &format!("{BASE}[[syslog]]\nurl = \"udp://a\"\nport = 1\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("segwatch.toml:7:1: unknown field `port`"),
            "{e}"
        );
    }

    /// Each value a key refuses: the error names the key and points at it.
    #[test]
    fn bad_values_name_their_key_and_point_at_it() {
        for (extra, at, message) in [
            (
                "[flows]\ntcp_timeout = \"forever\"\n",
                "6:1",
                "flows.tcp_timeout: expected number at 0 (write e.g. \"30s\" or \"5m\")",
            ),
            (
                "[flows]\nudp_timeout = 30\n",
                "6:1",
                "flows.udp_timeout: invalid type: integer `30`, expected a duration",
            ),
            (
                "[metrics]\nlisten = \"localhost\"\n",
                "6:1",
                "metrics.listen: \"localhost\" is not ADDRESS:PORT (e.g. 127.0.0.1:9108)",
            ),
            (
                "[[syslog]]\nurl = \"udp://x:1\"\nformat = \"xml\"\n",
                "7:1",
                "syslog[0].format: unknown format \"xml\" (rfc5424, cef, leef or json)",
            ),
            (
                "[[syslog]]\nurl = \"http://x:1\"\n",
                "6:1",
                "syslog[0].url: \"http://x:1\": unknown scheme \"http\" (udp, tcp or tls)",
            ),
            (
                "[[syslog]]\nurl = \"udp://x:1\"\nfacility = \"local9\"\n",
                "7:1",
                "syslog[0].facility: unknown facility \"local9\"",
            ),
            (
                "[[syslog]]\nurl = \"udp://a\"\n[[syslog]]\nurl = \"udp://b\"\nsd_id = \"a b\"\n",
                "9:1",
                "syslog[1].sd_id: \"a b\" is not an RFC 5424 SD-ID",
            ),
            (
                "[[syslog]]\nurl = \"udp://a\"\n[[syslog]]\nurl = \"tls://b\"\nclient_key = \"k\"\n",
                "7:1",
                "syslog[1]: client_cert and client_key go together",
            ),
            (
                "[events]\nqueue = -1\n",
                "6:1",
                "events.queue: invalid value: integer `-1`",
            ),
            ("[capture.x]\n", "5:10", "unknown field `x`"),
        ] {
            let line = error(extra);
            let expected = format!("segwatch.toml:{at}: {message}");
            assert!(
                line.starts_with(&expected),
                "{extra}:\n{line}\nnot {expected}"
            );
        }
        let e = build("[capture]\nbackend = \"dpdk\"\n", &Overrides::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segwatch.toml:2:1: capture.backend: unknown backend \"dpdk\" (use \"af-packet\" or \"pcap\")"
        );
        let e = build("[capture]\npcap_pace = \"slow\"\n", &Overrides::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segwatch.toml:2:1: capture.pcap_pace: unknown pace \"slow\" (use \"full\" or \"realtime\")"
        );
    }

    /// Issue 16.9: `[spool]` gives each TCP and TLS feed a directory of its
    /// own, never a UDP feed; a feed may opt out; bad values name their key.
    #[test]
    fn spools_go_to_tcp_and_tls_feeds_each_in_its_own_directory() {
        let s = build(
            &format!(
                "{BASE}[spool]\ndir = \"/var/lib/segwatch/spool\"\nmax_mib = 64\n\
                 [[syslog]]\nurl = \"tcp://siem:601\"\n[[syslog]]\nurl = \"tcp://siem:601\"\n\
                 format = \"cef\"\n[[syslog]]\nurl = \"udp://relay\"\n\
                 [[syslog]]\nurl = \"tls://[fd00::1]\"\n[[syslog]]\nurl = \"tls://x\"\n\
                 spool = false\n"
            ),
            &Overrides::default(),
        )
        .unwrap();
        let spools: Vec<Option<(String, u64)>> = s
            .syslog
            .iter()
            .map(|f| {
                f.spool_at
                    .as_ref()
                    .map(|at| (at.dir.display().to_string(), at.max_bytes))
            })
            .collect();
        let at = |name: &str| Some((format!("/var/lib/segwatch/spool/{name}"), 64 << 20));
        assert_eq!(
            spools,
            [
                at("tcp-siem-601"),
                at("tcp-siem-601-2"),
                None,
                at("tls-fd00__1-6514"),
                None
            ]
        );
        // Without [spool], no feed spools.
        let s = build(
            &format!("{BASE}[[syslog]]\nurl = \"tcp://siem\"\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.syslog[0].spool_at, None);
        assert_eq!(
            error("[spool]\ndir = \"/s\"\nmax_mib = 0\n"),
            "segwatch.toml:7:1: spool.max_mib: 0 is out of range: write 1-1048576 (MiB per feed)"
        );
        assert_eq!(
            error("[[syslog]]\nurl = \"udp://x\"\nspool = true\n[spool]\ndir = \"/s\"\n"),
            "segwatch.toml:7:1: syslog[0].spool: a UDP feed cannot be spooled (nothing tells \
             what its receiver got); use tcp:// or tls://"
        );
        assert_eq!(
            error("[[syslog]]\nurl = \"tcp://x\"\nspool = true\n"),
            "segwatch.toml:7:1: syslog[0].spool: no spool directory: set spool.dir"
        );
    }

    #[test]
    fn text_that_is_not_toml_is_located_by_the_parser() {
        let e = build("[capture\ninterfaces = []\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("segwatch.toml:1:"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    /// Watching every 0 s would stop the daemon at start (the timer refuses
    /// a zero period): refused with its key.
    #[test]
    fn a_zero_watch_interval_is_refused() {
        let line = error("watch_interval = \"0s\"\n");
        assert!(
            line.starts_with("segwatch.toml:5:1: policy.watch_interval: must be more than 0s"),
            "{line}"
        );
    }

    /// Values accepted before and brought within range still start the
    /// daemon, with one warning each naming the file, line and key.
    #[test]
    fn out_of_range_values_are_warned_about_and_brought_within() {
        let extra = "[flows]\nmax_flows = 0\n[events]\nqueue = 20000000\n\
                     [inventory]\nmax_devices = 0\n[[syslog]]\nurl = \"udp://a\"\nqueue = 0\n";
        let text = format!(
            "{}{extra}",
            BASE.replace(
                "[capture]\n",
                "[capture]\nworkers = 65\nsnaplen = 10\nbuffer_mib = 0\n"
            )
        );
        let (s, warnings) = build_warned(&text, &Overrides::default()).unwrap();
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "segwatch.toml:2:1: capture.workers: 65 is more than the most, 64: using 64",
                "segwatch.toml:3:1: capture.snaplen: 10 is less than the least, 64: using 64",
                "segwatch.toml:4:1: capture.buffer_mib: 0 is less than the least, 1: using 1",
                "segwatch.toml:9:1: flows.max_flows: 0 is less than the least, 1: using 1",
                "segwatch.toml:11:1: events.queue: 20000000 is more than the most, 10000000: \
                 using 10000000",
                "segwatch.toml:13:1: inventory.max_devices: 0 is less than the least, 1: using 1",
                "segwatch.toml:16:1: syslog[0].queue: 0 is less than the least, 1: using 1",
            ]
        );
        assert!(matches!(
            s.source,
            Source::Interfaces {
                workers: 64,
                snaplen: 64,
                buffer_bytes: 1_048_576,
                ..
            }
        ));
        assert_eq!(
            (s.flows.max_flows, s.queue, s.max_devices, s.syslog[0].queue),
            (1, 10_000_000, 1, Some(1))
        );
        // In range: no warning; at the bounds too.
        assert!(warnings_of("[capture]\nworkers = 64\nsnaplen = 262144\n").is_empty());
    }

    fn warnings_of(capture: &str) -> Vec<ConfigWarning> {
        let text = BASE.replace("[capture]\n", capture);
        build_warned(&text, &Overrides::default()).unwrap().1
    }

    #[test]
    fn an_out_of_range_flag_is_warned_about_as_the_command_lines() {
        let overrides = Overrides {
            workers: Some(0),
            ..Overrides::default()
        };
        assert_eq!(
            warnings("", &overrides),
            ["command line:1:1: --workers: 0 is less than the least, 1: using 1"]
        );
    }

    #[test]
    fn flags_override_the_file() {
        let text = "[capture]\ninterfaces = [\"eth1\"]\n[policy]\npath = \"a.toml\"\n\
                    [metrics]\nlisten = \"127.0.0.1:1\"\n[[syslog]]\nurl = \"udp://h:514\"\n";
        let overrides = Overrides {
            pcap: Some("x.pcap".into()),
            pcap_pace: Some(Pace::Realtime),
            interfaces: vec![],
            policy: Some("b.toml".into()),
            metrics_listen: Some("127.0.0.1:2".into()),
            syslog: vec!["tcp://h:601".into()],
            syslog_format: Some(Format::Cef),
            events: Some("e.jsonl".into()),
            ..Overrides::default()
        };
        // A pcap file on the command line and interfaces in the file clash.
        let e = build(text, &overrides).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("segwatch.toml:1:2: capture: both a pcap file and interfaces"),
            "{e}"
        );
        let text = text.replace("interfaces = [\"eth1\"]", "");
        let s = build(&text, &overrides).unwrap();
        assert_eq!(
            s.source,
            Source::File {
                path: "x.pcap".into(),
                realtime: true
            }
        );
        assert_eq!(s.policy, Some("b.toml".into()));
        assert_eq!(s.metrics_listen.port(), 2);
        assert_eq!(s.syslog.len(), 1);
        assert_eq!(
            (s.syslog[0].url.to_string(), s.syslog[0].format),
            ("tcp://h:601".to_string(), Format::Cef)
        );
        assert_eq!(s.events_file, Some("e.jsonl".into()));
    }

    #[test]
    fn bad_flags_are_the_command_lines() {
        let flags = |overrides: Overrides| build(BASE, &overrides).unwrap_err().to_string();
        assert_eq!(
            flags(Overrides {
                metrics_listen: Some("nowhere".into()),
                ..Overrides::default()
            }),
            "command line:1:1: metrics.listen: \"nowhere\" is not ADDRESS:PORT (e.g. \
             127.0.0.1:9108)"
        );
        assert_eq!(
            flags(Overrides {
                syslog: vec!["http://x".into()],
                ..Overrides::default()
            }),
            "command line:1:1: syslog.url: \"http://x\": unknown scheme \"http\" (udp, tcp or tls)"
        );
    }

    #[test]
    fn the_tls_flags_reach_the_tls_feeds_only() {
        let overrides = Overrides {
            syslog: vec!["tls://siem".into(), "udp://relay".into()],
            syslog_ca_file: Some("ca.pem".into()),
            syslog_client_cert: Some(("c.pem".into(), "c.key".into())),
            ..Overrides::default()
        };
        let s = build(BASE, &overrides).unwrap();
        assert_eq!(s.syslog[0].ca_file, Some("ca.pem".into()));
        assert_eq!(
            s.syslog[0].client_identity().unwrap(),
            Some((Path::new("c.pem"), Path::new("c.key")))
        );
        assert_eq!(s.syslog[1].ca_file, None);
        assert_eq!(s.syslog[1].client_identity().unwrap(), None);
        // A new flag refuses what it cannot apply to.
        for (syslog, file_feed) in [
            (vec!["udp://relay".to_string()], ""),
            (vec![], "[[syslog]]\nurl = \"tls://s\"\n"),
        ] {
            let overrides = Overrides {
                syslog,
                syslog_ca_file: Some("ca.pem".into()),
                ..Overrides::default()
            };
            let e = build(&format!("{BASE}{file_feed}"), &overrides).unwrap_err();
            assert_eq!(
                e.to_string(),
                "command line:1:1: --syslog-ca: applies to the --syslog tls://... feeds, and none \
                 is given"
            );
        }
    }

    #[test]
    fn nothing_to_capture_or_no_policy_is_an_error() {
        let e = build("", &Overrides::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("segwatch.toml:1:1: capture: nothing to capture"),
            "{e}"
        );
        let only_pcap = Overrides {
            pcap: Some("x.pcap".into()),
            ..Overrides::default()
        };
        let e = build("", &only_pcap).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segwatch.toml:1:1: policy.path: no policy: give --policy FILE"
        );
        let e = build("[policy]\nwatch = false\n", &only_pcap).unwrap_err();
        assert!(
            e.to_string().starts_with("segwatch.toml:1:2: policy.path"),
            "{e}"
        );
        let demo = Overrides {
            demo: true,
            ..Overrides::default()
        };
        let s = build("", &demo).unwrap();
        assert_eq!(s.source, Source::Synthetic);
        assert!(s.events_stdout);
    }
}
