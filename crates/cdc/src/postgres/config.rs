//! [`PgCdcConfig`]: every setting of the PostgreSQL reader, checked once.

use std::time::Duration;

use crate::error::CdcError;

/// A table named `schema.table` (or `table`, in `public`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TableName {
    pub(crate) schema: String,
    pub(crate) table: String,
}

impl TableName {
    pub(crate) fn parse(s: &str) -> Result<TableName, CdcError> {
        let (schema, table) = match s.split_once('.') {
            Some((a, b)) => (a, b),
            None => ("public", s),
        };
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return Err(CdcError::Invalid(format!(
                "table {s:?}: expected SCHEMA.TABLE or TABLE"
            )));
        }
        Ok(TableName {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// `"schema"."table"`, quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.table))
    }
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn check_slot_name(what: &str, s: &str) -> Result<(), CdcError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CdcError::Invalid(format!(
            "{what} {s:?}: 1 to 63 of a-z, 0-9 and _"
        )))
    }
}

/// The PostgreSQL reader's settings.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_cdc::PgCdcConfig;
///
/// let config = PgCdcConfig::new("postgres://postgres@127.0.0.1/app", ["public.orders"])?
///     .slot("orders_cdc")?
///     .snapshot(true)
///     .page(5_000);
/// assert_eq!(config.slot_name(), "orders_cdc");
/// assert_eq!(config.publication_name(), "orders_cdc");
/// assert!(PgCdcConfig::new("postgres://x", ["a.b.c"]).is_err());
/// # Ok::<(), syncbus_cdc::CdcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgCdcConfig {
    pub(crate) url: String,
    pub(crate) tables: Vec<TableName>,
    pub(crate) slot: String,
    pub(crate) publication: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) page: u32,
    pub(crate) poll: Duration,
    pub(crate) checkpoint_every: Duration,
    pub(crate) snapshot: bool,
    pub(crate) outbox: Option<TableName>,
    pub(crate) transport: PgTransport,
}

/// How [`PgCdc`](crate::PgCdc) reads the slot.
///
/// # Examples
///
/// ```
/// use syncbus_cdc::{PgCdcConfig, PgTransport};
///
/// let config = PgCdcConfig::new("postgres://postgres@127.0.0.1/app", ["public.orders"])?
///     .transport(PgTransport::SlotFunctions);
/// assert_eq!(config.transport_kind(), PgTransport::SlotFunctions);
/// # Ok::<(), syncbus_cdc::CdcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PgTransport {
    /// A replication connection (`replication=database`, `START_REPLICATION`): the server
    /// decodes each change once and sends it as it goes; the slot moves by feedback
    /// messages. The default, and the faster (see the crate README's bench).
    #[default]
    Replication,
    /// The slot's SQL functions over an ordinary connection:
    /// `pg_logical_slot_peek_binary_changes`, polled every [`poll`](PgCdcConfig::poll),
    /// then `pg_replication_slot_advance`. For a pooler or proxy that passes no
    /// replication connections; each peek decodes its changes into a tuplestore before the
    /// first row comes, and each advance decodes them once more.
    SlotFunctions,
}

impl std::str::FromStr for PgTransport {
    type Err = CdcError;

    /// `replication` or `slot-functions`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_cdc::PgTransport;
    ///
    /// assert_eq!("slot-functions".parse::<PgTransport>()?, PgTransport::SlotFunctions);
    /// assert!("carrier-pigeon".parse::<PgTransport>().is_err());
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    fn from_str(s: &str) -> Result<PgTransport, CdcError> {
        match s {
            "replication" => Ok(PgTransport::Replication),
            "slot-functions" => Ok(PgTransport::SlotFunctions),
            other => Err(CdcError::Invalid(format!(
                "unknown transport {other:?}: replication or slot-functions"
            ))),
        }
    }
}

impl std::fmt::Display for PgTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PgTransport::Replication => "replication",
            PgTransport::SlotFunctions => "slot-functions",
        })
    }
}

