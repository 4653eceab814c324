//! Any bytes as the first bytes of a client stream, through the TLS
//! ClientHello parser: never a panic, and a prefix that decides decides as the
//! whole does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| segwatch::app::fuzzing::tls(data));
