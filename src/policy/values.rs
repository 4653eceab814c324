//! Checks of single values of a policy file: names, ports, inline services, networks, actions
//! and severities. Each returns the model value or a [`Problem`] (message and hint); the loader
//! attaches the place in the file.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::diagnostic::closest;
use super::raw::PortItem;
use super::{Action, PortRange, ServiceSpec, Severity};

/// What is wrong with a value and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub message: String,
    pub hint: String,
}

fn problem(message: String, hint: impl Into<String>) -> Problem {
    Problem {
        message,
        hint: hint.into(),
    }
}

/// The pattern zone and service names must match.
pub(super) const NAME_PATTERN: &str = "[a-z0-9][a-z0-9_-]*";

/// Checks a zone or service name against [`NAME_PATTERN`]; `kind` is "zone" or "service".
pub(super) fn check_name(kind: &str, name: &str) -> Result<(), Problem> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if first_ok
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Ok(());
    }
    let mut hint = format!(
        "{kind} names use lowercase letters, digits, `-` and `_`, and start with a letter or digit"
    );
    if let Some(fixed) = sanitized(name) {
        hint = format!("{hint}: did you mean `{fixed}`?");
    }
    Err(problem(
        format!("invalid {kind} name `{name}`: it must match {NAME_PATTERN}"),
        hint,
    ))
}

/// `name` turned into a valid name, if that leaves anything.
fn sanitized(name: &str) -> Option<String> {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    let fixed = mapped.trim_start_matches(['-', '_']).trim_end_matches('-');
    (!fixed.is_empty() && fixed != name).then(|| fixed.to_owned())
}

/// The hint for a port out of range.
const PORT_RANGE_HINT: &str = "ports run from 1 to 65535";

/// The hint for a malformed port string.
const PORT_FORM_HINT: &str =
    "write a port (1-65535) as a number (443) or a range as a \"LO-HI\" string (\"8080-8089\")";

/// A string of ASCII digits as a number. More than ten significant digits is no port at all
/// and is reported as malformed, so that messages never print a clipped value.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = s.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    Some(
        significant
            .bytes()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0')),
    )
}

/// `"P"` or `"LO-HI"` as two numbers, not yet range-checked.
fn split_range(s: &str) -> Option<(u64, u64)> {
    match s.split_once('-') {
        Some((lo, hi)) => Some((digits(lo)?, digits(hi)?)),
        None => digits(s).map(|p| (p, p)),
    }
}

/// Range-checks two ports. `describe` gives where they were written (`what`, for messages)
/// and the range written the right way round, and is called only when they are wrong:
/// formatting both for every range took 7% of the instructions of loading a 5,000-rule
/// policy.
fn check_range(
    lo: i128,
    hi: i128,
    describe: impl Fn() -> (String, String),
) -> Result<PortRange, Problem> {
    for port in [lo, hi] {
        if !(1..=65535).contains(&port) {
            let (what, _) = describe();
            return Err(problem(
                format!("port {port} {what}is out of range"),
                PORT_RANGE_HINT,
            ));
        }
    }
    // Both are in 1..=65535 now.
    let (lo16, hi16) = (lo as u16, hi as u16);
    if lo16 > hi16 {
        let (what, reversed_fix) = describe();
        return Err(problem(
            format!("port range {lo}-{hi} {what}runs backwards (LO > HI)"),
            format!("write it as {reversed_fix}"),
        ));
    }
    Ok(PortRange { lo: lo16, hi: hi16 })
}

/// One entry of a named service's `tcp` or `udp` list.
pub(super) fn port_item(item: &PortItem) -> Result<PortRange, Problem> {
    match item {
        PortItem::Number(n) => check_range(*n, *n, || (String::new(), String::new())),
        PortItem::Text(s) => match split_range(s) {
            Some((lo, hi)) => check_range(lo.into(), hi.into(), || {
                (format!("in \"{s}\" "), format!("\"{hi}-{lo}\""))
            }),
            None => Err(problem(
                format!("invalid port range \"{s}\""),
                PORT_FORM_HINT,
            )),
        },
    }
}

