//! The exceptions file as TOML gives it, before any check: what both
//! readers (the quick one and the `toml` crate's) produce.

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile<'a> {
    #[serde(default, borrow)]
    pub(super) exceptions: Vec<Spanned<RawException<'a>>>,
}

pub(super) use crate::policy::Text;

pub(super) type Str<'a> = Spanned<Text<'a>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawException<'a> {
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(borrow)]
    pub(super) reason: Str<'a>,
    #[serde(borrow)]
    pub(super) owner: Str<'a>,
    #[serde(borrow)]
    pub(super) ticket: Option<Str<'a>>,
    pub(super) created: Option<Spanned<Datetime>>,
    pub(super) expires: Spanned<Datetime>,
    #[serde(borrow)]
    pub(super) rule: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) from: Option<Spanned<Vec<Str<'a>>>>,
    #[serde(borrow)]
    pub(super) to: Option<Spanned<Vec<Str<'a>>>>,
    #[serde(borrow)]
    pub(super) services: Option<Spanned<Vec<Str<'a>>>>,
}
