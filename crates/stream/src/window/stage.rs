//! The windowed aggregation stage: per key and window, an accumulator; closed windows handed
//! on when the watermark passes their end plus grace; too-late events to the side output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StreamError;
use crate::state::{decode, encode, next_part, KeyMap};
use crate::topology::keyed::StateKey;
use crate::topology::operator::{Cx, Operator};
use crate::topology::stream::Stream;
use crate::window::aggregator::{Aggregator, Count, Sum};
use crate::window::{Emit, Kind, Late, LateReason, Window, Windowed, Windows};

type OnLate<K, V> = Box<dyn FnMut(Late<K, V>) + Send>;

impl<In, Op, K, V> Stream<In, Op>
where
    Op: Operator<In, Out = (K, V)>,
    K: StateKey + Ord,
    V: Clone + Send + 'static,
{
    /// Cuts the keyed stream into event-time windows; follow with an aggregation
    /// ([`WindowedStream::count`], [`sum`](WindowedStream::sum),
    /// [`aggregate`](WindowedStream::aggregate)). See [the window
    /// rules](crate::Windows) for boundaries, grace and lateness.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{Stream, Topology, Window, Windowed, Windows};
    ///
    /// let per_second = Stream::<&str>::new()
    ///     .key_by(|s| s.to_string())
    ///     .window(Windows::tumbling(Duration::from_secs(1))?)
    ///     .count();
    /// let mut t = Topology::new(per_second);
    /// let mut out = vec![];
    /// t.process("a", Some(100));
    /// t.process("a", Some(999));
    /// t.process("a", Some(1_000)); // on the boundary: the next window
    /// t.advance_with(1_000, &mut |r, _| out.push(r));
    /// assert_eq!(out, [Windowed { key: "a".to_string(), window: Window::new(0, 1_000), value: 2 }]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn window(self, windows: Windows) -> WindowedStream<In, Op, K, V> {
        WindowedStream {
            stream: self,
            windows,
            on_late: None,
        }
    }
}

/// A keyed stream cut into windows, waiting for its aggregation. From [`Stream::window`].
pub struct WindowedStream<In, Op, K, V> {
    stream: Stream<In, Op>,
    windows: Windows,
    on_late: Option<OnLate<K, V>>,
}

impl<In, Op, K, V> std::fmt::Debug for WindowedStream<In, Op, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("windows", &self.windows)
            .finish_non_exhaustive()
    }
}

