//! The daemon's configuration file (`segwatch run --config FILE`), and the
//! settings it builds with the command line's overrides.
//!
//! Two layers, as everywhere in segwatch: [`ConfigFile`] only describes the
//! TOML (every table denies unknown keys), and [`ConfigFile::build`] checks it
//! and produces [`RunSettings`]. `deploy/segwatch.toml` is a commented
//! example of every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::flow::FlowConfig;

/// A configuration that cannot be used: one line naming the file, the line,
/// the column and the key.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    /// The configuration file (or `command line`).
    pub file: PathBuf,
    /// 1-based line (1 for problems not tied to one).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

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
    /// Syslog feeds, any number.
    #[serde(default)]
    pub syslog: Vec<SyslogSection>,
    /// Process settings.
    #[serde(default)]
    pub process: ProcessSection,
    /// The device inventory.
    #[serde(default)]
    pub inventory: InventorySection,
    /// Application detection.
    #[serde(default)]
    pub detection: DetectionSection,
    /// The text it was read from, to point errors at their line.
    #[serde(skip)]
    text: String,
}

/// `[detection]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSection {
    /// Detect each flow's application from its first bytes; events wait
    /// for it (at most 8 packets or 2 s). Default true.
    pub enabled: Option<bool>,
}

/// `[inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// Most devices held. Default 100,000.
    pub max_devices: Option<usize>,
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
    /// `full` (as fast as possible) or `realtime` (at capture pace). Default `full`.
    pub pcap_pace: Option<String>,
    /// `af-packet` (default, built in) or `pcap` (libpcap; needs the `pcap`
    /// build feature).
    pub backend: Option<String>,
    /// Capture workers per interface (AF_PACKET fanout). Default 1.
    pub workers: Option<usize>,
    /// Bytes captured per frame. Default 65535.
    pub snaplen: Option<u32>,
    /// Kernel buffer per interface, MiB, shared evenly among its AF_PACKET
    /// workers' rings (each at least 4 MiB). Default 64. Too small a buffer
    /// drops packets in bursts.
    pub buffer_mib: Option<usize>,
    /// Put the interface in promiscuous mode. Default true (a SPAN port
    /// delivers frames addressed to other hosts).
    pub promiscuous: Option<bool>,
    /// A BPF filter (libpcap syntax). Default: none.
    pub bpf: Option<String>,
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
    /// How often the file is checked, e.g. "2s". Default 2 s.
    pub watch_interval: Option<String>,
}

/// `[flows]`: as the `replay` flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSection {
    /// TCP idle timeout, e.g. "300s".
    pub tcp_timeout: Option<String>,
    /// Closed TCP linger, e.g. "10s".
    pub tcp_closed_timeout: Option<String>,
    /// UDP idle timeout.
    pub udp_timeout: Option<String>,
    /// ICMP echo idle timeout.
    pub icmp_timeout: Option<String>,
    /// Other protocols' idle timeout.
    pub other_timeout: Option<String>,
    /// Most flows held at once, over all workers. Default 1,000,000.
    pub max_flows: Option<usize>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of `/metrics` and `/healthz`. Default 127.0.0.1:9108.
    pub listen: Option<String>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Write violation events as JSON lines to this file (reopened on SIGHUP).
    pub file: Option<PathBuf>,
    /// Also print them on stdout. Default false (`segwatch demo` sets it).
    pub stdout: Option<bool>,
    /// Events queued per sink before new ones are dropped. Default 10,000.
    pub queue: Option<usize>,
}

/// `[[syslog]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSection {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`.
    pub url: String,
    /// `rfc5424` (default), `cef`, `leef` or `json`.
    pub format: Option<String>,
    /// Facility name or number. Default `local0`.
    pub facility: Option<String>,
    /// HOSTNAME in the header. Default: this machine's name.
    pub hostname: Option<String>,
    /// Structured-data ID. Default `segwatch@32473`.
    pub sd_id: Option<String>,
    /// Queue bound. Default: `[events] queue`.
    pub queue: Option<usize>,
    /// TLS: CA certificates (PEM) that sign the receiver's certificate.
    pub ca_file: Option<PathBuf>,
    /// TLS: client certificate (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// TLS: client key (PEM).
    pub client_key: Option<PathBuf>,
    /// TLS: name to verify the receiver's certificate against. Default: the URL's host.
    pub server_name: Option<String>,
}

