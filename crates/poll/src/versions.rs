//! [`AppliedVersions`]: the last version applied per entity, in SQLite; and
//! [`VersionGate`], the handler wrapper that lets only a newer version through.
//!
//! The rule is the resequencer's for stale events (a version at or below the last applied
//! one is dropped and counted) without its gap holding: a poll sees an entity's latest
//! state, so versions in between may never arrive, and a newer one is applied at once.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use syncbus_envelope::{Envelope, Payload};
use syncbus_storage::StoreError;
use syncbus_store::rusqlite::{self, OptionalExtension};
use syncbus_store::SqliteStore;
use syncbus_workflow::{Context, Handler, HandlerError, ResultExt};

const STRIPES: usize = 64;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS syncbus_applied_versions (
    scope TEXT NOT NULL,
    entity TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (scope, entity)
) WITHOUT ROWID";

/// The last version applied per entity of one upstream (`scope`), kept in SQLite (table
/// `syncbus_applied_versions`), so "only a newer version passes" survives restarts and
/// holds across every transport the upstream arrives by.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_poll::AppliedVersions;
/// let dir = tempfile::tempdir()?;
/// let store = syncbus_store::SqliteStore::open(dir.path().join("v.db")).await?;
/// let versions = AppliedVersions::open(store, "shop").await?;
/// assert!(versions.record("order-1", 3).await?);
/// assert!(!versions.record("order-1", 3).await?); // not newer
/// assert!(!versions.record("order-1", 2).await?);
/// assert!(versions.record("order-1", 4).await?);
/// assert_eq!(versions.get("order-1").await?, Some(4));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AppliedVersions {
    store: SqliteStore,
    scope: Arc<str>,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
}

impl fmt::Debug for AppliedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppliedVersions")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn to_sql(version: u64) -> Result<i64, rusqlite::Error> {
    i64::try_from(version).map_err(|_| {
        rusqlite::Error::ToSqlConversionFailure(
            format!("version {version} is above i64::MAX").into(),
        )
    })
}

