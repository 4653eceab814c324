//! The layering of `ARCHITECTURE.md`, held against the code: a module
//! imports only modules of lower layers, and `unsafe` appears only in
//! `sys/` and `capture/`, each block with a `SAFETY:` comment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::root;

/// The layer of each top module, read from the table in ARCHITECTURE.md.
fn layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = text
        .split("## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a Layers section");
    let mut layers = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue; // the header row
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(!module.is_empty(), "an empty module in {line:?}");
            layers.insert(module.to_string(), layer);
        }
    }
    assert!(layers.len() > 10, "the table names the modules: {layers:?}");
    layers
}

/// Every Rust file under `src/`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top module a file belongs to: `flow` for `src/flow/table.rs`, `main`
/// for `src/main.rs`, `lib` for the crate root.
fn top_module(path: &Path) -> String {
    let relative = path.strip_prefix(root().join("src")).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_string()
}

/// The code of a file without its unit tests (they come last, after
/// `#[cfg(test)]`) and without comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top modules a file's code names through `crate::` (or, in the
/// binary, `segwatch::`).
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["crate::", "segwatch::"] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            if rest.starts_with('{') {
                // `use crate::{a::X, b::{Y, Z}}`: the names at the first level.
                let mut depth = 0;
                let mut item = String::new();
                for c in rest.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => item.clear(),
                        c if depth == 1 && (c.is_ascii_alphanumeric() || c == '_') => {
                            item.push(c);
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 1 && !item.is_empty() {
                        found.push(std::mem::take(&mut item));
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        }
    }
    found
}

/// The files of test modules declared in files of their own
/// (`#[cfg(test)] mod tests;`): like tests at the end of a file, they may
/// import anything.
fn test_module_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let [attribute, declaration] = pair else {
                continue;
            };
            let Some(name) = declaration
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            if *attribute != "#[cfg(test)]" {
                continue;
            }
            // `a/mod.rs` and `lib.rs` declare `a/name.rs`; `a/b.rs` declares `a/b/name.rs`.
            let stem = file.file_stem().unwrap();
            let dir = if stem == "mod" || stem == "lib" || stem == "main" {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            found.push(dir.join(format!("{name}.rs")));
            found.push(dir.join(name).join("mod.rs"));
        }
    }
    found
}

#[test]
fn modules_import_only_lower_layers() {
    let layers = layers();
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    files.sort();
    let tests = test_module_files(&files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = top_module(file);
        if module == "lib" || tests.contains(file) {
            continue;
        }
        let Some(&layer) = layers.get(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer in ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for import in imports(&code) {
            if import == module || !layers.contains_key(&import) {
                continue; // its own parts, or not a module (a macro, `self`)
            }
            let theirs = layers[&import];
            if theirs >= layer {
                wrong.push(format!(
                    "{}: `{module}` (layer {layer}) imports `{import}` (layer {theirs})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn unsafe_lives_only_in_sys_and_capture_and_says_why() {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = top_module(file);
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = match line.find("//") {
                Some(at) => &line[..at],
                None => line,
            };
            let is_unsafe = code.contains("unsafe {")
                || code.contains("unsafe impl")
                || code.contains("unsafe fn")
                || code.trim_end().ends_with("unsafe");
            if !is_unsafe || code.contains("unsafe_code") {
                continue;
            }
            let place = format!("{}:{}", file.display(), n + 1);
            if module != "sys" && module != "capture" {
                wrong.push(format!("{place}: `unsafe` outside sys/ and capture/"));
                continue;
            }
            // The SAFETY comment sits in the comment lines just above the
            // block (or the statement holding it).
            let has_reason = lines[..n]
                .iter()
                .rev()
                .take(12)
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[") || !l.ends_with(';')
                })
                .any(|l| l.contains("SAFETY:"));
            if !has_reason {
                wrong.push(format!(
                    "{place}: `unsafe` without a SAFETY: comment above it"
                ));
            }
        }
        if module != "sys" && module != "capture" && module != "lib" {
            let is_module_root = file.ends_with(format!("{module}/mod.rs"))
                || file.ends_with(format!("{module}.rs"));
            if is_module_root && !text.contains("#![forbid(unsafe_code)]") {
                wrong.push(format!(
                    "{}: module `{module}` does not forbid unsafe code at its top",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