impl PgCdcConfig {
    /// Reads `tables` (`schema.table`, or `table` in `public`) from the database at `url`,
    /// through the slot `syncbus_cdc` and a publication of the same name.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for no table or a malformed name.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig`].
    pub fn new(
        url: impl Into<String>,
        tables: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<PgCdcConfig, CdcError> {
        let tables = tables
            .into_iter()
            .map(|t| TableName::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if tables.is_empty() {
            return Err(CdcError::Invalid("no table to capture".into()));
        }
        Ok(PgCdcConfig {
            url: url.into(),
            tables,
            slot: "syncbus_cdc".into(),
            publication: None,
            name: None,
            page: 10_000,
            poll: Duration::from_millis(200),
            checkpoint_every: Duration::from_millis(100),
            snapshot: false,
            outbox: None,
            transport: PgTransport::default(),
        })
    }

    /// The logical replication slot (created if absent): 1 to 63 of `a-z`, `0-9`, `_`.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a name PostgreSQL would refuse.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig`].
    pub fn slot(mut self, slot: impl Into<String>) -> Result<PgCdcConfig, CdcError> {
        let slot = slot.into();
        check_slot_name("slot", &slot)?;
        self.slot = slot;
        Ok(self)
    }

    /// The publication (created if absent, for the tables); the slot's name by default.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a name outside `a-z`, `0-9`, `_` (at most 63).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?.publication("shop")?;
    /// assert_eq!(c.publication_name(), "shop");
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn publication(mut self, name: impl Into<String>) -> Result<PgCdcConfig, CdcError> {
        let name = name.into();
        check_slot_name("publication", &name)?;
        self.publication = Some(name);
        Ok(self)
    }

    /// The checkpoint's name (and the source's): `cdc.pg.<slot>` by default.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?;
    /// assert_eq!(c.checkpoint_name(), "cdc.pg.syncbus_cdc");
    /// assert_eq!(c.name("orders").checkpoint_name(), "orders");
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> PgCdcConfig {
        self.name = Some(name.into());
        self
    }

    /// How many changes one `pg_logical_slot_peek_binary_changes` call asks for
    /// (`upto_nchanges`, default 10,000). PostgreSQL stops only at a transaction's end, so
    /// a call returns at least one whole transaction; the rows are streamed, never held.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?.page(0);
    /// assert_eq!(c.page_size(), 1); // at least one
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn page(mut self, n: u32) -> PgCdcConfig {
        self.page = n.clamp(1, i32::MAX as u32);
        self
    }

    /// How long to wait before asking again once the slot had nothing new (200 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?
    ///     .poll(std::time::Duration::from_millis(50));
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn poll(mut self, every: std::time::Duration) -> PgCdcConfig {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How often, at most, the confirmed position is written to the checkpoint store while
    /// changes are settled (100 ms); it is also written before every slot advance.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?
    ///     .checkpoint_every(std::time::Duration::ZERO); // after every settled batch
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn checkpoint_every(mut self, every: Duration) -> PgCdcConfig {
        self.checkpoint_every = every;
        self
    }

    /// Reads the tables' existing rows first (as `<schema>.<table>.read` events), consistent
    /// with the slot: no change is missed and none is seen twice (see the crate docs).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["t"])?.snapshot(true);
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn snapshot(mut self, on: bool) -> PgCdcConfig {
        self.snapshot = on;
        self
    }

    /// Reads `table` as an outbox: each insert carries an `envelope` column (`bytea`, an
    /// envelope in the binary codec, as `PgStore::enqueue` writes it) and comes out as that
    /// envelope, with its own id, type, topic and entity id. Other changes to it are
    /// skipped. The table joins the publication.
    ///
    /// # Errors
    ///
    /// [`CdcError::Invalid`] for a malformed name.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = syncbus_cdc::PgCdcConfig::new("postgres://x", ["public.orders"])?
    ///     .outbox("app.outbox")?;
    /// # Ok::<(), syncbus_cdc::CdcError>(())
    /// ```
    pub fn outbox(mut self, table: &str) -> Result<PgCdcConfig, CdcError> {
        let t = TableName::parse(table)?;
        if !self.tables.contains(&t) {
            self.tables.push(t.clone());
        }
        self.outbox = Some(t);
        Ok(self)
    }

    /// How the slot is read: a replication connection (the default) or the slot's SQL
    /// functions.
    ///
    /// # Examples
    ///
    /// See [`PgTransport`].
    pub fn transport(mut self, transport: PgTransport) -> PgCdcConfig {
        self.transport = transport;
        self
    }

    /// The transport chosen.
    ///
    /// # Examples
    ///
    /// See [`PgTransport`].
    pub fn transport_kind(&self) -> PgTransport {
        self.transport
    }

    /// The slot's name.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig`].
    pub fn slot_name(&self) -> &str {
        &self.slot
    }

    /// The publication's name.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig`].
    pub fn publication_name(&self) -> &str {
        self.publication.as_deref().unwrap_or(&self.slot)
    }

    /// The checkpoint's name.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig::name`].
    pub fn checkpoint_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("cdc.pg.{}", self.slot))
    }

    /// Changes asked for per call.
    ///
    /// # Examples
    ///
    /// See [`PgCdcConfig::page`].
    pub fn page_size(&self) -> u32 {
        self.page
    }
}
