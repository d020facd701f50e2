//! JetStream throughput, the bridge against raw async-nats on the same server and payloads.
//!
//! Group `nats_publish` (1,000 events per iteration, every PubAck awaited):
//! `syncbus_publish_all` is `NatsPublisher::publish_all` (subject mapping, codec, headers,
//! `Nats-Msg-Id`, the bounded buffer, PubAck checks); the peer `raw_async_nats` sends the same
//! encoded bodies with `jetstream.publish_with_headers` and awaits the acks.
//!
//! Group `nats_end_to_end` (1,000 events per iteration, from publish until every event is
//! handled and acked): `syncbus_bus_to_handler` publishes on a bus, the `Outbound` forwards
//! to JetStream, `Workflow::serve` over the durable consumer decodes, handles and double-acks;
//! the peer `raw_publish_fetch_ack` publishes with async-nats and fetches and double-acks
//! from a pull consumer by hand.
//!
//! Needs `SYNCBUS_NATS_URL` (skips with one line without it).

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use syncbus_core::{Bus, Bytes, Envelope, Event};
use syncbus_envelope::Binary;
use syncbus_nats::{NatsBridge, NatsConfig};
use syncbus_workflow::{HandlerError, Workflow};

const N: u64 = 1_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
    note: String,
}

impl Event for Tick {
    const TYPE: &'static str = "bench.tick";
    const TOPIC: &'static str = "bench.ticks";
}

fn batch() -> Vec<Envelope<Bytes>> {
    (0..N)
        .map(|n| {
            Envelope::from_event(Tick {
                n,
                note: "a payload of about a hundred bytes, like a small domain event".into(),
            })
            .to_bytes_payload()
            .expect("a Tick encodes")
        })
        .collect()
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "BENCH_{what}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn delete(js: &jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
}

fn nats(c: &mut Criterion) {
    let Ok(url) = std::env::var("SYNCBUS_NATS_URL") else {
        println!("skipped the nats benches: SYNCBUS_NATS_URL is not set");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("a runtime");

    let mut group = c.benchmark_group("nats_publish");
    group
        .throughput(Throughput::Elements(N))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let name = unique("pub");
    let bridge = rt
        .block_on(NatsBridge::connect(NatsConfig::new(&url, &name)))
        .expect("connect");
    let publisher = bridge.publisher();
    group.bench_function("syncbus_publish_all", |b| {
        b.iter(|| {
            rt.block_on(async {
                for r in publisher.publish_all(batch()).await {
                    r.expect("published");
                }
            })
        })
    });
    let js = bridge.jetstream().clone();
    let subject = format!("{name}.raw.bench.ticks");
    group.bench_function("raw_async_nats", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut acks = Vec::with_capacity(N as usize);
                for env in batch() {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        async_nats::header::NATS_MESSAGE_ID,
                        env.id().to_string().as_str(),
                    );
                    let body = Bytes::from(Binary::encode(&env).expect("encodes"));
                    acks.push(
                        js.publish_with_headers(subject.clone(), headers, body)
                            .await
                            .expect("sent"),
                    );
                }
                for ack in acks {
                    ack.into_future().await.expect("acked");
                }
            })
        })
    });
    group.finish();
    rt.block_on(delete(bridge.jetstream(), &name));

    let mut group = c.benchmark_group("nats_end_to_end");
    group
        .throughput(Throughput::Elements(N))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let name = unique("e2e");
    let handled = Arc::new(AtomicU64::new(0));
    let (bus, bridge, _out, served) = rt.block_on(async {
        let bus = Bus::new();
        let bridge = NatsBridge::connect(NatsConfig::new(&url, &name))
            .await
            .expect("connect");
        let out = bridge.forward(&bus, "bench.>").expect("forward");
        let h = handled.clone();
        let served = Workflow::new(&bus)
            .serve(bridge.source(None).await.expect("source"))
            .keyed(8)
            .batch(256)
            .fetch_wait(Duration::from_millis(50))
            .handle(move |_env: Envelope<Tick>, _ctx| {
                h.fetch_add(1, Relaxed);
                async { Ok::<(), HandlerError>(()) }
            })
            .expect("serve");
        (bus, bridge, out, served)
    });
    group.bench_function("syncbus_bus_to_handler", |b| {
        b.iter(|| {
            rt.block_on(async {
                let target = handled.load(Relaxed) + N;
                for env in batch() {
                    bus.publish_envelope(env).await.expect("published");
                }
                while handled.load(Relaxed) < target {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
    });
    rt.block_on(async {
        served.stop().await;
        delete(bridge.jetstream(), &name).await;
    });

    let name = unique("raw");
    let js = bridge.jetstream().clone();
    let raw = rt.block_on(async {
        let s = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .expect("stream");
        s.create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer")
    });
    let subject = format!("{name}.bench.ticks");
    group.bench_function("raw_publish_fetch_ack", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut acks = Vec::with_capacity(N as usize);
                for env in batch() {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        async_nats::header::NATS_MESSAGE_ID,
                        env.id().to_string().as_str(),
                    );
                    let body = Bytes::from(Binary::encode(&env).expect("encodes"));
                    acks.push(
                        js.publish_with_headers(subject.clone(), headers, body)
                            .await
                            .expect("sent"),
                    );
                }
                for ack in acks {
                    ack.into_future().await.expect("acked");
                }
                let mut got = 0;
                while got < N {
                    let mut msgs = raw
                        .fetch()
                        .max_messages(256)
                        .messages()
                        .await
                        .expect("fetch");
                    while let Some(m) = msgs.next().await {
                        let m = m.expect("message");
                        let _ = Binary::decode(&m.payload, &Default::default()).expect("decodes");
                        m.double_ack().await.expect("acked");
                        got += 1;
                    }
                }
            })
        })
    });
    group.finish();
    rt.block_on(delete(&js, &name));
}

criterion_group!(benches, nats);
criterion_main!(benches);
