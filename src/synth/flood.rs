//! A flood that fills every structure the daemon bounds, at once: the flow
//! table, the device inventory, the inspections' places and bytes, the
//! incident state (open incidents, initiators tracked for sweeps and
//! scans) and, through the events it causes, the sinks' queues. It is the
//! input of the memory sizing (README, "Memory: sizing a sensor").
//!
//! In capture order, within [`SPAN_S`] seconds of capture time (so that no
//! flow, initiator or incident idles out while it is read):
//!
//! 1. `sources` senders outside every hospital zone (10.100.0.0 on, the
//!    example policy's `internet`), each with a MAC address of its own from
//!    a medical vendor's block, sending a DHCP request with a host name,
//!    vendor class and parameter list (a device with every field the
//!    inventory keeps), then one SYN to a host in each of eight zones on
//!    tcp/8080. Every one of those nine flows violates the policy's default
//!    and opens an incident of its own (rule, source, zone), and every
//!    sender is an initiator tracked for sweeps and scans.
//! 2. `sweepers` guest-Wi-Fi hosts, each sweeping `sweep_hosts` hosts on
//!    tcp/445, and `scanners` each scanning `scan_ports` ports of one host:
//!    sweep and scan incidents with their destination sets.
//! 3. In the last half second, `inspections` DICOM association requests
//!    whose first segment carries `inspection_bytes` bytes of a PDU that
//!    declares more: each keeps its bytes while it waits for the rest, which
//!    never comes.
//!
//! No responder ever answers: the destinations are no devices.

use std::net::{IpAddr, Ipv4Addr};

use super::{Pkt, Proto, tcp_flags};

/// Capture time the first two parts span, in seconds.
pub const SPAN_S: u64 = 40;

/// Flows each sender of part 1 starts: one DHCP request and one SYN to
/// each of [`ZONE_HOSTS`].
pub const FLOWS_PER_SOURCE: u64 = 1 + ZONE_HOSTS.len() as u64;

/// One host in each of eight zones of the example hospital policy (pumps,
/// monitors, pacs, modalities, clinical apps, clinical workstations, lab
/// analyzers, biomed); the last byte varies with the sender.
const ZONE_HOSTS: [[u8; 3]; 8] = [
    [10, 20, 0],
    [10, 21, 0],
    [10, 30, 1],
    [10, 40, 0],
    [10, 50, 0],
    [10, 60, 0],
    [10, 70, 0],
    [10, 80, 0],
];

/// Vendor blocks (OUIs) of the senders' MAC addresses: B. Braun, Philips
/// Medical Systems, GE Healthcare, Siemens Healthineers.
const VENDOR_OUIS: [[u8; 3]; 4] = [
    [0x00, 0x12, 0x21],
    [0x00, 0x09, 0xfb],
    [0x00, 0x00, 0x9a],
    [0x00, 0x1b, 0x7c],
];

/// The router the frames come through.
const ROUTER_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];

/// How big a flood to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodOptions {
    /// Senders of part 1 (devices; each starts [`FLOWS_PER_SOURCE`] flows
    /// and opens as many incidents).
    pub sources: u32,
    /// Guest hosts sweeping.
    pub sweepers: u32,
    /// Hosts each one sweeps.
    pub sweep_hosts: u32,
    /// Hosts scanning.
    pub scanners: u32,
    /// Ports each one scans.
    pub scan_ports: u32,
    /// Flows with an unfinished first message.
    pub inspections: u32,
    /// Bytes of each one's first segment.
    pub inspection_bytes: u32,
}

impl Default for FloodOptions {
    /// Past the default bounds of the daemon: 1,000,000 flows and open
    /// incidents, 100,000 devices and initiators, 8,192 inspections and
    /// 16 MiB of their bytes per worker.
    fn default() -> Self {
        FloodOptions {
            sources: 112_000,
            sweepers: 100,
            sweep_hosts: 1_000,
            scanners: 100,
            scan_ports: 1_000,
            inspections: 9_000,
            inspection_bytes: 2_100,
        }
    }
}

impl FloodOptions {
    /// Frames the flood holds.
    pub fn frames(&self) -> u64 {
        u64::from(self.sources) * FLOWS_PER_SOURCE
            + u64::from(self.sweepers) * u64::from(self.sweep_hosts)
            + u64::from(self.scanners) * u64::from(self.scan_ports)
            + u64::from(self.inspections)
    }

    /// Flows the flood starts (one per frame).
    pub fn flows(&self) -> u64 {
        self.frames()
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// The `n`th address from `base` on (a /8's worth at most).
fn nth(base: [u8; 4], n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + n))
}

