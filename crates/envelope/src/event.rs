//! The trait that typed events implement, and the bytes a tap sees of one.

use bytes::Bytes;
use serde::Serialize;
use smol_str::SmolStr;

use crate::{EncodeError, EntityId};

/// A typed event that can be published on the bus.
///
/// `TYPE` names the event (the CloudEvents `type`); it must be a valid [`EventType`]:
/// 1 to 256 bytes of printable ASCII without spaces. An invalid `TYPE` is a compile error
/// wherever [`Envelope::from_event`] is used with the event.
///
/// Through the `syncbus` facade, `#[derive(Event)]` writes this impl from one attribute,
/// `#[event(type = "..", topic = "..", entity = field, version = field)]`, and refuses a bad
/// `TYPE` or `TOPIC` on the attribute itself, with the message [`EventType::new`] or
/// [`Topic::new`] would give. The entity field is read through [`ToEntityId`].
///
/// [`EventType`]: crate::EventType
/// [`EventType::new`]: crate::EventType::new
/// [`Topic::new`]: crate::Topic::new
/// [`ToEntityId`]: crate::ToEntityId
/// [`Envelope::from_event`]: crate::Envelope::from_event
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{EntityId, Envelope, Event};
///
/// #[derive(Clone, Debug)]
/// struct OrderPlaced {
///     order_id: u64,
///     revision: u64,
/// }
///
/// impl Event for OrderPlaced {
///     const TYPE: &'static str = "shop.order.placed";
///     const TOPIC: &'static str = "shop.orders";
///
///     fn entity_id(&self) -> Option<EntityId> {
///         Some(EntityId::from(self.order_id))
///     }
///
///     fn version(&self) -> Option<u64> {
///         Some(self.revision)
///     }
/// }
///
/// let env = Envelope::from_event(OrderPlaced { order_id: 42, revision: 1 });
/// assert_eq!(env.meta().event_type().as_str(), "shop.order.placed");
/// assert_eq!(env.meta().topic().map(|t| t.as_str()), Some("shop.orders"));
/// assert_eq!(env.meta().entity_id().map(EntityId::as_str), Some("42"));
/// assert_eq!(env.meta().version(), Some(1));
/// ```
pub trait Event: Clone + Send + Sync + 'static {
    /// Type name, e.g. `"shop.order.placed"`.
    const TYPE: &'static str;

    /// Default topic for `bus.publish(event)`; defaults to [`TYPE`](Event::TYPE). Checked at
    /// compile time when an envelope is made for the event: it must be a valid
    /// [`Topic`](crate::Topic).
    const TOPIC: &'static str = Self::TYPE;

    /// The entity this event is about, if any; becomes the envelope's
    /// [`entity_id`](crate::Metadata::entity_id).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EntityId, Event};
    ///
    /// #[derive(Clone)]
    /// struct Ping;
    /// impl Event for Ping {
    ///     const TYPE: &'static str = "ping";
    /// }
    /// assert_eq!(Ping.entity_id(), None::<EntityId>);
    /// ```
    fn entity_id(&self) -> Option<EntityId> {
        None
    }

    /// The entity's version after this event, if any; becomes the envelope's
    /// [`version`](crate::Metadata::version).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Event;
    ///
    /// #[derive(Clone)]
    /// struct Ping;
    /// impl Event for Ping {
    ///     const TYPE: &'static str = "ping";
    /// }
    /// assert_eq!(Ping.version(), None);
    /// ```
    fn version(&self) -> Option<u64> {
        None
    }

    /// The event's payload as bytes, for taps (`Bus::tap` in `syncbus-core`): audit logs,
    /// log feeds, debugging. A tap calls it only for events it matches, on its own worker
    /// (on the publisher's thread for an inline tap); typed subscriptions never do, so it
    /// costs nothing where no tap listens.
    ///
    /// The default is `None`: the type is not encodable, and a tap sees the event's full
    /// metadata and no payload. A type that implements `Serialize` overrides it in one line
    /// with [`Encoded::json`], which gives the bytes and content type
    /// [`Envelope::to_bytes_payload`](crate::Envelope::to_bytes_payload) would; any other
    /// format works too, through [`Encoded::new`]. `#[derive(Event)]` writes it: JSON for a
    /// type that is `Serialize`, not encodable for one that is not.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::Serialize;
    /// use syncbus_envelope::{Encoded, EncodeError, Event};
    ///
    /// #[derive(Clone, Serialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped {
    ///     const TYPE: &'static str = "order.shipped";
    ///     fn encode(&self) -> Option<Result<Encoded, EncodeError>> { Some(Encoded::json(self)) }
    /// }
    ///
    /// #[derive(Clone)]
    /// struct Opaque; // not serializable: the default says so
    /// impl Event for Opaque { const TYPE: &'static str = "opaque"; }
    ///
    /// let bytes = Shipped { order: 7 }.encode().unwrap()?;
    /// assert_eq!(bytes.bytes().as_ref(), br#"{"order":7}"#);
    /// assert_eq!(bytes.content_type(), Some("application/json"));
    /// assert!(Opaque.encode().is_none());
    /// # Ok::<(), EncodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Some(Err(..))` when encoding fails (a `Serialize` impl that errors, or a map JSON
    /// cannot hold): a tap then sees the metadata and the error instead of a payload.
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        None
    }
}

