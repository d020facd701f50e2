//! A set of input offsets as sorted, disjoint, inclusive ranges: the offsets a checkpoint
//! has counted but whose acks may not have reached the source.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OffsetSet {
    ranges: Vec<(u64, u64)>,
}

impl OffsetSet {
    pub(crate) fn new() -> OffsetSet {
        OffsetSet::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The index of the first range ending at or after `x`.
    fn find(&self, x: u64) -> usize {
        self.ranges.partition_point(|&(_, end)| end < x)
    }

    pub(crate) fn contains(&self, x: u64) -> bool {
        self.ranges
            .get(self.find(x))
            .is_some_and(|&(start, _)| start <= x)
    }

    pub(crate) fn insert(&mut self, x: u64) {
        // The usual case: the next offset after the last one.
        if let Some(last) = self.ranges.last_mut() {
            if last.1.checked_add(1) == Some(x) {
                last.1 = x;
                return;
            }
            if last.1 < x {
                self.ranges.push((x, x));
                return;
            }
        }
        let i = self.find(x);
        if self.ranges.get(i).is_some_and(|&(s, _)| s <= x) {
            return;
        }
        let joins_prev = i > 0 && self.ranges[i - 1].1.checked_add(1) == Some(x);
        let joins_next = self
            .ranges
            .get(i)
            .is_some_and(|&(s, _)| Some(s) == x.checked_add(1));
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = x,
            (false, true) => self.ranges[i].0 = x,
            (false, false) => self.ranges.insert(i, (x, x)),
        }
    }

    pub(crate) fn remove(&mut self, x: u64) {
        let i = self.find(x);
        let Some(&(s, e)) = self.ranges.get(i) else {
            return;
        };
        if x < s {
            return;
        }
        match (s == x, e == x) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = x + 1,
            (false, true) => self.ranges[i].1 = x - 1,
            (false, false) => {
                self.ranges[i].1 = x - 1;
                self.ranges.insert(i + 1, (x + 1, e));
            }
        }
    }

    /// Drops every offset at or below `committed` (acked: the source will not hand them out
    /// again).
    pub(crate) fn forget_through(&mut self, committed: u64) {
        self.ranges.retain(|&(_, e)| e > committed);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(committed.saturating_add(1));
        }
    }

    pub(crate) fn union(&mut self, other: &OffsetSet) {
        let mut all: Vec<(u64, u64)> = self.ranges.iter().chain(&other.ranges).copied().collect();
        all.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (s, e) in all {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetSet;

    #[test]
    fn inserts_removes_and_forgets_like_a_set() {
        let mut reference = std::collections::BTreeSet::new();
        let mut set = OffsetSet::new();
        let mut x: u64 = 7;
        for i in 0..2_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 33) % 300;
            if i % 3 == 0 {
                set.remove(v);
                reference.remove(&v);
            } else {
                set.insert(v);
                reference.insert(v);
            }
            if i % 500 == 499 {
                set.forget_through(i / 10);
                reference.retain(|&r| r > i / 10);
            }
            for probe in 0..300 {
                assert_eq!(set.contains(probe), reference.contains(&probe), "{probe}");
            }
        }
        let mut copy = OffsetSet::new();
        copy.union(&set);
        assert_eq!(copy, set);
    }
}
