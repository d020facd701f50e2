//! The HTTP poller against a real upstream on loopback (the real clock): typed errors, a
//! bad page moving nothing, conditional requests, Retry-After dates, next links, and the
//! cursor stored only once every item of a page is settled.

mod support;

use std::time::{Duration, SystemTime};

use support::{http_source, item, mapping, Scripted, Upstream};
use syncbus_core::{Bus, Envelope, Source};
use syncbus_poll::{
    Cursor, CursorIn, HttpSource, Page, PollConfig, PollError, PollSource, Poller, RawEvent,
};
use syncbus_storage::{
    Checkpoints, DeadLetterFilter, DeadLetterStore, MemoryDeadLetterStore, MemoryStore,
};
use syncbus_workflow::{HandlerError, RetryPolicy, Workflow};
use tokio::sync::mpsc;

#[tokio::test]
async fn malformed_json_missing_fields_oversized_and_slow_bodies_are_typed_errors() {
    let up = Upstream::start(10);
    let small = HttpSource::builder(&up.url, mapping())
        .unwrap()
        .max_body(200)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    up.script(Scripted::Garbage);
    assert!(matches!(
        small.poll(None).await,
        Err(PollError::MalformedJson(_))
    ));
    up.script(Scripted::Body(
        r#"{"items":[{"id":"a","version":1,"data":{}},{"id":"b","data":{}}]}"#.into(),
    ));
    match small.poll(None).await {
        Err(PollError::Item { index, problem }) => {
            assert_eq!(index, 1);
            assert_eq!(problem, "no unsigned integer version at /version");
        }
        other => panic!("{other:?}"),
    }
    up.script(Scripted::Body(r#"{"things":[]}"#.into()));
    assert!(matches!(small.poll(None).await, Err(PollError::Page(p)) if p == "no array at /items"));
    up.script(Scripted::Huge(201));
    assert!(matches!(
        small.poll(None).await,
        Err(PollError::BodyTooLarge { limit: 200 })
    ));
    up.script(Scripted::Slow(Duration::from_secs(2)));
    assert!(matches!(small.poll(None).await, Err(PollError::Timeout(_))));
    up.script(Scripted::Status(418));
    assert!(matches!(
        small.poll(None).await,
        Err(PollError::Status { status: 418, .. })
    ));
    // And then a good page.
    up.push([item("a", 1)]);
    let page = small.poll(None).await.unwrap();
    assert_eq!(page.items().len(), 1);
}

#[tokio::test]
async fn a_bad_page_hands_out_nothing_and_moves_nothing() {
    let up = Upstream::start(10);
    up.push([item("a", 1), item("b", 1)]);
    // The first answer has a good item and a bad one: nothing of it may be handled.
    up.script(Scripted::Body(
        r#"{"items":[{"id":"x","version":1,"data":{}},{"id":7}],"next":"2"}"#.into(),
    ));
    let store = MemoryStore::new();
    let cfg = PollConfig::new()
        .interval(Duration::from_millis(50))
        .error_initial(Duration::from_millis(20));
    let poller = Poller::open("up", http_source(&up.url), store.clone(), cfg)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(poller.clone())
        .fetch_wait(Duration::from_millis(20))
        .handle(move |env: Envelope<RawEvent>, _ctx| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(env.meta().entity_id().unwrap().to_string());
                Ok(())
            }
        })
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), "a");
    assert_eq!(rx.recv().await.unwrap(), "b");
    assert_eq!(poller.metrics().errors, 1);
    let reqs = up.requests();
    assert_eq!(reqs[0].after, None);
    assert_eq!(reqs[1].after, None, "the cursor moved past a bad page");
    served.stop().await;
    assert!(
        rx.try_recv().is_err(),
        "an item of the bad page was handled"
    );
}