/// `[process]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// Drop to this user once the capture is open (needs root to start).
    pub user: Option<String>,
    /// How long SIGTERM waits for queued events to be delivered. Default "5s".
    pub drain_timeout: Option<String>,
}

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Live interfaces.
    Interfaces {
        /// Interface names.
        names: Vec<String>,
        /// `af-packet` or `pcap`.
        backend: String,
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

/// A syslog feed, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogSettings {
    /// The URL as written.
    pub url: String,
    /// The format name.
    pub format: String,
    /// Facility as written.
    pub facility: Option<String>,
    /// HOSTNAME override.
    pub hostname: Option<String>,
    /// SD-ID override.
    pub sd_id: Option<String>,
    /// Queue bound.
    pub queue: usize,
    /// TLS CA file.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// TLS server name.
    pub server_name: Option<String>,
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
    /// How often to look at the policy file.
    pub watch_interval: Duration,
    /// Flow timeouts and bound.
    pub flows: FlowConfig,
    /// Metrics listener.
    pub metrics_listen: SocketAddr,
    /// Events file.
    pub events_file: Option<PathBuf>,
    /// Events on stdout.
    pub events_stdout: bool,
    /// Queue bound of the events sinks.
    pub queue: usize,
    /// Syslog feeds.
    pub syslog: Vec<SyslogSettings>,
    /// User to switch to after opening the capture.
    pub user: Option<String>,
    /// SIGTERM's drain bound.
    pub drain_timeout: Duration,
    /// The device inventory's bound.
    pub max_devices: usize,
    /// Application detection on.
    pub detect_apps: bool,
}

/// The command line's overrides (contract section 4).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--interface`, repeatable: replaces the file's interfaces.
    pub interfaces: Vec<String>,
    /// `--pcap FILE`.
    pub pcap: Option<PathBuf>,
    /// `--pcap-pace realtime`.
    pub pcap_realtime: Option<bool>,
    /// `--policy FILE`.
    pub policy: Option<PathBuf>,
    /// `--metrics-listen ADDR:PORT`.
    pub metrics_listen: Option<String>,
    /// `--syslog URL`, repeatable: replaces the file's feeds.
    pub syslog: Vec<String>,
    /// `--syslog-format`: for the `--syslog` feeds.
    pub syslog_format: Option<String>,
    /// `--events FILE`.
    pub events: Option<PathBuf>,
    /// `--workers N`.
    pub workers: Option<usize>,
    /// `--backend`.
    pub backend: Option<String>,
    /// The demo: synthetic traffic, events on stdout.
    pub demo: bool,
}

