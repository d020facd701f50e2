//! The streaming replication connection: the slot read over PostgreSQL's replication
//! protocol (`START_REPLICATION ... LOGICAL`), so the server decodes the WAL once and sends
//! each change as it is decoded, and the slot's confirmed position moves by feedback
//! messages rather than by re-decoding it with `pg_replication_slot_advance`.
//!
//! tokio-postgres has no replication mode, so this is a small client of its own over the
//! message encoders of `postgres-protocol` (the crate tokio-postgres is built on): the
//! startup handshake with `replication=database`, password / MD5 / SCRAM-SHA-256
//! authentication, one `START_REPLICATION` query, then the copy-both stream
//! (protocol docs, "Streaming Replication Protocol").
//!
//! A task owns the socket. It frames the server's messages, hands the changes to the reader
//! through a bounded channel (so a slow consumer stops the reading, and the server with it,
//! rather than filling memory), and, whatever the consumer does, answers the server's
//! keepalives and sends a status update with the confirmed position every third of the
//! server's `wal_sender_timeout` and whenever the position moves, so the server never times out the
//! connection of a slow consumer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio_postgres::config::Host;

use crate::error::CdcError;
use crate::postgres::conn::lsn_text;

/// How often the confirmed position is sent when nothing else prompts it: a third of the
/// server's `wal_sender_timeout` (60 s by default), within these bounds.
const STATUS_MAX: Duration = Duration::from_secs(10);
const STATUS_MIN: Duration = Duration::from_millis(100);
/// Batches of messages the task may read ahead of the consumer.
const AHEAD: usize = 4;
/// A read from the socket, and so the most one batch holds (plus one message).
const READ: usize = 256 * 1024;
/// µs between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// What the stream hands the reader, in the server's order.
#[derive(Debug)]
pub(super) enum Item {
    /// One pgoutput message and the WAL position it starts at.
    Data { lsn: u64, data: Bytes },
    /// The server has sent everything up to `end` (a keepalive).
    Sent { end: u64 },
}

/// An error the server sent, with its SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("{severity} {code}: {message}")]
pub(super) struct ServerError {
    pub(super) severity: String,
    pub(super) code: String,
    pub(super) message: String,
}

#[derive(Debug, Default)]
struct Feedback {
    /// The position the slot may move to (flush and apply in the status update).
    confirmed: AtomicU64,
    now: Notify,
}

