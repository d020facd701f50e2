use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as StdOrdering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{Left, Read, Reader, Ring, ALL};
use crate::overflow::Overflow;
use crate::queue::Pushed;
use crate::sink::Wait;

fn ring<T>(capacity: usize, overflow: Overflow) -> Arc<Ring<T>> {
    Arc::new(Ring::new(capacity, overflow))
}

/// Everything the reader can read now, in order.
fn drain<T: Clone>(reader: &mut Reader<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Read::Got(_) = reader.read_batch(usize::MAX, |v| out.push(v.clone())) {}
    out
}

fn queued<T>(pushed: Pushed<T>) {
    assert!(
        matches!(pushed, Pushed::Queued),
        "not queued: {:?}",
        kind(&pushed)
    );
}

fn kind<T>(pushed: &Pushed<T>) -> &'static str {
    match pushed {
        Pushed::Queued => "Queued",
        Pushed::Displaced => "Displaced",
        Pushed::Full(_) => "Full",
        Pushed::WouldBlock(_) => "WouldBlock",
        Pushed::Closed(_) => "Closed",
    }
}

#[test]
fn slots_round_up_to_a_power_of_two_only_when_it_is_close() {
    for (asked, capacity, slots) in [
        (0, 1, 1),
        (5, 5, 5),
        (60, 60, 64),
        (64, 64, 64),
        (1025, 1025, 1025),
    ] {
        let ring = Ring::<u8>::new(asked, Overflow::Block);
        assert_eq!((ring.capacity(), ring.slot_count()), (capacity, slots));
    }
}

#[test]
fn a_capacity_below_the_slot_count_holds_exactly() {
    // 60 events ahead of the reader in 64 slots, and 5 in 5 (found by division), under
    // each policy, across many wraps.
    for (capacity, overflow) in [60, 5].into_iter().flat_map(|c| {
        [Overflow::Block, Overflow::Reject, Overflow::DropOldest].map(move |o| (c, o))
    }) {
        let ring = ring::<u64>(capacity, overflow);
        let mut r = Reader::join(&ring);
        let c = capacity as u64;
        for round in 0..200u64 {
            let base = round * (c + 1);
            for i in 0..c {
                queued(ring.push(base + i, Wait::Never));
            }
            let one_more = ring.push(base + c, Wait::Never);
            match overflow {
                Overflow::Block => assert_eq!(kind(&one_more), "WouldBlock"),
                Overflow::Reject => assert_eq!(kind(&one_more), "Full"),
                _ => assert_eq!(kind(&one_more), "Displaced"),
            }
            assert_eq!(ring.backlog(), c);
            let mut got = Vec::new();
            r.read_batch(usize::MAX, |&v| got.push(v));
            let first = if overflow == Overflow::DropOldest {
                assert_eq!(r.take_lost(), 1);
                base + 1
            } else {
                base
            };
            let want: Vec<u64> = (first..first + c).collect();
            assert_eq!(got, want);
            assert_eq!(ring.backlog(), 0);
        }
    }
}

#[test]
fn wraps_around_many_times_in_order() {
    for overflow in [Overflow::Block, Overflow::Reject, Overflow::DropOldest] {
        let ring = ring::<u64>(4, overflow);
        let mut a = Reader::join(&ring);
        let mut b = Reader::join(&ring);
        let mut next_a = 0;
        let mut next_b = 0;
        for round in 0..2_500u64 {
            for i in 0..3 {
                queued(ring.push(round * 3 + i, Wait::Never));
            }
            let got = a.read_batch(2, |&v| {
                assert_eq!(v, next_a);
                next_a += 1;
            });
            assert_eq!(got, Read::Got(2));
            b.read_batch(usize::MAX, |&v| {
                assert_eq!(v, next_b);
                next_b += 1;
            });
            a.read_batch(usize::MAX, |&v| {
                assert_eq!(v, next_a);
                next_a += 1;
            });
        }
        assert_eq!((next_a, next_b), (7_500, 7_500), "{overflow:?}");
        assert_eq!(a.take_lost() + b.take_lost(), 0);
    }
}

#[test]
fn a_reader_joins_at_the_tail() {
    let ring = ring::<u32>(8, Overflow::Block);
    queued(ring.push(1, Wait::Never));
    let mut late = Reader::join(&ring);
    assert_eq!(late.read_batch(8, |_| {}), Read::Empty);
    queued(ring.push(2, Wait::Never));
    assert_eq!(drain(&mut late), vec![2]);
}

