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

mod config;
mod conn;
mod peek;
mod replication;
mod snapshot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use syncbus_core::{Settle, Source};
use syncbus_envelope::{Binary, Bytes, Envelope, Headers, Limits, Metadata, SmolStr, Timestamp};
use syncbus_storage::{Checkpoints, IntoArc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use self::config::{quote, TableName};
pub use self::config::{PgCdcConfig, PgTransport};
use self::conn::{connect, lsn_text, parse_lsn, pg_error};
use self::peek::Peek;
use self::replication::{Item, Replication};
use self::snapshot::{Snapshot, SnapshotFilter};
use crate::change::{
    change_id, change_id_salted, entity_from, envelope, fnv64, reader_salt, Change, IdKind, Op,
    Parts,
};
use crate::error::CdcError;
use crate::pgoutput::{self, Datum, Message, Old, Relation};
use crate::sqlite::decode_hex;
use crate::tracker::{Ticket, Tracker};
use crate::value::{write_json, write_str};
use serde_json::Value;

/// A change's place: snapshot rows first, then the stream by (commit LSN, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PgPos {
    Snapshot(u64),
    Stream { commit: u64, pos: u32, end: u64 },
}

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

/// A relation as the stream described it, with what every change of it needs made once:
/// the key columns' places and the event types and topics.
struct Rel {
    rel: Relation,
    key: Vec<usize>,
    names: [(syncbus_envelope::EventType, Option<syncbus_envelope::Topic>); 4],
    /// Each op's payload up to the key: `{"op":..,"schema":..,"table":..,"key":`.
    heads: [Vec<u8>; 4],
    /// Each column's `"name":`.
    fields: Vec<Vec<u8>>,
}

/// A change's kind, the row its key is read from, the new row, the old row (whole or key only).
type Shape<'a> = (
    Op,
    Option<&'a [Datum<'a>]>,
    Option<&'a [Datum<'a>]>,
    Option<(&'a [Datum<'a>], bool)>,
);

/// The transaction being read.
#[derive(Debug)]
struct Tx {
    commit: u64,
    xid: u32,
    time: Option<Timestamp>,
    pos: u32,
    /// Already in the snapshot: its changes are skipped.
    skip: bool,
    /// The commit LSN as text, and the headers every change of it carries (the same for
    /// all): made once per transaction, not per change.
    commit_text: String,
    headers: Headers,
    /// Per relation and op, the metadata its changes share (type, topic, source, content
    /// type, time, headers): cloned per change, so the rare-field block is built once.
    metas: Vec<((u32, Op), Metadata)>,
    /// The payload is written here, then copied out at its exact length.
    scratch: Vec<u8>,
}

struct Reader {
    client: Client,
    /// The slot functions' peek being read ([`PgTransport::SlotFunctions`]).
    stream: Option<Peek>,
    /// The replication connection ([`PgTransport::Replication`]) and what it handed over
    /// that is not read yet.
    repl: Option<Replication>,
    pending: VecDeque<Item>,
    rows: u64,
    relations: std::collections::HashMap<u32, Rel>,
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
type ReadAhead = tokio::task::JoinHandle<Result<Vec<PgDelivery>, CdcError>>;

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

