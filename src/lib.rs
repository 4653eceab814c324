//! segwatch watches a hospital network for segmentation violations.
//!
//! The crate is laid out the way a packet travels through it:
//!
//! 1. [`capture`] reads frames: pcap and pcapng files (memory-mapped, zero-copy).
//! 2. [`wire`] decodes a frame into the few header fields the later stages need
//!    (addresses, ports, TCP flags, the outermost VLAN), with etherparse and no
//!    allocation. It depends on nothing else in segwatch.
//! 3. [`flow`] groups packets into flows (both directions, VLAN ignored), decides
//!    who initiated each flow, and expires flows on capture time.
//! 4. [`classify`] judges a flow against the policy, compiled once into immutable
//!    lookup tables (longest-prefix zones, zone-pair port tables).
//! 5. [`event`] turns a violating flow into the contract's JSON violation event.
//! 6. [`replay`] drives the pipeline over capture files, on every core, with
//!    output identical to a single-threaded run.
//!
//! [`app`] recognises application protocols (DICOM, HL7, TLS, HTTP/FHIR,
//! DHCP, device protocols) from a flow's first payload bytes, extracting only
//! named header fields.
//!
//! [`policy`] reads and validates the policy file that [`classify`] compiles;
//! [`synth`] builds deterministic synthetic captures for tests, benchmarks and
//! the bundled sample.
//!
//! The per-packet path (`wire` -> `flow` -> `classify`) takes no lock, makes no
//! system call and does not allocate once its tables have reached their size.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod capture;
pub mod classify;
pub mod config;
pub mod diff;
pub mod event;
pub mod evidence;
pub mod exception;
pub mod flow;
pub mod incident;
pub mod inventory;
pub mod learn;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod sink;
pub mod synth;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;
