//! The bridge: one connection, the stream and durable consumer set up with a safe profile,
//! the publisher, the source and the outbound forwarder made from it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::Client;
use syncbus_core::{Bus, SubscribeError};
use syncbus_storage::{DeadLetterStore, IntoArc};
use tokio::time::Instant;

use crate::config::{NatsConfig, Storage};
use crate::connection::{self, ConnectionState, Status};
use crate::error::SetupError;
use crate::outbound::Outbound;
use crate::publisher::NatsPublisher;
use crate::source::JetStreamSource;

/// A connection to NATS JetStream with its stream set up: publish bus events to it, serve
/// its durable consumer with the workflow runner.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_nats::{ConnectionState, NatsBridge, NatsConfig};
/// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
/// assert_eq!(bridge.state(), ConnectionState::Connected);
/// for warning in bridge.warnings() {
///     eprintln!("stream ORDERS: {warning}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsBridge {
    client: Client,
    js: jetstream::Context,
    status: Arc<Status>,
    config: Arc<NatsConfig>,
    warnings: Arc<Vec<String>>,
    publisher: NatsPublisher,
}

impl std::fmt::Debug for NatsBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBridge")
            .field("stream", &self.config.stream)
            .field("state", &self.state())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl NatsBridge {
    /// Connects (retrying until the server answers, up to the setup timeout), then looks the
    /// stream up, creating it if absent: file storage, the configured replicas, the
    /// duplicate window, subjects `<root>.>`. Logs a warning for each way an existing stream
    /// looks unsafe (memory storage, fewer replicas than asked, a duplicate window shorter
    /// than the publish retry span); [`warnings`](Self::warnings) lists them.
    ///
    /// # Errors
    ///
    /// [`SetupError::Invalid`] for a bad setting, [`SetupError::Connect`] for a bad URL,
    /// [`SetupError::JetStream`] when the stream cannot be looked up or created within the
    /// setup timeout (no server, no JetStream, subjects taken by another stream).
    ///
    /// # Examples
    ///
    /// See [`NatsBridge`].
    pub async fn connect(config: NatsConfig) -> Result<NatsBridge, SetupError> {
        config.check()?;
        let (client, status) = connection::connect(&config).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.publish_timeout)
            .ack_timeout(config.publish_timeout)
            .max_ack_inflight(config.publish_buffer)
            .build(client.clone());
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_root())],
            storage: match config.storage {
                Storage::Memory => stream::StorageType::Memory,
                _ => stream::StorageType::File,
            },
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window,
            max_age: config.max_age,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let deadline = Instant::now() + config.setup_timeout;
        let mut stream = loop {
            match js.get_or_create_stream(wanted.clone()).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(stream = %config.stream, error = %e, "nats: stream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(SetupError::JetStream {
                        what: format!("stream {}", config.stream),
                        source: Box::new(e),
                    })
                }
            }
        };
        let info = stream
            .info()
            .await
            .map_err(|e| SetupError::JetStream {
                what: format!("stream {}", config.stream),
                source: Box::new(e),
            })?
            .config
            .clone();
        let warnings = check_stream(&config, &info);
        for w in &warnings {
            tracing::warn!(stream = %config.stream, "nats: {w}");
        }
        let publisher = NatsPublisher::new(js.clone(), &config);
        Ok(NatsBridge {
            client,
            js,
            status,
            config: Arc::new(config),
            warnings: Arc::new(warnings),
            publisher,
        })
    }

    /// The publisher of this bridge's stream.
    ///
    /// # Examples
    ///
    /// See [`NatsPublisher`].
    pub fn publisher(&self) -> NatsPublisher {
        self.publisher.clone()
    }

    /// Forwards bus events published as bytes (`Envelope<Bytes>`) on topics matching
    /// `pattern` to the stream; see [`Outbound`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] for a bad pattern, a closed bus, or no tokio runtime.
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn forward(&self, bus: &Bus, pattern: &str) -> Result<Outbound, SubscribeError> {
        Outbound::bytes(bus, pattern, self.publisher())
    }

    /// Forwards typed bus events `E` on topics matching `pattern`, serialized with the
    /// envelope's JSON payload encoding; see [`Outbound`].
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward).
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn forward_typed<E: syncbus_core::Event + serde::Serialize>(
        &self,
        bus: &Bus,
        pattern: &str,
    ) -> Result<Outbound, SubscribeError> {
        Outbound::typed::<E>(bus, pattern, self.publisher())
    }

    /// The durable consumer (created if absent: explicit acks, the ack wait, max deliver and
    /// max ack pending of the config, every subject of the stream), as a [`Source`] for
    /// `Workflow::serve`. Undecodable messages go to `dead_letters` when given (see
    /// [`JetStreamSource`]). Warns when an existing consumer's ack wait or max deliver
    /// differ from the config.
    ///
    /// [`Source`]: syncbus_core::Source
    ///
    /// # Errors
    ///
    /// [`SetupError::JetStream`] when the consumer cannot be looked up or created.
    ///
    /// # Examples
    ///
    /// See [`JetStreamSource`].
    pub async fn source(
        &self,
        dead_letters: Option<Arc<dyn DeadLetterStore>>,
    ) -> Result<JetStreamSource, SetupError> {
        let config = &self.config;
        let durable = config.durable_name();
        let what = || format!("durable consumer {durable} on stream {}", config.stream);
        let stream =
            self.js
                .get_stream(&config.stream)
                .await
                .map_err(|e| SetupError::JetStream {
                    what: what(),
                    source: Box::new(e),
                })?;
        let wanted = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: config.max_ack_pending,
            deliver_policy: consumer::DeliverPolicy::All,
            filter_subject: format!("{}.>", config.subject_root()),
            ..Default::default()
        };
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&durable, wanted)
            .await
            .map_err(|e| SetupError::JetStream {
                what: what(),
                source: Box::new(e),
            })?;
        if let Ok(info) = consumer.info().await {
            let have = &info.config;
            if have.ack_wait != config.ack_wait || have.max_deliver != config.max_deliver {
                tracing::warn!(
                    consumer = %durable,
                    ack_wait = ?have.ack_wait,
                    max_deliver = have.max_deliver,
                    "nats: the durable consumer exists with another ack wait or max deliver than configured; it keeps its own"
                );
            }
        }
        Ok(JetStreamSource::new(
            consumer,
            durable,
            config.ack_mode,
            dead_letters,
        ))
    }

    /// [`source`](Self::source) with a dead-letter store for undecodable messages, taken as
    /// any store (`IntoArc`: a `SqliteStore`'s `dead_letters()`, an `Arc<dyn ..>`).
    ///
    /// # Errors
    ///
    /// As [`source`](Self::source).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// use syncbus_storage::MemoryDeadLetterStore;
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let source = bridge.source_with(MemoryDeadLetterStore::new(1_000)).await?;
    /// # let _ = source;
    /// # Ok(()) }
    /// ```
    pub async fn source_with(
        &self,
        dead_letters: impl IntoArc<dyn DeadLetterStore>,
    ) -> Result<JetStreamSource, SetupError> {
        self.source(Some(dead_letters.into_arc())).await
    }

    /// The connection's state now.
    ///
    /// # Examples
    ///
    /// See [`NatsBridge`].
    pub fn state(&self) -> ConnectionState {
        self.status.state()
    }

    /// Times the connection was lost so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// assert_eq!(bridge.disconnects(), 0);
    /// # Ok(()) }
    /// ```
    pub fn disconnects(&self) -> u64 {
        self.status.disconnects()
    }

    /// Times the connection was (re)established so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// assert_eq!(bridge.connects(), 1);
    /// # Ok(()) }
    /// ```
    pub fn connects(&self) -> u64 {
        self.status.connects()
    }

    /// Why the stream looks unsafe, one line each (logged at WARN by `connect`).
    ///
    /// # Examples
    ///
    /// See [`NatsBridge`].
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The settings it runs with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// assert_eq!(bridge.config().stream(), "ORDERS");
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// The async-nats client underneath.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// bridge.client().flush().await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The JetStream context underneath.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let mut stream = bridge.jetstream().get_stream("ORDERS").await?;
    /// println!("{} messages", stream.info().await?.state.messages);
    /// # Ok(()) }
    /// ```
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

fn check_stream(config: &NatsConfig, have: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.storage == stream::StorageType::Memory {
        out.push("memory storage: every message is lost when the server stops".to_owned());
    }
    if have.num_replicas < config.replicas {
        out.push(format!(
            "{} replica(s), {} asked: fewer copies than configured",
            have.num_replicas, config.replicas
        ));
    }
    if have.duplicate_window < config.publish_retry_span {
        out.push(format!(
            "duplicate window {:?} is shorter than the publish retry span {:?}: a retried publish may be stored twice",
            have.duplicate_window, config.publish_retry_span
        ));
    }
    if have.max_messages_per_subject == 1 || have.discard == stream::DiscardPolicy::New {
        out.push("limits discard messages on publish (discard new or one message per subject): a publish may be refused or replace an unread event".to_owned());
    }
    out
}
