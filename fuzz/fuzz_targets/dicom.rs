//! Any bytes as the first bytes of a direction, through the DICOM Upper Layer
//! parser: never a panic, and a prefix that decides decides as the whole does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| segwatch::app::fuzzing::dicom(data));