/// A running replication stream. Dropping it stops the task and closes the connection,
/// which releases the slot.
pub(super) struct Replication {
    rx: mpsc::Receiver<Result<Vec<Item>, CdcError>>,
    feedback: Arc<Feedback>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Replication {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field(
                "confirmed",
                &self.feedback.confirmed.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Connects, starts streaming `slot` from `start` (the server starts at the slot's
    /// confirmed position if that is later) with the `publication`, and spawns the task.
    pub(super) async fn start(
        url: &str,
        slot: &str,
        publication: &str,
        start: u64,
    ) -> Result<Replication, CdcError> {
        let mut conn = Conn::open(url).await?;
        // The server drops a connection that has not answered within its
        // `wal_sender_timeout`: answer well within it, whatever the consumer does.
        let every = conn
            .show("wal_sender_timeout")
            .await?
            .and_then(|v| pg_duration(&v))
            .filter(|d| !d.is_zero())
            .map_or(STATUS_MAX, |d| (d / 3).clamp(STATUS_MIN, STATUS_MAX));
        // Slot and publication names are checked by the config (letters, digits, `_`).
        let query = format!(
            "START_REPLICATION SLOT \"{slot}\" LOGICAL {} (\"proto_version\" '1', \"publication_names\" '\"{publication}\"')",
            lsn_text(start)
        );
        let mut out = bytes::BytesMut::new();
        frontend::query(&query, &mut out).map_err(|e| CdcError::database("start streaming", e))?;
        conn.write(&out).await?;
        loop {
            let (tag, body) = conn.message().await?;
            match tag {
                b'W' => break,
                b'E' => return Err(server_error("start streaming", slot, &body)),
                // Notices, parameter changes: nothing to do.
                _ => {}
            }
        }
        let feedback = Arc::new(Feedback::default());
        feedback.confirmed.store(start, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(AHEAD);
        let task = tokio::spawn(run(conn, tx, feedback.clone(), slot.to_owned(), every));
        Ok(Replication { rx, feedback, task })
    }

    /// The next batch of items; `None` once the stream ended (the task reports why first).
    pub(super) async fn recv(&mut self) -> Option<Result<Vec<Item>, CdcError>> {
        self.rx.recv().await
    }

    /// The next batch if the task handed one over already; `Some(Err)` once it stopped.
    pub(super) fn try_recv(&mut self) -> Option<Result<Vec<Item>, CdcError>> {
        match self.rx.try_recv() {
            Ok(next) => Some(next),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                Some(Err(protocol("the replication connection's task stopped")))
            }
        }
    }

    /// Lets the slot move up to `lsn`: a status update goes out now.
    pub(super) fn confirm(&self, lsn: u64) {
        if self.feedback.confirmed.fetch_max(lsn, Ordering::AcqRel) < lsn {
            self.feedback.now.notify_one();
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The socket and its read buffer.
struct Conn {
    io: Box<dyn Io>,
    buf: bytes::BytesMut,
}

impl Conn {
    async fn open(url: &str) -> Result<Conn, CdcError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| CdcError::database("parse the connection URL", e))?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let io: Box<dyn Io> = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|e| CdcError::database("connecting for replication", e))?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            #[cfg(unix)]
            Some(Host::Unix(dir)) => Box::new(
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                    .await
                    .map_err(|e| CdcError::database("connecting for replication", e))?,
            ),
            _ => {
                return Err(CdcError::Invalid(format!(
                    "the connection URL names no host the replication connection can use: {url:?}"
                )))
            }
        };
        let user = config
            .get_user()
            .map(str::to_owned)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".to_owned());
        let db = config.get_dbname().unwrap_or(&user).to_owned();
        let options = config.get_options().unwrap_or_default().to_owned();
        let mut conn = Conn {
            io,
            buf: bytes::BytesMut::with_capacity(READ),
        };
        let mut out = bytes::BytesMut::new();
        frontend::startup_message(
            [
                ("user", user.as_str()),
                ("database", db.as_str()),
                ("replication", "database"),
                ("application_name", "syncbus-cdc"),
                ("options", options.as_str()),
            ],
            &mut out,
        )
        .map_err(|e| CdcError::database("connecting for replication", e))?;
        conn.write(&out).await?;
        conn.authenticate(&user, config.get_password()).await?;
        Ok(conn)
    }

    async fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<(), CdcError> {
        let needs = |what: &str| {
            CdcError::Invalid(format!(
                "the server asks for a password ({what}) and the connection URL has none"
            ))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.message().await?;
            let mut out = bytes::BytesMut::new();
            let sent =
                |r: std::io::Result<()>| r.map_err(|e| CdcError::database("authenticating", e));
            match tag {
                b'R' => {
                    let kind = be_u32(&body, 0);
                    match kind {
                        Some(0) => {}
                        Some(3) => {
                            let pw = password.ok_or_else(|| needs("cleartext"))?;
                            sent(frontend::password_message(pw, &mut out))?;
                        }
                        Some(5) => {
                            let pw = password.ok_or_else(|| needs("md5"))?;
                            let salt = body
                                .get(4..8)
                                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                                .ok_or_else(|| protocol("a short md5 request"))?;
                            let hash = md5_hash(user.as_bytes(), pw, salt);
                            sent(frontend::password_message(hash.as_bytes(), &mut out))?;
                        }
                        Some(10) => {
                            let pw = password.ok_or_else(|| needs("SCRAM-SHA-256"))?;
                            let offered = body[4..]
                                .split(|&b| b == 0)
                                .any(|m| m == SCRAM_SHA_256.as_bytes());
                            if !offered {
                                return Err(CdcError::Invalid(
                                    "the server offers no SASL mechanism the replication connection speaks (SCRAM-SHA-256 without channel binding)".into(),
                                ));
                            }
                            let s = ScramSha256::new(pw, ChannelBinding::unsupported());
                            sent(frontend::sasl_initial_response(
                                SCRAM_SHA_256,
                                s.message(),
                                &mut out,
                            ))?;
                            scram = Some(s);
                        }
                        Some(11) => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL continue before start"))?;
                            s.update(&body[4..])
                                .map_err(|e| CdcError::database("authenticating", e))?;
                            sent(frontend::sasl_response(s.message(), &mut out))?;
                        }
                        Some(12) => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL final before start"))?;
                            s.finish(&body[4..])
                                .map_err(|e| CdcError::database("authenticating", e))?;
                        }
                        other => {
                            return Err(CdcError::Invalid(format!(
                                "the server asks for an authentication method the replication connection does not speak (code {other:?}): use password, md5 or scram-sha-256"
                            )))
                        }
                    }
                    if !out.is_empty() {
                        self.write(&out).await?;
                    }
                }
                b'E' => return Err(server_error("connect for replication", "", &body)),
                b'Z' => return Ok(()),
                // Parameter status, backend key data, notices.
                _ => {}
            }
        }
    }

