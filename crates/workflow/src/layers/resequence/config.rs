//! The resequencer's settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::store::DeadLetterStore;
use crate::store::IntoArc;

/// What happens when a held event's gap does not fill in time (or too many are held).
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{OnExpiry, ResequenceConfig};
/// // Never apply a version before its predecessor, even if that one is lost.
/// let strict = ResequenceConfig::new().on_expiry(OnExpiry::DeadLetter);
/// # let _ = strict;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExpiry {
    /// Skip the gap: apply the held events from the lowest version on, in order (the
    /// default). The missing versions, if they come later, are stale and dropped.
    Release,
    /// Keep the order strict: the expired held events go to dead letters; the entity still
    /// waits for the missing version.
    DeadLetter,
}

/// Where an entity's versions start.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{ResequenceConfig, StartAt};
/// // Entities are created at version 1: a version 2 seen first waits for it.
/// let cfg = ResequenceConfig::new().start_at(StartAt::Version(1));
/// # let _ = cfg;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The first version seen for an entity is the start, whatever it is (the default).
    FirstSeen,
    /// Versions start at this one: an entity's first event may be held until it arrives.
    Version(u64),
}

/// Resequencer settings: how long and how many out-of-order versions wait for their gap.
///
/// Only events with both an entity id and a version are ordered; others pass through, and
/// so does a redriven event (an operator asked for it). Per entity: a version below the next
/// expected one, or one already held, is stale: dropped and counted. A version above it is
/// held (counted), at most `max_held` per entity and for at most `hold_for`; when the gap
/// fills, held versions are applied in order, by the delivery that filled it. When a hold
/// expires or an entity holds too many, [`OnExpiry`] decides. A held event is acknowledged
/// to its delivery at once (so a keyed lane is not blocked behind its own gap): it lives in
/// memory until applied. A released event that fails goes to the dead-letter store given
/// here (the workflow builder passes its own).
///
/// State is kept for at most `max_entities` entities; past that, idle entities are forgotten
/// oldest first, and a forgotten entity starts again as in [`StartAt`].
///
/// Defaults: hold 30 s, 1,000 held per entity, [`OnExpiry::Release`], [`StartAt::FirstSeen`],
/// 100,000 entities.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{OnExpiry, ResequenceConfig, StartAt};
/// let cfg = ResequenceConfig::new()
///     .hold_for(Duration::from_secs(5))
///     .max_held(100)
///     .on_expiry(OnExpiry::DeadLetter)
///     .start_at(StartAt::Version(1));
/// # let _ = cfg;
/// ```
#[derive(Clone)]
pub struct ResequenceConfig {
    pub(super) hold_for: Duration,
    pub(super) max_held: usize,
    pub(super) on_expiry: OnExpiry,
    pub(super) start: StartAt,
    pub(super) max_entities: usize,
    pub(super) dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl fmt::Debug for ResequenceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResequenceConfig")
            .field("hold_for", &self.hold_for)
            .field("max_held", &self.max_held)
            .field("on_expiry", &self.on_expiry)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Default for ResequenceConfig {
    fn default() -> Self {
        ResequenceConfig {
            hold_for: Duration::from_secs(30),
            max_held: 1000,
            on_expiry: OnExpiry::Release,
            start: StartAt::FirstSeen,
            max_entities: 100_000,
            dead_letters: None,
        }
    }
}

impl ResequenceConfig {
    /// The defaults (see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = syncbus_workflow::ResequenceConfig::new(); // hold 30 s, 1,000 per entity
    /// # let _ = cfg;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long an event may wait for its gap.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = syncbus_workflow::ResequenceConfig::new().hold_for(std::time::Duration::from_secs(2));
    /// # let _ = cfg;
    /// ```
    pub fn hold_for(mut self, d: Duration) -> Self {
        self.hold_for = d;
        self
    }

    /// How many events one entity may hold (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = syncbus_workflow::ResequenceConfig::new().max_held(50);
    /// # let _ = cfg;
    /// ```
    pub fn max_held(mut self, n: usize) -> Self {
        self.max_held = n.max(1);
        self
    }

    /// What an expired hold does.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{OnExpiry, ResequenceConfig};
    /// let strict = ResequenceConfig::new().on_expiry(OnExpiry::DeadLetter);
    /// # let _ = strict;
    /// ```
    pub fn on_expiry(mut self, p: OnExpiry) -> Self {
        self.on_expiry = p;
        self
    }

    /// Where versions start.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{ResequenceConfig, StartAt};
    /// let from_one = ResequenceConfig::new().start_at(StartAt::Version(1));
    /// # let _ = from_one;
    /// ```
    pub fn start_at(mut self, s: StartAt) -> Self {
        self.start = s;
        self
    }

    /// How many entities' positions are kept (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let o = syncbus_workflow::ResequenceConfig::new().max_entities(1_000_000);
    /// # let _ = o;
    /// ```
    pub fn max_entities(mut self, n: usize) -> Self {
        self.max_entities = n.max(1);
        self
    }

    /// Where released events that fail, and expired ones under [`OnExpiry::DeadLetter`], go.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// let o = syncbus_workflow::ResequenceConfig::new()
    ///     .dead_letters(syncbus_storage::MemoryDeadLetterStore::new(1000));
    /// # let _ = o;
    /// ```
    pub fn dead_letters(mut self, store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        self.dead_letters = Some(store);
        self
    }
}
