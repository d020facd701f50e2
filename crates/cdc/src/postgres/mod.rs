//! The PostgreSQL reader: a logical replication slot with the built-in `pgoutput` plugin,
//! as a [`Source`]. Two transports ([`PgTransport`]): a replication connection
//! (`START_REPLICATION`, the confirmed position sent back as the slot's flush feedback;
//! `replication.rs`), or the slot's SQL functions (`pg_logical_slot_peek_binary_changes`,
//! then `pg_replication_slot_advance` once the changes are settled). Both hand the same
//! pgoutput messages to the same decoder.
//!
//! # Order and transactions
//!
//! PostgreSQL hands out a transaction whole, at its commit, in commit order; the reader
//! hands its changes out in that order, one after another, and never the next transaction's
//! before the last change of this one. Each change's position is (commit LSN, position in
//! the transaction).
//!
//! # Confirming
//!
//! A position is confirmed once it and every one before it was acked or termed. The
//! confirmed position goes to the [`Checkpoints`] store first (every `checkpoint_every`,
//! and always before the slot moves), and the slot is advanced to the end of the last
//! transaction confirmed whole (over a replication connection: sent as its flush position
//! in a status update). A restart reads from the slot and skips what the checkpoint says
//! was confirmed: at-least-once, with duplicates only of changes after the last
//! checkpoint, which have the same ids as before (the dedup layer drops them).
//!
//! # Memory and a slow consumer
//!
//! Changes are streamed from the server as they are read, with backpressure (a bounded
//! channel from the replication connection's task; tokio-postgres for a peek), so a
//! 100,000-row transaction is never held whole: the reader holds a fetch's worth of
//! changes and the positions not yet confirmed. While the consumer does not read, the
//! replication connection's task still sends a status update every third of the server's
//! `wal_sender_timeout`, so the server keeps the connection. A peek's server side keeps
//! the decoded transaction in its tuplestore (in `work_mem`, then on disk).

mod build;
mod config;
mod conn;
mod delivery;
mod peek;
mod replication;
mod snapshot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use syncbus_core::Source;
use syncbus_envelope::{Binary, Bytes, Envelope, Headers, Limits, Metadata, SmolStr, Timestamp};
use syncbus_storage::{Checkpoints, IntoArc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use self::build::{build_all, Decimal, Rel, Shape, Staged, Todo, TxText, Writer};
use self::config::{quote, TableName};
pub use self::config::{PgCdcConfig, PgTransport};
use self::conn::{connect, lsn_text, parse_lsn, pg_error};
pub use self::delivery::PgDelivery;
pub(crate) use self::delivery::PgPos;
use self::peek::Peek;
use self::replication::{Item, Replication};
use self::snapshot::{Snapshot, SnapshotFilter};
use crate::change::{change_id, envelope, fnv64, reader_salt, Change, IdKind, Op, Parts};
use crate::error::CdcError;
use crate::pgoutput::{self, Datum, Message, Relation};
use crate::sqlite::decode_hex;
use crate::tracker::Tracker;
use serde_json::Value;

const SNAPSHOT_DONE: PgPos = PgPos::Snapshot(u64::MAX);

/// What the checkpoint store keeps (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    /// Confirmed stream position: commit LSN, position in that transaction (`u32::MAX`: whole).
    commit: u64,
    pos: u32,
    end: u64,
    /// The snapshot's visibility, while transactions it saw may still come in the stream.
    filter: Option<SnapshotFilter>,
    /// Whether the snapshot (if asked for) was read and confirmed whole.
    snapshot_done: bool,
}

