//! Metadata carried by every envelope.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use smol_str::SmolStr;

use crate::{EntityId, EventId, EventType, Headers, Timestamp, Topic};

/// Everything about an event except its payload.
///
/// The fields every event uses (id, type, topic, entity id, version) are stored inline. The
/// rarer ones (source, subject, explicit time, correlation and causation ids, headers,
/// content type, data schema) live in one shared, copy-on-write block that is only allocated
/// once one of them is set. Cloning metadata therefore never allocates.
///
/// The time of metadata made by [`Metadata::new`] is the one its UUIDv7 id carries, at no
/// cost, until [`set_time`](Metadata::set_time) or [`clear_time`](Metadata::clear_time)
/// says otherwise. Metadata decoded from an event has exactly the time the event has: none
/// when it has none, whatever its id looks like.
///
/// | getter | CloudEvents attribute |
/// | --- | --- |
/// | [`id`](Metadata::id) | `id` |
/// | [`event_type`](Metadata::event_type) | `type` |
/// | [`source`](Metadata::source) | `source` |
/// | [`subject`](Metadata::subject) | `subject` |
/// | [`time`](Metadata::time) | `time` |
/// | [`content_type`](Metadata::content_type) | `datacontenttype` |
/// | [`dataschema`](Metadata::dataschema) | `dataschema` |
/// | [`topic`](Metadata::topic) | `topic` (extension) |
/// | [`entity_id`](Metadata::entity_id) | `entityid` (extension) |
/// | [`version`](Metadata::version) | `entityversion` (extension) |
/// | [`correlation_id`](Metadata::correlation_id) | `correlationid` (extension) |
/// | [`causation_id`](Metadata::causation_id) | `causationid` (extension) |
/// | [`headers`](Metadata::headers) | one extension attribute each |
///
/// Two metadata values are equal when every getter returns the same value (so an explicit
/// time equal to the time carried by the id compares equal to no explicit time) and
/// CloudEvents JSON would write their payloads in the same form: a decoded event remembers
/// the form its data came in (`"data":""`, `"data_base64":""` or no data, say) where the
/// encoder would not pick that form by itself.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{EntityId, EventType, Metadata, Topic};
///
/// let meta = Metadata::new(EventType::from_static("shop.order.placed"))
///     .with_topic(Topic::new("shop.orders")?)
///     .with_entity_id(Some(EntityId::from(42u64)))
///     .with_version(Some(3));
///
/// assert_eq!(meta.topic().map(Topic::as_str), Some("shop.orders"));
/// assert_eq!(meta.version(), Some(3));
/// assert!(meta.time().is_some()); // taken from the UUIDv7 id
/// assert!(meta.headers().is_empty());
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone)]
pub struct Metadata {
    id: EventId,
    event_type: EventType,
    topic: Option<Topic>,
    entity_id: Option<EntityId>,
    /// `version + 1`, so that `None` needs no tag and the metadata stays small enough to be
    /// moved inline; `u64::MAX` itself is flagged in `ext`.
    version: Option<NonZeroU64>,
    ext: Option<Arc<Ext>>,
}

#[derive(Clone, Default, PartialEq)]
struct Ext {
    source: Option<SmolStr>,
    subject: Option<SmolStr>,
    time: TimeSlot,
    correlation_id: Option<EventId>,
    causation_id: Option<EventId>,
    headers: Headers,
    content_type: Option<SmolStr>,
    dataschema: Option<SmolStr>,
    data_form: DataForm,
    version_max: bool,
}

/// How CloudEvents JSON writes the payload. Decoders set it only where the payload came in
/// another form than `Auto` would choose, so an event goes out in the form it came in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum DataForm {
    /// The encoder chooses from the content type and the payload.
    #[default]
    Auto,
    /// No `data` member (for an empty payload).
    Absent,
    /// `data` holding the payload as a JSON value.
    Json,
    /// `data` holding the payload as a JSON string (text).
    Text,
    /// `data_base64`.
    Binary,
}