#[test]
fn with_no_reader_nothing_gates() {
    let ring = ring::<u32>(2, Overflow::Reject);
    for i in 0..10 {
        queued(ring.push(i, Wait::Never));
    }
    let mut r = Reader::join(&ring);
    queued(ring.push(10, Wait::Never));
    assert_eq!(drain(&mut r), vec![10]);
}

#[test]
fn reject_hands_the_value_back_when_the_slowest_reader_is_a_lap_behind() {
    let ring = ring::<String>(2, Overflow::Reject);
    let mut fast = Reader::join(&ring);
    let mut slow = Reader::join(&ring);
    queued(ring.push("a".into(), Wait::Block));
    queued(ring.push("b".into(), Wait::Block));
    assert_eq!(drain(&mut fast), ["a", "b"]);
    match ring.push("c".into(), Wait::Block) {
        Pushed::Full(v) => assert_eq!(v, "c"),
        other => panic!("expected Full, got {}", kind(&other)),
    }
    assert_eq!(slow.read_batch(1, |v| assert_eq!(v, "a")), Read::Got(1));
    queued(ring.push("c".into(), Wait::Block));
    assert_eq!(drain(&mut slow), ["b", "c"]);
    assert_eq!(drain(&mut fast), ["c"]);
}

#[test]
fn block_refuses_without_waiting_then_waits_for_the_slowest_reader() {
    let ring = ring::<u32>(4, Overflow::Block);
    let mut fast = Reader::join(&ring);
    let mut slow = Reader::join(&ring);
    for i in 0..4 {
        queued(ring.push(i, Wait::Never));
    }
    assert!(matches!(ring.push(9, Wait::Never), Pushed::WouldBlock(9)));
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let ring = Arc::clone(&ring);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let pushed = ring.push(4, Wait::Block);
            done.store(true, StdOrdering::SeqCst);
            matches!(pushed, Pushed::Queued)
        })
    };
    assert_eq!(drain(&mut fast), [0, 1, 2, 3]);
    thread::sleep(Duration::from_millis(50));
    assert!(!done.load(StdOrdering::SeqCst), "passed the slow reader");
    assert_eq!(slow.read_batch(1, |&v| assert_eq!(v, 0)), Read::Got(1));
    assert!(publisher.join().unwrap());
    assert_eq!(drain(&mut slow), [1, 2, 3, 4]);
    assert_eq!(drain(&mut fast), [4]);
}

#[test]
fn room_tells_an_async_publisher_when_to_retry() {
    use crate::sink::Room;
    let ring = ring::<u32>(2, Overflow::Block);
    let mut r = Reader::join(&ring);
    assert!(ring.has_room());
    queued(ring.push(0, Wait::Never));
    queued(ring.push(1, Wait::Never));
    assert!(!ring.has_room());
    assert_eq!(r.read_batch(1, |_| {}), Read::Got(1));
    assert!(ring.has_room());
    queued(ring.push(2, Wait::Never));
    assert!(!ring.has_room());
    ring.close();
    assert!(
        ring.has_room(),
        "a closed ring refuses at once, so waiting is over"
    );
}

#[test]
fn a_blocked_push_is_refused_by_the_close() {
    let ring = ring::<u32>(1, Overflow::Block);
    let _stuck = Reader::join(&ring);
    queued(ring.push(0, Wait::Never));
    let publisher = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || ring.push(1, Wait::Block))
    };
    thread::sleep(Duration::from_millis(20));
    assert_eq!(ring.close(), 1);
    assert!(matches!(publisher.join().unwrap(), Pushed::Closed(1)));
}

#[test]
fn drop_oldest_counts_exactly_what_each_lagging_reader_skipped() {
    let ring = ring::<u64>(4, Overflow::DropOldest);
    let mut fast = Reader::join(&ring);
    let mut slow = Reader::join(&ring);
    let mut idle = Reader::join(&ring);
    assert_eq!(slow.read_batch(usize::MAX, |_| {}), Read::Empty);
    let mut displaced = 0;
    for i in 0..10u64 {
        match ring.push(i, Wait::Never) {
            Pushed::Queued => {}
            Pushed::Displaced => displaced += 1,
            other => panic!("unexpected {}", kind(&other)),
        }
        if i == 1 {
            // The slow reader reads 0 and 1, then falls behind.
            assert_eq!(drain(&mut slow), [0, 1]);
        }
        assert_eq!(fast.read_batch(1, |&v| assert_eq!(v, i)), Read::Got(1));
    }
    // Pushes 4..=9 each had to move someone (the idle reader from 4 on).
    assert_eq!(displaced, 6);
    assert_eq!(fast.take_lost(), 0);
    assert_eq!(drain(&mut slow), [6, 7, 8, 9]);
    assert_eq!(slow.take_lost(), 4);
    assert_eq!(idle.take_lost(), 6);
    assert_eq!(idle.unread(), 4);
    assert_eq!(drain(&mut idle), [6, 7, 8, 9]);
    assert_eq!(idle.take_lost(), 0);
}

