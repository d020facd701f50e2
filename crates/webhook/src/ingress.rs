//! Webhook ingress: `POST /webhooks/{source}` → verify → dedup by `webhook-id` → durable
//! append → 2xx; processing happens later, from the log.
//!
//! # Order of work
//!
//! 1. Refuse what cannot be a valid request, cheapest first: 503 while shutting down, 404
//!    for an unknown source, 415 for a body that is not JSON, 413 for a `Content-Length`
//!    over the source's limit (before reading a byte of the body), 400 without
//!    `webhook-id` / `webhook-timestamp`.
//! 2. Read the body, at most the source's limit (413 past it), and verify the signature
//!    and timestamp (401).
//! 3. Parse and map the body (400).
//! 4. Hand it to the intake, which records the key `webhook:SOURCE:ID` and appends the
//!    event in one transaction shared with the requests around it (group commit); 429 with
//!    `Retry-After` when the intake queue is full.
//! 5. Answer 200 once committed; a request whose key was recorded before is answered 200
//!    with `webhook-duplicate: true` and appends nothing.
//!
//! A crash before the commit leaves neither key nor event, and the sender retries; a crash
//! after it loses nothing: the event is in the log, and a
//! [`DurableConsumer`](syncbus_storage::DurableConsumer) served with
//! `Workflow::serve` processes it (retries, dead letters, redrive). A rejected request
//! stores and publishes nothing.
//!
//! # The event
//!
//! The stored envelope has a fresh event id, the mapped type, topic, entity id and version,
//! source `/webhooks/SOURCE`, the body as payload, and the extension attributes
//! `webhookid` and `webhooksource`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use syncbus_envelope::{Bytes, Envelope, Metadata};
use syncbus_storage::{DedupKey, StoreErrorKind};
use syncbus_store::SqliteStore;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{oneshot, watch};

use crate::intake::{self, Intaken, Job};
use crate::mapping::Mapping;
use crate::signature::{Secret, Verifier, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// The response header set on the answer to a duplicate.
pub const DUPLICATE_HEADER: &str = "webhook-duplicate";

/// The default largest body a source accepts: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// The default time a `webhook-id` is remembered: 7 days, longer than any sender retries.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why an ingress could not be configured.
///
/// # Examples
///
/// ```
/// use syncbus_webhook::{ConfigError, SourceConfig};
/// assert!(matches!(SourceConfig::new("bad name", []), Err(ConfigError::SourceName(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A source name must be one topic token of letters, digits, `-` and `_`.
    #[error("source name {0:?} must be 1 to 64 letters, digits, '-' or '_'")]
    SourceName(String),
    /// A source needs at least one secret.
    #[error("source {0:?} has no secret")]
    NoSecret(String),
    /// A secret was refused.
    #[error("source {source_name:?}: {error}")]
    Secret {
        /// The source.
        source_name: String,
        /// Why.
        #[source]
        error: crate::signature::SecretError,
    },
    /// Two sources of one name.
    #[error("source {0:?} is configured twice")]
    Duplicate(String),
    /// The intake needs a tokio runtime (it runs a task).
    #[error("the ingress must be made inside a tokio runtime")]
    NoRuntime,
}

/// One webhook sender: its name (the path segment), secrets, tolerance, body limit and
/// mapping.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_webhook::{Mapping, Secret, SourceConfig};
/// let github = SourceConfig::new("github", [Secret::new("whsec_c2VjcmV0")?])?
///     .tolerance(Duration::from_secs(60))
///     .max_body(1 << 20)
///     .mapping(Mapping::new().event_type_at("/action"));
/// assert_eq!(github.name(), "github");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SourceConfig {
    name: String,
    verifier: Verifier,
    max_body: usize,
    mapping: Mapping,
}

