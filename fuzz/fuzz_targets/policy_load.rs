//! Any text as a policy file: diagnostics or a policy, never a panic; and a
//! policy that loads always compiles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segwatch::classify::CompiledPolicy;
use segwatch::policy::load_policy_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((policy, _)) = load_policy_str(text, std::path::Path::new("fuzz.toml")) {
        CompiledPolicy::compile(&policy);
    }
});
