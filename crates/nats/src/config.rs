//! The bridge's settings, checked once before anything connects.

use std::time::Duration;

use syncbus_core::Overflow;
use syncbus_workflow::RetryPolicy;

use crate::error::SetupError;

/// How an envelope travels in a message body.
///
/// Either way the whole envelope is in the body (the codec's exact round trip) and the
/// routing metadata is repeated in headers, so NATS tools and other clients can read it
/// without decoding.
///
/// # Examples
///
/// ```
/// use syncbus_nats::{Codec, NatsConfig};
/// let config = NatsConfig::new("nats://127.0.0.1:4222", "ORDERS").codec(Codec::Json);
/// assert_eq!(config.get_codec(), Codec::Json);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// `syncbus_envelope::Binary`: compact, the default.
    #[default]
    Binary,
    /// `syncbus_envelope::CloudEventsJson`: CloudEvents 1.0 structured mode, readable by any
    /// CloudEvents consumer.
    Json,
}

impl Codec {
    /// The codec a `Content-Type` names, if it is one of ours.
    pub(crate) fn from_content_type(value: &str) -> Option<Codec> {
        [Codec::Binary, Codec::Json]
            .into_iter()
            .find(|c| value.eq_ignore_ascii_case(c.content_type()))
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Codec::Binary => "application/vnd.syncbus.envelope",
            Codec::Json => "application/cloudevents+json",
        }
    }
}

/// How a handled delivery is acknowledged.
///
/// # Examples
///
/// ```
/// use syncbus_nats::{AckMode, NatsConfig};
/// let config = NatsConfig::new("nats://127.0.0.1:4222", "ORDERS").ack_mode(AckMode::Plain);
/// assert_eq!(config.get_ack_mode(), AckMode::Plain);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// Wait for the server to confirm the ack (a "double ack"). A plain ack sent after the
    /// ack wait expired returns `Ok` and the message comes back anyway; a double ack fails
    /// instead, so the runner counts a settle error. The default.
    #[default]
    Double,
    /// Fire the ack and go on: one round trip less per event; a lost ack means one more
    /// delivery (which the dedup layer absorbs).
    Plain,
}

/// Where the stream keeps its messages.
///
/// # Examples
///
/// ```
/// use syncbus_nats::{NatsConfig, Storage};
/// assert_eq!(NatsConfig::new("nats://h:4222", "S").get_storage(), Storage::File);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// On disk: survives a server restart. The default.
    #[default]
    File,
    /// In memory: lost when the server stops (a warning is logged at start).
    Memory,
}

/// Settings of a [`NatsBridge`](crate::NatsBridge): the server, the stream and its subjects,
/// the durable consumer, the codec and the publisher's buffer.
///
/// Defaults: subjects `<stream>.<topic>[.<entity>]`, file storage, 1 replica, a 2 minute
/// duplicate window, the durable consumer `<stream>_workers` with a 30 s ack wait, 1,000
/// unacknowledged messages at most, and max deliver = the default [`RetryPolicy`]'s
/// attempts + 1 (so the runner sees a message after its last attempt and writes its dead
/// letter); binary codec, double acks, the entity id in the subject; 10,000 publishes in
/// flight at most, waiting when full ([`Overflow::Block`]), each retried for up to 60 s
/// (5 s per try) until a PubAck comes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::Overflow;
/// use syncbus_nats::{NatsConfig, Storage};
/// use syncbus_workflow::RetryPolicy;
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")
///     .subject_prefix("shop")
///     .replicas(3)
///     .duplicate_window(Duration::from_secs(300))
///     .durable("billing")
///     .retry(&RetryPolicy::default().max_attempts(5))
///     .publish_buffer(1_000)
///     .overflow(Overflow::Reject);
/// assert!(config.check().is_ok());
/// assert_eq!(config.get_max_deliver(), 6);
/// assert_eq!(config.subject_root(), "shop");
/// ```
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) prefix: Option<String>,
    pub(crate) durable: Option<String>,
    pub(crate) client_name: Option<String>,
    pub(crate) storage: Storage,
    pub(crate) replicas: usize,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_age: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) max_ack_pending: i64,
    pub(crate) codec: Codec,
    pub(crate) ack_mode: AckMode,
    pub(crate) entity_in_subject: bool,
    pub(crate) routing_headers: bool,
    pub(crate) publish_buffer: usize,
    pub(crate) overflow: Overflow,
    pub(crate) publish_timeout: Duration,
    pub(crate) publish_retry_span: Duration,
    pub(crate) setup_timeout: Duration,
}