impl<In, Op, K, V> WindowedStream<In, Op, K, V>
where
    Op: Operator<In, Out = (K, V)>,
    K: StateKey + Ord,
    V: Clone + Send + 'static,
{
    /// The side output: called with each event set aside (too late, or without an event
    /// time). Whether or not one is set, each is counted in the topology's metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use syncbus_stream::{LateReason, Stream, Topology, Windows};
    ///
    /// let late = Arc::new(Mutex::new(Vec::new()));
    /// let side = late.clone();
    /// let s = Stream::<u32>::new()
    ///     .key_by(|_| 'k')
    ///     .window(Windows::tumbling(Duration::from_millis(10))?)
    ///     .on_late(move |l| side.lock().unwrap().push((l.value, l.reason)))
    ///     .count();
    /// let mut t = Topology::new(s);
    /// t.advance(100);
    /// t.process(7, Some(5)); // its window [0, 10) closed at watermark 10
    /// t.process(8, None);
    /// assert_eq!(*late.lock().unwrap(), [(7, LateReason::TooLate), (8, LateReason::NoEventTime)]);
    /// assert_eq!((t.metrics().late, t.metrics().untimed), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_late(mut self, f: impl FnMut(Late<K, V>) + Send + 'static) -> Self {
        self.on_late = Some(Box::new(f));
        self
    }

    /// Aggregates each key's events per window with `agg`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{Fold, Stream, Topology, Windows};
    /// let max = Fold::new(|| 0u32, |m: &mut u32, v: u32| *m = (*m).max(v), |m: &mut u32, o: u32| *m = (*m).max(o));
    /// let s = Stream::<u32>::new().key_by(|_| 0u8).window(Windows::tumbling(Duration::from_millis(10))?).aggregate(max);
    /// let mut t = Topology::new(s);
    /// t.process(3, Some(1));
    /// t.process(9, Some(2));
    /// let mut out = vec![];
    /// t.advance_with(10, &mut |r, _| out.push(r.value));
    /// assert_eq!(out, [9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn aggregate<A: Aggregator<V>>(self, agg: A) -> Stream<In, WindowAggregate<Op, K, V, A>> {
        Stream::from_op(WindowAggregate {
            prev: self.stream.into_op(),
            windows: self.windows,
            agg,
            on_late: self.on_late,
            fixed: BTreeMap::new(),
            sessions: KeyMap::default(),
            scratch: Vec::new(),
        })
    }

    /// Counts each key's events per window.
    ///
    /// # Examples
    ///
    /// See [`Stream::window`].
    pub fn count(self) -> Stream<In, WindowAggregate<Op, K, V, Count>> {
        self.aggregate(Count)
    }

    /// Sums each key's values per window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{Stream, Topology, Windows};
    /// let s = Stream::<(char, i64)>::new()
    ///     .key_by(|(k, _)| *k)
    ///     .map(|(k, (_, v))| (k, v))
    ///     .window(Windows::tumbling(Duration::from_millis(10))?)
    ///     .sum();
    /// let mut t = Topology::new(s);
    /// t.process(('a', 5), Some(0));
    /// t.process(('a', 6), Some(9));
    /// let mut out = vec![];
    /// t.advance_with(10, &mut |r, _| out.push(r.value));
    /// assert_eq!(out, [11]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sum(self) -> Stream<In, WindowAggregate<Op, K, V, Sum>>
    where
        Sum: Aggregator<V>,
    {
        self.aggregate(Sum)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session<A> {
    window: Window,
    acc: A,
}

/// The stage of [`WindowedStream::aggregate`]; hands on [`Windowed`] results.
pub struct WindowAggregate<P, K, V, A: Aggregator<V>> {
    prev: P,
    windows: Windows,
    agg: A,
    on_late: Option<OnLate<K, V>>,
    /// Open fixed windows by (end, start), so the next to close is first.
    fixed: BTreeMap<(i64, i64), KeyMap<K, A::Acc>>,
    /// Open sessions per key, sorted by start, disjoint.
    sessions: KeyMap<K, Vec<Session<A::Acc>>>,
    scratch: Vec<Window>,
}

impl<P, K, V, A: Aggregator<V>> std::fmt::Debug for WindowAggregate<P, K, V, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("windows", &self.windows)
            .field("open_fixed", &self.fixed.len())
            .field("session_keys", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

struct Parts<'a, K, V, A: Aggregator<V>> {
    windows: &'a Windows,
    agg: &'a A,
    on_late: &'a mut Option<OnLate<K, V>>,
    fixed: &'a mut BTreeMap<(i64, i64), KeyMap<K, A::Acc>>,
    sessions: &'a mut KeyMap<K, Vec<Session<A::Acc>>>,
    scratch: &'a mut Vec<Window>,
}

impl<K: StateKey + Ord, V: Clone, A: Aggregator<V>> Parts<'_, K, V, A> {
    fn set_aside(&mut self, key: K, value: V, cx: &mut Cx, reason: LateReason) {
        match reason {
            LateReason::TooLate => cx.late += 1,
            LateReason::NoEventTime => cx.untimed += 1,
        }
        if let Some(f) = self.on_late.as_mut() {
            f(Late {
                key,
                value,
                time: cx.time,
                watermark: cx.watermark,
                reason,
            });
        }
    }

    #[inline]
    fn add<E: FnMut(Windowed<K, A::Acc>, &mut Cx)>(
        &mut self,
        (key, value): (K, V),
        cx: &mut Cx,
        out: &mut E,
    ) {
        let Some(t) = cx.time else {
            return self.set_aside(key, value, cx, LateReason::NoEventTime);
        };
        if self.windows.is_session() {
            return self.add_session(key, value, t, cx, out);
        }
        let (grace, wm) = (self.windows.grace, cx.watermark);
        self.scratch.clear();
        self.windows.windows_of(t, self.scratch);
        self.scratch.retain(|w| w.end.saturating_add(grace) > wm);
        let Some(last) = self.scratch.len().checked_sub(1) else {
            return self.set_aside(key, value, cx, LateReason::TooLate);
        };
        let updates = self.windows.emit == Emit::Updates;
        let mut value = Some(value);
        for i in 0..=last {
            let w = self.scratch[i];
            let keys = self.fixed.entry((w.end, w.start)).or_default();
            let v = if i == last {
                value.take()
            } else {
                value.clone()
            };
            let Some(v) = v else { break };
            let update = if let Some(acc) = keys.get_mut(&key) {
                self.agg.add(acc, v);
                updates.then(|| acc.clone())
            } else {
                let mut acc = self.agg.init();
                self.agg.add(&mut acc, v);
                let update = updates.then(|| acc.clone());
                keys.insert(key.clone(), acc);
                update
            };
            if let Some(value) = update {
                let result = Windowed {
                    key: key.clone(),
                    window: w,
                    value,
                };
                out(result, cx);
            }
        }
    }

    fn add_session<E: FnMut(Windowed<K, A::Acc>, &mut Cx)>(
        &mut self,
        key: K,
        value: V,
        t: i64,
        cx: &mut Cx,
        out: &mut E,
    ) {
        let own = match self.windows.kind {
            Kind::Session { gap } => Window::new(t, t.saturating_add(gap)),
            // Only sessions come here.
            _ => Window::new(t, t),
        };
        let grace = self.windows.grace;
        let overlapping =
            |s: &Session<A::Acc>| s.window.start < own.end && own.start < s.window.end;
        let touches = self
            .sessions
            .get(&key)
            .is_some_and(|v| v.iter().any(overlapping));
        if !touches && own.end.saturating_add(grace) <= cx.watermark {
            return self.set_aside(key, value, cx, LateReason::TooLate);
        }
        let list = self.sessions.entry(key.clone()).or_default();
        let mut merged = Session {
            window: own,
            acc: self.agg.init(),
        };
        self.agg.add(&mut merged.acc, value);
        let mut i = 0;
        while i < list.len() {
            if overlapping(&list[i]) {
                let s = list.remove(i);
                merged.window.start = merged.window.start.min(s.window.start);
                merged.window.end = merged.window.end.max(s.window.end);
                self.agg.merge(&mut merged.acc, s.acc);
            } else {
                i += 1;
            }
        }
        let at = list.partition_point(|s| s.window.start < merged.window.start);
        let result = (self.windows.emit == Emit::Updates).then(|| Windowed {
            key: key.clone(),
            window: merged.window,
            value: merged.acc.clone(),
        });
        list.insert(at, merged);
        if let Some(result) = result {
            out(result, cx);
        }
    }

    /// Hands on and forgets every window closed at the watermark.
    fn close<E: FnMut(Windowed<K, A::Acc>, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (grace, wm) = (self.windows.grace, cx.watermark);
        let on_close = self.windows.emit == Emit::OnClose;
        let time = cx.time;
        let mut closed = Vec::new();
        if self.windows.is_session() {
            self.sessions.retain(|key, list| {
                list.retain(|s| {
                    let open = s.window.end.saturating_add(grace) > wm;
                    if !open && on_close {
                        closed.push(Windowed {
                            key: key.clone(),
                            window: s.window,
                            value: s.acc.clone(),
                        });
                    }
                    open
                });
                !list.is_empty()
            });
            closed.sort_by(|a, b| {
                (a.window.end, a.window.start, &a.key).cmp(&(b.window.end, b.window.start, &b.key))
            });
        } else {
            while let Some(entry) = self.fixed.first_entry() {
                let (end, start) = *entry.key();
                if end.saturating_add(grace) > wm {
                    break;
                }
                let keys = entry.remove();
                if on_close {
                    let mut results: Vec<_> = keys
                        .into_iter()
                        .map(|(key, value)| Windowed {
                            key,
                            window: Window::new(start, end),
                            value,
                        })
                        .collect();
                    results.sort_by(|a, b| a.key.cmp(&b.key));
                    closed.extend(results);
                }
            }
        }
        for result in closed {
            cx.time = Some(result.window.end.saturating_sub(1));
            out(result, cx);
        }
        cx.time = time;
    }
}

