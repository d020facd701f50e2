//! Building a change's envelope from its pgoutput message: the payload written as JSON
//! bytes, the entity id from the key, the metadata from the transaction's template.
//!
//! The reader's stream is read in order under its lock (positions, transactions, the
//! tracker), but a change's envelope needs only its message, its relation and its
//! transaction's template. So the reader stages each row change as a [`Todo`] and builds the
//! envelopes after, outside the lock, a large batch in two halves on two workers.

use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;
use syncbus_envelope::{Bytes, EntityId, Envelope, EventType, Metadata, SmolStr, Topic};

use super::delivery::{PgDelivery, PgPos};
use crate::change::{change_id_salted, entity_from, names, Change, IdKind, Op};
use crate::error::CdcError;
use crate::pgoutput::{self, Relation, RowChange, Val};
use crate::tracker::{Ticket, Tracker};
use crate::value::{write_json_bytes, write_str};

/// A relation as the stream described it, with what every change of it needs made once:
/// the key columns' places and the event types and topics.
#[derive(Debug)]
pub(super) struct Rel {
    pub(super) rel: Relation,
    key: Vec<usize>,
    names: [(EventType, Option<Topic>); 4],
    /// Each op's payload up to the key: `{"op":..,"schema":..,"table":..,"key":`.
    heads: [Vec<u8>; 4],
    /// Each column's `"name":`.
    fields: Vec<Vec<u8>>,
}

impl Rel {
    /// `rel` with its key: the table's primary key columns where known (`pk`), else the
    /// columns the stream flags as key.
    pub(super) fn new(rel: Relation, pk: Option<&[String]>) -> Rel {
        let key = match pk.filter(|k| !k.is_empty()) {
            Some(pk) => pk
                .iter()
                .filter_map(|k| rel.columns.iter().position(|c| &c.name == k))
                .collect(),
            None => (0..rel.columns.len())
                .filter(|&i| rel.columns[i].key)
                .collect(),
        };
        let n = |op| names(&rel.schema, &rel.name, op);
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

    /// The metadata every change of `op` on this relation in one transaction shares, made
    /// once per transaction and cloned per change (so the rare-field block is built once).
    pub(super) fn template(
        &self,
        op: Op,
        source: &SmolStr,
        time: Option<syncbus_envelope::Timestamp>,
        headers: &syncbus_envelope::Headers,
    ) -> Metadata {
        let (ty, topic) = self.names[op as usize].clone();
        let mut m = Metadata::new(ty)
            .with_source(source.clone())
            .with_content_type("application/json");
        if let Some(topic) = topic {
            m.set_topic(topic);
        }
        if let Some(t) = time {
            m.set_time(t);
        }
        m.set_headers(headers.clone());
        m
    }
}

/// How many bytes of payloads share one allocation.
const CHUNK: usize = 16 * 1024;

/// Where payloads are written: a scratch buffer, then copied into a shared chunk, so a batch
/// of changes makes one allocation per 16 KiB of payloads instead of one per change. (A
/// payload kept keeps its chunk, at most 16 KiB, alive.)
#[derive(Debug, Default)]
pub(super) struct Writer {
    scratch: Vec<u8>,
    chunk: BytesMut,
}

impl Writer {
    /// The scratch buffer's bytes as a payload.
    fn finish(&mut self) -> Bytes {
        let n = self.scratch.len();
        if self.chunk.capacity() - self.chunk.len() < n {
            self.chunk = BytesMut::with_capacity(CHUNK.max(n));
        }
        self.chunk.extend_from_slice(&self.scratch);
        self.chunk.split().freeze()
    }
}

/// The payload's end, the same for every change of a transaction but for its position:
/// `,"lsn":"<commit>","pos":` and `,"xid":<xid>}`, written once per transaction.
#[derive(Debug)]
pub(super) struct TxText {
    lsn: Vec<u8>,
    xid: Vec<u8>,
}

impl TxText {
    pub(super) fn new(commit: u64, xid: u32) -> TxText {
        let mut lsn = b",\"lsn\":\"".to_vec();
        write_lsn(&mut lsn, commit);
        lsn.extend_from_slice(b"\",\"pos\":");
        let mut x = b",\"xid\":".to_vec();
        write_decimal(&mut x, u64::from(xid));
        x.push(b'}');
        TxText { lsn, xid: x }
    }
}

/// A change staged by the reader: positioned and tracked, its envelope still to be built.
pub(super) struct Todo {
    pub(super) rel: Arc<Rel>,
    /// The transaction's template for the change's op on its relation.
    pub(super) meta: Metadata,
    pub(super) commit: u64,
    pub(super) text: Arc<TxText>,
    pub(super) pos: u32,
    pub(super) row_lsn: u64,
    /// The pgoutput message.
    pub(super) data: Bytes,
    pub(super) ticket: Ticket,
    pub(super) deliveries: u32,
}

/// What a fetch hands back before its envelopes are built: in the stream's order.
pub(super) enum Staged {
    Done(PgDelivery),
    Todo(Todo),
}

/// Builds the staged envelopes of `staged`, in order.
/// `capacity`: what the result will hold, with what is appended to it after.
pub(super) fn build_all(
    staged: Vec<Staged>,
    salt: u32,
    tracker: &Arc<parking_lot::Mutex<Tracker<PgPos>>>,
    capacity: usize,
) -> Result<Vec<PgDelivery>, CdcError> {
    let mut w = Writer::default();
    let mut vals = Vec::new();
    let mut out = Vec::with_capacity(capacity.max(staged.len()));
    for s in staged {
        out.push(match s {
            Staged::Done(d) => d,
            Staged::Todo(t) => {
                let (ticket, deliveries) = (t.ticket, t.deliveries);
                PgDelivery {
                    env: build(t, salt, &mut w, &mut vals)?,
                    ticket,
                    deliveries,
                    tracker: tracker.clone(),
                }
            }
        });
    }
    Ok(out)
}

/// The envelope of a staged change.
fn build(
    t: Todo,
    salt: u32,
    w: &mut Writer,
    vals: &mut Vec<Val>,
) -> Result<Envelope<Change>, CdcError> {
    vals.clear();
    let row = pgoutput::read_row(&t.data, vals).map_err(|e| CdcError::Decode {
        at: super::conn::lsn_text(t.row_lsn),
        message: e.0,
    })?;
    let shape = Shape::of(&row);
    let (payload, entity) = payload(&t.rel, &shape, &t.data, vals, &t.text, t.pos, w);
    Ok(finish(
        t.meta, payload, entity, salt, t.commit, t.pos, t.row_lsn,
    ))
}

/// The envelope from its template, payload and entity id.
pub(super) fn finish(
    mut meta: Metadata,
    payload: Bytes,
    entity: Option<EntityId>,
    salt: u32,
    commit: u64,
    pos: u32,
    row_lsn: u64,
) -> Envelope<Change> {
    meta.set_id(change_id_salted(IdKind::PgStream, salt, commit, pos));
    meta.set_version(Some(row_lsn));
    meta.set_entity_id(entity);
    // Nothing per change goes into the headers: they stay shared by the transaction's
    // changes (a per-change header would copy the metadata's rare-field block).
    Envelope::new(meta, Change(payload))
}

/// What a change's payload is made of: its kind, and the ranges of its values holding the
/// row its key is read from, the new row and the old row (whole or key only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shape {
    pub(super) op: Op,
    key: Option<Range<usize>>,
    new: Option<Range<usize>>,
    old: Option<(Range<usize>, bool)>,
    /// A truncate's `cascade` and `restart_identity`.
    truncate: Option<(bool, bool)>,
}

