//! The envelope: metadata plus a payload.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use smol_str::SmolStr;
use syncbus_names::{is_valid_event_type, is_valid_topic};

use crate::{DecodeError, EncodeError, Event, EventId, EventType, Metadata, Topic};

/// An event on the bus: [`Metadata`] plus a payload.
///
/// The payload is raw bytes (`Envelope<Bytes>`, the default) on the wire and in storage, or a
/// typed [`Event`] (`Envelope<E>`) in process. [`Envelope::to_bytes_payload`] and
/// [`Envelope::decode_payload`] convert between the two, using JSON.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_envelope::{Bytes, Envelope, Event};
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Greeted {
///     name: String,
/// }
///
/// impl Event for Greeted {
///     const TYPE: &'static str = "demo.greeted";
/// }
///
/// let typed = Envelope::from_event(Greeted { name: "Ada".into() });
/// let raw: Envelope<Bytes> = typed.to_bytes_payload()?;
/// assert_eq!(raw.payload().as_ref(), br#"{"name":"Ada"}"#);
/// assert_eq!(raw.meta().content_type(), Some("application/json"));
///
/// let back = raw.decode_payload::<Greeted>()?;
/// assert_eq!(back.payload(), typed.payload());
/// assert_eq!(back.id(), typed.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<P = Bytes> {
    meta: Metadata,
    payload: P,
}

impl<P> Envelope<P> {
    /// Puts metadata and a payload together.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::from_static(b"{}"));
    /// assert_eq!(env.payload().as_ref(), b"{}");
    /// ```
    pub fn new(meta: Metadata, payload: P) -> Self {
        Envelope { meta, payload }
    }

    /// The metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), ());
    /// assert_eq!(env.meta().event_type().as_str(), "a.b");
    /// ```
    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// Mutable access to the metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata, Topic};
    ///
    /// let mut env = Envelope::new(Metadata::new(EventType::from_static("a.b")), ());
    /// env.meta_mut().set_topic(Topic::from_static("t"));
    /// assert_eq!(env.meta().topic().map(Topic::as_str), Some("t"));
    /// ```
    pub fn meta_mut(&mut self) -> &mut Metadata {
        &mut self.meta
    }

    /// The payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), 5u8);
    /// assert_eq!(*env.payload(), 5);
    /// ```
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// Mutable access to the payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let mut env = Envelope::new(Metadata::new(EventType::from_static("a.b")), 5u8);
    /// *env.payload_mut() += 1;
    /// assert_eq!(*env.payload(), 6);
    /// ```
    pub fn payload_mut(&mut self) -> &mut P {
        &mut self.payload
    }

    /// Drops the metadata and returns the payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), "hi");
    /// assert_eq!(env.into_payload(), "hi");
    /// ```
    pub fn into_payload(self) -> P {
        self.payload
    }

    /// Splits into metadata and payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), "hi");
    /// let (meta, payload) = env.into_parts();
    /// assert_eq!((meta.event_type().as_str(), payload), ("a.b", "hi"));
    /// ```
    pub fn into_parts(self) -> (Metadata, P) {
        (self.meta, self.payload)
    }

    /// The event id; same as `meta().id()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), ());
    /// assert_eq!(env.id(), env.meta().id());
    /// ```
    pub fn id(&self) -> &EventId {
        self.meta.id()
    }

    /// Replaces the payload with `f(payload)`, keeping the metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), 2u32);
    /// let id = env.id().clone();
    /// let env = env.map_payload(|n| n.to_string());
    /// assert_eq!((env.id(), env.payload().as_str()), (&id, "2"));
    /// ```
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> Envelope<Q> {
        Envelope {
            meta: self.meta,
            payload: f(self.payload),
        }
    }
}

impl<E: Event> Envelope<E> {
    /// Wraps a typed event in a new envelope.
    ///
    /// The metadata gets a fresh [`EventId`], type [`E::TYPE`](Event::TYPE), topic
    /// [`E::TOPIC`](Event::TOPIC), and the event's entity id and version. Does not allocate
    /// unless the entity id is longer than 23 bytes. `TYPE` and `TOPIC` are validated at
    /// compile time, once per event type: an invalid one does not build.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, Event};
    ///
    /// #[derive(Clone)]
    /// struct Ping;
    ///
    /// impl Event for Ping {
    ///     const TYPE: &'static str = "demo.ping";
    /// }
    ///
    /// let env = Envelope::from_event(Ping);
    /// assert_eq!(env.meta().event_type().as_str(), "demo.ping");
    /// assert_eq!(env.meta().topic().map(|t| t.as_str()), Some("demo.ping"));
    /// ```
    #[inline]
    pub fn from_event(event: E) -> Self {
        Envelope::from_event_on(event, Topic::from_static_unchecked(E::TOPIC))
    }

    /// Wraps a typed event in a new envelope on `topic` instead of
    /// [`E::TOPIC`](Event::TOPIC): what [`from_event`](Envelope::from_event) followed by
    /// [`Metadata::set_topic`] gives, built once (a publish to a named topic does this).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, Event, Topic};
    ///
    /// #[derive(Clone)]
    /// struct Ping;
    ///
    /// impl Event for Ping {
    ///     const TYPE: &'static str = "demo.ping";
    /// }
    ///
    /// let env = Envelope::from_event_on(Ping, Topic::new("demo.pings.eu")?);
    /// assert_eq!(env.meta().event_type().as_str(), "demo.ping");
    /// assert_eq!(env.meta().topic().map(|t| t.as_str()), Some("demo.pings.eu"));
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    #[inline]
    pub fn from_event_on(event: E, topic: Topic) -> Self {
        // Checked once per event type, at compile time.
        const {
            assert!(
                is_valid_event_type(E::TYPE),
                "Event::TYPE must be 1 to 256 bytes of printable ASCII without spaces"
            );
            assert!(
                is_valid_topic(E::TOPIC),
                "Event::TOPIC must be a valid topic: dot-separated non-empty tokens of printable ASCII, no wildcards, at most 256 bytes and 32 tokens"
            );
        }
        let meta = Metadata::with_parts(
            EventId::new(),
            EventType::from_static_unchecked(E::TYPE),
            Some(topic),
            event.entity_id(),
            event.version(),
        );
        Envelope {
            meta,
            payload: event,
        }
    }
}

