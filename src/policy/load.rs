//! Reading and validating a policy file. (placeholder: being written)

use std::path::Path;

use super::{Diagnostic, Policy, PolicyError};

/// Reads, parses and validates the policy file at `path`. On success, returns
/// the policy and its warnings.
pub fn load_policy_file(path: &Path) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    load_policy_str(&text, path)
}

/// Parses and validates policy text; `path` is used in diagnostics only.
pub fn load_policy_str(
    _text: &str,
    _path: &Path,
) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    Err(PolicyError {
        diagnostics: vec![],
    })
}
