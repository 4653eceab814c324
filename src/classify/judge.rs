//! Judging a flow (contract section 2) as one call: who initiated it, the
//! zones of both ends, the verdict by ports, and, when the policy asks for it,
//! the verdict with the flow's application; and which packets are link-local
//! traffic that no zone claims (counted, not judged).

use crate::exception::Exceptions;
use crate::flow::{FlowKey, Packet, is_group_address};
use crate::policy::Action;
use crate::wire::{Transport, tcp_flags};

use super::{CompiledPolicy, Verdict, ZoneId};

/// The policy in force, its exceptions and its generation (1 for a daemon's
/// first policy, +1 per reload; 0 in a replay): a flow judged under another
/// generation is judged again at its next packet. Policy and exceptions are
/// loaded and swapped together, so a violation's exception index always
/// names an exception of the file checked against its policy.
#[derive(Debug)]
pub struct PolicyInForce {
    /// The compiled policy.
    pub policy: CompiledPolicy,
    /// The exceptions (contract section 8); empty without a file.
    pub exceptions: Exceptions,
    /// Its generation.
    pub generation: u32,
}

impl PolicyInForce {
    /// `policy` without exceptions.
    pub fn new(policy: CompiledPolicy, generation: u32) -> PolicyInForce {
        PolicyInForce {
            policy,
            exceptions: Exceptions::default(),
            generation,
        }
    }
}

/// A flow judged by its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The initiator's (address, port).
    pub initiator: (u128, u16),
    /// The responder's (address, port).
    pub responder: (u128, u16),
    /// The initiator's and the responder's zones.
    pub zones: (ZoneId, ZoneId),
    /// The deciding rule.
    pub verdict: Verdict,
}

impl CompiledPolicy {
    /// Whether the tracker takes `packet` at all: false for link-local
    /// traffic (to multicast or broadcast, or from an unspecified address)
    /// unless zones claim every such address of it with a prefix longer than
    /// /0; such packets are counted, not judged.
    #[inline]
    pub fn tracks(&self, packet: &Packet) -> bool {
        if !packet.key.may_be_link_local() {
            return true;
        }
        let ((sender, _), (receiver, _)) = packet.endpoints();
        let ipv6 = packet.key.ipv6;
        !is_link_local(ipv6, sender, receiver) || self.link_local_claimed(ipv6, sender, receiver)
    }

    /// Judges a flow at its first packet: whether that packet's sender
    /// initiated it, and the flow judged by its ports.
    #[inline(always)]
    pub fn judge_start(&self, packet: &Packet) -> (bool, Judgement) {
        let sender_initiates = self.sender_initiates(packet);
        let initiator_is_lo = sender_initiates == packet.sender_is_lo;
        (
            sender_initiates,
            self.judge_flow(&packet.key, initiator_is_lo),
        )
    }

    /// Judges a known flow by its ports (again, after a reload).
    #[inline(always)]
    pub fn judge_flow(&self, key: &FlowKey, initiator_is_lo: bool) -> Judgement {
        let lo = (key.lo_addr.get(), key.lo_port);
        let hi = (key.hi_addr.get(), key.hi_port);
        let (initiator, responder) = if initiator_is_lo { (lo, hi) } else { (hi, lo) };
        let from = self.zone_of(key.ipv6, initiator.0).zone;
        let to = self.zone_of(key.ipv6, responder.0).zone;
        let transport = Transport::of_protocol(key.protocol);
        Judgement {
            verdict: self.judge(from, to, transport, responder.1),
            initiator,
            responder,
            zones: (from, to),
        }
    }

    /// The verdict of a flow judged by its ports once its application is
    /// known (`Some`) or not (`None`): the port verdict itself unless the
    /// policy has application rules or `[clinical]` checks.
    #[inline]
    pub fn judge_with_app(
        &self,
        judged: &Judgement,
        transport: Transport,
        app: Option<&crate::app::Detection>,
    ) -> Verdict {
        if !self.needs_app() {
            return judged.verdict;
        }
        self.judge_app(
            judged.zones.0,
            judged.zones.1,
            transport,
            judged.responder.1,
            judged.verdict,
            app,
        )
    }

    /// True when `verdict` alerts.
    #[inline]
    pub fn alerts(&self, verdict: Verdict) -> bool {
        self.action(verdict) == Action::Alert
    }

    /// Contract section 2, "initiator and responder", decided at a flow's
    /// first packet: true when that packet's sender initiated the flow.
    fn sender_initiates(&self, packet: &Packet) -> bool {
        match packet.transport {
            Transport::Tcp if packet.tcp_flags & tcp_flags::SYN != 0 => {
                packet.tcp_flags & tcp_flags::ACK == 0
            }
            Transport::EchoRequest => true,
            Transport::EchoReply => false,
            Transport::Tcp | Transport::Udp => {
                let ((_, sport), (_, dport)) = packet.endpoints();
                let src_named = self.names_port(packet.transport, sport);
                let dst_named = self.names_port(packet.transport, dport);
                if src_named != dst_named {
                    dst_named
                } else if (sport < 1024) != (dport < 1024) {
                    dport < 1024
                } else {
                    true
                }
            }
            Transport::Other => true,
        }
    }

    /// True when every link-local address of the packet is claimed by a zone
    /// with a prefix longer than /0 (contract section 2).
    fn link_local_claimed(&self, ipv6: bool, src: u128, dst: u128) -> bool {
        let claimed = |addr: u128| self.zone_of(ipv6, addr).prefix_len > 0;
        (!is_group_address(ipv6, dst) || claimed(dst)) && (src != 0 || claimed(src))
    }
}

/// True for a packet to multicast or limited broadcast, or from an
/// unspecified address: such packets never cross a segment boundary.
#[inline]
fn is_link_local(ipv6: bool, src: u128, dst: u128) -> bool {
    src == 0 || is_group_address(ipv6, dst)
}
