//! [`HttpSource`]: a JSON API polled over HTTP, as a [`PollSource`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use reqwest::header::{
    HeaderMap, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LINK,
    RETRY_AFTER,
};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use syncbus_envelope::{Bytes, EntityId, Envelope, EventId, EventType, Metadata, Topic};

use crate::error::PollError;
use crate::source::{Cursor, Page, PollSource};

/// The longest body read by default: 8 MiB.
pub const DEFAULT_MAX_BODY: usize = 8 << 20;
/// The request timeout by default: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the cursor goes on the next request.
///
/// # Examples
///
/// ```
/// use syncbus_poll::CursorIn;
/// assert_eq!(CursorIn::default(), CursorIn::Query("after".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorIn {
    /// A query parameter of this name (`GET URL?after=CURSOR`; none on the first request).
    Query(String),
    /// The page's `next` value is the URL of the next request (absolute, or relative to the
    /// URL it came from); without one in the body, the response's `Link: <url>; rel="next"`
    /// header (RFC 8288), as GitHub-style APIs send it.
    NextLink,
}

impl Default for CursorIn {
    fn default() -> Self {
        CursorIn::Query("after".into())
    }
}

type MapFn = dyn Fn(usize, &Value) -> Result<Envelope<Bytes>, PollError> + Send + Sync;

/// From one JSON item to an envelope: its type, topic, entity id, version and payload, by
/// JSON pointer ([RFC 6901]) or by a closure.
///
/// By pointer, the event id is `{source}/{entity}@{version}` when both are present, so the
/// same change polled twice has the same id (a fresh UUIDv7 otherwise); the payload is the
/// JSON at the data pointer (the whole item without one), content type `application/json`.
///
/// [RFC 6901]: https://www.rfc-editor.org/rfc/rfc6901
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{EventType, Topic};
/// use syncbus_poll::ItemMapping;
/// let m = ItemMapping::new(EventType::new("shop.order")?, Topic::new("shop.orders")?)
///     .entity_at("/id")
///     .version_at("/version")
///     .data_at("/data");
/// let env = m.map("shop", 0, &serde_json::json!({"id": "o-1", "version": 3, "data": {"total": 9}}))?;
/// assert_eq!(env.meta().entity_id().unwrap().as_str(), "o-1");
/// assert_eq!(env.meta().version(), Some(3));
/// assert_eq!(env.meta().id().to_string(), "shop/o-1@3");
/// assert_eq!(&env.payload()[..], br#"{"total":9}"#);
///
/// let e = m.map("shop", 4, &serde_json::json!({"id": "o-1"})).unwrap_err();
/// assert_eq!(e.to_string(), "item 4: no unsigned integer version at /version");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ItemMapping {
    event_type: EventType,
    topic: Topic,
    event_type_at: Option<String>,
    topic_at: Option<String>,
    entity_at: Option<String>,
    version_at: Option<String>,
    data_at: Option<String>,
    custom: Option<Arc<MapFn>>,
}

impl fmt::Debug for ItemMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemMapping")
            .field("event_type", &self.event_type)
            .field("topic", &self.topic)
            .field("event_type_at", &self.event_type_at)
            .field("topic_at", &self.topic_at)
            .field("entity_at", &self.entity_at)
            .field("version_at", &self.version_at)
            .field("data_at", &self.data_at)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

fn text_at(index: usize, item: &Value, pointer: &str, what: &str) -> Result<String, PollError> {
    match item.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(PollError::Item {
            index,
            problem: format!("{what} at {pointer} is not a string"),
        }),
        None => Err(PollError::Item {
            index,
            problem: format!("no {what} at {pointer}"),
        }),
    }
}

impl ItemMapping {
    /// Every item as an event of this type on this topic, the whole item its payload.
    ///
    /// # Examples
    ///
    /// See [`ItemMapping`].
    pub fn new(event_type: EventType, topic: Topic) -> ItemMapping {
        ItemMapping {
            event_type,
            topic,
            event_type_at: None,
            topic_at: None,
            entity_at: None,
            version_at: None,
            data_at: None,
            custom: None,
        }
    }

