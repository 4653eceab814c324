//! The command line: flags (clap) and the commands behind them.
//!
//! Each command returns a [`Status`] or an [`Error`]; `main` prints the
//! error and maps both to the contract's exit statuses (section 4): 0 ran,
//! 1 a violation at or above `--fail-on` (or `diff`'s changes), 2 bad input
//! (which wins over 1).

#![forbid(unsafe_code)]

mod check;
mod completions;
mod diff;
mod error;
mod learn;
mod learn_live;
mod output;
mod replay;
mod report;
mod run;
mod synth;

pub use error::{Error, Status};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use segwatch::config::{Backend, Pace};
use segwatch::flow::FlowConfig;
use segwatch::policy::Severity;
use segwatch::sink::syslog::Format;
use segwatch::wire::Decapsulation;

/// segwatch watches a hospital network for segmentation violations.
///
/// It decodes every packet, groups packets into flows, judges each flow
/// against a segmentation policy (zones, services, ordered rules) and reports
/// each violating flow once, as a JSON event. No payload byte ever leaves it.
#[derive(Debug, Parser)]
#[command(
    name = "segwatch",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log level of the diagnostics written to stderr: error, warn, info,
    /// debug or trace (or a tracing filter such as `segwatch=debug`).
    /// Default: info for the daemon (`run`, `demo`: its start, reloads and
    /// stop), warn for the other commands.
    #[arg(long, global = true, env = "SEGWATCH_LOG")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge capture files offline against a policy (for CI and forensics).
    ///
    /// Reads pcap and pcapng files in the order given, as one capture, and
    /// writes one JSON line per violating flow to stdout (or --output), in
    /// capture order. A summary goes to stderr. Exit status: 0 ran; 1 with
    /// --fail-on and a violation at or above it; 2 bad input.
    Replay(ReplayArgs),
    /// Validate policy files: errors with file, line, column and a hint, and
    /// warnings about rules an earlier rule shadows. Exit status: 0 valid,
    /// 2 invalid.
    Check(CheckArgs),
    /// The sensor daemon: capture from SPAN ports (or a capture file), judge
    /// every flow, serve Prometheus metrics, send violations to the SIEM.
    ///
    /// Settings come from --config FILE (see deploy/segwatch.toml); the
    /// flags override it. SIGHUP reloads the policy (a broken one is refused
    /// and the one in force stays) and reopens the events file; SIGTERM or
    /// SIGINT stops capture, drains the queues and exits 0. Exit status 2:
    /// bad configuration.
    Run(RunArgs),
    /// The daemon on built-in synthetic hospital traffic with the example
    /// hospital policy: violations on stdout, metrics on 127.0.0.1:9108.
    Demo(DemoArgs),
    /// Write a synthetic capture (the sample, realistic hospital traffic of
    /// any size, or many distinct flows), for demos and benchmarks.
    Synth(SynthArgs),
    /// Learn a least-privilege policy from traffic.
    ///
    /// Takes the zones (and services) of a policy file, replays the
    /// captures, and writes a policy with one allow rule per zone pair
    /// listing the services seen, each commented with its flow count and
    /// first/last seen; everything else alerts. What the file's alert rules
    /// and clinical checks alert on today is written commented out, for
    /// review. Replaying the same captures against it gives no violation
    /// but those. Exit status: 0 learned; 2 bad input.
    Learn(LearnArgs),
    /// What-if: the flows whose verdict a candidate policy would change.
    ///
    /// Replays the captures against the current and the candidate policy
    /// and lists, per rule, the flows that would start or stop alerting or
    /// alert differently. Exit status: 0 no change; 1 changes (see
    /// --fail-on); 2 bad input.
    Diff(DiffArgs),
    /// Segmentation evidence for auditors: an HTML report (and PDF), its
    /// figures as JSON and CSV annexes, from captures or the daemon's state.
    ///
    /// Judges the captures (as `replay --apps --incidents --inventory`
    /// would), or reads the hourly evidence the daemon kept in its state
    /// directory for --since to --until, and writes report.html,
    /// report.json and CSV annexes into --out. The same inputs and
    /// --generated-at give byte-identical files. Exit status: 0 written;
    /// 2 bad input.
    Report(ReportArgs),
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// bash: `segwatch completions bash > /usr/share/bash-completion/completions/segwatch`;
    /// zsh: `segwatch completions zsh > /usr/share/zsh/vendor-completions/_segwatch`;
    /// fish: `segwatch completions fish > /usr/share/fish/vendor_completions.d/segwatch.fish`.
    Completions(CompletionsArgs),
    /// Print the man page segwatch(1) on stdout (roff), or with --dir write
    /// one page per command into DIR.
    Manpage(ManpageArgs),
}

