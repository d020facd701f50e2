//! Loom models of the ring. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p syncbus-core --lib ring --release`
//! (`LOOM_MAX_PREEMPTIONS` overrides each model's preemption bound).

use loom::thread;

use super::sync::Arc;
use super::{Left, Read, Reader, Ring};
use crate::overflow::Overflow;
use crate::queue::Pushed;
use crate::sink::Wait;

/// A model with at most `preemptions` forced context switches per execution (all
/// interleavings up to that bound; loom's default is unbounded).
///
/// Each model runs twice: with plain loads, then with loads as read-modify-writes (see
/// `sync::AtomicU64` under loom for why). `--nocapture` shows the executions and times.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let f = std::sync::Arc::new(f);
    for rmw in [false, true] {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&runs);
        let f = std::sync::Arc::clone(&f);
        let start = std::time::Instant::now();
        let _mode = rmw.then(super::sync::loads_as_rmw);
        builder.check(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            f();
        });
        println!(
            "{} executions in {:?} (loads as {}, preemption bound {:?})",
            runs.load(Ordering::Relaxed),
            start.elapsed(),
            if rmw { "RMWs" } else { "loads" },
            builder.preemption_bound
        );
    }
}

/// Reads until `want` events came, yielding to the model while there are none.
fn read_n<T: Copy>(reader: &mut Reader<T>, want: usize, max: usize) -> Vec<T> {
    let mut got = Vec::new();
    while got.len() < want {
        match reader.read_batch(max, |&v| got.push(v)) {
            Read::Got(_) => {}
            Read::Empty => thread::yield_now(),
            Read::Closed => break,
        }
    }
    got
}

/// Reads until the end.
fn read_to_end<T: Copy>(reader: &mut Reader<T>, max: usize) -> Vec<T> {
    read_n(reader, usize::MAX, max)
}

fn accepted<T>(pushed: Pushed<T>) -> bool {
    match pushed {
        Pushed::Queued | Pushed::Displaced => true,
        Pushed::Closed(_) => false,
        Pushed::Full(_) | Pushed::WouldBlock(_) => panic!("refused for room"),
    }
}

/// Two publishers claim and publish in any order; the reader gets each event once, each
/// publisher's in order.
#[test]
fn two_publishers_one_reader() {
    model(3, || {
        let ring = Arc::new(Ring::<u32>::new(4, Overflow::Block));
        let mut reader = Reader::join(&ring);
        let publishers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    for i in 0..2 {
                        assert!(accepted(ring.push(p * 10 + i, Wait::Never)));
                    }
                })
            })
            .collect();
        let got = read_n(&mut reader, 4, 4);
        for p in publishers {
            p.join().unwrap();
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 10, 11], "lost or duplicated: {got:?}");
        for p in [0, 10] {
            let mine: Vec<_> = got.iter().filter(|&&v| v / 10 == p / 10).collect();
            assert_eq!(mine, [&p, &(p + 1)], "out of order: {got:?}");
        }
    });
}

/// One publisher laps a capacity-2 ring twice over, waiting for the reader (Block).
#[test]
fn wrap_around_capacity_2() {
    model(3, || {
        let ring = Arc::new(Ring::<u32>::new(2, Overflow::Block));
        let mut reader = Reader::join(&ring);
        let publisher = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for i in 0..5 {
                    assert!(accepted(ring.push(i, Wait::Block)));
                }
            })
        };
        let got = read_n(&mut reader, 5, 2);
        publisher.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    });
}

/// A DropOldest publisher laps a reader that is reading: the reader never touches a slot
/// while it is written (loom's cell tracking would fail the model), reads only events in
/// order, and what it read plus what it lost is what was published.
#[test]
fn drop_oldest_lag_races_the_reader() {
    model(3, || {
        let ring = Arc::new(Ring::<u32>::new(2, Overflow::DropOldest));
        let mut reader = Reader::join(&ring);
        let publisher = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for i in 0..4 {
                    assert!(accepted(ring.push(i, Wait::Never)));
                }
            })
        };
        let mut got = Vec::new();
        for _ in 0..2 {
            reader.read_batch(2, |&v| got.push(v));
        }
        publisher.join().unwrap();
        reader.read_batch(2, |&v| got.push(v));
        let lost = reader.take_lost();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "order: {got:?}");
        assert_eq!(got.len() as u64 + lost, 4, "read {got:?}, lost {lost}");
        // The newest two always survive.
        assert_eq!(&got[got.len() - 2..], [2, 3]);
    });
}

/// A close racing a push and a reader: the push is refused, or the reader reads it before
/// it sees the end; never accepted and lost. The unread count at the end is exact.
#[test]
fn close_races_a_push() {
    model(3, || {
        let ring = Arc::new(Ring::<u32>::new(2, Overflow::Block));
        let mut reader = Reader::join(&ring);
        let publisher = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || accepted(ring.push(7, Wait::Never)))
        };
        let closer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.close())
        };
        let got = read_to_end(&mut reader, 2);
        let taken = publisher.join().unwrap();
        let end = closer.join().unwrap();
        assert_eq!(got, if taken { vec![7] } else { vec![] });
        assert_eq!(end, u64::from(taken));
        assert_eq!(reader.leave(), Left::default());
    });
}

