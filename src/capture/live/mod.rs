//! Live capture from network interfaces: AF_PACKET with a TPACKET_V3 ring
//! (built in) and libpcap (the `pcap` feature).
//!
//! A [`LiveCapture`] hands its worker the frames that arrived, a batch at a
//! time, borrowed from the capture's own buffers, and waits a bounded time
//! when nothing arrives, so that the worker can look at its stop flag and
//! move flow time on. Errors name the interface and, when permission is
//! missing, the capability.

pub mod afpacket;
#[cfg(feature = "pcap")]
pub mod libpcap;

use std::time::Duration;

use crate::capture::Frame;

pub use afpacket::{AfPacket, BpfInstruction, Fanout};

/// How to open an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// The interface.
    pub interface: String,
    /// Bytes kept of each frame; the headers are judged from what is kept.
    pub snaplen: u32,
    /// Kernel buffer for the interface, bytes: split evenly among its
    /// AF_PACKET workers' rings (each at least 4 MiB); libpcap's one buffer.
    pub buffer_bytes: usize,
    /// Promiscuous mode (a SPAN port delivers frames for other hosts).
    pub promiscuous: bool,
    /// A BPF filter expression (tcpdump syntax).
    pub bpf: Option<String>,
}

/// Kernel counters of a capture since the last look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames the kernel received for the capture (drops included).
    pub received: u64,
    /// Frames it dropped because the capture was too slow.
    pub dropped: u64,
}

/// A capture that cannot be opened or read: one line naming the interface.
#[derive(Debug, thiserror::Error)]
#[error("capture on {interface}: {message}")]
pub struct LiveError {
    /// The interface.
    pub interface: String,
    /// What went wrong, with the capability hint when permission is missing.
    pub message: String,
}

impl LiveError {
    /// An error from the operating system while doing `what`. Permission
    /// errors name the capability: CAP_NET_RAW is all capture needs
    /// (promiscuous mode through PACKET_ADD_MEMBERSHIP and fanout need no
    /// CAP_NET_ADMIN).
    pub fn new(interface: &str, what: &str, error: std::io::Error) -> LiveError {
        let hint = match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => " (needs root or CAP_NET_RAW)",
            _ => "",
        };
        // The OS's words without Rust's " (os error N)", so that the hint is
        // the line's only parenthesis.
        let text = error.to_string();
        let words = match text.rfind(" (os error ") {
            Some(at) if error.raw_os_error().is_some() => &text[..at],
            _ => &text,
        };
        LiveError {
            interface: interface.to_string(),
            message: format!("{what}: {words}{hint}"),
        }
    }

    /// An error described in words.
    pub fn message(interface: &str, message: impl Into<String>) -> LiveError {
        LiveError {
            interface: interface.to_string(),
            message: message.into(),
        }
    }
}

/// An open capture of one worker.
#[derive(Debug)]
pub enum LiveCapture {
    /// AF_PACKET ring.
    AfPacket(AfPacket),
    /// libpcap.
    #[cfg(feature = "pcap")]
    Pcap(libpcap::PcapCapture),
}

impl LiveCapture {
    /// Hands every frame that has arrived to `each`, waiting at most
    /// `timeout` when none has; returns how many there were.
    pub fn dispatch(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&Frame<'_>),
    ) -> Result<usize, LiveError> {
        match self {
            LiveCapture::AfPacket(ring) => match ring.next_block(timeout)? {
                Some(block) => {
                    let mut count = 0;
                    for frame in block.frames() {
                        each(&frame);
                        count += 1;
                    }
                    Ok(count)
                }
                None => Ok(0),
            },
            #[cfg(feature = "pcap")]
            LiveCapture::Pcap(capture) => capture.dispatch(timeout, each),
        }
    }

    /// The kernel's counters since the last call.
    pub fn take_stats(&mut self) -> LiveStats {
        match self {
            LiveCapture::AfPacket(ring) => ring.take_stats(),
            #[cfg(feature = "pcap")]
            LiveCapture::Pcap(capture) => capture.take_stats(),
        }
    }
}

