//! Any bytes as a UDP datagram between ports 68 and 67, through the DHCP
//! parser: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| segwatch::app::fuzzing::dhcp(data));
