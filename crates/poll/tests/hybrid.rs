//! One upstream by webhook (the real ingress on loopback), by poll (a real HTTP upstream
//! on loopback) and by reconciliation, all behind one version gate in SQLite.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{http_source, Upstream};
use syncbus_core::{Bus, Envelope};
use syncbus_envelope::{Bytes, EntityId, Metadata};
use syncbus_poll::{AppliedVersions, Hybrid, PollConfig, Poller, RawEvent};
use syncbus_storage::{DurableConfig, DurableConsumer};
use syncbus_store::SqliteStore;
use syncbus_stream::{ByDigest, Drift, Reconcile};
use syncbus_webhook::{Ingress, IngressConfig, Mapping, Secret, SourceConfig};
use syncbus_workflow::{handler_fn, Context, HandlerError, Workflow};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[derive(Default)]
struct Local {
    /// entity → (version, data): what the handler applied.
    state: BTreeMap<String, (u64, Value)>,
    /// Every (entity, version) the handler ran for, in order.
    handled: Vec<(String, u64)>,
}

fn handler(local: Arc<Mutex<Local>>) -> impl syncbus_workflow::Handler<RawEvent> {
    handler_fn(move |env: Envelope<RawEvent>, _ctx: Context| {
        let local = local.clone();
        async move {
            let meta = env.meta();
            let entity = meta
                .entity_id()
                .map(|e| e.to_string())
                .ok_or_else(|| HandlerError::permanent("no entity"))?;
            let body: Value = serde_json::from_slice(env.payload().as_bytes())
                .map_err(|e| HandlerError::permanent(e.to_string()))?;
            let mut l = local.lock();
            if meta.event_type().as_str() == "syncbus.reconcile.extra" {
                l.state.remove(&entity);
                l.handled.push((entity, 0));
                return Ok(());
            }
            let version = meta
                .version()
                .ok_or_else(|| HandlerError::permanent("no version"))?;
            // A webhook body is the whole change; a polled item's payload is its data.
            let data = body.get("data").cloned().unwrap_or(body);
            l.state.insert(entity.clone(), (version, data));
            l.handled.push((entity, version));
            Ok(())
        }
    })
}

fn change(entity: usize, version: u64) -> Value {
    let id = format!("c{entity:03}");
    json!({"id": id, "version": version, "data": {"id": id, "v": version, "note": format!("{id} at {version}")}})
}

async fn ingress(store: &SqliteStore) -> String {
    let source = SourceConfig::new("shop", [Secret::new(SECRET).unwrap()])
        .unwrap()
        .mapping(Mapping::new().entity_at("/id").version_at("/version"));
    let ingress = Ingress::new(store.clone(), IngressConfig::new(), [source]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ingress.serve(listener));
    format!("http://{addr}/webhooks/shop")
}

