//! A syslog feed's settings: a `[[syslog]]` table of the daemon's
//! configuration, or a `--syslog URL` flag. Each value is typed and checked
//! here, once, as it is read: the configuration only places the messages
//! (file, line, key), the feed only uses what it is given.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::Format;

/// The RFC 5424 SD-ID used unless configured: 32473 is the example
/// enterprise number of RFC 5612.
pub const DEFAULT_SD_ID: &str = "segwatch@32473";

/// The facility used unless configured: local0.
const DEFAULT_FACILITY: u8 = 16;

/// One feed, as `[[syslog]]` writes it. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// The receiver: `udp://HOST:PORT`, `tcp://HOST:PORT` (RFC 6587 octet
    /// counting) or `tls://HOST:PORT`; ports default to 514 (6514 for TLS).
    pub url: Endpoint,
    /// Message format: `rfc5424` (default), `cef`, `leef` or `json`.
    #[serde(default)]
    pub format: Format,
    /// Facility, a name (`local0`, the default) or a number 0-23.
    #[serde(default)]
    pub facility: Facility,
    /// HOSTNAME in the header; default: this machine's name. Characters a
    /// header cannot hold are left out.
    pub hostname: Option<String>,
    /// Structured-data ID; default `segwatch@32473` (use your own
    /// enterprise number).
    #[serde(default)]
    pub sd_id: SdId,
    /// Events queued for this feed before new ones are dropped and counted;
    /// default: the events queue (`events.queue`).
    pub queue: Option<usize>,
    /// TLS: CA certificates (PEM) that sign the receiver's certificate;
    /// default: the platform's trust store.
    pub ca_file: Option<PathBuf>,
    /// TLS: client certificate chain (PEM), with `client_key`, for
    /// receivers that require one.
    pub client_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// TLS: the name the receiver's certificate must carry; default: the
    /// URL's host.
    pub server_name: Option<String>,
    /// What the feed carries: `"violations"` and/or `"incidents"` (contract
    /// section 7); default `["violations"]`.
    #[serde(default)]
    pub records: Vec<crate::sink::RecordKind>,
    /// Also carry excepted violations and incidents (contract section 8).
    /// Default false: an accepted risk does not page the SOC.
    #[serde(default)]
    pub excepted: bool,
    /// Spool this feed to disk when `spool.dir` is set (TCP and TLS feeds
    /// only). Default true.
    pub spool: Option<bool>,
    /// Where and how much this feed spools: set by the configuration's
    /// build step from `[spool]`, never written in a `[[syslog]]` table.
    #[serde(skip)]
    pub spool_at: Option<SpoolSettings>,
}

/// A feed's disk spool: its own directory and its bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The feed's spool directory (created, mode 0700).
    pub dir: PathBuf,
    /// The most bytes its files may take on disk.
    pub max_bytes: u64,
}

impl FeedSettings {
    /// A feed to `url` with every other setting at its default (a
    /// `--syslog URL` flag).
    pub fn new(url: Endpoint) -> FeedSettings {
        FeedSettings {
            url,
            format: Format::default(),
            facility: Facility::default(),
            hostname: None,
            sd_id: SdId::default(),
            queue: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            records: Vec::new(),
            excepted: false,
            spool: None,
            spool_at: None,
        }
    }

    /// The client certificate and its key, which go together.
    pub fn client_identity(&self) -> Result<Option<(&Path, &Path)>, SettingsError> {
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err(SettingsError::ClientIdentity),
        }
    }

    /// Checks what no single value shows: a client certificate without its
    /// key, or the reverse.
    pub fn check(&self) -> Result<(), SettingsError> {
        self.client_identity().map(drop)
    }
}

/// A setting that cannot be used. Each message names the value and what
/// would be accepted; the configuration adds the file, line and key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A receiver URL that cannot be used.
    #[error("{url:?}: {problem}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// A format segwatch does not write.
    #[error("unknown format {0:?} (rfc5424, cef, leef or json)")]
    Format(String),
    /// A facility that is neither a name nor 0-23.
    #[error("unknown facility {0:?} (kern, user, ..., local0-local7, or 0-23)")]
    Facility(String),
    /// An SD-ID that RFC 5424 does not allow.
    #[error(
        "{0:?} is not an RFC 5424 SD-ID (1-32 printable characters without space, '=', ']' \
         or '\"', e.g. \"segwatch@32473\")"
    )]
    SdId(String),
    /// One of `client_cert` and `client_key` without the other.
    #[error("client_cert and client_key go together")]
    ClientIdentity,
}