#[test]
fn readers_join_and_leave_while_publishing() {
    const EVENTS: u64 = 200_000;
    let ring = ring::<u64>(64, Overflow::Block);
    // One reader for the whole run, so every event is gated by someone.
    let mut anchor = Reader::join(&ring);
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let ring = Arc::clone(&ring);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut joins = 0u64;
                while !stop.load(StdOrdering::Relaxed) {
                    let mut r = Reader::join(&ring);
                    joins += 1;
                    // Each joined reader sees a gapless, increasing run of events.
                    let mut last: Option<u64> = None;
                    for _ in 0..fastrand_len(joins) {
                        let read = r.read_batch(16, |&v| {
                            if let Some(l) = last {
                                assert_eq!(v, l + 1);
                            }
                            last = Some(v);
                        });
                        if read == Read::Closed {
                            break;
                        }
                        if read == Read::Empty {
                            thread::yield_now();
                        }
                    }
                    let left = r.leave();
                    assert_eq!(left.lost, 0);
                }
                joins
            })
        })
        .collect();
    let publisher = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || {
            for i in 0..EVENTS {
                queued(ring.push(i, Wait::Block));
            }
        })
    };
    let mut next = 0;
    while next < EVENTS {
        anchor.read_wait(usize::MAX, None, |&v| {
            assert_eq!(v, next);
            next += 1;
        });
    }
    publisher.join().unwrap();
    stop.store(true, StdOrdering::Relaxed);
    let joins: u64 = churners.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(joins > 2, "readers joined {joins} times");
}

/// A small pseudo-random count of reads from a seed, without a dependency.
fn fastrand_len(seed: u64) -> u64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) + 1
}

#[test]
fn a_leaving_reader_stops_gating() {
    let ring = ring::<u32>(2, Overflow::Block);
    let stuck = Reader::join(&ring);
    let mut live = Reader::join(&ring);
    queued(ring.push(0, Wait::Never));
    queued(ring.push(1, Wait::Never));
    assert_eq!(drain(&mut live), [0, 1]);
    assert!(matches!(ring.push(2, Wait::Never), Pushed::WouldBlock(2)));
    assert_eq!(stuck.leave(), Left { unread: 2, lost: 0 });
    queued(ring.push(2, Wait::Never));
    assert_eq!(drain(&mut live), [2]);
    // A dropped reader leaves as well.
    let stuck = Reader::join(&ring);
    queued(ring.push(3, Wait::Never));
    queued(ring.push(4, Wait::Never));
    assert!(matches!(ring.push(5, Wait::Never), Pushed::WouldBlock(5)));
    drop(stuck);
    assert_eq!(drain(&mut live), [3, 4]);
    queued(ring.push(5, Wait::Never));
}

#[test]
fn many_readers_take_several_registry_chunks() {
    let ring = ring::<u32>(4, Overflow::Block);
    let mut readers: Vec<_> = (0..3 * super::CHUNK + 1)
        .map(|_| Reader::join(&ring))
        .collect();
    queued(ring.push(7, Wait::Never));
    for r in &mut readers {
        assert_eq!(drain(r), [7]);
    }
    for i in 0..4 {
        queued(ring.push(i, Wait::Never));
    }
    let (rest, newest) = readers.split_at_mut(3 * super::CHUNK);
    for r in rest.iter_mut() {
        assert_eq!(drain(r), [0, 1, 2, 3]);
    }
    // The reader in the newest chunk gates too.
    assert!(matches!(ring.push(9, Wait::Never), Pushed::WouldBlock(9)));
    assert_eq!(drain(&mut newest[0]), [0, 1, 2, 3]);
    queued(ring.push(9, Wait::Never));
    // Leaving frees cursors for later readers.
    drop(readers.drain(..2).collect::<Vec<_>>());
    let mut again = Reader::join(&ring);
    queued(ring.push(10, Wait::Never));
    assert_eq!(drain(&mut again), [10]);
    for r in &mut readers {
        assert_eq!(drain(r), [9, 10]);
    }
}

