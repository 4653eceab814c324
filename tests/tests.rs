//! Integration tests: one binary, one module per area.

// A failed unwrap in a test is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod api;
mod app;
mod app_events;
mod capture_input;
mod cli;
mod contract;
mod daemon;
mod decode_fixtures;
mod deploy;
mod detection_reload;
mod golden;
mod hardening;
mod incidents;
mod inspection_pressure;
mod inventory;
mod layering;
mod outputs;

mod learn;
mod live;
mod memory_flood;
mod policy_apps;
mod properties;
mod report;
mod report_browser;
mod report_state;
mod shared_pcaps;
mod syslog;
mod tunnels;
