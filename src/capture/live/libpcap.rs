//! The libpcap backend (the `pcap` feature): promiscuous mode, snap length,
//! kernel buffer size, BPF filter, immediate mode and the kernel's counters.
//!
//! libpcap's blocking read never returns on an idle Linux interface, even
//! with a timeout (toolchain.md), so the capture is non-blocking and waits
//! with its own `poll` on the selectable descriptor, bounded, so a worker
//! always gets back to its stop flag.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::capture::Frame;
use crate::wire::LinkType;

use super::{CaptureOptions, LiveError, LiveStats};

/// Packets read before the worker ends a batch.
const BATCH: usize = 1024;

/// One libpcap capture.
pub struct PcapCapture {
    interface: String,
    capture: pcap::Capture<pcap::Active>,
    link: LinkType,
    /// libpcap's counters are totals: the last ones seen, to give deltas.
    last: (u64, u64),
}

impl std::fmt::Debug for PcapCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapCapture")
            .field("interface", &self.interface)
            .finish()
    }
}

/// A libpcap error while doing `what`, as one line naming the interface
/// (with the capability when permission is missing).
pub(super) fn pcap_error(interface: &str, what: &str, error: &pcap::Error) -> LiveError {
    let text = error.to_string();
    let hint = if text.contains("Operation not permitted") || text.contains("ermission") {
        " (needs root or CAP_NET_RAW)"
    } else {
        ""
    };
    LiveError::message(interface, format!("{what}: {text}{hint}"))
}

impl PcapCapture {
    /// Opens the interface with libpcap.
    pub fn open(options: &CaptureOptions) -> Result<PcapCapture, LiveError> {
        let interface = options.interface.as_str();
        super::afpacket::interface_index(interface)?;
        let inactive = pcap::Capture::from_device(interface)
            .map_err(|e| pcap_error(interface, "cannot use the interface", &e))?;
        let mut capture = inactive
            .promisc(options.promiscuous)
            .snaplen(options.snaplen.min(i32::MAX as u32) as i32)
            .buffer_size(options.buffer_bytes.min(i32::MAX as usize) as i32)
            .immediate_mode(true)
            .open()
            .map_err(|e| pcap_error(interface, "cannot open a libpcap capture", &e))?;
        if let Some(expression) = &options.bpf {
            capture
                .filter(expression, true)
                .map_err(|e| pcap_error(interface, &format!("BPF filter {expression:?}"), &e))?;
        }
        let capture = capture
            .setnonblock()
            .map_err(|e| pcap_error(interface, "cannot make the capture non-blocking", &e))?;
        let link = LinkType(capture.get_datalink().0 as u32);
        Ok(PcapCapture {
            interface: interface.to_string(),
            capture,
            link,
            last: (0, 0),
        })
    }

    /// Hands the frames that have arrived (at most a batch) to `each`,
    /// waiting at most `timeout` when none has.
    pub fn dispatch(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&Frame<'_>),
    ) -> Result<usize, LiveError> {
        let mut count = 0;
        let mut waited = false;
        while count < BATCH {
            match self.capture.next_packet() {
                Ok(packet) => {
                    let ts = packet.header.ts;
                    let frame = Frame {
                        ts_ns: (ts.tv_sec as u64) * 1_000_000_000 + (ts.tv_usec as u64) * 1_000,
                        orig_len: packet.header.len,
                        link: self.link,
                        data: packet.data,
                        // libpcap puts a stripped tag back into the frame.
                        vlan: None,
                    };
                    each(&frame);
                    count += 1;
                }
                Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => {
                    if count > 0 || waited {
                        break;
                    }
                    waited = true;
                    let mut poll = libc::pollfd {
                        fd: self.capture.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
                    // SAFETY: one valid pollfd.
                    #[allow(unsafe_code)]
                    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
                    if ready <= 0 {
                        break;
                    }
                }
                Err(error) => {
                    return Err(pcap_error(&self.interface, "read failed", &error));
                }
            }
        }
        Ok(count)
    }

    /// The kernel's counters since the last call.
    pub fn take_stats(&mut self) -> LiveStats {
        let Ok(stats) = self.capture.stats() else {
            return LiveStats::default();
        };
        let received = u64::from(stats.received);
        let dropped = u64::from(stats.dropped) + u64::from(stats.if_dropped);
        let delta = LiveStats {
            received: received.saturating_sub(self.last.0),
            dropped: dropped.saturating_sub(self.last.1),
        };
        self.last = (received, dropped);
        delta
    }
}
