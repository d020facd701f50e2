//! [`Change`]: one captured row change as a JSON document, and the envelope it travels in.
//!
//! Every change, whatever the database, has the same shape:
//!
//! | attribute | value |
//! | --- | --- |
//! | type | `<schema>.<table>.<insert\|update\|delete\|truncate>` (`read` for a snapshot row; SQLite's schema is `main`) |
//! | topic | the same, where it is a valid topic |
//! | entity id | the primary key: the value for one key column, a JSON array of the values for a composite key |
//! | version | the change's position in the database's change order (PostgreSQL: its WAL position, SQLite: the change table's sequence) |
//! | id | made from the change's position: the same change read twice has the same id, so the dedup layer drops the second |
//! | time | the commit time (PostgreSQL) |
//! | headers | PostgreSQL: `cdclsn` (the commit LSN) and `cdcxid` (the transaction id), the same for every change of a transaction (its position in the transaction is the payload's `pos`) |
//!
//! The payload (content type `application/json`):
//!
//! ```json
//! {"op":"update","schema":"public","table":"orders","key":{"id":7},
//!  "new":{"id":7,"status":"paid"},"old":{"id":7,"status":"open"},
//!  "lsn":"0/1A2B3C8","pos":0,"xid":741}
//! ```
//!
//! `old` is there for updates and deletes as far as the table's replica identity gives it
//! (PostgreSQL: the key columns by default, every column with `REPLICA IDENTITY FULL`;
//! SQLite: always every column), else `null`. An update that left a large (TOASTed) column
//! untouched leaves that column out of `new`.

use serde_json::{Map, Value};
use syncbus_envelope::{
    Bytes, DecodeError, EncodeError, Encoded, EntityId, Envelope, EventId, EventType, Metadata,
    Payload, SmolStr, Timestamp, Topic,
};
use syncbus_workflow::Storable;

/// One captured change: a JSON document, as bytes.
///
/// [`Change`]: one captured row change as a JSON document, and the envelope it travels in.
///
/// Every change, whatever the database, has the same shape:
///
/// | attribute | value |
/// | --- | --- |
/// | type | `<schema>.<table>.<insert\|update\|delete\|truncate>` (`read` for a snapshot row; SQLite's schema is `main`) |
/// | topic | the same, where it is a valid topic |
/// | entity id | the primary key: the value for one key column, a JSON array of the values for a composite key |
/// | version | the change's position in the database's change order (PostgreSQL: its WAL position, SQLite: the change table's sequence) |
/// | id | made from the change's position: the same change read twice has the same id, so the dedup layer drops the second |
/// | time | the commit time (PostgreSQL) |
/// | headers | PostgreSQL: `cdclsn` (the commit LSN) and `cdcxid` (the transaction id), the same for every change of a transaction (its position in the transaction is the payload's `pos`) |
///
/// The payload (content type `application/json`):
///
/// ```json
/// {"op":"update","schema":"public","table":"orders","key":{"id":7},
///  "new":{"id":7,"status":"paid"},"old":{"id":7,"status":"open"},
///  "lsn":"0/1A2B3C8","pos":0,"xid":741}
/// ```
///
/// `old` is there for updates and deletes as far as the table's replica identity gives it
/// (PostgreSQL: the key columns by default, every column with `REPLICA IDENTITY FULL`;
/// SQLite: always every column), else `null`. An update that left a large (TOASTed) column
/// untouched leaves that column out of `new`.
/// The payload type of every CDC source; serve it with `Envelope<Change>` handlers.
///
/// # Examples
///
/// ```
/// use syncbus_cdc::Change;
///
/// let change = Change(br#"{"op":"insert","new":{"id":1}}"#.to_vec().into());
/// assert_eq!(change.json()?["new"]["id"], 1);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change(pub Bytes);

