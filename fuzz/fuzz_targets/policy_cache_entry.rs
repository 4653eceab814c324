//! Any bytes as the body of a policy cache entry (what follows its header and
//! checksum): an error, or a compiled policy that judges any flow without a
//! panic. The checksum stops random damage; this holds the consistency check
//! to what a crafted entry could do. Each decoded policy judges the bundled
//! sample capture's traffic (flow tracking, verdicts, service labels, events)
//! and zone lookups of addresses taken from the input.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use segwatch::classify::PolicyInForce;
use segwatch::flow::{FlowConfig, Packet};
use segwatch::pipeline::{Shard, ShardOptions};
use segwatch::replay::decode_entry_body;
use segwatch::synth::hospital::{HospitalTraffic, SAMPLE};
use segwatch::wire::{Headers, LinkType, Outcome, decode};

/// The sample capture's frames, decoded once.
static HEADERS: LazyLock<Vec<(Headers, u64)>> = LazyLock::new(|| {
    HospitalTraffic::new(SAMPLE)
        .filter_map(|(ts, frame)| {
            let mut headers = Headers::default();
            (decode(LinkType::ETHERNET, &frame, &mut headers) == Outcome::Judge)
                .then_some((headers, ts))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok((policy, _warnings)) = decode_entry_body(data) else { return };
    let policy = PolicyInForce::new(policy, 0);
    let mut shard = Shard::new(&FlowConfig::default(), 256, ShardOptions::default());
    for (index, (headers, ts)) in HEADERS.iter().enumerate() {
        shard.packet(&Packet::new(headers, *ts), None, index as u64, &policy);
    }
    let mut out = Vec::new();
    for violation in &shard.output().violations {
        segwatch::event::write_json_line(violation, &policy, &mut out);
    }
    let policy = &policy.policy;
    for chunk in data.chunks_exact(16) {
        let address = u128::from_le_bytes(chunk.try_into().unwrap_or_default());
        let _ = policy.zone(policy.zone_of(true, address).zone);
        let _ = policy.zone(policy.zone_of(false, address & u128::from(u32::MAX)).zone);
    }
});
