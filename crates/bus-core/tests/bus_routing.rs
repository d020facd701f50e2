//! The router against a naive model: many literal and wildcard subscriptions, added and
//! removed, and every publish reaches exactly the subscriptions whose pattern matches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use syncbus_core::{Bus, Event, Pattern, Subscription, Topic};

#[derive(Clone, Debug)]
struct Ev;

impl Event for Ev {
    const TYPE: &'static str = "ev";
}

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const TOKENS: [&str; 4] = ["a", "b", "c", "d"];

fn topic(rng: &mut Lcg) -> String {
    let len = 1 + rng.next(4) as usize;
    (0..len)
        .map(|_| TOKENS[rng.next(4) as usize])
        .collect::<Vec<_>>()
        .join(".")
}

fn pattern(rng: &mut Lcg) -> String {
    let len = 1 + rng.next(4) as usize;
    let mut tokens: Vec<&str> = (0..len)
        .map(|_| match rng.next(6) {
            0 => "*",
            n => TOKENS[(n as usize - 1) % 4],
        })
        .collect();
    if rng.next(4) == 0 {
        *tokens.last_mut().unwrap() = ">";
    }
    tokens.join(".")
}

#[test]
fn routes_match_a_naive_model_through_subscribe_and_unsubscribe() {
    let mut rng = Lcg(7);
    let bus = Bus::new();
    let mut live: Vec<(Pattern, Arc<AtomicU64>, Subscription)> = Vec::new();
    for _ in 0..400 {
        let p = pattern(&mut rng);
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let sub = bus
            .subscribe::<Ev>(&p)
            .unwrap()
            .inline(move |_| {
                h.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        live.push((Pattern::new(&p).unwrap(), hits, sub));
    }
    let topics: Vec<String> = (0..300).map(|_| topic(&mut rng)).collect();
    let check = |live: &[(Pattern, Arc<AtomicU64>, Subscription)]| {
        for t in &topics {
            let want: Vec<bool> = live
                .iter()
                .map(|(p, _, _)| p.matches(&Topic::new(t).unwrap()))
                .collect();
            let before: Vec<u64> = live
                .iter()
                .map(|(_, h, _)| h.load(Ordering::Relaxed))
                .collect();
            let n = bus.blocking_publish_to(t, Ev).unwrap();
            assert_eq!(n, want.iter().filter(|w| **w).count(), "topic {t}");
            for (i, (p, h, _)) in live.iter().enumerate() {
                let got = h.load(Ordering::Relaxed) - before[i];
                assert_eq!(got, u64::from(want[i]), "topic {t}, pattern {p}");
            }
        }
    };
    check(&live);
    // Remove every other subscription, in a scrambled order, and check again (twice, so
    // the cached routes are exercised too).
    let mut removed = 0;
    let mut i = 0;
    while removed < 200 {
        i = (i + 7) % live.len();
        let (_, _, sub) = live.swap_remove(i);
        sub.unsubscribe();
        removed += 1;
    }
    check(&live);
    check(&live);
    assert_eq!(bus.metrics().subscriptions, 200);
}
