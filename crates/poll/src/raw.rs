//! [`RawEvent`]: a polled item's payload as the JSON bytes it came with.

use syncbus_envelope::{Bytes, DecodeError, EncodeError, Envelope, Payload};
use syncbus_workflow::Storable;

/// Any polled item, its payload kept as bytes (the JSON the upstream sent): the payload
/// type to serve a [`Poller`](crate::Poller) with when the handler reads the JSON itself.
/// A typed event (`impl Event + Deserialize`) works too and is decoded from the bytes.
///
/// # Examples
///
/// ```
/// use syncbus_poll::RawEvent;
/// let raw = RawEvent(syncbus_envelope::Bytes::from_static(br#"{"a":1}"#));
/// assert_eq!(raw.as_bytes(), br#"{"a":1}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent(pub Bytes);

impl RawEvent {
    /// The bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::RawEvent(Default::default()).as_bytes().is_empty());
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Payload for RawEvent {
    type Packed = Envelope<RawEvent>;

    fn pack(envelope: Envelope<RawEvent>, _pristine: bool) -> Envelope<RawEvent> {
        envelope
    }

    fn unpack(packed: Envelope<RawEvent>) -> Envelope<RawEvent> {
        packed
    }
}

impl Storable for RawEvent {
    fn to_stored(env: &Envelope<Self>) -> Result<Envelope<Bytes>, EncodeError> {
        Ok(env.clone().map_payload(|p| p.0))
    }

    fn from_stored(env: &Envelope<Bytes>) -> Result<Envelope<Self>, DecodeError> {
        Ok(env.clone().map_payload(RawEvent))
    }
}
