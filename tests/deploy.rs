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

use serde_json::Value;

use crate::common::{SEGWATCH, root};
use crate::daemon::{Daemon, Prometheus, free_port, http_get, metric, wait_for};

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
        out.len() >= 5,
        "expected the five dashboards in {}",
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
    // Incidents and exceptions on, so that their panels have series: one
    // exception in force with hits, one expired whose traffic goes on.
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[incidents]\nenabled = true\n").unwrap();
    let exceptions = dir.path().join("exceptions.toml");
    std::fs::write(
        &exceptions,
        "[[exceptions]]\nid = \"EX-VENDOR\"\nreason = \"CT vendor VPN\"\nowner = \"Imaging IT\"\n\
         expires = 2099-06-01\nrule = \"vendor-remote-session\"\n\
         [[exceptions]]\nid = \"EX-GUEST-OLD\"\nreason = \"pilot\"\nowner = \"IT\"\n\
         expires = 2026-11-01\nrule = \"guest-isolation\"\n",
    )
    .unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--exceptions",
        exceptions.to_str().unwrap(),
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
    // The incident thread publishes once a second: its counters are in
    // place before Prometheus's first scrape, so no alert sees them rise.
    wait_for("the incidents counted", Duration::from_secs(10), || {
        metric(
            &daemon.metrics(),
            "segwatch_incidents_open",
            "kind=\"violation\"",
        )
        .filter(|open| *open > 0.0)
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
        text(&out).contains("SUCCESS: 13 rules found"),
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

/// The visible subcommands of the command line, as the binary's `--help`
/// lists them (clap's own `help` aside): each name starts a line of the
/// "Commands:" section, its description's continuation lines do not.
fn subcommands() -> Vec<String> {
    let out = run(Path::new(SEGWATCH), &["--help"], "");
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    let section = help
        .split_once("Commands:\n")
        .map(|(_, rest)| rest)
        .expect("--help lists the commands");
    let names: Vec<String> = section
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 5, "{help}");
    names
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

// ------------------------------------------------------------------ systemd

/// The shipped unit with ExecStart pointing at the binary under test
/// (`systemd-analyze verify` requires the program to exist), in a scratch
/// directory.
fn unit_under_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(deploy().join("systemd/segwatch.service")).unwrap();
    // Where the install instructions of deploy/README.md put the binary
    // (`cargo install --root /usr/local`; issue 15.12).
    assert!(
        unit.contains("ExecStart=/usr/local/bin/segwatch run "),
        "{unit}"
    );
    let readme = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    assert!(readme.contains("cargo install --locked --path . --features pcap --root /usr/local"));
    let path = dir.join("segwatch.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/segwatch", SEGWATCH)).unwrap();
    path
}

const SYSTEMD_HINT: &str = "Debian package systemd; .ci/run installs it";