/// How long a slot held by a connection that is closing may take to be released.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Checks `wal_level`, creates the publication and the slot if absent, and checks that
/// every table can publish updates and deletes. Returns the slot's confirmed LSN.
async fn setup(client: &Client, c: &PgCdcConfig) -> Result<PrimaryKeys, CdcError> {
    let mut keys = PrimaryKeys::new();
    let slot = c.slot_name();
    let level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| pg_error("reading wal_level", slot, e))?
        .get(0);
    check_wal_level(&level)?;
    for t in &c.tables {
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&t.schema, &t.table],
            )
            .await
            .map_err(|e| pg_error("looking up the tables", slot, e))?;
        let Some(row) = row else {
            return Err(CdcError::Invalid(format!(
                "table {}.{} does not exist",
                t.schema, t.table
            )));
        };
        let (ident, has_pk): (String, bool) = (row.get(0), row.get(1));
        let pk: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = $1::text::regclass AND i.indisprimary
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&t.quoted()],
            )
            .await
            .map_err(|e| pg_error("looking up the primary keys", slot, e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        keys.insert((t.schema.clone(), t.table.clone()), pk);
        if ident == "n" || (ident == "d" && !has_pk) {
            return Err(CdcError::Invalid(format!(
                "table {}.{} has no primary key, so its updates and deletes cannot be published: add one, or ALTER TABLE {} REPLICA IDENTITY FULL",
                t.schema, t.table, t.quoted()
            )));
        }
    }
    let publication = c.publication_name();
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("looking up the publication", slot, e))?
        .is_some();
    if !exists {
        let tables: Vec<String> = c.tables.iter().map(TableName::quoted).collect();
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            quote(publication),
            tables.join(", ")
        );
        match client.batch_execute(&sql).await {
            Ok(()) => tracing::info!(publication, "cdc: publication created"),
            // Another reader made it at the same moment.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => return Err(pg_error("create the publication", slot, e)),
        }
    }
    let row = client
        .query_opt(
            "SELECT plugin, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error("looking up the slot", slot, e))?;
    match row {
        Some(row) => {
            let plugin: Option<String> = row.get(0);
            if plugin.as_deref() != Some("pgoutput") {
                return Err(CdcError::Invalid(format!(
                    "slot {slot:?} exists with plugin {plugin:?}, not pgoutput: drop it or name another slot"
                )));
            }
            let mut pid: Option<i32> = row.get(1);
            // A reader that was just stopped (or killed) holds the slot until the server sees
            // its connection close: give that a moment before calling the slot taken.
            let until = Instant::now() + RELEASE_WAIT;
            while pid.is_some() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                pid = client
                    .query_opt(
                        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .map_err(|e| pg_error("looking up the slot", slot, e))?
                    .and_then(|row| row.get(0));
            }
            if let Some(pid) = pid {
                return Err(CdcError::SlotInUse {
                    slot: slot.to_owned(),
                    message: format!("active for PID {pid}"),
                });
            }
        }
        None => {
            match client
                .query_one(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await
            {
                Ok(row) => {
                    let lsn: String = row.get(0);
                    tracing::info!(slot, %lsn, "cdc: replication slot created");
                }
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
                Err(e) => return Err(pg_error("create the replication slot", slot, e)),
            }
        }
    }
    Ok(keys)
}

/// Each table's primary key columns, in key order (the entity id; the replica identity may
/// be wider).
type PrimaryKeys = std::collections::HashMap<(String, String), Vec<String>>;

fn check_wal_level(level: &str) -> Result<(), CdcError> {
    if level == "logical" {
        Ok(())
    } else {
        Err(CdcError::WalLevel {
            found: level.to_owned(),
        })
    }
}

/// The transaction being read.
#[derive(Debug)]
struct Tx {
    commit: u64,
    xid: u32,
    time: Option<Timestamp>,
    pos: u32,
    /// Already in the snapshot: its changes are skipped.
    skip: bool,
    /// The headers every change of it carries (the same for all): made once per
    /// transaction, not per change.
    headers: Headers,
    /// Per relation and op, the metadata its changes share (type, topic, source, content
    /// type, time, headers): cloned per change, so the rare-field block is built once.
    metas: Vec<((u32, Op), Metadata)>,
    /// The end of every change's payload.
    text: Arc<TxText>,
    /// Where the payloads of changes built on the reader's side are written.
    writer: Writer,
}

impl Tx {
    /// The next change's place in the transaction, and its stream position.
    fn next_pos(&mut self) -> (u32, PgPos) {
        let pos = self.pos;
        self.pos += 1;
        let at = PgPos::Stream {
            commit: self.commit,
            pos,
            end: 0,
        };
        (pos, at)
    }

    /// The metadata template of `op` on `rel` in this transaction (made at its first change).
    fn template(&mut self, rel: &Rel, op: Op, source: &SmolStr) -> Metadata {
        let shared = (rel.rel.oid, op);
        if let Some((_, m)) = self.metas.iter().find(|(k, _)| *k == shared) {
            return m.clone();
        }
        let m = rel.template(op, source, self.time, &self.headers);
        self.metas.push((shared, m.clone()));
        m
    }
}

/// A batch with at least this many envelopes to build is built in two halves at once.
const PARALLEL_BUILD: usize = 128;

struct Reader {
    client: Client,
    /// The slot functions' peek being read ([`PgTransport::SlotFunctions`]).
    stream: Option<Peek>,
    /// The replication connection ([`PgTransport::Replication`]) and what it handed over
    /// that is not read yet.
    repl: Option<Replication>,
    pending: VecDeque<Item>,
    rows: u64,
    /// The relations the stream described (a few: a linear search beats hashing).
    relations: Vec<Arc<Rel>>,
    tx: Option<Tx>,
    /// What was last written to the checkpoint store, and the slot's end.
    stored: Stored,
    written: Option<PgPos>,
    last_write: Instant,
    advanced: u64,
    /// The server's flushed WAL position just before the current peek; the end of the last
    /// transaction it returned; and, once a peek read everything up to `peek_upto`, that
    /// position (the slot may pass it once everything handed out is confirmed).
    peek_upto: u64,
    last_end: u64,
    caught_up: Option<u64>,
    snapshot: Option<Snapshot>,
    /// The slot had nothing more when last asked; ask again after `poll`.
    idle_since: Option<Instant>,
    /// The current peek handed out something not handed out before.
    fresh: bool,
}

/// A batch being read in a task.
type ReadAhead = tokio::task::JoinHandle<Result<Vec<Staged>, CdcError>>;

struct Inner {
    /// The next batch, read ahead while the caller handles the last one (see `fetch`).
    ahead: Mutex<Option<ReadAhead>>,
    config: PgCdcConfig,
    name: String,
    checkpoints: Arc<dyn Checkpoints>,
    tracker: Arc<Mutex<Tracker<PgPos>>>,
    reader: tokio::sync::Mutex<Reader>,
    limits: Limits,
    keys: PrimaryKeys,
    source: SmolStr,
    /// The slot name's part of every change id (hashed once).
    salt: u32,
}

/// The PostgreSQL change reader: a [`Source`] of [`Change`]s for `Workflow::serve`. Made by
/// [`PgCdc::connect`]; cheap to clone (clones share the reader).
///
/// The PostgreSQL reader: a logical replication slot with the built-in `pgoutput` plugin,
/// as a [`Source`], over a replication connection (the default) or the slot's SQL
/// functions ([`PgTransport`]).
///
/// # Order and transactions
///
/// PostgreSQL hands out a transaction whole, at its commit, in commit order; the reader
/// hands its changes out in that order, one after another, and never the next transaction's
/// before the last change of this one. Each change's position is (commit LSN, position in
/// the transaction).
///
/// # Confirming
///
/// A position is confirmed once it and every one before it was acked or termed. The
/// confirmed position goes to the [`Checkpoints`] store first (every `checkpoint_every`,
/// and always before the slot moves), and the slot is advanced to the end of the last
/// transaction confirmed whole (over a replication connection: sent as its flush position
/// in a status update). A restart reads from the slot and skips what the checkpoint says
/// was confirmed: at-least-once, with duplicates only of changes after the last
/// checkpoint, which have the same ids as before (the dedup layer drops them).
///
/// # Memory and a slow consumer
///
/// Changes are streamed from the server as they are read, with backpressure (a bounded
/// channel from the replication connection's task; tokio-postgres for a peek), so a
/// 100,000-row transaction is never held whole: the reader holds a fetch's worth of
/// changes and the positions not yet confirmed. While the consumer does not read, the
/// replication connection's task still sends a status update every third of the server's
/// `wal_sender_timeout`, so the server keeps the connection. A peek's server side keeps
/// the decoded transaction in its tuplestore (in `work_mem`, then on disk).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use syncbus_cdc::{Change, PgCdc, PgCdcConfig};
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_storage::MemoryStore;
/// use syncbus_workflow::{Context, Workflow};
///
/// let config = PgCdcConfig::new("postgres://postgres@127.0.0.1/app", ["public.orders"])?;
/// let source = PgCdc::connect(config, MemoryStore::new()).await?;
/// let bus = Bus::new();
/// let served = Workflow::new(&bus).serve(source).handle(|env: Envelope<Change>, _ctx: Context| async move {
///     println!("{} {:?}", env.meta().event_type(), env.meta().entity_id());
///     Ok(())
/// })?;
/// # served.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgCdc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgCdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCdc")
            .field("name", &self.inner.name)
            .field("slot", &self.inner.config.slot)
            .finish_non_exhaustive()
    }
}

