//! Webhook egress: the log's events, delivered signed to HTTP endpoints.
//!
//! Each endpoint is a [`DurableConsumer`] of its own over the event log, served by
//! `Workflow::serve`, so a delivery's attempts survive a restart and an exhausted one is a
//! dead letter that [`Endpoint::replay`] redrives.
//!
//! # A delivery
//!
//! `POST` of the event as CloudEvents JSON (`application/cloudevents+json`), signed with
//! Standard Webhooks headers: `webhook-id` is the event id, the same on every attempt;
//! `webhook-timestamp` is the attempt's time. Redirects are not followed.
//!
//! | answer | outcome |
//! | --- | --- |
//! | 2xx | delivered; the endpoint's failure streak ends |
//! | 410 Gone | the endpoint is disabled (kept in the store), the event dead-lettered |
//! | 429, 503 with `Retry-After` | retried after that delay |
//! | anything else (3xx, 4xx, 5xx), connection error, timeout | retried on the schedule |
//! | attempts exhausted | a dead letter with the last status and a bounded body excerpt |
//!
//! An endpoint failing without a success for [`EndpointConfig::disable_after`] (default 5
//! days) is disabled too. While disabled, its events are dead-lettered at once ("endpoint
//! disabled"); [`Endpoint::enable`] then [`Endpoint::replay`] delivers them.
//!
//! # Order
//!
//! By default deliveries run concurrently and a retried event falls behind later ones. With
//! [`EndpointConfig::fifo`], events of one entity go one at a time in log order: the
//! retries of an event run inside its delivery (the schedule is slept, the delivery kept
//! in progress), so no later event of that entity overtakes it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use syncbus_envelope::{CloudEventsJson, Envelope, Pattern, Timestamp};
use syncbus_storage::{
    Checkpoints, DeadLetterFilter, DurableConfig, DurableConsumer, EventLog, IntoArc, StoreError,
};
use syncbus_workflow::{
    HandlerError, Jitter, RateLimitConfig, Redrive, RedriveError, RedriveReport, RetryPolicy,
    ServeError, Served, Workflow,
};