async fn send(client: &reqwest::Client, url: &str, webhook_id: &str, body: &Value) {
    let secret = Secret::new(SECRET).unwrap();
    let body = body.to_string();
    let ts = syncbus_webhook::unix_now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            secret.sign(webhook_id, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_1000_changes_by_webhook_and_by_poll_are_handled_once_per_version() {
    const ENTITIES: usize = 200;
    const VERSIONS: u64 = 5;
    let mut changes: Vec<Value> = (0..ENTITIES)
        .flat_map(|e| (1..=VERSIONS).map(move |v| change(e, v)))
        .collect();
    assert_eq!(changes.len(), 1000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("hybrid.db"))
        .await
        .unwrap();
    let webhook_url = ingress(&store).await;

    // The poll side: the same changes, in another random order, paged.
    let up = Upstream::start(50);
    fastrand::shuffle(&mut changes);
    up.push(changes.iter().cloned());
    fastrand::shuffle(&mut changes);

    let local = Arc::new(Mutex::new(Local::default()));
    let versions = AppliedVersions::open(store.clone(), "shop").await.unwrap();
    let gate = versions.gate(handler(local.clone()));
    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let mut shop = Hybrid::new(&wf, gate.clone());
    let log = DurableConsumer::open(store.clone(), "shop-webhook", DurableConfig::new())
        .await
        .unwrap();
    shop.webhook::<RawEvent, _>(log, |s| s.fetch_wait(Duration::from_millis(20)).keyed(4))
        .unwrap();
    let cfg = PollConfig::new()
        .interval(Duration::from_millis(20))
        .idle_max(Duration::from_millis(40))
        .error_initial(Duration::from_millis(20));
    let poller = Poller::open("shop-poll", http_source(&up.url), store.clone(), cfg)
        .await
        .unwrap();
    shop.poller::<RawEvent, _>(poller.clone(), |s| {
        s.fetch_wait(Duration::from_millis(20)).keyed(4)
    })
    .unwrap();

    // The webhook side, while the poller runs: 16 at a time, in random order, and 100 of
    // them sent a second time under a new webhook id (a different transport id).
    let client = reqwest::Client::new();
    let mut sends: Vec<(String, Value)> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("msg_{i}"), c.clone()))
        .collect();
    sends.extend((0..100).map(|i| (format!("again_{i}"), changes[i * 7].clone())));
    fastrand::shuffle(&mut sends);
    let sends = Arc::new(Mutex::new(sends));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (sends, client, url) = (sends.clone(), client.clone(), webhook_url.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some((id, body)) = sends.lock().pop() else {
                    return;
                };
                send(&client, &url, &id, &body).await;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    // Every delivery through the gate: 1,100 by webhook, 1,000 by poll.
    until("every delivery", || {
        let m = gate.metrics();
        m.applied + m.stale == 2100
    })
    .await;
    let m = shop.metrics();
    shop.stop().await;

    let l = std::mem::take(&mut *local.lock());
    // Each entity version handled at most once, and per entity in rising order.
    let mut seen = HashSet::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (e, v) in &l.handled {
        assert!(seen.insert((e.clone(), *v)), "{e} v{v} handled twice");
        let prev = last.insert(e, *v).unwrap_or(0);
        assert!(*v > prev, "{e}: v{v} after v{prev}");
    }
    assert_eq!(m.gate.applied as usize, l.handled.len());
    assert_eq!(m.gate.unversioned, 0);
    // The final state is the upstream's: every entity at its last version, with its data.
    assert_eq!(l.state.len(), ENTITIES);
    for e in 0..ENTITIES {
        let want = change(e, VERSIONS);
        let (v, data) = &l.state[&format!("c{e:03}")];
        assert_eq!(*v, VERSIONS);
        assert_eq!(data, &want["data"]);
    }
    for e in 0..ENTITIES {
        assert_eq!(
            versions.get(&format!("c{e:03}")).await.unwrap(),
            Some(VERSIONS)
        );
    }
    assert!(poller.metrics().items >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_exactly_the_drift_through_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("rec.db")).await.unwrap();
    // The upstream's snapshot: entity → version. The local side has drifted: k03 missing,
    // k05 and k07 behind (divergent), k99 extra; the rest the same.
    let upstream: BTreeMap<String, u64> = (0..10).map(|i| (format!("k{i:02}"), 3)).collect();
    let local = Arc::new(Mutex::new(Local::default()));
    let versions = AppliedVersions::open(store.clone(), "erp").await.unwrap();
    let mut drifted: Vec<(String, u64)> = upstream
        .iter()
        .filter(|(k, _)| k.as_str() != "k03")
        .map(|(k, v)| {
            (
                k.clone(),
                if matches!(k.as_str(), "k05" | "k07") {
                    2
                } else {
                    *v
                },
            )
        })
        .collect();
    drifted.push(("k99".into(), 1));
    for (k, v) in &drifted {
        versions.record(k, *v).await.unwrap();
    }
    local.lock().state = drifted
        .into_iter()
        .map(|(k, v)| (k, (v, json!({"v": v}))))
        .collect();
    let gate = versions.gate(handler(local.clone()));
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let mut erp = Hybrid::new(&wf, gate.clone());
    let log = DurableConsumer::open(store.clone(), "erp-webhook", DurableConfig::new())
        .await
        .unwrap();
    erp.webhook::<RawEvent, _>(log, |s| s.fetch_wait(Duration::from_millis(20)))
        .unwrap();
    let snapshot = local.clone();
    let up = Arc::new(upstream.clone());
    erp.reconcile(Duration::from_millis(100), store.clone(), move || {
        let local: BTreeMap<String, u64> = snapshot
            .lock()
            .state
            .iter()
            .map(|(k, (v, _))| (k.clone(), *v))
            .collect();
        Reconcile::new(up.clone(), local)
            .compare(ByDigest::new(|u: &u64| *u, |l: &u64| *l))
            .page_size(3)
            .unwrap()
            .repairs(|d: Drift<String, u64, u64>| {
                let key = EntityId::new(d.key().as_str()).unwrap();
                // A removal goes one past the local version, so the gate drops a repeat.
                let version = d.upstream().copied().or(d.local().map(|v| v + 1));
                let meta = Metadata::new(d.kind().event_type())
                    .with_entity_id(Some(key))
                    .with_version(version);
                let body = json!({"v": version});
                Envelope::new(meta, Bytes::from(body.to_string()))
            })
    });
    until("a clean run", || {
        let m = erp.metrics();
        m.last_reconcile.is_some_and(|r| r.is_clean()) && m.reconcile_runs >= 2
    })
    .await;
    let m = erp.metrics();
    erp.stop().await;
    let l = local.lock();
    // Exactly the drift was repaired, nothing else: k03 created, k05 and k07 updated, k99 removed.
    let mut handled = l.handled.clone();
    handled.sort();
    assert_eq!(
        handled,
        [
            ("k03".into(), 3),
            ("k05".into(), 3),
            ("k07".into(), 3),
            ("k99".into(), 0)
        ]
    );
    assert_eq!(m.repairs, 4);
    let state: BTreeMap<String, u64> = l.state.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
    assert_eq!(state, upstream);
    assert_eq!(m.reconcile_failures, 0);
}
