//! Any bytes as a flow (transport and ports, client bytes, server bytes),
//! through the whole detector: never a panic, and a client prefix that decides
//! decides as the whole does. Layout: see `segwatch::app::fuzzing::app_detect`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| segwatch::app::fuzzing::app_detect(data));
