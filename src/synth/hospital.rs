//! Realistic synthetic hospital traffic, shaped for `policies/example-hospital.toml`.
//!
//! Many short, interleaved flows of small packets between the hospital's
//! zones: pumps talking to their server, monitors streaming to the central
//! station, modalities storing to PACS, workstations, DNS, HL7 from the lab,
//! guests browsing; and a small share of violations (a pump reaching the
//! internet, a guest probing clinical systems, vendor remote sessions,
//! workstations opening SSH to monitors, pumps talking to each other). Some
//! zones sit on their own VLAN; a little ARP and ping traffic is mixed in.
//!
//! Deterministic: the same options give the same frames. Payloads are filler
//! bytes, never anything resembling clinical content.

use std::net::Ipv4Addr;

use super::{Pkt, tcp_flags};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HospitalOptions {
    /// Frames to generate.
    pub packets: u64,
    /// Flows open at any one time (how interleaved the capture is).
    pub concurrent_flows: usize,
    /// Share of new flows that violate the policy (0.0 to 1.0).
    pub violation_share: f64,
    /// Seed of the generator.
    pub seed: u64,
    /// Capture time of the first frame, nanoseconds since the epoch.
    pub start_ns: u64,
    /// Average capture-time gap between frames, nanoseconds.
    pub gap_ns: u64,
}

/// The bundled sample capture (`tests/fixtures/hospital-sample.pcap`): a few
/// hundred frames with a higher share of violations, so that a first replay
/// shows several kinds of them.
pub const SAMPLE: HospitalOptions = HospitalOptions {
    packets: 400,
    concurrent_flows: 12,
    violation_share: 0.2,
    seed: 7,
    start_ns: super::FIXTURE_EPOCH_NS,
    gap_ns: 5_000_000,
};

