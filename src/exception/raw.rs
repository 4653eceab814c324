//! The exceptions file as TOML gives it, before any check: what both
//! readers (the quick one and the `toml` crate's) produce.

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) exceptions: Vec<Spanned<RawException>>,
}

pub(super) type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawException {
    pub(super) id: Str,
    pub(super) reason: Str,
    pub(super) owner: Str,
    pub(super) ticket: Option<Str>,
    pub(super) created: Option<Spanned<Datetime>>,
    pub(super) expires: Spanned<Datetime>,
    pub(super) rule: Option<Str>,
    pub(super) from: Option<Spanned<Vec<Str>>>,
    pub(super) to: Option<Spanned<Vec<Str>>>,
    pub(super) services: Option<Spanned<Vec<Str>>>,
}
