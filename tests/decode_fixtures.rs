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

/// The link types of the `decode_judge` fuzz target, in its order: a seed's
/// selector byte is an index into it (bit 7 opens every tunnel).
const FUZZ_LINKS: [u32; 9] = [1, 0, 108, 113, 276, 101, 228, 229, 239];

/// A little-endian pcapng file: a section, an Ethernet interface with
/// `interface_options`, and one packet block with `packet_options`.
fn pcapng(section_options: &[u8], interface_options: &[u8], packet_options: &[u8]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    shb.extend_from_slice(section_options);
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = vec![1, 0, 0, 0, 0, 0, 4, 0];
    idb.extend_from_slice(interface_options);
    block(&mut out, 1, &idb);
    let frame = [0x02u8; 60];
    let mut epb = vec![0; 12];
    epb.extend_from_slice(&60u32.to_le_bytes());
    epb.extend_from_slice(&60u32.to_le_bytes());
    epb.extend_from_slice(&frame);
    epb.extend_from_slice(packet_options);
    block(&mut out, 6, &epb);
    out
}

/// The seeds of the `decode_judge` and `capture_file` fuzz targets
/// (`fuzz/corpus/`, committed with `git add -f`) are what their sources
/// make: the decoding fixtures, and pcapng option lists without their end
/// marker, with a short tail, with text that is not UTF-8, or running past
/// their block. `SEGWATCH_WRITE_CORPUS=1` writes them instead.
#[test]
fn decode_and_capture_fuzz_seeds_match_their_sources() {
    let corpus = root().join("fuzz/corpus");
    let rewrite = std::env::var_os("SEGWATCH_WRITE_CORPUS").is_some();
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        if rewrite {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        } else {
            let committed = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                committed == bytes,
                "fuzz/corpus/{target}/{name} differs from its source: \
                 SEGWATCH_WRITE_CORPUS=1 rewrites it"
            );
        }
    };
    for name in FIXTURES {
        let path = dir().join(name);
        let stem = name.trim_end_matches(".pcap");
        let capture = CaptureFile::open(&path).unwrap();
        let frames: Vec<_> = capture.reader().map(Result::unwrap).collect();
        let link = frames[0].link.0;
        let index = FUZZ_LINKS.iter().position(|&l| l == link).unwrap() as u8;
        for (suffix, selector) in [("", index), ("-decap", index | 0x80)] {
            let mut seed = vec![selector];
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    seed.push(0xa5);
                }
                seed.extend_from_slice(frame.data);
            }
            write("decode_judge", &format!("{stem}{suffix}"), &seed);
        }
        write("capture_file", stem, &std::fs::read(&path).unwrap());
    }
    let option = |code: u16, value: &[u8]| {
        let mut out = code.to_le_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    };
    let end = [0u8; 4];
    let tsresol = option(9, &[9]);
    let comment = option(1, b"eth0");
    let not_utf8 = option(1, &[0xff, 0xfe]);
    let flags = option(2, &1u32.to_le_bytes());
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "pcapng-options-ended",
            pcapng(&end, &[&tsresol[..], &end].concat(), &end),
        ),
        (
            "pcapng-section-options-unended",
            pcapng(&comment, &tsresol, &[]),
        ),
        (
            "pcapng-interface-options-unended",
            pcapng(&[], &tsresol, &[]),
        ),
        (
            "pcapng-packet-options-unended",
            pcapng(&[], &tsresol, &flags),
        ),
        (
            "pcapng-short-tails",
            pcapng(&[1, 0], &[&tsresol[..], &[0, 0]].concat(), &[1, 0]),
        ),
        (
            "pcapng-text-not-utf8",
            pcapng(&not_utf8, &not_utf8, &not_utf8),
        ),
        (
            "pcapng-options-past-their-block",
            pcapng(&[], &[9, 0, 40, 0], &[1, 0, 40, 0]),
        ),
    ];
    for (name, bytes) in cases {
        write("capture_file", name, &bytes);
    }
}

/// The `decode_judge` seeds through what the fuzz target checks: the
/// hand-read common case agrees with the general path, with and without
/// tunnels opened.
#[test]
fn decode_seeds_decode_the_same_both_ways() {
    use segwatch::wire::{LinkType, decode_general, decode_with};
    let dir = root().join("fuzz/corpus/decode_judge");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Some((&selector, frames)) = bytes.split_first() else {
            continue;
        };
        let link = LinkType(FUZZ_LINKS[usize::from(selector & 0x7f) % FUZZ_LINKS.len()]);
        let all = Decapsulation::all();
        let decap = if selector & 0x80 != 0 {
            &all
        } else {
            Decapsulation::none()
        };
        for frame in frames.split(|&b| b == 0xa5) {
            let (mut fast, mut general) = (Headers::default(), Headers::default());
            let outcome = decode_with(link, frame, decap, &mut fast);
            assert_eq!(outcome, decode_general(link, frame, decap, &mut general));
            if outcome == Outcome::Judge {
                assert_eq!(fast, general);
            }
        }
        seeds += 1;
    }
    assert!(seeds >= 14, "{seeds} seeds");
}
