//! Any text as an exceptions file, checked against the example hospital's
//! policy: diagnostics or exceptions, never a panic; exceptions that load
//! always build a matcher, which matches subjects without panicking; and when
//! the quick reader reads the text, it reads it exactly as the `toml` crate
//! does (spans included).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use segwatch::exception::{
    Exceptions, PolicyNames, RuleScope, Subject, load_exceptions_str, quick_reader_agrees,
};
use segwatch::policy::{Policy, load_policy_str};
use segwatch::wire::Transport;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = include_str!("../../policies/example-hospital.toml");
        load_policy_str(text, Path::new("example-hospital.toml"))
            .expect("the example policy loads")
            .0
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(agrees) = quick_reader_agrees(text) {
        assert!(agrees, "the quick reader and the toml crate disagree");
    }
    let names = PolicyNames::of(policy());
    let Ok((list, _warnings)) = load_exceptions_str(text, Path::new("fuzz.toml"), &names, None)
    else {
        return;
    };
    let exceptions = Exceptions::new(list);
    for exception in exceptions.list() {
        let subject = Subject {
            rule: exception.rule.unwrap_or(RuleScope::Rule(0)),
            ipv6: false,
            src: (0x0a00_0001, 0),
            dest: Some((0x0a00_0002, 0)),
            service: Some((Transport::Tcp, 443)),
            ts_ns: exception.expires.saturating_sub(1),
        };
        let _ = exceptions.match_subject(&subject);
        let _ = exception.covers(&subject);
    }
});
