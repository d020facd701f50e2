//! A real HTTP upstream on loopback (axum, on a thread and runtime of its own, on the real
//! clock), and a poll source that makes its requests there, so the poller itself can run
//! on tokio's paused clock.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use serde_json::{json, Value};
use syncbus_envelope::{EventType, Topic};
use syncbus_poll::{Cursor, HttpSource, ItemMapping, Page, PollError, PollSource};

/// A response the upstream gives instead of the next page, once.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// This status, an empty body.
    Status(u16),
    /// 429 or 503 with this `Retry-After`, if any.
    Throttle(u16, Option<String>),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a body of this many bytes.
    Huge(usize),
    /// The page, after this long (the real clock).
    Slow(Duration),
    /// 200 with this JSON body.
    Body(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub after: Option<String>,
    pub if_none_match: Option<String>,
}

#[derive(Debug, Default)]
struct UpState {
    items: Vec<Value>,
    page: usize,
    script: VecDeque<Scripted>,
    requests: Vec<Request>,
}

/// `GET /changes?after=N` → `{"items": items[N..N+page], "next": "N+len" | null}`, with an
/// ETag of the answer (`"N-total"`), 304 on a matching `If-None-Match`.
pub struct Upstream {
    pub url: String,
    state: Arc<Mutex<UpState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn item(id: &str, version: u64) -> Value {
    json!({"id": id, "version": version, "data": {"id": id, "v": version}})
}

async fn changes(
    State(state): State<Arc<Mutex<UpState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let after = q.get("after").cloned();
    let inm = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let scripted = {
        let mut st = state.lock();
        st.requests.push(Request {
            after: after.clone(),
            if_none_match: inm.clone(),
        });
        st.script.pop_front()
    };
    match scripted {
        Some(Scripted::Status(s)) => return StatusCode::from_u16(s).unwrap().into_response(),
        Some(Scripted::Throttle(s, ra)) => {
            let mut r = StatusCode::from_u16(s).unwrap().into_response();
            if let Some(ra) = ra {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
            }
            return r;
        }
        Some(Scripted::Garbage) => return (StatusCode::OK, "{not json").into_response(),
        Some(Scripted::Huge(n)) => return (StatusCode::OK, vec![b' '; n]).into_response(),
        Some(Scripted::Slow(d)) => tokio::time::sleep(d).await,
        Some(Scripted::Body(b)) => {
            return ([("content-type", "application/json")], b).into_response()
        }
        None => {}
    }
    let in_header = q.contains_key("link_header");
    let (body, etag, link) = {
        let st = state.lock();
        let from: usize = after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        let from = from.min(st.items.len());
        let end = (from + st.page).min(st.items.len());
        let next = (end > from).then(|| match (q.contains_key("link"), in_header) {
            // A relative link, for `CursorIn::NextLink`.
            (true, _) => format!("?link=1&after={end}"),
            (_, true) => format!("?link_header=1&after={end}"),
            _ => end.to_string(),
        });
        let etag = format!("\"{from}-{}\"", st.items.len());
        if in_header {
            let link = next.map(|n| format!("<{n}>; rel=\"next\""));
            (json!({"items": &st.items[from..end]}), etag, link)
        } else {
            (
                json!({"items": &st.items[from..end], "next": next}),
                etag,
                None,
            )
        }
    };
    if inm.as_deref() == Some(etag.as_str()) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut()
            .insert("etag", HeaderValue::from_str(&etag).unwrap());
        return r;
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert("etag", HeaderValue::from_str(&etag).unwrap());
    if let Some(link) = link {
        r.headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    r
}

impl Upstream {
    pub fn start(page: usize) -> Upstream {
        let state = Arc::new(Mutex::new(UpState {
            page,
            ..UpState::default()
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/changes", get(changes))
                    .with_state(st);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Upstream {
            url: format!("http://{addr}/changes"),
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn push(&self, items: impl IntoIterator<Item = Value>) {
        self.state.lock().items.extend(items);
    }

    pub fn script(&self, s: Scripted) {
        self.state.lock().script.push_back(s);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().requests.clone()
    }

    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }
}

pub fn mapping() -> ItemMapping {
    ItemMapping::new(
        EventType::new("test.change").unwrap(),
        Topic::new("test.changes").unwrap(),
    )
    .entity_at("/id")
    .version_at("/version")
    .data_at("/data")
}

pub fn http_source(url: &str) -> HttpSource {
    HttpSource::builder(url, mapping())
        .unwrap()
        .source_name("up")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// When a poll started (the test's clock) and with which cursor.
pub type PollStart = (tokio::time::Instant, Option<String>);

/// An [`HttpSource`] whose requests run on a runtime on the real clock, while the poller
/// runs on the test's (paused) clock; each poll's start is noted on the test's clock.
#[derive(Clone)]
pub struct RealClock {
    pub inner: Arc<HttpSource>,
    rt: Arc<RtGuard>,
    pub polls: Arc<Mutex<Vec<PollStart>>>,
    /// Polls finished.
    pub done: Arc<tokio::sync::watch::Sender<usize>>,
}

impl RealClock {
    pub fn new(source: HttpSource) -> RealClock {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        RealClock {
            inner: Arc::new(source),
            rt: Arc::new(RtGuard(Some(rt))),
            polls: Arc::default(),
            done: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Waits, on no timer, until `n` polls have finished.
    pub async fn finished(&self, n: usize) {
        let mut rx = self.done.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }

    /// When each poll started, from the first, and with which cursor.
    pub fn times(&self) -> Vec<(Duration, Option<String>)> {
        let polls = self.polls.lock();
        let Some(first) = polls.first().map(|p| p.0) else {
            return Vec::new();
        };
        polls.iter().map(|(t, c)| (*t - first, c.clone())).collect()
    }
}

/// A runtime that may be dropped inside another (a plain one panics there).
pub struct RtGuard(Option<tokio::runtime::Runtime>);

impl Drop for RtGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl PollSource for RealClock {
    async fn poll(&self, cursor: Option<&Cursor>) -> Result<Page, PollError> {
        self.polls.lock().push((
            tokio::time::Instant::now(),
            cursor.and_then(|c| c.as_str().map(str::to_owned)),
        ));
        let (inner, cursor) = (self.inner.clone(), cursor.cloned());
        let page = self
            .rt
            .0
            .as_ref()
            .expect("runtime present until dropped")
            .spawn(async move { inner.poll(cursor.as_ref()).await })
            .await
            .expect("the poll task ran");
        self.done.send_modify(|n| *n += 1);
        page
    }
}

/// An item whose data carries `pad` bytes of filler (large CloudEvents lines).
pub fn padded_item(id: &str, version: u64, pad: usize) -> Value {
    json!({"id": id, "version": version, "data": {"id": id, "v": version, "pad": "x".repeat(pad)}})
}