impl Default for HospitalOptions {
    fn default() -> Self {
        HospitalOptions {
            packets: 10_000,
            concurrent_flows: 2_000,
            violation_share: 0.02,
            seed: 1,
            start_ns: super::FIXTURE_EPOCH_NS,
            gap_ns: 20_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Handshake, a request and a response, teardown.
    TcpSession,
    /// A SYN that nobody answers (a scan, a blocked connection).
    TcpProbe,
    /// A request and a response.
    UdpExchange,
    /// A one-way stream of `n` datagrams.
    UdpStream(u8),
    /// Echo request and reply.
    Ping,
}

/// One kind of conversation: who talks to whom, on what.
#[derive(Clone, Copy, Debug)]
struct Kind {
    client: (&'static str, u32, u32, u16), // (base network, first host, hosts, vlan)
    server: (&'static str, u32, u32, u16),
    port: u16,
    shape: Shape,
    weight: u32,
}

const fn k(
    client: (&'static str, u32, u32, u16),
    server: (&'static str, u32, u32, u16),
    port: u16,
    shape: Shape,
    weight: u32,
) -> Kind {
    Kind {
        client,
        server,
        port,
        shape,
        weight,
    }
}

// Address pools: (network, first host offset, number of hosts, VLAN).
const PUMPS: (&str, u32, u32, u16) = ("10.20.0.0", 10, 900, 120);
const PUMP_SERVER: (&str, u32, u32, u16) = ("10.20.8.10", 0, 1, 0);
const MONITORS: (&str, u32, u32, u16) = ("10.21.0.0", 10, 900, 121);
const CENTRAL: (&str, u32, u32, u16) = ("10.21.8.0", 1, 12, 121);
const MODALITIES: (&str, u32, u32, u16) = ("10.40.0.0", 10, 40, 140);
const PACS: (&str, u32, u32, u16) = ("10.30.1.0", 10, 4, 130);
const LAB: (&str, u32, u32, u16) = ("10.70.0.0", 10, 30, 170);
const CLINICAL_APPS: (&str, u32, u32, u16) = ("10.50.0.0", 10, 40, 150);
const WORKSTATIONS: (&str, u32, u32, u16) = ("10.60.0.0", 10, 4000, 160);
const BIOMED: (&str, u32, u32, u16) = ("10.80.0.0", 10, 8, 180);
const VENDOR: (&str, u32, u32, u16) = ("10.90.0.0", 1, 8, 190);
const CORE: (&str, u32, u32, u16) = ("10.1.0.0", 2, 4, 0);
const GUESTS: (&str, u32, u32, u16) = ("172.16.0.0", 10, 6000, 200);
const INTERNET: (&str, u32, u32, u16) = ("93.184.0.0", 1, 60_000, 0);

const ALLOWED: [Kind; 12] = [
    k(PUMPS, PUMP_SERVER, 443, Shape::TcpSession, 14),
    k(MONITORS, CENTRAL, 24105, Shape::UdpStream(6), 12),
    k(MODALITIES, PACS, 104, Shape::TcpSession, 6),
    k(WORKSTATIONS, CLINICAL_APPS, 443, Shape::TcpSession, 20),
    k(WORKSTATIONS, PACS, 11112, Shape::TcpSession, 4),
    k(WORKSTATIONS, CORE, 53, Shape::UdpExchange, 16),
    k(PUMPS, CORE, 123, Shape::UdpExchange, 4),
    k(LAB, CLINICAL_APPS, 2575, Shape::TcpSession, 5),
    k(GUESTS, INTERNET, 443, Shape::TcpSession, 10),
    k(WORKSTATIONS, INTERNET, 443, Shape::TcpSession, 6),
    k(BIOMED, MONITORS, 0, Shape::Ping, 2),
    k(CLINICAL_APPS, PACS, 2575, Shape::TcpSession, 3),
];

const VIOLATIONS: [Kind; 6] = [
    k(PUMPS, INTERNET, 443, Shape::TcpSession, 3),
    k(GUESTS, CLINICAL_APPS, 443, Shape::TcpProbe, 3),
    k(VENDOR, MODALITIES, 3389, Shape::TcpSession, 2),
    k(WORKSTATIONS, MONITORS, 22, Shape::TcpSession, 2),
    k(PUMPS, PUMPS, 8080, Shape::TcpSession, 1),
    k(LAB, INTERNET, 53, Shape::UdpExchange, 1),
];

/// A flow being generated: its endpoints and the frames still to send.
#[derive(Clone, Debug)]
struct Active {
    client: (String, u16),
    server: (String, u16),
    vlans: (u16, u16),
    shape: Shape,
    step: u8,
    payload_len: (usize, usize),
    /// Initial sequence numbers of the client and the server (TCP).
    isn: (u32, u32),
}

impl Active {
    fn steps(&self) -> u8 {
        match self.shape {
            Shape::TcpSession => 8,
            Shape::TcpProbe => 1,
            Shape::UdpExchange | Shape::Ping => 2,
            Shape::UdpStream(n) => n,
        }
    }

    fn frame(&self, filler: &[u8]) -> Vec<u8> {
        let c = sock(&self.client);
        let s = sock(&self.server);
        let (req, resp) = (&filler[..self.payload_len.0], &filler[..self.payload_len.1]);
        use tcp_flags::{ACK, FIN, SYN};
        const PSH_ACK: u8 = 0x08 | ACK;
        // Sequence and acknowledgement numbers as on a wire: the SYNs and
        // FINs take one number each, the payloads their length.
        let (ic, is) = self.isn;
        let (a, b) = (req.len() as u32, resp.len() as u32);
        let client = |flags, seq: u32, ack: u32| {
            Pkt::tcp(&c, &s, flags)
                .seq(ic.wrapping_add(seq))
                .ack(is.wrapping_add(ack))
        };
        let server = |flags, seq: u32, ack: u32| {
            Pkt::tcp(&s, &c, flags)
                .seq(is.wrapping_add(seq))
                .ack(ic.wrapping_add(ack))
        };
        let (pkt, from_client) = match (self.shape, self.step) {
            (Shape::TcpSession | Shape::TcpProbe, 0) => (client(SYN, 0, 0), true),
            (Shape::TcpSession, 1) => (server(SYN | ACK, 0, 1), false),
            (Shape::TcpSession, 2) => (client(ACK, 1, 1), true),
            (Shape::TcpSession, 3) => (client(PSH_ACK, 1, 1).payload(req), true),
            (Shape::TcpSession, 4) => (server(PSH_ACK, 1, 1 + a).payload(resp), false),
            (Shape::TcpSession, 5) => (client(FIN | ACK, 1 + a, 1 + b), true),
            (Shape::TcpSession, 6) => (server(FIN | ACK, 1 + b, 2 + a), false),
            (Shape::TcpSession, _) => (client(ACK, 2 + a, 2 + b), true),
            (Shape::UdpExchange, 0) | (Shape::UdpStream(_), _) => {
                (Pkt::udp(&c, &s).payload(req), true)
            }
            (Shape::UdpExchange, _) => (Pkt::udp(&s, &c).payload(resp), false),
            (Shape::Ping, 0) => (Pkt::echo_request(&self.client.0, &self.server.0, 7), true),
            (Shape::Ping, _) => (Pkt::echo_reply(&self.server.0, &self.client.0, 7), false),
            (Shape::TcpProbe, _) => (client(SYN, 0, 0), true),
        };
        let vlan = if from_client {
            self.vlans.0
        } else {
            self.vlans.1
        };
        let pkt = if vlan != 0 { pkt.vlans(&[vlan]) } else { pkt };
        pkt.build()
    }
}

fn sock((ip, port): &(String, u16)) -> String {
    format!("{ip}:{port}")
}

/// The generator: an iterator of `(timestamp_ns, frame)` in time order.
#[derive(Debug)]
pub struct HospitalTraffic {
    options: HospitalOptions,
    rng: fastrand::Rng,
    clock_ns: u64,
    emitted: u64,
    active: Vec<Active>,
    next_client_port: u16,
    filler: Vec<u8>,
}

impl HospitalTraffic {
    /// A generator for `options`.
    pub fn new(options: HospitalOptions) -> Self {
        HospitalTraffic {
            options,
            rng: fastrand::Rng::with_seed(options.seed),
            clock_ns: options.start_ns,
            emitted: 0,
            active: Vec::new(),
            next_client_port: 32_768,
            // Filler payload: a fixed pattern, never clinical-looking text.
            filler: (0..256u32).map(|i| (i * 7 % 251) as u8).collect(),
        }
    }

    fn pick_kind(&mut self) -> Kind {
        let violating = self.rng.f64() < self.options.violation_share;
        let kinds: &[Kind] = if violating { &VIOLATIONS } else { &ALLOWED };
        let total: u32 = kinds.iter().map(|k| k.weight).sum();
        let mut pick = self.rng.u32(0..total);
        for kind in kinds {
            if pick < kind.weight {
                return *kind;
            }
            pick -= kind.weight;
        }
        kinds[0]
    }

    fn host(&mut self, pool: (&str, u32, u32, u16)) -> String {
        let base: Ipv4Addr = pool.0.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let host = u32::from(base) + pool.1 + self.rng.u32(0..pool.2.max(1));
        Ipv4Addr::from(host).to_string()
    }

    fn start_flow(&mut self) {
        let kind = self.pick_kind();
        let client = self.host(kind.client);
        let mut server = self.host(kind.server);
        if server == client {
            server = self.host(kind.server);
        }
        self.next_client_port = match self.next_client_port {
            u16::MAX => 32_768,
            p => p + 1,
        };
        let payload_len = (self.rng.usize(0..64), self.rng.usize(0..160));
        // From the flow's endpoints rather than the generator's random
        // stream, so that the flows and their addresses stay those of
        // captures generated before sequence numbers advanced.
        let isn = initial_sequence(&client, self.next_client_port, &server);
        self.active.push(Active {
            client: (client, self.next_client_port),
            server: (server, kind.port),
            vlans: (kind.client.3, kind.server.3),
            shape: kind.shape,
            step: 0,
            payload_len,
            isn,
        });
    }
}

impl Iterator for HospitalTraffic {
    type Item = (u64, Vec<u8>);

    fn next(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.emitted >= self.options.packets {
            return None;
        }
        while self.active.len() < self.options.concurrent_flows.max(1) {
            self.start_flow();
        }
        self.emitted += 1;
        self.clock_ns += self.rng.u64(0..=2 * self.options.gap_ns);
        // A little ARP now and then: counted, never judged.
        if self.rng.u32(0..200) == 0 {
            return Some((self.clock_ns, arp_request()));
        }
        let i = self.rng.usize(0..self.active.len());
        let frame = self.active[i].frame(&self.filler);
        self.active[i].step += 1;
        if self.active[i].step >= self.active[i].steps() {
            self.active.swap_remove(i);
        }
        Some((self.clock_ns, frame))
    }
}

/// Initial sequence numbers of a client and a server, mixed from the
/// flow's endpoints (SplitMix64's finalizer).
fn initial_sequence(client: &str, port: u16, server: &str) -> (u32, u32) {
    let addr = |a: &str| u64::from(u32::from(a.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)));
    let mut z = addr(client) << 32 ^ addr(server) ^ u64::from(port) << 16;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z as u32, (z >> 32) as u32)
}

/// An ARP who-has broadcast.
fn arp_request() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 9, 10, 60, 0, 9]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 60, 0, 1]);
    frame.resize(60, 0);
    frame
}

