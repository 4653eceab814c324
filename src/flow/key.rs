//! Flow keys: the same key for both directions of a flow, VLAN ignored.

use std::hash::Hasher;

use crate::wire::{Headers, Transport, Tunnel, TunnelKind};

/// Identifies a flow (contract section 2): the IP protocol and the pair of
/// (address, port) endpoints, in a canonical order so that both directions
/// give the same key. VLAN tags are not part of it: routed traffic on a SPAN
/// port often carries a different tag each way.
///
/// ICMP echo flows hold the echo identifier in both ports; other protocols
/// without ports hold 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The lower (address, port) endpoint's address.
    pub lo_addr: Addr,
    /// The higher endpoint's address.
    pub hi_addr: Addr,
    /// The lower endpoint's port.
    pub lo_port: u16,
    /// The higher endpoint's port.
    pub hi_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// True for IPv6.
    pub ipv6: bool,
    /// The overlay (VXLAN or Geneve VNI, GRE key) of a flow taken out of a
    /// tunnel when decapsulating: two overlays may reuse addresses.
    pub overlay: Overlay,
}

/// The overlay a decapsulated flow belongs to: its tunnel kind and VNI or
/// key; [`Overlay::NONE`] for traffic that was not decapsulated, and for
/// ERSPAN (a mirror session carries the traffic of one network, not an
/// overlay). Bytes rather than integers, so that a key stays 2-byte aligned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Overlay {
    /// [`TunnelKind`] as a number (0 for none), and 0x80 when an ID is given.
    kind: u8,
    /// The ID, big-endian.
    id: [u8; 4],
}

impl Overlay {
    /// Not decapsulated.
    pub const NONE: Overlay = Overlay {
        kind: 0,
        id: [0; 4],
    };
    const HAS_ID: u8 = 0x80;

    /// The overlay of a packet taken out of `tunnel`.
    #[inline]
    pub fn of(tunnel: &Tunnel) -> Overlay {
        let kind = match tunnel.kind {
            TunnelKind::None | TunnelKind::Erspan => return Overlay::NONE,
            TunnelKind::Vxlan => 1,
            TunnelKind::Geneve => 2,
            TunnelKind::Gre => 3,
        };
        match tunnel.id {
            Some(id) => Overlay {
                kind: kind | Self::HAS_ID,
                id: id.to_be_bytes(),
            },
            None => Overlay { kind, id: [0; 4] },
        }
    }

    /// True for traffic that was not decapsulated.
    #[inline]
    pub fn is_none(self) -> bool {
        self.kind == 0
    }

    /// The tunnel kind.
    pub fn kind(self) -> TunnelKind {
        match self.kind & !Self::HAS_ID {
            1 => TunnelKind::Vxlan,
            2 => TunnelKind::Geneve,
            3 => TunnelKind::Gre,
            _ => TunnelKind::None,
        }
    }

    /// The VNI or key, when the tunnel header carried one.
    pub fn id(self) -> Option<u32> {
        (self.kind & Self::HAS_ID != 0).then_some(u32::from_be_bytes(self.id))
    }

    /// The overlay as one word for hashing: 0 for none.
    #[inline(always)]
    fn word(self) -> u64 {
        u64::from(self.kind) << 32 | u64::from(u32::from_be_bytes(self.id))
    }
}

/// An address of either family, as [`crate::wire::Headers`] holds it, stored
/// as its 16 bytes in network order (an IPv4 address in the last four), so
/// that the derived order is the `u128`'s. Bytes rather than a `u128` or two
/// `u64`s: a key then has no alignment above 2 and is 38 bytes long (48 or 40
/// otherwise), which lets a decoded packet fit one 64-byte cache line and
/// shortens every flow-table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr([u8; 16]);

impl Addr {
    /// The address as a `u128`.
    #[inline]
    pub fn get(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The address's high and low 64 bits.
    #[inline]
    fn halves(self) -> (u64, u64) {
        let addr = self.get();
        ((addr >> 64) as u64, addr as u64)
    }
}

impl From<u128> for Addr {
    #[inline]
    fn from(addr: u128) -> Addr {
        Addr(addr.to_be_bytes())
    }
}

impl FlowKey {
    /// The key of a decoded packet, whether its sender is the key's `lo`
    /// endpoint, and the key's [`FlowHasher`] hash. An IPv4 key is hashed
    /// from the endpoints at hand, not read back from the key (its addresses
    /// are stored as network-order bytes).
    #[inline(always)]
    pub fn of(headers: &Headers) -> (FlowKey, bool, u32) {
        Self::in_overlay(headers, Overlay::of(&headers.tunnel))
    }

    /// [`FlowKey::of`] for a packet known to have come out of no tunnel
    /// (see [`crate::wire::Split`]): [`Headers::tunnel`] is not read, and the
    /// overlay's share of the hash folds away.
    #[inline(always)]
    pub fn of_untunnelled(headers: &Headers) -> (FlowKey, bool, u32) {
        Self::in_overlay(headers, Overlay::NONE)
    }

