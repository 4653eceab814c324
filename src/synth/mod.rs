//! Synthetic captures.