/// What is wrong with a receiver URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    /// No `SCHEME://`.
    #[error("not a URL (write udp://HOST:PORT, tcp://... or tls://...)")]
    NotAUrl,
    /// A scheme other than udp, tcp and tls.
    #[error("unknown scheme {0:?} (udp, tcp or tls)")]
    Scheme(String),
    /// `[` without `]`.
    #[error("unclosed '[' in the host")]
    UnclosedBracket,
    /// Something other than `:PORT` after a bracketed host.
    #[error("unexpected {0:?} after the host")]
    AfterHost(String),
    /// An IPv6 address without brackets (its colons look like a port).
    #[error("write an IPv6 address in brackets: [::1]:514")]
    UnbracketedIpv6,
    /// A host that is empty or holds URL punctuation.
    #[error("{0:?} is not a host name or address")]
    Host(String),
    /// A port outside 1-65535.
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
}

/// The transport of a feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `udp://`: one datagram per message.
    Udp,
    /// `tcp://`: RFC 6587 octet counting.
    Tcp,
    /// `tls://`: RFC 5425, octet counting inside TLS.
    Tls,
}

/// A feed's receiver: `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = SettingsError;

    /// Parses a feed URL; the port defaults to 514 (UDP, TCP) or 6514 (TLS).
    fn from_str(url: &str) -> Result<Endpoint, SettingsError> {
        parse_url(url).map_err(|problem| SettingsError::Url {
            url: url.to_owned(),
            problem,
        })
    }
}

impl TryFrom<String> for Endpoint {
    type Error = SettingsError;

    fn try_from(url: String) -> Result<Endpoint, SettingsError> {
        url.parse()
    }
}

fn parse_url(url: &str) -> Result<Endpoint, UrlProblem> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlProblem::NotAUrl)?;
    let scheme = match scheme {
        "udp" => Scheme::Udp,
        "tcp" => Scheme::Tcp,
        "tls" => Scheme::Tls,
        other => return Err(UrlProblem::Scheme(other.to_owned())),
    };
    let default_port = if scheme == Scheme::Tls { 6514 } else { 514 };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(UrlProblem::UnclosedBracket)?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(UrlProblem::AfterHost(after.to_owned())),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => return Err(UrlProblem::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(UrlProblem::Host(host.to_owned()));
    }
    let port = match port {
        None => default_port,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(UrlProblem::Port(port.to_owned())),
        },
    };
    Ok(Endpoint {
        scheme,
        host: host.to_owned(),
        port,
    })
}

impl FromStr for Format {
    type Err = SettingsError;

    /// Parses a format name as the configuration and `--syslog-format`
    /// write it.
    fn from_str(name: &str) -> Result<Format, SettingsError> {
        match name {
            "rfc5424" => Ok(Format::Rfc5424),
            "cef" => Ok(Format::Cef),
            "leef" => Ok(Format::Leef),
            "json" => Ok(Format::Json),
            _ => Err(SettingsError::Format(name.to_owned())),
        }
    }
}

impl TryFrom<String> for Format {
    type Error = SettingsError;

    fn try_from(name: String) -> Result<Format, SettingsError> {
        name.parse()
    }
}

/// Syslog facilities by name (RFC 5424 table 1, with the usual names).
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// A syslog facility, 0-23: written as a name (`local0`, any case) or a
/// number (`"16"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Facility(u8);

impl Facility {
    /// The facility's number, 0-23.
    pub fn number(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    fn default() -> Facility {
        Facility(DEFAULT_FACILITY)
    }
}

impl FromStr for Facility {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Facility, SettingsError> {
        let number = match text.parse::<u8>() {
            Ok(number) => (number < 24).then_some(number),
            Err(_) => FACILITIES
                .iter()
                .position(|name| name.eq_ignore_ascii_case(text))
                .and_then(|i| u8::try_from(i).ok()),
        };
        number
            .map(Facility)
            .ok_or_else(|| SettingsError::Facility(text.to_owned()))
    }
}

impl TryFrom<String> for Facility {
    type Error = SettingsError;

    fn try_from(text: String) -> Result<Facility, SettingsError> {
        text.parse()
    }
}

/// An RFC 5424 SD-ID (section 6.3.2): 1-32 printable characters without
/// space, `=`, `]` or `"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SdId(String);

impl SdId {
    /// The SD-ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SdId {
    fn default() -> SdId {
        SdId(DEFAULT_SD_ID.to_owned())
    }
}

impl TryFrom<String> for SdId {
    type Error = SettingsError;

