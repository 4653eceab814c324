//! `deploy/` checked with the real tools, wherever they run on this machine:
//! every Grafana dashboard query answered by a real Prometheus scraping a real
//! sensor; the alerting and recording rules through `promtool`; the systemd
//! unit through `systemd-analyze`; sysusers, tmpfiles and logrotate files
//! applied in a scratch root; the Dockerfile, compose file and Kubernetes
//! manifests through hadolint, docker compose and kubernetes-validate (from
//! PyPI, installed by `.ci/run` into `target/deploy-tools`); completions and
//! man pages generated from the command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use serde_json::Value;

use crate::common::{SEGWATCH, root};
use crate::daemon::{Daemon, Prometheus, metric, wait_for};

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// Runs a command to completion, panicking with a one-line hint when the
/// program is missing.
fn run(program: &Path, args: &[&str], hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} ({hint})", program.display()))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ------------------------------------------------------------------ Grafana

/// Every dashboard: file name and parsed JSON.
fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy().join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let json = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 4,
        "expected the four dashboards in {}",
        dir.display()
    );
    out
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every target expression of a dashboard, with its panel's title.
fn exprs(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("").to_string();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("panel {title:?}: target without expr: {t}"));
                    (title.clone(), expr.to_string())
                })
        })
        .collect()
}

/// Replaces Grafana's variables with what a query needs to run: time
/// ranges become `1m`, template variables `.*`. Returns the query and the
/// template variables it used.
fn concrete(expr: &str) -> (String, BTreeSet<String>) {
    let mut out = String::new();
    let mut used = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let name = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').expect("unclosed ${");
            let name = braced[..end].split(':').next().unwrap().to_string();
            rest = &braced[end + 1..];
            name
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = rest[..end].to_string();
            rest = &rest[end..];
            name
        };
        match name.as_str() {
            "__rate_interval" | "__interval" | "__range" => out.push_str("1m"),
            builtin if builtin.starts_with("__") => {
                panic!("unexpected Grafana variable ${builtin} in {expr}")
            }
            _ => {
                out.push_str(".*");
                used.insert(name);
            }
        }
    }
    out.push_str(rest);
    (out, used)
}

#[test]
fn grafana_variable_substitution() {
    let (q, used) = concrete(
        r#"sum(rate(x{instance=~"$instance", s=~"${severity:regex}"}[$__rate_interval])) + y[${__range}]"#,
    );
    assert_eq!(q, r#"sum(rate(x{instance=~".*", s=~".*"}[1m])) + y[1m]"#);
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["instance", "severity"]
    );
}

#[test]
fn grafana_dashboards_and_provisioning_are_consistent() {
    let datasources: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("grafana/provisioning/datasources/segwatch.yaml"))
            .unwrap(),
    )
    .unwrap();
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    let provisioned_uid = datasource["uid"].as_str().unwrap();
    let providers: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("grafana/provisioning/dashboards/segwatch.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(providers["providers"][0]["type"].as_str(), Some("file"));

    let mut uids = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        let uid = dashboard["uid"].as_str().unwrap();
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        let variables: BTreeSet<&str> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        // The datasource variable defaults to the provisioned datasource.
        let ds = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(ds["query"], "prometheus", "{file}");
        assert_eq!(ds["current"]["value"], provisioned_uid, "{file}");
        let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{file}: panel id {} twice",
                panel["id"]
            );
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
                "{file}: {title}"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"],
                ds_ref.as_str(),
                "{file}: {title}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for target in targets {
                assert_eq!(
                    target["datasource"]["uid"],
                    ds_ref.as_str(),
                    "{file}: {title}"
                );
                assert!(target["refId"].is_string(), "{file}: {title}");
            }
        }
        for (title, expr) in exprs(&dashboard) {
            let (_, used) = concrete(&expr);
            for name in used {
                assert!(
                    variables.contains(name.as_str()),
                    "{file}: {title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }
}

/// Prometheus scraping `daemon_port` every second, evaluating the shipped
/// recording and alerting rules every second.
fn prometheus_with_shipped_rules(daemon_port: u16) -> Prometheus {
    let rules = deploy().join("prometheus");
    Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n  - {}\n\
         scrape_configs:\n  - job_name: segwatch\n    static_configs:\n      - targets: ['127.0.0.1:{daemon_port}']\n",
        rules.join("recording.yml").display(),
        rules.join("alerts.yml").display(),
    ))
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--pcap",
        root()
            .join("tests/fixtures/hospital-sample.pcap")
            .to_str()
            .unwrap(),
        "--policy",
        root()
            .join("policies/example-hospital.toml")
            .to_str()
            .unwrap(),
        // A sink, so that the sink metrics exist.
        "--events",
        events.to_str().unwrap(),
    ]);
    wait_for("the sample read", Duration::from_secs(10), || {
        (metric(&daemon.metrics(), "segwatch_packets_total", "") == Some(400.0)).then_some(())
    });
    let prometheus = prometheus_with_shipped_rules(daemon.metrics_port);

    let mut pending: Vec<(String, String, String)> = Vec::new();
    for (file, dashboard) in dashboards() {
        for (title, expr) in exprs(&dashboard) {
            let (query, _) = concrete(&expr);
            pending.push((file.clone(), title, query));
        }
    }
    assert!(pending.len() > 30, "only {} queries found", pending.len());
    // Target discovery takes about 5 s, rates need two scrapes and recording
    // rules one evaluation after that: poll until every query has a series.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_error = std::collections::HashMap::new();
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|(_, _, query)| match prometheus.query_result(query) {
            Ok(result) => result.is_empty(),
            Err(e) => {
                last_error.insert(query.clone(), e);
                true
            }
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let failures: Vec<String> = pending
        .iter()
        .map(|(file, title, query)| match last_error.get(query) {
            Some(e) => format!("{file}: {title}: {query}: error {e}"),
            None => format!("{file}: {title}: {query}: no series"),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "queries without data:\n{}",
        failures.join("\n")
    );

    // Every recording and alerting rule evaluates without error on real data.
    let rules = wait_for("every rule evaluated", Duration::from_secs(30), || {
        let data = prometheus.api("/api/v1/rules").ok()?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        (evaluated && rules.len() >= 14).then_some(rules)
    });
    for rule in &rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {}: {}",
            rule["name"], rule["lastError"]
        );
    }
    // The sensor is up: none of its alerts may be firing on the sample.
    let alerts = prometheus.api("/api/v1/alerts").unwrap();
    let firing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "alerts firing: {firing:?}");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

