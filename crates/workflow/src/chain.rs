//! The chains of events: which event caused which, retained for inspection.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use syncbus_envelope::{EventId, EventType, Metadata, Timestamp};

/// Remembers, for the last `capacity` events that workflow subscriptions handled or emitted,
/// their causation links and who handled them, so a chain can be shown as a tree.
///
/// Older events are forgotten first; a chain whose root was forgotten is shown from the
/// oldest event still retained.
///
/// # Examples
///
/// ```
/// let chains = syncbus_workflow::Chains::new(10_000);
/// assert!(chains.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Chains {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    nodes: HashMap<EventId, Node>,
    children: HashMap<EventId, Vec<EventId>>,
    order: VecDeque<EventId>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct Node {
    event_type: EventType,
    topic: Option<String>,
    causation: Option<EventId>,
    correlation: Option<EventId>,
    time: Option<Timestamp>,
    handled: Vec<Handling>,
}

/// One handling of an event by a workflow subscription.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Workflow};
/// #[derive(Clone, Debug, Serialize, Deserialize)] struct OrderPlaced;
/// impl Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
/// #[derive(Clone, Debug, Serialize, Deserialize)] struct StockReserved;
/// impl Event for StockReserved { const TYPE: &'static str = "shop.stock.reserved"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let reserve = wf.subscribe::<OrderPlaced>("shop.order.placed")?.name("reserve").handle(
///     |_e: Envelope<OrderPlaced>, ctx: Context| async move {
///         ctx.emit(StockReserved);
///         Ok(())
///     },
/// )?;
/// let env = Envelope::from_event(OrderPlaced);
/// let id = env.meta().id().clone();
/// bus.publish_envelope(env).await?;
/// bus.settled().await; // handled, and its follow-up published
/// let tree = wf.chain(&id).expect("retained");
/// let handling = &tree.handled[0];
/// assert_eq!((handling.subscription.as_str(), &handling.outcome), ("reserve", &Ok(())));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handling {
    /// The subscription.
    pub subscription: String,
    /// `Ok` or the error's text.
    pub outcome: Result<(), String>,
}

/// One event of a chain and what it caused.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Workflow};
/// #[derive(Clone, Debug, Serialize, Deserialize)] struct OrderPlaced;
/// impl Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
/// #[derive(Clone, Debug, Serialize, Deserialize)] struct StockReserved;
/// impl Event for StockReserved { const TYPE: &'static str = "shop.stock.reserved"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let reserve = wf.subscribe::<OrderPlaced>("shop.order.placed")?.name("reserve").handle(
///     |_e: Envelope<OrderPlaced>, ctx: Context| async move {
///         ctx.emit(StockReserved);
///         Ok(())
///     },
/// )?;
/// let env = Envelope::from_event(OrderPlaced);
/// let id = env.meta().id().clone();
/// bus.publish_envelope(env).await?;
/// bus.settled().await; // handled, and its follow-up published
/// let tree = wf.chain(&id).expect("retained");
/// assert_eq!(tree.types(), vec!["shop.order.placed", "shop.stock.reserved"]);
/// assert_eq!(tree.children[0].correlation_id.as_ref(), Some(&id)); // the root's id
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainNode {
    /// The event's id.
    pub id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// Its topic.
    pub topic: Option<String>,
    /// Its correlation id.
    pub correlation_id: Option<EventId>,
    /// When it happened.
    pub time: Option<Timestamp>,
    /// Which subscriptions handled it, and how it went.
    pub handled: Vec<Handling>,
    /// The events it caused, oldest first.
    pub children: Vec<ChainNode>,
}

impl ChainNode {
    /// This node and all below it, depth first.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn show(tree: &syncbus_workflow::ChainNode) {
    /// for node in tree.iter() {
    ///     println!("{} {}", node.id, node.event_type);
    /// }
    /// # }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &ChainNode> + '_ {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let n = stack.pop()?;
            stack.extend(n.children.iter().rev());
            Some(n)
        })
    }

    /// The event types in depth-first order: a quick way to assert a chain's shape.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn show(tree: &syncbus_workflow::ChainNode) {
    /// println!("{:?}", tree.types());
    /// # }
    /// ```
    pub fn types(&self) -> Vec<&str> {
        self.iter().map(|n| n.event_type.as_str()).collect()
    }
}

