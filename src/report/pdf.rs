//! The PDF: the report's HTML printed by a headless Chromium (Debian's
//! `chromium` package). Chromium stamps the PDF with its creation time, so
//! unlike the HTML, JSON and CSV the PDF is not byte-identical between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ReportError;

/// The browsers tried, in order, on the `PATH` (or `SEGWATCH_CHROMIUM`).
const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The headless Chromium to print with: `SEGWATCH_CHROMIUM` when set, else
/// the first of [`BROWSERS`] on the `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEGWATCH_CHROMIUM") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| BROWSERS.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Prints `html` (a file) to `pdf` through a headless Chromium.
pub fn print_pdf(html: &Path, pdf: &Path) -> Result<(), ReportError> {
    let fail = |reason: String| ReportError::Pdf {
        path: pdf.to_owned(),
        reason,
    };
    let browser = find_chromium().ok_or_else(|| {
        fail(
            "no headless Chromium found to print the PDF with (install the chromium package, \
              or set SEGWATCH_CHROMIUM to its path); report.html prints to A4 from any browser"
                .into(),
        )
    })?;
    let html = std::path::absolute(html).map_err(|e| fail(e.to_string()))?;
    let profile = tempfile::tempdir().map_err(|e| fail(format!("a browser profile: {e}")))?;
    let output = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .env("HOME", profile.path())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", browser.display())))?;
    let made = std::fs::metadata(pdf).is_ok_and(|m| m.len() > 0);
    if !output.status.success() || !made {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(fail(format!(
            "{} did not print the PDF ({}){}",
            browser.display(),
            output.status,
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        )));
    }
    Ok(())
}
