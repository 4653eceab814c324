//! `segwatch learn`: a least-privilege policy from observed traffic.

use std::path::Path;

use super::replay::{open_captures, read_policy, warn_truncations};
use super::{EXIT_BAD_INPUT, EXIT_OK, LearnArgs, error_line};
use crate::classify::CompiledPolicy;
use crate::learn::{LearnOptions, learn, render_policy};
use crate::policy::load_policy_str;
use crate::replay::{ReplayOptions, replay};

/// Runs `segwatch learn`; returns the exit status.
pub fn run(args: &LearnArgs) -> u8 {
    let Some(base) = read_policy(&args.zones) else {
        return EXIT_BAD_INPUT;
    };
    // Live: record the headers for the duration, then learn from them.
    let (_recorded, paths) = if args.interfaces.is_empty() {
        (None, args.captures.clone())
    } else {
        let duration = args.duration.unwrap_or(std::time::Duration::from_secs(600));
        match super::learn_live::record(&args.interfaces, &args.backend, duration) {
            Ok((dir, files)) => (Some(dir), files),
            Err(message) => {
                error_line(message);
                return EXIT_BAD_INPUT;
            }
        }
    };
    let Some(captures) = open_captures(&paths) else {
        return EXIT_BAD_INPUT;
    };
    let mut options = ReplayOptions {
        flows: args.flows.config(),
        ..ReplayOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    let learn_options = LearnOptions {
        propose_networks: args.networks,
    };
    let learned = match learn(&base, &captures, &options, &learn_options) {
        Ok(learned) => learned,
        Err(error) => {
            error_line(error);
            return EXIT_BAD_INPUT;
        }
    };
    warn_truncations(&learned.truncations);
    let sources: Vec<String> = if !args.interfaces.is_empty() {
        args.interfaces
            .iter()
            .map(|i| format!("live capture on {i}"))
            .collect()
    } else {
        args.captures
            .iter()
            .map(|p| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
            })
            .collect()
    };
    let text = render_policy(&learned, &sources);

    // The written policy must load and leave the traffic it was learned
    // from without a violation: check both before handing it over.
    let written = match load_policy_str(&text, Path::new("learned.toml")) {
        Ok((policy, _)) => crate::classify::PolicyInForce {
            policy: CompiledPolicy::compile(&policy),
            generation: 0,
        },
        Err(error) => {
            error_line(format_args!(
                "the learned policy does not load (a bug): {}",
                error
                    .diagnostics
                    .first()
                    .map_or_else(String::new, ToString::to_string)
            ));
            return EXIT_BAD_INPUT;
        }
    };
    let mut sink = std::io::sink();
    let violations = match replay(&captures, &written, &options, &mut sink) {
        Ok(outcome) => outcome.stats.violations.total(),
        Err(error) => {
            error_line(error);
            return EXIT_BAD_INPUT;
        }
    };

    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                error_line(format_args!("{}: {e}", path.display()));
                return EXIT_BAD_INPUT;
            }
        }
        None => print!("{text}"),
    }
    super::stderr_line(format_args!(
        "segwatch learn: {} flows, {} rules{}, {} pass{}{}; replayed against the learned policy: {} violation{}",
        learned.flows,
        learned.rules.len(),
        if args.networks {
            format!(", {} proposed zones", learned.proposed_zones)
        } else {
            String::new()
        },
        learned.passes,
        if learned.passes == 1 { "" } else { "es" },
        if learned.converged {
            ""
        } else {
            " (the learned services did not settle)"
        },
        violations,
        if violations == 1 { "" } else { "s" },
    ));
    EXIT_OK
}
