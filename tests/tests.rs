//! Integration tests: one binary, one module per area.

mod common;

mod cli;
mod contract;
mod properties;
mod shared_pcaps;