impl Change {
    /// The JSON document's bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let change = syncbus_cdc::Change(syncbus_envelope::Bytes::from_static(b"{}"));
    /// assert_eq!(change.as_bytes(), b"{}");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The document parsed.
    ///
    /// # Errors
    ///
    /// A `serde_json::Error` if the bytes are not JSON (a [`Change`] a source made always is).
    ///
    /// # Examples
    ///
    /// ```
    /// let change = syncbus_cdc::Change(syncbus_envelope::Bytes::from_static(br#"{"op":"delete"}"#));
    /// assert_eq!(change.json()?["op"], "delete");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl Payload for Change {
    type Packed = Envelope<Change>;

    fn pack(envelope: Envelope<Change>, _pristine: bool) -> Envelope<Change> {
        envelope
    }

    fn unpack(packed: Envelope<Change>) -> Envelope<Change> {
        packed
    }

    fn encode_payload(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Ok(
            Encoded::new(self.0.clone()).with_content_type("application/json")
        ))
    }
}

impl Storable for Change {
    fn to_stored(env: &Envelope<Self>) -> Result<Envelope<Bytes>, EncodeError> {
        Ok(env.clone().map_payload(|p| p.0))
    }

    fn from_stored(env: &Envelope<Bytes>) -> Result<Envelope<Self>, DecodeError> {
        Ok(env.clone().map_payload(Change))
    }
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A row inserted.
    Insert,
    /// A row updated.
    Update,
    /// A row deleted.
    Delete,
    /// The table truncated (PostgreSQL; no entity id, no rows).
    Truncate,
    /// A row of the initial snapshot.
    Read,
}

impl Op {
    /// The word in the event type and the payload's `op`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_cdc::Op::Truncate.as_str(), "truncate");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Read => "read",
        }
    }
}

/// Where an id comes from, so two readers' ids never meet.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdKind {
    PgStream = 0,
    PgSnapshot = 1,
    Sqlite = 2,
}

/// A 64-bit FNV-1a hash: stable across builds and processes (ids are made from it).
pub(crate) fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A UUIDv8 (RFC 9562, custom layout) from `a` (64 bits), `b` (32 bits), the kind (2 bits)
/// and 24 bits of the reader's name: the same change read again gets the same id.
pub(crate) fn change_id(kind: IdKind, reader: &str, a: u64, b: u32) -> EventId {
    change_id_salted(kind, reader_salt(reader), a, b)
}

/// The reader's name's 24 bits of an id (hash it once, use it for every change).
pub(crate) fn reader_salt(reader: &str) -> u32 {
    (fnv64(&[reader.as_bytes()]) & 0xff_ffff) as u32
}

/// [`change_id`] with the name hashed beforehand ([`reader_salt`]).
pub(crate) fn change_id_salted(kind: IdKind, salt: u32, a: u64, b: u32) -> EventId {
    let salt = u128::from(salt & 0xff_ffff);
    let a = u128::from(a);
    let v = ((a >> 16) << 80)
        | (0x8 << 76)
        | (((a >> 4) & 0xfff) << 64)
        | (0b10 << 62)
        | ((a & 0xf) << 58)
        | (u128::from(b) << 26)
        | ((kind as u128) << 24)
        | salt;
    EventId::from_u128(v)
}

/// Event type and topic words: printable, dot-free.
fn word(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The entity id of a key: the one value as text, or a JSON array of the values.
pub(crate) fn entity_of(key: &Map<String, Value>) -> Option<EntityId> {
    let text = match key.len() {
        0 => return None,
        1 => match key.values().next()? {
            Value::String(s) => s.clone(),
            Value::Null => return None,
            other => other.to_string(),
        },
        _ => Value::Array(key.values().cloned().collect()).to_string(),
    };
    entity_from(&text)
}

/// Everything an envelope is made of.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub(crate) op: Op,
    pub(crate) schema: &'a str,
    pub(crate) table: &'a str,
    pub(crate) key: Map<String, Value>,
    pub(crate) new: Option<Map<String, Value>>,
    pub(crate) old: Option<Map<String, Value>>,
    /// Extra payload fields (`lsn`, `pos`, `xid`, `seq`, `truncated`, ...).
    pub(crate) extra: Vec<(&'static str, Value)>,
    pub(crate) id: EventId,
    pub(crate) version: Option<u64>,
    pub(crate) time: Option<Timestamp>,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Type and topic made beforehand (else made from schema, table and op).
    pub(crate) names: Option<(EventType, Option<Topic>)>,
}

/// An entity id from its text, or none (counted, logged) if it is no valid entity id.
pub(crate) fn entity_from(text: &str) -> Option<EntityId> {
    match EntityId::new(text) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "cdc: the key is no valid entity id; the change goes out without one");
            metrics::counter!("syncbus_cdc_no_entity_id_total").increment(1);
            None
        }
    }
}