/// Where the event's time comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TimeSlot {
    /// The time the id carries, if it is a UUIDv7 (metadata made here).
    #[default]
    FromId,
    /// A time set or decoded.
    At(Timestamp),
    /// No time, whatever the id.
    Absent,
}

static EMPTY_EXT: Ext = Ext {
    source: None,
    subject: None,
    time: TimeSlot::FromId,
    correlation_id: None,
    causation_id: None,
    headers: Headers::new(),
    content_type: None,
    dataschema: None,
    data_form: DataForm::Auto,
    version_max: false,
};

impl Metadata {
    /// Metadata for a new event of the given type, with a fresh [`EventId`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("user.signed_up"));
    /// assert_eq!(meta.event_type().as_str(), "user.signed_up");
    /// assert_eq!(meta.topic(), None);
    /// ```
    pub fn new(event_type: EventType) -> Metadata {
        Metadata::with_parts(EventId::new(), event_type, None, None, None)
    }

    /// Metadata from its inline parts, with no rare fields set.
    #[inline]
    pub(crate) fn with_parts(
        id: EventId,
        event_type: EventType,
        topic: Option<Topic>,
        entity_id: Option<EntityId>,
        version: Option<u64>,
    ) -> Metadata {
        let mut meta = Metadata {
            id,
            event_type,
            topic,
            entity_id,
            // `version + 1` cannot wrap below u64::MAX, which is flagged in `ext` below.
            version: version.and_then(|v| NonZeroU64::new(v.wrapping_add(1))),
            ext: None,
        };
        if version == Some(u64::MAX) {
            meta.set_version(version);
        }
        meta
    }

    /// Moves the topic out (queues carry it separately).
    pub(crate) fn take_topic(&mut self) -> Option<Topic> {
        self.topic.take()
    }

    fn ext(&self) -> &Ext {
        self.ext.as_deref().unwrap_or(&EMPTY_EXT)
    }

    fn ext_mut(&mut self) -> &mut Ext {
        Arc::make_mut(self.ext.get_or_insert_with(Default::default))
    }

    /// The event's id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventId, EventType, Metadata};
    ///
    /// let id = EventId::parse("abc-1")?;
    /// let meta = Metadata::new(EventType::from_static("t")).with_id(id.clone());
    /// assert_eq!(meta.id(), &id);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The event's type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b"));
    /// assert_eq!(meta.event_type().as_str(), "a.b");
    /// ```
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// The topic the event is published on, if set. It was validated when the [`Topic`] was
    /// made, so the bus routes it without parsing it again.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata, Topic};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_topic(Topic::from_static("orders.eu"));
    /// assert_eq!(meta.topic().map(Topic::as_str), Some("orders.eu"));
    /// ```
    pub fn topic(&self) -> Option<&Topic> {
        self.topic.as_ref()
    }

    /// The producer's source URI reference, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_source("/shop/checkout");
    /// assert_eq!(meta.source(), Some("/shop/checkout"));
    /// ```
    pub fn source(&self) -> Option<&str> {
        self.ext().source.as_deref()
    }