impl<P, K, V, A: Aggregator<V>> WindowAggregate<P, K, V, A> {
    fn parts(&mut self) -> (&mut P, Parts<'_, K, V, A>) {
        (
            &mut self.prev,
            Parts {
                windows: &self.windows,
                agg: &self.agg,
                on_late: &mut self.on_late,
                fixed: &mut self.fixed,
                sessions: &mut self.sessions,
                scratch: &mut self.scratch,
            },
        )
    }
}

type Saved<K, A> = (Vec<((i64, i64), Vec<(K, A)>)>, Vec<(K, Vec<Session<A>>)>);

impl<In, P, K, V, A> Operator<In> for WindowAggregate<P, K, V, A>
where
    P: Operator<In, Out = (K, V)>,
    K: StateKey + Ord,
    V: Clone + Send + 'static,
    A: Aggregator<V>,
{
    type Out = Windowed<K, A::Acc>;

    #[inline]
    fn push<E: FnMut(Self::Out, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (prev, mut parts) = self.parts();
        prev.push(item, cx, &mut |kv, cx| parts.add(kv, cx, out));
    }

    fn advance<E: FnMut(Self::Out, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (prev, mut parts) = self.parts();
        prev.advance(cx, &mut |kv, cx| parts.add(kv, cx, out));
        parts.close(cx, out);
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
        shape.push("window");
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)?;
        let fixed: Vec<_> = self
            .fixed
            .iter()
            .map(|(w, keys)| {
                (
                    *w,
                    keys.iter().map(|(k, a)| (k.clone(), a.clone())).collect(),
                )
            })
            .collect();
        let sessions: Vec<_> = self
            .sessions
            .iter()
            .map(|(k, list)| (k.clone(), list.clone()))
            .collect();
        let saved: Saved<K, A::Acc> = (fixed, sessions);
        parts.push(encode(&saved)?);
        Ok(())
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)?;
        let (fixed, sessions): Saved<K, A::Acc> = decode(&next_part(parts, "window")?, "window")?;
        self.fixed = fixed
            .into_iter()
            .map(|(w, keys)| (w, keys.into_iter().collect()))
            .collect();
        self.sessions = sessions.into_iter().collect();
        Ok(())
    }
}
