//! Helpers: a signed-request sender and an ingress on loopback.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use syncbus_store::SqliteStore;
use syncbus_webhook::{unix_now, Ingress, IngressConfig, Secret, SourceConfig};

pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

pub fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

/// An ingress serving `sources` on a loopback port, over a fresh store in `dir`.
pub async fn ingress(
    dir: &std::path::Path,
    config: IngressConfig,
    sources: Vec<SourceConfig>,
) -> (Ingress, SocketAddr, SqliteStore) {
    let store = SqliteStore::open(dir.join("in.db")).await.unwrap();
    let ingress = Ingress::new(store.clone(), config, sources).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve(listener));
    (ingress, addr, store)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends `body` as webhook `id` signed by `secret` at `ts`.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &Secret,
    id: &str,
    ts: i64,
    body: &str,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", secret.sign(id, ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

pub async fn send_now(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    body: &str,
) -> reqwest::Response {
    send(client, url, &secret(), id, unix_now(), body).await
}