/// The BPF program for a filter expression and snap length, compiled by
/// libpcap (for the AF_PACKET backend).
///
/// libpcap compiles on a handle opened on the interface itself (briefly,
/// not promiscuous), not on a "dead" one: a live Linux handle knows that
/// the kernel takes VLAN tags out of frames, and compiles `vlan` with the
/// kernel's BPF extensions that read the tag out of band. Compiled on a
/// dead handle, `vlan 120` looked for the tag inside the frame, where it no
/// longer is, and the capture took nothing.
#[cfg(feature = "pcap")]
fn compile_filter(options: &CaptureOptions) -> Result<Option<Vec<BpfInstruction>>, LiveError> {
    let Some(expression) = &options.bpf else {
        return Ok(None);
    };
    let interface = options.interface.as_str();
    afpacket::interface_index(interface)?;
    let handle = pcap::Capture::from_device(interface)
        .and_then(|inactive| {
            inactive
                .snaplen(options.snaplen.min(i32::MAX as u32) as i32)
                .buffer_size(1 << 20)
                .open()
        })
        .map_err(|e| {
            libpcap::pcap_error(
                interface,
                "cannot open libpcap to compile the BPF filter",
                &e,
            )
        })?;
    let program = handle.compile(expression, true).map_err(|e| {
        LiveError::message(
            &options.interface,
            format!("BPF filter {expression:?}: {e}"),
        )
    })?;
    let compiled = program.get_instructions();
    // SAFETY: pcap's BpfInstruction is `repr(transparent)` over libpcap's
    // `struct bpf_insn` {u16 code, u8 jt, u8 jf, u32 k}, the layout of our
    // `repr(C)` BpfInstruction; the slice is read while `program` lives.
    #[allow(unsafe_code)]
    let raw: &[BpfInstruction] = unsafe {
        std::slice::from_raw_parts(compiled.as_ptr().cast::<BpfInstruction>(), compiled.len())
    };
    let instructions = raw
        .iter()
        .map(|i| {
            // Cut accepted packets to the snap length, as tcpdump's -s does.
            let accept = i.code == afpacket::BPF_RET_K && i.k > 0;
            BpfInstruction {
                k: if accept {
                    i.k.min(options.snaplen)
                } else {
                    i.k
                },
                ..*i
            }
        })
        .collect();
    Ok(Some(instructions))
}

#[cfg(not(feature = "pcap"))]
fn compile_filter(options: &CaptureOptions) -> Result<Option<Vec<BpfInstruction>>, LiveError> {
    match &options.bpf {
        None => Ok(None),
        Some(_) => Err(LiveError::message(
            &options.interface,
            "a BPF filter needs the libpcap build (cargo build --features pcap) to compile it",
        )),
    }
}

/// Opens `workers` captures on one interface with `backend` (`af-packet`
/// or `pcap`); AF_PACKET workers share one fanout group.
pub fn open_interface(
    options: &CaptureOptions,
    backend: &str,
    workers: usize,
) -> Result<Vec<LiveCapture>, LiveError> {
    match backend {
        "af-packet" => {
            let filter = compile_filter(options)?;
            let filter = filter.as_deref();
            if workers <= 1 {
                let capture = AfPacket::open(options, Fanout::Alone, filter)?;
                tracing::info!(
                    interface = %options.interface,
                    workers = 1,
                    "AF_PACKET capture open"
                );
                return Ok(vec![LiveCapture::AfPacket(capture)]);
            }
            // The interface's buffer is shared out: each worker's ring takes
            // its share of the traffic.
            let options = &CaptureOptions {
                buffer_bytes: options.buffer_bytes / workers,
                ..options.clone()
            };
            let first = AfPacket::open(options, Fanout::New, filter)?;
            let Some(group) = first.fanout_id() else {
                return Err(LiveError::message(
                    &options.interface,
                    "the kernel assigned no fanout group",
                ));
            };
            let mut captures = vec![LiveCapture::AfPacket(first)];
            for _ in 1..workers {
                captures.push(LiveCapture::AfPacket(AfPacket::open(
                    options,
                    Fanout::Join(group),
                    filter,
                )?));
            }
            tracing::info!(
                interface = %options.interface,
                workers = captures.len(),
                fanout_group = group,
                "AF_PACKET capture open"
            );
            Ok(captures)
        }
        "pcap" => open_pcap(options, workers),
        other => Err(LiveError::message(
            &options.interface,
            format!("unknown backend {other:?} (af-packet or pcap)"),
        )),
    }
}

#[cfg(feature = "pcap")]
fn open_pcap(options: &CaptureOptions, workers: usize) -> Result<Vec<LiveCapture>, LiveError> {
    if workers > 1 {
        return Err(LiveError::message(
            &options.interface,
            "the pcap backend runs one worker per interface (libpcap has no fanout); \
             set capture.workers = 1 or use backend af-packet",
        ));
    }
    Ok(vec![LiveCapture::Pcap(libpcap::PcapCapture::open(
        options,
    )?)])
}

#[cfg(not(feature = "pcap"))]
fn open_pcap(options: &CaptureOptions, _workers: usize) -> Result<Vec<LiveCapture>, LiveError> {
    Err(LiveError::message(
        &options.interface,
        "this segwatch was built without the libpcap backend: rebuild with \
         `cargo build --release --features pcap`, or use backend af-packet",
    ))
}
