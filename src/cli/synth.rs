//! `segwatch synth`: write a synthetic capture.

use std::fs::File;
use std::io::BufWriter;

use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic, distinct_flows};
use segwatch::synth::{FIXTURE_EPOCH_NS, Resolution, write_pcap};

use super::{Error, Scenario, Status, SynthArgs};

/// Runs `segwatch synth`.
pub fn run(args: &SynthArgs) -> Result<Status, Error> {
    let file = File::create(&args.output).map_err(|e| Error::file(&args.output, e))?;
    let file = BufWriter::with_capacity(1 << 20, file);
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
    };
    write_pcap(file, Resolution::Micro, frames).map_err(|e| Error::file(&args.output, e))?;
    Ok(Status::Ran)
}