    /// Items mapped by `f` (given the item's position in the page and the item).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_poll::{ItemMapping, PollError};
    /// let m = ItemMapping::with(|index, item| {
    ///     let sku = item["sku"].as_str().ok_or(PollError::Item { index, problem: "no sku".into() })?;
    ///     let meta = Metadata::new(EventType::new("stock.changed").unwrap());
    ///     Ok(Envelope::new(meta, Bytes::from(sku.to_owned())))
    /// });
    /// assert_eq!(&m.map("erp", 0, &serde_json::json!({"sku": "A1"}))?.payload()[..], b"A1");
    /// assert!(m.map("erp", 1, &serde_json::json!({})).is_err());
    /// # Ok::<(), PollError>(())
    /// ```
    pub fn with(
        f: impl Fn(usize, &Value) -> Result<Envelope<Bytes>, PollError> + Send + Sync + 'static,
    ) -> ItemMapping {
        let mut m = ItemMapping::new(
            EventType::from_static("poll.item"),
            Topic::from_static("poll.items"),
        );
        m.custom = Some(Arc::new(f));
        m
    }

    /// The event type is the text at this pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Topic};
    /// let m = syncbus_poll::ItemMapping::new(EventType::new("a.b")?, Topic::new("a")?).event_type_at("/kind");
    /// let env = m.map("s", 0, &serde_json::json!({"kind": "order.paid"}))?;
    /// assert_eq!(env.meta().event_type().as_str(), "order.paid");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event_type_at(mut self, pointer: impl Into<String>) -> Self {
        self.event_type_at = Some(pointer.into());
        self
    }

    /// The topic is the text at this pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Topic};
    /// let m = syncbus_poll::ItemMapping::new(EventType::new("a.b")?, Topic::new("a")?).topic_at("/t");
    /// assert!(m.map("s", 0, &serde_json::json!({"t": "not a topic!"})).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn topic_at(mut self, pointer: impl Into<String>) -> Self {
        self.topic_at = Some(pointer.into());
        self
    }

    /// The entity id is the text (or number) at this pointer; an item without it fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Topic};
    /// let m = syncbus_poll::ItemMapping::new(EventType::new("a.b")?, Topic::new("a")?).entity_at("/id");
    /// assert_eq!(m.map("s", 0, &serde_json::json!({"id": 7}))?.meta().entity_id().unwrap().as_str(), "7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entity_at(mut self, pointer: impl Into<String>) -> Self {
        self.entity_at = Some(pointer.into());
        self
    }

    /// The version is the unsigned integer at this pointer; an item without it fails.
    ///
    /// # Examples
    ///
    /// See [`ItemMapping`].
    pub fn version_at(mut self, pointer: impl Into<String>) -> Self {
        self.version_at = Some(pointer.into());
        self
    }

    /// The payload is the JSON at this pointer; an item without it fails.
    ///
    /// # Examples
    ///
    /// See [`ItemMapping`].
    pub fn data_at(mut self, pointer: impl Into<String>) -> Self {
        self.data_at = Some(pointer.into());
        self
    }

    /// Maps the item at `index` of a page from `source`.
    ///
    /// # Errors
    ///
    /// [`PollError::Item`] naming the item and the pointer that is missing or of the wrong
    /// type, or the name that is not valid.
    ///
    /// # Examples
    ///
    /// See [`ItemMapping`].
    pub fn map(
        &self,
        source: &str,
        index: usize,
        item: &Value,
    ) -> Result<Envelope<Bytes>, PollError> {
        if let Some(f) = &self.custom {
            return f(index, item);
        }
        let bad = |what: &str, e: syncbus_envelope::NameError| PollError::Item {
            index,
            problem: format!("the {what} is not valid: {e}"),
        };
        let event_type = match &self.event_type_at {
            Some(p) => EventType::new(text_at(index, item, p, "event type")?)
                .map_err(|e| bad("event type", e))?,
            None => self.event_type.clone(),
        };
        let topic = match &self.topic_at {
            Some(p) => {
                Topic::new(text_at(index, item, p, "topic")?).map_err(|e| bad("topic", e))?
            }
            None => self.topic.clone(),
        };
        let entity = match &self.entity_at {
            Some(p) => Some(
                EntityId::new(text_at(index, item, p, "entity id")?)
                    .map_err(|e| bad("entity id", e))?,
            ),
            None => None,
        };
        let version =
            match &self.version_at {
                Some(p) => Some(item.pointer(p).and_then(Value::as_u64).ok_or_else(|| {
                    PollError::Item {
                        index,
                        problem: format!("no unsigned integer version at {p}"),
                    }
                })?),
                None => None,
            };
        let data = match &self.data_at {
            Some(p) => item.pointer(p).ok_or_else(|| PollError::Item {
                index,
                problem: format!("no data at {p}"),
            })?,
            None => item,
        };
        let id = match (&entity, version) {
            (Some(e), Some(v)) => EventId::parse(&format!("{source}/{}@{v}", e.as_str()))
                .unwrap_or_else(|_| EventId::new()),
            _ => EventId::new(),
        };
        let body = serde_json::to_vec(data).map_err(PollError::MalformedJson)?;
        let meta = Metadata::new(event_type)
            .with_id(id)
            .with_topic(topic)
            .with_source(source.to_owned())
            .with_entity_id(entity)
            .with_version(version)
            .with_content_type("application/json");
        Ok(Envelope::new(meta, Bytes::from(body)))
    }
}

