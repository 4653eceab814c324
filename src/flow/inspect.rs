//! Application detection in the flow tracker: the first payload bytes of
//! each direction of a new flow, reassembled in TCP sequence order and
//! bounded, handed to [`crate::app::detect`] until the application is known
//! or ruled out (contract section 2: the first payload of each direction,
//! at most 8 packets or 2 seconds of capture time after the first packet,
//! or the flow's end if sooner).
//!
//! A direction's first segment is probed where it lies, in its frame: most
//! flows are decided by it (their first byte is no protocol's, or their
//! first message is whole), and nothing is copied. Bytes are kept only when
//! the inspection goes on: a first message begun but not complete, or a
//! request waiting for its reply.
//!
//! An inspection's state comes in two parts. Every packet of the flow
//! updates its [`Track`] (packets seen, where each direction's next byte
//! lies): 12 bytes, so that the tracks of all of a tracker's inspections
//! stay in the CPU's caches, however many other flows' packets come in
//! between. Only a packet that adds payload reads the [`Kept`] part: the
//! bytes kept and the answer pending. Where both live, and what happens
//! when there is no room for them, is the business of the tracker's
//! [`super::inspections`].

use crate::app::{Detection, INSPECT_LIMIT, Progress};
use crate::wire::Transport;

/// Packets of a flow inspected at most.
pub const MAX_PACKETS: u8 = 8;
/// Capture time after a flow's first packet after which its event waits no
/// longer.
pub const MAX_WAIT_NS: u64 = 2_000_000_000;

/// Bits of [`Track::flags`], by direction (index 0: the client's, 1: the
/// server's).
mod flag {
    /// The direction's next sequence number is known.
    pub const SEQ: [u8; 2] = [1, 2];
    /// A segment of the direction went missing: nothing more is added.
    pub const GAP: [u8; 2] = [4, 8];
    /// The direction keeps bytes.
    pub const KEPT: [u8; 2] = [16, 32];
    /// An answer waits for the server's reply (in [`super::Kept`]).
    pub const FOUND: u8 = 64;
}

/// What every packet of an inspected flow updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Track {
    /// TCP, per direction: the sequence number the next in-order byte
    /// carries (when [`flag::SEQ`] says it is known).
    next_seq: [u32; 2],
    packets: u8,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Track>() == 12);

/// The index of a direction in [`Track`]'s arrays.
fn side(from_client: bool) -> usize {
    usize::from(!from_client)
}

impl Track {
    /// True when the direction keeps bytes.
    #[inline]
    pub fn keeps(&self, from_client: bool) -> bool {
        self.flags & flag::KEPT[side(from_client)] != 0
    }

    /// True when either direction keeps bytes.
    #[inline]
    pub fn keeps_any(&self) -> bool {
        self.flags & (flag::KEPT[0] | flag::KEPT[1]) != 0
    }

    /// True when the inspection's [`Kept`] part holds anything: bytes, or
    /// an answer waiting for a reply.
    #[inline]
    pub fn holds_kept(&self) -> bool {
        self.flags & (flag::KEPT[0] | flag::KEPT[1] | flag::FOUND) != 0
    }

    /// Notes that the direction keeps bytes from now on.
    #[inline]
    pub fn set_keeps(&mut self, from_client: bool) {
        self.flags |= flag::KEPT[side(from_client)];
    }

    /// Counts a packet without payload and without SYN when that is all
    /// [`Track::accept`] would do with it: a UDP datagram, or a TCP segment
    /// of a direction whose next sequence number is known (an empty segment
    /// can then only tell of bytes gone missing, which the next segment with
    /// payload tells as well). False when the packet needs
    /// [`Track::accept`].
    #[inline(always)]
    pub fn count_empty(&mut self, transport: Transport, from_client: bool) -> bool {
        if transport == Transport::Tcp && self.flags & flag::SEQ[side(from_client)] == 0 {
            return false;
        }
        self.packets = self.packets.saturating_add(1);
        true
    }

    /// Counts a TCP segment without payload, with sequence number `seq`:
    /// what [`Track::accept`] does with it, without reading the bytes kept
    /// (the sequence numbers of a direction that keeps [`INSPECT_LIMIT`]
    /// bytes no longer matter: nothing more is added to it).
    #[inline(always)]
    pub fn accept_empty(&mut self, from_client: bool, seq: u32, syn: bool) {
        self.packets = self.packets.saturating_add(1);
        let side = side(from_client);
        if self.flags & flag::GAP[side] != 0 {
            return;
        }
        // A SYN takes one sequence number before the data.
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        if self.flags & flag::SEQ[side] == 0 {
            self.flags |= flag::SEQ[side];
            self.next_seq[side] = data_seq;
        } else if data_seq.wrapping_sub(self.next_seq[side]) as i32 > 0 {
            // A hole: the parsers could only be misled from here on.
            self.flags |= flag::GAP[side];
        }
    }