impl NatsConfig {
    /// The defaults for `stream` on the server(s) at `url` (`nats://host:port`, several
    /// separated by commas).
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            stream: stream.into(),
            prefix: None,
            durable: None,
            client_name: None,
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            ack_wait: Duration::from_secs(30),
            max_deliver: i64::from(RetryPolicy::default().attempt_limit()) + 1,
            max_ack_pending: 1_000,
            codec: Codec::Binary,
            ack_mode: AckMode::Double,
            entity_in_subject: true,
            routing_headers: false,
            publish_buffer: 10_000,
            overflow: Overflow::Block,
            publish_timeout: Duration::from_secs(5),
            publish_retry_span: Duration::from_secs(60),
            setup_timeout: Duration::from_secs(30),
        }
    }

    /// The first subject token (default: the stream name). The stream takes `<prefix>.>`.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The durable consumer's name (default `<stream>_workers`). Every process started with
    /// the same name shares it: JetStream hands each message to one of them.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn durable(mut self, name: impl Into<String>) -> Self {
        self.durable = Some(name.into());
        self
    }

    /// The connection's name, as the server's monitoring shows it (default `syncbus`).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = syncbus_nats::NatsConfig::new("nats://h:4222", "S").client_name("billing-1");
    /// # let _ = config;
    /// ```
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// File (default) or memory storage for a stream this bridge creates.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_nats::{NatsConfig, Storage};
    /// let config = NatsConfig::new("nats://h:4222", "S").storage(Storage::Memory);
    /// assert_eq!(config.get_storage(), Storage::Memory);
    /// ```
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Replicas of a stream this bridge creates (1 to 5; 3 on a cluster for data you cannot
    /// lose).
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// How long the stream remembers message ids to drop a re-published event. At least the
    /// [`publish_retry_span`](Self::publish_retry_span).
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long the stream keeps messages (`Duration::ZERO`, the default: no age limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").max_age(Duration::from_secs(86_400));
    /// # let _ = c;
    /// ```
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// How long a delivered message waits for a settle before JetStream delivers it again;
    /// the runner's `in_progress` ticks extend it while a handler runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").ack_wait(Duration::from_secs(10));
    /// assert_eq!(c.get_ack_wait(), Duration::from_secs(10));
    /// ```
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Deliveries before JetStream gives a message up by itself. Keep it one above the
    /// runner's attempts ([`retry`](Self::retry) does), so the runner sees a message after
    /// its last attempt and dead-letters it instead of the server dropping it unrecorded.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").max_deliver(4);
    /// assert_eq!(c.get_max_deliver(), 4);
    /// ```
    pub fn max_deliver(mut self, n: i64) -> Self {
        self.max_deliver = n;
        self
    }

    /// Matches max deliver to the runner's retry policy: its attempts + 1.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn retry(mut self, policy: &RetryPolicy) -> Self {
        self.max_deliver = i64::from(policy.attempt_limit()) + 1;
        self
    }

    /// Messages delivered and not yet settled, over all processes of the durable consumer.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").max_ack_pending(100);
    /// # let _ = c;
    /// ```
    pub fn max_ack_pending(mut self, n: i64) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// The body's codec (default [`Codec::Binary`]).
    ///
    /// # Examples
    ///
    /// See [`Codec`].
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Double (default) or plain acks.
    ///
    /// # Examples
    ///
    /// See [`AckMode`].
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// Whether the entity id is the subject's last token (default `true`), so subject
    /// filters and per-subject limits can work per entity.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").entity_in_subject(false);
    /// # let _ = c;
    /// ```
    pub fn entity_in_subject(mut self, on: bool) -> Self {
        self.entity_in_subject = on;
        self
    }

    /// Also writes the topic, entity id and version as headers (`Syncbus-Topic`,
    /// `Syncbus-Entity`, `Syncbus-Version`), for tools that look at headers without decoding
    /// the body. Off by default: the body holds all of it, the subject holds the topic (and
    /// the entity, see [`entity_in_subject`](Self::entity_in_subject)), and each header is
    /// allocations and bytes per message (with all three on, the publisher's own work per
    /// event roughly doubles). `Nats-Msg-Id`, `Content-Type` and `ce-type` are always
    /// written.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").routing_headers(true);
    /// # let _ = c;
    /// ```
    pub fn routing_headers(mut self, on: bool) -> Self {
        self.routing_headers = on;
        self
    }

    /// Publishes in flight (sent, PubAck not yet in) at most; past it the
    /// [`overflow`](Self::overflow) policy applies. Messages the client buffers while
    /// disconnected count here, so the buffer is bounded.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn publish_buffer(mut self, n: usize) -> Self {
        self.publish_buffer = n;
        self
    }

    /// What a publish does when the buffer is full: [`Overflow::Block`] waits (the default),
    /// [`Overflow::Reject`] fails at once with
    /// [`PublishErrorKind::Full`](crate::PublishErrorKind::Full) and hands the envelope back.
    /// [`Overflow::DropOldest`] is refused: a sent message cannot be taken back.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How long one try waits for its PubAck before sending again (same message id).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").publish_timeout(Duration::from_secs(2));
    /// # let _ = c;
    /// ```
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long a publish keeps trying before it fails with
    /// [`PublishErrorKind::NoAck`](crate::PublishErrorKind::NoAck). At most the duplicate
    /// window, so every retry is still deduplicated.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").publish_retry_span(Duration::from_secs(30));
    /// # let _ = c;
    /// ```
    pub fn publish_retry_span(mut self, span: Duration) -> Self {
        self.publish_retry_span = span;
        self
    }

    /// How long [`NatsBridge::connect`](crate::NatsBridge::connect) keeps trying to reach the
    /// server and set the stream up (the first connection is retried: a process may start
    /// before the server does).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_nats::NatsConfig::new("nats://h:4222", "S").setup_timeout(Duration::from_secs(5));
    /// # let _ = c;
    /// ```
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.setup_timeout = timeout;
        self
    }

    /// The stream's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_nats::NatsConfig::new("nats://h:4222", "S").stream(), "S");
    /// ```
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The first subject token.
    ///
    /// # Examples
    ///
    /// See [`NatsConfig`].
    pub fn subject_root(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.stream)
    }

    /// The durable consumer's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_nats::NatsConfig::new("nats://h:4222", "S").durable_name(), "S_workers");
    /// ```
    pub fn durable_name(&self) -> String {
        self.durable
            .clone()
            .unwrap_or_else(|| format!("{}_workers", self.stream))
    }

    /// The codec.
    ///
    /// # Examples
    ///
    /// See [`Codec`].
    pub fn get_codec(&self) -> Codec {
        self.codec
    }

    /// The ack mode.
    ///
    /// # Examples
    ///
    /// See [`AckMode`].
    pub fn get_ack_mode(&self) -> AckMode {
        self.ack_mode
    }

    /// The storage.
    ///
    /// # Examples
    ///
    /// See [`Storage`].
    pub fn get_storage(&self) -> Storage {
        self.storage
    }

    /// The ack wait.
    ///
    /// # Examples
    ///
    /// See [`ack_wait`](Self::ack_wait).
    pub fn get_ack_wait(&self) -> Duration {
        self.ack_wait
    }

    /// Max deliver.
    ///
    /// # Examples
    ///
    /// See [`max_deliver`](Self::max_deliver).
    pub fn get_max_deliver(&self) -> i64 {
        self.max_deliver
    }

    /// Checks every setting; [`NatsBridge::connect`](crate::NatsBridge::connect) calls it
    /// first.
    ///
    /// # Errors
    ///
    /// [`SetupError::Invalid`] naming the setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_nats::NatsConfig;
    /// let short = NatsConfig::new("nats://h:4222", "S").duplicate_window(Duration::from_secs(1));
    /// assert!(short.check().unwrap_err().to_string().contains("duplicate window"));
    /// ```
    pub fn check(&self) -> Result<(), SetupError> {
        let bad = |m: String| Err(SetupError::Invalid(m));
        if self.url.trim().is_empty() {
            return bad("the server url is empty".into());
        }
        check_name("stream name", &self.stream)?;
        check_name("durable consumer name", &self.durable_name())?;
        let root = self.subject_root();
        if root.is_empty()
            || root
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>']) || t.contains(char::is_whitespace))
        {
            return bad(format!(
                "subject prefix {root:?} must be dot-separated non-empty tokens without wildcards or spaces"
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!("replicas must be 1 to 5, not {}", self.replicas));
        }
        if self.ack_wait.is_zero() {
            return bad("ack wait must be greater than zero".into());
        }
        if self.max_deliver == 0 || self.max_deliver < -1 {
            return bad(format!(
                "max deliver must be at least 1 (or -1: unlimited), not {}",
                self.max_deliver
            ));
        }
        if self.max_ack_pending == 0 || self.max_ack_pending < -1 {
            return bad(format!(
                "max ack pending must be at least 1 (or -1: unlimited), not {}",
                self.max_ack_pending
            ));
        }
        if self.publish_buffer == 0 {
            return bad("publish buffer must be at least 1".into());
        }
        if !matches!(self.overflow, Overflow::Block | Overflow::Reject) {
            return bad(
                "overflow must be Block or Reject: a sent message cannot be dropped".into(),
            );
        }
        if self.publish_timeout.is_zero() || self.publish_retry_span.is_zero() {
            return bad("publish timeout and retry span must be greater than zero".into());
        }
        if self.duplicate_window < self.publish_retry_span {
            return bad(format!(
                "duplicate window {:?} is shorter than the publish retry span {:?}: a retried publish could be stored twice",
                self.duplicate_window, self.publish_retry_span
            ));
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> Result<(), SetupError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        });
    if ok {
        Ok(())
    } else {
        Err(SetupError::Invalid(format!(
            "{what} {name:?} must be 1 to 255 characters without '.', '*', '>', slashes or spaces"
        )))
    }
}