#[derive(Debug, Default)]
struct Validators {
    url: String,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

/// A JSON API polled over HTTP: `GET` the URL (with the cursor as a query parameter, or the
/// `next` link of the last page, from the body or a `Link: rel="next"` header), map each item of the array at `/items` with an
/// [`ItemMapping`], continue from the value at `/next` (`null` or missing: caught up).
///
/// - **Conditional requests**: the `ETag` and `Last-Modified` of the last answer are sent
///   back as `If-None-Match` / `If-Modified-Since` when the same URL is asked again; a 304
///   is an unchanged page (no items, the cursor stays, counted as idle).
/// - **429 / 503** fail the poll with [`PollError::Throttled`] carrying `Retry-After`
///   (seconds or an HTTP date); the poller waits at least that long.
/// - **Bounds**: a request timeout (30 s), a body limit (8 MiB, refused from
///   `Content-Length` before reading, or as soon as it is passed), typed errors for
///   malformed JSON, a missing items array and items the mapping cannot read. A bad page
///   fails whole: nothing of it is handed out and the cursor does not move.
/// - "More available" is a `next` that is present, differs from the cursor it was asked
///   with, and came with items.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_envelope::{EventType, Topic};
/// use syncbus_poll::{CursorIn, HttpSource, ItemMapping};
/// let mapping = ItemMapping::new(EventType::new("shop.order")?, Topic::new("shop.orders")?)
///     .entity_at("/id")
///     .version_at("/version")
///     .data_at("/data");
/// let source = HttpSource::builder("http://127.0.0.1:9/changes", mapping)?
///     .source_name("shop")
///     .cursor_in(CursorIn::Query("after".into()))
///     .timeout(Duration::from_secs(5))
///     .max_body(1 << 20)
///     .build()?;
/// assert_eq!(source.url().as_str(), "http://127.0.0.1:9/changes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpSource {
    url: Url,
    name: String,
    mapping: ItemMapping,
    cursor_in: CursorIn,
    items_at: String,
    next_at: String,
    timeout: Duration,
    max_body: usize,
    client: reqwest::Client,
    validators: Mutex<Validators>,
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.url.as_str())
            .field("name", &self.name)
            .field("mapping", &self.mapping)
            .field("cursor_in", &self.cursor_in)
            .field("items_at", &self.items_at)
            .field("next_at", &self.next_at)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// A setting of [`HttpSource`] that cannot work: a URL that does not parse or is not