    /// When the event happened: the explicit time if one was set or decoded; for metadata
    /// made here (see the type's docs) the time carried by a UUIDv7 id (millisecond
    /// precision); else `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventId, EventType, Metadata, Timestamp};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b"));
    /// assert!(meta.time().is_some());
    ///
    /// let t = Timestamp::from_unix_millis(1_700_000_000_000);
    /// assert_eq!(meta.with_time(t).time(), Some(t));
    ///
    /// let foreign = Metadata::new(EventType::from_static("a.b")).with_id(EventId::parse("x")?);
    /// assert_eq!(foreign.time(), None);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn time(&self) -> Option<Timestamp> {
        match self.ext().time {
            TimeSlot::FromId => self.id.timestamp_ms().map(Timestamp::from_unix_millis),
            TimeSlot::At(t) => Some(t),
            TimeSlot::Absent => None,
        }
    }

    /// Where the time comes from.
    pub(crate) fn time_slot(&self) -> TimeSlot {
        self.ext().time
    }

    /// How CloudEvents JSON writes the payload.
    pub(crate) fn data_form(&self) -> DataForm {
        self.ext().data_form
    }

    /// Sets how CloudEvents JSON writes the payload, allocating nothing for the default.
    pub(crate) fn set_data_form(&mut self, form: DataForm) {
        self.set_ext_opt(|e| e.data_form = form);
    }

    /// Sets where the time comes from, allocating nothing for the default.
    pub(crate) fn set_time_slot(&mut self, slot: TimeSlot) {
        self.set_ext_opt(|e| e.time = slot);
    }

    /// The `subject`: what the event is about within its source, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("blob.created")).with_subject("mynewfile.jpg");
    /// assert_eq!(meta.subject(), Some("mynewfile.jpg"));
    /// ```
    pub fn subject(&self) -> Option<&str> {
        self.ext().subject.as_deref()
    }

    /// The `dataschema`: the URI of the schema the payload adheres to, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b"))
    ///     .with_dataschema("https://example.com/schemas/order.json");
    /// assert_eq!(meta.dataschema(), Some("https://example.com/schemas/order.json"));
    /// ```
    pub fn dataschema(&self) -> Option<&str> {
        self.ext().dataschema.as_deref()
    }

    /// The id of the entity the event is about, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EntityId, EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_entity_id(Some(EntityId::from(7u32)));
    /// assert_eq!(meta.entity_id().map(EntityId::as_str), Some("7"));
    /// ```
    pub fn entity_id(&self) -> Option<&EntityId> {
        self.entity_id.as_ref()
    }

    /// The entity's version after this event, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_version(Some(12));
    /// assert_eq!(meta.version(), Some(12));
    /// ```
    pub fn version(&self) -> Option<u64> {
        match self.version {
            Some(v) => Some(v.get() - 1),
            None => self.ext().version_max.then_some(u64::MAX),
        }
    }

    /// The id shared by all events of one conversation or workflow, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventId, EventType, Metadata};
    ///
    /// let first = Metadata::new(EventType::from_static("a.b"));
    /// let next = Metadata::new(EventType::from_static("a.c"))
    ///     .with_correlation_id(Some(first.id().clone()));
    /// assert_eq!(next.correlation_id(), Some(first.id()));
    /// ```
    pub fn correlation_id(&self) -> Option<&EventId> {
        self.ext().correlation_id.as_ref()
    }

    /// The id of the event that directly caused this one, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let cause = Metadata::new(EventType::from_static("a.b"));
    /// let effect = Metadata::new(EventType::from_static("a.c"))
    ///     .with_causation_id(Some(cause.id().clone()));
    /// assert_eq!(effect.causation_id(), Some(cause.id()));
    /// ```
    pub fn causation_id(&self) -> Option<&EventId> {
        self.ext().causation_id.as_ref()
    }

    /// The user headers; empty unless some were set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// assert!(meta.headers().is_empty());
    /// meta.headers_mut().insert("tenant", "acme")?;
    /// assert_eq!(meta.headers().get("tenant"), Some("acme"));
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn headers(&self) -> &Headers {
        &self.ext().headers
    }

    /// The payload's media type, such as `application/json`, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_content_type("text/plain");
    /// assert_eq!(meta.content_type(), Some("text/plain"));
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.ext().content_type.as_deref()
    }

    /// Mutable access to the headers; allocates the rare-field block if needed.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{EventType, Metadata};
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.headers_mut().insert("region", "eu")?;
    /// assert_eq!(meta.headers().len(), 1);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.ext_mut().headers
    }
}