impl AppliedVersions {
    /// The versions of `scope` in `store`, creating the table if it is not there.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the table cannot be created.
    ///
    /// # Examples
    ///
    /// See [`AppliedVersions`].
    pub async fn open(
        store: SqliteStore,
        scope: impl Into<String>,
    ) -> Result<AppliedVersions, StoreError> {
        store
            .with_connection(|conn| {
                conn.execute_batch(SCHEMA)?;
                Ok(())
            })
            .await?;
        Ok(AppliedVersions {
            store,
            scope: scope.into().into(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    /// The scope (the upstream's name).
    ///
    /// # Examples
    ///
    /// See [`AppliedVersions`].
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The last version applied for `entity`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from SQLite.
    ///
    /// # Examples
    ///
    /// See [`AppliedVersions`].
    pub async fn get(&self, entity: &str) -> Result<Option<u64>, StoreError> {
        let (scope, entity) = (self.scope.clone(), entity.to_owned());
        self.store
            .with_connection(move |conn| {
                let v: Option<i64> = conn
                    .query_row(
                        "SELECT version FROM syncbus_applied_versions WHERE scope = ?1 AND entity = ?2",
                        (&*scope, &entity),
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(v.map(|v| v as u64))
            })
            .await
    }

    /// Records `version` for `entity` if it is newer than the one recorded; returns whether
    /// it was.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from SQLite, or for a version above `i64::MAX`.
    ///
    /// # Examples
    ///
    /// See [`AppliedVersions`].
    pub async fn record(&self, entity: &str, version: u64) -> Result<bool, StoreError> {
        let (scope, entity) = (self.scope.clone(), entity.to_owned());
        self.store
            .with_connection(move |conn| {
                Ok(AppliedVersions::record_in(conn, &scope, &entity, version)?)
            })
            .await
    }

    /// [`record`](Self::record) on a connection or inside a transaction of your own, so a
    /// handler's effect and its version commit together (then a crash between them cannot
    /// apply the change twice).
    ///
    /// # Errors
    ///
    /// A [`rusqlite::Error`], or a conversion failure for a version above `i64::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_poll::AppliedVersions;
    /// let dir = tempfile::tempdir()?;
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("v.db")).await?;
    /// let versions = AppliedVersions::open(store.clone(), "shop").await?;
    /// let newer = store
    ///     .with_connection(|conn| {
    ///         let tx = conn.transaction()?;
    ///         // ... the handler's own writes ...
    ///         let newer = AppliedVersions::record_in(&tx, "shop", "order-1", 5)?;
    ///         tx.commit()?;
    ///         Ok(newer)
    ///     })
    ///     .await?;
    /// assert!(newer);
    /// assert_eq!(versions.get("order-1").await?, Some(5));
    /// # Ok(()) }
    /// ```
    pub fn record_in(
        conn: &rusqlite::Connection,
        scope: &str,
        entity: &str,
        version: u64,
    ) -> Result<bool, rusqlite::Error> {
        let changed = conn.execute(
            "INSERT INTO syncbus_applied_versions (scope, entity, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (scope, entity) DO UPDATE SET version = excluded.version
             WHERE excluded.version > syncbus_applied_versions.version",
            (scope, entity, to_sql(version)?),
        )?;
        Ok(changed == 1)
    }

    /// `handler` behind the gate: see [`VersionGate`].
    ///
    /// # Examples
    ///
    /// See [`VersionGate`].
    pub fn gate<H>(&self, handler: H) -> VersionGate<H> {
        VersionGate {
            versions: self.clone(),
            inner: Arc::new(handler),
            counts: Arc::new(GateCounts::default()),
        }
    }

    fn stripe(&self, entity: &str) -> &tokio::sync::Mutex<()> {
        let h = stripe_hash(entity);
        &self.stripes[(h as usize) % self.stripes.len()]
    }
}

/// A fixed hasher: the stripe of an entity must not change between calls.
fn stripe_hash(s: &str) -> u64 {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(s)
}

#[derive(Debug, Default)]
struct GateCounts {
    applied: AtomicU64,
    stale: AtomicU64,
    unversioned: AtomicU64,
}

/// What a [`VersionGate`] let through and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GateMetrics {
    /// Handled and recorded: newer than what was applied.
    pub applied: u64,
    /// Dropped (acked without running the handler): a version at or below the one applied.
    pub stale: u64,
    /// Without an entity id or a version: passed to the handler unchecked.
    pub unversioned: u64,
}

/// A handler that runs only for a version newer than the entity's last applied one, then
/// records it in [`AppliedVersions`]; older and equal versions are acked without running
/// the handler (counted as stale). Deliveries of one entity pass the gate one at a time
/// (in this process), whichever transport brought them, so a change arriving by webhook
/// and by poll at once runs the handler once. Events without an entity id or a version
/// pass unchecked (counted).
///
/// The version is recorded after the handler succeeds: a crash between the two runs the
/// handler again for that version (at least once). For exactly-once effects, record the
/// version in the handler's own transaction with [`AppliedVersions::record_in`]; the gate's
/// own record then finds it there and changes nothing.
///
/// Also exported as `syncbus_poll_gate_total{scope, outcome = applied | stale | unversioned}`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_envelope::{Bytes, EntityId, EventType, Metadata};
/// use syncbus_poll::{AppliedVersions, RawEvent};
/// use syncbus_workflow::{handler_fn, Context, Handler};
///
/// let dir = tempfile::tempdir()?;
/// let store = syncbus_store::SqliteStore::open(dir.path().join("v.db")).await?;
/// let gate = AppliedVersions::open(store, "shop").await?.gate(handler_fn(
///     |_env: Envelope<RawEvent>, _ctx: Context| async { Ok(()) },
/// ));
/// let bus = Bus::new();
/// for v in [1, 3, 2, 3] {
///     let meta = Metadata::new(EventType::new("shop.order")?)
///         .with_entity_id(Some(EntityId::new("o-1")?))
///         .with_version(Some(v));
///     let ctx = Context::new(&bus, &meta);
///     gate.call(Envelope::new(meta, RawEvent(Bytes::new())), ctx).await?;
/// }
/// assert_eq!((gate.metrics().applied, gate.metrics().stale), (2, 2));
/// # Ok(()) }
/// ```
pub struct VersionGate<H> {
    versions: AppliedVersions,
    inner: Arc<H>,
    counts: Arc<GateCounts>,
}

impl<H> Clone for VersionGate<H> {
    fn clone(&self) -> Self {
        VersionGate {
            versions: self.versions.clone(),
            inner: self.inner.clone(),
            counts: self.counts.clone(),
        }
    }
}

impl<H> fmt::Debug for VersionGate<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionGate")
            .field("versions", &self.versions)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl<H> VersionGate<H> {
    /// What the gate let through and dropped so far (every clone shares the counts).
    ///
    /// # Examples
    ///
    /// See [`VersionGate`].
    pub fn metrics(&self) -> GateMetrics {
        GateMetrics {
            applied: self.counts.applied.load(Relaxed),
            stale: self.counts.stale.load(Relaxed),
            unversioned: self.counts.unversioned.load(Relaxed),
        }
    }

    /// The versions behind the gate.
    ///
    /// # Examples
    ///
    /// See [`VersionGate`].
    pub fn versions(&self) -> &AppliedVersions {
        &self.versions
    }

    fn count(&self, outcome: &'static str, c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
        metrics::counter!("syncbus_poll_gate_total", "scope" => self.versions.scope.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

impl<P: Payload, H: Handler<P>> Handler<P> for VersionGate<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let meta = env.meta();
        let (Some(entity), Some(version)) = (meta.entity_id().cloned(), meta.version()) else {
            self.count("unversioned", &self.counts.unversioned);
            return self.inner.call(env, ctx).await;
        };
        let entity = entity.as_str();
        let _one = self.versions.stripe(entity).lock().await;
        let applied = self.versions.get(entity).await.retryable()?;
        if applied.is_some_and(|a| version <= a) {
            self.count("stale", &self.counts.stale);
            return Ok(());
        }
        self.inner.call(env, ctx).await?;
        self.versions.record(entity, version).await.retryable()?;
        self.count("applied", &self.counts.applied);
        Ok(())
    }
}