    #[inline(always)]
    fn in_overlay(headers: &Headers, overlay: Overlay) -> (FlowKey, bool, u32) {
        let (src_port, dst_port) = match headers.transport {
            Transport::Other => (0, 0),
            _ => (headers.src_port, headers.dst_port),
        };
        if !headers.ipv6 {
            // IPv4 (`Headers` holds its addresses zero-extended): each
            // endpoint as one 48-bit number, address above port, ordered and
            // swapped as a whole.
            let endpoint = |addr: u128, port: u16| (addr as u64) << 16 | u64::from(port);
            let (src, dst) = (
                endpoint(headers.src, src_port),
                endpoint(headers.dst, dst_port),
            );
            let sender_is_lo = src <= dst;
            let (lo, hi) = if sender_is_lo { (src, dst) } else { (dst, src) };
            let (lo_addr, hi_addr) = (lo >> 16, hi >> 16);
            let key = FlowKey {
                lo_addr: u128::from(lo_addr).into(),
                hi_addr: u128::from(hi_addr).into(),
                lo_port: lo as u16,
                hi_port: hi as u16,
                protocol: headers.protocol,
                ipv6: false,
                overlay,
            };
            let hash = FlowHasher::hash_v4(lo_addr << 32 | hi_addr, FlowHasher::tail(&key));
            return (key, sender_is_lo, hash);
        }
        let sender_is_lo = (headers.src, src_port) <= (headers.dst, dst_port);
        let (lo_addr, lo_port, hi_addr, hi_port) = if sender_is_lo {
            (headers.src, src_port, headers.dst, dst_port)
        } else {
            (headers.dst, dst_port, headers.src, src_port)
        };
        let key = FlowKey {
            lo_addr: lo_addr.into(),
            hi_addr: hi_addr.into(),
            lo_port,
            hi_port,
            protocol: headers.protocol,
            ipv6: headers.ipv6,
            overlay,
        };
        (key, sender_is_lo, FlowHasher.hash(&key))
    }
}

impl FlowKey {
    /// True when an endpoint is a group (multicast or broadcast) or an
    /// unspecified address, or one of a few more (IPv4's reserved
    /// 240.0.0.0/4): a packet of the flow may be link-local traffic, which
    /// the tracker's owner may leave out (asked only then). A quick test,
    /// made once per flow; the owner checks exactly the few it lets through.
    #[inline]
    pub fn may_be_link_local(&self) -> bool {
        may_be_group_or_unspecified(self.ipv6, self.lo_addr.get())
            || may_be_group_or_unspecified(self.ipv6, self.hi_addr.get())
    }
}

/// See [`FlowKey::may_be_link_local`].
#[inline(always)]
fn may_be_group_or_unspecified(ipv6: bool, addr: u128) -> bool {
    if ipv6 {
        addr == 0 || addr >> 120 == 0xff
    } else {
        // 0.0.0.0 wraps to the top; 224.0.0.0 and above stay above.
        (addr as u32).wrapping_sub(1) >= 0xdfff_ffff
    }
}

/// The flow-key hash: fixed-seeded so that the shard a flow lands in, and
/// with it eviction under a full table, is the same on every run. (A
/// per-process random seed would make replays differ when tables fill up.)
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHasher;

/// Fixed seed of [`FlowHasher`]; any constant does.
const FLOW_HASH_SEED: u64 = 0x5e67_7a7c_4a11_0c47;

impl FlowHasher {
    /// Hashes a key through foldhash, word by word, without the length
    /// prefixes and per-field calls a derived `Hash` would add: an IPv6 key's
    /// five 64-bit words, an IPv4 key's two (both addresses in one word;
    /// the high halves of its addresses are zero). 32 bits are kept: the
    /// flow index and the shard choice use no more (its slots are `u32`, so
    /// it never has more than 2^32 buckets), and a decoded packet is
    /// 4 bytes shorter.
    #[inline]
    pub fn hash(self, key: &FlowKey) -> u32 {
        let (lo, hi) = (key.lo_addr.halves(), key.hi_addr.halves());
        if !key.ipv6 {
            return Self::hash_v4(lo.1 << 32 | hi.1, Self::tail(key));
        }
        let mut hasher = Self::hasher();
        for word in [lo.0, lo.1, hi.0, hi.1, Self::tail(key)] {
            hasher.write_u64(word);
        }
        hasher.finish() as u32
    }

    /// The hash of an IPv4 key: both addresses in one word, then the tail.
    #[inline(always)]
    fn hash_v4(addresses: u64, tail: u64) -> u32 {
        let mut hasher = Self::hasher();
        hasher.write_u64(addresses);
        hasher.write_u64(tail);
        hasher.finish() as u32
    }

