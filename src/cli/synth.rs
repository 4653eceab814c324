//! `segwatch synth`: write a synthetic capture.

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
    };
    write_pcap(&mut file, Resolution::Micro, frames).map_err(|e| Error::file(&args.output, e))?;
    file.finish()?;
    Ok(Status::Ran)
}
