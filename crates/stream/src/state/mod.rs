//! Keyed state: the in-memory maps stateful operators keep, and their encoding for a
//! checkpoint.
//!
//! State lives in a hash map per operator (foldhash, as the workflow crate's dedup map).
//! A checkpoint encodes every operator's map with postcard, in operator order, together with
//! the watermark and the input offsets it reflects (see [`checkpoint`]).

pub(crate) mod checkpoint;
pub(crate) mod offsets;

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StreamError;

/// The map a keyed operator keeps its state in.
pub(crate) type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Encodes one operator's state.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StreamError> {
    postcard::to_allocvec(value).map_err(|e| StreamError::Encode(Box::new(e)))
}

/// Decodes one operator's state.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StreamError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StreamError::Checkpoint(format!("the state of {what} does not decode: {e}")))
}

/// The next part of a checkpoint for the operator `what`.
pub(crate) fn next_part(
    parts: &mut std::vec::IntoIter<Vec<u8>>,
    what: &str,
) -> Result<Vec<u8>, StreamError> {
    parts
        .next()
        .ok_or_else(|| StreamError::Checkpoint(format!("no state for {what}")))
}
