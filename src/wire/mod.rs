//! Wire formats: decoding a captured frame into the header fields segwatch
//! judges, with etherparse, without allocating.
//!
//! This module depends on nothing else in segwatch, so it could become a
//! crate of its own.

#![forbid(unsafe_code)]

mod decode;
mod link;

pub use decode::{
    Decapsulation, GENEVE_PORT, Headers, MAX_TUNNELS, Outcome, Problem, Split, Transport, Tunnel,
    TunnelKind, UnknownTunnelKind, VXLAN_PORT, decode, decode_general, decode_split, decode_with,
    decode_with_etherparse, tcp_flags,
};
pub use link::LinkType;

/// The lowercase IANA keyword of an IP protocol as events print it (`tcp`,
/// `udp`, `icmp`, `icmpv6`, `gre`, `esp`, `sctp`, ...), or `ip-N` when the
/// registry has no usable keyword for it.
pub fn protocol_name(protocol: u8) -> &'static str {
    PROTOCOL_NAMES[usize::from(protocol)]
}

static PROTOCOL_NAMES: std::sync::LazyLock<[&'static str; 256]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|n| {
        let n = n as u8;
        let name = match n {
            58 => Some("icmpv6".to_string()),
            _ => etherparse::IpNumber(n).keyword_str().and_then(|keyword| {
                // Some registry keywords carry notes ("ARGUS (deprecated)") or
                // are empty; only a plain token is usable in an event.
                let keyword = keyword.trim();
                let plain = !keyword.is_empty()
                    && keyword
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                plain.then(|| keyword.to_ascii_lowercase())
            }),
        };
        // Leaked once per protocol number, at most 256 short strings, so that
        // events can hold `&'static str`.
        &*Box::leak(name.unwrap_or_else(|| format!("ip-{n}")).into_boxed_str())
    })
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_follow_iana_keywords() {
        assert_eq!(protocol_name(6), "tcp");
        assert_eq!(protocol_name(17), "udp");
        assert_eq!(protocol_name(1), "icmp");
        assert_eq!(protocol_name(58), "icmpv6");
        assert_eq!(protocol_name(47), "gre");
        assert_eq!(protocol_name(50), "esp");
        assert_eq!(protocol_name(132), "sctp");
        assert_eq!(protocol_name(253), "ip-253");
        assert!(
            PROTOCOL_NAMES
                .iter()
                .all(|n| !n.contains(' ') && *n == n.to_lowercase())
        );
    }
}