use crate::signature::{unix_now, Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use syncbus_workflow::RawEvent;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Svix's schedule: attempts immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
/// 10 h (each entry is the wait before that attempt).
pub const DEFAULT_SCHEDULE: [Duration; 8] = [
    secs(0),
    secs(5),
    secs(300),
    secs(1800),
    secs(7200),
    secs(18_000),
    secs(36_000),
    secs(36_000),
];

/// Why egress could not be set up or changed.
///
/// # Examples
///
/// ```
/// use syncbus_webhook::{EgressError, EndpointConfig, Secret};
/// let secret = Secret::new("whsec_c2VjcmV0")?;
/// assert!(matches!(
///     EndpointConfig::new("crm", "ftp://example.com", secret),
///     Err(EgressError::Url(_))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// An endpoint name must be 1 to 64 letters, digits, `-` or `_`.
    #[error("endpoint name {0:?} must be 1 to 64 letters, digits, '-' or '_'")]
    Name(String),
    /// The URL is not an `http://` or `https://` URL.
    #[error("endpoint url {0:?} is not an http(s) url")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("cannot build the http client: {0}")]
    Client(#[source] reqwest::Error),
    /// The store failed (loading or saving endpoint state, opening the consumer).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serving the endpoint's consumer failed (no runtime, a name taken).
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// One endpoint: where, with which secret, for which topics, and how to retry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::Pattern;
/// use syncbus_webhook::{EndpointConfig, Secret};
/// let crm = EndpointConfig::new("crm", "http://127.0.0.1:9000/hooks", Secret::new("whsec_c2VjcmV0")?)?
///     .subscribe(Pattern::new("orders.>")?)
///     .schedule([Duration::ZERO, Duration::from_secs(1), Duration::from_secs(10)])
///     .timeout(Duration::from_secs(5))
///     .fifo(true);
/// assert_eq!(crm.name(), "crm");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    name: String,
    url: String,
    secret: Secret,
    patterns: Vec<Pattern>,
    schedule: Vec<Duration>,
    jitter: f64,
    timeout: Duration,
    rate_limit: Option<RateLimitConfig>,
    fifo: bool,
    disable_after: Duration,
    excerpt: usize,
    poll_interval: Duration,
}

impl EndpointConfig {
    /// An endpoint `name` (its consumer and dead letters are named after it) at `url`,
    /// signing with `secret`, subscribed to nothing yet; Svix's schedule with ±10 %
    /// jitter, 15 s per attempt, disabled after 5 days of failing, not FIFO.
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    ///
    /// # Errors
    ///
    /// [`EgressError::Name`] for a bad name, [`EgressError::Url`] for a URL that is not
    /// `http://` or `https://`.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        secret: Secret,
    ) -> Result<EndpointConfig, EgressError> {
        let name = name.into();
        let url = url.into();
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(EgressError::Name(name));
        }
        let parsed = reqwest::Url::parse(&url).map_err(|_| EgressError::Url(url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(EgressError::Url(url));
        }
        Ok(EndpointConfig {
            name,
            url,
            secret,
            patterns: Vec::new(),
            schedule: DEFAULT_SCHEDULE.to_vec(),
            jitter: 0.1,
            timeout: Duration::from_secs(15),
            rate_limit: None,
            fifo: false,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            excerpt: 512,
            poll_interval: Duration::from_millis(50),
        })
    }

    /// The endpoint's name.
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delivers events whose topic matches `pattern` (call again for more patterns).
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    pub fn subscribe(mut self, pattern: Pattern) -> EndpointConfig {
        self.patterns.push(pattern);
        self
    }

    /// The wait before each attempt, the first normally zero (default
    /// [`DEFAULT_SCHEDULE`]); its length is the number of attempts. An empty schedule is
    /// one attempt.
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    pub fn schedule(mut self, schedule: impl IntoIterator<Item = Duration>) -> EndpointConfig {
        self.schedule = schedule.into_iter().collect();
        self
    }

    /// The jitter of each wait, as a fraction (default 0.1: ±10 %; 0 for none).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_webhook::{EndpointConfig, Secret};
    /// let c = EndpointConfig::new("a", "http://127.0.0.1:1/", Secret::new("whsec_c2VjcmV0")?)?.jitter(0.0);
    /// # let _ = c;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn jitter(mut self, fraction: f64) -> EndpointConfig {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The most one attempt may take, connecting included (default 15 s); past it, the
    /// attempt failed and is retried.
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    pub fn timeout(mut self, timeout: Duration) -> EndpointConfig {
        self.timeout = timeout;
        self
    }

    /// At most this rate of attempts to the endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_webhook::{EndpointConfig, Secret};
    /// use syncbus_workflow::RateLimitConfig;
    /// let c = EndpointConfig::new("a", "http://127.0.0.1:1/", Secret::new("whsec_c2VjcmV0")?)?
    ///     .rate_limit(RateLimitConfig::per_second(50));
    /// # let _ = c;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limit(mut self, rate: RateLimitConfig) -> EndpointConfig {
        self.rate_limit = Some(rate);
        self
    }

    /// Events of one entity delivered one at a time, in log order (see the module docs).
    ///
    /// # Examples
    ///
    /// See [`EndpointConfig`].
    pub fn fifo(mut self, fifo: bool) -> EndpointConfig {
        self.fifo = fifo;
        self
    }

    /// Disable the endpoint after failing this long without a success (default 5 days).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_webhook::{EndpointConfig, Secret};
    /// let c = EndpointConfig::new("a", "http://127.0.0.1:1/", Secret::new("whsec_c2VjcmV0")?)?
    ///     .disable_after(std::time::Duration::from_secs(86_400));
    /// # let _ = c;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disable_after(mut self, d: Duration) -> EndpointConfig {
        self.disable_after = d;
        self
    }

    /// How often the endpoint's consumer looks for new events when idle (default 50 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_webhook::{EndpointConfig, Secret};
    /// let c = EndpointConfig::new("a", "http://127.0.0.1:1/", Secret::new("whsec_c2VjcmV0")?)?
    ///     .poll_interval(std::time::Duration::from_millis(10));
    /// # let _ = c;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_interval(mut self, d: Duration) -> EndpointConfig {
        self.poll_interval = d;
        self
    }

    fn retry_delays(&self) -> Vec<Duration> {
        self.schedule.iter().skip(1).copied().collect()
    }
}

