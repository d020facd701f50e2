//! The slot functions' rows: `pg_logical_slot_peek_binary_changes` read as binary `COPY`
//! (`lsn pg_lsn, data bytea`), so each change's bytes are a slice of what the server sent,
//! with no per-row parsing or allocation by the driver (PostgreSQL docs, "COPY", binary
//! format: a signature and header, then per row a 16-bit field count and, per field, a 32-bit
//! length and the value; a count of -1 ends the data).

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio_postgres::{Client, CopyOutStream};

use super::conn::pg_error;
use crate::error::CdcError;

/// What every binary `COPY` starts with.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Splits binary `COPY` data of `(pg_lsn, bytea)` rows, in whatever chunks it comes, into
/// rows. Chunks normally hold whole rows (the server sends one message per row); a row split
/// over chunks is joined.
#[derive(Debug, Default)]
pub(super) struct Rows {
    rest: Bytes,
    header_read: bool,
    ended: bool,
}

impl Rows {
    /// Adds the next chunk of the copy data.
    pub(super) fn push(&mut self, chunk: Bytes) {
        if self.rest.is_empty() {
            self.rest = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.rest.len() + chunk.len());
            joined.extend_from_slice(&self.rest);
            joined.extend_from_slice(&chunk);
            self.rest = joined.freeze();
        }
    }

    /// Whether the end-of-data marker was read.
    pub(super) fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a row or the header was started but not finished.
    pub(super) fn partial(&self) -> bool {
        !self.rest.is_empty()
    }

    /// The next whole row as (WAL position, message), `Ok(None)` if more data is needed or
    /// the data ended.
    pub(super) fn next_row(&mut self) -> Result<Option<(u64, Bytes)>, String> {
        if self.ended {
            return Ok(None);
        }
        if !self.header_read {
            // signature, flags (32 bits), header extension length (32 bits), extension
            if self.rest.len() < SIGNATURE.len() + 8 {
                return Ok(None);
            }
            if &self.rest[..SIGNATURE.len()] != SIGNATURE {
                return Err("the copy data does not start with the binary signature".into());
            }
            let ext = be32(&self.rest[SIGNATURE.len() + 4..]) as usize;
            let len = SIGNATURE.len() + 8 + ext;
            if self.rest.len() < len {
                return Ok(None);
            }
            self.rest.advance(len);
            self.header_read = true;
        }
        let b = &self.rest[..];
        if b.len() < 2 {
            return Ok(None);
        }
        match i16::from_be_bytes([b[0], b[1]]) {
            -1 => {
                self.ended = true;
                self.rest.advance(2);
                return Ok(None);
            }
            2 => {}
            n => return Err(format!("a copy row of {n} fields, expected 2")),
        }
        // count, lsn length, lsn, data length
        if b.len() < 18 {
            return Ok(None);
        }
        if be32(&b[2..]) != 8 {
            return Err("the WAL position in a copy row is not 8 bytes".into());
        }
        let lsn = u64::from_be_bytes([b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13]]);
        let len = be32(&b[14..]);
        let Ok(len) = usize::try_from(len) else {
            return Err("a copy row without its message".into());
        };
        if b.len() < 18 + len {
            return Ok(None);
        }
        self.rest.advance(18);
        Ok(Some((lsn, self.rest.split_to(len))))
    }
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// One peek in progress: its copy stream and the rows split out of it.
pub(super) struct Peek {
    copy: Pin<Box<CopyOutStream>>,
    rows: Rows,
    slot: String,
}

impl std::fmt::Debug for Peek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peek").field("slot", &self.slot).finish()
    }
}

