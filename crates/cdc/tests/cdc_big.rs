//! A 100,000-row transaction streams with bounded memory: the reader's peak heap while it
//! reads the whole transaction (acking as it goes) stays far below the size of the changes
//! themselves. A counting allocator measures the peak (bytes live at once, all threads).
//!
//! Rows: `SYNCBUS_CDC_BIG_ROWS` (default 100,000).
//! The only `unsafe` of this crate: a `GlobalAlloc` impl cannot be written without it.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::*;
use syncbus_cdc::{PgCdc, PgCdcConfig, SqliteCdc, SqliteCdcConfig};
use syncbus_core::{Settle, Source};
use syncbus_storage::MemoryStore;
use syncbus_store::SqliteStore;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `alloc`, passed on to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Relaxed);
        grew(new_size);
        // SAFETY: `ptr` came from `System.alloc` with `layout`; the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn rows() -> i64 {
    std::env::var("SYNCBUS_CDC_BIG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The bound: 16 MiB of heap above the start, whatever the transaction's size.
const BOUND: usize = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_100k_row_transaction_streams_in_bounded_memory() {
    let n = rows();
    let Some(s) = Scratch::new("CREATE TABLE {s}.big (id int PRIMARY KEY, pad text)").await else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let config = PgCdcConfig::new(&url, [format!("{name}.big")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap();
    let source = PgCdc::connect(config, MemoryStore::new()).await.unwrap();
    app.batch_execute(&format!(
        "INSERT INTO {name}.big SELECT g, repeat('x', 200) FROM generate_series(1, {n}) g"
    ))
    .await
    .unwrap();

    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let (mut got, mut bytes, mut next) = (0i64, 0usize, 1i64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < n && Instant::now() < deadline {
        for d in source.fetch(500, Duration::from_millis(200)).await.unwrap() {
            let id: i64 = d
                .envelope()
                .meta()
                .entity_id()
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            assert_eq!(id, next, "in order");
            // Each envelope carries its own change (large batches are built in two halves
            // at once): the payload's row and position match the entity id.
            let doc = d.envelope().payload().json().unwrap();
            assert_eq!(doc["new"]["id"], next, "payload of change {next}");
            assert_eq!(doc["pos"], next - 1, "position of change {next}");
            next += 1;
            bytes += d.envelope().payload().as_bytes().len();
            got += 1;
            d.ack().await.unwrap();
        }
    }
    source.flush().await.unwrap();
    let peak = PEAK.load(Relaxed) - base;
    eprintln!(
        "pg: {got} changes of one transaction, {} MiB of change JSON; reader's peak heap {:.1} MiB",
        bytes >> 20,
        peak as f64 / (1 << 20) as f64
    );
    assert_eq!(got, n);
    assert!(
        peak < BOUND,
        "peak heap {peak} bytes for {bytes} bytes of changes"
    );
    assert!(
        bytes > 2 * BOUND || n < 100_000,
        "the changes are larger than the bound, so the bound means something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_100k_row_transaction_streams_in_bounded_memory() {
    let n = rows();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("big.db")).await.unwrap();
    store
        .with_connection(|c| {
            Ok(c.execute_batch("CREATE TABLE big (id INTEGER PRIMARY KEY, pad TEXT)")?)
        })
        .await
        .unwrap();
    let source = SqliteCdc::open(store.clone(), SqliteCdcConfig::new(["big"]).unwrap())
        .await
        .unwrap();
    store
        .with_connection(move |c| {
            Ok(c.execute_batch(&format!(
                "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) INSERT INTO big SELECT i, printf('%.200c', 'x') FROM g"
            ))?)
        })
        .await
        .unwrap();
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let (mut got, mut bytes) = (0i64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < n && Instant::now() < deadline {
        for d in source.fetch(500, Duration::from_millis(100)).await.unwrap() {
            bytes += d.envelope().payload().as_bytes().len();
            got += 1;
            d.ack().await.unwrap();
        }
    }
    let peak = PEAK.load(Relaxed) - base;
    eprintln!("sqlite: {got} changes of one transaction, {} MiB of change JSON; reader's peak heap {:.1} MiB", bytes >> 20, peak as f64 / (1 << 20) as f64);
    assert_eq!(got, n);
    assert!(
        peak < BOUND,
        "peak heap {peak} bytes for {bytes} bytes of changes"
    );
}