/// The default metrics listener (contract section 4).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9108";

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
        let parsed: Result<ConfigFile, _> = toml::from_str(text);
        parsed
            .map(|mut file| {
                file.text = text.to_string();
                file
            })
            .map_err(|e| {
                let (line, column) = e
                    .span()
                    .map_or((1, 1), |span| line_column(text, span.start));
                // toml's message can span lines (it quotes the source): keep its
                // first line, which names the key.
                let message = e
                    .message()
                    .lines()
                    .next()
                    .unwrap_or("invalid configuration");
                ConfigError {
                    file: path.to_owned(),
                    line,
                    column,
                    message: message.to_string(),
                }
            })
    }

    /// Checks the file with the command line's overrides applied. `path`
    /// names the file in errors (`command line` when there is none).
    pub fn build(mut self, overrides: &Overrides, path: &Path) -> Result<RunSettings, ConfigError> {
        let text = std::mem::take(&mut self.text);
        let err = |key: &str, message: String| {
            let (line, column) = key_position(&text, key);
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                message: format!("{key}: {message}"),
            }
        };
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| err(key, format!("{e} (write e.g. \"30s\" or \"5m\")"))),
        };
        let capture = self.capture;
        let backend = overrides
            .backend
            .clone()
            .or(capture.backend)
            .unwrap_or_else(|| "af-packet".to_string());
        if !matches!(backend.as_str(), "af-packet" | "pcap") {
            return Err(err(
                "capture.backend",
                format!("unknown backend {backend:?} (use \"af-packet\" or \"pcap\")"),
            ));
        }
        let interfaces = if overrides.interfaces.is_empty() {
            capture.interfaces
        } else {
            overrides.interfaces.clone()
        };
        let pcap = overrides.pcap.clone().or(capture.pcap);
        let realtime = match (overrides.pcap_realtime, capture.pcap_pace.as_deref()) {
            (Some(realtime), _) => realtime,
            (None, None | Some("full")) => false,
            (None, Some("realtime")) => true,
            (None, Some(other)) => {
                return Err(err(
                    "capture.pcap_pace",
                    format!("unknown pace {other:?} (use \"full\" or \"realtime\")"),
                ));
            }
        };
        let source = if overrides.demo {
            Source::Synthetic
        } else {
            match (pcap, interfaces.is_empty()) {
                (Some(path), true) => Source::File { path, realtime },
                (Some(_), false) => {
                    return Err(err(
                        "capture",
                        "both a pcap file and interfaces are given: choose one".into(),
                    ));
                }
                (None, true) => {
                    return Err(err(
                        "capture",
                        "nothing to capture: give --interface IF (or capture.interfaces), or \
                         --pcap FILE"
                            .into(),
                    ));
                }
                (None, false) => Source::Interfaces {
                    names: interfaces,
                    backend,
                    workers: overrides
                        .workers
                        .or(capture.workers)
                        .unwrap_or(1)
                        .clamp(1, 64),
                    snaplen: capture.snaplen.unwrap_or(65_535).clamp(64, 262_144),
                    buffer_bytes: capture.buffer_mib.unwrap_or(64).clamp(1, 4096) << 20,
                    promiscuous: capture.promiscuous.unwrap_or(true),
                    bpf: capture.bpf.filter(|f| !f.trim().is_empty()),
                },
            }
        };
        let policy = overrides.policy.clone().or(self.policy.path);
        if policy.is_none() && !overrides.demo {
            return Err(err("policy.path", "no policy: give --policy FILE".into()));
        }
        let defaults = FlowConfig::default();
        let f = &self.flows;
        let flows = FlowConfig {
            tcp_timeout: duration("flows.tcp_timeout", &f.tcp_timeout, defaults.tcp_timeout)?,
            tcp_closed_timeout: duration(
                "flows.tcp_closed_timeout",
                &f.tcp_closed_timeout,
                defaults.tcp_closed_timeout,
            )?,
            udp_timeout: duration("flows.udp_timeout", &f.udp_timeout, defaults.udp_timeout)?,
            icmp_timeout: duration("flows.icmp_timeout", &f.icmp_timeout, defaults.icmp_timeout)?,
            other_timeout: duration(
                "flows.other_timeout",
                &f.other_timeout,
                defaults.other_timeout,
            )?,
            max_flows: f.max_flows.unwrap_or(defaults.max_flows).max(1),
        };
        let listen = overrides
            .metrics_listen
            .clone()
            .or(self.metrics.listen)
            .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.to_string());
        let metrics_listen: SocketAddr = listen.parse().map_err(|_| {
            err(
                "metrics.listen",
                format!("{listen:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9108)"),
            )
        })?;
        let queue = self.events.queue.unwrap_or(10_000).clamp(1, 10_000_000);
        let syslog = if overrides.syslog.is_empty() {
            let mut feeds = Vec::new();
            for (i, s) in self.syslog.into_iter().enumerate() {
                let key = format!("syslog[{i}]");
                let client_cert = match (s.client_cert, s.client_key) {
                    (Some(cert), Some(key)) => Some((cert, key)),
                    (None, None) => None,
                    _ => {
                        return Err(err(&key, "client_cert and client_key go together".into()));
                    }
                };
                feeds.push(SyslogSettings {
                    url: s.url,
                    format: s.format.unwrap_or_else(|| "rfc5424".into()),
                    facility: s.facility,
                    hostname: s.hostname,
                    sd_id: s.sd_id,
                    queue: s.queue.unwrap_or(queue),
                    ca_file: s.ca_file,
                    client_cert,
                    server_name: s.server_name,
                });
            }
            feeds
        } else {
            let format = overrides
                .syslog_format
                .clone()
                .unwrap_or_else(|| "rfc5424".into());
            overrides
                .syslog
                .iter()
                .map(|url| SyslogSettings {
                    url: url.clone(),
                    format: format.clone(),
                    facility: None,
                    hostname: None,
                    sd_id: None,
                    queue,
                    ca_file: None,
                    client_cert: None,
                    server_name: None,
                })
                .collect()
        };
        for feed in &syslog {
            if let Err(message) = crate::sink::syslog::Endpoint::parse(&feed.url) {
                return Err(err("syslog.url", format!("{:?}: {message}", feed.url)));
            }
            if let Some(name) = &feed.facility
                && crate::sink::syslog::parse_facility(name).is_none()
            {
                return Err(err(
                    "syslog.facility",
                    format!("unknown facility {name:?} (kern, user, ..., local0-local7, or 0-23)"),
                ));
            }
            if !matches!(feed.format.as_str(), "rfc5424" | "cef" | "leef" | "json") {
                return Err(err(
                    "syslog.format",
                    format!(
                        "unknown format {:?} (rfc5424, cef, leef or json)",
                        feed.format
                    ),
                ));
            }
        }
        Ok(RunSettings {
            source,
            policy,
            watch_policy: self.policy.watch.unwrap_or(true),
            watch_interval: duration(
                "policy.watch_interval",
                &self.policy.watch_interval,
                Duration::from_secs(2),
            )?,
            flows,
            metrics_listen,
            events_file: overrides.events.clone().or(self.events.file),
            events_stdout: overrides.demo || self.events.stdout.unwrap_or(false),
            queue,
            syslog,
            user: self.process.user,
            detect_apps: self.detection.enabled.unwrap_or(true),
            max_devices: self
                .inventory
                .max_devices
                .unwrap_or(crate::inventory::DEFAULT_CAPACITY)
                .max(1),
            drain_timeout: duration(
                "process.drain_timeout",
                &self.process.drain_timeout,
                Duration::from_secs(5),
            )?,
        })
    }
}

