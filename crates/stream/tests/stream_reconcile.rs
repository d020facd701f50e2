//! Reconciliation: injected drift found exactly, any page sizes, the reader contract
//! checked, and a property test against a naive diff.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use syncbus_stream::{
    ByDigest, Drift, Entry, Reconcile, ReconcileError, ReconcileReport, Side, SnapshotReader,
};

/// A sorted `Vec` read in pages, counting the largest page handed out.
struct Paged {
    rows: Vec<(u64, u64)>,
    largest: AtomicUsize,
    pages: AtomicUsize,
}

impl Paged {
    fn new(map: &BTreeMap<u64, u64>) -> Self {
        Paged {
            rows: map.iter().map(|(k, v)| (*k, *v)).collect(),
            largest: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
        }
    }
}

impl SnapshotReader for Paged {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn page(
        &self,
        after: Option<&u64>,
        limit: usize,
    ) -> Result<Vec<Entry<u64, u64>>, Infallible> {
        let start = after.map_or(0, |k| self.rows.partition_point(|(id, _)| id <= k));
        let page: Vec<_> = self.rows[start..]
            .iter()
            .take(limit)
            .map(|(k, v)| Entry::new(*k, *v))
            .collect();
        self.largest.fetch_max(page.len(), Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::Relaxed);
        Ok(page)
    }
}

/// The obvious diff: every key of both maps, looked up in each.
fn naive(up: &BTreeMap<u64, u64>, local: &BTreeMap<u64, u64>) -> Vec<Drift<u64, u64, u64>> {
    let keys: BTreeSet<u64> = up.keys().chain(local.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|key| match (up.get(&key), local.get(&key)) {
            (Some(&u), None) => Some(Drift::Missing { key, upstream: u }),
            (None, Some(&l)) => Some(Drift::Extra { key, local: l }),
            (Some(&u), Some(&l)) if u != l => Some(Drift::Divergent {
                key,
                upstream: u,
                local: l,
            }),
            _ => None,
        })
        .collect()
}

async fn collect<A, B>(mut run: Reconcile<A, B>) -> (Vec<Drift<u64, u64, u64>>, ReconcileReport)
where
    A: SnapshotReader<Key = u64, Value = u64>,
    B: SnapshotReader<Key = u64, Value = u64>,
{
    let mut out = vec![];
    while let Some(d) = run.next().await.expect("reconcile") {
        out.push(d);
    }
    (out, *run.report())
}

#[tokio::test]
async fn injected_drift_is_found_exactly_and_nothing_else() {
    let upstream: BTreeMap<u64, u64> = (0..10_000).map(|k| (k, k * 10)).collect();
    let mut local = upstream.clone();
    // missing: upstream has them, local lost them
    for k in [0, 17, 4_000, 9_999] {
        local.remove(&k);
    }
    // divergent
    for k in [1, 500, 5_001] {
        *local.get_mut(&k).unwrap() += 1;
    }
    // extra
    for k in [10_000, 20_000, 30_000] {
        local.insert(k, 7);
    }
    let (u, l) = (Paged::new(&upstream), Paged::new(&local));
    let (found, report) = collect(Reconcile::new(&u, &l).page_size(64).unwrap()).await;
    assert_eq!(
        found,
        vec![
            Drift::Missing {
                key: 0,
                upstream: 0
            },
            Drift::Divergent {
                key: 1,
                upstream: 10,
                local: 11
            },
            Drift::Missing {
                key: 17,
                upstream: 170
            },
            Drift::Divergent {
                key: 500,
                upstream: 5_000,
                local: 5_001
            },
            Drift::Missing {
                key: 4_000,
                upstream: 40_000
            },
            Drift::Divergent {
                key: 5_001,
                upstream: 50_010,
                local: 50_011
            },
            Drift::Missing {
                key: 9_999,
                upstream: 99_990
            },
            Drift::Extra {
                key: 10_000,
                local: 7
            },
            Drift::Extra {
                key: 20_000,
                local: 7
            },
            Drift::Extra {
                key: 30_000,
                local: 7
            },
        ]
    );
    assert_eq!((report.missing, report.divergent, report.extra), (4, 3, 3));
    assert_eq!(report.same, 10_000 - 4 - 3);
    assert_eq!(report.upstream, 10_000);
    assert_eq!(report.local, 10_000 - 4 + 3);
    // memory bound: never more than a page in hand per side
    assert!(u.largest.load(Ordering::Relaxed) <= 64);
    assert!(l.largest.load(Ordering::Relaxed) <= 64);

    // applying the repairs leaves nothing to repair
    for d in found {
        match d {
            Drift::Missing { key, upstream } | Drift::Divergent { key, upstream, .. } => {
                local.insert(key, upstream);
            }
            Drift::Extra { key, .. } => {
                local.remove(&key);
            }
        }
    }
    let (again, report) = collect(Reconcile::new(&upstream, &local)).await;
    assert!(again.is_empty(), "{again:?}");
    assert!(report.is_clean());
    assert_eq!(report.same, 10_000);
}