impl Shape {
    fn of(row: &RowChange) -> Shape {
        let op = match row.tag {
            b'I' => Op::Insert,
            b'U' => Op::Update,
            _ => Op::Delete,
        };
        Shape {
            op,
            key: row.new.clone().or_else(|| row.old.clone().map(|o| o.0)),
            new: row.new.clone(),
            old: row.old.clone(),
            truncate: None,
        }
    }

    /// A truncate: no rows.
    pub(super) fn truncate(cascade: bool, restart_identity: bool) -> Shape {
        Shape {
            op: Op::Truncate,
            key: None,
            new: None,
            old: None,
            truncate: Some((cascade, restart_identity)),
        }
    }
}

/// A change's payload (see [`Change`]) and entity id, from its shape and its values in
/// `msg`.
pub(super) fn payload(
    described: &Rel,
    shape: &Shape,
    msg: &[u8],
    vals: &[Val],
    text: &TxText,
    pos: u32,
    w: &mut Writer,
) -> (Bytes, Option<EntityId>) {
    let rel = &described.rel;
    let cols = &rel.columns;
    let fields = &described.fields;
    let row = |r: &Option<Range<usize>>| r.clone().and_then(|r| vals.get(r));
    // {"name":value,...} of the columns at `which` (every column when None).
    let write_row = |out: &mut Vec<u8>, t: &[Val], which: Option<&[usize]>| {
        out.push(b'{');
        let mut first = true;
        let mut one = |out: &mut Vec<u8>, i: usize| {
            let (Some(c), Some(v), Some(f)) = (cols.get(i), t.get(i), fields.get(i)) else {
                return;
            };
            if matches!(v, Val::Unchanged) {
                return;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(f);
            match v.text(msg) {
                Some(b) => write_json_bytes(out, c.type_oid, b),
                None => out.extend_from_slice(b"null"),
            }
        };
        match which {
            Some(idx) => idx.iter().for_each(|&i| one(out, i)),
            None => (0..t.len()).for_each(|i| one(out, i)),
        }
        out.push(b'}');
    };
    let key_idx = described.key.as_slice();
    let (key_t, new_t) = (row(&shape.key), row(&shape.new));
    let old_t = shape
        .old
        .clone()
        .and_then(|(r, full)| Some((vals.get(r)?, full)));
    // Sized so that the common row needs no reallocation.
    let row_len = |t: Option<&[Val]>| {
        t.map_or(4, |t| {
            t.iter()
                .zip(cols)
                .map(|(v, c)| match v {
                    Val::Text { len, .. } => c.name.len() + len + 6,
                    _ => c.name.len() + 8,
                })
                .sum::<usize>()
                + 2
        })
    };
    let out = &mut w.scratch;
    out.clear();
    out.reserve(
        96 + rel.schema.len()
            + rel.name.len()
            + 2 * row_len(new_t.or(old_t.map(|o| o.0)))
            + row_len(old_t.map(|o| o.0)),
    );
    out.extend_from_slice(&described.heads[shape.op as usize]);
    match key_t {
        Some(t) => write_row(out, t, Some(key_idx)),
        None => out.extend_from_slice(b"{}"),
    }
    out.extend_from_slice(b",\"new\":");
    match new_t {
        Some(t) => write_row(out, t, None),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"old\":");
    match old_t {
        Some((t, true)) => write_row(out, t, None),
        Some((t, false)) => write_row(out, t, Some(key_idx)),
        None => out.extend_from_slice(b"null"),
    }
    if let Some((cascade, restart_identity)) = shape.truncate {
        out.extend_from_slice(
            format!(",\"cascade\":{cascade},\"restart_identity\":{restart_identity}").as_bytes(),
        );
    }
    out.extend_from_slice(&text.lsn);
    write_decimal(out, u64::from(pos));
    out.extend_from_slice(&text.xid);
    let payload = w.finish();
    let entity = match (shape.op, key_t) {
        (Op::Truncate, _) | (_, None) => None,
        (_, Some(t)) => match key_idx {
            [] => None,
            [i] => t
                .get(*i)
                .and_then(|v| v.text(msg))
                .and_then(|b| match std::str::from_utf8(b) {
                    Ok(s) => entity_from(s),
                    Err(_) => entity_from(&String::from_utf8_lossy(b)),
                }),
            many => {
                let mut a = vec![b'['];
                for (n, &i) in many.iter().enumerate() {
                    if n > 0 {
                        a.push(b',');
                    }
                    match (t.get(i).and_then(|v| v.text(msg)), cols.get(i)) {
                        (Some(b), Some(c)) => write_json_bytes(&mut a, c.type_oid, b),
                        _ => a.extend_from_slice(b"null"),
                    }
                }
                a.push(b']');
                entity_from(&String::from_utf8_lossy(&a))
            }
        },
    };
    (payload, entity)
}

/// A WAL position as PostgreSQL prints it (`16/B374D848`), without a formatter.
fn write_lsn(out: &mut Vec<u8>, lsn: u64) {
    write_hex(out, lsn >> 32);
    out.push(b'/');
    write_hex(out, lsn & 0xffff_ffff);
}

fn write_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut buf = [0u8; 16];
    let mut at = buf.len();
    let mut v = v;
    loop {
        at -= 1;
        buf[at] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A number's decimal digits, written without a formatter or an allocation.
pub(super) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(super) fn new(mut v: u64) -> Decimal {
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

    pub(super) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// A number's decimal digits, without a formatter.
pub(super) fn write_decimal(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(Decimal::new(v).as_str().as_bytes());
}

#[cfg(test)]
mod tests {
    use crate::postgres::build::*;

    #[test]
    fn numbers_are_written_as_printed() {
        for v in [0u64, 7, 10, 4_294_967_295, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for lsn in [0u64, 0x16_B374_D848, 0x1_0000_0000, u64::MAX] {
            let mut out = Vec::new();
            write_lsn(&mut out, lsn);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                crate::postgres::conn::lsn_text(lsn)
            );
        }
    }

    #[test]
    fn payloads_share_chunks_and_stay_whole() {
        let mut w = Writer::default();
        let mut kept = Vec::new();
        for i in 0..2_000u32 {
            w.scratch.clear();
            w.scratch.extend_from_slice(
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).as_bytes(),
            );
            kept.push(w.finish());
        }
        for (i, p) in kept.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(p).unwrap();
            assert_eq!(v["n"], i);
        }
        // one big payload gets a chunk of its own size
        w.scratch = vec![b'7'; 3 * CHUNK];
        assert_eq!(w.finish().len(), 3 * CHUNK);
    }
}