    /// True when the flow, whose first packet came at `first_ts`, has been
    /// inspected long enough at capture time `now`: its packets or its
    /// wait are at their limit.
    #[inline]
    pub fn waited_enough(&self, first_ts: u64, now: u64) -> bool {
        self.packets >= MAX_PACKETS || now.saturating_sub(first_ts) >= MAX_WAIT_NS
    }

    /// Counts one packet of the flow and returns the bytes it adds to its
    /// direction (empty when none), `kept` being how many that direction
    /// keeps already: then call [`Kept::decide`], after [`Kept::keep`] when
    /// `kept` is not 0.
    #[inline]
    pub fn accept<'p>(
        &mut self,
        transport: Transport,
        segment: &Segment<'p>,
        kept: usize,
    ) -> &'p [u8] {
        self.packets = self.packets.saturating_add(1);
        let payload = segment.payload;
        match transport {
            // A datagram is a message of its own: each side's first one
            // (and the first ends the inspection, see `Kept::decide`).
            Transport::Udp if kept == 0 => &payload[..payload.len().min(INSPECT_LIMIT)],
            Transport::Udp => &[],
            _ => self.accept_segment(segment, kept),
        }
    }

    /// The part of a TCP segment's payload that extends its direction's
    /// bytes, keeping track of the sequence numbers.
    #[inline]
    pub fn accept_segment<'p>(&mut self, segment: &Segment<'p>, kept: usize) -> &'p [u8] {
        let side = side(segment.from_client);
        if self.flags & flag::GAP[side] != 0 || kept >= INSPECT_LIMIT {
            return &[];
        }
        let mut payload = segment.payload;
        if let Some(seq) = segment.seq {
            // A SYN takes one sequence number before the data.
            let data_seq = if segment.syn {
                seq.wrapping_add(1)
            } else {
                seq
            };
            if self.flags & flag::SEQ[side] == 0 {
                self.flags |= flag::SEQ[side];
                self.next_seq[side] = data_seq;
            }
            let next = self.next_seq[side];
            let ahead = data_seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                // A hole: the parsers could only be misled from here on.
                self.flags |= flag::GAP[side];
                return &[];
            }
            // A retransmission: skip what is already here.
            let seen = ahead.unsigned_abs() as usize;
            payload = payload.get(seen..).unwrap_or(&[]);
            self.next_seq[side] = next.wrapping_add(payload.len() as u32);
        }
        &payload[..payload.len().min(INSPECT_LIMIT - kept)]
    }
}

/// What an inspection keeps: the bytes of a first message begun, and an
/// answer waiting for the server's reply.
#[derive(Debug, Default)]
pub struct Kept {
    client: Vec<u8>,
    server: Vec<u8>,
    /// Identified, waiting for the server's reply to fill it in.
    found: Option<Box<Detection>>,
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
pub enum Step<'p> {
    /// Waiting for more.
    Continue,
    /// Waiting for more, once these bytes (the segment's, probed where they
    /// lay) are kept as the first of their direction.
    Keep(&'p [u8]),
    /// Done: the application, when identified.
    Finished(Option<Box<Detection>>),
}

impl Kept {
    /// Bytes the direction keeps.
    #[inline]
    pub fn len(&self, from_client: bool) -> usize {
        self.buffer(from_client).len()
    }

    /// Bytes held: what the kept bytes' buffers take.
    pub fn held(&self) -> usize {
        self.client.capacity() + self.server.capacity()
    }

    /// The extra buffer capacity that keeping `len` more bytes of a
    /// direction takes: none while they fit, else the buffer doubles (up to
    /// what a direction may hold), or grows to fit them if that is more.
    pub fn growth(&self, from_client: bool, len: usize) -> usize {
        let bytes = self.buffer(from_client);
        let needed = bytes.len() + len;
        if needed <= bytes.capacity() {
            return 0;
        }
        let target = needed.max((bytes.capacity() * 2).min(INSPECT_LIMIT));
        target - bytes.capacity()
    }

    fn buffer(&self, from_client: bool) -> &Vec<u8> {
        if from_client {
            &self.client
        } else {
            &self.server
        }
    }

    /// Keeps `bytes` after a direction's kept bytes, growing its buffer by
    /// [`Kept::growth`] (the caller made room for that).
    pub fn keep(&mut self, from_client: bool, bytes: &[u8]) {
        let growth = self.growth(from_client, bytes.len());
        let kept = if from_client {
            &mut self.client
        } else {
            &mut self.server
        };
        kept.reserve_exact(kept.capacity() + growth - kept.len());
        kept.extend_from_slice(bytes);
    }