/// A reader joins while a publisher wraps a ring nobody gates yet: it must not start on a
/// slot that is being overwritten (loom's cell tracking), and it reads a gapless run of the
/// accepted events from where it joined.
#[test]
fn join_races_a_wrapping_publisher() {
    model(3, || {
        let ring = Arc::new(Ring::<u32>::new(2, Overflow::Reject));
        let publisher = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut taken = Vec::new();
                for i in 0..4 {
                    match ring.push(i, Wait::Never) {
                        Pushed::Queued => taken.push(i),
                        Pushed::Full(v) => assert_eq!(v, i),
                        _ => panic!("unexpected push result"),
                    }
                }
                taken
            })
        };
        let mut reader = Reader::join(&ring);
        let mut got = Vec::new();
        reader.read_batch(2, |&v| got.push(v));
        let taken = publisher.join().unwrap();
        reader.read_batch(2, |&v| got.push(v));
        assert!(taken.len() >= 2, "refused with room: {taken:?}");
        assert!(taken.ends_with(&got), "read {got:?} of {taken:?}");
        assert_eq!(reader.unread(), 0, "read {got:?} of {taken:?}");
    });
}

/// Two DropOldest publishers lap a capacity-2 ring and a reader: a publisher never writes
/// a slot whose previous occupant is still being written, and every value is dropped once
/// (loom checks the `Arc` counts at the end of each execution).
#[test]
fn two_publishers_lap_each_other() {
    model(3, || {
        let ring = Arc::new(Ring::<Arc<u32>>::new(2, Overflow::DropOldest));
        let mut reader = Reader::join(&ring);
        let publishers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    for i in 0..2 {
                        assert!(accepted(ring.push(Arc::new(p * 10 + i), Wait::Never)));
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        reader.read_batch(1, |v| got.push(**v));
        for p in publishers {
            p.join().unwrap();
        }
        reader.read_batch(2, |v| got.push(**v));
        let lost = reader.take_lost();
        assert_eq!(got.len() as u64 + lost, 4, "read {got:?}, lost {lost}");
        for p in [0, 10] {
            let mine: Vec<_> = got.iter().filter(|&&v| v / 10 == p / 10).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "out of order: {got:?}"
            );
        }
    });
}

/// Pushes events 1 and 2 for every member from another thread, answering each push's
/// count (the members it was for).
fn push_two_tagged(ring: &Arc<Ring<u64>>) -> thread::JoinHandle<Vec<u8>> {
    let ring = Arc::clone(ring);
    thread::spawn(move || {
        (1..=2u64)
            .map(|v| ring.push_tagged(v, Wait::Never, super::ALL).1)
            .collect()
    })
}

/// A member leaves while a publisher pushes two events and another member stays: each push
/// counts exactly the members that read it, and the one leaving reads a prefix.
#[test]
fn a_member_leaving_races_a_publisher_and_every_count_is_exact() {
    model(3, || {
        let ring = Arc::new(Ring::new(4, Overflow::Block));
        let mut stays = Reader::join_member(&ring, 0).unwrap();
        let mut leaves = Reader::join_member(&ring, 1).unwrap();
        let publisher = push_two_tagged(&ring);
        let leaving = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let end = ring.leave_member(1);
                let mut got = Vec::new();
                while leaves.position() < end {
                    leaves.read_batch_tagged(1, |_, tag, &v| {
                        if tag & 0b10 != 0 {
                            got.push(v);
                        }
                    });
                    thread::yield_now();
                }
                (end, got)
            })
        };
        let counts = publisher.join().unwrap();
        let (end, left_with) = leaving.join().unwrap();
        let mut stayed_with = Vec::new();
        while stayed_with.len() < 2 {
            stays.read_batch_tagged(4, |_, tag, &v| {
                assert!(tag & 0b01 != 0, "every event is the staying member's");
                stayed_with.push(v);
            });
            thread::yield_now();
        }
        assert_eq!(stayed_with, vec![1, 2]);
        assert_eq!(
            left_with,
            (1..=end).collect::<Vec<_>>(),
            "a prefix up to its leave"
        );
        for (v, count) in (1..=2u64).zip(counts) {
            let read_by_leaver = left_with.contains(&v);
            assert_eq!(count, 0b01 | if read_by_leaver { 0b10 } else { 0 });
        }
    });
}

/// A member joins while a publisher pushes two events: it reads exactly the events whose
/// push counted it, a suffix.
#[test]
fn a_member_joining_races_a_publisher_and_every_count_is_exact() {
    model(3, || {
        let ring = Arc::new(Ring::new(4, Overflow::Block));
        let mut first = Reader::join_member(&ring, 0).unwrap();
        let publisher = push_two_tagged(&ring);
        let mut late = Reader::join_member(&ring, 1).unwrap();
        let counts = publisher.join().unwrap();
        let mut got = Vec::new();
        while late.position() < 2 {
            late.read_batch_tagged(4, |_, tag, &v| {
                if tag & 0b10 != 0 {
                    got.push(v);
                }
            });
            thread::yield_now();
        }
        assert_eq!(read_n(&mut first, 2, 4), vec![1, 2]);
        for (v, count) in (1..=2u64).zip(counts) {
            let read_by_late = got.contains(&v);
            assert_eq!(count, 0b01 | if read_by_late { 0b10 } else { 0 });
        }
        assert!(
            got.is_empty() || *got.last().unwrap() == 2,
            "a suffix: {got:?}"
        );
    });
}