/// What the store keeps of an endpoint.
///
/// # Examples
///
/// ```
/// let s = syncbus_webhook::EndpointState::default();
/// assert!(!s.disabled && s.failing_since.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointState {
    /// No deliveries are attempted; events are dead-lettered until enabled.
    pub disabled: bool,
    /// Why it was disabled.
    pub reason: Option<String>,
    /// Unix seconds of the first failure since the last success.
    pub failing_since: Option<i64>,
}

/// Delivers the log's events to endpoints.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_core::{Bus, Pattern};
/// use syncbus_store::SqliteStore;
/// use syncbus_webhook::{Egress, EndpointConfig, Secret};
/// use syncbus_workflow::Workflow;
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("out.db")).await?;
/// let bus = Bus::new();
/// let wf = Workflow::builder(&bus).dead_letters(store.dead_letters()).build();
/// let egress = Egress::new(&wf, store.clone(), store.clone())?;
/// let crm = EndpointConfig::new("crm", "http://127.0.0.1:9/hooks", Secret::new("whsec_c2VjcmV0")?)?
///     .subscribe(Pattern::new("orders.>")?);
/// let endpoint = egress.endpoint(crm).await?;
/// assert!(!endpoint.state().disabled);
/// endpoint.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Egress {
    wf: Workflow,
    log: Arc<dyn EventLog>,
    state: Arc<dyn Checkpoints>,
    client: reqwest::Client,
}

impl Egress {
    /// Egress reading `log`, keeping endpoint state in `state`, dead letters in the
    /// workflow's store.
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    ///
    /// # Errors
    ///
    /// [`EgressError::Client`] if the HTTP client cannot be built.
    pub fn new(
        wf: &Workflow,
        log: impl IntoArc<dyn EventLog>,
        state: impl IntoArc<dyn Checkpoints>,
    ) -> Result<Egress, EgressError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("syncbus-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(EgressError::Client)?;
        Ok(Egress {
            wf: wf.clone(),
            log: log.into_arc(),
            state: state.into_arc(),
            client,
        })
    }