/// The hint for a malformed inline service.
const INLINE_HINT: &str = "inline services are tcp/PORT, tcp/LO-HI, udp/PORT, udp/LO-HI, \
                           tcp, udp or icmp, e.g. tcp/443 or udp/5000-5010";

/// Every port, for bare `tcp` and `udp`.
const ALL_PORTS: PortRange = PortRange { lo: 1, hi: 65535 };

/// An inline service as a rule's `services` list writes it, or `None` when `text` does not look
/// like one (no `/` and not `tcp`, `udp` or `icmp`), so that it must name a service.
///
/// Accepted forms:
/// - `tcp/P`, `tcp/LO-HI`, `udp/P`, `udp/LO-HI`: those ports, each in 1..=65535, `LO <= HI`;
/// - `icmp`: ICMP and ICMPv6 echo;
/// - `tcp` and `udp` alone: every port of that protocol (1-65535). This is an extension of the
///   contract, which names only the forms above.
///
/// A named service of the same name (`[services.icmp]`) takes precedence; the caller checks
/// names first.
pub(super) fn inline_service(text: &str) -> Option<Result<ServiceSpec, Problem>> {
    let spec = |tcp: Vec<PortRange>, udp: Vec<PortRange>, icmp: bool| ServiceSpec {
        tcp,
        udp,
        icmp,
        app: None,
    };
    match text {
        "tcp" => return Some(Ok(spec(vec![ALL_PORTS], vec![], false))),
        "udp" => return Some(Ok(spec(vec![], vec![ALL_PORTS], false))),
        "icmp" => return Some(Ok(spec(vec![], vec![], true))),
        _ => {}
    }
    let (proto, ports) = text.split_once('/')?;
    let range = |proto: &str| -> Result<PortRange, Problem> {
        let Some((lo, hi)) = split_range(ports) else {
            return Err(problem(
                format!("invalid port `{ports}` in inline service `{text}`"),
                INLINE_HINT,
            ));
        };
        check_range(lo.into(), hi.into(), || {
            (
                format!("in inline service `{text}` "),
                format!("{proto}/{hi}-{lo}"),
            )
        })
    };
    Some(match proto {
        "tcp" => range("tcp").map(|r| spec(vec![r], vec![], false)),
        "udp" => range("udp").map(|r| spec(vec![], vec![r], false)),
        "icmp" | "icmpv6" => Err(problem(
            format!("inline service `{text}` gives icmp a port"),
            "write `icmp`: it matches ICMP and ICMPv6 echo, which have no ports",
        )),
        _ => {
            let lower = proto.to_ascii_lowercase();
            let hint = if lower == "tcp" || lower == "udp" {
                format!("protocols are lowercase: did you mean `{lower}/{ports}`?")
            } else {
                format!(
                    "{INLINE_HINT}; a rule without services matches every protocol, \
                     {lower} included"
                )
            };
            Err(problem(
                format!("unknown protocol `{proto}` in inline service `{text}`"),
                hint,
            ))
        }
    })
}

/// A guess at the inline service meant by an unknown service name such as `tcp443` or
/// `TCP/443`, for hints.
pub(super) fn inline_guess(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    for proto in ["tcp", "udp"] {
        if let Some(rest) = lower.strip_prefix(proto) {
            let rest = rest.trim_start_matches([':', ' ', '_', '-', '/']);
            if split_range(rest).is_some() {
                return Some(format!("{proto}/{rest}"));
            }
        }
    }
    None
}