#[test]
fn close_while_readers_are_behind_reports_exact_unread_counts() {
    for overflow in [Overflow::Block, Overflow::Reject, Overflow::DropOldest] {
        let ring = ring::<u32>(16, overflow);
        let mut behind = Reader::join(&ring);
        let mut half = Reader::join(&ring);
        let mut done = Reader::join(&ring);
        let idle = Reader::join(&ring);
        for i in 0..10 {
            queued(ring.push(i, Wait::Never));
        }
        assert_eq!(drain(&mut done), (0..10).collect::<Vec<_>>());
        assert_eq!(half.read_batch(5, |_| {}), Read::Got(5));
        assert_eq!(ring.close(), 10);
        assert!(matches!(ring.push(10, Wait::Block), Pushed::Closed(10)));
        assert_eq!(
            [behind.unread(), half.unread(), done.unread(), idle.unread()],
            [10, 5, 0, 10],
            "{overflow:?}"
        );
        assert_eq!(drain(&mut half), [5, 6, 7, 8, 9]);
        assert_eq!(half.read_batch(1, |_| {}), Read::Closed);
        assert_eq!(done.read_batch(1, |_| {}), Read::Closed);
        assert_eq!(behind.read_batch(3, |_| {}), Read::Got(3));
        assert_eq!(behind.leave(), Left { unread: 7, lost: 0 });
        assert_eq!(
            idle.leave(),
            Left {
                unread: 10,
                lost: 0
            }
        );
        // A reader joining a closed ring is at the end at once.
        let mut late = Reader::join(&ring);
        assert_eq!(late.read_batch(1, |_| {}), Read::Closed);
        assert_eq!(late.unread(), 0);
    }
}

#[test]
fn close_racing_pushes_loses_nothing() {
    // Every push the close let in is read by every reader before it sees the end; every
    // other push got its value back.
    for round in 0..50 {
        let ring = ring::<u64>(8, Overflow::Block);
        let readers: Vec<_> = (0..2).map(|_| Reader::join(&ring)).collect();
        let start = Arc::new(Barrier::new(5));
        let publishers: Vec<_> = (0..2u64)
            .map(|p| {
                let ring = Arc::clone(&ring);
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    let mut accepted = 0u64;
                    for i in 0.. {
                        match ring.push(p << 32 | i, Wait::Block) {
                            Pushed::Queued => accepted += 1,
                            Pushed::Closed(v) => {
                                assert_eq!(v, p << 32 | i);
                                break;
                            }
                            other => panic!("unexpected {}", kind(&other)),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let consumers: Vec<_> = readers
            .into_iter()
            .map(|mut r| {
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    let mut got = 0u64;
                    loop {
                        match r.read_wait(4, None, |_| got += 1) {
                            Read::Closed => break,
                            Read::Got(_) | Read::Empty => {}
                        }
                    }
                    (got, r.leave())
                })
            })
            .collect();
        start.wait();
        thread::sleep(Duration::from_micros(200 + round * 20));
        let end = ring.close();
        let accepted: u64 = publishers.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(accepted, end);
        for c in consumers {
            let (got, left) = c.join().unwrap();
            assert_eq!(got, end);
            assert_eq!(left, Left::default());
        }
    }
}

#[test]
fn a_panicking_read_counts_the_event_as_read() {
    for overflow in [Overflow::Block, Overflow::DropOldest] {
        let ring = ring::<u32>(2, overflow);
        let mut r = Reader::join(&ring);
        queued(ring.push(1, Wait::Never));
        queued(ring.push(2, Wait::Never));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.read_batch(8, |&v| assert_ne!(v, 1, "poison"));
        }));
        assert!(caught.is_err());
        // Not left pinned nor behind: the event after the poison one comes next, with
        // nothing counted lost, and a push has room again.
        queued(ring.push(3, Wait::Never));
        assert_eq!(drain(&mut r), [2, 3], "{overflow:?}");
        assert_eq!(r.take_lost(), 0);
    }
}