#[tokio::test]
async fn pages_of_different_sizes_on_each_side() {
    let upstream: BTreeMap<u64, u64> = (0..1_000).filter(|k| k % 3 != 0).map(|k| (k, k)).collect();
    let local: BTreeMap<u64, u64> = (0..1_000)
        .filter(|k| k % 5 != 0)
        .map(|k| (k, k % 7))
        .collect();
    let expected = naive(&upstream, &local);
    for (pu, pl) in [(1, 1000), (1000, 1), (7, 13), (13, 7), (1, 1), (999, 1001)] {
        let (u, l) = (Paged::new(&upstream), Paged::new(&local));
        let (found, report) = collect(Reconcile::new(&u, &l).page_sizes(pu, pl).unwrap()).await;
        assert_eq!(found, expected, "pages {pu}/{pl}");
        assert!(u.largest.load(Ordering::Relaxed) <= pu);
        assert!(l.largest.load(Ordering::Relaxed) <= pl);
        assert_eq!(
            report.upstream_pages as usize,
            u.pages.load(Ordering::Relaxed)
        );
        assert_eq!(report.upstream as usize, upstream.len());
        assert_eq!(report.local as usize, local.len());
    }
}

#[tokio::test]
async fn empty_sides() {
    let empty = BTreeMap::<u64, u64>::new();
    let some: BTreeMap<u64, u64> = (0..5).map(|k| (k, k)).collect();
    let (found, _) = collect(Reconcile::new(&empty, &empty)).await;
    assert!(found.is_empty());
    let (found, r) = collect(Reconcile::new(&some, &empty)).await;
    assert_eq!((found.len(), r.missing), (5, 5));
    let (found, r) = collect(Reconcile::new(&empty, &some)).await;
    assert_eq!((found.len(), r.extra), (5, 5));
}

#[tokio::test]
async fn comparison_by_digest_ignores_what_it_does_not_look_at() {
    // (version, payload): the local copy lost the payload formatting but has the version
    let upstream = BTreeMap::from([(1u32, (3u64, "A ".to_string())), (2, (4, "b".to_string()))]);
    let local = BTreeMap::from([(1u32, (3u64, "A".to_string())), (2, (3, "b".to_string()))]);
    let mut run = Reconcile::new(&upstream, &local).compare(ByDigest::new(
        |u: &(u64, String)| u.0,
        |l: &(u64, String)| l.0,
    ));
    let d = run.next().await.unwrap().unwrap();
    assert_eq!(*d.key(), 2);
    assert!(run.next().await.unwrap().is_none());
    assert_eq!(run.report().same, 1);

    // full equality sees both
    let mut run = Reconcile::new(&upstream, &local);
    assert_eq!(*run.next().await.unwrap().unwrap().key(), 1);
    assert_eq!(*run.next().await.unwrap().unwrap().key(), 2);
}

