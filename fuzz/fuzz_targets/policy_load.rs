//! Any text as a policy file: diagnostics or a policy, never a panic; a policy
//! that loads always compiles; and when the quick reader reads the text, it
//! reads it exactly as the `toml` crate does (spans included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use segwatch::classify::CompiledPolicy;
use segwatch::policy::{load_policy_str, quick_reader_agrees};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(agrees) = quick_reader_agrees(text) {
        assert!(agrees, "the quick reader and the toml crate disagree");
    }
    if let Ok((policy, _)) = load_policy_str(text, std::path::Path::new("fuzz.toml")) {
        CompiledPolicy::compile(&policy);
    }
});
