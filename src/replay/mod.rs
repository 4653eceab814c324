//! Offline replay.
