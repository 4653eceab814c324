//! The serde layer of the policy file: what the TOML says, with the span of every value a later
//! check may point at, and nothing validated yet.
//!
//! Every table denies unknown keys. Values that have a fixed vocabulary (`action`, `severity`,
//! networks, inline services) are read as strings here and checked in [`super::load`], so that
//! one run reports all such mistakes at once instead of stopping at the first, as serde would.
//! Serde still rejects wrong types, unknown keys and missing required keys; those stop parsing.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// A string value with its place in the file.
pub(super) type Str<'a> = Spanned<Text<'a>>;

/// A string of a TOML file (the policy's, and the exceptions'): borrowed from the file's text
/// when it is written without escapes (the usual case; the quick readers' strings always are),
/// so that the tens of thousands of zone names, networks and services of a large policy cost
/// no allocation apiece; owned when an escape made it differ.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    /// Borrows `text`.
    pub(crate) fn borrowed(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, borrowed from the file when it is.
    pub(super) fn to_cow(&self) -> Cow<'a, str> {
        self.0.clone()
    }

    pub(super) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// A whole policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyFile<'a> {
    /// `[policy]`; may be left out, every key in it has a default.
    #[serde(default)]
    #[serde(borrow)]
    pub policy: RawHeader<'a>,
    /// `[zones.NAME]` tables in file order. Default: none.
    #[serde(default)]
    #[serde(borrow)]
    pub zones: Entries<'a, RawZone<'a>>,
    /// `[services.NAME]` tables in file order. Default: none.
    #[serde(default)]
    #[serde(borrow)]
    pub services: Entries<'a, RawService<'a>>,
    /// `[[rules]]` in file order; the span is the `[[rules]]` header. Default: none, so every
    /// flow gets the default action.
    #[serde(default)]
    #[serde(borrow)]
    pub rules: Vec<Spanned<RawRule<'a>>>,
    /// `[clinical]`: checks on clinical protocols (an extension of the
    /// contract's format). Default: none.
    #[serde(default)]
    #[serde(borrow)]
    pub clinical: Option<Spanned<RawClinical<'a>>>,
}

/// Keys allowed at the top level, for hints.
pub(super) const TOP_KEYS: &[&str] = &["policy", "zones", "services", "rules", "clinical"];

/// `[clinical]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClinical<'a> {
    /// Severity of DICOM or HL7 seen on a port that no service requiring that
    /// application names. Default: not checked.
    #[serde(borrow)]
    pub unexpected_port: Option<Str<'a>>,
    /// AE titles the hospital knows; another one is flagged. Default: not checked.
    #[serde(borrow)]
    pub known_ae_titles: Option<Vec<Str<'a>>>,
    /// Severity of an unknown AE title. Default: `policy.default_severity`.
    #[serde(borrow)]
    pub unknown_ae_title: Option<Str<'a>>,
    /// HL7 senders the hospital knows, `APP` or `APP^FACILITY`. Default: not checked.
    #[serde(borrow)]
    pub known_hl7_senders: Option<Vec<Str<'a>>>,
    /// Severity of an unknown HL7 sender. Default: `policy.default_severity`.
    #[serde(borrow)]
    pub unknown_hl7_sender: Option<Str<'a>>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader<'a> {
    /// Name of the policy, shown in logs. Default: the file name without its extension
    /// (`example-hospital` for `example-hospital.toml`).
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    /// `"alert"` or `"allow"`: the verdict for flows that no rule matches. Default: `"alert"`,
    /// so that a policy fails closed: traffic nobody described is reported.
    #[serde(borrow)]
    pub default_action: Option<Str<'a>>,
    /// `low`, `medium`, `high` or `critical`: severity of default alerts and of rules that do
    /// not set one. Default: `"medium"`.
    #[serde(borrow)]
    pub default_severity: Option<Str<'a>>,
}

/// Keys allowed in `[policy]`, for hints.
pub(super) const HEADER_KEYS: &[&str] = &["name", "default_action", "default_severity"];

