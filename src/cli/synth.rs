//! `segwatch synth`: write a synthetic capture.

use std::fs::File;
use std::io::BufWriter;

use super::{EXIT_BAD_INPUT, EXIT_OK, Scenario, SynthArgs, error_line};
use crate::synth::hospital::{HospitalOptions, HospitalTraffic, distinct_flows};
use crate::synth::{FIXTURE_EPOCH_NS, Resolution, write_pcap};

/// Runs `segwatch synth`; returns the exit status.
pub fn run(args: &SynthArgs) -> u8 {
    let file = match File::create(&args.output) {
        Ok(file) => BufWriter::with_capacity(1 << 20, file),
        Err(error) => {
            error_line(format_args!("{}: {error}", args.output.display()));
            return EXIT_BAD_INPUT;
        }
    };
    let frames: Box<dyn Iterator<Item = (u64, Vec<u8>)>> = match args.scenario {
        Scenario::Sample => Box::new(HospitalTraffic::new(crate::synth::hospital::SAMPLE)),
        Scenario::Hospital => Box::new(HospitalTraffic::new(HospitalOptions {
            packets: args.packets,
            concurrent_flows: args.concurrent_flows,
            violation_share: args.violation_share.clamp(0.0, 1.0),
            seed: args.seed,
            ..HospitalOptions::default()
        })),
        Scenario::DistinctFlows => Box::new(distinct_flows(args.packets, FIXTURE_EPOCH_NS)),
    };
    let result = write_pcap(file, Resolution::Micro, frames);
    match result {
        Ok(()) => EXIT_OK,
        Err(error) => {
            error_line(format_args!("{}: {error}", args.output.display()));
            EXIT_BAD_INPUT
        }
    }
}