    /// Ends the inspection: frees the kept bytes (returning how many their
    /// buffers took) and returns the best answer so far.
    pub fn clear(&mut self) -> (usize, Option<Box<Detection>>) {
        let held = self.held();
        if held > 0 {
            self.client = Vec::new();
            self.server = Vec::new();
        }
        (held, self.found.take())
    }

    /// The bytes the direction keeps.
    #[inline]
    pub fn bytes(&self, from_client: bool) -> &[u8] {
        if from_client {
            &self.client
        } else {
            &self.server
        }
    }
}

/// What the bytes so far say (`answer`: [`crate::app::detect`] on them),
/// after [`Track::accept`] returned some. `fresh` are those bytes when their
/// direction kept none: they were probed where they lie, and [`Step::Keep`]
/// asks for them to be kept if the inspection goes on; otherwise `fresh` is
/// empty (the added bytes were kept before). `track` and `first_ts` say
/// whether the flow has waited long enough. `kept` holds an answer waiting
/// for a reply: it is read only when `track` says so (it lies out of the
/// CPU's caches). Always inlined: `answer` is large, and would be copied
/// into a call.
#[inline(always)]
pub fn decide<'p>(
    answer: Progress<Detection>,
    transport: Transport,
    segment: &Segment<'_>,
    fresh: &'p [u8],
    (track, first_ts): (&mut Track, u64),
    kept: &mut Kept,
) -> Step<'p> {
    match answer {
        Progress::Done(done) if !done.reply_pending => {
            return Step::Finished(Some(Box::new(done)));
        }
        Progress::Done(done) => {
            kept.found = Some(Box::new(done));
            track.flags |= flag::FOUND;
        }
        Progress::NotThis => return Step::Finished(None),
        Progress::NeedMore => {}
    }
    let pending = track.flags & flag::FOUND != 0;
    // UDP: one datagram each way says all there is to say.
    let udp_done = transport == Transport::Udp && !pending;
    if udp_done || track.waited_enough(first_ts, segment.ts_ns) {
        track.flags &= !flag::FOUND;
        return Step::Finished(if pending { kept.found.take() } else { None });
    }
    if fresh.is_empty() {
        Step::Continue
    } else {
        Step::Keep(fresh)
    }
}