#[test]
fn systemd_unit_verifies_cleanly_and_is_rated_ok_by_systemd_analyze_security() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let unit_arg = unit.to_str().unwrap();
    // Offline: no manager is asked (none runs as PID 1 in a container), no
    // man page looked up, no generator run. Unknown keys and bad values are
    // only warnings, so any output at all fails the test.
    let analyze = Path::new("systemd-analyze");
    let out = run(
        analyze,
        &["verify", "--man=no", "--generators=no", unit_arg],
        SYSTEMD_HINT,
    );
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    // The check can fail: a misspelt key is reported.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .unwrap();
    let out = run(
        analyze,
        &[
            "verify",
            "--man=no",
            "--generators=no",
            broken.to_str().unwrap(),
        ],
        SYSTEMD_HINT,
    );
    assert!(text(&out).contains("NoNewPrivilege"), "{}", text(&out));

    // The exposure score (0 best, 10 worst) of the sandboxing settings.
    let out = run(
        analyze,
        &["security", "--offline=yes", "--threshold=25", unit_arg],
        SYSTEMD_HINT,
    );
    let report = text(&out);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for segwatch.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(score <= 2.5, "exposure {score}:\n{report}");
    assert!(out.status.success(), "{report}");
    for setting in [
        "✓ NoNewPrivileges=",
        "✓ ProtectSystem=",
        "✓ ProtectHome=",
        "✓ PrivateTmp=",
        "✓ MemoryDenyWriteExecute=",
        "✓ SystemCallFilter=~@privileged",
        "✓ User=/DynamicUser=",
        "✓ CapabilityBoundingSet=~CAP_SYS_ADMIN",
    ] {
        assert!(
            report.contains(setting),
            "{setting} not in force:\n{report}"
        );
    }
    let unit = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "User=segwatch",
        "AmbientCapabilities=CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_RAW",
        "ReadWritePaths=/var/log/segwatch",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestrictAddressFamilies=AF_PACKET AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_the_log_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let scratch = tempfile::tempdir().unwrap();
    let root_dir = scratch.path();
    std::fs::create_dir(root_dir.join("etc")).unwrap();
    let root_arg = format!("--root={}", root_dir.display());
    let sysusers = deploy().join("systemd/segwatch.sysusers.conf");
    let out = run(
        Path::new("systemd-sysusers"),
        &[&root_arg, sysusers.to_str().unwrap()],
        SYSTEMD_HINT,
    );
    assert!(out.status.success(), "systemd-sysusers: {}", text(&out));
    let passwd = std::fs::read_to_string(root_dir.join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("segwatch:"))
        .unwrap_or_else(|| panic!("no segwatch user in {passwd}"))
        .split(':')
        .collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "not a system user: {uid}");
    assert_eq!(fields[6], "/usr/sbin/nologin");

    let tmpfiles = deploy().join("systemd/segwatch.tmpfiles.conf");
    let out = run(
        Path::new("systemd-tmpfiles"),
        &[&root_arg, "--create", tmpfiles.to_str().unwrap()],
        SYSTEMD_HINT,
    );
    assert!(out.status.success(), "systemd-tmpfiles: {}", text(&out));
    let logs = std::fs::metadata(root_dir.join("var/log/segwatch")).unwrap();
    assert!(logs.is_dir());
    assert_eq!(logs.uid(), uid);
    assert_eq!(logs.permissions().mode() & 0o777, 0o750);
    let etc = std::fs::metadata(root_dir.join("etc/segwatch")).unwrap();
    assert_eq!((etc.uid(), etc.gid()), (0, uid));
}

/// A capture of `flows` TCP flows from a workstation to a monitor, one SYN
/// every 100 ms: `flows` violations of [`ALERT_ALL`] spread over time.
fn spread_violations(path: &Path, flows: u16) {
    use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::SYN};
    let mut capture = Capture::new();
    for i in 0..flows {
        let src = format!("10.60.1.5:{}", 40000 + i);
        capture.add(
            at(f64::from(i) * 0.1),
            &Pkt::tcp(&src, "10.21.0.20:8443", SYN),
        );
    }
    capture.write_pcap(path, Resolution::Micro).unwrap();
}

const ALERT_ALL: &str = "[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n\
                         [zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n";

#[test]
fn logrotate_rotates_the_events_file_and_segwatch_reopens_it_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("spread.pcap");
    spread_violations(&capture, 100);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ALERT_ALL).unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    let events = logs.join("events.jsonl");
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--pcap-pace",
        "realtime",
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    let sent = |daemon: &Daemon| {
        metric(
            &daemon.metrics(),
            "segwatch_sink_events_sent_total",
            "events_file",
        )
    };
    wait_for("the first events", Duration::from_secs(10), || {
        sent(&daemon).filter(|&n| n >= 10.0)
    });

    // The shipped file, pointed at the scratch directory, run as root here
    // (no segwatch user), signalling the daemon directly instead of
    // through systemd.
    let shipped = std::fs::read_to_string(deploy().join("logrotate/segwatch")).unwrap();
    let mut config = shipped.clone();
    for (from, to) in [
        ("/var/log/segwatch/", format!("{}/", logs.display())),
        (
            "create 0640 segwatch segwatch",
            "create 0640 root root".into(),
        ),
        (
            "systemctl reload segwatch.service",
            format!("kill -HUP {}", daemon.child.id()),
        ),
    ] {
        assert!(
            config.contains(from),
            "{from:?} not in deploy/logrotate/segwatch"
        );
        config = config.replace(from, &to);
    }
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(&conf, config).unwrap();
    let state = dir.path().join("logrotate.state");
    let out = run(
        Path::new("logrotate"),
        &["-f", "-s", state.to_str().unwrap(), conf.to_str().unwrap()],
        "Debian package logrotate; .ci/run installs it",
    );
    assert!(out.status.success(), "logrotate: {}", text(&out));

    wait_for("all 100 events", Duration::from_secs(30), || {
        (sent(&daemon) == Some(100.0)).then_some(())
    });
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Events file reopened"), "{stderr}");

    let rotated: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &events)
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let old = std::fs::read_to_string(&rotated[0]).unwrap();
    let new = std::fs::read_to_string(&events).unwrap();
    assert!(old.lines().count() >= 10, "rotated file: {old}");
    assert!(
        new.lines().count() >= 1,
        "nothing written after the rotation"
    );
    let flow_ids: BTreeSet<String> = old
        .lines()
        .chain(new.lines())
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["flow_id"].to_string())
        .collect();
    assert_eq!(old.lines().count() + new.lines().count(), 100);
    assert_eq!(flow_ids.len(), 100, "an event lost or written twice");
}