/// Hands out the given pages whatever is asked.
struct Scripted(Vec<Vec<u64>>, AtomicUsize);

impl SnapshotReader for Scripted {
    type Key = u64;
    type Value = ();
    type Error = std::io::Error;

    async fn page(&self, _: Option<&u64>, _: usize) -> Result<Vec<Entry<u64, ()>>, std::io::Error> {
        let i = self.1.fetch_add(1, Ordering::Relaxed);
        match self.0.get(i) {
            Some(keys) => Ok(keys.iter().map(|k| Entry::new(*k, ())).collect()),
            None if i == self.0.len() => Ok(vec![]),
            None => Err(std::io::Error::other("upstream down")),
        }
    }
}

fn scripted(pages: &[&[u64]]) -> Scripted {
    Scripted(
        pages.iter().map(|p| p.to_vec()).collect(),
        AtomicUsize::new(0),
    )
}

#[tokio::test]
async fn unsorted_readers_fail_instead_of_reporting_wrong_drift() {
    let empty = BTreeMap::<u64, ()>::new();
    // within a page
    let up = scripted(&[&[1, 3, 2]]);
    let mut run = Reconcile::new(&up, &empty).page_size(10).unwrap();
    let err = run.next().await.unwrap_err();
    assert!(
        matches!(&err, ReconcileError::Unsorted { side: Side::Upstream, previous, key } if previous == "3" && key == "2"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the upstream reader is not sorted by key: 2 came after 3"
    );

    // across pages, a repeated key
    let lo = scripted(&[&[1, 2], &[2, 3]]);
    let mut run = Reconcile::new(&empty, &lo).page_size(2).unwrap();
    let mut seen = 0;
    let err = loop {
        match run.next().await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("a repeated key went unnoticed"),
            Err(e) => break e,
        }
    };
    assert_eq!(seen, 2);
    assert!(
        matches!(
            err,
            ReconcileError::Unsorted {
                side: Side::Local,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_page_longer_than_asked_and_a_failing_reader_are_typed_errors() {
    let empty = BTreeMap::<u64, ()>::new();
    let up = scripted(&[&[1, 2, 3]]);
    let mut run = Reconcile::new(&up, &empty).page_size(2).unwrap();
    assert!(matches!(
        run.next().await,
        Err(ReconcileError::PageTooLong {
            side: Side::Upstream,
            limit: 2,
            got: 3
        })
    ));

    // a reader that fails after its pages (index past the end + 1)
    let up = Scripted(vec![vec![1]], AtomicUsize::new(2));
    let mut run = Reconcile::new(&up, &empty);
    let err = run.next().await.unwrap_err();
    assert!(matches!(
        err,
        ReconcileError::Read {
            side: Side::Upstream,
            ..
        }
    ));
    assert_eq!(
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .as_deref(),
        Some("upstream down")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_merge_equals_a_naive_diff(
        upstream in prop::collection::btree_map(0u64..300, 0u64..4, 0..200),
        local in prop::collection::btree_map(0u64..300, 0u64..4, 0..200),
        pu in 1usize..40,
        pl in 1usize..40,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (u, l) = (Paged::new(&upstream), Paged::new(&local));
        let (found, report) = rt.block_on(collect(Reconcile::new(&u, &l).page_sizes(pu, pl).unwrap()));
        let expected = naive(&upstream, &local);
        prop_assert_eq!(&found, &expected);
        prop_assert_eq!(report.drifted() as usize, expected.len());
        prop_assert!(u.largest.load(Ordering::Relaxed) <= pu);
        prop_assert!(l.largest.load(Ordering::Relaxed) <= pl);
    }
}

#[test]
fn a_run_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    let up = std::sync::Arc::new(BTreeMap::<u64, u64>::new());
    let mut run = Reconcile::new(up.clone(), up);
    send(&run);
    send(&run.next());
}