#[tokio::test]
async fn a_304_moves_nothing_and_retry_after_dates_are_read() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    let src = http_source(&up.url);
    let page = src.poll(Some(&Cursor::from("1"))).await.unwrap();
    assert!(page.items().is_empty() && !page.is_not_modified());
    let page = src.poll(Some(&Cursor::from("1"))).await.unwrap();
    assert!(page.is_not_modified() && page.next_cursor().is_none() && !page.has_more());
    assert_eq!(up.requests()[1].if_none_match.as_deref(), Some("\"1-1\""));
    // Another URL: no validators sent.
    let page = src.poll(Some(&Cursor::from("0"))).await.unwrap();
    assert_eq!(page.items().len(), 1);
    assert_eq!(up.requests()[2].if_none_match, None);

    let at = SystemTime::now() + Duration::from_secs(5);
    up.script(Scripted::Throttle(503, Some(httpdate::fmt_http_date(at))));
    match src.poll(None).await {
        Err(e @ PollError::Throttled { status: 503, .. }) => {
            let d = e.retry_after().unwrap();
            assert!(
                d > Duration::from_secs(3) && d <= Duration::from_secs(5),
                "{d:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    up.script(Scripted::Throttle(429, None));
    assert!(matches!(
        src.poll(None).await,
        Err(PollError::Throttled {
            status: 429,
            retry_after: None
        })
    ));
}

#[tokio::test]
async fn next_links_are_followed() {
    let up = Upstream::start(2);
    up.push((0..5).map(|i| item(&format!("e{i}"), 1)));
    let src = HttpSource::builder(&format!("{}?link=1", up.url), mapping())
        .unwrap()
        .cursor_in(CursorIn::NextLink)
        .build()
        .unwrap();
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = src.poll(cursor.as_ref()).await.unwrap();
        seen.extend(
            page.items()
                .iter()
                .map(|e| e.meta().entity_id().unwrap().to_string()),
        );
        if !page.has_more() {
            break;
        }
        cursor = page.next_cursor().cloned();
    }
    assert_eq!(seen, ["e0", "e1", "e2", "e3", "e4"]);
    let afters: Vec<_> = up.requests().into_iter().map(|r| r.after).collect();
    assert_eq!(
        afters,
        [None, Some("2".into()), Some("4".into()), Some("5".into())]
    );
}

#[tokio::test]
async fn next_links_in_link_headers_are_followed() {
    let up = Upstream::start(2);
    up.push((0..3).map(|i| item(&format!("e{i}"), 1)));
    let src = HttpSource::builder(&format!("{}?link_header=1", up.url), mapping())
        .unwrap()
        .cursor_in(CursorIn::NextLink)
        .build()
        .unwrap();
    let first = src.poll(None).await.unwrap();
    assert!(first.has_more());
    let next = first.next_cursor().unwrap().as_str().unwrap().to_owned();
    assert!(next.ends_with("/changes?link_header=1&after=2"), "{next}");
    let second = src.poll(first.next_cursor()).await.unwrap();
    assert_eq!(second.items().len(), 1);
    assert_eq!(up.requests()[1].after.as_deref(), Some("2"));
}

#[tokio::test]
async fn the_cursor_is_stored_only_once_every_item_of_the_page_is_settled() {
    let up = Upstream::start(3);
    up.push([item("a", 1), item("b", 1), item("c", 1), item("d", 1)]);
    let store = MemoryStore::new();
    let cfg = PollConfig::new().interval(Duration::from_millis(50));
    let poller = Poller::open("up", http_source(&up.url), store.clone(), cfg)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let bus = Bus::new();
    let dead_letters = std::sync::Arc::new(MemoryDeadLetterStore::new(100));
    let wf = Workflow::builder(&bus)
        .dead_letters(dead_letters.clone())
        .build();
    let served = wf
        .serve(poller.clone())
        .fetch_wait(Duration::from_millis(20))
        .keyed(4)
        .retry(
            RetryPolicy::new()
                .initial(Duration::from_millis(30))
                .max_attempts(3),
        )
        .handle(move |env: Envelope<RawEvent>, ctx| {
            let (tx, mut gate) = (tx.clone(), gate_rx.clone());
            async move {
                let id = env.meta().entity_id().unwrap().to_string();
                let _ = tx.send((id.clone(), ctx.attempt()));
                match id.as_str() {
                    // b waits until the test lets it go, then fails once (a nak).
                    "b" => {
                        gate.wait_for(|g| *g).await.unwrap();
                        if ctx.attempt() == 1 {
                            return Err(HandlerError::retryable("first try"));
                        }
                        Ok(())
                    }
                    "c" => Err(HandlerError::permanent("poison")),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(rx.recv().await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.get_str("up").await.unwrap(),
        None,
        "stored while b was unsettled"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "polled again while the page was in flight"
    );
    gate_tx.send(true).unwrap();
    assert_eq!(rx.recv().await.unwrap(), ("b".into(), 2));
    assert_eq!(rx.recv().await.unwrap(), ("d".into(), 1));
    // The page (a, b, c) is stored after b's retry and c's dead letter; then d's.
    let dead = dead_letters
        .list(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    while store.get_str("up").await.unwrap().as_deref() != Some("4") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let afters: Vec<_> = up.requests().into_iter().map(|r| r.after).take(2).collect();
    assert_eq!(afters, [None, Some("3".into())]);
    let m = served.stop().await;
    assert_eq!(m.termed, 1);
    assert!(Source::name(&poller) == "up");
}

#[tokio::test]
async fn more_without_a_new_cursor_waits_for_the_interval_instead_of_spinning() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    let store = MemoryStore::new();
    let cfg = PollConfig::new()
        .interval(Duration::from_millis(300))
        .jitter(0.0);
    let poller = Poller::open("up", StuckAfterFirst(http_source(&up.url)), store, cfg)
        .await
        .unwrap();
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(poller.clone())
        .fetch_wait(Duration::from_millis(20))
        .handle(|_env: Envelope<RawEvent>, _ctx| async { Ok(()) })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    served.stop().await;
    let m = poller.metrics();
    assert!((2..=3).contains(&m.polls), "{m:?}");
}

/// The first poll from the upstream; then, from cursor "1", a page with an item, the same
/// cursor and "more".
struct StuckAfterFirst(HttpSource);

impl PollSource for StuckAfterFirst {
    async fn poll(&self, cursor: Option<&Cursor>) -> Result<Page, PollError> {
        if cursor.is_none() {
            let mut page = self.0.poll(None).await?;
            page = page.more(false);
            return Ok(page);
        }
        let env = mapping().map("up", 0, &item("a", 1))?;
        Ok(Page::new(vec![env]).next(Cursor::from("1")).more(true))
    }
}
