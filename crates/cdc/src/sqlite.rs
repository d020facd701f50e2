//! The SQLite reader: triggers copy every insert, update and delete of the chosen tables
//! into a change table in the writing transaction, and [`SqliteCdc`] reads that table in
//! order as a [`Source`].
//!
//! Triggers, not update hooks: a hook misses `WITHOUT ROWID` tables and the rows `REPLACE`
//! and a whole-table `DELETE` remove, and fires before the commit (a rolled-back write
//! would be published). A trigger's row commits or rolls back with the write itself.
//!
//! # Order
//!
//! SQLite has one writer at a time and the change table's `seq` is `AUTOINCREMENT`, taken
//! inside the writing transaction: `seq` order is commit order, and a reader never sees a
//! later `seq` before an earlier one commits. One transaction's changes are consecutive.
//!
//! # REPLACE
//!
//! SQLite fires delete triggers for the rows `REPLACE` removes only with
//! `PRAGMA recursive_triggers = ON` on the writing connection. [`SqliteCdc::open`] turns it
//! on for the store's connection; turn it on for any other connection that writes the tables.
//!
//! # Confirming and clean-up
//!
//! As for PostgreSQL: the confirmed `seq` (every change up to it acked or termed) goes to
//! the [`Checkpoints`] store, and then the change rows up to it are deleted (unless
//! [`SqliteCdcConfig::cleanup`] is off). One reader per change table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use syncbus_core::Source;
use syncbus_envelope::{Binary, Envelope, Limits, SmolStr};
use syncbus_storage::{Checkpoints, StoreError};
use syncbus_store::{rusqlite, SqliteStore};

use crate::change::{change_id, envelope, Change, IdKind, Op, Parts};
use crate::delivery::CdcDelivery;
use crate::error::CdcError;
use crate::tracker::Tracker;

fn check_ident(what: &str, s: &str) -> Result<(), CdcError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CdcError::Invalid(format!(
            "{what} {s:?}: letters, digits and _ (not first), at most 64"
        )))
    }
}

/// The SQLite reader's settings.
///
/// # Examples
///
/// ```
/// use syncbus_cdc::SqliteCdcConfig;
///
/// let config = SqliteCdcConfig::new(["orders", "order_lines"])?.name("shop-cdc");
/// assert_eq!(config.change_table_name(), "syncbus_cdc_changes");
/// assert!(SqliteCdcConfig::new(["bad name"]).is_err());
/// # Ok::<(), syncbus_cdc::CdcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteCdcConfig {
    tables: Vec<String>,
    name: String,
    change_table: String,
    poll: Duration,
    page: usize,
    checkpoint_every: Duration,
    cleanup: bool,
    outbox: Option<String>,
}