/// Flags of `segwatch completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `segwatch manpage`.
#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write segwatch.1, segwatch-run.1, ... into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Flags of `segwatch run`: each overrides the configuration file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Capture on this interface (repeatable); replaces the file's interfaces.
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Run this capture file through the daemon instead, then keep serving
    /// until stopped.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Pace of --pcap: full speed or the capture's own pace.
    #[arg(long, value_name = "PACE", value_parser = named::<Pace>(&["full", "realtime"]))]
    pub pcap_pace: Option<Pace>,
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Address of /metrics and /healthz (default 127.0.0.1:9108).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Send violations to this syslog receiver (repeatable): udp://HOST:PORT,
    /// tcp://HOST:PORT (RFC 6587 octet counting) or tls://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub syslog: Vec<String>,
    /// Format of the --syslog feeds.
    #[arg(
        long,
        value_name = "FORMAT",
        value_parser = named::<Format>(&["rfc5424", "cef", "leef", "json"])
    )]
    pub syslog_format: Option<Format>,
    /// CA certificates (PEM) that sign the certificates of the --syslog
    /// tls:// receivers, instead of the platform's trust store.
    #[arg(long, value_name = "FILE", requires = "syslog")]
    pub syslog_ca: Option<PathBuf>,
    /// Client certificate (PEM) the --syslog tls:// feeds present to
    /// receivers that require one, with --syslog-client-key.
    #[arg(long, value_name = "FILE", requires_all = ["syslog", "syslog_client_key"])]
    pub syslog_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --syslog-client-cert.
    #[arg(long, value_name = "FILE", requires = "syslog_client_cert")]
    pub syslog_client_key: Option<PathBuf>,
    /// Write violation events as JSON lines to FILE (reopened on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Accepted risks (contract section 8), loaded, watched and reloaded
    /// with the policy.
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<PathBuf>,
    /// What the --syslog feeds carry: violation events, incident records
    /// (with `[incidents] enabled = true`), or both.
    #[arg(long, value_name = "RECORDS", value_parser = ["violations", "incidents", "both"], requires = "syslog")]
    pub syslog_records: Option<String>,
    /// Capture workers per interface.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Capture backend: af-packet (built in) or pcap (libpcap build).
    #[arg(long, value_name = "BACKEND", value_parser = named::<Backend>(&["af-packet", "pcap"]))]
    pub backend: Option<Backend>,
    /// Tunnels to open besides ERSPAN (always opened): a comma-separated
    /// list of vxlan, geneve, gre, or all, or none (the default); replaces
    /// capture.decapsulate.
    #[arg(long, value_name = "TUNNELS")]
    pub decapsulate: Option<Decapsulation>,
}

/// A flag taking one of `names`, parsed into `T`: the names are listed in
/// `--help` and completions, and a name clap accepts always parses.
fn named<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}

/// Flags of `segwatch demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of /metrics and /healthz.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9108")]
    pub metrics_listen: String,
}

