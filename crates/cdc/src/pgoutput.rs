//! pgoutput, logical replication protocol version 1: the messages a slot's
//! `pg_logical_slot_peek_binary_changes(.., 'proto_version', '1', 'publication_names', ..)`
//! returns, one message per row (PostgreSQL docs, "Logical Replication Message Formats").
//!
//! Every integer is big-endian; strings end with a NUL byte. Column values come in text
//! form (`'t'`), as null (`'n'`) or as "unchanged TOASTed value" (`'u'`, an update that did
//! not touch a large column). Bad input is a [`DecodeError`], never a panic.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// A message that does not parse, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) type_oid: u32,
    pub(crate) key: bool,
}

/// A relation (table) as the stream describes it before its first change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub(crate) oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) replica_identity: u8,
    pub(crate) columns: Vec<Column>,
}

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Datum<'a> {
    Null,
    Unchanged,
    /// Borrowed from the message (copied only where it is not UTF-8).
    Text(Cow<'a, str>),
}

/// A row: one value per column of its relation.
pub(crate) type Tuple<'a> = Vec<Datum<'a>>;

/// The old row an update or a delete carries: the key columns only (`'K'`) or every
/// column (`'O'`, replica identity full).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Old<'a> {
    Key(Tuple<'a>),
    Full(Tuple<'a>),
}

/// One column value read in place ([`read_row`]): where its text is in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Unchanged,
    Text { at: usize, len: usize },
}

impl Val {
    /// The value's text bytes in `msg`, for a text value.
    pub(crate) fn text<'m>(&self, msg: &'m [u8]) -> Option<&'m [u8]> {
        match *self {
            Val::Text { at, len } => msg.get(at..at + len),
            _ => None,
        }
    }
}

/// An insert, update or delete read in place: its rows are ranges of the values
/// [`read_row`] appended, so reading one allocates nothing once the values' vector has grown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowChange {
    /// `b'I'`, `b'U'` or `b'D'`.
    pub(crate) tag: u8,
    pub(crate) rel: u32,
    pub(crate) new: Option<Range<usize>>,
    /// The old row, and whether it is whole (`'O'`) rather than the key columns (`'K'`).
    pub(crate) old: Option<(Range<usize>, bool)>,
}

/// Reads an insert, update or delete message, appending its column values to `vals`.
pub(crate) fn read_row(buf: &[u8], vals: &mut Vec<Val>) -> Result<RowChange, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    let tag = r.u8()?;
    let rel = r.u32()?;
    let mut next = r.u8()?;
    let mut old = None;
    if matches!(tag, b'U' | b'D') {
        match next {
            b'K' | b'O' => {
                old = Some((r.vals(vals)?, next == b'O'));
                if tag == b'U' {
                    next = r.u8()?;
                }
            }
            _ if tag == b'D' => {
                return Err(DecodeError(format!(
                    "expected an old row ('K' or 'O'), found {:?}",
                    next as char
                )))
            }
            _ => {}
        }
    }
    let new = match tag {
        b'I' | b'U' if next == b'N' => Some(r.vals(vals)?),
        b'I' | b'U' => {
            let what = if tag == b'I' { "insert" } else { "update" };
            return Err(DecodeError(format!(
                "{what}: expected 'N', found {:?}",
                next as char
            )));
        }
        b'D' => None,
        other => {
            return Err(DecodeError(format!(
                "not a row change: {:?}",
                other as char
            )))
        }
    };
    Ok(RowChange { tag, rel, new, old })
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Begin {
        final_lsn: u64,
        timestamp: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        timestamp: i64,
    },
    Relation(Relation),
    Insert {
        rel: u32,
        new: Tuple<'a>,
    },
    Update {
        rel: u32,
        old: Option<Old<'a>>,
        new: Tuple<'a>,
    },
    Delete {
        rel: u32,
        old: Old<'a>,
    },
    Truncate {
        rels: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// Origin, Type and logical decoding messages: nothing to publish.
    Other(u8),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.short(n));
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    #[cold]
    fn short(&self, n: usize) -> DecodeError {
        DecodeError(format!(
            "message ends at byte {} but {n} more were expected at byte {}",
            self.buf.len(),
            self.at
        ))
    }
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    #[inline(always)]
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    #[inline(always)]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.buf[self.at..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError(format!(
                "string at byte {} has no terminating NUL",
                self.at
            )));
        };
        let s = String::from_utf8_lossy(&rest[..nul]).into_owned();
        self.at += nul + 1;
        Ok(s)
    }
    /// A row's values, appended to `vals`: their range there.
    fn vals(&mut self, vals: &mut Vec<Val>) -> Result<Range<usize>, DecodeError> {
        let n = self.u16()? as usize;
        let start = vals.len();
        vals.reserve(n.min(1600));
        for _ in 0..n {
            vals.push(match self.u8()? {
                b'n' => Val::Null,
                b'u' => Val::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    let at = self.at;
                    self.take(len)?;
                    Val::Text { at, len }
                }
                // Binary values only come with the `binary` option, which is never asked for.
                other => {
                    return Err(DecodeError(format!(
                        "unknown column value kind {:?} at byte {}",
                        other as char,
                        self.at - 1
                    )))
                }
            });
        }
        Ok(start..vals.len())
    }
}

