//! What a reader handed out and what came back settled: the confirmed position is the last
//! one whose every predecessor, in the database's order, was acked or termed. Only that
//! position is ever written as the checkpoint, so a restart never skips an unsettled change.
//!
//! A nak rewinds: every change after the confirmed position is read again (after the nak's
//! delay), in order, and settles of deliveries handed out before the rewind are ignored
//! (their generation is gone). The nak'd change comes back with its delivery count raised,
//! so the runner's attempts are counted across rewinds.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
struct Entry<P> {
    pos: P,
    done: bool,
    mark: bool,
}

#[derive(Debug)]
pub(crate) struct Tracker<P> {
    entries: VecDeque<Entry<P>>,
    base: u64,
    generation: u64,
    confirmed: Option<P>,
    handed: Option<P>,
    retries: HashMap<P, u32>,
    rewind: Option<Instant>,
    last_mark: Option<P>,
}

/// A delivery's ticket: where it sits, and in which generation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) seq: u64,
    pub(crate) generation: u64,
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
impl<P: Copy + Ord + Hash> Tracker<P> {
    pub(crate) fn new(confirmed: Option<P>) -> Tracker<P> {
        Tracker {
            entries: VecDeque::new(),
            base: 0,
            generation: 0,
            confirmed,
            handed: confirmed,
            retries: HashMap::new(),
            rewind: None,
            last_mark: None,
        }
    }

    /// Whether `pos` was handed out already (in this generation) or confirmed.
    pub(crate) fn seen(&self, pos: &P) -> bool {
        self.handed.as_ref().is_some_and(|h| pos <= h)
    }

    /// Records `pos` as handed out (`done` for a marker nobody settles, such as a commit).
    /// Returns the ticket and the delivery count.
    ///
    /// While a rewind is pending nothing is recorded: whatever is read then comes from
    /// before the rewind (a reader decoding ahead) and will be read again; its ticket
    /// belongs to no generation, so settling it does nothing.
    pub(crate) fn push(&mut self, pos: P, done: bool) -> (Ticket, u32) {
        if self.rewind.is_some() {
            let ticket = Ticket {
                seq: 0,
                generation: u64::MAX,
            };
            return (ticket, self.retries.get(&pos).copied().unwrap_or(0) + 1);
        }
        let seq = self.base + self.entries.len() as u64;
        self.entries.push_back(Entry {
            pos,
            done,
            mark: false,
        });
        self.handed = Some(pos);
        let deliveries = self.retries.get(&pos).copied().unwrap_or(0) + 1;
        (
            Ticket {
                seq,
                generation: self.generation,
            },
            deliveries,
        )
    }

    /// Records a mark (a transaction's end): settled already, and remembered once confirmed.
    pub(crate) fn push_mark(&mut self, pos: P) {
        if self.rewind.is_some() {
            return;
        }
        self.entries.push_back(Entry {
            pos,
            done: true,
            mark: true,
        });
        self.handed = Some(pos);
    }

    /// The last mark the confirmed position passed.
    pub(crate) fn last_mark(&self) -> Option<P> {
        self.last_mark
    }

    /// Marks a delivery settled (ack or term); stale tickets are ignored.
    pub(crate) fn settle(&mut self, t: Ticket) {
        if t.generation != self.generation || t.seq < self.base {
            return;
        }
        if let Some(e) = self.entries.get_mut((t.seq - self.base) as usize) {
            e.done = true;
        }
    }

    /// Moves the confirmed position over the settled prefix; the new position if it moved.
    pub(crate) fn drain(&mut self) -> Option<P> {
        let mut moved = None;
        while self.entries.front().is_some_and(|e| e.done) {
            let e = self.entries.pop_front().expect("front checked");
            self.base += 1;
            if e.mark {
                self.last_mark = Some(e.pos);
            }
            moved = Some(e.pos);
        }
        if let Some(p) = moved {
            self.confirmed = Some(p);
            self.retries.retain(|k, _| *k > p);
        }
        moved
    }

    /// A nak: everything after the confirmed position is read again from `at`.
    /// Returns false for a stale ticket (nothing happens).
    pub(crate) fn nak(&mut self, t: Ticket, at: Instant) -> bool {
        if t.generation != self.generation || t.seq < self.base {
            return false;
        }
        let Some(e) = self.entries.get((t.seq - self.base) as usize) else {
            return false;
        };
        *self.retries.entry(e.pos).or_insert(0) += 1;
        self.drain();
        self.base += self.entries.len() as u64;
        self.entries.clear();
        self.generation += 1;
        self.handed = self.confirmed;
        self.rewind = Some(at);
        true
    }

    /// A pending rewind (taken: the reader starts over once `Instant` has passed).
    pub(crate) fn take_rewind(&mut self) -> Option<Instant> {
        self.rewind.take()
    }

    /// A nak is waiting to be taken: what was handed out after it is not confirmed.
    pub(crate) fn rewind_pending(&self) -> bool {
        self.rewind.is_some()
    }

    pub(crate) fn confirmed(&self) -> Option<P> {
        self.confirmed
    }

    /// Handed out and not yet confirmed.
    pub(crate) fn in_flight(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_between_a_nak_and_its_rewind() {
        let mut t = Tracker::<u64>::new(None);
        let (a, _) = t.push(1, false);
        let (b, _) = t.push(2, false);
        assert!(t.nak(a, Instant::now()));
        // read ahead from the old stream before the rewind was taken: not recorded
        let (late, _) = t.push(3, false);
        t.push_mark(4);
        assert_eq!(t.in_flight(), 0);
        assert!(!t.seen(&3));
        t.settle(late);
        t.settle(b);
        assert_eq!(t.drain(), None);
        // after the rewind, the re-read is recorded from the start
        assert!(t.take_rewind().is_some());
        let (a2, n) = t.push(1, false);
        assert_eq!(n, 2);
        t.settle(a2);
        assert_eq!(t.drain(), Some(1));
    }

    #[test]
    fn confirms_the_settled_prefix_only() {
        let mut t = Tracker::<u64>::new(None);
        let (a, _) = t.push(1, false);
        let (b, _) = t.push(2, false);
        let (_c, _) = t.push(3, true);
        t.settle(b);
        assert_eq!(t.drain(), None);
        t.settle(a);
        assert_eq!(t.drain(), Some(3));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_nak_rewinds_and_counts() {
        let mut t = Tracker::<u64>::new(Some(0));
        let (a, _) = t.push(1, false);
        let (b, _) = t.push(2, false);
        t.settle(a);
        assert!(t.nak(b, Instant::now()));
        assert_eq!(t.confirmed(), Some(1));
        assert!(!t.seen(&2));
        t.settle(b); // stale
        assert_eq!(t.drain(), None);
        let (_, n) = t.push(2, false);
        assert_eq!(n, 2);
        assert!(t.take_rewind().is_some());
    }
}