/// Counts drops, to check each value is dropped exactly once.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>, #[allow(dead_code)] u64);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    for (overflow, capacity, pushes) in [
        (Overflow::Block, 8, 0),
        (Overflow::Block, 8, 5),
        (Overflow::Reject, 4, 3),
        (Overflow::DropOldest, 4, 11),
        (Overflow::DropOldest, 1, 7),
    ] {
        let drops = Arc::new(AtomicUsize::new(0));
        let ring = ring::<Counted>(capacity, overflow);
        let mut reader = Reader::join(&ring);
        let mut refused = 0;
        for i in 0..pushes {
            match ring.push(Counted(Arc::clone(&drops), i), Wait::Never) {
                Pushed::Queued | Pushed::Displaced => {}
                Pushed::Full(v) | Pushed::WouldBlock(v) | Pushed::Closed(v) => {
                    drop(v);
                    refused += 1;
                }
            }
            if i % 3 == 0 {
                reader.read_batch(1, |_| {});
            }
        }
        drop(reader);
        // Overwritten values were dropped by their publishers; the ring holds the rest.
        let accepted = pushes as usize - refused;
        assert_eq!(
            drops.load(StdOrdering::SeqCst),
            refused + accepted - accepted.min(capacity)
        );
        drop(ring);
        assert_eq!(
            drops.load(StdOrdering::SeqCst),
            pushes as usize,
            "{overflow:?} cap {capacity} pushes {pushes}"
        );
    }
    // Wrapping without readers drops the old values as it goes.
    let drops = Arc::new(AtomicUsize::new(0));
    let ring = ring::<Counted>(4, Overflow::Block);
    for i in 0..100 {
        queued(ring.push(Counted(Arc::clone(&drops), i), Wait::Never));
    }
    assert_eq!(drops.load(StdOrdering::SeqCst), 96);
    drop(ring);
    assert_eq!(drops.load(StdOrdering::SeqCst), 100);
}

