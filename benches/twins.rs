//! The hand-written twins of crates, each beside its crate on the same
//! input, for instruction counts under callgrind (one twin per run, so that
//! each run's total is its cost):
//!
//! ```text
//! cargo bench --bench twins --no-run
//! valgrind --tool=callgrind target/release/deps/twins-* --bench MODE CAPTURE [EVENTS]
//! ```
//!
//! MODE: `read-hand` (the capture's records by segwatch's reader, pcap or
//! pcapng), `read-pcap-file` (a pcap file's by pcap-file's `PcapReader`),
//! `read-pcapng-file` (a pcapng file's by pcap-file's `PcapNgReader`), `decode-hand` (each frame
//! by [`segwatch::wire::decode`], after reading it), `decode-etherparse`
//! (by etherparse's general path, [`segwatch::wire::decode_with_etherparse`]),
//! `json-none` (the events of EVENTS, a replay's output, read back),
//! `json-hand` (and written by the fast writer, about 100,000 events in
//! all, the file over and over), `json-serde` (the same by serde_json). The
//! difference of two modes' totals is the twin's gain; over a replay's total
//! on the same capture, its end-to-end share. Without `--bench` it does
//! nothing (`cargo test --benches`).

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use segwatch::capture::CaptureFile;
use segwatch::event::ViolationEvent;
use segwatch::wire::{Headers, decode, decode_with_etherparse};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if !std::env::args().any(|a| a == "--bench") || args.len() < 2 {
        return;
    }
    let (mode, capture) = (args[0].as_str(), Path::new(&args[1]));
    let mut checksum = 0u64;
    match mode {
        "read-hand" | "decode-hand" | "decode-etherparse" => {
            let file = CaptureFile::open(capture).expect("capture");
            let mut reader = file.reader();
            let mut headers = Headers::default();
            while let Some(frame) = reader.next_frame().expect("frame") {
                checksum += u64::from(frame.orig_len);
                let outcome = match mode {
                    "decode-hand" => Some(decode(frame.link, frame.data, &mut headers)),
                    "decode-etherparse" => {
                        Some(decode_with_etherparse(frame.link, frame.data, &mut headers))
                    }
                    _ => None,
                };
                black_box((outcome, &headers));
            }
        }
        "read-pcapng-file" => {
            let bytes = std::fs::read(capture).expect("capture");
            let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("pcapng");
            while let Some(block) = reader.next_block() {
                if let pcap_file::pcapng::Block::EnhancedPacket(packet) = block.expect("block") {
                    checksum += u64::from(packet.original_len);
                    black_box(&packet);
                }
            }
        }
        "read-pcap-file" => {
            let bytes = std::fs::read(capture).expect("capture");
            let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap");
            while let Some(packet) = reader.next_packet() {
                let packet = packet.expect("packet");
                checksum += u64::from(packet.orig_len);
                black_box(&packet);
            }
        }
        "json-none" | "json-hand" | "json-serde" => {
            let text = std::fs::read_to_string(&args[2]).expect("events");
            let events: Vec<ViolationEvent<'_>> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("event"))
                .collect();
            let mut out = Vec::with_capacity(1 << 20);
            // About 100,000 events written, whatever the file holds.
            let rounds = (100_000 / events.len().max(1)).max(1);
            for _ in 0..rounds {
                for event in &events {
                    out.clear();
                    match mode {
                        "json-hand" => event.write_json_line(&mut out),
                        "json-serde" => {
                            serde_json::to_writer(&mut out, event).expect("json");
                            out.push(b'\n');
                        }
                        _ => {}
                    }
                    checksum += out.len() as u64;
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{mode}: checksum {checksum}");
}
