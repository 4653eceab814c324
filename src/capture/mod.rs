//! Capture sources: where frames come from.
//!
//! [`CaptureFile`] reads classic pcap (micro- and nanosecond, either byte
//! order) and pcapng (every interface with its own link type and timestamp
//! resolution), deciding by the magic number, never by the file name. Files are
//! memory-mapped and every [`Frame`] borrows from the mapping: no packet is
//! copied.

mod file;
pub mod live;

pub use file::{CaptureFile, CaptureFormat, FrameReader, Truncation};

use std::path::PathBuf;

use crate::wire::LinkType;

/// One captured frame, borrowed from its capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the frame on the wire; `data` is shorter when the capture's
    /// snap length cut it.
    pub orig_len: u32,
    /// Link-layer type of `data`.
    pub link: LinkType,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
    /// The outermost VLAN ID when the capture took the tag out of the
    /// frame and handed it over separately (live capture on Linux: veth
    /// pairs and most NICs strip tags on receive); `None` for files, whose
    /// frames keep their tags.
    pub vlan: Option<u16>,
}

/// A frame's source and destination MAC addresses.
pub type MacPair = ([u8; 6], [u8; 6]);

impl Frame<'_> {
    /// Source and destination MAC addresses, when the frame is Ethernet.
    pub fn macs(&self) -> Option<MacPair> {
        if self.link != LinkType::ETHERNET {
            return None;
        }
        let destination: [u8; 6] = self.data.get(0..6)?.try_into().ok()?;
        let source: [u8; 6] = self.data.get(6..12)?.try_into().ok()?;
        Some((source, destination))
    }

    /// Decodes the frame into `out` (see [`crate::wire::decode`]), opening
    /// no tunnel but ERSPAN, and putting back a VLAN tag the capture handed
    /// over out of band.
    #[inline(always)]
    pub fn decode(&self, out: &mut crate::wire::Headers) -> crate::wire::Outcome {
        let outcome = crate::wire::decode(self.link, self.data, out);
        self.restore_vlan(out);
        outcome
    }

    /// Decodes the frame into `out` (see [`crate::wire::decode_with`]),
    /// opening the tunnels `decap` names, and putting back a VLAN tag the
    /// capture handed over out of band.
    #[inline(always)]
    pub fn decode_with(
        &self,
        decap: &crate::wire::Decapsulation,
        out: &mut crate::wire::Headers,
    ) -> crate::wire::Outcome {
        let outcome = crate::wire::decode_with(self.link, self.data, decap, out);
        self.restore_vlan(out);
        outcome
    }

    /// Decodes the frame into `out` (see [`crate::wire::decode_split`]),
    /// opening the tunnels `decap` names, telling which path decoded it, and
    /// putting back a VLAN tag the capture handed over out of band.
    #[inline(always)]
    pub fn decode_split(
        &self,
        decap: &crate::wire::Decapsulation,
        out: &mut crate::wire::Headers,
    ) -> crate::wire::Split {
        let split = crate::wire::decode_split(self.link, self.data, decap, out);
        if let Some(vlan) = self.vlan {
            // On the common path the packet is the frame's own (and
            // `out.tunnel` is not set: see `Split::Untunnelled`).
            match split {
                crate::wire::Split::Untunnelled(_) => out.vlan = vlan,
                crate::wire::Split::General(_) => self.restore_vlan(out),
            }
        }
        split
    }

    /// Puts back a VLAN tag the capture handed over out of band.
    #[inline(always)]
    fn restore_vlan(&self, out: &mut crate::wire::Headers) {
        if let Some(vlan) = self.vlan
            && !out.tunnel.is_some()
        {
            // The stripped tag was the outermost one, which is the packet's
            // own unless the packet came out of a tunnel.
            out.vlan = vlan;
        }
    }
}

/// A capture that cannot be read. Each variant names the file: the message is
/// shown to the user as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened or mapped.
    #[error("{}: {source}", path.display())]
    Io {
        /// The capture file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file does not start with a pcap or pcapng magic number.
    #[error("{}: not a pcap or pcapng capture ({detail})", path.display())]
    NotACapture {
        /// The capture file.
        path: PathBuf,
        /// What was found instead, e.g. "empty file" or "starts with 0x7b0a2022".
        detail: String,
    },
    /// The file shrank while it was read: another program truncated or
    /// rewrote it. The frames read before are intact; the rest is lost.
    #[error("{}: the file shrank while it was read", path.display())]
    Shrank {
        /// The capture file.
        path: PathBuf,
    },
    /// A header or record is inconsistent in a way that is not a simple cut at
    /// the end of the file.
    #[error("{}: corrupt capture at byte {offset}: {detail}", path.display())]
    Corrupt {
        /// The capture file.
        path: PathBuf,
        /// Byte offset of the bad header or record.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
}
