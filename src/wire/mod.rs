//! Wire formats: decoding a captured frame into the header fields segwatch
//! judges, with etherparse, without allocating.
//!
//! This module depends on nothing else in segwatch.

mod link;

pub use link::LinkType;
