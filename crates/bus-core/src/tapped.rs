//! What a tap sees of an event: [`Tapped`], its full metadata and its payload as bytes where
//! the payload encodes; and the type erasure that lets one tap take envelopes of every
//! payload type.
//!
//! Encoding is lazy. The publisher hands a tap a reference to the envelope ([`Tappable`]);
//! a queued tap boxes a copy of it ([`TapItem`]) and its worker encodes it there, so the
//! publisher pays a clone and a push, as for a queued subscription, and never a serializer.
//! Only an inline tap encodes on the publisher's thread, as an inline handler runs there.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use syncbus_envelope::{Bytes, EncodeError, Envelope, EventId, Metadata, Payload};

/// An event as a tap sees it: the full [`Metadata`] always, and the payload as bytes when
/// it can be encoded.
///
/// - An `Envelope<Bytes>` (from the edges, or the outbox relay) comes as it is: its bytes,
///   its metadata and content type untouched.
/// - A typed event comes encoded by its [`Event::encode`](crate::Event::encode), with the
///   content type the encoding names (`application/json` for `Encoded::json`) set in the
///   metadata.
/// - A typed event whose type is **not encodable** (`Event::encode` left at its default,
///   which returns `None`) comes with its metadata and **no payload**:
///   [`TapPayload::NotEncodable`]. Nothing is guessed or made up for it.
/// - An encoding that fails (or panics) gives the metadata and [`TapPayload::Failed`] with
///   the error.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Encoded, EncodeError, Envelope, Event, TapPayload, Tapped};
///
/// #[derive(Clone, serde::Serialize)]
/// struct Shipped { order: u64 }
/// impl Event for Shipped {
///     const TYPE: &'static str = "order.shipped";
///     fn encode(&self) -> Option<Result<Encoded, EncodeError>> { Some(Encoded::json(self)) }
/// }
///
/// #[derive(Clone)]
/// struct Secret; // not serializable
/// impl Event for Secret { const TYPE: &'static str = "secret.kept"; }
///
/// let shipped = Tapped::from_envelope(&Envelope::from_event(Shipped { order: 7 }));
/// assert_eq!(shipped.meta().event_type().as_str(), "order.shipped");
/// assert_eq!(shipped.meta().content_type(), Some("application/json"));
/// assert_eq!(shipped.payload().bytes().map(|b| b.as_ref()), Some(&br#"{"order":7}"#[..]));
///
/// let secret = Tapped::from_envelope(&Envelope::from_event(Secret));
/// assert_eq!(secret.meta().event_type().as_str(), "secret.kept");
/// assert!(matches!(secret.payload(), TapPayload::NotEncodable));
/// ```
#[derive(Clone)]
pub struct Tapped {
    meta: Metadata,
    payload: TapPayload,
    payload_type: &'static str,
}

/// The payload of a [`Tapped`] event: its bytes, or why there are none.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata, TapPayload, Tapped};
///
/// let raw = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::from_static(b"{}"));
/// match Tapped::from_envelope(&raw).payload() {
///     TapPayload::Encoded(bytes) => assert_eq!(bytes.as_ref(), b"{}"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TapPayload {
    /// The payload as bytes: a bytes envelope's own, or a typed event's encoding.
    Encoded(Bytes),
    /// The event's type is not encodable (its `Event::encode` is the default): the tap sees
    /// the metadata only.
    NotEncodable,
    /// Encoding failed (the type's `Event::encode` returned an error, or panicked).
    Failed(Arc<EncodeError>),
}

impl TapPayload {
    /// The bytes, if the payload was encoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bytes, TapPayload};
    /// assert_eq!(TapPayload::Encoded(Bytes::from_static(b"1")).bytes().map(|b| b.len()), Some(1));
    /// assert!(TapPayload::NotEncodable.bytes().is_none());
    /// ```
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            TapPayload::Encoded(bytes) => Some(bytes),
            _ => None,
        }
    }
}

impl Tapped {
    /// What a tap would see of `envelope`: the metadata, and the payload encoded now. Taps
    /// build it themselves; this is for testing a tap's handler, or for code that holds an
    /// envelope of a type it does not name.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Envelope, Event, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let env = Envelope::from_event(Ping);
    /// assert_eq!(Tapped::from_envelope(&env).id(), env.id());
    /// ```
    pub fn from_envelope<P: Payload>(envelope: &Envelope<P>) -> Tapped {
        tap(envelope.meta().clone(), envelope.payload())
    }