/// `[zones.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone<'a> {
    /// Free text. Default: none.
    pub description: Option<String>,
    /// CIDRs or bare addresses (a /32 or /128), IPv4 or IPv6. Default: none, which is allowed
    /// but warned about, since such a zone can never hold an address.
    #[serde(borrow)]
    pub networks: Option<Spanned<Vec<Str<'a>>>>,
    /// Free label shown in events and dashboards (`src_criticality`). Default: none, and the
    /// event leaves the field out.
    pub criticality: Option<String>,
}

/// Keys allowed in `[zones.NAME]`, for hints.
pub(super) const ZONE_KEYS: &[&str] = &["description", "networks", "criticality"];

/// `[services.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService<'a> {
    /// Free text, for readers of the file. Default: none.
    // Type-checked but not carried into the model: `Service` has no field for it, and adding
    // one would break code that builds services literally.
    #[allow(dead_code)]
    pub description: Option<String>,
    /// TCP ports: integers, `"LO-HI"` strings or single-port strings (`"80"`). Default: none.
    pub tcp: Option<Vec<Spanned<PortItem>>>,
    /// UDP ports, written like `tcp`. Default: none.
    pub udp: Option<Vec<Spanned<PortItem>>>,
    /// Matches ICMP and ICMPv6 echo. Default: false.
    pub icmp: Option<bool>,
    /// The application the flow must speak, recognised by content
    /// (`dicom`, `hl7`, `tls`, `http`, ...): then the ports only name the
    /// service's usual ports, and a flow matches by its bytes. Default: none.
    #[serde(borrow)]
    pub app: Option<Str<'a>>,
}

/// Keys allowed in `[services.NAME]`, for hints.
pub(super) const SERVICE_KEYS: &[&str] = &["description", "tcp", "udp", "icmp", "app"];

/// `[[rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule<'a> {
    /// Unique name; `default` is reserved for the default verdict. Required.
    #[serde(borrow)]
    pub name: Str<'a>,
    /// Initiator zones: zone names, `any` or `unknown`. Required, not empty.
    #[serde(borrow)]
    pub from: Spanned<Vec<Str<'a>>>,
    /// Responder zones, like `from`. Required, not empty.
    #[serde(borrow)]
    pub to: Spanned<Vec<Str<'a>>>,
    /// Service names or inline services. Default: none, which means every service and every
    /// IP protocol.
    #[serde(borrow)]
    pub services: Option<Vec<Str<'a>>>,
    /// `"allow"` or `"alert"`. Required.
    #[serde(borrow)]
    pub action: Str<'a>,
    /// Severity of the alert. Default: `policy.default_severity`.
    #[serde(borrow)]
    pub severity: Option<Str<'a>>,
    /// Only DICOM associations calling one of these AE titles.
    #[serde(borrow)]
    pub dicom_called_ae: Option<Vec<Str<'a>>>,
    /// Only DICOM associations from one of these AE titles.
    #[serde(borrow)]
    pub dicom_calling_ae: Option<Vec<Str<'a>>>,
    /// Only HL7 messages from one of these sending applications (MSH-3).
    #[serde(borrow)]
    pub hl7_sending_app: Option<Vec<Str<'a>>>,
    /// Only HL7 messages from one of these sending facilities (MSH-4).
    #[serde(borrow)]
    pub hl7_sending_facility: Option<Vec<Str<'a>>>,
    /// Only HL7 messages of these types (MSH-9, `ADT^A01`, or `ADT` for all).
    #[serde(borrow)]
    pub hl7_message_types: Option<Vec<Str<'a>>>,
    /// Only TLS to these server names (SNI; `*.example.org` for subdomains).
    #[serde(borrow)]
    pub tls_server_names: Option<Vec<Str<'a>>>,
}

/// Keys allowed in `[[rules]]`, for hints.
pub(super) const RULE_KEYS: &[&str] = &[
    "name",
    "from",
    "to",
    "services",
    "action",
    "severity",
    "dicom_called_ae",
    "dicom_calling_ae",
    "hl7_sending_app",
    "hl7_sending_facility",
    "hl7_message_types",
    "tls_server_names",
];