/// Flags of `segwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The policy to judge flows against.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,

    /// Capture files (pcap or pcapng, by content), read in order as one capture.
    #[arg(value_name = "PCAP", required = true)]
    pub captures: Vec<PathBuf>,

    /// Write the violation events to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Exit with status 1 when a violation of this severity or above occurs
    /// (excepted violations and incident records do not count).
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<SeverityArg>,

    /// Accepted risks (contract section 8): a violation an exception covers
    /// carries its id in `exception`, joins no incident and does not count
    /// for --fail-on.
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<PathBuf>,

    /// Worker threads; the events are the same for any number. Default: one
    /// per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Do not print the summary to stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// Detect each flow's application (DICOM, HL7, TLS, HTTP, DHCP, device
    /// protocols) from its first bytes: events wait for it (at most 8
    /// packets or 2 s of capture time) and carry `app`, `dicom`, `hl7`,
    /// `tls`, `http` (contract section 3).
    #[arg(long)]
    pub apps: bool,

    /// Write the device inventory (every endpoint seen: MAC, vendor, zone,
    /// services, inferred class and evidence) to FILE: CSV when FILE ends
    /// in .csv, JSON otherwise.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Keep compiled policies in DIR and reuse them while the policy file's
    /// bytes and the segwatch build are the same: for CI jobs that replay
    /// many captures against one large policy (5,000 rules take about 40 ms
    /// to read and compile, about 3 ms from the cache). A damaged entry is
    /// compiled again. DIR decides verdicts as the policy file does: it must
    /// be yours and not writable by others, or it is not used.
    #[arg(long, value_name = "DIR", env = "SEGWATCH_POLICY_CACHE")]
    pub policy_cache: Option<PathBuf>,

    /// Tunnels to open besides ERSPAN (always opened): a comma-separated
    /// list of vxlan, geneve, gre, or all, or none (the default). A flow
    /// taken out of a tunnel is keyed by its VNI or key too, and its event
    /// carries `tunnel`.
    #[arg(long, value_name = "TUNNELS")]
    pub decapsulate: Option<Decapsulation>,

    /// Open those tunnels only where an outer address is in this network
    /// (repeatable; the tunnel endpoints of a mirror session).
    #[arg(long = "tunnel-endpoint", value_name = "CIDR")]
    pub tunnel_endpoints: Vec<ipnetwork::IpNetwork>,

    /// Frames per batch handed to the workers (tuning; the events do not
    /// depend on it).
    #[arg(long, value_name = "N", default_value_t = 16_384, hide = true)]
    pub batch_size: usize,

    /// Flow timeouts and limits.
    #[command(flatten)]
    pub flows: FlowArgs,

    /// Incidents (contract section 7).
    #[command(flatten)]
    pub incidents: IncidentArgs,
}

/// Incident settings of `segwatch replay` (the daemon's `[incidents]`).
#[derive(Debug, Args, Clone)]
pub struct IncidentArgs {
    /// Fold violations into incidents and detect sweeps and scans: incident
    /// records are interleaved with the events, and events that open or
    /// join an incident carry its `incident_id`; a summary line counts
    /// incidents by kind and severity.
    #[arg(long)]
    pub incidents: bool,

    /// An incident is over when nothing joined it for longer than this
    /// (capture time).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "15m", requires = "incidents")]
    pub incident_idle: Duration,

    /// A violation this long after its incident's first_seen opens a new
    /// incident.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "24h", requires = "incidents")]
    pub incident_max_age: Duration,

    /// At most one update record per incident per this much capture time.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m", requires = "incidents")]
    pub incident_update_interval: Duration,

    /// Distinct hosts on one protocol and port, within the window, that
    /// make a sweep.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..), requires = "incidents")]
    pub sweep_hosts: u32,

    /// Distinct protocol/port pairs of one host, within the window, that
    /// make a scan.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..), requires = "incidents")]
    pub scan_ports: u32,

    /// The sweep and scan window (capture time).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s", requires = "incidents")]
    pub incident_window: Duration,