/// `http(s)`, a zero timeout or body limit, a client that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpConfigError(String);

/// Builds an [`HttpSource`] ([`HttpSource::builder`]).
#[derive(Debug)]
pub struct HttpSourceBuilder {
    url: Url,
    name: Option<String>,
    mapping: ItemMapping,
    cursor_in: CursorIn,
    items_at: String,
    next_at: String,
    timeout: Duration,
    max_body: usize,
}

impl HttpSource {
    /// Starts building a source polling `url`, its items mapped by `mapping`.
    ///
    /// # Errors
    ///
    /// [`HttpConfigError`] when `url` does not parse or is not `http` / `https`.
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn builder(url: &str, mapping: ItemMapping) -> Result<HttpSourceBuilder, HttpConfigError> {
        let url = Url::parse(url).map_err(|e| HttpConfigError(format!("bad URL {url}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpConfigError(format!(
                "URL scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        Ok(HttpSourceBuilder {
            url,
            name: None,
            mapping,
            cursor_in: CursorIn::default(),
            items_at: "/items".into(),
            next_at: "/next".into(),
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        })
    }

    /// The URL of the first request.
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn request_url(&self, cursor: Option<&Cursor>) -> Result<Url, PollError> {
        let Some(cursor) = cursor else {
            return Ok(self.url.clone());
        };
        let text = cursor
            .as_str()
            .ok_or_else(|| PollError::Page("the stored cursor is not text".into()))?;
        match &self.cursor_in {
            CursorIn::Query(param) => {
                let mut url = self.url.clone();
                url.query_pairs_mut().append_pair(param, text);
                Ok(url)
            }
            CursorIn::NextLink => Url::parse(text)
                .map_err(|e| PollError::Page(format!("the next link {text} is not a URL: {e}"))),
        }
    }

    async fn body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, PollError> {
        let limit = self.max_body;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(PollError::BodyTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > limit {
                return Err(PollError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error) -> PollError {
        if e.is_timeout() {
            PollError::Timeout(self.timeout)
        } else {
            PollError::Transport(e)
        }
    }

    fn page(&self, url: &Url, headers: &HeaderMap, body: &[u8]) -> Result<Page, PollError> {
        let doc: Value = serde_json::from_slice(body).map_err(PollError::MalformedJson)?;
        let items = doc
            .pointer(&self.items_at)
            .and_then(Value::as_array)
            .ok_or_else(|| PollError::Page(format!("no array at {}", self.items_at)))?;
        let items = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.mapping.map(&self.name, i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match doc.pointer(&self.next_at) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(PollError::Page(format!(
                    "the cursor at {} is not text: {other}",
                    self.next_at
                )))
            }
        };
        let next = match (&self.cursor_in, next) {
            (CursorIn::NextLink, None) => next_link(headers),
            (_, n) => n,
        };
        let next = match (&self.cursor_in, next) {
            (CursorIn::NextLink, Some(link)) => Some(
                url.join(&link)
                    .map_err(|e| PollError::Page(format!("bad next link {link}: {e}")))?
                    .to_string(),
            ),
            (_, n) => n,
        };
        let more = next.is_some() && !items.is_empty();
        let mut page = Page::new(items).more(more);
        if let Some(n) = next {
            page = page.next(Cursor::from(n));
        }
        Ok(page)
    }
}

impl HttpSourceBuilder {
    /// The name that goes into each event's `source` and id (the URL's host by default).
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn source_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Where the cursor goes (`?after=` by default).
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn cursor_in(mut self, cursor_in: CursorIn) -> Self {
        self.cursor_in = cursor_in;
        self
    }

    /// The JSON pointer of the items array (`/items` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_envelope::{EventType, Topic};
    /// # let m = syncbus_poll::ItemMapping::new(EventType::new("a.b")?, Topic::new("a")?);
    /// let b = syncbus_poll::HttpSource::builder("http://127.0.0.1:9/", m)?.items_at("/data/changes");
    /// # b.build()?; Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn items_at(mut self, pointer: impl Into<String>) -> Self {
        self.items_at = pointer.into();
        self
    }

    /// The JSON pointer of the next cursor or link (`/next` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_envelope::{EventType, Topic};
    /// # let m = syncbus_poll::ItemMapping::new(EventType::new("a.b")?, Topic::new("a")?);
    /// let b = syncbus_poll::HttpSource::builder("http://127.0.0.1:9/", m)?.next_at("/meta/next");
    /// # b.build()?; Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_at(mut self, pointer: impl Into<String>) -> Self {
        self.next_at = pointer.into();
        self
    }

    /// The whole request's timeout (30 s by default).
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body read (8 MiB by default).
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Builds the source and its HTTP client.
    ///
    /// # Errors
    ///
    /// [`HttpConfigError`] for a zero timeout or body limit, or a client that cannot be built.
    ///
    /// # Examples
    ///
    /// See [`HttpSource`].
    pub fn build(self) -> Result<HttpSource, HttpConfigError> {
        if self.timeout.is_zero() {
            return Err(HttpConfigError("timeout must be more than zero".into()));
        }
        if self.max_body == 0 {
            return Err(HttpConfigError("max_body must be more than zero".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| HttpConfigError(format!("building the HTTP client: {e}")))?;
        let name = self
            .name
            .unwrap_or_else(|| self.url.host_str().unwrap_or("poll").to_owned());
        Ok(HttpSource {
            url: self.url,
            name,
            mapping: self.mapping,
            cursor_in: self.cursor_in,
            items_at: self.items_at,
            next_at: self.next_at,
            timeout: self.timeout,
            max_body: self.max_body,
            client,
            validators: Mutex::new(Validators::default()),
        })
    }
}

/// The target of the first `rel="next"` link of the `Link` headers (RFC 8288).
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|rel| {
                    rel.trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.to_owned());
            }
        }
    }
    None
}