fn valid_source(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SourceConfig {
    /// A source with these secrets (several during a rotation), the default tolerance
    /// (300 s), body limit (256 KiB) and mapping.
    ///
    /// # Examples
    ///
    /// See [`SourceConfig`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::SourceName`] for a name that is not 1 to 64 of `[A-Za-z0-9_-]`,
    /// [`ConfigError::NoSecret`] without a secret.
    pub fn new(
        name: impl Into<String>,
        secrets: impl IntoIterator<Item = Secret>,
    ) -> Result<SourceConfig, ConfigError> {
        let name = name.into();
        if !valid_source(&name) {
            return Err(ConfigError::SourceName(name));
        }
        let secrets: Vec<Secret> = secrets.into_iter().collect();
        if secrets.is_empty() {
            return Err(ConfigError::NoSecret(name));
        }
        Ok(SourceConfig {
            name,
            verifier: Verifier::new(secrets),
            max_body: DEFAULT_MAX_BODY,
            mapping: Mapping::new(),
        })
    }

    /// Parses `NAME=SECRET` (a command line's form), the secret in `whsec_` + base64 form.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = syncbus_webhook::SourceConfig::parse("shop=whsec_c2VjcmV0")?;
    /// assert_eq!(s.name(), "shop");
    /// assert!(syncbus_webhook::SourceConfig::parse("shop=whsec_").is_err());
    /// # Ok::<(), syncbus_webhook::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`ConfigError::Secret`] for a secret that is empty or
    /// not base64.
    pub fn parse(spec: &str) -> Result<SourceConfig, ConfigError> {
        let (name, secret) = spec
            .split_once('=')
            .ok_or_else(|| ConfigError::NoSecret(spec.to_owned()))?;
        let secret = Secret::new(secret).map_err(|error| ConfigError::Secret {
            source_name: name.to_owned(),
            error,
        })?;
        SourceConfig::new(name, [secret])
    }

    /// The source's name: its path segment.
    ///
    /// # Examples
    ///
    /// See [`SourceConfig`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How far a timestamp may be from the clock, both ways (default 300 s).
    ///
    /// # Examples
    ///
    /// See [`SourceConfig`].
    pub fn tolerance(mut self, tolerance: Duration) -> SourceConfig {
        self.verifier = self.verifier.with_tolerance(tolerance);
        self
    }

    /// The largest body accepted, in bytes (default 256 KiB); larger is 413.
    ///
    /// # Examples
    ///
    /// See [`SourceConfig`].
    pub fn max_body(mut self, bytes: usize) -> SourceConfig {
        self.max_body = bytes;
        self
    }

    /// How bodies become event metadata (default: type `webhook.NAME`, topic
    /// `webhooks.NAME`).
    ///
    /// # Examples
    ///
    /// See [`SourceConfig`].
    pub fn mapping(mut self, mapping: Mapping) -> SourceConfig {
        self.mapping = mapping;
        self
    }
}

/// Settings of the ingress as a whole.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let c = syncbus_webhook::IngressConfig::new().queue(4096).dedup_ttl(Duration::from_secs(86_400));
/// assert_eq!(c.get_queue(), 4096);
/// ```
#[derive(Debug, Clone)]
pub struct IngressConfig {
    queue: usize,
    max_batch: usize,
    dedup_ttl: Duration,
    request_timeout: Duration,
    retry_after: Duration,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            queue: 1024,
            max_batch: 512,
            dedup_ttl: DEFAULT_DEDUP_TTL,
            request_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl IngressConfig {
    /// The defaults: a queue of 1,024 requests, batches of up to 512, ids remembered 7
    /// days, 30 s per request, `Retry-After: 1` when full.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_webhook::IngressConfig::new().get_queue(), 1024);
    /// ```
    pub fn new() -> IngressConfig {
        IngressConfig::default()
    }

    /// How many requests may wait for the intake; past it, 429.
    ///
    /// # Examples
    ///
    /// See [`IngressConfig`].
    pub fn queue(mut self, n: usize) -> IngressConfig {
        self.queue = n.max(1);
        self
    }

    /// The queue length.
    ///
    /// # Examples
    ///
    /// See [`IngressConfig`].
    pub fn get_queue(&self) -> usize {
        self.queue
    }

    /// The most requests one commit takes.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_webhook::IngressConfig::new().max_batch(64);
    /// # let _ = c;
    /// ```
    pub fn max_batch(mut self, n: usize) -> IngressConfig {
        self.max_batch = n.max(1);
        self
    }

    /// How long a `webhook-id` is remembered (default 7 days).
    ///
    /// # Examples
    ///
    /// See [`IngressConfig`].
    pub fn dedup_ttl(mut self, ttl: Duration) -> IngressConfig {
        self.dedup_ttl = ttl;
        self
    }

    /// The most one request may take, body included (default 30 s); past it, 408.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_webhook::IngressConfig::new().request_timeout(std::time::Duration::from_secs(5));
    /// # let _ = c;
    /// ```
    pub fn request_timeout(mut self, d: Duration) -> IngressConfig {
        self.request_timeout = d;
        self
    }

    /// The `Retry-After` a 429 carries (default 1 s, whole seconds).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_webhook::IngressConfig::new().retry_after(std::time::Duration::from_secs(2));
    /// # let _ = c;
    /// ```
    pub fn retry_after(mut self, d: Duration) -> IngressConfig {
        self.retry_after = d;
        self
    }
}

/// Counters of an ingress.
///
/// # Examples
///
/// ```
/// let m = syncbus_webhook::IngressMetrics::default();
/// assert_eq!(m.accepted + m.duplicates + m.rejected, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngressMetrics {
    /// Requests stored (answered 200).
    pub accepted: u64,
    /// Requests answered 200 as duplicates.
    pub duplicates: u64,
    /// Requests refused (4xx, 5xx).
    pub rejected: u64,
}

#[derive(Debug)]
struct Shared {
    sources: HashMap<String, SourceConfig>,
    intake: tokio::sync::mpsc::Sender<Job>,
    closing: AtomicBool,
    closed: watch::Sender<bool>,
    retry_after: HeaderValue,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
}

/// Webhook ingress over an SQLite store: the axum [`Router`] to mount, or a ready server.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_store::SqliteStore;
/// use syncbus_webhook::{Ingress, IngressConfig, Secret, SourceConfig};
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("intake.db")).await?;
/// let shop = SourceConfig::new("shop", [Secret::new("whsec_c2VjcmV0")?])?;
/// let ingress = Ingress::new(store, IngressConfig::new(), [shop])?;
/// // Mount it in an application's own axum server...
/// let app = axum::Router::new().merge(ingress.router());
/// # let _ = app;
/// // ...or serve it: `ingress.serve(listener).await`.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Ingress {
    shared: Arc<Shared>,
    timeout: Duration,
    max_body: usize,
    store: SqliteStore,
}