/// Decodes one message.
pub(crate) fn decode(buf: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    let tag = r.u8()?;
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            timestamp: r.u64()? as i64,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                timestamp: r.u64()? as i64,
            }
        }
        b'R' => {
            let oid = r.u32()?;
            let schema = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.u16()? as usize;
            let mut columns = Vec::with_capacity(n.min(1600));
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.string()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(Column {
                    name,
                    type_oid,
                    key: flags & 1 == 1,
                });
            }
            Message::Relation(Relation {
                oid,
                schema,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' | b'U' | b'D' => {
            let mut vals = Vec::new();
            let row = read_row(buf, &mut vals)?;
            // Valid UTF-8 (the server sends the database encoding, UTF-8 in practice) is
            // borrowed after one check; anything else is replaced.
            let tuple = |range: Range<usize>| -> Tuple<'_> {
                vals[range]
                    .iter()
                    .map(|v| match v {
                        Val::Null => Datum::Null,
                        Val::Unchanged => Datum::Unchanged,
                        text => {
                            let b = text.text(buf).unwrap_or_default();
                            Datum::Text(match std::str::from_utf8(b) {
                                Ok(s) => Cow::Borrowed(s),
                                Err(_) => String::from_utf8_lossy(b),
                            })
                        }
                    })
                    .collect()
            };
            let old = row.old.map(|(range, full)| match full {
                true => Old::Full(tuple(range)),
                false => Old::Key(tuple(range)),
            });
            let rel = row.rel;
            match (row.tag, row.new, old) {
                (b'I', Some(new), _) => Message::Insert {
                    rel,
                    new: tuple(new),
                },
                (b'U', Some(new), old) => Message::Update {
                    rel,
                    old,
                    new: tuple(new),
                },
                (_, _, Some(old)) => Message::Delete { rel, old },
                _ => return Err(DecodeError("a row change without its row".into())),
            }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let options = r.u8()?;
            let mut rels = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                rels.push(r.u32()?);
            }
            Message::Truncate {
                rels,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        b'O' | b'Y' | b'M' => Message::Other(tag),
        other => {
            return Err(DecodeError(format!(
                "unknown message tag {:?}",
                other as char
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(vals: &[Option<&str>]) -> Vec<u8> {
        let mut b = (vals.len() as u16).to_be_bytes().to_vec();
        for v in vals {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn decodes_each_message() {
        let mut b = vec![b'B'];
        b.extend(10u64.to_be_bytes());
        b.extend(5u64.to_be_bytes());
        b.extend(7u32.to_be_bytes());
        assert_eq!(
            decode(&b).unwrap(),
            Message::Begin {
                final_lsn: 10,
                timestamp: 5,
                xid: 7
            }
        );

        let mut b = vec![b'R'];
        b.extend(42u32.to_be_bytes());
        b.extend(b"public\0t\0");
        b.push(b'd');
        b.extend(2u16.to_be_bytes());
        b.push(1);
        b.extend(b"id\0");
        b.extend(23u32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(0);
        b.extend(b"v\0");
        b.extend(25u32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        let Message::Relation(rel) = decode(&b).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!((rel.schema.as_str(), rel.name.as_str()), ("public", "t"));
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut b = vec![b'U'];
        b.extend(42u32.to_be_bytes());
        b.push(b'O');
        b.extend(tuple(&[Some("1"), None]));
        b.push(b'N');
        b.extend(tuple(&[Some("1"), Some("x")]));
        assert_eq!(
            decode(&b).unwrap(),
            Message::Update {
                rel: 42,
                old: Some(Old::Full(vec![Datum::Text("1".into()), Datum::Null])),
                new: vec![Datum::Text("1".into()), Datum::Text("x".into())],
            }
        );
    }

    #[test]
    fn truncated_or_unknown_input_is_an_error() {
        assert!(decode(b"").is_err());
        assert!(decode(b"B\0\0").is_err());
        assert!(decode(b"Z").is_err());
        let mut b = vec![b'I'];
        b.extend(1u32.to_be_bytes());
        b.push(b'N');
        b.extend(1u16.to_be_bytes());
        b.push(b't');
        b.extend(100u32.to_be_bytes());
        b.extend(b"short");
        assert!(decode(&b).is_err());
    }
}