impl Peek {
    /// Starts a peek of at most `page` changes (whole transactions) of `slot` for
    /// `publication`. Both names are checked `[a-z0-9_]` (the config's rule), so they are
    /// written as literals (a `COPY` takes no parameters).
    pub(super) async fn start(
        client: &Client,
        slot: &str,
        page: u32,
        publication: &str,
    ) -> Result<Peek, CdcError> {
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain(slot) || !plain(publication) {
            return Err(CdcError::Invalid(format!(
                "slot {slot:?} or publication {publication:?} is not a plain name"
            )));
        }
        let sql = format!(
            "COPY (SELECT lsn, data FROM pg_logical_slot_peek_binary_changes('{slot}', NULL, {page}, \
             'proto_version', '1', 'publication_names', '{publication}')) TO STDOUT (FORMAT binary)"
        );
        let copy = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| pg_error("read the replication slot", slot, e))?;
        Ok(Peek {
            copy: Box::pin(copy),
            rows: Rows::default(),
            slot: slot.to_owned(),
        })
    }

    /// The next change as (WAL position, pgoutput message), or `None` once the peek read
    /// everything it returns.
    pub(super) async fn next(&mut self) -> Option<Result<(u64, Bytes), CdcError>> {
        loop {
            match self.rows.next_row() {
                Ok(Some(row)) => return Some(Ok(row)),
                Err(message) => {
                    return Some(Err(CdcError::Decode {
                        at: "the slot's copy data".into(),
                        message,
                    }))
                }
                Ok(None) => {}
            }
            match self.copy.next().await {
                Some(Ok(chunk)) => self.rows.push(chunk),
                Some(Err(e)) => {
                    return Some(Err(pg_error("read the replication slot", &self.slot, e)))
                }
                None if self.rows.ended() && !self.rows.partial() => return None,
                None => {
                    return Some(Err(CdcError::Decode {
                        at: "the slot's copy data".into(),
                        message: "the copy ended in the middle of a row".into(),
                    }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::postgres::peek::*;

    fn copy_data(rows: &[(u64, &[u8])]) -> Vec<u8> {
        let mut d = SIGNATURE.to_vec();
        d.extend_from_slice(&0i32.to_be_bytes());
        d.extend_from_slice(&4i32.to_be_bytes());
        d.extend_from_slice(b"ext!");
        for (lsn, data) in rows {
            d.extend_from_slice(&2i16.to_be_bytes());
            d.extend_from_slice(&8i32.to_be_bytes());
            d.extend_from_slice(&lsn.to_be_bytes());
            d.extend_from_slice(&(data.len() as i32).to_be_bytes());
            d.extend_from_slice(data);
        }
        d.extend_from_slice(&(-1i16).to_be_bytes());
        d
    }

    fn read_all(data: &[u8], chunk: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let mut rows = Rows::default();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            rows.push(Bytes::copy_from_slice(c));
            while let Some((lsn, d)) = rows.next_row()? {
                out.push((lsn, d.to_vec()));
            }
        }
        assert!(rows.ended() && !rows.partial(), "the end marker was read");
        Ok(out)
    }

    #[test]
    fn rows_in_any_chunking() {
        let input: [(u64, &[u8]); 3] = [(0x16B_3748, b"B123"), (7, b""), (u64::MAX, b"Ixyz")];
        let data = copy_data(&input);
        let want: Vec<(u64, Vec<u8>)> = input.iter().map(|(l, d)| (*l, d.to_vec())).collect();
        for chunk in [1, 2, 3, 7, 19, 64, data.len()] {
            assert_eq!(read_all(&data, chunk).unwrap(), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn malformed_data_is_an_error() {
        let mut bad = copy_data(&[(1, b"x")]);
        bad[0] = b'Q';
        assert!(read_all(&bad, 64).unwrap_err().contains("signature"));
        let mut three = copy_data(&[(1, b"x")]);
        three[SIGNATURE.len() + 12 + 1] = 3;
        assert!(read_all(&three, 64).unwrap_err().contains("3 fields"));
        let mut null = copy_data(&[(1, b"x")]);
        let at = SIGNATURE.len() + 12 + 14;
        null[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(read_all(&null, 64)
            .unwrap_err()
            .contains("without its message"));
    }

    #[test]
    fn a_row_cut_short_is_partial() {
        let data = copy_data(&[(1, b"abcdef")]);
        let mut rows = Rows::default();
        rows.push(Bytes::copy_from_slice(&data[..data.len() - 5]));
        assert_eq!(rows.next_row().unwrap(), None);
        assert!(rows.partial() && !rows.ended());
    }
}
