//! The exceptions file as TOML gives it, before any check: what both
//! readers (the quick one and the `toml` crate's) produce.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::value::Datetime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile<'a> {
    #[serde(default, borrow)]
    pub(super) exceptions: Vec<Spanned<RawException<'a>>>,
}

pub(super) type Str<'a> = Spanned<Text<'a>>;

/// A string of the exceptions file: borrowed from the file's text when it
/// is written without escapes (the quick reader's strings always are), so
/// that a thousand exceptions' ids, reasons, zones and services cost no
/// allocation apiece; owned when an escape made it differ.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    /// Borrows `text`.
    pub(super) fn borrowed(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

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
