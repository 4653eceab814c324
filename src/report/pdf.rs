//! The PDF: the report's HTML printed by a headless Chromium (Debian's
//! `chromium` package). Chromium stamps the PDF's Info dictionary with the
//! time it printed (`/CreationDate`, `/ModDate`) and nothing else that
//! varies between runs; those dates are rewritten to the report's
//! `generated_at`, digit for digit so that no byte offset (the xref table)
//! moves, which makes the PDF byte-identical for the same inputs too.

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

/// Prints `html` (a file) to `pdf` through a headless Chromium, dated
/// `generated_at` (ns since the epoch) rather than the clock.
pub fn print_pdf(html: &Path, pdf: &Path, generated_at: u64) -> Result<(), ReportError> {
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
        // Chromium writes its dates in local time: in UTC they carry the
        // same offset however the machine is set.
        .env("TZ", "UTC")
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
    let mut bytes = std::fs::read(pdf).map_err(|e| fail(e.to_string()))?;
    if set_dates(&mut bytes, generated_at) == 0 {
        return Err(fail(format!(
            "{} printed a PDF without the creation date segwatch sets (an unknown Chromium)",
            browser.display()
        )));
    }
    std::fs::write(pdf, bytes).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// The dates of a PDF's Info dictionary that Chromium (Skia) writes.
const DATE_KEYS: [&[u8]; 2] = [b"/CreationDate (D:", b"/ModDate (D:"];

/// Rewrites every `/CreationDate (D:YYYYMMDDHHmmSS+HH'mm')` and `/ModDate`
/// of `pdf` to `ts_ns` in UTC, in place and at the same length (a value of
/// any other shape is left alone); returns how many it rewrote.
pub fn set_dates(pdf: &mut [u8], ts_ns: u64) -> usize {
    // `2026-12-07T12:00:00Z` → `20261207120000+00'00'`.
    let text = super::model::time_text(ts_ns);
    let mut date: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
    date.extend_from_slice(b"+00'00'");
    let mut rewritten = 0;
    for key in DATE_KEYS {
        let mut from = 0;
        while let Some(at) = crate::app::bytes::find(&pdf[from..], key) {
            let value = from + at + key.len();
            from = value;
            let Some(old) = pdf.get(value..value + date.len()) else {
                break;
            };
            if is_pdf_date(old) {
                pdf[value..value + date.len()].copy_from_slice(&date);
                rewritten += 1;
            }
        }
    }
    rewritten
}

/// `YYYYMMDDHHmmSS` then `+HH'mm'`, `-HH'mm'` (or `Z00'00'`).
fn is_pdf_date(value: &[u8]) -> bool {
    value.len() == 21
        && value[..14].iter().all(u8::is_ascii_digit)
        && matches!(value[14], b'+' | b'-' | b'Z')
        && value[15..17].iter().all(u8::is_ascii_digit)
        && value[17] == b'\''
        && value[18..20].iter().all(u8::is_ascii_digit)
        && value[20] == b'\''
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rewritten_in_place_and_other_shapes_left_alone() {
        let pdf =
            b"1 0 obj\n<</Producer (Skia/PDF m156)\n/CreationDate (D:20261207202452+01'00')\n\
                    /ModDate (D:20261207202453-05'30')>>\nendobj\n/ModDate (D:2026)\n";
        let mut bytes = pdf.to_vec();
        // 2026-12-07T12:00:00Z.
        let n = set_dates(&mut bytes, 1_796_644_800_000_000_000);
        assert_eq!(n, 2);
        assert_eq!(bytes.len(), pdf.len());
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("/CreationDate (D:20261207120000+00'00')"),
            "{text}"
        );
        assert!(
            text.contains("/ModDate (D:20261207120000+00'00')>>"),
            "{text}"
        );
        assert!(text.contains("/ModDate (D:2026)"), "{text}");
    }
}