    /// Starts delivering to an endpoint, resuming its state and its consumer's position.
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    ///
    /// # Errors
    ///
    /// [`EgressError::Store`] if its state or consumer cannot be loaded,
    /// [`EgressError::Serve`] if an endpoint of that name runs already.
    ///
    /// # Cancel safety
    ///
    /// If dropped, nothing is served; the consumer may have been registered in the store.
    pub async fn endpoint(&self, config: EndpointConfig) -> Result<Endpoint, EgressError> {
        let key = format!("webhook-egress.{}", config.name);
        let state: EndpointState = match self.state.get(&key).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => EndpointState::default(),
        };
        let consumer_name = format!("webhook-egress-{}", config.name);
        let consumer = DurableConsumer::open(
            self.log.clone(),
            &consumer_name,
            DurableConfig::new()
                .poll_interval(config.poll_interval)
                .ack_timeout(
                    config
                        .timeout
                        .saturating_mul(2)
                        .max(Duration::from_secs(30)),
                ),
        )
        .await?;
        let shared = Arc::new(Shared {
            key,
            config: config.clone(),
            client: self.client.clone(),
            state: Mutex::new(state),
            store: self.state.clone(),
            delivered: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
        });
        let mut serve = self
            .wf
            .serve(consumer)
            .name(consumer_name.clone())
            .fetch_wait(config.poll_interval.max(Duration::from_millis(10)));
        let jitter = if config.jitter > 0.0 {
            Jitter::Proportional(config.jitter)
        } else {
            Jitter::None
        };
        serve = if config.fifo {
            // Retries inside the delivery: the lane of the entity waits for them.
            serve.keyed(16).retry(RetryPolicy::never())
        } else {
            serve.retry(
                RetryPolicy::new()
                    .schedule(config.retry_delays())
                    .jitter(jitter),
            )
        };
        if let Some(rate) = config.rate_limit.clone() {
            serve = serve.rate_limit(rate);
        }
        let handler = shared.clone();
        let policy = RetryPolicy::new()
            .schedule(config.retry_delays())
            .jitter(jitter);
        let served = serve.handle(move |env: Envelope<RawEvent>, _ctx| {
            let shared = handler.clone();
            let policy = policy.clone();
            async move {
                if !shared.config.fifo {
                    return shared.deliver(&env).await;
                }
                let mut attempt = 1;
                loop {
                    match shared.deliver(&env).await {
                        Ok(()) => return Ok(()),
                        Err(e) if e.is_retryable() && attempt < policy.attempt_limit() => {
                            let wait = e
                                .retry_after_hint()
                                .unwrap_or_else(|| policy.delay(attempt, Duration::ZERO));
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        })?;
        Ok(Endpoint {
            shared,
            served,
            wf: self.wf.clone(),
            name: consumer_name,
        })
    }
}

#[derive(Debug)]
struct Shared {
    key: String,
    config: EndpointConfig,
    client: reqwest::Client,
    state: Mutex<EndpointState>,
    store: Arc<dyn Checkpoints>,
    delivered: AtomicU64,
    attempts: AtomicU64,
}

fn excerpt(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if body.len() > max {
        s.push('…');
    }
    s
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Shared {
    async fn save(&self) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&*self.state.lock()).unwrap_or_default();
        self.store.put(&self.key, bytes).await
    }

    async fn set_disabled(&self, disabled: bool, reason: Option<String>) -> Result<(), StoreError> {
        {
            let mut s = self.state.lock();
            s.disabled = disabled;
            s.reason = reason;
            if !disabled {
                s.failing_since = None;
            }
        }
        self.save().await
    }

    async fn succeeded(&self) {
        let changed = self.state.lock().failing_since.take().is_some();
        if changed {
            if let Err(e) = self.save().await {
                tracing::warn!(endpoint = %self.config.name, error = %e, "cannot save endpoint state");
            }
        }
    }

    async fn failed(&self) {
        let now = unix_now();
        let disable = {
            let mut s = self.state.lock();
            let since = *s.failing_since.get_or_insert(now);
            let limit = i64::try_from(self.config.disable_after.as_secs()).unwrap_or(i64::MAX);
            if now.saturating_sub(since) >= limit && !s.disabled {
                s.disabled = true;
                s.reason = Some("failing for longer than disable_after".into());
                true
            } else {
                false
            }
        };
        if disable {
            tracing::warn!(endpoint = %self.config.name, "endpoint disabled: failing too long");
        }
        if let Err(e) = self.save().await {
            tracing::warn!(endpoint = %self.config.name, error = %e, "cannot save endpoint state");
        }
    }

    async fn deliver(&self, env: &Envelope<RawEvent>) -> Result<(), HandlerError> {
        let topic = env.meta().topic();
        if !topic.is_some_and(|t| self.config.patterns.iter().any(|p| p.matches(t))) {
            return Ok(()); // not for this endpoint
        }
        if self.state.lock().disabled {
            return Err(HandlerError::permanent("endpoint disabled"));
        }
        let stored = env.clone().map_payload(|p| p.0);
        let body = CloudEventsJson::encode(&stored)
            .map_err(|e| HandlerError::permanent(format!("cannot encode the event: {e}")))?;
        let id = env.meta().id().to_string();
        let ts = unix_now();
        let signature = self.config.secret.sign(&id, ts, &body);
        self.attempts.fetch_add(1, Relaxed);
        let sent = self
            .client
            .post(&self.config.url)
            .timeout(self.config.timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents+json",
            )
            .header(WEBHOOK_ID, &id)
            .header(WEBHOOK_TIMESTAMP, ts.to_string())
            .header(WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.failed().await;
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Err(HandlerError::retryable(format!("request {what}: {e}")));
            }
        };
        let status = response.status();
        if status.is_success() {
            self.delivered.fetch_add(1, Relaxed);
            self.succeeded().await;
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let text = response.bytes().await.unwrap_or_default();
        let message = format!(
            "status {}; body: {}",
            status.as_u16(),
            excerpt(&text, self.config.excerpt)
        );
        if status == reqwest::StatusCode::GONE {
            let reason = Some("410 Gone".to_owned());
            if let Err(e) = self.set_disabled(true, reason).await {
                tracing::warn!(endpoint = %self.config.name, error = %e, "cannot save endpoint state");
            }
            tracing::warn!(endpoint = %self.config.name, "endpoint disabled: 410 Gone");
            return Err(HandlerError::permanent(format!(
                "{message}; endpoint disabled"
            )));
        }
        self.failed().await;
        let err = HandlerError::retryable(message);
        match wait {
            Some(d)
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::SERVICE_UNAVAILABLE =>
            {
                Err(err.retry_after(d))
            }
            _ => Err(err),
        }
    }
}

/// A running endpoint: its state, its counters, enable / disable, and replay.
///
/// # Examples
///
/// See [`Egress`].
#[derive(Debug)]
pub struct Endpoint {
    shared: Arc<Shared>,
    served: Served,
    wf: Workflow,
    name: String,
}

impl Endpoint {
    /// The endpoint's state as last saved.
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    pub fn state(&self) -> EndpointState {
        self.shared.state.lock().clone()
    }

    /// The name its consumer and dead letters carry (`webhook-egress-NAME`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use syncbus_webhook::{Egress, EndpointConfig, Secret};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = syncbus_store::SqliteStore::open(dir.path().join("o.db")).await?;
    /// # let bus = syncbus_core::Bus::new();
    /// # let wf = syncbus_workflow::Workflow::new(&bus);
    /// let egress = Egress::new(&wf, store.clone(), store)?;
    /// let e = egress.endpoint(EndpointConfig::new("crm", "http://127.0.0.1:9/", Secret::new("whsec_c2VjcmV0")?)?).await?;
    /// assert_eq!(e.subscription(), "webhook-egress-crm");
    /// # e.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn subscription(&self) -> &str {
        &self.name
    }

    /// Deliveries answered 2xx so far (by this process).
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Relaxed)
    }

    /// HTTP attempts made so far (by this process).
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Relaxed)
    }

    /// Enables a disabled endpoint (its failure streak starts anew).
    ///
    /// # Examples
    ///
    /// See [`replay`](Self::replay).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the state cannot be saved.
    pub async fn enable(&self) -> Result<(), StoreError> {
        self.shared.set_disabled(false, None).await
    }

    /// Disables the endpoint by hand: its events are dead-lettered until enabled.
    ///
    /// # Examples
    ///
    /// See [`replay`](Self::replay).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the state cannot be saved.
    pub async fn disable(&self) -> Result<(), StoreError> {
        self.shared
            .set_disabled(true, Some("disabled by hand".into()))
            .await
    }

    /// Redelivers the endpoint's dead letters recorded since `since`, each removed once
    /// replayed (a new one is recorded if it fails again).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use syncbus_webhook::{Egress, EndpointConfig, Secret};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = syncbus_store::SqliteStore::open(dir.path().join("o.db")).await?;
    /// # let bus = syncbus_core::Bus::new();
    /// # let wf = syncbus_workflow::Workflow::builder(&bus).dead_letters(store.dead_letters()).build();
    /// let egress = Egress::new(&wf, store.clone(), store)?;
    /// let e = egress.endpoint(EndpointConfig::new("crm", "http://127.0.0.1:9/", Secret::new("whsec_c2VjcmV0")?)?).await?;
    /// e.disable().await?;
    /// assert!(e.state().disabled);
    /// e.enable().await?;
    /// let report = e.replay(syncbus_core::Timestamp::from_unix_nanos(0)).await?;
    /// assert_eq!(report.matched, 0);
    /// # e.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RedriveError`] if the dead letters cannot be listed or deleted.
    pub async fn replay(&self, since: Timestamp) -> Result<RedriveReport, RedriveError> {
        let filter = DeadLetterFilter::new()
            .subscription(self.name.clone())
            .between(since, Timestamp::now());
        self.wf.redrive(Redrive::new(filter)).await
    }

    /// Waits until everything in the log so far is settled (see `Served::settled`).
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn settled(&self) {
        self.served.settled().await;
    }

    /// Stops delivering; every fetched delivery is settled or handed back.
    ///
    /// # Examples
    ///
    /// See [`Egress`].
    pub async fn stop(self) {
        self.served.stop().await;
    }
}