/// `Retry-After` as a delay: seconds, or an HTTP date (a date past is no delay).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl PollSource for HttpSource {
    async fn poll(&self, cursor: Option<&Cursor>) -> Result<Page, PollError> {
        let url = self.request_url(cursor)?;
        let mut req = self.client.get(url.clone());
        {
            let v = self.validators.lock();
            if v.url == url.as_str() {
                if let Some(etag) = &v.etag {
                    req = req.header(IF_NONE_MATCH, etag.clone());
                }
                if let Some(lm) = &v.last_modified {
                    req = req.header(IF_MODIFIED_SINCE, lm.clone());
                }
            }
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Page::unchanged());
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(PollError::Throttled {
                status: status.as_u16(),
                retry_after: retry_after(resp.headers()),
            });
        }
        let headers = resp.headers().clone();
        let etag = headers.get(ETAG).cloned();
        let last_modified = headers.get(LAST_MODIFIED).cloned();
        if !status.is_success() {
            let body = self.body(resp).await.unwrap_or_default();
            let end = body.len().min(512);
            return Err(PollError::Status {
                status: status.as_u16(),
                excerpt: String::from_utf8_lossy(&body[..end]).into_owned(),
            });
        }
        let body = self.body(resp).await?;
        let page = self.page(&url, &headers, &body)?;
        // Remembered only for a page that read well: a bad one is asked for again in full.
        *self.validators.lock() = Validators {
            url: url.to_string(),
            etag,
            last_modified,
        };
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_read_from_link_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(next_link(&h), None);
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://api.example/x?page=1>; rel="prev""#),
        );
        assert_eq!(next_link(&h), None);
        h.append(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.example/x?page=1>; rel="first", </x?page=3>; rel="next last""#,
            ),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/x?page=3"));
        let mut h = HeaderMap::new();
        h.append(LINK, HeaderValue::from_static("<?after=9>;rel=next"));
        assert_eq!(next_link(&h).as_deref(), Some("?after=9"));
    }
}
