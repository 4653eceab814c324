//! `segwatch synth`: write a synthetic capture.

use segwatch::synth::flood::{FloodOptions, flood};
use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic, distinct_flows};
use segwatch::synth::{FIXTURE_EPOCH_NS, Resolution, write_pcap};

use super::output::OutputFile;
use super::{Error, Scenario, Status, SynthArgs};

/// Runs `segwatch synth`.
pub fn run(args: &SynthArgs) -> Result<Status, Error> {
    let mut file = OutputFile::create(&args.output, &[])?;
    let frames: Box<dyn Iterator<Item = (u64, Vec<u8>)>> = match args.scenario {
        Scenario::Sample => Box::new(HospitalTraffic::new(segwatch::synth::hospital::SAMPLE)),
        Scenario::Hospital => Box::new(HospitalTraffic::new(HospitalOptions {
            packets: args.packets,
            concurrent_flows: args.concurrent_flows,
            violation_share: args.violation_share.clamp(0.0, 1.0),
            seed: args.seed,
            ..HospitalOptions::default()
        })),
        Scenario::DistinctFlows => Box::new(distinct_flows(args.packets, FIXTURE_EPOCH_NS)),
        Scenario::Flood => Box::new(flood(flood_options(args), FIXTURE_EPOCH_NS)),
    };
    write_pcap(&mut file, Resolution::Micro, frames).map_err(|e| Error::file(&args.output, e))?;
    file.finish()?;
    Ok(Status::Ran)
}

/// The flood's size: the flags given, the defaults for the others.
fn flood_options(args: &SynthArgs) -> FloodOptions {
    let d = FloodOptions::default();
    FloodOptions {
        sources: args.sources.unwrap_or(d.sources),
        sweepers: args.sweepers.unwrap_or(d.sweepers),
        sweep_hosts: args.sweep_hosts.unwrap_or(d.sweep_hosts),
        scanners: args.scanners.unwrap_or(d.scanners),
        scan_ports: args.scan_ports.unwrap_or(d.scan_ports),
        inspections: args.inspections.unwrap_or(d.inspections),
        inspection_bytes: args
            .inspection_bytes
            .unwrap_or(d.inspection_bytes)
            .clamp(100, 60_000),
    }
}