// ------------------------------------------------ containers and Kubernetes

/// A validator installed by .ci/run into target/deploy-tools.
fn tool(name: &str) -> PathBuf {
    let path = root().join("target/deploy-tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run .ci/run, or python3 -m venv target/deploy-tools && \
         target/deploy-tools/bin/pip install -r deploy/tools/requirements.txt",
        path.display()
    );
    path
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let out = run(
        &tool("hadolint"),
        &[root().join("Dockerfile").to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "hadolint: {}", text(&out));
    // What the linter cannot know: the build the README promises.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in [
        "FROM rust:1.95-bookworm AS build",
        "RUN cargo build --release --locked --features pcap \\",
        "FROM debian:bookworm-slim",
        "RUN setcap cap_net_raw=eip /usr/bin/segwatch \\",
        "USER 10001:10001",
    ] {
        assert!(dockerfile.lines().any(|l| l == line), "{line} missing");
    }
    assert!(dockerfile.contains("libpcap0.8 ca-certificates"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/") && ignore.lines().any(|l| l == ".git/"));
}

#[test]
fn yamllint_passes_every_yaml_file_of_deploy() {
    let out = run(
        &tool("yamllint"),
        &[
            "-s",
            "-c",
            deploy().join(".yamllint.yml").to_str().unwrap(),
            deploy().to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "yamllint: {}", text(&out));
}

#[test]
fn docker_compose_accepts_the_demo_stack_and_its_parts_fit_together() {
    let compose = deploy().join("docker-compose.yml");
    let out = run(
        &tool("docker-compose"),
        &[
            "-f",
            compose.to_str().unwrap(),
            "config",
            "--format",
            "json",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "docker compose config: {}",
        text(&out)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = &config["services"];

    let segwatch = &services["segwatch"];
    assert_eq!(
        segwatch["command"],
        serde_json::json!(["demo", "--metrics-listen", "0.0.0.0:9108"])
    );
    assert_eq!(segwatch["cap_add"], serde_json::json!(["NET_RAW"]));
    let build = &segwatch["build"];
    let context = PathBuf::from(build["context"].as_str().unwrap());
    assert!(
        context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file()
    );

    // Every bind mount's source exists.
    let mounts = |service: &str| -> Vec<(PathBuf, String)> {
        services[service]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "bind")
            .map(|v| {
                let source = PathBuf::from(v["source"].as_str().unwrap());
                assert!(source.exists(), "{service}: {} missing", source.display());
                (source, v["target"].as_str().unwrap().to_string())
            })
            .collect()
    };
    // Prometheus reads deploy/prometheus, which scrapes segwatch:9108.
    let prometheus_mounts = mounts("prometheus");
    assert!(
        prometheus_mounts
            .iter()
            .any(|(s, t)| s.ends_with("deploy/prometheus") && t == "/etc/prometheus")
    );
    let scrape = std::fs::read_to_string(deploy().join("prometheus/prometheus.yml")).unwrap();
    assert!(scrape.contains("targets: [\"segwatch:9108\"]"));
    // Grafana's dashboard provider reads where the dashboards are mounted.
    let grafana_mounts = mounts("grafana");
    let providers: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("grafana/provisioning/dashboards/segwatch.yaml"))
            .unwrap(),
    )
    .unwrap();
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(
        grafana_mounts
            .iter()
            .any(|(s, t)| s.ends_with("deploy/grafana/dashboards") && t == path),
        "{grafana_mounts:?} {path}"
    );
    assert!(grafana_mounts.iter().any(
        |(s, t)| s.ends_with("deploy/grafana/provisioning") && t == "/etc/grafana/provisioning"
    ));
    let datasources =
        std::fs::read_to_string(deploy().join("grafana/provisioning/datasources/segwatch.yaml"))
            .unwrap();
    assert!(datasources.contains("url: http://prometheus:9090"));
}

/// The documents of the Kubernetes manifest.
fn kubernetes_documents() -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(deploy().join("kubernetes/daemonset.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).unwrap())
        .collect()
}

#[test]
fn kubernetes_validate_accepts_the_daemonset_strictly() {
    let out = run(
        &tool("kubernetes-validate"),
        &[
            "--strict",
            "-k",
            "1.30.0",
            deploy().join("kubernetes/daemonset.yaml").to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "kubernetes-validate: {}", text(&out));
    assert_eq!(
        text(&out).matches(" passed for resource ").count(),
        3,
        "{}",
        text(&out)
    );
}

#[test]
fn the_daemonset_captures_on_the_host_network_with_only_its_capabilities() {
    let docs = kubernetes_documents();
    let daemonset = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(pod["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    let list = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(list(&security["capabilities"]["add"]), ["NET_RAW"]);
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    // File capabilities need no_new_privs off (see the Dockerfile).
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(10001));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some("metrics")
        );
    }
    assert_eq!(container["ports"][0]["name"].as_str(), Some("metrics"));
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(9108));
    for kind in ["cpu", "memory"] {
        assert!(
            container["resources"]["limits"][kind].is_string(),
            "{kind} limit"
        );
        assert!(
            container["resources"]["requests"][kind].is_string(),
            "{kind} request"
        );
    }
    assert_eq!(
        container["args"],
        serde_yaml_ng::to_value([
            "run",
            "--config",
            "/etc/segwatch/segwatch.toml",
            "--metrics-listen",
            "$(POD_IP):9108"
        ])
        .unwrap()
    );
    // Issue 16, item 5: the listener binds the node's address (the pod's IP
    // under hostNetwork), not every address; the API's token is a Secret.
    assert_eq!(container["env"][0]["name"].as_str(), Some("POD_IP"));
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    assert_eq!(
        pod["volumes"][1]["secret"]["secretName"].as_str(),
        Some("segwatch-api")
    );
    assert_eq!(
        container["volumeMounts"][1]["mountPath"].as_str(),
        Some("/etc/segwatch-api")
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/segwatch")
    );
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    // Issue 16, item 11: the spool (and the evidence state) on a volume of
    // the node, given to the pod's user by the init container.
    let state_mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "state")
        .expect("a state volume mount");
    assert_eq!(state_mount["mountPath"].as_str(), Some("/var/lib/segwatch"));
    assert!(state_mount["readOnly"].as_bool() != Some(true));
    let state = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "state")
        .expect("a state volume");
    assert_eq!(
        state["hostPath"]["path"].as_str(),
        Some("/var/lib/segwatch")
    );
    let init = &pod["initContainers"][0];
    let command = init["command"][2].as_str().unwrap();
    assert!(
        command.contains("chown 10001:10001 /var/lib/segwatch"),
        "{command}"
    );
    assert_eq!(
        list(&init["securityContext"]["capabilities"]["add"]),
        ["CHOWN", "FOWNER"]
    );
    assert_eq!(
        list(&init["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    let namespace = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("privileged")
    );
}

#[test]
fn the_configmap_holds_a_valid_policy_and_a_configuration_segwatch_runs_with() {
    let docs = kubernetes_documents();
    let data = &docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"];
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let policy_text = data["policy.toml"].as_str().unwrap();
    assert_eq!(
        policy_text,
        std::fs::read_to_string(root().join("policies/example-hospital.toml")).unwrap(),
        "the ConfigMap's policy.toml is policies/example-hospital.toml"
    );
    std::fs::write(&policy, policy_text).unwrap();
    let out = run(
        Path::new(SEGWATCH),
        &["check", policy.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "segwatch check: {}", text(&out));

    let config_text = data["segwatch.toml"].as_str().unwrap();
    assert!(config_text.contains("path = \"/etc/segwatch/policy.toml\""));
    assert!(!config_text.contains("0.0.0.0"), "binds every address");
    let token_file = "token_file = \"/etc/segwatch-api/token\"";
    assert!(config_text.contains(token_file));
    let token = dir.path().join("token");
    std::fs::write(&token, "site-token\n").unwrap();
    let config_text =
        config_text.replace(token_file, &format!("token_file = \"{}\"", token.display()));
    // The spool on the state volume; here in the scratch directory.
    let spool = "dir = \"/var/lib/segwatch/spool\"";
    assert!(
        config_text.contains(spool),
        "the ConfigMap spools the feeds"
    );
    let config_text = config_text.replace(
        spool,
        &format!("dir = \"{}\"", dir.path().join("spool").display()),
    );
    // The same file with the sample instead of the node's interface and the
    // scratch policy: segwatch accepts every other key as it is.
    let interfaces = "interfaces = [\"eth1\"]\n";
    assert!(config_text.contains(interfaces));
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, config_text.replace(interfaces, "")).unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        root()
            .join("tests/fixtures/hospital-sample.pcap")
            .to_str()
            .unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    wait_for("the sample judged", Duration::from_secs(10), || {
        (metric(&daemon.metrics(), "segwatch_violations_total", "") == Some(14.0)).then_some(())
    });
    assert!(daemon.metrics().contains("sink=\"stdout\""));
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

// ------------------------------------------------------------ capabilities

/// CAP_NET_RAW (13), as /proc/PID/status shows it: capture needs nothing
/// more (issue 15.12; CAP_NET_ADMIN was granted without use).
const NET_RAW: u64 = 1 << 13;

/// A scratch directory that user 10001 can reach, on a file system that
/// honours file capabilities (not mounted nosuid), holding a copy of the
/// binary, the sample and the example policy: the checkout itself may sit
/// under a directory other users cannot enter.
fn scratch_for_user() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let reachable = |dir: &Path| {
        dir.ancestors()
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
            && Command::new("findmnt")
                .args(["-n", "-o", "OPTIONS", "--target"])
                .arg(dir)
                .output()
                .is_ok_and(|o| o.status.success() && !text(&o).contains("nosuid"))
    };
    let base = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        std::env::temp_dir(),
    ]
    .into_iter()
    .find(|d| reachable(d))
    .expect("no directory other users can reach on a file system without nosuid");
    let dir = tempfile::tempdir_in(base).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(SEGWATCH, dir.path().join("segwatch")).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/hospital-sample.pcap"),
        dir.path().join("sample.pcap"),
    )
    .unwrap();
    std::fs::copy(
        root().join("policies/example-hospital.toml"),
        dir.path().join("policy.toml"),
    )
    .unwrap();
    for file in ["sample.pcap", "policy.toml"] {
        std::fs::set_permissions(
            dir.path().join(file),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    dir
}

/// Starts `program run` on the sample through `setpriv` with `privileges`,
/// waits until it serves, and returns its effective capabilities and uid.
///
/// setpriv itself runs as root and keeps its capabilities until it execs, so
/// a shell stands between: an unprivileged process that execs segwatch, as a
/// container's or a service's first process would.
/// `scratch` is a [`scratch_for_user`] directory.
fn capabilities_of_segwatch(scratch: &Path, privileges: &[&str]) -> (u64, String) {
    let port = free_port();
    let child = Command::new("setpriv")
        .args(privileges)
        .args(["/bin/sh", "-c", "exec \"$0\" \"$@\""])
        .arg(scratch.join("segwatch"))
        .args(["run", "--metrics-listen", &format!("127.0.0.1:{port}")])
        .arg("--pcap")
        .arg(scratch.join("sample.pcap"))
        .arg("--policy")
        .arg(scratch.join("policy.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs");
    let daemon = Daemon {
        child,
        metrics_port: port,
    };
    wait_for("segwatch serving", Duration::from_secs(10), || {
        http_get(port, "/healthz")
    });
    wait_for("the sample read", Duration::from_secs(10), || {
        (metric(&daemon.metrics(), "segwatch_packets_total", "") == Some(400.0)).then_some(())
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let effective = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    let uid = field("Uid:");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    (effective, uid)
}

fn assert_root() {
    assert!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("Uid:\t0\t"),
        "this test runs as root (CI does)"
    );
}

#[test]
fn the_units_capability_settings_give_a_non_root_segwatch_exactly_net_raw() {
    assert_root();
    // What systemd does for the unit's User=, AmbientCapabilities=,
    // CapabilityBoundingSet= and NoNewPrivileges=, done by setpriv (no
    // systemd manager runs here).
    let unit = std::fs::read_to_string(deploy().join("systemd/segwatch.service")).unwrap();
    let setting = |key: &str| -> String {
        let value = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing"));
        value
            .split_whitespace()
            .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ambient = setting("AmbientCapabilities=");
    let bounding = setting("CapabilityBoundingSet=");
    assert!(unit.lines().any(|l| l == "NoNewPrivileges=yes"));
    let scratch = scratch_for_user();
    let (effective, uid) = capabilities_of_segwatch(
        scratch.path(),
        &[
            "--reuid=10001",
            "--regid=10001",
            "--clear-groups",
            &format!("--inh-caps=-all,{ambient}"),
            &format!("--ambient-caps=-all,{ambient}"),
            &format!("--bounding-set=-all,{bounding}"),
            "--no-new-privs",
        ],
    );
    assert!(uid.starts_with("10001"), "uid {uid}");
    assert_eq!(effective, NET_RAW, "CapEff {effective:x}");
}

#[test]
fn the_images_file_capability_works_for_a_non_root_user_and_needs_net_raw_in_the_bounding_set() {
    assert_root();
    // A copy of the binary with the capabilities the Dockerfile gives it.
    let scratch = scratch_for_user();
    let program = scratch.path().join("segwatch");
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let caps = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN setcap "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Dockerfile runs setcap")
        .to_string();
    let out = run(
        Path::new("setcap"),
        &[&caps, program.to_str().unwrap()],
        "Debian package libcap2-bin; .ci/run installs it",
    );
    assert!(out.status.success(), "setcap: {}", text(&out));
    let user = ["--reuid=10001", "--regid=10001", "--clear-groups"];

    let (effective, uid) = capabilities_of_segwatch(scratch.path(), &user);
    assert!(uid.starts_with("10001"), "uid {uid}");
    assert_eq!(effective, NET_RAW, "CapEff {effective:x}");

    // Under no_new_privs (Kubernetes' allowPrivilegeEscalation: false) the
    // kernel ignores file capabilities: segwatch runs, without them.
    let nnp = [&user[..], &["--no-new-privs"]].concat();
    let (effective, _) = capabilities_of_segwatch(scratch.path(), &nnp);
    assert_eq!(effective, 0, "CapEff {effective:x}");

    // Without NET_RAW in the bounding set, exec is refused.
    let out = run(
        Path::new("setpriv"),
        &[
            &user[..],
            &[
                "--bounding-set=-net_raw",
                program.to_str().unwrap(),
                "--version",
            ],
        ]
        .concat(),
        "util-linux",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Operation not permitted"),
        "{}",
        text(&out)
    );
}

// ------------------------------------------------------------ memory limits

/// MemoryHigh over README's sizing (README, "Memory: sizing a sensor").
const HIGH_HEADROOM: f64 = 1.25;
/// MemoryMax and the pod's memory limit over README's sizing.
const MAX_HEADROOM: f64 = 1.5;

/// README's sizing of the daemon running `config` (a segwatch.toml), bytes:
/// the base, every bound times its cost per entry, the inspections of each
/// worker, every sink's queue full and each interface's capture ring.
fn sizing_of(config: &toml::Table) -> f64 {
    use crate::memory_flood::readme_cost as cost;
    let section = |name: &str| config.get(name).and_then(|s| s.as_table());
    let int = |name: &str, key: &str, default: i64| -> f64 {
        section(name)
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_integer())
            .unwrap_or(default) as f64
    };
    let on = |name: &str, key: &str, default: bool| -> bool {
        section(name)
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_bool())
            .unwrap_or(default)
    };
    let interfaces = section("capture")
        .and_then(|c| c.get("interfaces"))
        .and_then(|i| i.as_array())
        .map_or(1, |i| i.len()) as f64;
    let workers = int("capture", "workers", 1) * interfaces;
    let queue = int("events", "queue", 10_000);
    let has = |name: &str, key: &str| section(name).is_some_and(|s| s.contains_key(key));
    let mut queues = 0.0;
    if has("events", "file") {
        queues += queue;
    }
    if on("events", "stdout", false) {
        queues += queue;
    }
    for feed in config
        .get("syslog")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        queues += feed
            .get("queue")
            .and_then(|q| q.as_integer())
            .map_or(queue, |q| q as f64);
    }
    let c = |row: &str| cost(row) as f64;
    let mut bytes = c("base")
        + int("flows", "max_flows", 1_000_000) * c("flow table")
        + int("inventory", "max_devices", 100_000) * c("device inventory")
        + queues * c("queued events")
        + interfaces * int("capture", "buffer_mib", 64) * f64::from(1 << 20);
    if on("detection", "enabled", true) {
        bytes += workers * c("inspections");
    }
    if on("incidents", "enabled", false) {
        bytes += int("incidents", "max_open", 1_000_000) * c("open incidents")
            + int("incidents", "max_initiators", 100_000) * c("initiators");
    }
    bytes
}

/// A memory quantity: Kubernetes' (`768Mi`, `1Gi`) or systemd's (`768M`,
/// `1G`, base 1024), in bytes.
fn quantity(text: &str) -> f64 {
    let text = text.trim();
    let (number, unit) =
        text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let scale = match unit {
        "" => 1.0,
        "Ki" | "K" => 1024.0,
        "Mi" | "M" => 1024.0 * 1024.0,
        "Gi" | "G" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other:?} of {text:?}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn regression_16_the_memory_limits_follow_from_the_measured_sizing() {
    // systemd: the unit runs deploy/segwatch.toml.
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(deploy().join("segwatch.toml")).unwrap()).unwrap();
    let sized = sizing_of(&config);
    let unit = std::fs::read_to_string(deploy().join("systemd/segwatch.service")).unwrap();
    let setting = |key: &str| -> f64 {
        let line = unit
            .lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets {key}"));
        quantity(line.split_once('=').unwrap().1)
    };
    let mib = |b: f64| (b / f64::from(1 << 20)).round();
    assert!(
        setting("MemoryHigh") >= HIGH_HEADROOM * sized,
        "MemoryHigh {} MiB under {HIGH_HEADROOM} x the sizing of deploy/segwatch.toml ({} MiB)",
        mib(setting("MemoryHigh")),
        mib(sized)
    );
    assert!(
        setting("MemoryMax") >= MAX_HEADROOM * sized,
        "MemoryMax {} MiB under {MAX_HEADROOM} x {} MiB",
        mib(setting("MemoryMax")),
        mib(sized)
    );
    assert!(setting("MemoryMax") > setting("MemoryHigh"));

    // Kubernetes: the pod runs its ConfigMap's configuration, and the
    // manifest's limit also holds deploy/segwatch.toml's (incidents and a
    // spooled feed on), which an operator adds from there.
    let docs = kubernetes_documents();
    let data = &docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"];
    let pod_config: toml::Table = toml::from_str(data["segwatch.toml"].as_str().unwrap()).unwrap();
    let pod_sized = sizing_of(&pod_config).max(sized);
    let daemonset = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let resources = &daemonset["spec"]["template"]["spec"]["containers"][0]["resources"];
    let limit = quantity(resources["limits"]["memory"].as_str().unwrap());
    let request = quantity(resources["requests"]["memory"].as_str().unwrap());
    assert!(
        limit >= MAX_HEADROOM * pod_sized,
        "the pod's memory limit {} MiB under {MAX_HEADROOM} x {} MiB",
        mib(limit),
        mib(pod_sized)
    );
    assert!(
        request >= pod_sized && request <= limit,
        "the pod's memory request {} MiB: at least the sizing, {} MiB",
        mib(request),
        mib(pod_sized)
    );
}
