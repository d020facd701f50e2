//! Named cursors for pollers, CDC readers and bridges.

use crate::{StoreError, StoreFuture};

/// Named cursors: a poller's last ETag or timestamp, a CDC reader's LSN, a bridge's sequence.
/// The value is opaque bytes; [`get_str`](Checkpoints::get_str) and
/// [`put_str`](Checkpoints::put_str) are shorthands for text.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_storage::{Checkpoints, MemoryStore};
///
/// let store = MemoryStore::new();
/// store.put("github-poller", b"etag-1".to_vec()).await?;
/// assert_eq!(store.get("github-poller").await?, Some(b"etag-1".to_vec()));
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
pub trait Checkpoints: Send + Sync + std::fmt::Debug {
    /// The cursor stored under `name`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{Checkpoints, MemoryStore};
    /// assert_eq!(MemoryStore::new().get("nothing-yet").await?, None);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `name`, replacing what was there.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{Checkpoints, MemoryStore};
    /// let store = MemoryStore::new();
    /// store.put("cdc", vec![1]).await?;
    /// store.put("cdc", vec![2]).await?;
    /// assert_eq!(store.get("cdc").await?, Some(vec![2]));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// The write may or may not happen if the future is dropped.
    fn put<'a>(&'a self, name: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()>;

    /// Removes the cursor; returns whether there was one.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{Checkpoints, MemoryStore};
    /// let store = MemoryStore::new();
    /// store.put("x", vec![]).await?;
    /// assert!(store.remove("x").await?);
    /// assert!(!store.remove("x").await?);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// The removal may or may not happen if the future is dropped.
    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool>;

    /// The cursor under `name` as text.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{Checkpoints, MemoryStore};
    /// let store = MemoryStore::new();
    /// store.put_str("poller", "2026-01-01T00:00:00Z").await?;
    /// assert_eq!(store.get_str("poller").await?.as_deref(), Some("2026-01-01T00:00:00Z"));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), plus [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt) if the stored bytes are not UTF-8.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    fn get_str<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.get(name).await? {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes)
                    .map(Some)
                    .map_err(StoreError::codec),
            }
        })
    }

    /// Stores text under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{Checkpoints, MemoryStore};
    /// let store = MemoryStore::new();
    /// store.put_str("lsn", "0/16B3748").await?;
    /// assert_eq!(store.get("lsn").await?, Some(b"0/16B3748".to_vec()));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    ///
    /// # Cancel safety
    ///
    /// As [`put`](Self::put).
    fn put_str<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        self.put(name, value.as_bytes().to_vec())
    }
}
