//! What the bus carries, and the compact form its queues hold.

use bytes::Bytes;

use crate::{EncodeError, Encoded, Envelope, Event, EventId, EventType, Metadata, Topic};

/// A payload the bus can carry: every [`Event`] type, and [`Bytes`] for envelopes that
/// arrive from the edges (HTTP, storage, brokers) and stay serialized.
///
/// The hidden items let queues hold an envelope compactly: a typed event whose metadata is
/// exactly what [`Envelope::from_event`] made (plus its topic) travels as its id, topic and
/// payload, a third of the size, and its metadata is rebuilt on the other side.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, Envelope, Event, Payload};
///
/// #[derive(Clone)]
/// struct Ping;
/// impl Event for Ping { const TYPE: &'static str = "ping"; }
///
/// fn carried<P: Payload>() {}
/// carried::<Ping>();
/// carried::<Bytes>();
/// ```
pub trait Payload: Clone + Send + Sync + 'static {
    /// What a queue slot holds for an envelope of this payload.
    #[doc(hidden)]
    type Packed: Send + 'static;

    /// Packs an envelope for a queue. `pristine` promises its metadata is what
    /// [`Envelope::from_event`] made, with only the topic changed.
    #[doc(hidden)]
    fn pack(envelope: Envelope<Self>, pristine: bool) -> Self::Packed;

    /// Gives the envelope back.
    #[doc(hidden)]
    fn unpack(packed: Self::Packed) -> Envelope<Self>;

    /// The payload as bytes for a tap: [`Event::encode`] for a typed event, the bytes
    /// themselves for [`Bytes`]. (The bus names payloads by this trait only, so the tap
    /// reaches `Event::encode` through it.) Another payload type is not encodable unless it
    /// says otherwise: a tap sees its metadata only.
    #[doc(hidden)]
    fn encode_payload(&self) -> Option<Result<Encoded, EncodeError>> {
        None
    }
}

/// A queued typed event: the common case compact, anything else whole.
#[doc(hidden)]
#[derive(Debug)]
pub struct PackedEvent<E>(Packed<E>);

#[derive(Debug)]
enum Packed<E> {
    /// Metadata derivable from the payload: keep the id and topic only.
    Lite {
        id: [u8; 16],
        topic: Option<Topic>,
        payload: E,
    },
    /// Anything else (headers, correlation ids, foreign ids...): the whole envelope, boxed
    /// so the common case stays small.
    Whole(Box<Envelope<E>>),
}

impl<E: Event> Payload for E {
    type Packed = PackedEvent<E>;

    #[inline]
    fn pack(envelope: Envelope<E>, pristine: bool) -> PackedEvent<E> {
        let (mut meta, payload) = envelope.into_parts();
        match meta.id().as_u128() {
            Some(id) if pristine => PackedEvent(Packed::Lite {
                id: id.to_be_bytes(),
                topic: meta.take_topic(),
                payload,
            }),
            _ => PackedEvent(Packed::Whole(Box::new(Envelope::new(meta, payload)))),
        }
    }

    #[inline]
    fn unpack(packed: PackedEvent<E>) -> Envelope<E> {
        match packed.0 {
            Packed::Lite { id, topic, payload } => {
                let meta = Metadata::with_parts(
                    EventId::from_u128(u128::from_be_bytes(id)),
                    EventType::from_static_unchecked(E::TYPE),
                    topic,
                    payload.entity_id(),
                    payload.version(),
                );
                Envelope::new(meta, payload)
            }
            Packed::Whole(envelope) => *envelope,
        }
    }

    #[inline]
    fn encode_payload(&self) -> Option<Result<Encoded, EncodeError>> {
        self.encode()
    }
}

impl Payload for Bytes {
    type Packed = Envelope<Bytes>;

    #[inline]
    fn pack(envelope: Envelope<Bytes>, _pristine: bool) -> Envelope<Bytes> {
        envelope
    }

    #[inline]
    fn unpack(packed: Envelope<Bytes>) -> Envelope<Bytes> {
        packed
    }

    /// As they are: the envelope's metadata already says what they are.
    #[inline]
    fn encode_payload(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Ok(Encoded::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntityId;

    #[derive(Clone, Debug, PartialEq)]
    struct Moved {
        item: u64,
        rev: u64,
    }

    impl Event for Moved {
        const TYPE: &'static str = "stock.moved";
        fn entity_id(&self) -> Option<EntityId> {
            Some(self.item.into())
        }
        fn version(&self) -> Option<u64> {
            Some(self.rev)
        }
    }

    #[test]
    fn lite_packing_round_trips_and_is_small() {
        let mut env = Envelope::from_event(Moved { item: 7, rev: 3 });
        env.meta_mut()
            .set_topic(Topic::from_static("stock.eu.moved"));
        let back = Moved::unpack(Moved::pack(env.clone(), true));
        assert_eq!(back, env);
        assert!(matches!(Moved::pack(env, true).0, Packed::Lite { .. }));
        assert!(std::mem::size_of::<PackedEvent<Moved>>() <= 64);
    }

    #[test]
    fn anything_else_is_kept_whole() {
        let mut env = Envelope::from_event(Moved { item: 7, rev: 3 });
        env.meta_mut().set_correlation_id(Some(EventId::new()));
        env.meta_mut()
            .headers_mut()
            .insert("tenant", "acme")
            .unwrap();
        let packed = Moved::pack(env.clone(), false);
        assert!(matches!(packed.0, Packed::Whole(_)));
        assert_eq!(Moved::unpack(packed), env);
        // A foreign id cannot travel as 16 bytes, even when the caller says pristine.
        let mut foreign = Envelope::from_event(Moved { item: 1, rev: 1 });
        foreign
            .meta_mut()
            .set_id(EventId::parse("evt_123").unwrap());
        assert_eq!(Moved::unpack(Moved::pack(foreign.clone(), true)), foreign);
    }
}
