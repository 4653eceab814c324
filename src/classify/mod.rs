//! Compiled classifier.
