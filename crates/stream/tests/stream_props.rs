//! Tumbling and hopping window counts against a naive reference computed offline.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use syncbus_stream::{Stream, Topology, Windows};

/// For each window start, how many events fall in `[start, start + size)`: every event
/// checked against every candidate window.
fn naive(times: &[i64], size: i64, advance: i64) -> BTreeMap<(i64, i64), u64> {
    let mut out = BTreeMap::new();
    let lo = times.iter().min().copied().unwrap_or(0) - size;
    let hi = times.iter().max().copied().unwrap_or(0);
    let mut start = lo.div_euclid(advance) * advance;
    while start <= hi {
        let n = times
            .iter()
            .filter(|&&t| start <= t && t < start + size)
            .count() as u64;
        if n > 0 {
            out.insert((start, start + size), n);
        }
        start += advance;
    }
    out
}

fn counted(
    times: &[i64],
    windows: Windows,
    watermark_every: Option<usize>,
) -> BTreeMap<(i64, i64), u64> {
    let s = Stream::<i64>::new().key_by(|_| 0u8).window(windows).count();
    let mut t = Topology::new(s);
    let mut out = BTreeMap::new();
    let mut max = i64::MIN;
    for (i, &at) in times.iter().enumerate() {
        t.process(at, Some(at));
        max = max.max(at);
        if watermark_every.is_some_and(|n| i % n == 0) {
            // Behind the latest by more than any disorder in the input: nothing is late.
            t.advance_with(max - 10_000, &mut |r, _| {
                assert!(out
                    .insert((r.window.start, r.window.end), r.value)
                    .is_none());
            });
        }
    }
    t.advance_with(i64::MAX / 8, &mut |r, _| {
        assert!(out
            .insert((r.window.start, r.window.end), r.value)
            .is_none());
    });
    assert_eq!(t.metrics().late, 0);
    out
}

/// Event times that are mostly increasing with disorder up to 5,000 ms, possibly negative.
fn times() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec((0i64..400, -5_000i64..5_000), 0..300).prop_map(|steps| {
        let mut base = -20_000;
        steps
            .into_iter()
            .map(|(step, jitter)| {
                base += step;
                base + jitter
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tumbling_counts_match_the_reference(times in times(), size in 1i64..3_000, every in proptest::option::of(1usize..50)) {
        let windows = Windows::tumbling(Duration::from_millis(size as u64)).unwrap();
        prop_assert_eq!(counted(&times, windows, every), naive(&times, size, size));
    }

    #[test]
    fn hopping_counts_match_the_reference(times in times(), size in 1i64..3_000, div in 1i64..6, every in proptest::option::of(1usize..50)) {
        let advance = (size / div).max(1);
        let windows = Windows::hopping(Duration::from_millis(size as u64), Duration::from_millis(advance as u64)).unwrap();
        prop_assert_eq!(counted(&times, windows, every), naive(&times, size, advance));
    }
}