fn syn(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Pkt {
    Pkt::new(
        src,
        dst,
        src_port,
        dst_port,
        Proto::Tcp {
            flags: tcp_flags::SYN,
        },
    )
}

/// A DHCP request (BOOTP op 1, RFC 2131) from `mac` at `ciaddr`, with a
/// host name, vendor class and parameter request list.
fn dhcp_request(mac: [u8; 6], ciaddr: IpAddr, n: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; 240];
    bytes[0] = 1; // BOOTREQUEST
    bytes[1] = 1; // Ethernet
    bytes[2] = 6;
    bytes[4..8].copy_from_slice(&n.to_be_bytes());
    if let IpAddr::V4(addr) = ciaddr {
        bytes[12..16].copy_from_slice(&addr.octets());
    }
    bytes[28..34].copy_from_slice(&mac);
    bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
    bytes.extend_from_slice(&[53, 1, 3]); // DHCPREQUEST
    let hostname = format!("flood-device-{n:06}");
    bytes.extend_from_slice(&[12, hostname.len() as u8]);
    bytes.extend_from_slice(hostname.as_bytes());
    let vendor = b"infusion-pump-fw-4.2";
    bytes.extend_from_slice(&[60, vendor.len() as u8]);
    bytes.extend_from_slice(vendor);
    let parameters = [1u8, 3, 6, 15, 28, 42, 43, 51, 54, 58, 59, 119, 121];
    bytes.extend_from_slice(&[55, parameters.len() as u8]);
    bytes.extend_from_slice(&parameters);
    bytes.push(255);
    bytes
}

/// The first `len` bytes (at least the 78 of its fixed part and first item's
/// header) of a DICOM A-ASSOCIATE-RQ that declares 60,000 bytes.
fn unfinished_association(len: usize) -> Vec<u8> {
    let mut pdu = vec![0x01, 0x00];
    pdu.extend_from_slice(&60_000u32.to_be_bytes());
    pdu.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // version 1, reserved
    pdu.extend_from_slice(b"PACS            "); // called AE
    pdu.extend_from_slice(b"MODALITY        "); // calling AE
    pdu.extend_from_slice(&[0; 32]);
    pdu.extend_from_slice(&[0x10, 0x00, 0x00, 0x15]); // application context item
    pdu.extend_from_slice(b"1.2.840.10008.3.1.1.1");
    pdu.resize(len.max(pdu.len()), 0);
    pdu
}

/// The flood's frames, with their capture times from `start_ns` on, in
/// capture order.
pub fn flood(options: FloodOptions, start_ns: u64) -> impl Iterator<Item = (u64, Vec<u8>)> {
    let o = options;
    let spread = o.frames() - u64::from(o.inspections);
    let gap_ns = (SPAN_S * 1_000_000_000) / spread.max(1);
    let devices = (0..o.sources).flat_map(|s| {
        let src = nth([10, 100, 0, 0], s);
        let oui = VENDOR_OUIS[s as usize % VENDOR_OUIS.len()];
        let [_, a, b, c] = s.to_be_bytes();
        let mac = [oui[0], oui[1], oui[2], a, b, c];
        let dhcp = Pkt::new(src, v4([10, 1, 0, 2]), 68, 67, Proto::Udp)
            .payload(&dhcp_request(mac, src, s))
            .macs(mac, ROUTER_MAC)
            .build();
        let host = (s % 250 + 1) as u8;
        let syns = ZONE_HOSTS.iter().enumerate().map(move |(k, zone)| {
            let dst = v4([zone[0], zone[1], zone[2], host]);
            syn(src, 40_000 + k as u16, dst, 8080)
                .macs(mac, ROUTER_MAC)
                .build()
        });
        std::iter::once(dhcp).chain(syns)
    });
    let sweeps = (0..o.sweepers).flat_map(move |w| {
        let src = nth([172, 16, 1, 1], w);
        (0..o.sweep_hosts).map(move |h| syn(src, 50_000, nth([10, 60, 1, 1], h), 445).build())
    });
    let scans = (0..o.scanners).flat_map(move |w| {
        let src = nth([172, 16, 100, 1], w);
        let dst = nth([10, 50, 1, 1], w);
        (0..o.scan_ports).map(move |p| syn(src, 50_001, dst, (p % 65_535 + 1) as u16).build())
    });
    let spread_frames = devices
        .chain(sweeps)
        .chain(scans)
        .enumerate()
        .map(move |(i, frame)| (start_ns + i as u64 * gap_ns, frame));
    // The inspections come last, within half a second, while everything else
    // is held.
    let last_start = start_ns + spread * gap_ns;
    let payload = unfinished_association(o.inspection_bytes as usize);
    let inspections = (0..o.inspections).map(move |k| {
        let src = nth([10, 40, 0, 1], k % 250);
        let frame = Pkt::new(
            src,
            v4([10, 30, 1, 10]),
            20_000 + (k / 250) as u16,
            104,
            Proto::Tcp {
                flags: tcp_flags::ACK,
            },
        )
        .payload(&payload)
        .build();
        let ts = last_start + u64::from(k) * 500_000_000 / u64::from(o.inspections.max(1));
        (ts, frame)
    });
    spread_frames.chain(inspections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_has_the_frames_it_says_in_capture_order() {
        let options = FloodOptions {
            sources: 30,
            sweepers: 2,
            sweep_hosts: 40,
            scanners: 2,
            scan_ports: 40,
            inspections: 20,
            inspection_bytes: 1_000,
        };
        let frames: Vec<_> = flood(options, 0).collect();
        assert_eq!(frames.len() as u64, options.frames());
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0));
        let last = frames.last().unwrap();
        assert!(
            last.1.len() > 1_000,
            "the inspections' segments carry their bytes"
        );
        assert!(last.0 < (SPAN_S + 1) * 1_000_000_000);
    }
}
