//! Violation events.
