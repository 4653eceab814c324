//! Application detection in the flow tracker: the first payload bytes of
//! each direction of a new flow, reassembled in TCP sequence order and
//! bounded, handed to [`crate::app::detect`] until the application is known
//! or ruled out (contract section 2: the first payload of each direction,
//! at most 8 packets or 2 seconds of capture time after the first packet,
//! or the flow's end if sooner).
//!
//! Only flows being inspected cost anything: their state lives beside the
//! flow table, and is dropped as soon as the answer is in.

use crate::app::{Detection, FlowPorts, INSPECT_LIMIT, Progress, detect};
use crate::wire::Transport;

/// Packets of a flow inspected at most.
pub const MAX_PACKETS: u8 = 8;
/// Capture time after a flow's first packet after which its event waits no
/// longer.
pub const MAX_WAIT_NS: u64 = 2_000_000_000;

/// One direction's first bytes.
#[derive(Debug, Default)]
struct Direction {
    bytes: Vec<u8>,
    /// TCP: the sequence number the next in-order byte carries.
    next_seq: Option<u32>,
    /// A segment went missing: nothing more is added.
    gap: bool,
}

impl Direction {
    /// Adds a segment's payload; true when bytes were added.
    fn add(&mut self, seq: Option<u32>, syn: bool, payload: &[u8]) -> bool {
        if self.gap || self.bytes.len() >= INSPECT_LIMIT {
            return false;
        }
        let mut payload = payload;
        if let Some(seq) = seq {
            // A SYN takes one sequence number before the data.
            let data_seq = if syn { seq.wrapping_add(1) } else { seq };
            let next = *self.next_seq.get_or_insert(data_seq);
            let ahead = data_seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                // A hole: the parsers could only be misled from here on.
                self.gap = true;
                return false;
            }
            // A retransmission: skip what is already here.
            let seen = ahead.unsigned_abs() as usize;
            payload = payload.get(seen..).unwrap_or(&[]);
            self.next_seq = Some(next.wrapping_add(payload.len() as u32));
        }
        if payload.is_empty() {
            return false;
        }
        let take = payload.len().min(INSPECT_LIMIT - self.bytes.len());
        self.bytes.extend_from_slice(&payload[..take]);
        true
    }
}

/// What a flow under inspection holds.
#[derive(Debug)]
pub struct Inspection {
    client: Direction,
    server: Direction,
    packets: u8,
    first_ts: u64,
    /// Identified, waiting for the server's reply to fill it in.
    found: Option<Detection>,
}

/// A packet of an inspected flow, as inspection needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Sent by the initiator.
    pub from_client: bool,
    /// TCP sequence number; `None` for UDP.
    pub seq: Option<u32>,
    /// A TCP SYN.
    pub syn: bool,
    /// The transport payload.
    pub payload: &'a [u8],
    /// Capture time.
    pub ts_ns: u64,
}

/// Whether inspection goes on.
#[derive(Debug)]
pub enum Step {
    /// Waiting for more.
    Continue,
    /// Done: the application, when identified.
    Finished(Option<Box<Detection>>),
}

impl Inspection {
    /// A flow starting at `first_ts`.
    pub fn new(first_ts: u64) -> Inspection {
        Inspection {
            client: Direction::default(),
            server: Direction::default(),
            packets: 0,
            first_ts,
            found: None,
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.client.bytes.capacity() + self.server.bytes.capacity()
    }

    /// True when the wait is over at capture time `now`.
    pub fn timed_out(&self, now: u64) -> bool {
        now.saturating_sub(self.first_ts) >= MAX_WAIT_NS
    }

    /// The best answer so far, ending the inspection.
    pub fn give_up(&mut self) -> Option<Detection> {
        self.found.take()
    }

    /// Takes one packet of the flow.
    pub fn take(&mut self, transport: Transport, ports: FlowPorts, segment: Segment<'_>) -> Step {
        self.packets = self.packets.saturating_add(1);
        let added = match transport {
            // A datagram is a message of its own: each side's first one.
            Transport::Udp => {
                let side = if segment.from_client {
                    &mut self.client
                } else {
                    &mut self.server
                };
                if side.bytes.is_empty() && !segment.payload.is_empty() {
                    let take = segment.payload.len().min(INSPECT_LIMIT);
                    side.bytes.extend_from_slice(&segment.payload[..take]);
                    true
                } else {
                    false
                }
            }
            _ => {
                let side = if segment.from_client {
                    &mut self.client
                } else {
                    &mut self.server
                };
                side.add(segment.seq, segment.syn, segment.payload)
            }
        };
        if added {
            match detect(transport, ports, &self.client.bytes, &self.server.bytes) {
                Progress::Done(found) if !found.reply_pending => {
                    return Step::Finished(Some(Box::new(found)));
                }
                Progress::Done(found) => self.found = Some(found),
                Progress::NotThis => return Step::Finished(None),
                Progress::NeedMore => {}
            }
        }
        // UDP: one datagram each way says all there is to say.
        let udp_done = transport == Transport::Udp
            && (!self.client.bytes.is_empty() || !self.server.bytes.is_empty())
            && self.found.is_none();
        if udp_done || self.packets >= MAX_PACKETS || self.timed_out(segment.ts_ns) {
            return Step::Finished(self.found.take().map(Box::new));
        }
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_bytes_are_kept_in_sequence_order_without_duplicates_or_holes() {
        let mut d = Direction::default();
        // The SYN: no data, but it fixes where the data starts.
        assert!(!d.add(Some(100), true, b""));
        assert!(d.add(Some(101), false, b"abc"));
        // A retransmission adds nothing; an overlap adds the new part.
        assert!(!d.add(Some(101), false, b"abc"));
        assert!(d.add(Some(102), false, b"bcde"));
        assert_eq!(d.bytes, b"abcde");
        // A hole stops it.
        assert!(!d.add(Some(200), false, b"zz"));
        assert!(!d.add(Some(106), false, b"f"));
        assert_eq!(d.bytes, b"abcde");
    }
}
