//! The decoding fixtures of `tests/fixtures/decode` (Linux cooked captures
//! from every kind of interface, MPLS, NFLOG, ERSPAN, VXLAN, Geneve, GRE):
//! segwatch judges exactly the packets tshark decodes, with the same
//! innermost addresses, protocol and ports (tunnels opened, as tshark opens
//! them), and finds no IP where tshark finds none.

use std::path::{Path, PathBuf};

use segwatch::capture::CaptureFile;
use segwatch::wire::{Decapsulation, Headers, Outcome, TunnelKind};

use crate::common::root;

const FIXTURES: [&str; 7] = [
    "sll.pcap",
    "sll2.pcap",
    "loopback-any-sll.pcap",
    "loopback-any-sll2.pcap",
    "mpls.pcap",
    "nflog.pcap",
    "tunnels.pcap",
];

fn dir() -> PathBuf {
    root().join("tests/fixtures/decode")
}

/// What tshark decoded of one frame: innermost (source, destination,
/// protocol, source port, destination port), or `None` for no IP.
type Flow = Option<(String, String, u8, u16, u16)>;

fn tshark_rows(tsv: &str) -> Vec<Flow> {
    tsv.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let (src, dst, proto) = match (f[1], f[3]) {
                ("", "") => return None,
                // The IPv6 columns when IPv4 is absent (no fixture mixes
                // families in one frame).
                ("", _) => (f[3], f[4], f[6]),
                _ => (f[1], f[2], f[5]),
            };
            let proto: u8 = proto.parse().unwrap();
            let port = |s: &str| s.parse::<u16>().unwrap_or(0);
            let (sport, dport) = match proto {
                6 => (port(f[7]), port(f[8])),
                17 => (port(f[9]), port(f[10])),
                _ => (0, 0),
            };
            Some((src.to_owned(), dst.to_owned(), proto, sport, dport))
        })
        .collect()
}

fn addr(ipv6: bool, value: u128) -> String {
    if ipv6 {
        std::net::Ipv6Addr::from(value).to_string()
    } else {
        std::net::Ipv4Addr::from(value as u32).to_string()
    }
}

/// Every frame of `path` decoded with `decap`: outcome and headers.
fn decoded(path: &Path, decap: &Decapsulation) -> Vec<(Outcome, Headers)> {
    let capture = CaptureFile::open(path).unwrap();
    capture
        .reader()
        .map(|frame| {
            let frame = frame.unwrap();
            let mut headers = Headers::default();
            (frame.decode_with(decap, &mut headers), headers)
        })
        .collect()
}

fn flow_of((outcome, h): &(Outcome, Headers)) -> Flow {
    (*outcome == Outcome::Judge).then(|| {
        (
            addr(h.ipv6, h.src),
            addr(h.ipv6, h.dst),
            h.protocol,
            h.src_port,
            h.dst_port,
        )
    })
}

#[test]
fn every_fixture_decodes_as_tshark_decodes_it() {
    for name in FIXTURES {
        let path = dir().join(name);
        let tsv = std::fs::read_to_string(dir().join(format!("{name}.tshark.tsv"))).unwrap();
        let expected = tshark_rows(&tsv);
        let got: Vec<Flow> = decoded(&path, &Decapsulation::all())
            .iter()
            .map(flow_of)
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}: frame count");
        for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(got, expected, "{name}: frame {}", i + 1);
        }
    }
}

/// The recorded rows are what the installed tshark says today (skipped
/// where tshark is not installed).
#[test]
fn recorded_tshark_rows_are_current() {
    let fields = [
        "frame.number",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.proto",
        "ipv6.nxt",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
    ];
    for name in FIXTURES {
        let mut command = std::process::Command::new("tshark");
        command
            .arg("-r")
            .arg(dir().join(name))
            .args(["-T", "fields", "-E", "occurrence=l"]);
        for field in fields {
            command.args(["-e", field]);
        }
        let Ok(out) = command.output() else {
            eprintln!("note: tshark is not installed, skipping");
            return;
        };
        let recorded = std::fs::read_to_string(dir().join(format!("{name}.tshark.tsv"))).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), recorded, "{name}");
    }
}

/// Without a decapsulation setting, VXLAN, Geneve and GRE are judged as the
/// `udp` and `gre` packets they are; ERSPAN is opened all the same, and
/// reports its session.
#[test]
fn without_the_setting_only_erspan_is_opened() {
    let frames = decoded(&dir().join("tunnels.pcap"), &Decapsulation::NONE);
    let summary: Vec<(TunnelKind, Option<u32>, u8, u16)> = frames
        .iter()
        .map(|(outcome, h)| {
            assert_eq!(*outcome, Outcome::Judge);
            (h.tunnel.kind, h.tunnel.id, h.protocol, h.dst_port)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (TunnelKind::Erspan, Some(300), 6, 2575),
            (TunnelKind::Erspan, Some(301), 6, 2575),
            (TunnelKind::Erspan, Some(302), 6, 2575),
            (TunnelKind::Erspan, None, 6, 2575),
            (TunnelKind::None, None, 17, 4789),
            (TunnelKind::None, None, 17, 6081),
            (TunnelKind::None, None, 47, 0),
            (TunnelKind::None, None, 47, 0),
            (TunnelKind::None, None, 47, 0),
            // The overlay inside the mirror: judged as its VXLAN datagram.
            (TunnelKind::Erspan, Some(5), 17, 4789),
        ]
    );
    // With the setting, each reports its tunnel: VNI, key, endpoints.
    let frames = decoded(&dir().join("tunnels.pcap"), &Decapsulation::all());
    let tunnels: Vec<(TunnelKind, Option<u32>, String)> = frames
        .iter()
        .map(|(_, h)| {
            let t = h.tunnel;
            (t.kind, t.id, addr(t.outer_ipv6, t.outer_dst))
        })
        .collect();
    assert_eq!(
        tunnels[4],
        (TunnelKind::Vxlan, Some(5001), "192.0.2.2".into())
    );
    assert_eq!(
        tunnels[5],
        (TunnelKind::Geneve, Some(77), "192.0.2.2".into())
    );
    assert_eq!(tunnels[6], (TunnelKind::Gre, None, "192.0.2.2".into()));
    assert_eq!(tunnels[7], (TunnelKind::Gre, Some(42), "192.0.2.2".into()));
    assert_eq!(tunnels[8], (TunnelKind::Gre, None, "2001:db8::2".into()));
    assert_eq!(
        tunnels[9],
        (TunnelKind::Vxlan, Some(5001), "192.0.2.2".into())
    );
}
