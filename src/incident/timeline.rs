//! The capture times of a batch of frames, arranged so that the fold finds
//! "the first packet more than `idle` after `last_seen`" (contract section
//! 7) without visiting every frame: most incidents are not over within a
//! batch, which one comparison with the batch's suffix maximum tells.

/// Frames per block of [`Timeline::block_max`].
const BLOCK: usize = 64;

/// A batch's frame times by capture position.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Position of the batch's first frame.
    base: u64,
    /// Each frame's capture time.
    ts: Vec<u64>,
    /// The latest time in each block of [`BLOCK`] frames.
    block_max: Vec<u64>,
    /// `block_suffix_max[b]`: the latest time from block `b` to the batch's
    /// end.
    block_suffix_max: Vec<u64>,
}

impl Timeline {
    /// Sets the batch: frames from position `base` with times `ts`.
    pub fn set(&mut self, base: u64, ts: impl Iterator<Item = u64>) {
        self.base = base;
        self.ts.clear();
        self.ts.extend(ts);
        self.block_max.clear();
        // A fold rather than `max()`: no `Option` per frame, and the
        // compiler unrolls it.
        self.block_max.extend(
            self.ts
                .chunks(BLOCK)
                .map(|c| c.iter().fold(0, |latest, &t| latest.max(t))),
        );
        self.block_suffix_max.clear();
        self.block_suffix_max.resize(self.block_max.len(), 0);
        let mut latest = 0;
        for (b, &t) in self.block_max.iter().enumerate().rev() {
            latest = latest.max(t);
            self.block_suffix_max[b] = latest;
        }
    }

    /// Position of the batch's first frame.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Position just after the batch's last frame.
    pub fn end(&self) -> u64 {
        self.base + self.ts.len() as u64
    }

    /// True when the batch has no frame.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The capture time of the frame at `position` (in the batch).
    pub fn ts_at(&self, position: u64) -> Option<u64> {
        let i = position.checked_sub(self.base)?;
        self.ts.get(usize::try_from(i).ok()?).copied()
    }

    /// The last frame's time.
    pub fn last_ts(&self) -> Option<u64> {
        self.ts.last().copied()
    }

    /// The first position at or after `from` (clamped to the batch) whose
    /// frame time is later than `deadline`, with that time.
    pub fn first_after(&self, from: u64, deadline: u64) -> Option<(u64, u64)> {
        let start = usize::try_from(from.saturating_sub(self.base)).ok()?;
        if start >= self.ts.len() || self.block_suffix_max[start / BLOCK] <= deadline {
            return None;
        }
        // The rest of `start`'s block, then whole blocks by their maximum.
        let block_end = ((start / BLOCK) + 1) * BLOCK;
        for i in start..block_end.min(self.ts.len()) {
            if self.ts[i] > deadline {
                return Some((self.base + i as u64, self.ts[i]));
            }
        }
        let first_block = block_end / BLOCK;
        for block in first_block..self.block_max.len() {
            if self.block_suffix_max[block] <= deadline {
                return None;
            }
            if self.block_max[block] > deadline {
                let lo = block * BLOCK;
                for i in lo..(lo + BLOCK).min(self.ts.len()) {
                    if self.ts[i] > deadline {
                        return Some((self.base + i as u64, self.ts[i]));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_after_agrees_with_a_scan() {
        let mut rng = fastrand::Rng::with_seed(5);
        for round in 0..200 {
            let n = rng.usize(0..400);
            // Mostly rising, sometimes stepping back (merged captures).
            let mut t = 1_000u64;
            let ts: Vec<u64> = (0..n)
                .map(|_| {
                    if rng.u8(..) < 20 {
                        t = t.saturating_sub(rng.u64(0..50));
                    } else {
                        t += rng.u64(0..10);
                    }
                    t
                })
                .collect();
            let mut timeline = Timeline::default();
            let base = round * 1000;
            timeline.set(base, ts.iter().copied());
            for _ in 0..50 {
                let from = base + rng.u64(0..(n as u64 + 2));
                let deadline = rng.u64(900..(t + 20));
                let expected = (from.max(base)..base + n as u64)
                    .find(|&p| ts[(p - base) as usize] > deadline)
                    .map(|p| (p, ts[(p - base) as usize]));
                assert_eq!(timeline.first_after(from, deadline), expected);
            }
        }
    }
}