    /// The key's ports, protocol, family and overlay as one word (the
    /// overlay mixed in so that traffic outside tunnels hashes as it always
    /// did).
    #[inline(always)]
    fn tail(key: &FlowKey) -> u64 {
        let plain = u64::from(key.lo_port)
            | u64::from(key.hi_port) << 16
            | u64::from(key.protocol) << 32
            | u64::from(key.ipv6) << 40;
        plain ^ key.overlay.word().rotate_left(41)
    }

    #[inline(always)]
    fn hasher() -> impl std::hash::Hasher {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(FLOW_HASH_SEED).build_hasher()
    }

    /// The shard (of `shards`, a power of two, at most 256) a hash belongs
    /// to: its top bits. The flow index starts from the low bits (and uses
    /// the top ones only past 2^24 buckets, 8 million flows in one shard),
    /// so the flows of one shard still spread over its index.
    #[inline]
    pub fn shard(hash: u32, shards: usize) -> usize {
        (hash >> 24) as usize & (shards - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(src: u128, sp: u16, dst: u128, dp: u16) -> Headers {
        Headers {
            src,
            dst,
            src_port: sp,
            dst_port: dp,
            protocol: 6,
            transport: Transport::Tcp,
            ..Headers::default()
        }
    }

    #[test]
    fn ipv4_endpoints_order_as_their_full_width_values() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            // Few distinct values, so that equal addresses and ports come up.
            let addr = |rng: &mut fastrand::Rng| match rng.u8(0..4) {
                0 => u128::from(rng.u32(..)),
                1 => u128::from(u32::MAX - rng.u32(0..3)),
                _ => u128::from(rng.u32(0..3)),
            };
            let port = |rng: &mut fastrand::Rng| match rng.u8(0..2) {
                0 => rng.u16(..),
                _ => rng.u16(0..2) * u16::MAX,
            };
            let (src, sp, dst, dp) = (
                addr(&mut rng),
                port(&mut rng),
                addr(&mut rng),
                port(&mut rng),
            );
            let (key, sender_is_lo, hash) = FlowKey::of(&headers(src, sp, dst, dp));
            assert_eq!(
                sender_is_lo,
                (src, sp) <= (dst, dp),
                "{src} {sp} {dst} {dp}"
            );
            assert_eq!(FlowKey::of(&headers(dst, dp, src, sp)).0, key);
            let (lo, hi) = if sender_is_lo {
                ((src, sp), (dst, dp))
            } else {
                ((dst, dp), (src, sp))
            };
            assert_eq!(
                (
                    key.lo_addr.get(),
                    key.lo_port,
                    key.hi_addr.get(),
                    key.hi_port
                ),
                (lo.0, lo.1, hi.0, hi.1)
            );
            assert!(!key.ipv6 && key.protocol == 6);
            assert_eq!(hash, FlowHasher.hash(&key), "hashed from the endpoints");
            let mut v6 = headers(src << 64 | 1, sp, dst << 64 | 2, dp);
            v6.ipv6 = true;
            let (key, _, hash) = FlowKey::of(&v6);
            assert_eq!(hash, FlowHasher.hash(&key));
        }
    }

    #[test]
    fn both_directions_share_a_key() {
        let (a, a_lo, _) = FlowKey::of(&headers(1, 5000, 2, 80));
        let (b, b_lo, _) = FlowKey::of(&headers(2, 80, 1, 5000));
        assert_eq!(a, b);
        assert!(a_lo && !b_lo);
    }

    #[test]
    fn vlan_is_ignored_and_ports_matter() {
        let mut tagged = headers(1, 5000, 2, 80);
        tagged.vlan = 120;
        assert_eq!(
            FlowKey::of(&tagged).0,
            FlowKey::of(&headers(1, 5000, 2, 80)).0
        );
        assert_ne!(
            FlowKey::of(&headers(1, 5001, 2, 80)).0,
            FlowKey::of(&headers(1, 5000, 2, 80)).0
        );
    }

    #[test]
    fn families_and_protocols_differ() {
        let v4 = headers(1, 1, 2, 2);
        let mut v6 = v4;
        v6.ipv6 = true;
        let mut udp = v4;
        udp.protocol = 17;
        let keys = [FlowKey::of(&v4).0, FlowKey::of(&v6).0, FlowKey::of(&udp).0];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
    }

    #[test]
    fn other_protocols_ignore_ports() {
        let mut gre = headers(1, 7, 2, 9);
        gre.transport = Transport::Other;
        gre.protocol = 47;
        let key = FlowKey::of(&gre).0;
        assert_eq!((key.lo_port, key.hi_port), (0, 0));
    }

    #[test]
    fn hash_is_stable_and_shards_spread() {
        let hasher = FlowHasher;
        let (key, _, _) = FlowKey::of(&headers(1, 5000, 2, 80));
        assert_eq!(hasher.hash(&key), hasher.hash(&key));
        let mut seen = [0usize; 16];
        for port in 0..4096u16 {
            let (key, _, _) = FlowKey::of(&headers(1, port, 2, 80));
            seen[FlowHasher::shard(hasher.hash(&key), 16)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "uneven shards: {seen:?}");
    }
}
