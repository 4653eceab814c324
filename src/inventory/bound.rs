//! The inventory's bound: what a flood of spoofed sources can and cannot do.
//!
//! A device is recorded only once it has sent a packet, so a sweep of
//! addresses that do not exist adds none; a flood of spoofed sources does
//! add devices (each sent a SYN). Past the capacity the inventory takes new
//! devices anyway and, at the next [`Inventory::settle`], evicts the
//! least-evidenced ones: without a vendor MAC first, then without an
//! identified application, then with the fewest flows, then the least
//! recently seen (address last, so that the choice is a total order). A
//! flood's devices (one flow, no vendor, no application) go before any
//! device with evidence, and a real device seen after the flood is kept.
//!
//! Settling is the only place devices are evicted: the replay settles after
//! each batch, once every shard has fed the inventory, so what is evicted
//! depends on the capture (and the batch size), never on the thread count.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::{DeviceKey, Inventory};

/// How far below the capacity a settle evicts: a sixteenth, so that a flood
/// makes one pass over the devices per `capacity / 16` new ones rather than
/// one per new device.
const HEADROOM_DIVISOR: usize = 16;

/// A device's place in the eviction order: the smallest goes first.
type Evidence = (bool, bool, u64, u64, DeviceKey);

impl Inventory {
    /// Counts the flows started since the last settle whose responder is no
    /// device (it never answered), then evicts the least-evidenced devices
    /// down to a sixteenth under the capacity if the inventory is over it.
    /// Call it where every worker has fed the inventory (the replay: after
    /// each batch) or after a worker's feed (the daemon); settles do not
    /// run at once (a second one returns at once). Returns the devices
    /// evicted.
    pub fn settle(&self) -> usize {
        if self.settling.swap(true, Ordering::Acquire) {
            return 0;
        }
        let mut unanswered = 0;
        while let Ok(key) = self.pending_out.try_recv() {
            if !self.devices.contains_key(&key) {
                unanswered += 1;
            }
        }
        self.unanswered.fetch_add(unanswered, Ordering::Relaxed);
        let evicted = if self.devices.len() > self.capacity {
            self.evict_least_evidenced()
        } else {
            0
        };
        self.settling.store(false, Ordering::Release);
        evicted
    }

    fn evict_least_evidenced(&self) -> usize {
        let target = self.capacity - self.capacity / HEADROOM_DIVISOR;
        let mut order: Vec<Evidence> = self
            .devices
            .iter()
            .map(|entry| {
                let device = entry.value();
                (
                    device.has_vendor,
                    device.has_app(),
                    device.flows(),
                    device.last_ns,
                    *entry.key(),
                )
            })
            .collect();
        let excess = order.len().saturating_sub(target);
        if excess == 0 {
            return 0;
        }
        if excess < order.len() {
            order.select_nth_unstable(excess - 1);
        }
        let mut evicted = 0;
        for (.., key) in &order[..excess] {
            if let Some((_, device)) = self.devices.remove(key) {
                if let Some(counted) = &device.counted {
                    self.uncount(counted);
                }
                evicted += 1;
            }
        }
        self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        self.forget_unused_macs();
        evicted
    }

    /// Forgets what is kept per MAC address (its first users, its DHCP
    /// hostnames) for MACs no device holds any more, once there are more of
    /// them than the capacity: a flood of random MACs stays bounded too.
    fn forget_unused_macs(&self) {
        if self.mac_users.len() <= self.capacity && self.hostnames_by_mac.len() <= self.capacity {
            return;
        }
        let held: HashSet<[u8; 6]> = self
            .devices
            .iter()
            .flat_map(|entry| entry.value().macs.keys().copied().collect::<Vec<_>>())
            .collect();
        let leased: HashSet<[u8; 6]> = self
            .leases
            .iter()
            .flat_map(|entry| entry.value().keys().copied().collect::<Vec<_>>())
            .collect();
        if self.mac_users.len() > self.capacity {
            self.mac_users.retain(|mac, _| held.contains(mac));
        }
        if self.hostnames_by_mac.len() > self.capacity {
            self.hostnames_by_mac
                .retain(|mac, _| held.contains(mac) || leased.contains(mac));
        }
    }
}
