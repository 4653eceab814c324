//! Criterion benchmarks of the per-packet stages: decode, zone lookup, rule
//! matching (a 20-rule, a 5,000-rule and a hospital group's 20,000-rule,
//! 8,000-zone policy), and flow tracking.
//!
//! `cargo bench --bench pipeline`

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use segwatch::classify::{CompiledPolicy, PolicyInForce, ZoneTable};
use segwatch::flow::{FlowConfig, Packet};
use segwatch::pipeline::{Shard, ShardOptions};
use segwatch::policy::load_policy_str;
use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic};
use segwatch::synth::policy::{scaled_hospital_policy, scaled_hospital_policy_with_zones};
use segwatch::wire::{Headers, LinkType, Outcome, Transport, decode};

const FRAMES: usize = 20_000;

fn frames() -> Vec<Vec<u8>> {
    let options = HospitalOptions {
        packets: FRAMES as u64,
        ..HospitalOptions::default()
    };
    HospitalTraffic::new(options)
        .map(|(_, frame)| frame)
        .collect()
}

/// The benchmark's policies, by name: the example hospital's 20 rules, grown to 5,000 rules
/// (498 extra zones) and to a hospital group's 20,000 rules between 8,000 extra zones.
fn policies() -> Vec<(&'static str, CompiledPolicy)> {
    [
        ("20_rules", scaled_hospital_policy(20), 20),
        ("5000_rules", scaled_hospital_policy(5_000), 5_000),
        (
            "20000_rules_8000_zones",
            scaled_hospital_policy_with_zones(20_000, 8_000),
            20_000,
        ),
    ]
    .into_iter()
    .map(|(name, text, rules)| {
        let (policy, _) = load_policy_str(&text, Path::new("scaled.toml")).expect("valid policy");
        assert_eq!(policy.rules.len(), rules);
        (name, CompiledPolicy::compile(&policy))
    })
    .collect()
}

fn decoded(frames: &[Vec<u8>]) -> Vec<Headers> {
    frames
        .iter()
        .filter_map(|frame| {
            let mut h = Headers::default();
            (decode(LinkType::ETHERNET, frame, &mut h) == Outcome::Judge).then_some(h)
        })
        .collect()
}

fn bench_decode(c: &mut Criterion) {
    let frames = frames();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("hospital_mix", |b| {
        let mut h = Headers::default();
        b.iter(|| {
            for frame in &frames {
                black_box(decode(LinkType::ETHERNET, black_box(frame), &mut h));
            }
        })
    });
    group.finish();
}

fn bench_classify(c: &mut Criterion) {
    let packets = decoded(&frames());
    let policies = policies();
    let mut group = c.benchmark_group("zone_lookup");
    group.throughput(Throughput::Elements(packets.len() as u64 * 2));
    for (name, policy) in &policies {
        group.bench_with_input(BenchmarkId::from_parameter(name), policy, |b, p| {
            b.iter(|| {
                for h in &packets {
                    black_box(p.zone_of(h.ipv6, h.src));
                    black_box(p.zone_of(h.ipv6, h.dst));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("rule_matching");
    group.throughput(Throughput::Elements(packets.len() as u64));
    for (name, policy) in &policies {
        let zoned: Vec<_> = packets
            .iter()
            .map(|h| {
                let from = policy.zone_of(h.ipv6, h.src).zone;
                let to = policy.zone_of(h.ipv6, h.dst).zone;
                (from, to, Transport::of_protocol(h.protocol), h.dst_port)
            })
            .collect();
        bench_judge(&mut group, name, policy, &zoned);
    }
    // The hospital's traffic stays among its own zones: flows between random ward zones of the
    // group's policy (and `unknown`), on the ports its rules name, reach its other rows.
    let (_, group_policy) = &policies[2];
    let mut rng = fastrand::Rng::with_seed(3);
    let zones = group_policy.zone_count() as u32;
    let zone = |rng: &mut fastrand::Rng| match rng.u32(..=zones) {
        z if z == zones => ZoneTable::UNKNOWN,
        z => z,
    };
    let wards: Vec<_> = (0..packets.len())
        .map(|_| {
            let transport = if rng.bool() {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            (
                zone(&mut rng),
                zone(&mut rng),
                transport,
                rng.u16(1024..=61_074),
            )
        })
        .collect();
    bench_judge(
        &mut group,
        "20000_rules_8000_zones_ward_pairs",
        group_policy,
        &wards,
    );
    group.finish();
}

/// Judges each (from, to, transport, port) of `flows` under `policy`.
fn bench_judge(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    policy: &CompiledPolicy,
    flows: &[(u32, u32, Transport, u16)],
) {
    group.bench_with_input(BenchmarkId::from_parameter(name), policy, |b, p| {
        b.iter(|| {
            for &(from, to, transport, port) in flows {
                black_box(p.judge(from, to, transport, port));
            }
        })
    });
}

fn bench_tracker(c: &mut Criterion) {
    let packets = decoded(&frames());
    let (_, policy) = policies().remove(0);
    let policy = PolicyInForce::new(policy, 0);
    let mut group = c.benchmark_group("flow_tracking");
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function("observe", |b| {
        b.iter_batched_ref(
            || Shard::new(&FlowConfig::default(), 100_000, ShardOptions::default()),
            |shard| {
                for (i, h) in packets.iter().enumerate() {
                    let packet = Packet::new(h, i as u64 * 1_000);
                    shard.packet(&packet, None, i as u64, &policy);
                }
                shard.output().violations.clear();
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_classify, bench_tracker);
criterion_main!(benches);