impl Metadata {
    /// Sets the event id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_id(EventId::parse("order-42-placed")?);
    /// assert_eq!(meta.id().to_string(), "order-42-placed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_id(&mut self, id: EventId) {
        self.id = id;
    }

    /// Builder form of [`set_id`](Metadata::set_id).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_id(EventId::parse("order-42-placed")?);
    /// assert_eq!(meta.id().to_string(), "order-42-placed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.set_id(id);
        self
    }

    /// Sets the topic. A [`Topic`] is valid by construction; from a string use
    /// [`Topic::new`], which says what is wrong with a bad one.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_topic(Topic::new("shop.orders")?);
    /// assert_eq!(meta.topic().map(Topic::as_str), Some("shop.orders"));
    /// assert!(Topic::new("shop..orders").is_err()); // never reaches the metadata
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_topic(&mut self, topic: Topic) {
        self.topic = Some(topic);
        self.drop_foreign("topic");
    }

    /// Builder form of [`set_topic`](Metadata::set_topic).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_topic(Topic::new("shop.orders")?);
    /// assert_eq!(meta.topic().map(Topic::as_str), Some("shop.orders"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_topic(mut self, topic: Topic) -> Self {
        self.set_topic(topic);
        self
    }

    /// Sets the source URI reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_source("/shop/checkout");
    /// assert_eq!(meta.source(), Some("/shop/checkout"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_source(&mut self, source: impl Into<SmolStr>) {
        self.ext_mut().source = Some(source.into());
    }

    /// Builder form of [`set_source`](Metadata::set_source).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_source("/shop/checkout");
    /// assert_eq!(meta.source(), Some("/shop/checkout"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_source(mut self, source: impl Into<SmolStr>) -> Self {
        self.set_source(source);
        self
    }

    /// Sets an explicit event time, overriding the time carried by the id.
    ///
    /// A time is kept to the nanosecond, in UTC; CloudEvents JSON writes it in RFC 3339.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_time(Timestamp::from_unix_millis(1_700_000_000_000));
    /// assert_eq!(meta.time(), Some(Timestamp::from_unix_millis(1_700_000_000_000)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_time(&mut self, time: Timestamp) {
        self.ext_mut().time = TimeSlot::At(time);
    }

    /// Clears the time: [`time`](Metadata::time) is `None` from now on, even for a UUIDv7
    /// id, and CloudEvents JSON leaves `time` out.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// assert!(meta.time().is_some());
    /// meta.clear_time();
    /// assert_eq!(meta.time(), None);
    /// ```
    pub fn clear_time(&mut self) {
        self.ext_mut().time = TimeSlot::Absent;
    }

    /// Sets or clears (with `None`) the `subject`.
    ///
    /// Any text is kept; CloudEvents JSON refuses to encode one with a control character.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_subject("order-42");
    /// assert_eq!(meta.subject(), Some("order-42"));
    /// ```
    pub fn set_subject(&mut self, subject: impl Into<SmolStr>) {
        self.ext_mut().subject = Some(subject.into());
    }

    /// Builder form of [`set_subject`](Metadata::set_subject).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_subject("order-42");
    /// assert_eq!(meta.subject(), Some("order-42"));
    /// ```
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<SmolStr>) -> Self {
        self.set_subject(subject);
        self
    }

    /// Clears the `subject`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b")).with_subject("x");
    /// meta.clear_subject();
    /// assert_eq!(meta.subject(), None);
    /// ```
    pub fn clear_subject(&mut self) {
        self.set_ext_opt(|e| e.subject = None);
    }

    /// Sets the `dataschema` URI.
    ///
    /// Any text is kept; CloudEvents JSON refuses to encode one that is not an absolute URI.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_dataschema("urn:example:order:v2");
    /// assert_eq!(meta.dataschema(), Some("urn:example:order:v2"));
    /// ```
    pub fn set_dataschema(&mut self, dataschema: impl Into<SmolStr>) {
        self.ext_mut().dataschema = Some(dataschema.into());
    }

    /// Builder form of [`set_dataschema`](Metadata::set_dataschema).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_dataschema("urn:example:order:v2");
    /// assert_eq!(meta.dataschema(), Some("urn:example:order:v2"));
    /// ```
    #[must_use]
    pub fn with_dataschema(mut self, dataschema: impl Into<SmolStr>) -> Self {
        self.set_dataschema(dataschema);
        self
    }

    /// Clears the `dataschema`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b")).with_dataschema("urn:x");
    /// meta.clear_dataschema();
    /// assert_eq!(meta.dataschema(), None);
    /// ```
    pub fn clear_dataschema(&mut self) {
        self.set_ext_opt(|e| e.dataschema = None);
    }

    /// Drops a decoded foreign attribute that used a syncbus field's name, once the field is
    /// set: the field is what goes out from now on.
    fn drop_foreign(&mut self, name: &str) {
        if self
            .ext
            .as_deref()
            .is_some_and(|e| e.headers.may_hold_foreign() && e.headers.value(name).is_some())
        {
            self.ext_mut().headers.remove(name);
        }
    }

    /// Builder form of [`set_time`](Metadata::set_time).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_time(Timestamp::from_unix_millis(1_700_000_000_000));
    /// assert_eq!(meta.time(), Some(Timestamp::from_unix_millis(1_700_000_000_000)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_time(mut self, time: Timestamp) -> Self {
        self.set_time(time);
        self
    }

    /// Sets or clears (with `None`) the entity id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_entity_id(Some(EntityId::new("order-42")?));
    /// assert_eq!(meta.entity_id().map(EntityId::as_str), Some("order-42"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_entity_id(&mut self, entity_id: Option<EntityId>) {
        self.entity_id = entity_id;
        self.drop_foreign("entityid");
    }

    /// Builder form of [`set_entity_id`](Metadata::set_entity_id).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_entity_id(Some(EntityId::new("order-42")?));
    /// assert_eq!(meta.entity_id().map(EntityId::as_str), Some("order-42"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_entity_id(mut self, entity_id: Option<EntityId>) -> Self {
        self.set_entity_id(entity_id);
        self
    }

    /// Sets or clears (with `None`) the version.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_version(Some(4));
    /// assert_eq!(meta.version(), Some(4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_version(&mut self, version: Option<u64>) {
        self.version = version.and_then(|v| NonZeroU64::new(v.wrapping_add(1)));
        let max = version == Some(u64::MAX);
        if max || self.ext().version_max {
            self.ext_mut().version_max = max;
        }
        self.drop_foreign("entityversion");
    }

    /// Builder form of [`set_version`](Metadata::set_version).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_version(Some(4));
    /// assert_eq!(meta.version(), Some(4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.set_version(version);
        self
    }

    /// Sets or clears (with `None`) the correlation id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_correlation_id(Some(EventId::parse("conv-1")?));
    /// assert_eq!(meta.correlation_id().map(ToString::to_string).as_deref(), Some("conv-1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_correlation_id(&mut self, correlation_id: Option<EventId>) {
        self.set_ext_opt(|e| e.correlation_id = correlation_id);
        self.drop_foreign("correlationid");
    }

    /// Builder form of [`set_correlation_id`](Metadata::set_correlation_id).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_correlation_id(Some(EventId::parse("conv-1")?));
    /// assert_eq!(meta.correlation_id().map(ToString::to_string).as_deref(), Some("conv-1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: Option<EventId>) -> Self {
        self.set_correlation_id(correlation_id);
        self
    }

    /// Sets or clears (with `None`) the causation id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_causation_id(Some(EventId::parse("cmd-9")?));
    /// assert_eq!(meta.causation_id().map(ToString::to_string).as_deref(), Some("cmd-9"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_causation_id(&mut self, causation_id: Option<EventId>) {
        self.set_ext_opt(|e| e.causation_id = causation_id);
        self.drop_foreign("causationid");
    }

    /// Builder form of [`set_causation_id`](Metadata::set_causation_id).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_causation_id(Some(EventId::parse("cmd-9")?));
    /// assert_eq!(meta.causation_id().map(ToString::to_string).as_deref(), Some("cmd-9"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: Option<EventId>) -> Self {
        self.set_causation_id(causation_id);
        self
    }

    /// Sets the user headers, replacing any set before.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_headers({ let mut h = Headers::new(); h.insert("tenant", "acme")?; h });
    /// assert_eq!(meta.headers().get("tenant"), Some("acme"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_headers(&mut self, headers: Headers) {
        self.set_ext_opt(|e| e.headers = headers);
    }

    /// Builder form of [`set_headers`](Metadata::set_headers).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_headers({ let mut h = Headers::new(); h.insert("tenant", "acme")?; h });
    /// assert_eq!(meta.headers().get("tenant"), Some("acme"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.set_headers(headers);
        self
    }

    /// Sets the payload media type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let mut meta = Metadata::new(EventType::from_static("a.b"));
    /// meta.set_content_type("application/json");
    /// assert_eq!(meta.content_type(), Some("application/json"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_content_type(&mut self, content_type: impl Into<SmolStr>) {
        self.ext_mut().content_type = Some(content_type.into());
    }

    /// Builder form of [`set_content_type`](Metadata::set_content_type).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::*;
    ///
    /// let meta = Metadata::new(EventType::from_static("a.b")).with_content_type("application/json");
    /// assert_eq!(meta.content_type(), Some("application/json"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<SmolStr>) -> Self {
        self.set_content_type(content_type);
        self
    }

    /// Applies `f` to the rare-field block, skipping the allocation when it would only
    /// store empty values into metadata that has none.
    fn set_ext_opt(&mut self, f: impl FnOnce(&mut Ext)) {
        if self.ext.is_none() {
            let mut ext = Ext::default();
            f(&mut ext);
            if ext != EMPTY_EXT {
                self.ext = Some(Arc::new(ext));
            }
        } else {
            f(self.ext_mut());
        }
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.event_type == other.event_type
            && self.topic == other.topic
            && self.entity_id == other.entity_id
            && self.version() == other.version()
            && self.source() == other.source()
            && self.subject() == other.subject()
            && self.time() == other.time()
            && self.correlation_id() == other.correlation_id()
            && self.causation_id() == other.causation_id()
            && self.headers() == other.headers()
            && self.content_type() == other.content_type()
            && self.dataschema() == other.dataschema()
            && self.data_form() == other.data_form()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Metadata");
        d.field("id", &self.id)
            .field("event_type", &self.event_type);
        if let Some(topic) = self.topic() {
            d.field("topic", &topic.as_str());
        }
        if let Some(entity_id) = &self.entity_id {
            d.field("entity_id", entity_id);
        }
        if let Some(version) = self.version() {
            d.field("version", &version);
        }
        let ext = self.ext();
        if let Some(source) = &ext.source {
            d.field("source", source);
        }
        if let Some(subject) = &ext.subject {
            d.field("subject", subject);
        }
        match &ext.time {
            TimeSlot::FromId => {}
            TimeSlot::At(time) => {
                d.field("time", time);
            }
            TimeSlot::Absent => {
                d.field("time", &None::<Timestamp>);
            }
        }
        if let Some(id) = &ext.correlation_id {
            d.field("correlation_id", id);
        }
        if let Some(id) = &ext.causation_id {
            d.field("causation_id", id);
        }
        if !ext.headers.is_empty() {
            d.field("headers", &ext.headers);
        }
        if let Some(content_type) = &ext.content_type {
            d.field("content_type", content_type);
        }
        if let Some(dataschema) = &ext.dataschema {
            d.field("dataschema", dataschema);
        }
        if ext.data_form != DataForm::Auto {
            d.field("data_form", &ext.data_form);
        }
        d.finish()
    }
}