/// Publishers tag events `publisher << 32 | n`; every reader must see each publisher's
/// events exactly once and in order, and (under DropOldest) lose exactly what it missed.
fn stress(overflow: Overflow, publishers: u64, readers: usize, events: u64, capacity: usize) {
    let ring = ring::<u64>(capacity, overflow);
    let joined: Vec<_> = (0..readers).map(|_| Reader::join(&ring)).collect();
    let consumers: Vec<_> = joined
        .into_iter()
        .map(|mut r| {
            thread::spawn(move || {
                let mut next = vec![0u64; publishers as usize];
                let mut read = 0u64;
                loop {
                    let got = r.read_wait(256, None, |&v| {
                        let (p, n) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
                        if overflow == Overflow::DropOldest {
                            assert!(n >= next[p], "publisher {p}: {n} after {}", next[p]);
                        } else {
                            assert_eq!(n, next[p], "publisher {p}");
                        }
                        next[p] = n + 1;
                    });
                    match got {
                        Read::Got(n) => read += n as u64,
                        Read::Empty => {}
                        Read::Closed => break,
                    }
                }
                (read, r.take_lost(), next)
            })
        })
        .collect();
    let producers: Vec<_> = (0..publishers)
        .map(|p| {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for n in 0..events {
                    match ring.push(p << 32 | n, Wait::Block) {
                        Pushed::Queued | Pushed::Displaced => {}
                        other => panic!("unexpected {}", kind(&other)),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let total = ring.close();
    assert_eq!(total, publishers * events);
    for c in consumers {
        let (read, lost, next) = c.join().unwrap();
        assert_eq!(read + lost, total);
        if overflow != Overflow::DropOldest {
            assert_eq!(lost, 0);
            assert!(next.iter().all(|&n| n == events));
        }
    }
}

/// 3 publishers × 4 readers × 1,000,000 events each: about 6 s in a release build, 10 s in
/// a debug one on two cores.
fn stress_events() -> u64 {
    1_000_000
}

#[test]
fn stress_3_publishers_4_readers_block() {
    stress(Overflow::Block, 3, 4, stress_events(), 1024);
}

#[test]
fn stress_3_publishers_4_readers_block_small_ring() {
    stress(Overflow::Block, 3, 4, stress_events() / 10, 4);
}

#[test]
fn stress_3_publishers_4_readers_ring_of_5_slots() {
    // 5 slots, found by division: wraps on every fifth event.
    stress(Overflow::Block, 3, 4, stress_events() / 10, 5);
    stress(Overflow::DropOldest, 3, 4, stress_events() / 10, 5);
}

#[test]
fn stress_3_publishers_4_readers_drop_oldest() {
    stress(Overflow::DropOldest, 3, 4, stress_events(), 64);
}

#[test]
fn stress_drop_oldest_tiny_ring_single_reads() {
    // Capacity 2 and one event per batch: the most moves, racing pins.
    let ring = ring::<u64>(2, Overflow::DropOldest);
    let events = stress_events() / 2;
    let mut readers: Vec<_> = (0..2).map(|_| Reader::join(&ring)).collect();
    let consumers: Vec<_> = readers
        .drain(..)
        .map(|mut r| {
            thread::spawn(move || {
                let mut last = None;
                let mut read = 0u64;
                loop {
                    match r.read_wait(1, None, |&v| {
                        assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
                        last = Some(v);
                    }) {
                        Read::Got(n) => read += n as u64,
                        Read::Empty => {}
                        Read::Closed => break,
                    }
                }
                read + r.take_lost()
            })
        })
        .collect();
    for n in 0..events {
        ring.push(n, Wait::Never);
    }
    ring.close();
    for c in consumers {
        assert_eq!(c.join().unwrap(), events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_reader_wakes_on_publish_and_close() {
    let ring = ring::<u32>(4, Overflow::Block);
    let mut r = Reader::join(&ring);
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            r.readable().await;
            match r.read_batch(8, |&v| got.push(v)) {
                Read::Closed => return got,
                Read::Got(_) | Read::Empty => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    for i in 0..3 {
        queued(ring.push(i, Wait::Never));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ring.close();
    assert_eq!(task.await.unwrap(), [0, 1, 2]);
}

#[test]
fn read_wait_gives_up_at_its_deadline() {
    let ring = ring::<u32>(4, Overflow::Block);
    let mut r = Reader::join(&ring);
    let start = Instant::now();
    let got = r.read_wait(1, Some(start + Duration::from_millis(20)), |_| {});
    assert_eq!(got, Read::Empty);
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// One publisher to two consumers: the ring (one write, two in-place reads) against the
/// crate's bounded `Queue` per consumer (a clone each, the shape subscriptions have today).
/// Run with `cargo test -p syncbus-core --lib --release ring::tests::fan_out_timing --
/// --ignored --nocapture`.
#[test]
#[ignore = "a timing, not a check"]
fn fan_out_timing() {
    use crate::queue::{Drainer, Queue};
    const N: u64 = 2_000_000;
    type Event = Arc<str>;
    let payload: Event = Arc::from("orders.eu.created");
    let expected = N * (N - 1) / 2;
    for _ in 0..3 {
        let ring = ring::<(u64, Event)>(1024, Overflow::Block);
        let readers: Vec<_> = (0..2).map(|_| Reader::join(&ring)).collect();
        let start = Instant::now();
        let consumers: Vec<_> = readers
            .into_iter()
            .map(|mut r| {
                thread::spawn(move || {
                    let mut sum = 0u64;
                    while r.read_wait(256, None, |(n, _)| sum += n) != Read::Closed {}
                    sum
                })
            })
            .collect();
        for n in 0..N {
            ring.push((n, Arc::clone(&payload)), Wait::Block);
        }
        ring.close();
        for c in consumers {
            assert_eq!(c.join().unwrap(), expected);
        }
        let ring_ns = start.elapsed().as_nanos() as f64 / N as f64;

        let queues: Vec<_> = (0..2)
            .map(|_| {
                Arc::new(Queue::<(u64, Event)>::new(
                    1024,
                    Overflow::Block,
                    Drainer::Threads,
                ))
            })
            .collect();
        let start = Instant::now();
        let consumers: Vec<_> = queues
            .iter()
            .map(|q| {
                let q = Arc::clone(q);
                thread::spawn(move || {
                    let mut sum = 0u64;
                    while let Some((n, _)) = q.pop_wait() {
                        sum += n;
                    }
                    sum
                })
            })
            .collect();
        for n in 0..N {
            for q in &queues {
                q.push((n, Arc::clone(&payload)), Wait::Block);
            }
        }
        for q in &queues {
            q.close();
        }
        for c in consumers {
            assert_eq!(c.join().unwrap(), expected);
        }
        let queue_ns = start.elapsed().as_nanos() as f64 / N as f64;
        println!("1 -> 2 fan-out: ring {ring_ns:.1} ns/event, a Queue per consumer {queue_ns:.1} ns/event");
    }
}

/// Everything a member can read now that is tagged for it (flag `bit`), in order.
fn drain_member<T: Clone>(reader: &mut Reader<T>, bit: u32) -> Vec<T> {
    let mut out = Vec::new();
    while let Read::Got(_) = reader.read_batch_tagged(usize::MAX, |_, tag, v| {
        if tag & (1 << bit) != 0 {
            out.push(v.clone());
        }
    }) {}
    out
}

#[test]
fn a_push_counts_the_members_live_at_its_claim_and_tags_the_event_for_them() {
    let ring = ring::<u64>(8, Overflow::Block);
    let mut a = Reader::join_member(&ring, 0).unwrap();
    let (pushed, took) = ring.push_tagged(1, Wait::Never, ALL);
    queued(pushed);
    assert_eq!(took, 0b01);
    let mut b = Reader::join_member(&ring, 1).unwrap();
    assert_eq!(b.position(), 1, "a member starts at its join");
    assert_eq!(ring.push_tagged(2, Wait::Never, ALL).1, 0b11);
    // Targeted at b alone; a passes it by.
    assert_eq!(ring.push_tagged(3, Wait::Never, 0b10).1, 0b10);
    let end = ring.leave_member(0);
    assert_eq!(end, 3, "a reads up to its leave");
    assert_eq!(ring.push_tagged(4, Wait::Never, ALL).1, 0b10);
    // Targeted at a member that left: in the ring, for nobody.
    assert_eq!(ring.push_tagged(5, Wait::Never, 0b01).1, 0);
    assert_eq!(drain_member(&mut a, 0), vec![1, 2]);
    assert_eq!(drain_member(&mut b, 1), vec![2, 3, 4]);
    // By sequence: events 2, 4 and 5 were claimed as 1, 3 and 4.
    assert_eq!(ring.tag_at(1), Some(0b11));
    assert_eq!(ring.tag_at(3), Some(0b10));
    assert_eq!(ring.tag_at(4), Some(0));
    assert_eq!(ring.accepted(), 5);
}

#[test]
fn the_last_member_to_leave_closes_the_ring_and_no_member_joins_a_closed_one() {
    let ring = ring::<u64>(4, Overflow::Block);
    let _a = Reader::join_member(&ring, 0).unwrap();
    let _b = Reader::join_member(&ring, 1).unwrap();
    queued(ring.push_tagged(1, Wait::Never, ALL).0);
    assert_eq!(ring.leave_member(0), 1);
    queued(ring.push_tagged(2, Wait::Never, ALL).0);
    assert_eq!(ring.leave_member(1), 2);
    assert!(matches!(
        ring.push_tagged(3, Wait::Never, ALL).0,
        Pushed::Closed(3)
    ));
    assert!(Reader::join_member(&ring, 2).is_none());
    assert_eq!(
        ring.leave_member(1),
        2,
        "a closed ring answers its final count"
    );
}

#[test]
fn a_shared_ring_waits_for_its_slowest_member() {
    let ring = ring::<u64>(2, Overflow::Block);
    let mut fast = Reader::join_member(&ring, 0).unwrap();
    let mut slow = Reader::join_member(&ring, 1).unwrap();
    for v in 0..2 {
        queued(ring.push_tagged(v, Wait::Never, ALL).0);
    }
    assert_eq!(drain_member(&mut fast, 0), vec![0, 1]);
    assert!(matches!(
        ring.push_tagged(2, Wait::Never, ALL).0,
        Pushed::WouldBlock(2)
    ));
    assert_eq!(drain_member(&mut slow, 1), vec![0, 1]);
    queued(ring.push_tagged(2, Wait::Never, ALL).0);
}

#[test]
fn no_two_slots_share_a_cache_line() {
    use std::mem::{align_of, size_of};
    // The bench's envelope is 128 bytes: with the published word, a slot spans three lines.
    type Wide = super::Slot<[u64; 16]>;
    assert_eq!(align_of::<Wide>(), 64);
    assert_eq!(size_of::<Wide>(), 192);
    let ring: Ring<[u64; 16]> = Ring::new(4, Overflow::Block);
    for pair in ring.slots.windows(2) {
        let a = std::ptr::from_ref(&pair[0]) as usize;
        let b = std::ptr::from_ref(&pair[1]) as usize;
        assert_eq!(a % 64, 0, "a slot starts inside a line");
        assert!(b - a >= 192);
    }
}
