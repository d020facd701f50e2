//! The connection: retried from the first attempt, its state kept for `state()` and the
//! `metrics` facade.
//!
//! Metrics (labelled `client`): `syncbus_nats_connected` (gauge, 1 while connected),
//! `syncbus_nats_disconnects_total` and `syncbus_nats_reconnects_total` (counters).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use async_nats::{Client, ConnectOptions, Event};

use crate::config::NatsConfig;
use crate::error::SetupError;

/// Where the connection to the server stands.
///
/// # Examples
///
/// ```
/// use syncbus_nats::ConnectionState;
/// assert_ne!(ConnectionState::Connected, ConnectionState::Disconnected);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Not connected yet (the first connection is being tried).
    Pending,
    /// Connected.
    Connected,
    /// Lost; the client reconnects by itself, with backoff.
    Disconnected,
    /// Closed for good (the bridge was dropped or drained).
    Closed,
}

#[derive(Debug)]
pub(crate) struct Status {
    state: AtomicU8,
    disconnects: AtomicU64,
    connects: AtomicU64,
    client: String,
}

impl Status {
    fn new(client: String) -> Status {
        metrics::gauge!("syncbus_nats_connected", "client" => client.clone()).set(0.0);
        Status {
            state: AtomicU8::new(0),
            disconnects: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            client,
        }
    }

    pub(crate) fn state(&self) -> ConnectionState {
        match self.state.load(Relaxed) {
            0 => ConnectionState::Pending,
            1 => ConnectionState::Connected,
            2 => ConnectionState::Disconnected,
            _ => ConnectionState::Closed,
        }
    }

    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Relaxed)
    }

    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Relaxed)
    }

    fn on(&self, event: &Event) {
        let client = self.client.clone();
        match event {
            Event::Connected => {
                self.state.store(1, Relaxed);
                if self.connects.fetch_add(1, Relaxed) > 0 {
                    metrics::counter!("syncbus_nats_reconnects_total", "client" => client.clone())
                        .increment(1);
                    tracing::info!(client = %self.client, "nats: reconnected");
                }
                metrics::gauge!("syncbus_nats_connected", "client" => client).set(1.0);
            }
            Event::Disconnected => {
                self.state.store(2, Relaxed);
                self.disconnects.fetch_add(1, Relaxed);
                metrics::counter!("syncbus_nats_disconnects_total", "client" => client.clone())
                    .increment(1);
                metrics::gauge!("syncbus_nats_connected", "client" => client).set(0.0);
                tracing::warn!(client = %self.client, "nats: disconnected; reconnecting");
            }
            Event::Closed => {
                self.state.store(3, Relaxed);
                metrics::gauge!("syncbus_nats_connected", "client" => client).set(0.0);
            }
            other => tracing::debug!(client = %self.client, event = %other, "nats event"),
        }
    }
}

pub(crate) async fn connect(config: &NatsConfig) -> Result<(Client, Arc<Status>), SetupError> {
    let name = config
        .client_name
        .clone()
        .unwrap_or_else(|| "syncbus".to_owned());
    let status = Arc::new(Status::new(name.clone()));
    let s = status.clone();
    let urls = config
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::Connect {
            url: config.url.clone(),
            source: Box::new(e),
        })?;
    let client = ConnectOptions::new()
        .name(name)
        // Start even when the server is not up yet; setup waits for it (setup_timeout).
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let s = s.clone();
            async move { s.on(&event) }
        })
        .connect(urls)
        .await
        .map_err(|e| SetupError::Connect {
            url: config.url.clone(),
            source: Box::new(e),
        })?;
    Ok((client, status))
}
