//! Criterion benchmark of a `/metrics` scrape with a full device inventory:
//! 100,000 devices (the default bound) in 40 zones, as the daemon renders
//! it (every metric, the device counts by zone and class among them), and
//! the device counts alone. The counts are kept as the inventory changes, so
//! neither grows with the number of devices.
//!
//! `cargo bench --bench inventory_scrape`

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use segwatch::inventory::{Endpoint, Inventory, OuiRegistry, Sighting};
use segwatch::metrics::{Metrics, PolicyStats, Telemetry};

const DEVICES: u32 = 100_000;

/// An inventory of `DEVICES` devices: clients in 40 zones talking to 100
/// servers, with MACs of a few vendors.
fn full_inventory() -> Arc<Inventory> {
    let inventory = Arc::new(Inventory::new(
        DEVICES as usize + 100,
        Arc::new(OuiRegistry::load_default()),
    ));
    let services = ["tcp/443", "tcp/104", "udp/53", "tcp/2575", "tcp/3389"];
    for n in 0..DEVICES - 100 {
        let mac = [0x00, 0x12, 0x21, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        let client = Endpoint {
            ipv6: false,
            addr: u128::from(0x0a00_0000 + n),
            mac: Some(mac),
            zone: format!("ward-{}", n % 40),
        };
        let server = Endpoint {
            ipv6: false,
            addr: u128::from(0x0b00_0000 + n % 100),
            mac: Some([0x00, 0x1b, 0x21, 0, 0, (n % 100) as u8]),
            zone: "servers".into(),
        };
        inventory.record(&Sighting {
            position: u64::from(n),
            ts_ns: 1_764_316_800_000_000_000 + u64::from(n) * 1_000,
            client,
            server,
            service: services[n as usize % services.len()].into(),
            vlan: 0,
        });
    }
    assert_eq!(inventory.len(), DEVICES as usize);
    println!(
        "{} devices in {} (zone, class) series",
        inventory.len(),
        inventory.counts().len()
    );
    inventory
}

fn scrape(c: &mut Criterion) {
    let inventory = full_inventory();
    let telemetry = Telemetry {
        workers: Vec::new(),
        interfaces: Vec::new(),
        sinks: Vec::new(),
        policy: Arc::new(PolicyStats::default()),
        inventory: Some(inventory.clone()),
        incidents: None,
        evidence: None,
    };
    let empty = Telemetry {
        inventory: Some(Arc::new(Inventory::new(
            DEVICES as usize,
            Arc::new(OuiRegistry::load_default()),
        ))),
        policy: Arc::new(PolicyStats::default()),
        workers: Vec::new(),
        interfaces: Vec::new(),
        sinks: Vec::new(),
        incidents: None,
        evidence: None,
    };
    let metrics = Metrics::new(1_000_000).unwrap();
    let mut group = c.benchmark_group("scrape_100k_devices");
    group.bench_function("metrics_render", |b| {
        b.iter(|| black_box(metrics.render(black_box(&telemetry))))
    });
    // The same scrape with no device: what the rest of the registry costs.
    let bare = Metrics::new(1_000_000).unwrap();
    group.bench_function("metrics_render_no_devices", |b| {
        b.iter(|| black_box(bare.render(black_box(&empty))))
    });
    group.bench_function("device_counts", |b| {
        b.iter(|| black_box(inventory.counts()))
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