    /// A setting's value (`SHOW`), on a connection that is ready for a query.
    async fn show(&mut self, name: &str) -> Result<Option<String>, CdcError> {
        let mut out = bytes::BytesMut::new();
        frontend::query(&format!("SHOW {name}"), &mut out)
            .map_err(|e| CdcError::database("reading a setting", e))?;
        self.write(&out).await?;
        let mut value = None;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                // one row, one text column: count (i16), length (i32), bytes
                b'D' => {
                    let len = be_u32(&body, 2).unwrap_or(u32::MAX);
                    if let Some(v) = body.get(6..6usize.saturating_add(len as usize)) {
                        value = Some(String::from_utf8_lossy(v).into_owned());
                    }
                }
                // an error leaves the connection ready after its ReadyForQuery
                b'E' => value = None,
                b'Z' => return Ok(value),
                _ => {}
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), CdcError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| CdcError::database("writing to the replication connection", e))
    }

    /// Sends a status update with the confirmed position as it is now; returns it.
    async fn send_status(&mut self, received: u64, feedback: &Feedback) -> Result<u64, CdcError> {
        let confirmed = feedback.confirmed.load(Ordering::Acquire);
        self.write(&status(received, confirmed)).await?;
        Ok(confirmed)
    }

    /// Reads more from the socket; an end of stream is an error.
    async fn fill(&mut self) -> Result<(), CdcError> {
        if self.buf.capacity() - self.buf.len() < READ / 4 {
            self.buf.reserve(READ);
        }
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) => Err(CdcError::database(
                "reading the replication connection",
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(CdcError::database("reading the replication connection", e)),
        }
    }

    /// One whole message from the buffer, if it holds one: its tag and body.
    fn parse(&mut self) -> Result<Option<(u8, Bytes)>, CdcError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = be_u32(&self.buf, 1).unwrap_or(0) as usize;
        if len < 4 {
            return Err(protocol("a message length below 4"));
        }
        if self.buf.len() < 1 + len {
            self.buf.reserve(1 + len - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(1 + len).freeze();
        let tag = frame[0];
        let body = frame.split_off(5);
        Ok(Some((tag, body)))
    }

    /// Reads until one whole message is in.
    async fn message(&mut self) -> Result<(u8, Bytes), CdcError> {
        loop {
            if let Some(m) = self.parse()? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn protocol(what: &str) -> CdcError {
    CdcError::database(
        "reading the replication connection",
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("protocol error: {what}"),
        ),
    )
}

/// An `ErrorResponse` body as the error that says what to change.
fn server_error(action: &str, slot: &str, body: &[u8]) -> CdcError {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'S' => severity = value,
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    match code.as_str() {
        // object_in_use: another walsender has the slot
        "55006" => CdcError::SlotInUse {
            slot: slot.to_owned(),
            message,
        },
        // insufficient_privilege, invalid_authorization_specification
        "42501" | "28000" => CdcError::Permission {
            action: action.to_owned(),
            hint: "logical decoding needs a role with the REPLICATION attribute (ALTER ROLE <role> REPLICATION) or a superuser, and pg_hba.conf must let it connect to the database",
            message,
        },
        // invalid_password
        "28P01" => CdcError::Invalid(format!(
            "{action}: {message}: check the user and password in the connection URL"
        )),
        // undefined_object: no such slot or publication
        "42704" => CdcError::Invalid(format!("{action}: {message}")),
        _ => CdcError::database(
            action,
            ServerError {
                severity,
                code,
                message,
            },
        ),
    }
}

/// A duration as `SHOW` prints it: `60s`, `1min`, `500ms`, `0`.
fn pg_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let at = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..at].parse().ok()?;
    Some(match v[at..].trim() {
        "us" => Duration::from_micros(n),
        // a bare number is milliseconds for this setting
        "ms" | "" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return None,
    })
}