/// A payload as bytes, what [`Event::encode`] gives: the bytes and, when they say what
/// they are, a content type (which a tap puts in the event's metadata).
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, Encoded};
///
/// let json = Encoded::json(&serde_json::json!({ "order": 7 }))?;
/// assert_eq!(json.bytes().as_ref(), br#"{"order":7}"#);
/// assert_eq!(json.content_type(), Some("application/json"));
///
/// let raw = Encoded::new(Bytes::from_static(b"\x01\x02")).with_content_type("application/octet-stream");
/// assert_eq!(raw.content_type(), Some("application/octet-stream"));
/// # Ok::<(), syncbus_envelope::EncodeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    bytes: Bytes,
    content_type: Option<SmolStr>,
}

impl Encoded {
    /// Bytes with no content type: what they are is left as the metadata says.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    ///
    /// let e = Encoded::new(vec![1u8, 2, 3]);
    /// assert_eq!((e.bytes().len(), e.content_type()), (3, None));
    /// ```
    pub fn new(bytes: impl Into<Bytes>) -> Encoded {
        Encoded {
            bytes: bytes.into(),
            content_type: None,
        }
    }

    /// Says what the bytes are, e.g. `application/protobuf`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    ///
    /// let e = Encoded::new(vec![8u8, 7]).with_content_type("application/protobuf");
    /// assert_eq!(e.content_type(), Some("application/protobuf"));
    /// ```
    pub fn with_content_type(mut self, content_type: impl Into<SmolStr>) -> Encoded {
        self.content_type = Some(content_type.into());
        self
    }

    /// `value` as JSON, content type `application/json`: the envelope's JSON payload
    /// encoding, the same bytes as
    /// [`Envelope::to_bytes_payload`](crate::Envelope::to_bytes_payload). The one line an
    /// [`Event::encode`] override needs for a `Serialize` type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Tick(u32);
    /// assert_eq!(Encoded::json(&Tick(3))?.bytes().as_ref(), b"3");
    /// # Ok::<(), syncbus_envelope::EncodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError::Serialize`] if the `Serialize` impl fails or yields something JSON
    /// cannot hold, such as a map with non-string keys.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use syncbus_envelope::{Encoded, EncodeError};
    ///
    /// let map = BTreeMap::from([((1, 2), "a tuple key")]);
    /// assert!(matches!(Encoded::json(&map), Err(EncodeError::Serialize { .. })));
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, EncodeError> {
        let json = serde_json::to_vec(value).map_err(|e| EncodeError::Serialize {
            source: Box::new(e),
        })?;
        Ok(Encoded::new(json).with_content_type(SmolStr::new_static("application/json")))
    }

    /// The bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    /// assert_eq!(Encoded::new(&b"hi"[..]).bytes().as_ref(), b"hi");
    /// ```
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// What the bytes are, if said.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    /// assert_eq!(Encoded::json(&1)?.content_type(), Some("application/json"));
    /// # Ok::<(), syncbus_envelope::EncodeError>(())
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Splits into the bytes and the content type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Encoded;
    /// let (bytes, content_type) = Encoded::json(&true)?.into_parts();
    /// assert_eq!((bytes.as_ref(), content_type.as_deref()), (&b"true"[..], Some("application/json")));
    /// # Ok::<(), syncbus_envelope::EncodeError>(())
    /// ```
    pub fn into_parts(self) -> (Bytes, Option<SmolStr>) {
        (self.bytes, self.content_type)
    }
}