impl Ingress {
    /// An ingress storing into `store`, serving `sources`. Starts the intake task.
    ///
    /// # Examples
    ///
    /// See [`Ingress`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Duplicate`] for two sources of one name, [`ConfigError::NoRuntime`]
    /// outside a tokio runtime.
    pub fn new(
        store: SqliteStore,
        config: IngressConfig,
        sources: impl IntoIterator<Item = SourceConfig>,
    ) -> Result<Ingress, ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime);
        }
        let mut map = HashMap::new();
        for s in sources {
            if map.contains_key(&s.name) {
                return Err(ConfigError::Duplicate(s.name));
            }
            map.insert(s.name.clone(), s);
        }
        let max_body = map.values().map(|s| s.max_body).max().unwrap_or(0);
        let intake = intake::start(
            store.clone(),
            config.dedup_ttl,
            config.queue,
            config.max_batch,
        );
        let secs = config.retry_after.as_secs().max(1);
        Ok(Ingress {
            shared: Arc::new(Shared {
                sources: map,
                intake,
                closing: AtomicBool::new(false),
                closed: watch::channel(false).0,
                retry_after: HeaderValue::from(secs),
                accepted: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            timeout: config.request_timeout,
            max_body,
            store,
        })
    }

    /// The store events are appended to.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = syncbus_store::SqliteStore::open(dir.path().join("i.db")).await?;
    /// let ingress = syncbus_webhook::Ingress::new(store, Default::default(), [])?;
    /// assert!(ingress.store().path().ends_with("i.db"));
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The routes: `POST /webhooks/{source}`, with a tower-http request timeout and a body
    /// limit (the largest of the sources'; each source's own is checked inside).
    ///
    /// # Examples
    ///
    /// See [`Ingress`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/webhooks/{source}", post(receive))
            .with_state(self.shared.clone())
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                self.max_body.saturating_add(1),
            ))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.timeout,
            ))
            // Outermost: the limit and timeout layers answer on their own, in plain text.
            .layer(axum::middleware::map_response(json_errors))
    }

    /// Serves [`router`](Self::router) on `listener` until [`shutdown`](Self::shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = syncbus_store::SqliteStore::open(dir.path().join("i.db")).await?;
    /// let ingress = syncbus_webhook::Ingress::new(store, Default::default(), [])?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let server = tokio::spawn(ingress.clone().serve(listener));
    /// ingress.shutdown();
    /// server.await??;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The listener's I/O error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops serving; requests whose 2xx was sent are stored.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let mut closed = self.shared.closed.subscribe();
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = closed.wait_for(|c| *c).await;
            })
            .await
    }

    /// Starts shutting down: new requests are answered 503, and [`serve`](Self::serve)
    /// returns once the requests in flight are answered.
    ///
    /// # Examples
    ///
    /// See [`serve`](Self::serve).
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Relaxed);
        self.shared.closed.send_replace(true);
    }

    /// The counters so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = syncbus_store::SqliteStore::open(dir.path().join("i.db")).await?;
    /// let ingress = syncbus_webhook::Ingress::new(store, Default::default(), [])?;
    /// assert_eq!(ingress.metrics().accepted, 0);
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> IngressMetrics {
        IngressMetrics {
            accepted: self.shared.accepted.load(Relaxed),
            duplicates: self.shared.duplicates.load(Relaxed),
            rejected: self.shared.rejected.load(Relaxed),
        }
    }
}