/// The bytes [`crate::app::detect`] reads after a packet: each direction's
/// kept bytes, or the `fresh` ones, probed where they lie, in the sender's
/// direction when it keeps none. `kept` is read only for a direction that
/// `track` says keeps bytes.
pub fn sides<'a>(
    track: &Track,
    kept: &'a Kept,
    from_client: bool,
    fresh: &'a [u8],
) -> (&'a [u8], &'a [u8]) {
    let side = |client: bool| -> &'a [u8] {
        if client == from_client && !fresh.is_empty() {
            fresh
        } else if track.keeps(client) {
            kept.bytes(client)
        } else {
            &[]
        }
    };
    (side(true), side(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{FlowPorts, detect};

    fn segment(from_client: bool, seq: u32, syn: bool, payload: &[u8]) -> Segment<'_> {
        Segment {
            from_client,
            seq: Some(seq),
            syn,
            payload,
            ts_ns: 0,
        }
    }

    /// Feeds client segments as the tracker would, keeping what is added.
    fn add(track: &mut Track, kept: &mut Vec<u8>, seq: u32, syn: bool, payload: &[u8]) -> bool {
        let added = track.accept(
            Transport::Tcp,
            &segment(true, seq, syn, payload),
            kept.len(),
        );
        kept.extend_from_slice(added);
        !added.is_empty()
    }

    #[test]
    fn tcp_bytes_are_kept_in_sequence_order_without_duplicates_or_holes() {
        let (mut track, mut kept) = (Track::default(), Vec::new());
        // The SYN: no data, but it fixes where the data starts.
        assert!(!add(&mut track, &mut kept, 100, true, b""));
        assert!(add(&mut track, &mut kept, 101, false, b"abc"));
        // A retransmission adds nothing; an overlap adds the new part.
        assert!(!add(&mut track, &mut kept, 101, false, b"abc"));
        assert!(add(&mut track, &mut kept, 102, false, b"bcde"));
        assert_eq!(kept, b"abcde");
        // A hole stops it.
        assert!(!add(&mut track, &mut kept, 200, false, b"zz"));
        assert!(!add(&mut track, &mut kept, 106, false, b"f"));
        assert_eq!(kept, b"abcde");
        // The server's direction is tracked apart.
        let reply = segment(false, 5000, false, b"xyz");
        assert_eq!(track.accept(Transport::Tcp, &reply, 0), b"xyz");
        assert_eq!(track.packets, 7);
    }

    #[test]
    fn empty_segments_are_only_counted_once_their_direction_is_placed() {
        let mut track = Track::default();
        // Nothing known of the client's sequence numbers yet: read it.
        assert!(!track.count_empty(Transport::Tcp, true));
        track.accept(Transport::Tcp, &segment(true, 100, true, b""), 0);
        assert!(track.count_empty(Transport::Tcp, true));
        assert!(!track.count_empty(Transport::Tcp, false));
        // UDP has no sequence numbers: always counted.
        assert!(track.count_empty(Transport::Udp, false));
        assert_eq!(track.packets, 3);
        // The client's bytes still start after its SYN.
        let data = segment(true, 101, false, b"abc");
        assert_eq!(track.accept(Transport::Tcp, &data, 0), b"abc");
    }

    #[test]
    fn the_wait_ends_at_eight_packets_or_two_seconds() {
        let mut track = Track::default();
        let empty = segment(true, 1, false, b"");
        for _ in 0..MAX_PACKETS - 1 {
            track.accept(Transport::Tcp, &empty, 0);
            assert!(!track.waited_enough(0, MAX_WAIT_NS - 1));
        }
        assert!(track.waited_enough(10, MAX_WAIT_NS + 10));
        track.accept(Transport::Tcp, &empty, 0);
        assert!(track.waited_enough(0, 0));
    }

    const PORTS: FlowPorts = FlowPorts {
        client: 50000,
        server: 443,
    };

    /// Takes a client segment as the tracker does (without a byte budget).
    fn take<'p>(track: &mut Track, kept: &mut Kept, segment: &Segment<'p>) -> Step<'p> {
        let len = kept.len(segment.from_client);
        let added = track.accept(Transport::Tcp, segment, len);
        let fresh = if len > 0 {
            kept.keep(segment.from_client, added);
            &[]
        } else {
            added
        };
        if len > 0 {
            track.set_keeps(segment.from_client);
        }
        let (client, server) = sides(track, kept, segment.from_client, fresh);
        let answer = detect(Transport::Tcp, PORTS, client, server);
        decide(answer, Transport::Tcp, segment, fresh, (track, 0), kept)
    }

    #[test]
    fn a_first_segment_that_decides_is_never_copied() {
        // Not a protocol: decided on the first byte, in place.
        let (mut track, mut kept) = (Track::default(), Kept::default());
        let ssh = segment(true, 1, false, b"SSH-2.0-OpenSSH_9.6\r\n");
        assert!(matches!(
            take(&mut track, &mut kept, &ssh),
            Step::Finished(None)
        ));
        assert_eq!(kept.held(), 0);
        // A whole HTTP request: identified in place.
        let (mut track, mut kept) = (Track::default(), Kept::default());
        let get = segment(true, 1, false, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(
            take(&mut track, &mut kept, &get),
            Step::Finished(Some(_))
        ));
        assert_eq!(kept.held(), 0);
    }

    #[test]
    fn a_begun_message_is_kept_and_completed_by_the_next_segment() {
        let (mut track, mut kept) = (Track::default(), Kept::default());
        let first = segment(true, 1, false, b"GET / HT");
        let Step::Keep(bytes) = take(&mut track, &mut kept, &first) else {
            panic!("a begun request waits");
        };
        assert_eq!(kept.growth(true, bytes.len()), 8);
        kept.keep(true, bytes);
        track.set_keeps(true);
        assert!(track.keeps(true) && !track.keeps(false) && track.keeps_any());
        assert_eq!(kept.held(), 8);
        let rest = segment(true, 9, false, b"TP/1.1\r\n\r\n");
        assert!(matches!(
            take(&mut track, &mut kept, &rest),
            Step::Finished(Some(_))
        ));
        // Doubled, 16 bytes would not hold 18: grown to fit them.
        assert_eq!(kept.held(), 18);
        assert_eq!(kept.clear().0, 18);
        assert_eq!(kept.held(), 0);
    }

    #[test]
    fn buffers_double_up_to_the_limit() {
        let mut kept = Kept::default();
        kept.keep(true, &[1; 1000]);
        assert_eq!(kept.held(), 1000);
        // 10 more bytes double it; 5,000 more grow it to fit.
        assert_eq!(kept.growth(true, 10), 1000);
        assert_eq!(kept.growth(true, 5000), 5000);
        let mut full = Kept::default();
        full.keep(true, &vec![1; INSPECT_LIMIT - 10]);
        assert_eq!(full.growth(true, 10), 10);
    }
}