    fn try_from(id: String) -> Result<SdId, SettingsError> {
        let valid = (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'));
        if valid {
            Ok(SdId(id))
        } else {
            Err(SettingsError::SdId(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(toml_text: &str) -> Result<FeedSettings, toml::de::Error> {
        toml::from_str::<FeedSettings>(toml_text)
    }

    #[test]
    fn urls_parse_with_default_ports_and_ipv6_brackets() {
        let e: Endpoint = "tcp://siem.example.org:601".parse().unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Tcp, "siem.example.org", 601)
        );
        assert_eq!("udp://10.0.0.1".parse::<Endpoint>().unwrap().port, 514);
        assert_eq!("tls://siem".parse::<Endpoint>().unwrap().port, 6514);
        let e: Endpoint = "udp://[::1]:5514".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 5514));
        assert_eq!(e.to_string(), "udp://[::1]:5514");
        for (bad, problem) in [
            ("siem:514", UrlProblem::NotAUrl),
            ("http://siem:514", UrlProblem::Scheme("http".into())),
            ("tcp://:514", UrlProblem::Host(String::new())),
            ("tcp://siem:0", UrlProblem::Port("0".into())),
            ("tcp://siem:99999", UrlProblem::Port("99999".into())),
            ("tcp://::1:514", UrlProblem::UnbracketedIpv6),
            ("tcp://[::1", UrlProblem::UnclosedBracket),
            ("tcp://[::1]x", UrlProblem::AfterHost("x".into())),
            ("tcp://user@siem:514", UrlProblem::Host("user@siem".into())),
        ] {
            assert_eq!(
                bad.parse::<Endpoint>(),
                Err(SettingsError::Url {
                    url: bad.into(),
                    problem
                }),
                "{bad}"
            );
        }
        assert_eq!(
            "http://x:1".parse::<Endpoint>().unwrap_err().to_string(),
            "\"http://x:1\": unknown scheme \"http\" (udp, tcp or tls)"
        );
    }

    #[test]
    fn facilities_by_name_or_number() {
        let number = |text: &str| text.parse::<Facility>().map(Facility::number);
        assert_eq!(number("local0"), Ok(16));
        assert_eq!(number("LOCAL7"), Ok(23));
        assert_eq!(number("4"), Ok(4));
        assert_eq!(number("24"), Err(SettingsError::Facility("24".into())));
        assert_eq!(
            number("local8"),
            Err(SettingsError::Facility("local8".into()))
        );
        assert_eq!(Facility::default().number(), 16);
    }

    #[test]
    fn a_table_gets_its_defaults_and_typed_values() {
        let settings =
            feed("url = \"tls://siem\"\nformat = \"cef\"\nfacility = \"local3\"\n").unwrap();
        assert_eq!(settings.url.port, 6514);
        assert_eq!(settings.format, Format::Cef);
        assert_eq!(settings.facility.number(), 19);
        assert_eq!(settings.sd_id.as_str(), DEFAULT_SD_ID);
        assert_eq!(settings.queue, None);
        assert_eq!(settings, {
            let mut expected = FeedSettings::new("tls://siem:6514".parse().unwrap());
            expected.format = Format::Cef;
            expected.facility = Facility(19);
            expected
        });
    }

    #[test]
    fn each_bad_value_is_refused_with_what_would_do() {
        for (text, message) in [
            (
                "url = \"udp://x:1\"\nformat = \"xml\"\n",
                "unknown format \"xml\" (rfc5424, cef, leef or json)",
            ),
            (
                "url = \"udp://x:1\"\nfacility = \"local9\"\n",
                "unknown facility \"local9\" (kern, user, ..., local0-local7, or 0-23)",
            ),
            (
                "url = \"udp://x:1\"\nsd_id = \"has space\"\n",
                "\"has space\" is not an RFC 5424 SD-ID",
            ),
            (
                "url = \"udp://x:1\"\nsd_id = \"\"\n",
                "\"\" is not an RFC 5424 SD-ID",
            ),
            ("url = \"x:1\"\n", "\"x:1\": not a URL"),
            ("url = \"udp://x:1\"\nport = 1\n", "unknown field `port`"),
            ("format = \"cef\"\n", "missing field `url`"),
        ] {
            let error = feed(text).unwrap_err();
            assert!(error.message().starts_with(message), "{text}: {error}");
        }
        let sd_id = "a".repeat(32);
        assert!(feed(&format!("url = \"udp://x\"\nsd_id = \"{sd_id}\"\n")).is_ok());
        let too_long = "a".repeat(33);
        assert!(feed(&format!("url = \"udp://x\"\nsd_id = \"{too_long}\"\n")).is_err());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let mut settings = FeedSettings::new("tls://siem".parse().unwrap());
        assert_eq!(settings.client_identity(), Ok(None));
        settings.client_cert = Some("c.pem".into());
        assert_eq!(settings.check(), Err(SettingsError::ClientIdentity));
        settings.client_key = Some("c.key".into());
        assert_eq!(
            settings.client_identity(),
            Ok(Some((Path::new("c.pem"), Path::new("c.key"))))
        );
        settings.client_cert = None;
        assert_eq!(
            settings.check().unwrap_err().to_string(),
            "client_cert and client_key go together"
        );
    }
}