/// The event type and topic of `op` on a table (made once per table and op where it is hot).
pub(crate) fn names(schema: &str, table: &str, op: Op) -> (EventType, Option<Topic>) {
    let name = format!("{}.{}.{}", word(schema), word(table), op.as_str());
    // `word` leaves printable ASCII only, so this never fails; the fallback keeps it total.
    let ty = EventType::new(&name).unwrap_or_else(|_| EventType::from_static("cdc.change"));
    (ty, Topic::new(&name).ok())
}

/// The envelope of a change.
pub(crate) fn envelope(p: Parts<'_>, source: &SmolStr) -> Envelope<Change> {
    let (ty, topic) = match p.names {
        Some(n) => n,
        None => names(p.schema, p.table, p.op),
    };
    let mut meta = Metadata::new(ty)
        .with_id(p.id)
        .with_source(source.clone())
        .with_content_type("application/json")
        .with_version(p.version);
    if let Some(topic) = topic {
        meta.set_topic(topic);
    }
    meta.set_entity_id(if p.op == Op::Truncate {
        None
    } else {
        entity_of(&p.key)
    });
    if let Some(t) = p.time {
        meta.set_time(t);
    }
    for (k, v) in &p.headers {
        let _ = meta.headers_mut().insert(k, v);
    }
    let mut doc = Map::new();
    doc.insert("op".into(), Value::from(p.op.as_str()));
    doc.insert("schema".into(), Value::from(p.schema));
    doc.insert("table".into(), Value::from(p.table));
    doc.insert("key".into(), Value::Object(p.key));
    doc.insert("new".into(), p.new.map_or(Value::Null, Value::Object));
    doc.insert("old".into(), p.old.map_or(Value::Null, Value::Object));
    for (k, v) in p.extra {
        doc.insert(k.into(), v);
    }
    let bytes = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    Envelope::new(meta, Change(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_every_part_and_repeat() {
        let a = change_id(IdKind::PgStream, "s", 0x1234_5678_9abc_def0, 7);
        assert_eq!(
            a,
            change_id(IdKind::PgStream, "s", 0x1234_5678_9abc_def0, 7)
        );
        assert_ne!(
            a,
            change_id(IdKind::PgStream, "s", 0x1234_5678_9abc_def1, 7)
        );
        assert_ne!(
            a,
            change_id(IdKind::PgStream, "s", 0x1234_5678_9abc_def0, 8)
        );
        assert_ne!(
            a,
            change_id(IdKind::PgSnapshot, "s", 0x1234_5678_9abc_def0, 7)
        );
        assert_ne!(
            a,
            change_id(IdKind::PgStream, "t", 0x1234_5678_9abc_def0, 7)
        );
        assert!(a.to_string().as_bytes()[14] == b'8', "{a}");
    }

    #[test]
    fn entity_ids() {
        let mut k = Map::new();
        k.insert("id".into(), Value::from(7));
        assert_eq!(entity_of(&k).unwrap().as_str(), "7");
        k.insert("region".into(), Value::from("eu"));
        assert_eq!(entity_of(&k).unwrap().as_str(), r#"[7,"eu"]"#);
        assert!(entity_of(&Map::new()).is_none());
    }
}