// --------------------------------------------------------------- Prometheus

fn promtool(args: &[&str]) -> Output {
    let out = Command::new("promtool")
        .current_dir(deploy().join("prometheus"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool: {e} (Debian package prometheus; .ci/run installs it)")
        });
    assert!(
        out.status.success(),
        "promtool {}: {}",
        args.join(" "),
        text(&out)
    );
    out
}

#[test]
fn promtool_checks_rules_and_config_and_passes_the_alert_unit_tests() {
    let out = promtool(&["check", "rules", "recording.yml", "alerts.yml"]);
    assert!(
        text(&out).contains("SUCCESS: 8 rules found"),
        "{}",
        text(&out)
    );
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "config", "central.yml"]);
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));

    // Each alert of alerts.yml has a test that expects it firing and one
    // that expects it silent.
    let alerts: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let tests: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("prometheus/alerts_test.yml")).unwrap(),
    )
    .unwrap();
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"].as_sequence().unwrap() {
        for case in test["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                fired.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(fired.contains(name), "no test fires {name}");
            assert!(silent.contains(name), "no test keeps {name} silent");
        }
    }
}

// -------------------------------------------------- completions, man pages

/// The visible subcommands of the command line.
fn subcommands() -> Vec<String> {
    segwatch::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    let names = subcommands();
    assert!(names.contains(&"completions".to_string()) && names.contains(&"run".to_string()));
    for shell in ["bash", "zsh", "fish"] {
        let out = run(Path::new(SEGWATCH), &["completions", shell], "");
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 1000, "{shell}: short script");
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: {name} missing");
        }
        // Flags of a subcommand too.
        assert!(script.contains("metrics-listen"), "{shell}");
    }
    // bash loads the script and registers the completion function.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("segwatch.bash");
    std::fs::write(
        &script,
        run(Path::new(SEGWATCH), &["completions", "bash"], "").stdout,
    )
    .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p segwatch",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("_segwatch"), "{}", text(&out));
    let out = run(Path::new(SEGWATCH), &["completions", "tcsh"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_pages_name_every_subcommand() {
    let out = run(Path::new(SEGWATCH), &["manpage"], "");
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH segwatch 1"), "{page}");
    for name in subcommands() {
        assert!(
            page.contains(&format!("segwatch\\-{name}(1)")),
            "{name} missing"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = run(
        Path::new(SEGWATCH),
        &["manpage", "--dir", dir.path().to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    for name in subcommands() {
        let page = std::fs::read_to_string(dir.path().join(format!("segwatch-{name}.1")))
            .unwrap_or_else(|e| panic!("segwatch-{name}.1: {e}"));
        assert!(page.contains(&format!(".TH segwatch-{name} 1")), "{page}");
    }
    let run_page = std::fs::read_to_string(dir.path().join("segwatch-run.1")).unwrap();
    assert!(run_page.contains("metrics\\-listen"));
}
