//! Any bytes as a capture file (classic pcap or pcapng, by the magic number):
//! an error or frames, never a panic; the batch reader (`read_into`, which
//! the replay uses) yields exactly the frames, the cut and the error of the
//! one-frame-at-a-time reader; and a replay of the file through decoding,
//! flow tracking and judging, on two threads, ends.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use segwatch::capture::{CaptureFile, Frame};
use segwatch::classify::{CompiledPolicy, PolicyInForce};
use segwatch::flow::FlowConfig;
use segwatch::policy::load_policy_str;
use segwatch::replay::{ReplayOptions, replay};

static POLICY: LazyLock<PolicyInForce> = LazyLock::new(|| {
    let text = segwatch::synth::policy::EXAMPLE_HOSPITAL;
    let (policy, _) = load_policy_str(text, std::path::Path::new("example-hospital.toml")).unwrap();
    PolicyInForce::new(CompiledPolicy::compile(&policy), 0)
});

/// What a frame is, without its borrow.
fn owned(frame: &Frame<'_>) -> (u64, u32, u32, Vec<u8>) {
    (frame.ts_ns, frame.orig_len, frame.link.0, frame.data.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = CaptureFile::from_bytes("fuzz.pcap", data.to_vec()) else { return };

    let mut one_by_one = Vec::new();
    let mut reader = capture.reader();
    let single_error = loop {
        match reader.next_frame() {
            Ok(Some(frame)) => one_by_one.push(owned(&frame)),
            Ok(None) => break None,
            Err(error) => break Some(error.to_string()),
        }
    };
    let single_cut = reader.truncation();

    // Small batches, so that batch ends fall everywhere.
    let mut batched = Vec::new();
    let mut reader = capture.reader();
    let batch_error = loop {
        let mut batch = Vec::new();
        match reader.read_into(&mut batch, 3) {
            Ok(more) => {
                batched.extend(batch.iter().map(owned));
                if !more {
                    break None;
                }
            }
            Err(error) => {
                batched.extend(batch.iter().map(owned));
                break Some(error.to_string());
            }
        }
    };
    assert_eq!(one_by_one, batched, "the same frames");
    assert_eq!(single_cut, reader.truncation(), "the same cut");
    assert_eq!(single_error, batch_error, "the same error");

    // A small flow bound, so that evictions happen and each run stays cheap.
    let options = ReplayOptions {
        threads: 2,
        batch_size: 5,
        flows: FlowConfig {
            max_flows: 64,
            ..FlowConfig::default()
        },
        ..ReplayOptions::default()
    };
    let mut events = Vec::new();
    replay(std::slice::from_ref(&capture), &POLICY, &options, &mut events).unwrap();
});