/// Where the key `section.name` (or `section[i].name`) is written, to point
/// an error at it: the first `name =` after the section's header; line 1
/// when it is not written (the value came from the command line or a
/// default).
fn key_position(text: &str, key: &str) -> (usize, usize) {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let section = section.split('[').next().unwrap_or(section);
    let header = [format!("[{section}]"), format!("[[{section}]]")];
    let start = header
        .iter()
        .filter_map(|h| text.find(h.as_str()))
        .min()
        .unwrap_or(0);
    let mut offset = start;
    for line in text[start..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            let indent = line.len() - trimmed.len();
            return line_column(text, offset + indent);
        }
        offset += line.len();
    }
    if !section.is_empty() && start > 0 {
        line_column(text, start)
    } else {
        (1, 1)
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str, overrides: &Overrides) -> Result<RunSettings, ConfigError> {
        let path = Path::new("segwatch.toml");
        ConfigFile::parse(text, path)?.build(overrides, path)
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let text = include_str!("../../deploy/segwatch.toml");
        let settings = build(text, &Overrides::default()).unwrap();
        assert!(matches!(settings.source, Source::Interfaces { .. }));
        assert_eq!(settings.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
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
        assert!(line.contains("workerz"), "{line}");
        assert_eq!(line.lines().count(), 1);
        let e = build("[metric]\nlisten = \"x\"\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("metric"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "[capture]\ninterfaces = [\"eth1\"]\n[policy]\npath = \"p.toml\"\n";
        for (extra, key, line) in [
            (
                "[flows]\ntcp_timeout = \"forever\"\n",
                "flows.tcp_timeout",
                6,
            ),
            ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen", 6),
            (
                "[[syslog]]\nurl = \"udp://x:1\"\nformat = \"xml\"\n",
                "syslog.format",
                7,
            ),
            ("[[syslog]]\nurl = \"http://x:1\"\n", "syslog.url", 6),
            (
                "[[syslog]]\nurl = \"udp://x:1\"\nfacility = \"local9\"\n",
                "syslog.facility",
                7,
            ),
        ] {
            let e = build(&format!("{base}{extra}"), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
            let at = format!("segwatch.toml:{line}:1: ");
            assert!(e.to_string().starts_with(&at), "points at the key: {e}");
        }
        let e = build("[capture]\nbackend = \"dpdk\"\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("capture.backend"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let text = "[capture]\ninterfaces = [\"eth1\"]\n[policy]\npath = \"a.toml\"\n\
                    [metrics]\nlisten = \"127.0.0.1:1\"\n[[syslog]]\nurl = \"udp://h:514\"\n";
        let overrides = Overrides {
            pcap: Some("x.pcap".into()),
            interfaces: vec![],
            policy: Some("b.toml".into()),
            metrics_listen: Some("127.0.0.1:2".into()),
            syslog: vec!["tcp://h:601".into()],
            syslog_format: Some("cef".into()),
            events: Some("e.jsonl".into()),
            ..Overrides::default()
        };
        // A pcap file on the command line and interfaces in the file clash.
        assert!(build(text, &overrides).is_err());
        let text = text.replace("interfaces = [\"eth1\"]", "");
        let s = build(&text, &overrides).unwrap();
        assert_eq!(
            s.source,
            Source::File {
                path: "x.pcap".into(),
                realtime: false
            }
        );
        assert_eq!(s.policy, Some("b.toml".into()));
        assert_eq!(s.metrics_listen.port(), 2);
        assert_eq!(s.syslog.len(), 1);
        assert_eq!(
            (s.syslog[0].url.as_str(), s.syslog[0].format.as_str()),
            ("tcp://h:601", "cef")
        );
        assert_eq!(s.events_file, Some("e.jsonl".into()));
    }

    #[test]
    fn nothing_to_capture_or_no_policy_is_an_error() {
        assert!(build("", &Overrides::default()).is_err());
        let only_pcap = Overrides {
            pcap: Some("x.pcap".into()),
            ..Overrides::default()
        };
        let e = build("", &only_pcap).unwrap_err();
        assert!(e.to_string().contains("policy"), "{e}");
        let demo = Overrides {
            demo: true,
            ..Overrides::default()
        };
        let s = build("", &demo).unwrap();
        assert_eq!(s.source, Source::Synthetic);
        assert!(s.events_stdout);
    }
}
