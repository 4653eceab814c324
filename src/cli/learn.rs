//! `segwatch learn`: a least-privilege policy from observed traffic.

use std::io::Write as _;
use std::path::Path;

use segwatch::classify::CompiledPolicy;
use segwatch::learn::{LearnOptions, learn, render_policy};
use segwatch::policy::load_policy_str;
use segwatch::replay::{ReplayOptions, replay};

use super::output::{OutputFile, refuse_an_input};
use super::replay::{open_captures, read_policy, warn_truncations};
use super::{Error, LearnArgs, Status};

/// Runs `segwatch learn`.
pub fn run(args: &LearnArgs) -> Result<Status, Error> {
    // The output may not be one of the inputs: checked before learning.
    let mut inputs: Vec<&Path> = args.captures.iter().map(|p| p.as_path()).collect();
    inputs.push(&args.zones);
    if let Some(path) = &args.output {
        refuse_an_input(path, &inputs)?;
    }
    let base = read_policy(&args.zones)?;
    // Live: record the headers for the duration, then learn from them.
    let (_recorded, paths) = if args.interfaces.is_empty() {
        (None, args.captures.clone())
    } else {
        let duration = args.duration.unwrap_or(std::time::Duration::from_secs(600));
        let (dir, files) = super::learn_live::record(&args.interfaces, &args.backend, duration)?;
        (Some(dir), files)
    };
    let captures = open_captures(&paths)?;
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
    let learned = learn(&base, &captures, &options, &learn_options)?;
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
    let (written, _) =
        load_policy_str(&text, Path::new("learned.toml")).map_err(Error::LearnedPolicy)?;
    let written = segwatch::classify::PolicyInForce::new(CompiledPolicy::compile(&written), 0);
    let mut sink = std::io::sink();
    let violations = replay(&captures, &written, &options, &mut sink)?
        .stats
        .violations
        .total();

    match &args.output {
        Some(path) => {
            let mut out = OutputFile::create(path, &inputs)?;
            out.write_all(text.as_bytes())
                .map_err(|e| Error::file(path, e))?;
            out.finish()?;
        }
        None => print!("{text}"),
    }
    if args.networks && learned.proposed_zones == 0 && !learned.catch_all_zones.is_empty() {
        super::stderr_line(format_args!(
            "segwatch learn: --networks proposed no zone: zone {} claims every address \
             (0.0.0.0/0 or ::/0), so none is left unknown to propose a zone for; to get \
             proposals, learn with a zones file without that network (proposed zones are \
             more specific, so it can go back afterwards)",
            learned.catch_all_zones.join(", ")
        ));
    }
    let (review_rules, review_flows) = learned.held_for_review();
    let review = if review_rules > 0 {
        format!(
            ", {review_flows} flow{} held for review in {review_rules} commented-out rule{} \
             (the zones file's rules alert on them)",
            if review_flows == 1 { "" } else { "s" },
            if review_rules == 1 { "" } else { "s" },
        )
    } else {
        String::new()
    };
    super::stderr_line(format_args!(
        "segwatch learn: {}, {}{}{review}, {} pass{}{}; replayed against the learned policy: {} violation{}",
        super::counted(learned.flows, "flow"),
        super::counted(learned.policy.rules.len() as u64, "rule"),
        if args.networks {
            format!(
                ", {}",
                super::counted(learned.proposed_zones as u64, "proposed zone")
            )
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
    Ok(Status::Ran)
}
