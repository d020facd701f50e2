//! The initial snapshot, consistent with the slot, with no gap and no overlap.
//!
//! # Method
//!
//! 1. The slot exists first (created by setup, or left by an earlier run); the stream will
//!    start at its confirmed LSN `S` and give every transaction that commits after `S`.
//! 2. Then a `REPEATABLE READ` transaction opens and takes its snapshot `V` with
//!    `pg_current_snapshot()` as its first statement (`xmin:xmax:xip`). Every row is read
//!    inside it, table by table, in primary key order, through a cursor.
//! 3. While streaming, a transaction whose xid `V` sees as committed (`xid < xmin`, or
//!    `xid < xmax` and not in `xip`) is skipped: its effects are in the snapshot already.
//!    The filter is kept in the checkpoint, and dropped once a transaction with
//!    `xid >= xmax` has streamed (it began after `V`, so it commits after every transaction
//!    `V` saw; commit order is stream order).
//!
//! # Proof
//!
//! Take any committed transaction `T` that touched the tables.
//! - `T` committed before `S`: it is not in the stream; it committed before the slot was
//!   made, hence before `V` was taken, so `V` sees it: its rows are in the snapshot. Once.
//! - `T` committed after `S`: it is in the stream. If `V` sees it, its effects are in the
//!   snapshot and the filter skips it in the stream. If `V` does not see it, the snapshot
//!   shows the rows as they were before it, and the stream gives it. Once either way.
//!
//! So every change is in exactly one of the two: no gap, no overlap. The slot does not
//! advance while the snapshot is read (nothing in the stream is confirmed before it), so
//! `S` does not move underneath. A reader killed mid-snapshot takes a new snapshot on
//! restart (rows it had handed out come again, under new ids, with their current values).
//!
//! Xids in the stream are 32 bits; the snapshot's are 64 (`xid8`): a stream xid is widened
//! with the epoch of `xmax`, which is exact within 2^31 transactions of the snapshot.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::Client;

use crate::error::CdcError;
use crate::postgres::config::{quote, TableName};
use crate::postgres::conn::{connect, pg_error};
use crate::value::to_json;

/// The snapshot's visibility: which transactions it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotFilter {
    pub(crate) xmin: u64,
    pub(crate) xmax: u64,
    pub(crate) xip: Vec<u64>,
}

impl SnapshotFilter {
    pub(crate) fn parse(s: &str) -> Option<SnapshotFilter> {
        let mut it = s.split(':');
        let xmin = it.next()?.parse().ok()?;
        let xmax = it.next()?.parse().ok()?;
        let xip = match it.next() {
            Some("") | None => vec![],
            Some(l) => l
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        Some(SnapshotFilter { xmin, xmax, xip })
    }

    fn widen(&self, xid: u32) -> u64 {
        let epoch = self.xmax & !0xffff_ffff;
        let full = epoch | u64::from(xid);
        if full > self.xmax.saturating_add(1 << 31) && full >= 1 << 32 {
            full - (1 << 32)
        } else {
            full
        }
    }

    /// Whether the snapshot saw `xid` committed.
    pub(crate) fn saw(&self, xid: u32) -> bool {
        let x = self.widen(xid);
        x < self.xmin || (x < self.xmax && !self.xip.contains(&x))
    }

    /// Whether `xid` began after the snapshot.
    pub(crate) fn passed(&self, xid: u32) -> bool {
        self.widen(xid) >= self.xmax
    }
}

/// A snapshot being read: its own connection, inside the `REPEATABLE READ` transaction.
pub(crate) struct Snapshot {
    pub(crate) filter: SnapshotFilter,
    client: Client,
    table: usize,
    open: bool,
    next: u64,
    pub(crate) read_all: bool,
    columns: Vec<(String, u32, bool)>,
}

impl Snapshot {
    /// After a nak: read again from the first row (in the same transaction, so the same rows).
    pub(crate) fn rewind(&mut self) {
        self.table = 0;
        self.open = false;
        self.next = 0;
        self.read_all = false;
    }
}

/// One row of the snapshot: which table (index into the tables asked for), its place in
/// the whole snapshot, its key and its columns.
#[derive(Debug)]
pub(super) struct SnapRow {
    pub(super) table: usize,
    pub(super) n: u64,
    pub(super) key: Map<String, Value>,
    pub(super) new: Map<String, Value>,
}

impl Snapshot {
    /// Opens the `REPEATABLE READ` transaction on a connection of its own and takes `V`.
    pub(super) async fn begin(url: &str, slot: &str) -> Result<Snapshot, CdcError> {
        let client = connect(url).await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg_error("begin the snapshot", slot, e))?;
        let text: String = client
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .map_err(|e| pg_error("take the snapshot", slot, e))?
            .get(0);
        let filter = SnapshotFilter::parse(&text)
            .ok_or_else(|| CdcError::Invalid(format!("snapshot {text:?} does not parse")))?;
        tracing::info!(snapshot = %text, "cdc: snapshot taken");
        Ok(Snapshot {
            filter,
            client,
            table: 0,
            open: false,
            next: 0,
            read_all: false,
            columns: vec![],
        })
    }

