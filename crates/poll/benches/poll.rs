//! The poller's hand-out and settle path (a page of 1,000 in-memory items fetched, acked,
//! the cursor stored) against a tokio mpsc channel carrying the same envelopes; one HTTP
//! page of 100 items read and mapped by `HttpSource` against a plain reqwest GET of the
//! same body, both over loopback keep-alive.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncbus_core::{Settle, Source};
use syncbus_envelope::{Bytes, Envelope, EventType, Metadata, Topic};
use syncbus_poll::{
    Cursor, HttpSource, ItemMapping, Page, PollConfig, PollError, PollSource, Poller,
};
use syncbus_storage::MemoryStore;

const PAGE: usize = 1000;

struct MemSource {
    page: Vec<Envelope<Bytes>>,
    n: AtomicU64,
}

impl PollSource for MemSource {
    async fn poll(&self, _cursor: Option<&Cursor>) -> Result<Page, PollError> {
        let n = self.n.fetch_add(1, Relaxed);
        Ok(Page::new(self.page.clone())
            .next(Cursor::from(n.to_string()))
            .more(true))
    }
}

fn envelopes() -> Vec<Envelope<Bytes>> {
    (0..PAGE)
        .map(|i| {
            let meta = Metadata::new(EventType::from_static("bench.item"))
                .with_topic(Topic::from_static("bench.items"))
                .with_version(Some(i as u64));
            Envelope::new(meta, Bytes::from_static(b"{}"))
        })
        .collect()
}

fn hand_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("poll_hand_out_1000");
    g.throughput(Throughput::Elements(PAGE as u64));
    let source = MemSource {
        page: envelopes(),
        n: AtomicU64::new(0),
    };
    let poller = rt
        .block_on(Poller::open(
            "bench",
            source,
            MemoryStore::new(),
            PollConfig::new(),
        ))
        .unwrap();
    g.bench_function("poller_fetch_ack_checkpoint", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut got = 0;
                while got < PAGE {
                    let batch = poller.fetch(256, Duration::from_secs(1)).await.unwrap();
                    got += batch.len();
                    for d in batch {
                        d.ack().await.unwrap();
                    }
                }
            })
        })
    });
    let page = envelopes();
    g.bench_function("tokio_mpsc_peer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                for e in &page {
                    tx.send(e.clone()).unwrap();
                }
                drop(tx);
                let mut got = 0;
                while let Some(e) = rx.recv().await {
                    std::hint::black_box(e);
                    got += 1;
                }
                assert_eq!(got, PAGE);
            })
        })
    });
    g.finish();
}

fn http_page(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let items: Vec<_> = (0..100)
        .map(|i| serde_json::json!({"id": format!("e{i}"), "version": i, "data": {"n": i, "name": "some text"}}))
        .collect();
    let body = serde_json::json!({"items": items, "next": "100"}).to_string();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/changes",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/changes")
    });
    let mapping = ItemMapping::new(
        EventType::from_static("bench.item"),
        Topic::from_static("bench.items"),
    )
    .entity_at("/id")
    .version_at("/version")
    .data_at("/data");
    let source = HttpSource::builder(&url, mapping.clone())
        .unwrap()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let mut g = c.benchmark_group("http_page_100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("http_source_poll_map", |b| {
        b.iter(|| rt.block_on(async { source.poll(None).await.unwrap() }))
    });
    let doc = serde_json::json!({"items": items}).to_string();
    let mapping2 = mapping.clone();
    g.bench_function("parse_and_map_only", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
            let items = v["items"].as_array().unwrap();
            let out: Vec<_> = items
                .iter()
                .enumerate()
                .map(|(i, it)| mapping2.map("bench", i, it).unwrap())
                .collect();
            out
        })
    });
    g.bench_function("reqwest_get_bytes_peer", |b| {
        b.iter(|| {
            rt.block_on(async {
                client
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, hand_out, http_page);
criterion_main!(benches);