    /// Count new flows to these responder ranges too (CIDR, repeatable);
    /// the private ranges always count.
    #[arg(long, value_name = "CIDR", requires = "incidents")]
    pub track_to: Vec<ipnetwork::IpNetwork>,

    /// Severity of sweep incidents.
    #[arg(
        long,
        value_name = "SEVERITY",
        default_value = "high",
        requires = "incidents"
    )]
    pub sweep_severity: SeverityArg,

    /// Severity of scan incidents.
    #[arg(
        long,
        value_name = "SEVERITY",
        default_value = "high",
        requires = "incidents"
    )]
    pub scan_severity: SeverityArg,
}

impl IncidentArgs {
    /// The settings, when incidents are on.
    pub fn settings(&self) -> Option<segwatch::incident::IncidentSettings> {
        self.incidents
            .then(|| segwatch::incident::IncidentSettings {
                idle: self.incident_idle,
                max_age: self.incident_max_age,
                update_interval: self.incident_update_interval,
                sweep_hosts: self.sweep_hosts,
                scan_ports: self.scan_ports,
                window: self.incident_window,
                sweep_severity: self.sweep_severity.into(),
                scan_severity: self.scan_severity.into(),
                track_to: self.track_to.iter().map(network_mask).collect(),
                ..segwatch::incident::IncidentSettings::default()
            })
    }
}

/// A network as (IPv6, network address, mask).
pub fn network_mask(network: &ipnetwork::IpNetwork) -> (bool, u128, u128) {
    match network {
        ipnetwork::IpNetwork::V4(n) => {
            let mask = u128::from(u32::from(n.mask()));
            (false, u128::from(u32::from(n.network())), mask)
        }
        ipnetwork::IpNetwork::V6(n) => (true, u128::from(n.network()), u128::from(n.mask())),
    }
}

/// Flow-tracking settings shared by the commands that track flows.
#[derive(Debug, Args, Clone)]
pub struct FlowArgs {
    /// Idle timeout of a TCP flow (capture time), e.g. 300s or 5m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "300s")]
    pub tcp_timeout: Duration,
    /// How long a TCP flow closed by RST or FINs both ways is kept after its
    /// last packet, so stragglers stay in it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    pub tcp_closed_timeout: Duration,
    /// Idle timeout of a UDP flow.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "120s")]
    pub udp_timeout: Duration,
    /// Idle timeout of an ICMP/ICMPv6 echo flow.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub icmp_timeout: Duration,
    /// Idle timeout of a flow of another IP protocol (GRE, ESP, ...).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "120s")]
    pub other_timeout: Duration,
    /// Most flows tracked at once; when full, flows idle past their timeout
    /// go first, then the least recently seen flow is evicted (and counted).
    /// About 140 bytes each: a long capture fills the table to this bound.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_flows: usize,
}

impl FlowArgs {
    /// The flow configuration these flags describe.
    pub fn config(&self) -> FlowConfig {
        FlowConfig {
            tcp_timeout: self.tcp_timeout,
            tcp_closed_timeout: self.tcp_closed_timeout,
            udp_timeout: self.udp_timeout,
            icmp_timeout: self.icmp_timeout,
            other_timeout: self.other_timeout,
            max_flows: self.max_flows,
        }
    }
}