fn pg_now_us() -> i64 {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    us - PG_EPOCH_US
}

/// A standby status update: received, flushed and applied positions, the clock, and
/// whether the server should answer.
fn status(received: u64, confirmed: u64) -> bytes::BytesMut {
    let mut body = Vec::with_capacity(34);
    body.push(b'r');
    body.extend_from_slice(&received.to_be_bytes());
    body.extend_from_slice(&confirmed.to_be_bytes());
    body.extend_from_slice(&confirmed.to_be_bytes());
    body.extend_from_slice(&pg_now_us().to_be_bytes());
    body.push(0);
    let mut out = bytes::BytesMut::with_capacity(40);
    // CopyData around a 34-byte body cannot fail to encode.
    if let Ok(data) = frontend::CopyData::new(&body[..]) {
        data.write(&mut out);
    }
    out
}

/// The task: frames messages into batches for the reader, answers keepalives, sends status.
async fn run(
    mut conn: Conn,
    tx: mpsc::Sender<Result<Vec<Item>, CdcError>>,
    feedback: Arc<Feedback>,
    slot: String,
    every: Duration,
) {
    let mut received = 0u64;
    let mut sent_confirmed = 0u64;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Item> = Vec::new();
    let result: Result<(), CdcError> = async {
        loop {
            // Frame what the buffer holds.
            let mut reply = false;
            while let Some((tag, body)) = conn.parse()? {
                match tag {
                    b'd' => match body.first() {
                        Some(b'w') => {
                            let start =
                                be_u64(&body, 1).ok_or_else(|| protocol("short XLogData"))?;
                            let end = be_u64(&body, 9).ok_or_else(|| protocol("short XLogData"))?;
                            received = received.max(end);
                            batch.push(Item::Data {
                                lsn: start,
                                data: body.slice(25..),
                            });
                        }
                        Some(b'k') => {
                            let end =
                                be_u64(&body, 1).ok_or_else(|| protocol("short keepalive"))?;
                            received = received.max(end);
                            reply |= body.get(17) == Some(&1);
                            batch.push(Item::Sent { end });
                        }
                        _ => {}
                    },
                    b'E' => return Err(server_error("read the replication slot", &slot, &body)),
                    b'c' | b'C' | b'Z' => {
                        return Err(protocol("the server ended the replication stream"))
                    }
                    _ => {}
                }
                if batch.len() >= 4096 {
                    break;
                }
            }
            if reply {
                sent_confirmed = conn.send_status(received, &feedback).await?;
            }
            if !batch.is_empty() {
                // Hand the batch over; meanwhile keep the connection alive.
                let permit = loop {
                    tokio::select! {
                        permit = tx.reserve() => match permit {
                            Ok(p) => break p,
                            Err(_) => return Ok(()),
                        },
                        _ = feedback.now.notified() => {}
                        _ = ticker.tick() => {}
                    }
                    sent_confirmed = conn.send_status(received, &feedback).await?;
                };
                permit.send(Ok(std::mem::take(&mut batch)));
                continue;
            }
            if tx.is_closed() {
                return Ok(());
            }
            tokio::select! {
                r = conn.fill() => r?,
                _ = feedback.now.notified() => {
                    if feedback.confirmed.load(Ordering::Acquire) != sent_confirmed {
                        sent_confirmed = conn.send_status(received, &feedback).await?;
                    }
                }
                _ = ticker.tick() => {
                    sent_confirmed = conn.send_status(received, &feedback).await?;
                }
                _ = tx.closed() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

#[cfg(test)]
mod tests {
    use crate::postgres::replication::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn server_errors_say_what_to_change() {
        let body = b"SERROR\0C55006\0Mreplication slot \"s\" is active for PID 7\0\0";
        assert!(matches!(
            server_error("start streaming", "s", body),
            CdcError::SlotInUse { .. }
        ));
        let body = b"SFATAL\0C28000\0Mmust be superuser or replication role\0\0";
        let e = server_error("connect", "s", body);
        assert!(e.to_string().contains("REPLICATION"), "{e}");
        let e = server_error(
            "connect",
            "s",
            b"SFATAL\0C28P01\0Mpassword authentication failed\0\0",
        );
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
        let e = server_error("x", "s", b"SERROR\0CXX000\0Mboom\0\0");
        assert!(matches!(e, CdcError::Database { .. }));
        // a truncated body never panics
        let _ = server_error("x", "s", b"SERR");
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// Reads one tagged message: its tag and body.
    async fn read_message(sock: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
        let tag = sock.read_u8().await.unwrap();
        let len = sock.read_u32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        sock.read_exact(&mut body).await.unwrap();
        (tag, body)
    }

    async fn refuse_password(sock: &mut tokio::net::TcpStream) {
        let refusal = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0";
        sock.write_all(&frame(b'E', refusal)).await.unwrap();
    }

    /// Answers `SHOW` with `2s`, then `START_REPLICATION` with `refusal`.
    async fn serve_queries(sock: &mut tokio::net::TcpStream, refusal: &[u8]) {
        for answer in [None, Some(refusal)] {
            let (tag, q) = read_message(sock).await;
            assert_eq!(tag, b'Q');
            match answer {
                None => {
                    let mut row = 1u16.to_be_bytes().to_vec();
                    row.extend_from_slice(&2u32.to_be_bytes());
                    row.extend_from_slice(b"2s");
                    sock.write_all(&frame(b'D', &row)).await.unwrap();
                    sock.write_all(&frame(b'C', b"SHOW\0")).await.unwrap();
                    sock.write_all(&frame(b'Z', b"I")).await.unwrap();
                }
                Some(body) => {
                    assert!(String::from_utf8_lossy(&q)
                        .starts_with("START_REPLICATION SLOT \"s\" LOGICAL 0/0"));
                    sock.write_all(&frame(b'E', body)).await.unwrap();
                    sock.write_all(&frame(b'Z', b"I")).await.unwrap();
                }
            }
        }
    }

    /// The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677): true if the client proved it
    /// knows `password`, after sending the server's signature for the client to check.
    async fn scram_server(sock: &mut tokio::net::TcpStream, password: &[u8]) -> bool {
        use base64::engine::general_purpose::STANDARD as B64;
        use base64::Engine as _;
        use hmac::{KeyInit, Mac};
        use sha2::{Digest, Sha256};
        type HmacSha256 = hmac::Hmac<Sha256>;
        let hmac = |key: &[u8], msg: &[u8]| {
            let mut m = HmacSha256::new_from_slice(key).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        };
        let mut request = 10u32.to_be_bytes().to_vec();
        request.extend_from_slice(b"SCRAM-SHA-256\0\0");
        sock.write_all(&frame(b'R', &request)).await.unwrap();
        // SASLInitialResponse: mechanism, NUL, length, client-first-message
        let (_, body) = read_message(sock).await;
        let nul = body.iter().position(|&b| b == 0).unwrap();
        let client_first = String::from_utf8(body[nul + 5..].to_vec()).unwrap();
        let bare = client_first.strip_prefix("n,,").unwrap().to_owned();
        let cnonce = bare.split("r=").nth(1).unwrap().to_owned();
        let (salt, iterations) = (b"pepper-salt", 4096u32);
        let server_first = format!("r={cnonce}srv,s={},i={iterations}", B64.encode(salt));
        let mut cont = 11u32.to_be_bytes().to_vec();
        cont.extend_from_slice(server_first.as_bytes());
        sock.write_all(&frame(b'R', &cont)).await.unwrap();
        let (_, body) = read_message(sock).await;
        let client_final = String::from_utf8(body).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        // Hi(): PBKDF2 with HMAC-SHA-256
        let mut u = hmac(password, &[&salt[..], &1u32.to_be_bytes()].concat());
        let mut salted = u.clone();
        for _ in 1..iterations {
            u = hmac(password, &u);
            salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
        }
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key).to_vec();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).unwrap();
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if Sha256::digest(&recovered).to_vec() != stored_key {
            refuse_password(sock).await;
            return false;
        }
        let server_key = hmac(&salted, b"Server Key");
        let verifier = format!(
            "v={}",
            B64.encode(hmac(&server_key, auth_message.as_bytes()))
        );
        let mut fin = 12u32.to_be_bytes().to_vec();
        fin.extend_from_slice(verifier.as_bytes());
        sock.write_all(&frame(b'R', &fin)).await.unwrap();
        true
    }

    /// A stand-in server on loopback for what the local test server (trust auth) never
    /// does: it asks for a password as `auth` says, checks the answer, answers `SHOW`, and
    /// refuses `START_REPLICATION` with `refusal` (an ErrorResponse body).
    async fn fake_server(
        auth: &'static str,
        refusal: &'static [u8],
    ) -> (String, tokio::task::JoinHandle<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            // the startup message: a length, then the body
            let len = sock.read_u32().await.unwrap() as usize;
            let mut startup = vec![0; len - 4];
            sock.read_exact(&mut startup).await.unwrap();
            let startup = String::from_utf8_lossy(&startup).into_owned();
            let replication = startup.contains("replication\0database");
            let authenticated = if auth == "scram" {
                scram_server(&mut sock, b"secret").await
            } else {
                let salt = [1, 2, 3, 4];
                let (request, expected): (Vec<u8>, Vec<u8>) = match auth {
                    "md5" => {
                        let mut r = 5u32.to_be_bytes().to_vec();
                        r.extend_from_slice(&salt);
                        (r, md5_hash(b"alice", b"secret", salt).into_bytes())
                    }
                    _ => (3u32.to_be_bytes().to_vec(), b"secret".to_vec()),
                };
                sock.write_all(&frame(b'R', &request)).await.unwrap();
                // the password message: 'p', length, the password and a NUL
                let (tag, pw) = read_message(&mut sock).await;
                let right = tag == b'p' && pw.strip_suffix(&[0]) == Some(&expected[..]);
                if !right {
                    refuse_password(&mut sock).await;
                }
                right
            };
            if !authenticated {
                return false;
            }
            sock.write_all(&frame(b'R', &0u32.to_be_bytes()))
                .await
                .unwrap();
            sock.write_all(&frame(b'Z', b"I")).await.unwrap();
            serve_queries(&mut sock, refusal).await;
            replication
        });
        (
            format!("postgres://alice:secret@127.0.0.1:{port}/app"),
            task,
        )
    }

    #[tokio::test]
    async fn md5_cleartext_and_scram_passwords_and_a_refused_start() {
        for auth in ["md5", "cleartext", "scram"] {
            let (url, server) = fake_server(
                auth,
                b"SERROR\0C55006\0Mreplication slot \"s\" is active for PID 7\0\0",
            )
            .await;
            let err = Replication::start(&url, "s", "p", 0).await.unwrap_err();
            assert!(matches!(err, CdcError::SlotInUse { .. }), "{auth}: {err}");
            assert!(
                server.await.unwrap(),
                "{auth}: asked for a replication connection"
            );
        }
        let (url, server) = fake_server(
            "md5",
            b"SERROR\0C42704\0Mpublication \"p\" does not exist\0\0",
        )
        .await;
        let err = Replication::start(&url, "s", "p", 0).await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_password_request_without_a_password_says_so() {
        let (url, server) = fake_server("md5", b"").await;
        let url = url.replace("alice:secret@", "alice@");
        let err = Replication::start(&url, "s", "p", 0).await.unwrap_err();
        assert!(err.to_string().contains("has none"), "{err}");
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let url = format!("postgres://alice@127.0.0.1:{port}/app");
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            Replication::start(&url, "s", "p", 0),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        assert!(matches!(err, CdcError::Database { .. }), "{err}");
        server.await.unwrap();
    }

    #[test]
    fn durations_as_show_prints_them() {
        assert_eq!(pg_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(pg_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(pg_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(pg_duration("0"), Some(Duration::ZERO));
        assert_eq!(pg_duration("soon"), None);
        assert_eq!(pg_duration("3 weeks"), None);
    }

    #[test]
    fn a_status_update_is_one_copy_data_of_34_bytes() {
        let s = status(0x10, 0x20);
        assert_eq!(s[0], b'd');
        assert_eq!(be_u32(&s, 1), Some(38));
        assert_eq!(s[5], b'r');
        assert_eq!(be_u64(&s, 6), Some(0x10));
        assert_eq!(be_u64(&s, 14), Some(0x20));
        assert_eq!(be_u64(&s, 22), Some(0x20));
        assert_eq!(s.len(), 39);
    }
}