/// A zone network: a CIDR or a bare address (a /32 or /128), with no host bits set.
pub(super) fn network(text: &str) -> Result<IpNetwork, Problem> {
    const FORM_HINT: &str =
        "write a network as a CIDR (10.20.0.0/22, fd00:20::/48) or a bare address (10.20.8.10)";
    let invalid = |hint: String| problem(format!("invalid network \"{text}\""), hint);
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        if text.trim() != text && network(text.trim()).is_ok() {
            return Err(invalid(format!("remove the spaces: \"{}\"", text.trim())));
        }
        return Err(invalid(format!(
            "`{addr}` is not an IPv4 or IPv6 address; {FORM_HINT}"
        )));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match digits(p) {
            Some(p) if p <= u64::from(max) => p as u8,
            _ => {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(invalid(format!(
                    "the prefix length after `/` must be a number from 0 to {max} for {family}"
                )));
            }
        },
    };
    let net = IpNetwork::new(ip, prefix).map_err(|e| invalid(format!("{e}; {FORM_HINT}")))?;
    if net.network() != ip {
        let fixed = format!("{}/{prefix}", net.network());
        return Err(problem(
            format!("network \"{text}\" has host bits set"),
            format!("did you mean {fixed}? for the single host, write {ip}/{max} or just {ip}"),
        ));
    }
    Ok(net)
}

/// `action` and `default_action`.
pub(super) fn action(text: &str) -> Result<Action, Problem> {
    match text {
        "allow" => Ok(Action::Allow),
        "alert" => Ok(Action::Alert),
        _ => {
            let mut hint = "the action is \"allow\" or \"alert\"".to_owned();
            if let Some(near) = closest(text, ["allow", "alert"]) {
                hint = format!("did you mean \"{near}\"? {hint}");
            }
            Err(problem(format!("unknown action \"{text}\""), hint))
        }
    }
}