/// Flags of `segwatch learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// A policy file holding the zones (and optionally services) to learn
    /// with; what its alert rules and clinical checks alert on is written
    /// as commented-out rules for review, never allowed.
    #[arg(long, value_name = "FILE")]
    pub zones: PathBuf,

    /// Capture files (pcap or pcapng), read in order as one capture.
    #[arg(value_name = "PCAP", required_unless_present = "interfaces")]
    pub captures: Vec<PathBuf>,

    /// Learn from live traffic on this interface instead (repeatable), for
    /// --duration. Only packet headers are kept, in memory and a private
    /// temporary file removed afterwards: never a payload byte.
    #[arg(
        long = "interface",
        short = 'i',
        value_name = "IF",
        conflicts_with = "captures"
    )]
    pub interfaces: Vec<String>,

    /// How long to watch the interfaces, e.g. 10m or 1h.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "interfaces")]
    pub duration: Option<Duration>,

    /// Live capture backend: af-packet (built in) or pcap (libpcap build).
    #[arg(long, value_name = "BACKEND", value_parser = ["af-packet", "pcap"], default_value = "af-packet")]
    pub backend: String,

    /// Also propose zones (/24, /64) for private subnets that no zone holds.
    #[arg(long)]
    pub networks: bool,

    /// Write the policy to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Worker threads. Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Flow timeouts and limits.
    #[command(flatten)]
    pub flows: FlowArgs,
}

/// When `segwatch diff` exits with status 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFailOn {
    /// Any change of verdict.
    Any,
    /// Only flows that would start alerting.
    NewAlerts,
    /// Never: report only.
    Never,
}

/// Flags of `segwatch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The segmentation policy (its zones and rules as written; for --state,
    /// the daemon's policy file).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,

    /// Accepted risks (contract section 8): the exception register, and
    /// which violations count as excepted.
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<PathBuf>,

    /// A previous report.json: its headline figures are shown beside this
    /// period's, with the change.
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,

    /// The report's date (RFC 3339, e.g. 2026-12-07T12:00:00Z); default:
    /// now. With the same inputs, the same date gives byte-identical files.
    #[arg(long, value_name = "TIME")]
    pub generated_at: Option<String>,

    /// Also write report.pdf, printed by a headless Chromium (the chromium
    /// package).
    #[arg(long)]
    pub pdf: bool,

    /// Where to write report.html, report.json and the CSV annexes (made
    /// when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Worker threads for judging captures. Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Capture files (pcap or pcapng), read in order as one capture.
    #[arg(
        value_name = "PCAP",
        required_unless_present = "state",
        conflicts_with = "state"
    )]
    pub captures: Vec<PathBuf>,

    /// Report from the hourly evidence the daemon keeps in this state
    /// directory (its `[state] dir`) instead of captures; repeat it for the
    /// state of several sensors, whose evidence adds up.
    #[arg(long, value_name = "DIR", requires_all = ["since", "until"])]
    pub state: Vec<PathBuf>,

    /// Start of the period (UTC): a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "DATE", requires = "state")]
    pub since: Option<String>,

    /// End of the period, exclusive (UTC): a date or an RFC 3339 time.
    #[arg(long, value_name = "DATE", requires = "state")]
    pub until: Option<String>,

    /// Flow timeouts and limits.
    #[command(flatten)]
    pub flows: FlowArgs,
}

/// Flags of `segwatch diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policy in force.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,

    /// The policy you would roll out.
    #[arg(long, value_name = "FILE")]
    pub candidate: PathBuf,

    /// Capture files (pcap or pcapng), read in order as one capture.
    #[arg(value_name = "PCAP", required = true)]
    pub captures: Vec<PathBuf>,

    /// Print each changed flow as a JSON line instead of the report.
    #[arg(long)]
    pub json: bool,

    /// Flows listed per rule in the report (the counts are always whole).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub examples: usize,

    /// What makes the exit status 1.
    #[arg(long, value_enum, default_value_t = DiffFailOn::Any)]
    pub fail_on: DiffFailOn,

    /// Worker threads. Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Flow timeouts and limits.
    #[command(flatten)]
    pub flows: FlowArgs,
}