    /// The event's metadata, whole: id, type, topic, entity, version, time, correlation,
    /// headers (and the content type of the encoding, if it named one).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Envelope, Event, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; const TOPIC: &'static str = "pings.eu"; }
    /// let t = Tapped::from_envelope(&Envelope::from_event(Ping));
    /// assert_eq!(t.meta().topic().map(|t| t.as_str()), Some("pings.eu"));
    /// ```
    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// The event id; same as `meta().id()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Envelope, Event, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let t = Tapped::from_envelope(&Envelope::from_event(Ping));
    /// assert_eq!(t.id(), t.meta().id());
    /// ```
    pub fn id(&self) -> &EventId {
        self.meta.id()
    }

    /// The payload: its bytes, or why there are none.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Envelope, Event, TapPayload, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let t = Tapped::from_envelope(&Envelope::from_event(Ping)); // Ping does not encode
    /// assert!(matches!(t.payload(), TapPayload::NotEncodable));
    /// ```
    pub fn payload(&self) -> &TapPayload {
        &self.payload
    }

    /// The Rust type of the published payload (`std::any::type_name`, for messages and
    /// debugging only: its exact text is not stable across compilers).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata, Tapped};
    /// let raw = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::new());
    /// assert!(Tapped::from_envelope(&raw).payload_type().ends_with("Bytes"));
    /// ```
    pub fn payload_type(&self) -> &'static str {
        self.payload_type
    }

    /// The event as an `Envelope<Bytes>` (what an event log stores), or, when it has no
    /// payload, the `Tapped` handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bytes, Envelope, Event, EventType, Metadata, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let raw = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::from_static(b"{}"));
    /// let back = Tapped::from_envelope(&raw).into_envelope().ok().unwrap();
    /// assert_eq!(back, raw);
    /// assert!(Tapped::from_envelope(&Envelope::from_event(Ping)).into_envelope().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The `Tapped` itself if its payload is [`TapPayload::NotEncodable`] or
    /// [`TapPayload::Failed`].
    pub fn into_envelope(self) -> Result<Envelope<Bytes>, Tapped> {
        match self.payload {
            TapPayload::Encoded(bytes) => Ok(Envelope::new(self.meta, bytes)),
            _ => Err(self),
        }
    }

    /// Splits into metadata and payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Envelope, Event, TapPayload, Tapped};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let (meta, payload) = Tapped::from_envelope(&Envelope::from_event(Ping)).into_parts();
    /// assert_eq!(meta.event_type().as_str(), "ping");
    /// assert!(payload.bytes().is_none());
    /// ```
    pub fn into_parts(self) -> (Metadata, TapPayload) {
        (self.meta, self.payload)
    }
}

impl fmt::Debug for Tapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tapped")
            .field("meta", &self.meta)
            .field("payload", &self.payload)
            .field("payload_type", &self.payload_type)
            .finish()
    }
}

/// Encodes `payload` for a tap. A panicking encoder is a failed encoding, not a crashed
/// worker or publisher.
fn tap<P: Payload>(mut meta: Metadata, payload: &P) -> Tapped {
    let encoded = catch_unwind(AssertUnwindSafe(|| payload.encode_payload()))
        .unwrap_or_else(|panic| Some(Err(panicked(panic.as_ref()))));
    let payload = match encoded {
        None => TapPayload::NotEncodable,
        Some(Ok(encoded)) => {
            let (bytes, content_type) = encoded.into_parts();
            if let Some(content_type) = content_type {
                meta.set_content_type(content_type);
            }
            TapPayload::Encoded(bytes)
        }
        Some(Err(e)) => TapPayload::Failed(Arc::new(e)),
    };
    Tapped {
        meta,
        payload,
        payload_type: std::any::type_name::<P>(),
    }
}

#[cold]
fn panicked(panic: &(dyn Any + Send)) -> EncodeError {
    let message = if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    EncodeError::Serialize {
        source: format!("Event::encode panicked: {message}").into(),
    }
}

/// An envelope of some payload type, as dispatch hands it to a tap.
pub(crate) trait Tappable: Send + Sync {
    /// Encodes it now (an inline tap).
    fn tapped(&self) -> Tapped;
    /// A copy for a tap's queue, encoded later by its worker.
    fn boxed(&self) -> TapItem;
}

impl<P: Payload> Tappable for Envelope<P> {
    fn tapped(&self) -> Tapped {
        Tapped::from_envelope(self)
    }

    fn boxed(&self) -> TapItem {
        TapItem(Box::new(self.clone()))
    }
}

/// A queued copy of an event, not yet encoded.
pub(crate) struct TapItem(Box<dyn Untapped>);

impl TapItem {
    /// Encodes it (on the tap's worker).
    pub(crate) fn into_tapped(self) -> Tapped {
        self.0.into_tapped()
    }
}

trait Untapped: Send {
    fn into_tapped(self: Box<Self>) -> Tapped;
}

impl<P: Payload> Untapped for Envelope<P> {
    fn into_tapped(self: Box<Self>) -> Tapped {
        let (meta, payload) = (*self).into_parts();
        tap(meta, &payload)
    }
}