    /// Up to `max` next rows of `tables`, table by table in key order; `None` once every
    /// table was read.
    pub(super) async fn next(
        &mut self,
        tables: &[&TableName],
        max: usize,
        slot: &str,
    ) -> Result<Option<Vec<SnapRow>>, CdcError> {
        loop {
            let Some(t) = tables.get(self.table) else {
                return Ok(None);
            };
            if !self.open {
                let rows = self
                    .client
                    .query(
                        "SELECT a.attname::text, a.atttypid::int8, coalesce(a.attnum = ANY(i.indkey), false)
                         FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
                         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
                         ORDER BY a.attnum",
                        &[&t.quoted()],
                    )
                    .await
                    .map_err(|e| pg_error("read the table's columns", slot, e))?;
                self.columns = rows
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32, r.get(2)))
                    .collect();
                let cols: Vec<String> = self
                    .columns
                    .iter()
                    .map(|(n, _, _)| format!("{}::text", quote(n)))
                    .collect();
                let mut order: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| c.2)
                    .map(|(n, _, _)| quote(n))
                    .collect();
                if order.is_empty() {
                    order.push("ctid".into());
                }
                self.client
                    .batch_execute(&format!(
                        "CLOSE ALL; DECLARE syncbus_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {} ORDER BY {}",
                        cols.join(", "),
                        t.quoted(),
                        order.join(", ")
                    ))
                    .await
                    .map_err(|e| pg_error("open the snapshot cursor", slot, e))?;
                self.open = true;
            }
            let n = max.clamp(1, 1000);
            let rows = self
                .client
                .query(&format!("FETCH {n} FROM syncbus_snapshot"), &[])
                .await
                .map_err(|e| pg_error("read the snapshot", slot, e))?;
            if rows.is_empty() {
                self.table += 1;
                self.open = false;
                continue;
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut new = Map::new();
                let mut key = Map::new();
                for (i, (name, oid, is_key)) in self.columns.iter().enumerate() {
                    let v = match row.get::<_, Option<&str>>(i) {
                        Some(text) => to_json(*oid, text),
                        None => Value::Null,
                    };
                    if *is_key {
                        key.insert(name.clone(), v.clone());
                    }
                    new.insert(name.clone(), v);
                }
                out.push(SnapRow {
                    table: self.table,
                    n: self.next,
                    key,
                    new,
                });
                self.next += 1;
            }
            return Ok(Some(out));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::postgres::snapshot::SnapshotFilter;

    #[test]
    fn visibility() {
        let f = SnapshotFilter::parse("100:110:103,105").unwrap();
        assert!(f.saw(99) && f.saw(104) && f.saw(109));
        assert!(!f.saw(103) && !f.saw(105) && !f.saw(110) && !f.saw(200));
        assert!(f.passed(110) && !f.passed(109));
        assert_eq!(
            SnapshotFilter::parse("5:5:").unwrap().xip,
            Vec::<u64>::new()
        );
        assert!(SnapshotFilter::parse("x").is_none());
        // across an epoch: xmax in epoch 1, an xid just below the wrap is epoch 0
        let f = SnapshotFilter::parse("4294967290:4294967300:").unwrap();
        assert!(f.saw(4294967291));
        assert!(f.saw(2)); // 2^32 + 2 < xmax
        assert!(!f.saw(10));
    }
}