/// A severity on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    /// any violation
    Low,
    /// medium, high or critical
    Medium,
    /// high or critical
    High,
    /// critical only
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(arg: SeverityArg) -> Severity {
        match arg {
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

/// Flags of `segwatch check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files to validate.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Also validate this exceptions file against each policy: errors with
    /// file, line and column, and warnings for exceptions that have expired
    /// or that the policy makes unmatchable (contract section 8).
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<PathBuf>,
}

/// Which synthetic capture to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The small capture bundled as `tests/fixtures/hospital-sample.pcap`.
    Sample,
    /// Realistic hospital traffic: many short interleaved flows of small
    /// packets, a few percent of them violations of example-hospital.toml.
    Hospital,
    /// One single-packet TCP flow (a SYN) per packet, all distinct (for the
    /// concurrent-flows memory figure).
    DistinctFlows,
    /// A flood that fills every bound of the daemon at once (flows,
    /// devices, inspections, incidents, initiators, sink queues), for the
    /// memory sizing; its size from --sources and the flags after it.
    Flood,
}

/// Flags of `segwatch synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Which capture.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Where to write it (classic pcap, microseconds).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Frames to write (hospital, distinct-flows).
    #[arg(long, default_value_t = 1_000_000)]
    pub packets: u64,
    /// Flows open at any one time (hospital).
    #[arg(long, default_value_t = 20_000)]
    pub concurrent_flows: usize,
    /// Share of flows that violate example-hospital.toml (hospital).
    #[arg(long, default_value_t = 0.02)]
    pub violation_share: f64,
    /// Generator seed (hospital).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Senders, each a device with a DHCP host name starting nine violating
    /// flows (flood; default 112,000).
    #[arg(long)]
    pub sources: Option<u32>,
    /// Guest hosts sweeping (flood; default 100).
    #[arg(long)]
    pub sweepers: Option<u32>,
    /// Hosts each of them sweeps (flood; default 1,000).
    #[arg(long)]
    pub sweep_hosts: Option<u32>,
    /// Hosts scanning (flood; default 100).
    #[arg(long)]
    pub scanners: Option<u32>,
    /// Ports each of them scans (flood; default 1,000).
    #[arg(long)]
    pub scan_ports: Option<u32>,
    /// Flows whose first message never completes (flood; default 9,000).
    #[arg(long)]
    pub inspections: Option<u32>,
    /// Bytes of each one's first segment, 100-60,000 (flood; default
    /// 2,100).
    #[arg(long)]
    pub inspection_bytes: Option<u32>,
}

/// Runs the parsed command line: the status it ends with, or the error that
/// stopped it.
pub fn run(cli: Cli) -> Result<Status, Error> {
    // The daemon's log is kept readable when something fails over and over.
    let daemon = matches!(cli.command, Command::Run(_) | Command::Demo(_));
    init_logging(
        cli.log_level
            .as_deref()
            .unwrap_or(if daemon { "info" } else { "warn" }),
        daemon,
    );
    match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => run::demo(&args),
        Command::Synth(args) => synth::run(&args),
        Command::Learn(args) => learn::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Manpage(args) => completions::manpage(&args),
    }
}

/// Logs go to stderr, never into the JSON on stdout. With `limit_repeats`,
/// a line repeated within a few seconds is written once, and the next one
/// says how many were left out (`segwatch::runtime::logging`).
fn init_logging(level: &str, limit_repeats: bool) {
    use segwatch::runtime::logging::{NoteSuppressed, REPEAT_PERIOD, RepeatLimit};
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let format = tracing_subscriber::fmt::format().with_target(false);
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .event_format(NoteSuppressed(format))
        .with_filter(limit_repeats.then(|| RepeatLimit::new(REPEAT_PERIOD)));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
}

/// `n` and `noun`, plural unless `n` is 1: `1 error`, `2 errors`.
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Writes `message` and a newline to standard error in one call. Standard
/// error is unbuffered, and `eprintln!` writes each formatted piece on its
/// own: a summary line took a dozen writes, between which another process's
/// output (a CI job's parallel steps) could land.
pub fn stderr_line(message: impl std::fmt::Display) {
    use std::io::Write as _;
    let line = format!("{message}\n");
    // Nothing to do when standard error is gone; the exit status still tells.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
