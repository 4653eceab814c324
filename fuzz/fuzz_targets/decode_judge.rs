//! Any bytes as a frame of any link type, through decode (with or without
//! opening VXLAN, Geneve and GRE tunnels), flow tracking and judging against
//! the example policy: never a panic, and the hand-read common case of
//! decoding always agrees with etherparse.
//!
//! Input: a selector byte (link type in the low bits, bit 7 set to open
//! every tunnel), then frames separated by 0xA5.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use segwatch::capture::Frame;
use segwatch::classify::{CompiledPolicy, PolicyInForce};
use segwatch::flow::{FlowConfig, Packet};
use segwatch::pipeline::{Shard, ShardOptions};
use segwatch::policy::load_policy_str;
use segwatch::wire::{Decapsulation, Headers, LinkType, Outcome, decode_general, decode_with};

static POLICY: LazyLock<PolicyInForce> = LazyLock::new(|| {
    let text = segwatch::synth::policy::EXAMPLE_HOSPITAL;
    let (policy, _) = load_policy_str(text, std::path::Path::new("example-hospital.toml")).unwrap();
    PolicyInForce::new(CompiledPolicy::compile(&policy), 0)
});

static ALL_TUNNELS: LazyLock<Decapsulation> = LazyLock::new(Decapsulation::all);

const LINKS: [LinkType; 9] = [
    LinkType::ETHERNET,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::RAW,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::NFLOG,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frames)) = data.split_first() else { return };
    let link = LINKS[usize::from(selector & 0x7f) % LINKS.len()];
    let decap = if selector & 0x80 != 0 { &*ALL_TUNNELS } else { Decapsulation::none() };
    let options = ShardOptions {
        detect_apps: true,
        record_starts: true,
        evidence: true,
    };
    let mut shard = Shard::new(&FlowConfig::default(), 64, options);
    // Several frames per input, split on a marker, so flows form.
    for (i, frame) in frames.split(|&b| b == 0xA5).enumerate() {
        let mut headers = Headers::default();
        let outcome = decode_with(link, frame, decap, &mut headers);
        // The hand-read common case agrees with etherparse's views.
        let mut reference = Headers::default();
        let reference_outcome = decode_general(link, frame, decap, &mut reference);
        assert_eq!(outcome, reference_outcome);
        if outcome != Outcome::Judge {
            continue;
        }
        assert_eq!(headers, reference);
        let ts_ns = i as u64 * 1_000_000_000;
        let packet = Packet::new(&headers, ts_ns);
        let frame = Frame { ts_ns, orig_len: frame.len() as u32, link, data: frame, vlan: None };
        shard.packet(&packet, Some(&frame), i as u64, &POLICY);
    }
    shard.finish(&POLICY);
    // Evidence counts each flow once at most, and only flows that packets made.
    let evidence = shard.take_evidence();
    let counted: u64 = evidence.buckets().iter().map(|b| b.flows).sum();
    assert!(counted <= frames.split(|&b| b == 0xA5).count() as u64);
    for v in &shard.output().violations {
        let mut out = Vec::new();
        segwatch::event::write_json_line(v, &POLICY, &mut out);
    }
});