/// One entry of a service's `tcp` or `udp` list, before range checks: any integer (so that
/// `0`, `-1` and `70000` get a friendly error rather than a type error) or a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PortItem {
    /// An integer, as written.
    Number(i128),
    /// A string: `"LO-HI"` or a single port.
    Text(String),
}

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = PortItem;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a \"LO-HI\" string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
                Ok(PortItem::Number(v.into()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortItem, E> {
                Ok(PortItem::Number(v.into()))
            }

            fn visit_i128<E: de::Error>(self, v: i128) -> Result<PortItem, E> {
                Ok(PortItem::Number(v))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<PortItem, E> {
                Ok(PortItem::Number(i128::try_from(v).unwrap_or(i128::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
                Ok(PortItem::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(PortVisitor)
    }
}

/// A TOML table read as its entries in file order, keys with their spans. (TOML itself forbids
/// a key twice in one table, so this never sees duplicates.)
#[derive(Debug)]
pub(super) struct Entries<'a, V>(pub Vec<(Str<'a>, V)>);

impl<V> Default for Entries<'_, V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Entries<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'a, V>(PhantomData<(&'a (), V)>);

        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<'a, V> {
            type Value = Entries<'a, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'a, V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Str<'a>, V>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_file_order_and_key_spans() {
        let text = "[zones.b]\n[zones.a]\n[zones.c]\n";
        let raw: RawPolicyFile = toml::from_str(text).unwrap();
        let names: Vec<_> = raw
            .zones
            .0
            .iter()
            .map(|(k, _)| k.get_ref().as_str())
            .collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(raw.zones.0[1].0.span(), 17..18);
    }

    #[test]
    fn port_items_take_any_integer_or_string() {
        let text = "[services.s]\ntcp = [80, 0, -1, 99999999999999999999, \"1-2\"]\n";
        let raw: RawPolicyFile = toml::from_str(text).unwrap();
        let tcp: Vec<_> = raw.services.0[0]
            .1
            .tcp
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.get_ref().clone())
            .collect();
        assert_eq!(
            tcp,
            [
                PortItem::Number(80),
                PortItem::Number(0),
                PortItem::Number(-1),
                PortItem::Number(99_999_999_999_999_999_999),
                PortItem::Text("1-2".into()),
            ]
        );
    }

    #[test]
    fn key_lists_match_the_structs() {
        // The lists feed hints; a key the struct accepts but the list lacks would never be
        // suggested. Each listed key must parse in its table.
        for key in HEADER_KEYS {
            let text = format!("[policy]\n{key} = \"x\"\n");
            assert!(toml::from_str::<RawPolicyFile>(&text).is_ok(), "{key}");
        }
        for key in ZONE_KEYS {
            let value = if *key == "networks" { "[]" } else { "\"x\"" };
            let text = format!("[zones.z]\n{key} = {value}\n");
            assert!(toml::from_str::<RawPolicyFile>(&text).is_ok(), "{key}");
        }
        for key in SERVICE_KEYS {
            let value = match *key {
                "icmp" => "true",
                "description" | "app" => "\"x\"",
                _ => "[1]",
            };
            let text = format!("[services.s]\n{key} = {value}\n");
            assert!(toml::from_str::<RawPolicyFile>(&text).is_ok(), "{key}");
        }
        let rule = "name = \"r\"\nfrom = []\nto = []\nservices = []\naction = \"a\"\nseverity = \"s\"\n\
                    dicom_called_ae = []\ndicom_calling_ae = []\nhl7_sending_app = []\n\
                    hl7_sending_facility = []\nhl7_message_types = []\ntls_server_names = []\n";
        assert!(toml::from_str::<RawPolicyFile>(&format!("[[rules]]\n{rule}")).is_ok());
        assert_eq!(RULE_KEYS.len(), rule.lines().count());
        for key in TOP_KEYS {
            assert!(
                toml::from_str::<RawPolicyFile>(&format!("[{key}]\n")).is_err()
                    == (*key == "rules")
            );
        }
        let clinical = "[clinical]\nunexpected_port = \"high\"\nknown_ae_titles = []\n\
                        unknown_ae_title = \"low\"\nknown_hl7_senders = []\n\
                        unknown_hl7_sender = \"low\"\n";
        assert!(toml::from_str::<RawPolicyFile>(clinical).is_ok());
    }
}