impl SqliteCdcConfig {
    /// Captures `tables` (of the `main` schema).
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for no table or a name outside letters, digits and `_`.
    ///
    /// # Examples
    ///
    /// See [`SqliteCdcConfig`].
    pub fn new(
        tables: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<SqliteCdcConfig, CdcError> {
        let tables: Vec<String> = tables.into_iter().map(|t| t.as_ref().to_owned()).collect();
        if tables.is_empty() {
            return Err(CdcError::Invalid("no table to capture".into()));
        }
        for t in &tables {
            check_ident("table", t)?;
        }
        Ok(SqliteCdcConfig {
            tables,
            name: "cdc.sqlite".into(),
            change_table: "syncbus_cdc_changes".into(),
            poll: Duration::from_millis(50),
            page: 1000,
            checkpoint_every: Duration::from_millis(100),
            cleanup: true,
            outbox: None,
        })
    }

    /// The checkpoint's (and the source's) name: `cdc.sqlite` by default.
    ///
    /// # Examples
    ///
    /// See [`SqliteCdcConfig`].
    pub fn name(mut self, name: impl Into<String>) -> SqliteCdcConfig {
        self.name = name.into();
        self
    }

    /// The change table (`syncbus_cdc_changes`).
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a name outside letters, digits and `_`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::SqliteCdcConfig::new(["t"])?.change_table("shop_changes")?;
    /// assert_eq!(c.change_table_name(), "shop_changes");
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn change_table(mut self, name: impl Into<String>) -> Result<SqliteCdcConfig, CdcError> {
        let name = name.into();
        check_ident("change table", &name)?;
        self.change_table = name;
        Ok(self)
    }

    /// How long to wait before looking again once there was nothing new (50 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::SqliteCdcConfig::new(["t"])?.poll(std::time::Duration::from_millis(10));
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn poll(mut self, every: Duration) -> SqliteCdcConfig {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How often, at most, the confirmed position is written (100 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::SqliteCdcConfig::new(["t"])?.checkpoint_every(std::time::Duration::ZERO);
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn checkpoint_every(mut self, every: Duration) -> SqliteCdcConfig {
        self.checkpoint_every = every;
        self
    }

    /// Whether change rows are deleted once the checkpoint passed them (on).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::SqliteCdcConfig::new(["t"])?.cleanup(false);
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn cleanup(mut self, on: bool) -> SqliteCdcConfig {
        self.cleanup = on;
        self
    }

    /// Reads `table` (the store's `syncbus_outbox`, or one of that shape: an `envelope`
    /// blob in the binary codec) as an outbox: each insert comes out as the envelope it
    /// holds, with its own id, type, topic and entity id; its deletes (the relay's, a
    /// clean-up's) are skipped.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a malformed name.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::SqliteCdcConfig::new(["orders"])?.outbox("syncbus_outbox")?;
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn outbox(mut self, table: &str) -> Result<SqliteCdcConfig, CdcError> {
        check_ident("table", table)?;
        if !self.tables.iter().any(|t| t == table) {
            self.tables.push(table.to_owned());
        }
        self.outbox = Some(table.to_owned());
        Ok(self)
    }

    /// The change table's name.
    ///
    /// # Examples
    ///
    /// See [`SqliteCdcConfig`].
    pub fn change_table_name(&self) -> &str {
        &self.change_table
    }
}

fn store_err(e: StoreError) -> CdcError {
    CdcError::database("reading the change table", e)
}

/// One table's trigger set; the key columns, in key order.
fn install(
    conn: &rusqlite::Connection,
    change_table: &str,
    table: &str,
) -> Result<Result<Vec<String>, String>, rusqlite::Error> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let cols: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))?
        .collect::<Result<_, _>>()?;
    if cols.is_empty() {
        return Ok(Err(format!("table {table:?} does not exist")));
    }
    let mut keys: Vec<(i64, String)> = cols
        .iter()
        .filter(|c| c.1 > 0)
        .map(|c| (c.1, c.0.clone()))
        .collect();
    keys.sort();
    if keys.is_empty() {
        return Ok(Err(format!("table {table:?} has no primary key: add one")));
    }
    let obj = |row: &str| -> String {
        let parts: Vec<String> = cols
            .iter()
            .map(|(c, _)| {
                let q = c.replace('"', "\"\"");
                let lit = c.replace('\'', "''");
                // A blob is no JSON value (json_object would fail the application's write).
                format!("'{lit}', CASE WHEN typeof({row}.\"{q}\") = 'blob' THEN hex({row}.\"{q}\") ELSE {row}.\"{q}\" END")
            })
            .collect();
        format!("json_object({})", parts.join(", "))
    };
    let (new, old) = (obj("NEW"), obj("OLD"));
    conn.execute_batch(&format!(
        "CREATE TRIGGER IF NOT EXISTS \"syncbus_cdc_{table}_insert\" AFTER INSERT ON \"{table}\" BEGIN
           INSERT INTO \"{change_table}\" (tbl, op, new) VALUES ('{table}', 'insert', {new}); END;
         CREATE TRIGGER IF NOT EXISTS \"syncbus_cdc_{table}_update\" AFTER UPDATE ON \"{table}\" BEGIN
           INSERT INTO \"{change_table}\" (tbl, op, old, new) VALUES ('{table}', 'update', {old}, {new}); END;
         CREATE TRIGGER IF NOT EXISTS \"syncbus_cdc_{table}_delete\" AFTER DELETE ON \"{table}\" BEGIN
           INSERT INTO \"{change_table}\" (tbl, op, old) VALUES ('{table}', 'delete', {old}); END;"
    ))?;
    Ok(Ok(keys.into_iter().map(|k| k.1).collect()))
}

/// seq, table, op, old row, new row
type ChangeRow = (i64, String, String, Option<String>, Option<String>);

struct State {
    cursor: u64,
    written: Option<u64>,
    last_write: Instant,
}

struct Inner {
    store: SqliteStore,
    config: SqliteCdcConfig,
    keys: std::collections::HashMap<String, Vec<String>>,
    tracker: Arc<Mutex<Tracker<u64>>>,
    state: tokio::sync::Mutex<State>,
    limits: Limits,
    source: SmolStr,
}