impl<P> Envelope<P> {
    /// A follow-up event caused by this one: it keeps this event's correlation id (or takes
    /// this event's id, at the root of a chain) and gets this event's id as its causation
    /// id. The same rule a workflow handler's `Context::emit` follows, for a plain bus
    /// handler that publishes follow-ups itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Envelope, Event};
    ///
    /// #[derive(Clone, Debug)]
    /// struct Placed;
    /// impl Event for Placed { const TYPE: &'static str = "shop.order.placed"; }
    /// #[derive(Clone, Debug)]
    /// struct Reserved;
    /// impl Event for Reserved { const TYPE: &'static str = "shop.stock.reserved"; }
    /// #[derive(Clone, Debug)]
    /// struct Shipped;
    /// impl Event for Shipped { const TYPE: &'static str = "shop.order.shipped"; }
    ///
    /// let placed = Envelope::from_event(Placed);
    /// let reserved = placed.follow_up(Reserved);
    /// assert_eq!(reserved.meta().correlation_id(), Some(placed.meta().id())); // the root
    /// assert_eq!(reserved.meta().causation_id(), Some(placed.meta().id()));
    /// let shipped = reserved.follow_up(Shipped);
    /// assert_eq!(shipped.meta().correlation_id(), Some(placed.meta().id())); // kept
    /// assert_eq!(shipped.meta().causation_id(), Some(reserved.meta().id()));
    /// ```
    pub fn follow_up<E: Event>(&self, event: E) -> Envelope<E> {
        let mut next = Envelope::from_event(event);
        let correlation = self.meta.correlation_id().unwrap_or(self.meta.id()).clone();
        next.meta.set_correlation_id(Some(correlation));
        next.meta.set_causation_id(Some(self.meta.id().clone()));
        next
    }
}

impl<E: Event + Serialize> Envelope<E> {
    /// Serializes the payload to JSON, giving an envelope with the same metadata, content
    /// type `application/json`.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::Serialize;
    /// use syncbus_envelope::{Envelope, Event};
    ///
    /// #[derive(Clone, Serialize)]
    /// struct Tick(u32);
    ///
    /// impl Event for Tick {
    ///     const TYPE: &'static str = "demo.tick";
    /// }
    ///
    /// let raw = Envelope::from_event(Tick(3)).to_bytes_payload()?;
    /// assert_eq!(raw.payload().as_ref(), b"3");
    /// # Ok::<(), syncbus_envelope::EncodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError::Serialize`] if the event's `Serialize` impl fails or yields something
    /// JSON cannot hold, such as a map with non-string keys.
    pub fn to_bytes_payload(&self) -> Result<Envelope<Bytes>, EncodeError> {
        let json = serde_json::to_vec(&self.payload).map_err(|e| EncodeError::Serialize {
            source: Box::new(e),
        })?;
        let meta = self
            .meta
            .clone()
            .with_content_type(SmolStr::new_static("application/json"));
        Ok(Envelope {
            meta,
            payload: Bytes::from(json),
        })
    }
}

impl Envelope<Bytes> {
    /// Deserializes a JSON payload into the typed event `E`, keeping the metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::Deserialize;
    /// use syncbus_envelope::{Bytes, Envelope, Event, EventType, Metadata};
    ///
    /// #[derive(Clone, Debug, Deserialize)]
    /// struct Tick(u32);
    ///
    /// impl Event for Tick {
    ///     const TYPE: &'static str = "demo.tick";
    /// }
    ///
    /// let raw = Envelope::new(Metadata::new(EventType::from_static("demo.tick")), Bytes::from_static(b"7"));
    /// assert_eq!(raw.decode_payload::<Tick>()?.payload().0, 7);
    /// # Ok::<(), syncbus_envelope::DecodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DecodeError::WrongType`] if the envelope's type is not `E::TYPE`;
    /// [`DecodeError::Malformed`] if the payload is not JSON that `E` deserializes from.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use syncbus_envelope::{Bytes, DecodeError, Envelope, Event, EventType, Metadata};
    ///
    /// #[derive(Clone, Debug, Deserialize)]
    /// struct Tick(u32);
    ///
    /// impl Event for Tick {
    ///     const TYPE: &'static str = "demo.tick";
    /// }
    ///
    /// let raw = Envelope::new(Metadata::new(EventType::from_static("demo.tock")), Bytes::from_static(b"7"));
    /// assert!(matches!(raw.decode_payload::<Tick>(), Err(DecodeError::WrongType { .. })));
    /// ```
    pub fn decode_payload<E: Event + DeserializeOwned>(&self) -> Result<Envelope<E>, DecodeError> {
        if self.meta.event_type().as_str() != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                found: self.meta.event_type().clone(),
            });
        }
        let payload = serde_json::from_slice(&self.payload)
            .map_err(|e| DecodeError::malformed(format_args!("payload: {e}")))?;
        Ok(Envelope {
            meta: self.meta.clone(),
            payload,
        })
    }
}
