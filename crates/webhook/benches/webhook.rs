//! Ingress requests/s over loopback keep-alive connections, 64 in flight: verification +
//! dedup + durable append on SQLite, against a bare axum handler answering 200 in the same
//! group. Egress deliveries/s to a local receiver.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Pattern, Topic};
use syncbus_storage::EventLog;
use syncbus_store::SqliteStore;
use syncbus_webhook::{
    unix_now, Egress, EndpointConfig, Ingress, IngressConfig, Secret, SourceConfig,
};
use syncbus_workflow::Workflow;

const IN_FLIGHT: u64 = 64;

fn secret() -> Secret {
    Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap()
}

async fn burst(client: &reqwest::Client, url: &str, next: &AtomicU64, signed: bool) {
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (c, url) = (client.clone(), url.to_owned());
        let id = format!("b{}", next.fetch_add(1, Relaxed));
        tasks.push(tokio::spawn(async move {
            let ts = unix_now();
            let mut r = c.post(&url).header("content-type", "application/json");
            if signed {
                r = r
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", secret().sign(&id, ts, b"{\"n\":1}"));
            }
            let status = r.body("{\"n\":1}").send().await.unwrap().status();
            assert!(status.is_success());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn ingress(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (bare, hooked) = rt.block_on(async {
        let app = axum::Router::new().route("/ok", axum::routing::post(|| async { "ok" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare = format!("http://{}/ok", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let store = SqliteStore::open(dir.path().join("bench.db"))
            .await
            .unwrap();
        let source = SourceConfig::new("bench", [secret()]).unwrap();
        let ingress = Ingress::new(store, IngressConfig::new(), [source]).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hooked = format!("http://{}/webhooks/bench", l.local_addr().unwrap());
        tokio::spawn(ingress.serve(l));
        (bare, hooked)
    });
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group("ingress");
    g.throughput(Throughput::Elements(IN_FLIGHT));
    g.bench_function("bare_axum_200", |b| {
        b.iter(|| rt.block_on(burst(&client, &bare, &next, false)))
    });
    g.bench_function("verify_dedup_append_sqlite", |b| {
        b.iter(|| rt.block_on(burst(&client, &hooked, &next, true)))
    });
    g.finish();
}

fn egress(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, endpoint) = rt.block_on(async {
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let store = SqliteStore::open(dir.path().join("egress.db"))
            .await
            .unwrap();
        let bus = Bus::new();
        let wf = Workflow::builder(&bus)
            .dead_letters(store.dead_letters())
            .build();
        let egress = Egress::new(&wf, store.clone(), store.clone()).unwrap();
        let config = EndpointConfig::new("bench", url, secret())
            .unwrap()
            .subscribe(Pattern::new("bench.>").unwrap())
            .poll_interval(Duration::from_millis(1));
        (store, egress.endpoint(config).await.unwrap())
    });
    let mut g = c.benchmark_group("egress");
    g.throughput(Throughput::Elements(IN_FLIGHT));
    g.bench_function("signed_deliveries", |b| {
        b.iter(|| {
            rt.block_on(async {
                let target = endpoint.delivered() + IN_FLIGHT;
                let events = (0..IN_FLIGHT)
                    .map(|_| {
                        let meta = Metadata::new(EventType::from_static("bench.event"))
                            .with_topic(Topic::from_static("bench.events"));
                        Envelope::new(meta, Bytes::from_static(b"{}"))
                    })
                    .collect();
                store.append_batch(events).await.unwrap();
                while endpoint.delivered() < target {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, ingress, egress);
criterion_main!(benches);