impl Chains {
    /// Retains about `capacity` events (at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// let chains = syncbus_workflow::Chains::new(1_000);
    /// assert_eq!(chains.len(), 0);
    /// ```
    pub fn new(capacity: usize) -> Chains {
        Chains {
            inner: Arc::new(Mutex::new(Inner {
                nodes: HashMap::new(),
                children: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    /// How many events are retained.
    ///
    /// # Examples
    ///
    /// ```
    /// # let chains = syncbus_workflow::Chains::new(1_000);
    /// assert_eq!(chains.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.lock().nodes.len()
    }

    /// Whether nothing is retained.
    ///
    /// # Examples
    ///
    /// ```
    /// # let chains = syncbus_workflow::Chains::new(1_000);
    /// assert!(chains.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records an event (idempotent per id).
    pub(crate) fn record(&self, meta: &Metadata) {
        let mut inner = self.inner.lock();
        inner.insert(meta);
    }

    /// Records that `subscription` handled the event, and how.
    pub(crate) fn handled(&self, meta: &Metadata, subscription: &str, outcome: Result<(), String>) {
        let mut inner = self.inner.lock();
        inner.insert(meta);
        if let Some(node) = inner.nodes.get_mut(meta.id()) {
            node.handled.push(Handling {
                subscription: subscription.to_owned(),
                outcome,
            });
        }
    }

    /// The tree of events `id` caused, with `id` at the root; `None` if it is not retained.
    ///
    /// # Examples
    ///
    /// ```
    /// let chains = syncbus_workflow::Chains::new(100);
    /// assert!(chains.tree(&syncbus_envelope::EventId::new()).is_none());
    /// ```
    pub fn tree(&self, id: &EventId) -> Option<ChainNode> {
        let inner = self.inner.lock();
        inner.build(id, 0)
    }

    /// The id of the oldest retained ancestor of `id` (itself if it has none).
    ///
    /// # Examples
    ///
    /// ```
    /// let chains = syncbus_workflow::Chains::new(100);
    /// let id = syncbus_envelope::EventId::new();
    /// assert_eq!(chains.root_of(&id), None);
    /// ```
    pub fn root_of(&self, id: &EventId) -> Option<EventId> {
        let inner = self.inner.lock();
        let mut cur = inner.nodes.get(id).map(|_| id.clone())?;
        // Bounded by the number of nodes, in case ids were reused to form a cycle.
        for _ in 0..inner.nodes.len() {
            match inner.nodes[&cur].causation.as_ref() {
                Some(parent) if inner.nodes.contains_key(parent) => cur = parent.clone(),
                _ => break,
            }
        }
        Some(cur)
    }
}

/// Deeper chains are cut (a cycle of foreign ids must not recurse forever).
const MAX_DEPTH: usize = 256;

impl Inner {
    fn insert(&mut self, meta: &Metadata) {
        if self.nodes.contains_key(meta.id()) {
            return;
        }
        while self.nodes.len() >= self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(node) = self.nodes.remove(&old) {
                if let Some(parent) = node.causation {
                    if let Some(siblings) = self.children.get_mut(&parent) {
                        siblings.retain(|c| c != &old);
                        if siblings.is_empty() {
                            self.children.remove(&parent);
                        }
                    }
                }
            }
        }
        let id = meta.id().clone();
        if let Some(parent) = meta.causation_id() {
            self.children
                .entry(parent.clone())
                .or_default()
                .push(id.clone());
        }
        self.nodes.insert(
            id.clone(),
            Node {
                event_type: meta.event_type().clone(),
                topic: meta.topic().map(|t| t.as_str().to_owned()),
                causation: meta.causation_id().cloned(),
                correlation: meta.correlation_id().cloned(),
                time: meta.time(),
                handled: Vec::new(),
            },
        );
        self.order.push_back(id);
    }

    fn build(&self, id: &EventId, depth: usize) -> Option<ChainNode> {
        let node = self.nodes.get(id)?;
        let children = if depth < MAX_DEPTH {
            self.children
                .get(id)
                .map(|c| c.iter().filter_map(|c| self.build(c, depth + 1)).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(ChainNode {
            id: id.clone(),
            event_type: node.event_type.clone(),
            topic: node.topic.clone(),
            correlation_id: node.correlation.clone(),
            time: node.time,
            handled: node.handled.clone(),
            children,
        })
    }
}
