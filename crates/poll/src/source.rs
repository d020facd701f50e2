//! The poll contract: "what changed since this cursor".

use std::fmt;
use std::future::Future;

use syncbus_envelope::{Bytes, Envelope};

use crate::error::PollError;

/// Where a poll source is up to: opaque bytes it hands out and gets back, stored through
/// `Checkpoints` between runs. Most HTTP APIs use text; [`as_str`](Self::as_str) reads it.
///
/// # Examples
///
/// ```
/// use syncbus_poll::Cursor;
/// let c = Cursor::from("2026-12-01T10:00:00Z");
/// assert_eq!(c.as_str(), Some("2026-12-01T10:00:00Z"));
/// assert_eq!(Cursor::new(vec![0xff]).as_str(), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    /// A cursor of these bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Cursor::new(b"7".to_vec()).as_bytes(), b"7");
    /// ```
    pub fn new(bytes: Vec<u8>) -> Cursor {
        Cursor(bytes)
    }

    /// The bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Cursor::from("a").as_bytes(), b"a");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The cursor as text, if it is UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Cursor::from("a").as_str(), Some("a"));
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The bytes, owned.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Cursor::from("a").into_bytes(), b"a".to_vec());
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<&str> for Cursor {
    fn from(s: &str) -> Cursor {
        Cursor(s.as_bytes().to_vec())
    }
}

impl From<String> for Cursor {
    fn from(s: String) -> Cursor {
        Cursor(s.into_bytes())
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "Cursor({s:?})"),
            None => write!(f, "Cursor({:?})", self.0),
        }
    }
}

/// What one poll found: the items changed since the cursor, where to continue from, and
/// whether more is waiting right now.
///
/// # Examples
///
/// ```
/// use syncbus_poll::{Cursor, Page};
/// let page = Page::new(Vec::new()).next(Cursor::from("c2")).more(true);
/// assert!(page.has_more());
/// assert_eq!(page.next_cursor(), Some(&Cursor::from("c2")));
/// assert!(!Page::unchanged().has_more());
/// ```
#[derive(Debug, Clone)]
pub struct Page {
    items: Vec<Envelope<Bytes>>,
    next: Option<Cursor>,
    more: bool,
    not_modified: bool,
}

impl Page {
    /// A page of these items; no new cursor, nothing more.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::Page::new(Vec::new()).items().is_empty());
    /// ```
    pub fn new(items: Vec<Envelope<Bytes>>) -> Page {
        Page {
            items,
            next: None,
            more: false,
            not_modified: false,
        }
    }

    /// Nothing changed (an HTTP 304): no items, the cursor stays.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::Page::unchanged().is_not_modified());
    /// ```
    pub fn unchanged() -> Page {
        Page {
            not_modified: true,
            ..Page::new(Vec::new())
        }
    }

    /// The cursor to poll from once these items are handled (`None`: keep the current one).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_poll::{Cursor, Page};
    /// assert!(Page::new(vec![]).next(Cursor::from("x")).next_cursor().is_some());
    /// ```
    pub fn next(mut self, cursor: Cursor) -> Page {
        self.next = Some(cursor);
        self
    }

    /// Whether another page is waiting now (the poller drains it without waiting, if the
    /// page also moved the cursor: the same cursor asked again at once would spin).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::Page::new(vec![]).more(true).has_more());
    /// ```
    pub fn more(mut self, more: bool) -> Page {
        self.more = more;
        self
    }

    /// The items.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Page::unchanged().items().len(), 0);
    /// ```
    pub fn items(&self) -> &[Envelope<Bytes>] {
        &self.items
    }

    /// The cursor after this page, if it names one.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_poll::Page::unchanged().next_cursor(), None);
    /// ```
    pub fn next_cursor(&self) -> Option<&Cursor> {
        self.next.as_ref()
    }

    /// Whether more is waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!syncbus_poll::Page::unchanged().has_more());
    /// ```
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// Whether the upstream said nothing changed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!syncbus_poll::Page::new(vec![]).is_not_modified());
    /// ```
    pub fn is_not_modified(&self) -> bool {
        self.not_modified
    }

    pub(crate) fn into_parts(self) -> (Vec<Envelope<Bytes>>, Option<Cursor>, bool, bool) {
        (self.items, self.next, self.more, self.not_modified)
    }
}

/// A source of changes: given where the poller is up to, what changed since.
///
/// The poller calls it one page at a time, never concurrently, and stores the page's
/// [`next`](Page::next) cursor only once every item of the page was handled; after a crash
/// it asks again from the last stored cursor, so a source must answer the same cursor with
/// (at least) the same items.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_poll::{Cursor, Page, PollError, PollSource};
///
/// /// Counts up: each poll hands out one event and the next number as the cursor.
/// struct Counter;
///
/// impl PollSource for Counter {
///     async fn poll(&self, cursor: Option<&Cursor>) -> Result<Page, PollError> {
///         let n: u64 = cursor.and_then(|c| c.as_str()?.parse().ok()).unwrap_or(0);
///         let meta = Metadata::new(EventType::new("counter.ticked").unwrap());
///         let env = Envelope::new(meta, Bytes::from(n.to_string()));
///         Ok(Page::new(vec![env]).next(Cursor::from((n + 1).to_string())))
///     }
/// }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let page = Counter.poll(Some(&Cursor::from("41"))).await.unwrap();
/// assert_eq!(page.next_cursor().unwrap().as_str(), Some("42"));
/// # });
/// ```
pub trait PollSource: Send + Sync + 'static {
    /// Polls once: the changes after `cursor` (`None`: from the beginning).
    ///
    /// # Errors
    ///
    /// Any [`PollError`]; the poller backs off and asks again.
    fn poll(&self, cursor: Option<&Cursor>)
        -> impl Future<Output = Result<Page, PollError>> + Send;
}