impl PgCdc {
    /// Connects, checks the server (`wal_level = logical`), creates the publication and the
    /// slot if absent, and reads the checkpoint named by the config from `checkpoints`.
    ///
    /// # Errors
    ///
    /// [`CdcError::WalLevel`], [`CdcError::Permission`], [`CdcError::SlotInUse`] with what to
    /// change; [`CdcError::Invalid`] for a missing table, a table without a primary key or
    /// replica identity, a slot of another plugin; [`CdcError::Database`] if the server
    /// cannot be reached; [`CdcError::Checkpoint`] if the store fails.
    ///
    /// # Examples
    ///
    /// See [`PgCdc`].
    pub async fn connect(
        config: PgCdcConfig,
        checkpoints: impl IntoArc<dyn Checkpoints>,
    ) -> Result<PgCdc, CdcError> {
        let checkpoints = checkpoints.into_arc();
        let client = connect(&config.url).await?;
        let keys = setup(&client, &config).await?;
        let name = config.checkpoint_name();
        let stored: Stored = match checkpoints.get(&name).await.map_err(CdcError::Checkpoint)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CdcError::Invalid(format!("checkpoint {name:?} does not parse: {e}"))
            })?,
            None => Stored::default(),
        };
        let confirmed = if config.snapshot && !stored.snapshot_done {
            None
        } else {
            Some(PgPos::Stream {
                commit: stored.commit,
                pos: stored.pos,
                end: stored.end,
            })
        };
        let written = confirmed;
        Ok(PgCdc {
            inner: Arc::new(Inner {
                ahead: Mutex::new(None),
                name,
                checkpoints,
                tracker: Arc::new(Mutex::new(Tracker::new(confirmed))),
                reader: tokio::sync::Mutex::new(Reader {
                    client,
                    stream: None,
                    repl: None,
                    pending: VecDeque::new(),
                    rows: 0,
                    relations: Default::default(),
                    tx: None,
                    stored,
                    written,
                    last_write: Instant::now(),
                    advanced: 0,
                    peek_upto: 0,
                    last_end: 0,
                    caught_up: None,
                    snapshot: None,
                    idle_since: None,
                    fresh: false,
                }),
                limits: Limits::default(),
                keys,
                source: SmolStr::from(format!("/syncbus/cdc/postgres/{}", config.slot)),
                salt: reader_salt(&config.slot),
                config,
            }),
        })
    }

    /// Writes the confirmed position to the checkpoint store and advances the slot now
    /// (call it before stopping, so a restart repeats nothing already settled).
    ///
    /// # Errors
    ///
    /// [`CdcError::Checkpoint`] or [`CdcError::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(source: syncbus_cdc::PgCdc) -> Result<(), syncbus_cdc::CdcError> {
    /// source.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<(), CdcError> {
        let mut r = self.inner.reader.lock().await;
        self.flush_locked(&mut r, true).await
    }

    /// Drops the slot and the publication (when a reader is retired; the slot otherwise
    /// keeps WAL on the server). Nothing happens for what does not exist.
    ///
    /// # Errors
    ///
    /// [`CdcError::SlotInUse`] while another connection reads the slot, [`CdcError::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), syncbus_cdc::CdcError> {
    /// syncbus_cdc::PgCdc::drop_slot("postgres://postgres@127.0.0.1/app", "orders_cdc", "orders_cdc").await?;
    /// # Ok(()) }
    /// ```
    pub async fn drop_slot(url: &str, slot: &str, publication: &str) -> Result<(), CdcError> {
        let client = connect(url).await?;
        // A reader that just stopped holds the slot until the server sees its connection
        // close: wait for that a little.
        let until = Instant::now() + RELEASE_WAIT;
        loop {
            let dropped = client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
            match dropped {
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => {
                    other.map_err(|e| pg_error("drop the slot", slot, e))?;
                    break;
                }
            }
        }
        client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}",
                quote(publication)
            ))
            .await
            .map_err(|e| pg_error("drop the publication", slot, e))?;
        Ok(())
    }

    async fn flush_locked(&self, r: &mut Reader, force: bool) -> Result<(), CdcError> {
        let (confirmed, mark, idle) = {
            let mut t = self.inner.tracker.lock();
            t.drain();
            (
                t.confirmed(),
                t.last_mark(),
                t.in_flight() == 0 && !t.rewind_pending(),
            )
        };
        let mut slot_end = match mark {
            Some(PgPos::Stream { end, .. }) => end,
            _ => 0,
        };
        // Everything the last peek returned is confirmed and it read the WAL to `upto`: the
        // slot may pass WAL with nothing for us (other tables, other databases), so the next
        // peek does not decode it again.
        let snapshot_pending =
            self.inner.config.snapshot && !matches!(confirmed, Some(PgPos::Stream { .. }));
        if let (Some(upto), true, false) = (r.caught_up, idle, snapshot_pending) {
            slot_end = slot_end.max(upto);
        }
        let streaming = self.inner.config.transport == PgTransport::Replication;
        // The replication connection confirms with the checkpoint's pace (a status update is
        // cheap, but every confirm writes the checkpoint first); the slot functions advance
        // once a peek is read, before the next one.
        let advance = slot_end > r.advanced
            && if streaming {
                force || r.last_write.elapsed() >= self.inner.config.checkpoint_every
            } else {
                r.stream.is_none()
            };
        if confirmed != r.written
            && (force || advance || r.last_write.elapsed() >= self.inner.config.checkpoint_every)
        {
            match confirmed {
                Some(PgPos::Stream { commit, pos, end }) => {
                    r.stored.commit = commit;
                    r.stored.pos = pos;
                    r.stored.end = end;
                    r.stored.snapshot_done = true;
                }
                Some(p @ PgPos::Snapshot(_)) => {
                    r.stored.snapshot_done = p == SNAPSHOT_DONE;
                }
                None => {}
            }
            let bytes = serde_json::to_vec(&r.stored).unwrap_or_default();
            self.inner
                .checkpoints
                .put(&self.inner.name, bytes)
                .await
                .map_err(CdcError::Checkpoint)?;
            r.written = confirmed;
            r.last_write = Instant::now();
            if r.stored.snapshot_done {
                // The snapshot's transaction ends with its connection.
                r.snapshot = None;
            }
            metrics::counter!("syncbus_cdc_checkpoints_total", "reader" => self.inner.name.clone())
                .increment(1);
        }
        if advance && r.written == confirmed && streaming {
            if let Some(repl) = &r.repl {
                repl.confirm(slot_end);
                r.advanced = slot_end;
            }
        } else if advance && r.written == confirmed {
            let slot = &self.inner.config.slot;
            r.client
                .execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    &[slot, &lsn_text(slot_end)],
                )
                .await
                .map_err(|e| pg_error("advance the slot", slot, e))?;
            r.advanced = slot_end;
        }
        Ok(())
    }

    async fn peek(&self, r: &mut Reader) -> Result<(), CdcError> {
        if r.client.is_closed() {
            r.client = connect(&self.inner.config.url).await?;
        }
        let c = &self.inner.config;
        let upto: String = r
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await
            .map_err(|e| pg_error("read the WAL position", &c.slot, e))?
            .get(0);
        r.peek_upto = parse_lsn(&upto).unwrap_or(0);
        r.last_end = 0;
        r.caught_up = None;
        r.stream = Some(Peek::start(&r.client, &c.slot, c.page, c.publication_name()).await?);
        r.rows = 0;
        r.fresh = false;
        r.tx = None;
        Ok(())
    }

    /// Turns one row of the stream into staged deliveries (none for most messages).
    ///
    /// A row change (insert, update, delete) of a captured table is positioned, tracked and
    /// staged from its first five bytes; its envelope is built afterwards, outside the
    /// reader's lock ([`build`]). Everything else is decoded here.
    fn decode_row(
        &self,
        r: &mut Reader,
        row_lsn: u64,
        data: &Bytes,
        out: &mut Vec<Staged>,
    ) -> Result<(), CdcError> {
        if let [tag @ (b'I' | b'U' | b'D'), a, b, c, d, ..] = data[..] {
            let rel_oid = u32::from_be_bytes([a, b, c, d]);
            let rel = r.relations.iter().find(|r| r.rel.oid == rel_oid).cloned();
            if let Some(rel) = rel.filter(|rel| !self.is_outbox(&rel.rel)) {
                let op = match tag {
                    b'I' => Op::Insert,
                    b'U' => Op::Update,
                    _ => Op::Delete,
                };
                return self.stage(r, row_lsn, data, rel, op, out);
            }
        }
        let at = || lsn_text(row_lsn);
        let msg = pgoutput::decode(data).map_err(|e| CdcError::Decode {
            at: at(),
            message: e.0,
        })?;
        match msg {
            Message::Begin {
                final_lsn,
                timestamp,
                xid,
            } => {
                let skip = r.stored.filter.as_ref().is_some_and(|f| f.saw(xid));
                if skip {
                    metrics::counter!("syncbus_cdc_snapshot_skipped_total").increment(1);
                }
                // µs since 2000-01-01
                let unix_us = timestamp.saturating_add(946_684_800_000_000);
                let mut headers = Headers::new();
                // Valid names, short ASCII values: these never fail.
                let _ = headers.insert("cdclsn", lsn_text(final_lsn));
                let _ = headers.insert("cdcxid", Decimal::new(u64::from(xid)).as_str());
                r.tx = Some(Tx {
                    commit: final_lsn,
                    xid,
                    time: Some(Timestamp::from_unix_nanos(unix_us.saturating_mul(1000))),
                    pos: 0,
                    skip,
                    headers,
                    metas: Vec::new(),
                    text: Arc::new(TxText::new(final_lsn, xid)),
                    writer: Writer::default(),
                });
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                let Some(tx) = r.tx.take() else {
                    return Err(CdcError::Decode {
                        at: at(),
                        message: "commit without begin".into(),
                    });
                };
                if let Some(f) = &r.stored.filter {
                    if f.passed(tx.xid) {
                        // Every transaction the snapshot saw is behind us.
                        // (the snapshot's own connection goes once its end is checkpointed)
                        r.stored.filter = None;
                    }
                }
                r.last_end = end_lsn;
                let pos = PgPos::Stream {
                    commit: commit_lsn,
                    pos: u32::MAX,
                    end: end_lsn,
                };
                let mut t = self.inner.tracker.lock();
                if !t.seen(&pos) {
                    t.push_mark(pos);
                    r.fresh = true;
                }
            }
            Message::Relation(rel) => {
                let pk = self
                    .inner
                    .keys
                    .get(&(rel.schema.clone(), rel.name.clone()))
                    .map(Vec::as_slice);
                let rel = Rel::new(rel, pk);
                let rel = Arc::new(rel);
                match r.relations.iter_mut().find(|r| r.rel.oid == rel.rel.oid) {
                    Some(old) => *old = rel,
                    None => r.relations.push(rel),
                }
            }
            Message::Other(_) => {}
            change => {
                let Some(tx) = r.tx.as_mut() else {
                    return Err(CdcError::Decode {
                        at: at(),
                        message: "change outside a transaction".into(),
                    });
                };
                let rels: &[u32] = match &change {
                    Message::Insert { rel, .. }
                    | Message::Update { rel, .. }
                    | Message::Delete { rel, .. } => std::slice::from_ref(rel),
                    Message::Truncate { rels, .. } => rels,
                    _ => &[],
                };
                for &rel_oid in rels {
                    let (pos_in_tx, pos) = tx.next_pos();
                    if self.inner.tracker.lock().seen(&pos) {
                        continue;
                    }
                    let Some(rel) = r.relations.iter().find(|r| r.rel.oid == rel_oid) else {
                        return Err(CdcError::Decode {
                            at: at(),
                            message: format!("change to relation {rel_oid} before its description"),
                        });
                    };
                    let env = if tx.skip {
                        None
                    } else {
                        self.change_envelope(rel, &change, tx, pos_in_tx, row_lsn)?
                    };
                    r.fresh = true;
                    let mut t = self.inner.tracker.lock();
                    match env {
                        Some(env) => {
                            let (ticket, deliveries) = t.push(pos, false);
                            out.push(Staged::Done(PgDelivery {
                                env,
                                ticket,
                                deliveries,
                                tracker: self.inner.tracker.clone(),
                            }));
                        }
                        // Nothing to hand out (a snapshot row, an outbox delete): confirmed in passing.
                        None => {
                            t.push(pos, true);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Positions, tracks and stages a row change of `rel` (not the outbox).
    fn stage(
        &self,
        r: &mut Reader,
        row_lsn: u64,
        data: &Bytes,
        rel: Arc<Rel>,
        op: Op,
        out: &mut Vec<Staged>,
    ) -> Result<(), CdcError> {
        let Some(tx) = r.tx.as_mut() else {
            return Err(CdcError::Decode {
                at: lsn_text(row_lsn),
                message: "change outside a transaction".into(),
            });
        };
        let (pos_in_tx, pos) = tx.next_pos();
        let mut t = self.inner.tracker.lock();
        if t.seen(&pos) {
            return Ok(());
        }
        r.fresh = true;
        if tx.skip {
            // Already in the snapshot: confirmed in passing.
            t.push(pos, true);
            return Ok(());
        }
        let (ticket, deliveries) = t.push(pos, false);
        drop(t);
        let meta = tx.template(&rel, op, &self.inner.source);
        out.push(Staged::Todo(Todo {
            rel,
            meta,
            commit: tx.commit,
            text: tx.text.clone(),
            pos: pos_in_tx,
            row_lsn,
            data: data.clone(),
            ticket,
            deliveries,
        }));
        Ok(())
    }

    fn is_outbox(&self, rel: &Relation) -> bool {
        self.inner
            .config
            .outbox
            .as_ref()
            .is_some_and(|o| o.schema == rel.schema && o.table == rel.name)
    }

    /// The envelope of a change built on the reader's side: the outbox's, a truncate's.
    fn change_envelope(
        &self,
        described: &Rel,
        change: &Message<'_>,
        tx: &mut Tx,
        pos: u32,
        row_lsn: u64,
    ) -> Result<Option<Envelope<Change>>, CdcError> {
        let rel = &described.rel;
        if self.is_outbox(rel) {
            let Message::Insert { new, .. } = change else {
                return Ok(None);
            };
            return outbox_envelope(rel, new, &self.inner.limits)
                .map(Some)
                .map_err(|message| CdcError::Decode {
                    at: lsn_text(row_lsn),
                    message,
                });
        }
        let Message::Truncate {
            cascade,
            restart_identity,
            ..
        } = change
        else {
            // Row changes of captured tables are staged (`stage`): nothing else comes here.
            return Err(CdcError::Decode {
                at: lsn_text(row_lsn),
                message: "a row change that was not staged".into(),
            });
        };
        let shape = Shape::truncate(*cascade, *restart_identity);
        let (payload, entity) =
            build::payload(described, &shape, &[], &[], &tx.text, pos, &mut tx.writer);
        let meta = tx.template(described, shape.op, &self.inner.source);
        Ok(Some(build::finish(
            meta,
            payload,
            entity,
            self.inner.salt,
            tx.commit,
            pos,
            row_lsn,
        )))
    }

    /// A fetch's staged deliveries with their envelopes built: a large batch in two halves,
    /// one in a task on another worker (on a multi-threaded runtime).
    async fn finish(&self, mut staged: Vec<Staged>) -> Result<Vec<PgDelivery>, CdcError> {
        let tracker = &self.inner.tracker;
        let salt = self.inner.salt;
        let todo = staged
            .iter()
            .filter(|s| matches!(s, Staged::Todo(_)))
            .count();
        let parallel = todo >= PARALLEL_BUILD
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let all = staged.len();
        if !parallel {
            return build_all(staged, salt, tracker, all);
        }
        let second = staged.split_off(all / 2);
        let theirs = tracker.clone();
        let task = tokio::spawn(async move { build_all(second, salt, &theirs, 0) });
        let mut out = build_all(staged, salt, tracker, all)?;
        out.extend(
            task.await
                .map_err(|e| CdcError::database("build the envelopes", e))??,
        );
        Ok(out)
    }

    async fn fetch_staged(&self, max: usize, wait: Duration) -> Result<Vec<Staged>, CdcError> {
        let deadline = Instant::now() + wait;
        let max = max.max(1);
        let mut r = self.inner.reader.lock().await;
        let rewind = self.inner.tracker.lock().take_rewind();
        if let Some(at) = rewind {
            r.stream = None;
            r.repl = None;
            r.pending.clear();
            r.tx = None;
            r.idle_since = None;
            r.caught_up = None;
            if let Some(s) = r.snapshot.as_mut() {
                s.rewind();
            }
            let now = Instant::now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
        }
        self.flush_locked(&mut r, false).await?;
        let mut out = Vec::with_capacity(max.min(1024));
        if self.inner.config.snapshot && !r.stored.snapshot_done {
            let done = self.snapshot_step(&mut r, max, &mut out).await?;
            if !done || !out.is_empty() {
                return Ok(out);
            }
        }
        if self.inner.config.transport == PgTransport::Replication {
            return self.fetch_streaming(&mut r, max, deadline, out).await;
        }
        loop {
            if r.stream.is_none() {
                if let Some(idle) = r.idle_since {
                    let next = idle + self.inner.config.poll;
                    let now = Instant::now();
                    if next > now {
                        if !out.is_empty() || deadline <= now {
                            return Ok(out);
                        }
                        tokio::time::sleep((next.min(deadline)) - now).await;
                        if next > deadline {
                            return Ok(out);
                        }
                    }
                }
                self.flush_locked(&mut r, false).await?;
                self.peek(&mut r).await?;
            }
            let next = r.stream.as_mut().expect("peeked above").next().await;
            match next {
                Some(Ok((lsn, data))) => {
                    r.rows += 1;
                    self.decode_row(&mut r, lsn, &data, &mut out)?;
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                Some(Err(e)) => {
                    r.stream = None;
                    return Err(e);
                }
                None => {
                    r.stream = None;
                    // A peek stops only after a whole transaction, so a full page may still have
                    // read everything: it did if its last commit reached the WAL's end.
                    let more =
                        r.rows >= u64::from(self.inner.config.page) && r.last_end < r.peek_upto;
                    if !more {
                        r.caught_up = Some(r.peek_upto);
                    }
                    self.flush_locked(&mut r, false).await?;
                    // Wait `poll` before the next peek only if this one brought nothing new, or
                    // what it brought is not confirmed yet (a peek now would return it again).
                    // A peek whose changes were all confirmed by the time its end was read
                    // (a big transaction read over many fetches) is followed at once.
                    let passed = r.last_end > 0 && r.advanced >= r.last_end;
                    r.idle_since = if more || (r.fresh && passed) {
                        None
                    } else {
                        Some(Instant::now())
                    };
                    if !out.is_empty() || Instant::now() >= deadline {
                        return Ok(out);
                    }
                }
            }
        }
    }
}

impl PgCdc {
    /// [`fetch`](Source::fetch) over the replication connection: started from the slot's
    /// confirmed position when there is none (at first, after a nak, after an error).
    async fn fetch_streaming(
        &self,
        r: &mut Reader,
        max: usize,
        deadline: Instant,
        mut out: Vec<Staged>,
    ) -> Result<Vec<Staged>, CdcError> {
        loop {
            if r.repl.is_none() {
                let c = &self.inner.config;
                r.pending.clear();
                r.tx = None;
                r.caught_up = None;
                r.repl = Some(Replication::start(&c.url, &c.slot, c.publication_name(), 0).await?);
            }
            while let Some(item) = r.pending.pop_front() {
                match item {
                    Item::Data { lsn, data } => {
                        if let Err(e) = self.decode_row(r, lsn, &data, &mut out) {
                            r.repl = None;
                            return Err(e);
                        }
                    }
                    // Everything up to `end` was sent: once what came before is confirmed,
                    // the slot may pass it (WAL of other tables, empty transactions).
                    Item::Sent { end } if r.tx.is_none() => r.caught_up = Some(end),
                    Item::Sent { .. } => {}
                }
                if out.len() >= max {
                    return Ok(out);
                }
            }
            self.flush_locked(r, false).await?;
            let repl = r.repl.as_mut().expect("started above");
            let next = if out.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(out);
                }
                match tokio::time::timeout(deadline - now, repl.recv()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(out),
                }
            } else {
                // Something to hand out: take more only if it is here already.
                match repl.try_recv() {
                    Some(next) => Some(next),
                    None => return Ok(out),
                }
            };
            match next {
                Some(Ok(batch)) => r.pending = VecDeque::from(batch),
                Some(Err(e)) => {
                    r.repl = None;
                    return Err(e);
                }
                None => {
                    r.repl = None;
                    return Err(CdcError::database(
                        "read the replication slot",
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    ));
                }
            }
        }
    }

    /// Hands out up to `max` snapshot rows; true once every row was handed out.
    async fn snapshot_step(
        &self,
        r: &mut Reader,
        max: usize,
        out: &mut Vec<Staged>,
    ) -> Result<bool, CdcError> {
        let c = &self.inner.config;
        if r.snapshot.is_none() {
            let s = Snapshot::begin(&c.url, &c.slot).await?;
            r.stored.filter = Some(s.filter.clone());
            r.snapshot = Some(s);
        }
        let s = r.snapshot.as_mut().expect("made above");
        if s.read_all {
            return Ok(true);
        }
        let tables: Vec<&TableName> = c
            .tables
            .iter()
            .filter(|t| c.outbox.as_ref() != Some(*t))
            .collect();
        while out.len() < max {
            let Some(rows) = s.next(&tables, max - out.len(), &c.slot).await? else {
                self.inner.tracker.lock().push_mark(SNAPSHOT_DONE);
                s.read_all = true;
                return Ok(true);
            };
            for row in rows {
                let pos = PgPos::Snapshot(row.n);
                if self.inner.tracker.lock().seen(&pos) {
                    continue;
                }
                let t = tables[row.table];
                let key_text = Value::Object(row.key.clone()).to_string();
                let a = fnv64(&[t.schema.as_bytes(), t.table.as_bytes(), key_text.as_bytes()]);
                let env = envelope(
                    Parts {
                        op: Op::Read,
                        schema: &t.schema,
                        table: &t.table,
                        key: row.key,
                        new: Some(row.new),
                        old: None,
                        extra: vec![("snapshot", Value::from(s.filter.xmax))],
                        id: change_id(IdKind::PgSnapshot, &c.slot, a, s.filter.xmax as u32),
                        version: None,
                        time: None,
                        headers: vec![],
                        names: None,
                    },
                    &self.inner.source,
                );
                let (ticket, deliveries) = self.inner.tracker.lock().push(pos, false);
                out.push(Staged::Done(PgDelivery {
                    env,
                    ticket,
                    deliveries,
                    tracker: self.inner.tracker.clone(),
                }));
            }
        }
        Ok(false)
    }
}

/// An outbox row's `envelope` column (bytea, hex text form) as the envelope it holds.
fn outbox_envelope(
    rel: &Relation,
    new: &[Datum<'_>],
    limits: &Limits,
) -> Result<Envelope<Change>, String> {
    let i = rel
        .columns
        .iter()
        .position(|c| c.name == "envelope")
        .ok_or_else(|| {
            format!(
                "outbox table {}.{} has no envelope column",
                rel.schema, rel.name
            )
        })?;
    let Some(Datum::Text(hex)) = new.get(i) else {
        return Err("outbox row without an envelope".into());
    };
    let hex = hex.strip_prefix("\\x").ok_or("envelope is not bytea")?;
    let bytes = decode_hex(hex).ok_or("envelope is not hex")?;
    let env = Binary::decode(&bytes, limits).map_err(|e| e.to_string())?;
    Ok(env.map_payload(Change))
}

impl Source for PgCdc {
    type Payload = Change;
    type Delivery = PgDelivery;
    type Error = CdcError;

    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Takes the batch read ahead during the caller's handling of the last one, if there is
    /// one, else reads; starts reading the next batch in a task; then builds this batch's
    /// envelopes (a large batch in two halves at once), so reading, building and the
    /// caller's work overlap. A batch read ahead is dropped if a nak came meanwhile (its
    /// changes come again after the rewind, in order).
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<PgDelivery>, CdcError> {
        let ahead = self.inner.ahead.lock().take();
        let mut staged = Vec::new();
        if let Some(task) = ahead {
            let batch = task
                .await
                .map_err(|e| CdcError::database("reading ahead", e))??;
            if !self.inner.tracker.lock().rewind_pending() {
                staged = batch;
            }
        }
        if staged.is_empty() {
            staged = self.fetch_staged(max, wait).await?;
        }
        if !staged.is_empty() {
            // The next batch is read while this one's envelopes are built and handled.
            let this = self.clone();
            let task = tokio::spawn(async move { this.fetch_staged(max, Duration::ZERO).await });
            *self.inner.ahead.lock() = Some(task);
        }
        let out = self.finish(staged).await?;
        metrics::counter!("syncbus_cdc_changes_total", "reader" => self.inner.name.clone())
            .increment(out.len() as u64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for v in [0u64, 7, 10, 999, 4_294_967_295, u64::MAX] {
            assert_eq!(Decimal::new(v).as_str(), v.to_string());
        }
    }

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn wal_level_error_says_what_to_change() {
        let e = check_wal_level("replica").unwrap_err();
        assert!(e.to_string().contains("wal_level = logical"), "{e}");
        assert!(check_wal_level("logical").is_ok());
    }
}
