//! The report in a real browser: the HTML opened in headless Chromium (no
//! console error, the DOM holds the tables with the report's numbers, a
//! screenshot), the PDF it prints checked with poppler-utils (`pdfinfo`,
//! `pdftotext`), and its first page rendered for the README.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{SEGWATCH, root};

/// Chromium's flags for a quiet, offline, throwaway run.
fn chromium(profile: &Path) -> Command {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .env("HOME", profile);
    command
}

/// The command the README shows, over the bundled sample.
fn sample_report(out: &Path, pdf: bool) -> std::process::Output {
    let mut command = Command::new(SEGWATCH);
    command
        .current_dir(root())
        .args([
            "report",
            "--policy",
            "policies/example-hospital.toml",
            "--generated-at",
            "2026-12-07T12:00:00Z",
            "--out",
        ])
        .arg(out)
        .arg("tests/fixtures/hospital-sample.pcap");
    if pdf {
        command.arg("--pdf");
    }
    command.output().unwrap()
}

fn count(n: u64) -> String {
    segwatch::report::html::count(n)
}

#[test]
fn the_report_opens_in_headless_chromium_and_prints_to_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let made = sample_report(&out, true);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let flows = json["summary"]["flows"].as_u64().unwrap();
    let violations = json["summary"]["violations"].as_u64().unwrap();
    assert!(flows > 0 && violations > 0);

    // The DOM as Chromium built it, and what it logged while loading.
    let html = out.join("report.html");
    let url = format!("file://{}", html.display());
    let dom = chromium(&dir.path().join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let log = String::from_utf8_lossy(&dom.stderr);
    for line in log.lines() {
        assert!(
            !line.contains("CONSOLE") && !line.contains("Failed to load resource"),
            "console message: {line}"
        );
    }
    let dom = String::from_utf8_lossy(&dom.stdout);
    let row = |figure: &str| {
        let start = dom
            .find(&format!("<tr data-figure=\"{figure}\">"))
            .unwrap_or_else(|| panic!("no row {figure} in the DOM"));
        let end = start + dom[start..].find("</tr>").unwrap();
        dom[start..end].to_string()
    };
    assert!(
        row("flows").contains(&format!(">{}</td>", count(flows))),
        "{}",
        row("flows")
    );
    assert!(row("violations").contains(&format!(">{}</td>", count(violations))));
    // Every cell of the matrix with its counts, as the JSON has them.
    let cells = json["matrix"].as_array().unwrap();
    let zones = json["zones"].as_array().unwrap().len();
    assert_eq!(cells.len(), zones * zones);
    assert_eq!(dom.matches("data-src=").count(), cells.len());
    for cell in cells.iter().filter(|c| c["flows"].as_u64().unwrap() > 0) {
        let needle = format!(
            "data-src=\"{}\" data-dest=\"{}\" data-flows=\"{}\" data-violations=\"{}\"",
            cell["src_zone"].as_str().unwrap(),
            cell["dest_zone"].as_str().unwrap(),
            cell["flows"],
            cell["violations"]
        );
        assert!(dom.contains(&needle), "{needle}");
    }
    for table in [
        "inputs",
        "summary-table",
        "zone-matrix",
        "rules",
        "top-devices",
        "inventory-table",
        "crosswalk-table",
    ] {
        assert!(
            dom.contains(&format!("<table id=\"{table}\""))
                || dom.contains(&format!("<table class=\"matrix\" id=\"{table}\"")),
            "table {table}"
        );
    }

    // A screenshot of the page as a screen shows it (A4 width at 96 dpi).
    let shot = dir.path().join("screen.png");
    let status = chromium(&dir.path().join("profile-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=794,1123")
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        png.len()
    );

    // The PDF: A4 pages (a break before each section), the report's text.
    let pdf = out.join("report.pdf");
    let info = Command::new("pdfinfo").arg(&pdf).output().unwrap();
    assert!(info.status.success());
    let info = String::from_utf8_lossy(&info.stdout);
    let pages: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((9..=40).contains(&pages), "{pages} pages\n{info}");
    assert!(info.contains("(A4)"), "A4: {info}");
    let text = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for words in [
        "Network segmentation evidence report",
        "1. Scope and method",
        "3. Zone matrix",
        "6. Exception register",
        "9. Crosswalk to frameworks",
        "not a certification",
        "27001:2022",
        "IEC 80001-",
        "B3S",
        "HICP",
    ] {
        assert!(text.contains(words), "{words:?} not in the PDF");
    }
    assert!(text.contains(&json["inputs"][0]["sha256"].as_str().unwrap()[..32]));

    // The first printed page, for the README.
    let first = dir.path().join("first-page");
    let rendered = Command::new("pdftoppm")
        .args(["-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&pdf)
        .arg(&first)
        .status()
        .unwrap();
    assert!(rendered.success());
    let page = std::fs::read(first.with_extension("png")).unwrap();
    assert!(page.starts_with(b"\x89PNG"));
    let kept = root().join("target/report-sample");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("screen.png"), &png).unwrap();
    std::fs::write(kept.join("first-page.png"), &page).unwrap();
    if std::env::var_os("SEGWATCH_BLESS").is_some() {
        std::fs::write(root().join("docs/report-first-page.png"), &page).unwrap();
    }
}

#[test]
fn pdf_without_a_browser_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let output = Command::new(SEGWATCH)
        .current_dir(root())
        .env("SEGWATCH_CHROMIUM", dir.path().join("no-such-browser"))
        .args([
            "report",
            "--policy",
            "policies/example-hospital.toml",
            "--pdf",
            "--out",
        ])
        .arg(&out)
        .arg("tests/fixtures/hospital-sample.pcap")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("report.pdf") && stderr.contains("no headless Chromium"),
        "{stderr}"
    );
    // The HTML and annexes were written before.
    assert!(out.join("report.html").is_file());
}

#[test]
fn the_same_inputs_give_byte_identical_files_pdf_included() {
    let dir = tempfile::tempdir().unwrap();
    // CI installs chromium; elsewhere the HTML, JSON and CSV are compared.
    let pdf = segwatch::report::find_chromium().is_some();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let made = sample_report(out, pdf);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), if pdf { 10 } else { 9 }, "{names:?}");
    for name in &names {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name:?} differs between two runs"
        );
    }
    if pdf {
        // Dated by --generated-at, not by the clock.
        let info = Command::new("pdfinfo")
            .arg("-isodates")
            .arg(a.join("report.pdf"))
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        for key in ["CreationDate:", "ModDate:"] {
            let date = info
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {info}"));
            assert_eq!(date.trim(), "2026-12-07T12:00:00Z", "{key}");
        }
    }
}