/// The SQLite change reader: a [`Source`] of [`Change`]s for `Workflow::serve`.
///
/// The SQLite reader: triggers copy every insert, update and delete of the chosen tables
/// into a change table in the writing transaction, and [`SqliteCdc`] reads that table in
/// order as a [`Source`].
///
/// Triggers, not update hooks: a hook misses `WITHOUT ROWID` tables and the rows `REPLACE`
/// and a whole-table `DELETE` remove, and fires before the commit (a rolled-back write
/// would be published). A trigger's row commits or rolls back with the write itself.
///
/// # Order
///
/// SQLite has one writer at a time and the change table's `seq` is `AUTOINCREMENT`, taken
/// inside the writing transaction: `seq` order is commit order, and a reader never sees a
/// later `seq` before an earlier one commits. One transaction's changes are consecutive.
///
/// # REPLACE
///
/// SQLite fires delete triggers for the rows `REPLACE` removes only with
/// `PRAGMA recursive_triggers = ON` on the writing connection. [`SqliteCdc::open`] turns it
/// on for the store's connection; turn it on for any other connection that writes the tables.
///
/// # Confirming and clean-up
///
/// As for PostgreSQL: the confirmed `seq` (every change up to it acked or termed) goes to
/// the [`Checkpoints`] store, and then the change rows up to it are deleted (unless
/// [`SqliteCdcConfig::cleanup`] is off). One reader per change table.
///
/// # Examples
///
/// See the [crate docs](crate).
#[derive(Clone)]
pub struct SqliteCdc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteCdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCdc")
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

