//! The typed values of the configuration: each parses itself as serde reads
//! the file (or as the command line gives it), with a message saying what
//! would be accepted. The key and the position are added by the caller.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration as people write it: `"30s"`, `"5m"`, `"1h 30m"` (humantime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"5m\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text)
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format_args!("{e} (write e.g. \"30s\" or \"5m\")")))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// A value the configuration does not know, with the values it does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (use {choices})")]
pub struct UnknownValue {
    /// What kind of value (`backend`, `pace`).
    what: &'static str,
    /// The value as written.
    value: String,
    /// The accepted values, for the message.
    choices: &'static str,
}

/// The live capture backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Backend {
    /// AF_PACKET TPACKET_V3 rings, built in.
    AfPacket,
    /// libpcap (a build with the `pcap` feature).
    Pcap,
}

impl Backend {
    /// The name as written in the configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::AfPacket => "af-packet",
            Backend::Pcap => "pcap",
        }
    }
}

impl FromStr for Backend {
    type Err = UnknownValue;

    fn from_str(name: &str) -> Result<Backend, UnknownValue> {
        match name {
            "af-packet" => Ok(Backend::AfPacket),
            "pcap" => Ok(Backend::Pcap),
            _ => Err(UnknownValue {
                what: "backend",
                value: name.to_owned(),
                choices: "\"af-packet\" or \"pcap\"",
            }),
        }
    }
}

impl TryFrom<String> for Backend {
    type Error = UnknownValue;

    fn try_from(name: String) -> Result<Backend, UnknownValue> {
        name.parse()
    }
}

/// How fast a capture file runs through the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Pace {
    /// As fast as possible.
    #[default]
    Full,
    /// At the capture's own pace.
    Realtime,
}

impl FromStr for Pace {
    type Err = UnknownValue;

    fn from_str(name: &str) -> Result<Pace, UnknownValue> {
        match name {
            "full" => Ok(Pace::Full),
            "realtime" => Ok(Pace::Realtime),
            _ => Err(UnknownValue {
                what: "pace",
                value: name.to_owned(),
                choices: "\"full\" or \"realtime\"",
            }),
        }
    }
}

impl TryFrom<String> for Pace {
    type Error = UnknownValue;

    fn try_from(name: String) -> Result<Pace, UnknownValue> {
        name.parse()
    }
}

/// The metrics listener's address, `ADDRESS:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddress(pub SocketAddr);

/// A listener address that is not `ADDRESS:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9108)")]
pub struct NotAnAddress(String);

impl FromStr for ListenAddress {
    type Err = NotAnAddress;

    fn from_str(text: &str) -> Result<ListenAddress, NotAnAddress> {
        text.parse()
            .map(ListenAddress)
            .map_err(|_| NotAnAddress(text.to_owned()))
    }
}

impl TryFrom<String> for ListenAddress {
    type Error = NotAnAddress;

    fn try_from(text: String) -> Result<ListenAddress, NotAnAddress> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct One<T> {
        value: T,
    }

    fn read<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, toml::de::Error> {
        toml::from_str::<One<T>>(&format!("value = {value}\n")).map(|one| one.value)
    }

    /// The message a refused value gives.
    fn refusal<T: for<'de> Deserialize<'de>>(value: &str) -> String {
        match read::<T>(value) {
            Ok(_) => format!("{value} was accepted"),
            Err(error) => error.message().to_owned(),
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(
            read::<HumanDuration>("\"1h 30m\"").unwrap(),
            HumanDuration(Duration::from_secs(5400))
        );
        assert_eq!(
            refusal::<HumanDuration>("\"forever\""),
            "expected number at 0 (write e.g. \"30s\" or \"5m\")"
        );
        let error = refusal::<HumanDuration>("30");
        assert!(
            error.contains("expected a duration such as \"30s\""),
            "{error}"
        );
    }

    #[test]
    fn names_parse_or_say_what_would() {
        assert_eq!(read::<Backend>("\"pcap\"").unwrap(), Backend::Pcap);
        assert_eq!(Backend::AfPacket.as_str(), "af-packet");
        assert_eq!(
            refusal::<Backend>("\"dpdk\""),
            "unknown backend \"dpdk\" (use \"af-packet\" or \"pcap\")"
        );
        assert_eq!(read::<Pace>("\"realtime\"").unwrap(), Pace::Realtime);
        assert_eq!(
            refusal::<Pace>("\"slow\""),
            "unknown pace \"slow\" (use \"full\" or \"realtime\")"
        );
        assert_eq!(
            read::<ListenAddress>("\"[::1]:9108\"").unwrap().0.port(),
            9108
        );
        assert_eq!(
            refusal::<ListenAddress>("\"localhost\""),
            "\"localhost\" is not ADDRESS:PORT (e.g. 127.0.0.1:9108)"
        );
    }
}