/// `severity` and `default_severity`.
pub(super) fn severity(text: &str) -> Result<Severity, Problem> {
    Severity::parse(text).ok_or_else(|| {
        let names = Severity::ALL.map(Severity::as_str);
        let mut hint = "the severity is \"low\", \"medium\", \"high\" or \"critical\"".to_owned();
        if let Some(near) = closest(text, names) {
            hint = format!("did you mean \"{near}\"? {hint}");
        }
        problem(format!("unknown severity \"{text}\""), hint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn names() {
        for ok in ["pumps", "pump-server", "a", "0", "lab_2", "9a-"] {
            assert_eq!(check_name("zone", ok), Ok(()), "{ok}");
        }
        for bad in ["", "Pumps", "-x", "_x", "a.b", "a b", "é", "pümps"] {
            assert!(check_name("zone", bad).is_err(), "{bad}");
        }
        let e = check_name("zone", "Pump Server").unwrap_err();
        assert_eq!(
            e.message,
            "invalid zone name `Pump Server`: it must match [a-z0-9][a-z0-9_-]*"
        );
        assert!(
            e.hint.ends_with("did you mean `pump-server`?"),
            "{}",
            e.hint
        );
        assert!(
            !check_name("service", "---")
                .unwrap_err()
                .hint
                .contains("did you mean")
        );
    }

    #[test]
    fn named_service_ports() {
        let n = |n| port_item(&PortItem::Number(n));
        let t = |s: &str| port_item(&PortItem::Text(s.into()));
        assert_eq!(n(1), Ok(range(1, 1)));
        assert_eq!(n(65535), Ok(range(65535, 65535)));
        assert_eq!(t("80"), Ok(range(80, 80)));
        assert_eq!(t("5000-5010"), Ok(range(5000, 5010)));
        assert_eq!(t("7-7"), Ok(range(7, 7)));
        assert_eq!(n(0).unwrap_err().message, "port 0 is out of range");
        assert_eq!(n(65536).unwrap_err().message, "port 65536 is out of range");
        assert_eq!(n(-1).unwrap_err().message, "port -1 is out of range");
        assert_eq!(
            t("0-10").unwrap_err().message,
            "port 0 in \"0-10\" is out of range"
        );
        assert_eq!(
            t("1-99999999999999999999").unwrap_err().message,
            "invalid port range \"1-99999999999999999999\""
        );
        assert_eq!(t("00000000000080"), Ok(range(80, 80)));
        let e = t("90-80").unwrap_err();
        assert_eq!(
            e.message,
            "port range 90-80 in \"90-80\" runs backwards (LO > HI)"
        );
        assert_eq!(e.hint, "write it as \"80-90\"");
        for bad in ["", "x", "80-", "-80", "1-2-3", " 80", "8O", "+80"] {
            assert_eq!(
                t(bad).unwrap_err().message,
                format!("invalid port range \"{bad}\""),
                "{bad}"
            );
        }
    }

    #[test]
    fn inline_services() {
        let ok = |s: &str| inline_service(s).unwrap().unwrap();
        assert_eq!(ok("tcp/443").tcp, [range(443, 443)]);
        assert_eq!(ok("udp/5000-5010").udp, [range(5000, 5010)]);
        assert_eq!(ok("tcp").tcp, [range(1, 65535)]);
        assert_eq!(ok("udp").udp, [range(1, 65535)]);
        assert!(ok("icmp").icmp && ok("icmp").tcp.is_empty());
        assert_eq!(inline_service("dicom"), None);
        let err = |s: &str| inline_service(s).unwrap().unwrap_err();
        assert_eq!(
            err("tcp/x").message,
            "invalid port `x` in inline service `tcp/x`"
        );
        assert_eq!(
            err("tcp/").message,
            "invalid port `` in inline service `tcp/`"
        );
        assert_eq!(
            err("sctp/5").message,
            "unknown protocol `sctp` in inline service `sctp/5`"
        );
        assert!(err("TCP/80").hint.contains("did you mean `tcp/80`?"));
        assert_eq!(
            err("tcp/0").message,
            "port 0 in inline service `tcp/0` is out of range"
        );
        assert_eq!(
            err("udp/65536").message,
            "port 65536 in inline service `udp/65536` is out of range"
        );
        let e = err("tcp/90-80");
        assert_eq!(
            e.message,
            "port range 90-80 in inline service `tcp/90-80` runs backwards (LO > HI)"
        );
        assert_eq!(e.hint, "write it as tcp/80-90");
        assert!(err("icmp/8").hint.starts_with("write `icmp`"));
        assert_eq!(inline_guess("tcp443").as_deref(), Some("tcp/443"));
        assert_eq!(inline_guess("UDP:53").as_deref(), Some("udp/53"));
        assert_eq!(inline_guess("dicom"), None);
    }

    #[test]
    fn networks() {
        let net = |s: &str| network(s).unwrap().to_string();
        assert_eq!(net("10.20.0.0/22"), "10.20.0.0/22");
        assert_eq!(net("10.20.8.10"), "10.20.8.10/32");
        assert_eq!(net("fd00:20::/48"), "fd00:20::/48");
        assert_eq!(net("fd00::1"), "fd00::1/128");
        assert_eq!(net("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(net("::/0"), "::/0");
        let e = network("10.20.8.9/24").unwrap_err();
        assert_eq!(e.message, "network \"10.20.8.9/24\" has host bits set");
        assert!(
            e.hint.starts_with("did you mean 10.20.8.0/24?"),
            "{}",
            e.hint
        );
        assert!(
            network("fd00:20::1/48")
                .unwrap_err()
                .hint
                .starts_with("did you mean fd00:20::/48?")
        );
        for bad in [
            "",
            "10.0.0/8",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "x",
            "10.0.0.0/-1",
            "256.0.0.0/8",
        ] {
            assert_eq!(
                network(bad).unwrap_err().message,
                format!("invalid network \"{bad}\""),
                "{bad}"
            );
        }
        assert!(
            network(" 10.0.0.0/8")
                .unwrap_err()
                .hint
                .starts_with("remove the spaces")
        );
    }

    #[test]
    fn actions_and_severities() {
        assert_eq!(action("allow"), Ok(Action::Allow));
        assert_eq!(action("alert"), Ok(Action::Alert));
        assert!(
            action("alow")
                .unwrap_err()
                .hint
                .starts_with("did you mean \"allow\"?")
        );
        assert!(
            action("deny")
                .unwrap_err()
                .hint
                .starts_with("the action is")
        );
        assert_eq!(severity("critical"), Ok(Severity::Critical));
        assert!(
            severity("hgih")
                .unwrap_err()
                .hint
                .starts_with("did you mean \"high\"?")
        );
        assert_eq!(
            severity("High").unwrap_err().message,
            "unknown severity \"High\""
        );
    }
}