impl SqliteCdc {
    /// Creates the change table and the triggers if absent (an existing trigger is kept),
    /// turns on `recursive_triggers` for the store's connection, and reads the checkpoint
    /// from the store itself.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a missing table or one without a primary key,
    /// [`CdcError::Database`] if SQLite fails, [`CdcError::Checkpoint`] if the checkpoint
    /// does not read.
    ///
    /// # Examples
    ///
    /// See the [crate docs](crate).
    pub async fn open(store: SqliteStore, config: SqliteCdcConfig) -> Result<SqliteCdc, CdcError> {
        let c = config.clone();
        let keys = store
            .with_connection(move |conn| {
                conn.execute_batch(&format!(
                    "PRAGMA recursive_triggers = ON;
                     CREATE TABLE IF NOT EXISTS \"{}\" (
                       seq INTEGER PRIMARY KEY AUTOINCREMENT,
                       tbl TEXT NOT NULL,
                       op TEXT NOT NULL,
                       old TEXT,
                       new TEXT
                     );",
                    c.change_table
                ))?;
                let tx = conn.transaction()?;
                let mut keys = std::collections::HashMap::new();
                for t in &c.tables {
                    match install(&tx, &c.change_table, t)? {
                        Ok(k) => {
                            keys.insert(t.clone(), k);
                        }
                        Err(msg) => return Ok(Err(msg)),
                    }
                }
                tx.commit()?;
                Ok(Ok(keys))
            })
            .await
            .map_err(|e| CdcError::database("installing the capture triggers", e))?
            .map_err(CdcError::Invalid)?;
        let confirmed = match store
            .get_str(&config.name)
            .await
            .map_err(CdcError::Checkpoint)?
        {
            Some(s) => Some(s.parse::<u64>().map_err(|e| {
                CdcError::Invalid(format!(
                    "checkpoint {:?} is {s:?}, not a sequence: {e}",
                    config.name
                ))
            })?),
            None => None,
        };
        Ok(SqliteCdc {
            inner: Arc::new(Inner {
                store,
                keys,
                tracker: Arc::new(Mutex::new(Tracker::new(confirmed))),
                state: tokio::sync::Mutex::new(State {
                    cursor: confirmed.unwrap_or(0),
                    written: confirmed,
                    last_write: Instant::now(),
                }),
                limits: Limits::default(),
                source: SmolStr::from(format!("/syncbus/cdc/sqlite/{}", config.name)),
                config,
            }),
        })
    }

    /// Writes the confirmed position now (and cleans up behind it).
    ///
    /// # Errors
    ///
    /// [`CdcError::Checkpoint`] or [`CdcError::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(source: syncbus_cdc::SqliteCdc) -> Result<(), syncbus_cdc::CdcError> {
    /// source.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<(), CdcError> {
        let mut st = self.inner.state.lock().await;
        self.flush_locked(&mut st, true).await
    }

    async fn flush_locked(&self, st: &mut State, force: bool) -> Result<(), CdcError> {
        let confirmed = {
            let mut t = self.inner.tracker.lock();
            t.drain();
            t.confirmed()
        };
        let Some(seq) = confirmed else { return Ok(()) };
        if Some(seq) == st.written
            || !(force || st.last_write.elapsed() >= self.inner.config.checkpoint_every)
        {
            return Ok(());
        }
        self.inner
            .store
            .put_str(&self.inner.config.name, &seq.to_string())
            .await
            .map_err(CdcError::Checkpoint)?;
        st.written = Some(seq);
        st.last_write = Instant::now();
        if self.inner.config.cleanup {
            let sql = format!(
                "DELETE FROM \"{}\" WHERE seq <= ?1",
                self.inner.config.change_table
            );
            self.inner
                .store
                .with_connection(move |c| Ok(c.execute(&sql, [seq as i64])?))
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    fn to_envelope(
        &self,
        seq: u64,
        tbl: &str,
        op: &str,
        old: Option<&str>,
        new: Option<&str>,
    ) -> Result<Option<Envelope<Change>>, CdcError> {
        let bad = |m: String| CdcError::Decode {
            at: format!("seq {seq}"),
            message: m,
        };
        let parse = |s: Option<&str>| -> Result<Option<Map<String, Value>>, CdcError> {
            match s {
                None => Ok(None),
                Some(s) => match serde_json::from_str(s) {
                    Ok(Value::Object(m)) => Ok(Some(m)),
                    _ => Err(bad(format!("row {s:?} is no JSON object"))),
                },
            }
        };
        let (old, new) = (parse(old)?, parse(new)?);
        let op = match op {
            "insert" => Op::Insert,
            "update" => Op::Update,
            "delete" => Op::Delete,
            other => return Err(bad(format!("unknown op {other:?}"))),
        };
        if self.inner.config.outbox.as_deref() == Some(tbl) {
            if op != Op::Insert {
                return Ok(None);
            }
            let hex = new
                .as_ref()
                .and_then(|m| m.get("envelope"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("outbox row without an envelope".into()))?;
            let bytes = decode_hex(hex).ok_or_else(|| bad("envelope is not a blob".into()))?;
            let env = Binary::decode(&bytes, &self.inner.limits).map_err(|e| bad(e.to_string()))?;
            return Ok(Some(env.map_payload(Change)));
        }
        let empty = Vec::new();
        let key_cols = self.inner.keys.get(tbl).unwrap_or(&empty);
        let row = if op == Op::Delete {
            old.as_ref()
        } else {
            new.as_ref()
        };
        let mut key = Map::new();
        if let Some(row) = row {
            for k in key_cols {
                key.insert(k.clone(), row.get(k).cloned().unwrap_or(Value::Null));
            }
        }
        Ok(Some(envelope(
            Parts {
                op,
                schema: "main",
                table: tbl,
                key,
                new,
                old,
                extra: vec![("seq", Value::from(seq))],
                id: change_id(IdKind::Sqlite, &self.inner.config.name, seq, 0),
                version: Some(seq),
                time: None,
                headers: Vec::new(),
                names: None,
            },
            &self.inner.source,
        )))
    }

    async fn fetch_inner(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SqliteDelivery>, CdcError> {
        let deadline = Instant::now() + wait;
        let max = max.clamp(1, self.inner.config.page.max(1) * 16);
        let mut st = self.inner.state.lock().await;
        let rewind = self.inner.tracker.lock().take_rewind();
        if let Some(at) = rewind {
            st.cursor = self.inner.tracker.lock().confirmed().unwrap_or(0);
            let now = Instant::now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
        }
        let mut out = Vec::new();
        loop {
            self.flush_locked(&mut st, false).await?;
            let sql = format!(
                "SELECT seq, tbl, op, old, new FROM \"{}\" WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                self.inner.config.change_table
            );
            let (from, n) = (st.cursor as i64, max as i64);
            let rows: Vec<ChangeRow> = self
                .inner
                .store
                .with_connection(move |c| {
                    let mut s = c.prepare_cached(&sql)?;
                    let rows = s
                        .query_map((from, n), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await
                .map_err(store_err)?;
            for (seq, tbl, op, old, new) in rows {
                let seq = seq as u64;
                st.cursor = seq;
                let env = self.to_envelope(seq, &tbl, &op, old.as_deref(), new.as_deref())?;
                let mut t = self.inner.tracker.lock();
                match env {
                    Some(env) => {
                        let (ticket, deliveries) = t.push(seq, false);
                        out.push(SqliteDelivery {
                            env,
                            ticket,
                            deliveries,
                            tracker: self.inner.tracker.clone(),
                        });
                    }
                    None => {
                        t.push(seq, true);
                    }
                }
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(self.inner.config.poll.min(deadline - now)).await;
        }
    }
}

pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Source for SqliteCdc {
    type Payload = Change;
    type Delivery = SqliteDelivery;
    type Error = CdcError;

    fn name(&self) -> &str {
        &self.inner.config.name
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<SqliteDelivery>, CdcError> {
        self.fetch_inner(max, wait).await
    }
}

/// One change handed out by [`SqliteCdc`] (see [`CdcDelivery`]).
pub type SqliteDelivery = CdcDelivery;
