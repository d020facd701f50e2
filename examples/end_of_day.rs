//! End-of-day reconciliation: every night at 23:59 in the shop's zone (Europe/Paris), the
//! local product copy is compared with the upstream catalogue, page by page in key order,
//! and each drifted product is repaired through the bus.
//!
//! The clock is simulated (tokio's, paused), so two nights pass in well under a second and
//! the output is the same on every run. Drift is injected on purpose: products the local
//! copy missed, products it holds at an older version, products upstream has deleted.
//!
//! ```sh
//! cargo run --example end_of_day --features stream
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::prelude::*;
use syncbus::store::MemoryStore;
use syncbus::stream::chrono::{DateTime, TimeZone, Utc};
use syncbus::stream::{
    ByDigest, Drift, Entry, Job, Missed, Reconcile, Schedule, SnapshotReader, TestClock,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    version: u64,
    name: String,
    cents: u64,
}

/// A product as repaired: the upstream state, or `None` to delete it.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(type = "shop.product.repaired", topic = "shop.products.repair")]
struct Repaired {
    id: u64,
    /// `missing`, `divergent` or `extra` ([`DriftKind::as_str`]).
    drift: String,
    product: Option<Product>,
}

type Catalogue = Arc<Mutex<BTreeMap<u64, Product>>>;

/// The upstream catalogue's API: pages of at most 250 products, sorted by id, after a
/// cursor (what `GET /products?after=ID&limit=N` answers).
struct UpstreamApi(Catalogue);

impl SnapshotReader for UpstreamApi {
    type Key = u64;
    type Value = Product;
    type Error = Infallible;

    async fn page(
        &self,
        after: Option<&u64>,
        limit: usize,
    ) -> Result<Vec<Entry<u64, Product>>, Infallible> {
        let from = after.map_or(0, |a| a + 1);
        let all = self.0.lock().unwrap();
        Ok(all
            .range(from..)
            .take(limit.min(250))
            .map(|(k, v)| Entry::new(*k, v.clone()))
            .collect())
    }
}

/// The local copy, read as `SELECT id, version FROM products WHERE id > ? ORDER BY id LIMIT ?`:
/// only the versions are compared.
struct LocalTable(Catalogue);

impl SnapshotReader for LocalTable {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn page(
        &self,
        after: Option<&u64>,
        limit: usize,
    ) -> Result<Vec<Entry<u64, u64>>, Infallible> {
        let from = after.map_or(0, |a| a + 1);
        let all = self.0.lock().unwrap();
        Ok(all
            .range(from..)
            .take(limit)
            .map(|(k, v)| Entry::new(*k, v.version))
            .collect())
    }
}

fn product(id: u64, version: u64) -> Product {
    Product {
        version,
        name: format!("product {id}"),
        cents: 100 + id % 900,
    }
}

fn paris(t: DateTime<Utc>) -> String {
    t.with_timezone(&syncbus::stream::chrono_tz::Europe::Paris)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 10,000 products upstream; the local copy starts equal.
    let upstream: Catalogue = Arc::new(Mutex::new(
        (1..=10_000).map(|id| (id, product(id, 1))).collect(),
    ));
    let local: Catalogue = Arc::new(Mutex::new(upstream.lock().unwrap().clone()));

    // Drift, as lost webhooks and a failed delete leave it:
    {
        let (mut up, mut lo) = (upstream.lock().unwrap(), local.lock().unwrap());
        for id in [17, 4_242, 9_999] {
            lo.remove(&id); // missing locally
        }
        for id in [256, 7_001] {
            up.insert(
                id,
                Product {
                    cents: 1,
                    ..product(id, 2)
                },
            ); // newer upstream: divergent
        }
        for id in [10_001, 10_002] {
            lo.insert(id, product(id, 1)); // deleted upstream: extra locally
        }
    }

    // Repairs travel on the bus; the local side applies them.
    let bus = Bus::new();
    let applied = local.clone();
    let _apply = bus.subscribe::<Repaired>("shop.products.repair")?.inline(
        move |env: &Envelope<Repaired>| {
            let r = env.payload();
            let mut local = applied.lock().unwrap();
            match &r.product {
                Some(p) => local.insert(r.id, p.clone()),
                None => local.remove(&r.id),
            };
        },
    )?;

    let start = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(); // 12:00 in Paris
    let schedule = Schedule::cron("59 23 * * *")?.in_zone("Europe/Paris")?;
    println!(
        "end-of-day reconciliation: {schedule}, clock starts {}",
        paris(start)
    );

    let job = {
        let (upstream, local, bus) = (upstream.clone(), local.clone(), bus.clone());
        Job::new("end-of-day", schedule)?
            .missed(Missed::RunOnce)
            .checkpoints(MemoryStore::new())
            .clock(TestClock::new(start))
            .spawn(move |run| {
                let (upstream, local, bus) = (upstream.clone(), local.clone(), bus.clone());
                async move {
                    println!("{}: reconciling", paris(run.scheduled));
                    let mut repairs = Reconcile::new(UpstreamApi(upstream), LocalTable(local))
                        .compare(ByDigest::new(|u: &Product| u.version, |l: &u64| *l))
                        .page_size(500)?
                        .repairs(|drift: Drift<u64, Product, u64>| {
                            let drift_kind = drift.kind().as_str().to_owned();
                            let id = *drift.key();
                            let product = drift.upstream().cloned();
                            let version = product.as_ref().map(|p| p.version);
                            let mut env = Envelope::from_event(Repaired { id, drift: drift_kind, product });
                            // by entity and version, so an ordering layer lets only newer ones pass
                            env.meta_mut().set_entity_id(Some(EntityId::from(id)));
                            env.meta_mut().set_version(version);
                            env
                        });
                    while let Some(env) = repairs.next().await? {
                        let what = match env.payload().drift.as_str() {
                            "missing" => "missing   -> created",
                            "divergent" => "divergent -> updated",
                            _ => "extra     -> deleted",
                        };
                        println!("  product {:>5}: {what}", env.payload().id);
                        bus.publish_envelope(env).await?;
                    }
                    bus.settled().await;
                    let r = repairs.report();
                    println!(
                        "  read {} upstream / {} local in {} + {} pages: {} same, repaired {} (missing {}, divergent {}, extra {})",
                        r.upstream, r.local, r.upstream_pages, r.local_pages, r.same, r.drifted(), r.missing, r.divergent, r.extra
                    );
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
    };

    // Day two: a price change whose webhook never arrived.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await; // 2026-06-02 12:00 Paris
    upstream.lock().unwrap().insert(
        5_000,
        Product {
            cents: 4_999,
            ..product(5_000, 2)
        },
    );
    println!(
        "{}: upstream changes product 5000 (its webhook is lost)",
        paris(start + chrono_hours(24))
    );

    tokio::time::sleep(Duration::from_secs(24 * 3600)).await; // through the second night
    let status = job.stop().await?;
    println!(
        "done: {} runs, last {}, local copy equals upstream: {}",
        status.runs,
        status.last_run.map(paris).unwrap_or_default(),
        *local.lock().unwrap() == *upstream.lock().unwrap()
    );
    assert_eq!(status.failures, 0, "{:?}", status.last_error);
    assert_eq!(*local.lock().unwrap(), *upstream.lock().unwrap());
    Ok(())
}

fn chrono_hours(h: i64) -> syncbus::stream::chrono::Duration {
    syncbus::stream::chrono::Duration::hours(h)
}