/// `count` single-packet TCP flows (SYNs, allowed by example-hospital.toml) with distinct endpoints, all within a few
/// seconds of capture time: the capture behind the concurrent-flows memory
/// figure.
pub fn distinct_flows(count: u64, start_ns: u64) -> impl Iterator<Item = (u64, Vec<u8>)> {
    (0..count).map(move |n| {
        let client = Ipv4Addr::from(0x0a3c_0000 + (n / 50_000) as u32);
        let port = 10_000 + (n % 50_000) as u16;
        let frame = Pkt::tcp(
            &format!("{client}:{port}"),
            "10.50.0.10:443",
            tcp_flags::SYN,
        )
        .build();
        (start_ns + n * 1_000, frame)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_time_ordered() {
        let options = HospitalOptions {
            packets: 2_000,
            ..HospitalOptions::default()
        };
        let a: Vec<_> = HospitalTraffic::new(options).collect();
        let b: Vec<_> = HospitalTraffic::new(options).collect();
        assert_eq!(a.len(), 2_000);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
        let small = a.iter().filter(|(_, f)| f.len() <= 128).count();
        assert!(
            small * 10 >= a.len() * 7,
            "mostly small frames: {small} of {}",
            a.len()
        );
    }

    /// Each TCP segment starts where its direction's previous one ended
    /// (SYN and FIN count one), and acknowledges all the peer sent.
    #[test]
    fn tcp_sequence_numbers_advance_as_on_a_wire() {
        use std::collections::HashMap;
        let options = HospitalOptions {
            packets: 20_000,
            ..HospitalOptions::default()
        };
        // (src, dst) -> the next sequence number the sender will use.
        let mut next: HashMap<(Vec<u8>, u16, Vec<u8>, u16), u32> = HashMap::new();
        let (mut segments, mut checked_acks) = (0, 0);
        for (_, frame) in HospitalTraffic::new(options) {
            let Ok(packet) = etherparse::SlicedPacket::from_ethernet(&frame) else {
                continue;
            };
            let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Tcp(tcp))) =
                (&packet.net, &packet.transport)
            else {
                continue;
            };
            let (src, dst) = (
                ip.header().source().to_vec(),
                ip.header().destination().to_vec(),
            );
            let key = (
                src.clone(),
                tcp.source_port(),
                dst.clone(),
                tcp.destination_port(),
            );
            let len = tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
            if let Some(&expected) = next.get(&key)
                && (!tcp.syn() || tcp.ack())
            {
                assert_eq!(tcp.sequence_number(), expected, "{key:?}");
                segments += 1;
            }
            next.insert(key.clone(), tcp.sequence_number().wrapping_add(len));
            let peer = (dst, tcp.destination_port(), src, tcp.source_port());
            if tcp.ack()
                && let Some(&peer_next) = next.get(&peer)
            {
                assert_eq!(tcp.acknowledgment_number(), peer_next, "{key:?}");
                checked_acks += 1;
            }
        }
        assert!(
            segments > 5_000 && checked_acks > 5_000,
            "{segments} {checked_acks}"
        );
    }
}