/// Gives the refusals tower-http's layers make themselves (a body over every source's limit,
/// a request that timed out) the small JSON body every other refusal has.
async fn json_errors(res: Response) -> Response {
    let reason = match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "body too large",
        StatusCode::REQUEST_TIMEOUT => "request timed out",
        _ => return res,
    };
    if is_json(res.headers()) {
        return res;
    }
    (res.status(), axum::Json(json!({ "error": reason }))).into_response()
}

fn reject(shared: &Shared, status: StatusCode, reason: &str) -> Response {
    shared.rejected.fetch_add(1, Relaxed);
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if shared.closing.load(Relaxed) {
        return reject(&shared, StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let Some(config) = shared.sources.get(&source) else {
        return reject(&shared, StatusCode::NOT_FOUND, "unknown webhook source");
    };
    if !is_json(&headers) {
        return reject(
            &shared,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
        );
    }
    let declared =
        header(&headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body as u64) {
        return reject(&shared, StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let Some(id) = header(&headers, WEBHOOK_ID) else {
        return reject(&shared, StatusCode::BAD_REQUEST, "missing webhook-id");
    };
    let Some(timestamp) = header(&headers, WEBHOOK_TIMESTAMP) else {
        return reject(
            &shared,
            StatusCode::BAD_REQUEST,
            "missing webhook-timestamp",
        );
    };
    let Ok(key) = DedupKey::new(&format!("webhook:{source}:{id}")) else {
        return reject(
            &shared,
            StatusCode::BAD_REQUEST,
            "webhook-id is not a valid id",
        );
    };
    let Some(signatures) = header(&headers, WEBHOOK_SIGNATURE) else {
        return reject(
            &shared,
            StatusCode::UNAUTHORIZED,
            "missing webhook-signature",
        );
    };
    let bytes: Bytes = match axum::body::to_bytes(body, config.max_body).await {
        Ok(b) => b,
        Err(_) => return reject(&shared, StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    if let Err(e) = config.verifier.verify(id, timestamp, signatures, &bytes) {
        return reject(&shared, StatusCode::UNAUTHORIZED, &e.to_string());
    }
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return reject(&shared, StatusCode::BAD_REQUEST, "body is not valid JSON"),
    };
    let mapped = match config.mapping.map(&source, &value) {
        Ok(m) => m,
        Err(e) => return reject(&shared, StatusCode::BAD_REQUEST, e.message()),
    };
    let mut meta = Metadata::new(mapped.event_type)
        .with_topic(mapped.topic)
        .with_entity_id(mapped.entity)
        .with_version(mapped.version)
        .with_source(format!("/webhooks/{source}"));
    let marked = meta
        .headers_mut()
        .insert("webhookid", id)
        .and_then(|_| meta.headers_mut().insert("webhooksource", source.as_str()));
    if marked.is_err() {
        return reject(
            &shared,
            StatusCode::BAD_REQUEST,
            "webhook-id is not a valid id",
        );
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        key,
        envelope: Envelope::new(meta, bytes),
        reply,
    };
    match shared.intake.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let mut r = reject(&shared, StatusCode::TOO_MANY_REQUESTS, "intake is full");
            r.headers_mut()
                .insert(header::RETRY_AFTER, shared.retry_after.clone());
            return r;
        }
        Err(TrySendError::Closed(_)) => {
            return reject(&shared, StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
    }
    match answer.await {
        Ok(Ok(Intaken::Appended(_))) => {
            shared.accepted.fetch_add(1, Relaxed);
            (StatusCode::OK, axum::Json(json!({ "status": "accepted" }))).into_response()
        }
        Ok(Ok(Intaken::Duplicate)) => {
            shared.duplicates.fetch_add(1, Relaxed);
            let mut r =
                (StatusCode::OK, axum::Json(json!({ "status": "duplicate" }))).into_response();
            r.headers_mut()
                .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
            r
        }
        Ok(Err(e)) if e.kind() == StoreErrorKind::Closed => {
            reject(&shared, StatusCode::SERVICE_UNAVAILABLE, "store closed")
        }
        Ok(Err(_)) => reject(&shared, StatusCode::INTERNAL_SERVER_ERROR, "store failed"),
        Err(_) => reject(&shared, StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}