    /// Turns one row of the stream into deliveries (none for most messages).
    fn decode_row(
        &self,
        r: &mut Reader,
        row_lsn: u64,
        data: &[u8],
        out: &mut Vec<PgDelivery>,
    ) -> Result<(), CdcError> {
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
                let commit_text = lsn_text(final_lsn);
                let mut headers = Headers::new();
                // Valid names, short ASCII values: these never fail.
                let _ = headers.insert("cdclsn", &commit_text);
                let _ = headers.insert("cdcxid", Decimal::new(u64::from(xid)).as_str());
                r.tx = Some(Tx {
                    commit: final_lsn,
                    xid,
                    time: Some(Timestamp::from_unix_nanos(unix_us.saturating_mul(1000))),
                    pos: 0,
                    skip,
                    commit_text,
                    headers,
                    metas: Vec::new(),
                    scratch: Vec::new(),
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
                let rel = self.describe(rel);
                r.relations.insert(rel.rel.oid, rel);
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
                    let pos_in_tx = tx.pos;
                    tx.pos += 1;
                    let pos = PgPos::Stream {
                        commit: tx.commit,
                        pos: pos_in_tx,
                        end: 0,
                    };
                    if self.inner.tracker.lock().seen(&pos) {
                        continue;
                    }
                    let Some(rel) = r.relations.get(&rel_oid) else {
                        return Err(CdcError::Decode {
                            at: at(),
                            message: format!("change to relation {rel_oid} before its description"),
                        });
                    };
                    let env = if tx.skip {
                        None
                    } else {
                        self.change_envelope(rel, &change, tx, pos_in_tx, row_lsn, row_lsn)?
                    };
                    r.fresh = true;
                    let mut t = self.inner.tracker.lock();
                    match env {
                        Some(env) => {
                            let (ticket, deliveries) = t.push(pos, false);
                            out.push(PgDelivery {
                                env,
                                ticket,
                                deliveries,
                                tracker: self.inner.tracker.clone(),
                            });
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

    fn describe(&self, rel: Relation) -> Rel {
        let pk = self
            .inner
            .keys
            .get(&(rel.schema.clone(), rel.name.clone()))
            .filter(|k| !k.is_empty());
        let key = match pk {
            Some(pk) => pk
                .iter()
                .filter_map(|k| rel.columns.iter().position(|c| &c.name == k))
                .collect(),
            None => (0..rel.columns.len())
                .filter(|&i| rel.columns[i].key)
                .collect(),
        };
        let n = |op| crate::change::names(&rel.schema, &rel.name, op);
        let names = [n(Op::Insert), n(Op::Update), n(Op::Delete), n(Op::Truncate)];
        let head = |op: Op| {
            let mut h = Vec::with_capacity(48 + rel.schema.len() + rel.name.len());
            h.extend_from_slice(b"{\"op\":\"");
            h.extend_from_slice(op.as_str().as_bytes());
            h.extend_from_slice(b"\",\"schema\":");
            write_str(&mut h, &rel.schema);
            h.extend_from_slice(b",\"table\":");
            write_str(&mut h, &rel.name);
            h.extend_from_slice(b",\"key\":");
            h
        };
        let heads = [
            head(Op::Insert),
            head(Op::Update),
            head(Op::Delete),
            head(Op::Truncate),
        ];
        let fields = rel
            .columns
            .iter()
            .map(|c| {
                let mut f = Vec::with_capacity(c.name.len() + 3);
                write_str(&mut f, &c.name);
                f.push(b':');
                f
            })
            .collect();
        Rel {
            rel,
            key,
            names,
            heads,
            fields,
        }
    }

    fn change_envelope(
        &self,
        described: &Rel,
        change: &Message<'_>,
        tx: &mut Tx,
        pos: u32,
        row_lsn: u64,
        lsn: u64,
    ) -> Result<Option<Envelope<Change>>, CdcError> {
        let rel = &described.rel;
        let is_outbox = self
            .inner
            .config
            .outbox
            .as_ref()
            .is_some_and(|o| o.schema == rel.schema && o.table == rel.name);
        if is_outbox {
            let Message::Insert { new, .. } = change else {
                return Ok(None);
            };
            return outbox_envelope(rel, new, &self.inner.limits)
                .map(Some)
                .map_err(|message| CdcError::Decode {
                    at: lsn_text(lsn),
                    message,
                });
        }
        let cols = &rel.columns;
        let fields = &described.fields;
        // {"name":value,...} of the columns at `which` (every column when None).
        let write_row = |out: &mut Vec<u8>, t: &[Datum<'_>], which: Option<&[usize]>| {
            out.push(b'{');
            let mut first = true;
            let mut one = |out: &mut Vec<u8>, i: usize| {
                let (Some(c), Some(d), Some(f)) = (cols.get(i), t.get(i), fields.get(i)) else {
                    return;
                };
                if matches!(d, Datum::Unchanged) {
                    return;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(f);
                match d {
                    Datum::Text(s) => write_json(out, c.type_oid, s),
                    _ => out.extend_from_slice(b"null"),
                }
            };
            match which {
                Some(idx) => idx.iter().for_each(|&i| one(out, i)),
                None => (0..t.len()).for_each(|i| one(out, i)),
            }
            out.push(b'}');
        };
        let key_idx = described.key.as_slice();
        let (op, key_t, new_t, old_t): Shape<'_> = match change {
            Message::Insert { new, .. } => (Op::Insert, Some(new), Some(new), None),
            Message::Update { new, old, .. } => (
                Op::Update,
                Some(new),
                Some(new),
                match old {
                    Some(Old::Full(t)) => Some((t.as_slice(), true)),
                    Some(Old::Key(t)) => Some((t.as_slice(), false)),
                    None => None,
                },
            ),
            Message::Delete { old, .. } => match old {
                Old::Full(t) => (Op::Delete, Some(t), None, Some((t.as_slice(), true))),
                Old::Key(t) => (Op::Delete, Some(t), None, Some((t.as_slice(), false))),
            },
            Message::Truncate { .. } => (Op::Truncate, None, None, None),
            _ => return Ok(None),
        };
        // Sized so that the common row needs no reallocation.
        let row_len = |t: Option<&[Datum<'_>]>| {
            t.map_or(4, |t| {
                t.iter()
                    .zip(cols)
                    .map(|(d, c)| match d {
                        Datum::Text(s) => c.name.len() + s.len() + 6,
                        _ => c.name.len() + 8,
                    })
                    .sum::<usize>()
                    + 2
            })
        };
        let mut out = std::mem::take(&mut tx.scratch);
        out.clear();
        out.reserve(
            96 + rel.schema.len()
                + rel.name.len()
                + 2 * row_len(new_t.or(old_t.map(|o| o.0)))
                + row_len(old_t.map(|o| o.0)),
        );
        out.extend_from_slice(&described.heads[op as usize]);
        match key_t {
            Some(t) => write_row(&mut out, t, Some(key_idx)),
            None => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b",\"new\":");
        match new_t {
            Some(t) => write_row(&mut out, t, None),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"old\":");
        match old_t {
            Some((t, true)) => write_row(&mut out, t, None),
            Some((t, false)) => write_row(&mut out, t, Some(key_idx)),
            None => out.extend_from_slice(b"null"),
        }
        if let Message::Truncate {
            cascade,
            restart_identity,
            ..
        } = change
        {
            out.extend_from_slice(
                format!(",\"cascade\":{cascade},\"restart_identity\":{restart_identity}")
                    .as_bytes(),
            );
        }
        let pos_text = Decimal::new(u64::from(pos));
        out.extend_from_slice(b",\"lsn\":\"");
        out.extend_from_slice(tx.commit_text.as_bytes());
        out.extend_from_slice(b"\",\"pos\":");
        out.extend_from_slice(pos_text.as_str().as_bytes());
        out.extend_from_slice(b",\"xid\":");
        out.extend_from_slice(Decimal::new(u64::from(tx.xid)).as_str().as_bytes());
        out.push(b'}');
        let payload = Bytes::copy_from_slice(&out);
        tx.scratch = out;
        let entity = match (op, key_t) {
            (Op::Truncate, _) | (_, None) => None,
            (_, Some(t)) => match key_idx {
                [] => None,
                [i] => match t.get(*i) {
                    Some(Datum::Text(s)) => entity_from(s),
                    _ => None,
                },
                many => {
                    let mut a = vec![b'['];
                    for (n, &i) in many.iter().enumerate() {
                        if n > 0 {
                            a.push(b',');
                        }
                        match (t.get(i), cols.get(i)) {
                            (Some(Datum::Text(s)), Some(c)) => write_json(&mut a, c.type_oid, s),
                            _ => a.extend_from_slice(b"null"),
                        }
                    }
                    a.push(b']');
                    entity_from(&String::from_utf8_lossy(&a))
                }
            },
        };
        let shared = (rel.oid, op);
        let i = match tx.metas.iter().position(|(k, _)| *k == shared) {
            Some(i) => i,
            None => {
                let (ty, topic) = described.names[op as usize].clone();
                let mut m = Metadata::new(ty)
                    .with_source(self.inner.source.clone())
                    .with_content_type("application/json");
                if let Some(topic) = topic {
                    m.set_topic(topic);
                }
                if let Some(t) = tx.time {
                    m.set_time(t);
                }
                m.set_headers(tx.headers.clone());
                tx.metas.push((shared, m));
                tx.metas.len() - 1
            }
        };
        let mut meta = tx.metas[i].1.clone();
        meta.set_id(change_id_salted(
            IdKind::PgStream,
            self.inner.salt,
            tx.commit,
            pos,
        ));
        meta.set_version(Some(row_lsn));
        meta.set_entity_id(entity);
        // Nothing per change goes into the headers: they stay shared by the transaction's
        // changes (a per-change header would copy the metadata's rare-field block).
        Ok(Some(Envelope::new(meta, Change(payload))))
    }

    async fn fetch_inner(&self, max: usize, wait: Duration) -> Result<Vec<PgDelivery>, CdcError> {
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
        mut out: Vec<PgDelivery>,
    ) -> Result<Vec<PgDelivery>, CdcError> {
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
        out: &mut Vec<PgDelivery>,
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
                out.push(PgDelivery {
                    env,
                    ticket,
                    deliveries,
                    tracker: self.inner.tracker.clone(),
                });
            }
        }
        Ok(false)
    }
}

/// A number's decimal digits, written without a formatter or an allocation.
struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut v: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
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

    /// Returns the batch read ahead during the caller's handling of the last one, if there
    /// is one, else reads; then starts reading the next batch in a task, so decoding
    /// overlaps the caller's work. A batch read ahead is dropped if a nak came meanwhile
    /// (its changes come again after the rewind, in order).
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<PgDelivery>, CdcError> {
        let ahead = self.inner.ahead.lock().take();
        let mut out = Vec::new();
        if let Some(task) = ahead {
            let batch = task
                .await
                .map_err(|e| CdcError::database("reading ahead", e))??;
            if !self.inner.tracker.lock().rewind_pending() {
                out = batch;
            }
        }
        if out.is_empty() {
            out = self.fetch_inner(max, wait).await?;
        }
        if !out.is_empty() {
            let this = self.clone();
            let task = tokio::spawn(async move { this.fetch_inner(max, Duration::ZERO).await });
            *self.inner.ahead.lock() = Some(task);
        }
        metrics::counter!("syncbus_cdc_changes_total", "reader" => self.inner.name.clone())
            .increment(out.len() as u64);
        Ok(out)
    }
}

/// One change handed out by [`PgCdc`]: settle it with `ack` (or `term`) to let the
/// confirmed position pass it, or `nak` to read it (and everything after it) again.
///
/// # Examples
///
/// ```no_run
/// # async fn f(source: syncbus_cdc::PgCdc) -> Result<(), syncbus_cdc::CdcError> {
/// use std::time::Duration;
/// use syncbus_core::{Settle, Source};
/// for d in source.fetch(100, Duration::from_secs(1)).await? {
///     println!("{}", d.envelope().meta().event_type());
///     d.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub struct PgDelivery {
    env: Envelope<Change>,
    ticket: Ticket,
    deliveries: u32,
    tracker: Arc<Mutex<Tracker<PgPos>>>,
}

impl std::fmt::Debug for PgDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDelivery")
            .field("id", self.env.id())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Settle for PgDelivery {
    type Payload = Change;
    type Error = CdcError;

    fn envelope(&self) -> &Envelope<Change> {
        &self.env
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), CdcError> {
        self.tracker.lock().settle(self.ticket);
        Ok(())
    }

    async fn nak(self, delay: Duration) -> Result<(), CdcError> {
        self.tracker.lock().nak(self.ticket, Instant::now() + delay);
        Ok(())
    }

    async fn term(self) -> Result<(), CdcError> {
        self.tracker.lock().settle(self.ticket);
        Ok(())
    }

    async fn in_progress(&mut self) -> Result<(), CdcError> {
        Ok(())
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
