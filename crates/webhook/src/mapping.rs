//! From a webhook's JSON body to the event's type, topic, entity id and version.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use syncbus_envelope::{EntityId, EventType, Topic};

/// What a [`Mapping`] gives for one body.
///
/// # Examples
///
/// ```
/// use syncbus_core::{EventType, Topic};
/// use syncbus_webhook::Mapped;
/// let m = Mapped::new(EventType::new("github.push")?, Topic::new("webhooks.github")?);
/// assert_eq!(m.event_type.as_str(), "github.push");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Mapped {
    /// The event type.
    pub event_type: EventType,
    /// The topic it is appended (and later published) under.
    pub topic: Topic,
    /// The entity the event is about, for per-entity order.
    pub entity: Option<EntityId>,
    /// The entity's version, for resequencing.
    pub version: Option<u64>,
}

impl Mapped {
    /// A type and a topic, no entity, no version.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{EventType, Topic};
    /// let m = syncbus_webhook::Mapped::new(EventType::new("a.b")?, Topic::new("a")?);
    /// assert!(m.entity.is_none() && m.version.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(event_type: EventType, topic: Topic) -> Mapped {
        Mapped {
            event_type,
            topic,
            entity: None,
            version: None,
        }
    }

    /// With an entity id.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{EntityId, EventType, Topic};
    /// let m = syncbus_webhook::Mapped::new(EventType::new("a.b")?, Topic::new("a")?)
    ///     .with_entity(EntityId::new("user-7")?);
    /// assert_eq!(m.entity.unwrap().as_str(), "user-7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_entity(mut self, entity: EntityId) -> Mapped {
        self.entity = Some(entity);
        self
    }

    /// With a version.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{EventType, Topic};
    /// let m = syncbus_webhook::Mapped::new(EventType::new("a.b")?, Topic::new("a")?).with_version(3);
    /// assert_eq!(m.version, Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_version(mut self, version: u64) -> Mapped {
        self.version = Some(version);
        self
    }
}

/// Why a body could not be mapped: answered 400 with this message.
///
/// # Examples
///
/// ```
/// let e = syncbus_webhook::MapError::new("no event type at /type");
/// assert_eq!(e.to_string(), "no event type at /type");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MapError(String);

impl MapError {
    /// An error with this message (shown to the sender: name no secret).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_webhook::MapError::new("x").message(), "x");
    /// ```
    pub fn new(message: impl Into<String>) -> MapError {
        MapError(message.into())
    }

    /// The message.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_webhook::MapError::new("bad").message(), "bad");
    /// ```
    pub fn message(&self) -> &str {
        &self.0
    }
}

type MapFn = dyn Fn(&Value) -> Result<Mapped, MapError> + Send + Sync;

/// How a source's JSON bodies become event metadata: JSON pointers (RFC 6901) into the
/// body, with fixed defaults, or a closure.
///
/// The default maps every body of source `NAME` to event type `webhook.NAME` on topic
/// `webhooks.NAME`, with no entity and no version.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use syncbus_webhook::Mapping;
///
/// let m = Mapping::new()
///     .event_type_at("/type")
///     .entity_at("/data/user_id")
///     .version_at("/data/version");
/// let mapped = m.map("billing", &json!({"type": "invoice.paid", "data": {"user_id": 7, "version": 2}}))?;
/// assert_eq!(mapped.event_type.as_str(), "invoice.paid");
/// assert_eq!(mapped.topic.as_str(), "webhooks.billing");
/// assert_eq!(mapped.entity.unwrap().as_str(), "7");
/// assert_eq!(mapped.version, Some(2));
/// assert!(m.map("billing", &json!({"data": {}})).is_err()); // no /type
/// # Ok::<(), syncbus_webhook::MapError>(())
/// ```
#[derive(Clone, Default)]
pub struct Mapping {
    event_type: Option<String>,
    topic: Option<String>,
    entity: Option<String>,
    version: Option<String>,
    custom: Option<Arc<MapFn>>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("event_type", &self.event_type)
            .field("topic", &self.topic)
            .field("entity", &self.entity)
            .field("version", &self.version)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

fn text_at(body: &Value, pointer: &str, what: &str) -> Result<String, MapError> {
    match body.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(MapError::new(format!(
            "{what} at {pointer} is not a string"
        ))),
        None => Err(MapError::new(format!("no {what} at {pointer}"))),
    }
}

impl Mapping {
    /// The default mapping (see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = syncbus_webhook::Mapping::new().map("shop", &serde_json::json!({}))?;
    /// assert_eq!(m.event_type.as_str(), "webhook.shop");
    /// # Ok::<(), syncbus_webhook::MapError>(())
    /// ```
    pub fn new() -> Mapping {
        Mapping::default()
    }

    /// A mapping computed by `f` from the parsed body.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{EventType, Topic};
    /// use syncbus_webhook::{MapError, Mapped, Mapping};
    /// let m = Mapping::with(|body| {
    ///     let kind = body["kind"].as_str().ok_or_else(|| MapError::new("no kind"))?;
    ///     let ty = EventType::new(format!("crm.{kind}")).map_err(|e| MapError::new(e.to_string()))?;
    ///     Ok(Mapped::new(ty, Topic::from_static("crm.events")))
    /// });
    /// assert_eq!(m.map("crm", &serde_json::json!({"kind": "lead"}))?.event_type.as_str(), "crm.lead");
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn with(f: impl Fn(&Value) -> Result<Mapped, MapError> + Send + Sync + 'static) -> Mapping {
        Mapping {
            custom: Some(Arc::new(f)),
            ..Mapping::default()
        }
    }

    /// Takes the event type from the string at this JSON pointer.
    ///
    /// # Examples
    ///
    /// See [`Mapping`].
    pub fn event_type_at(mut self, pointer: impl Into<String>) -> Mapping {
        self.event_type = Some(pointer.into());
        self
    }

    /// Takes the topic from the string at this JSON pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = syncbus_webhook::Mapping::new().topic_at("/topic");
    /// let mapped = m.map("s", &serde_json::json!({"topic": "orders.eu"}))?;
    /// assert_eq!(mapped.topic.as_str(), "orders.eu");
    /// # Ok::<(), syncbus_webhook::MapError>(())
    /// ```
    pub fn topic_at(mut self, pointer: impl Into<String>) -> Mapping {
        self.topic = Some(pointer.into());
        self
    }

    /// Takes the entity id from the string or number at this JSON pointer.
    ///
    /// # Examples
    ///
    /// See [`Mapping`].
    pub fn entity_at(mut self, pointer: impl Into<String>) -> Mapping {
        self.entity = Some(pointer.into());
        self
    }

    /// Takes the version from the unsigned integer at this JSON pointer.
    ///
    /// # Examples
    ///
    /// See [`Mapping`].
    pub fn version_at(mut self, pointer: impl Into<String>) -> Mapping {
        self.version = Some(pointer.into());
        self
    }

    /// Maps one body of source `source`.
    ///
    /// # Examples
    ///
    /// See [`Mapping`].
    ///
    /// # Errors
    ///
    /// [`MapError`] naming the pointer that found nothing, or the name that is not valid.
    pub fn map(&self, source: &str, body: &Value) -> Result<Mapped, MapError> {
        if let Some(f) = &self.custom {
            return f(body);
        }
        let bad = |what: &str, e: syncbus_envelope::NameError| {
            MapError::new(format!("the {what} is not valid: {e}"))
        };
        let event_type = match &self.event_type {
            Some(p) => text_at(body, p, "event type")?,
            None => format!("webhook.{source}"),
        };
        let event_type = EventType::new(event_type).map_err(|e| bad("event type", e))?;
        let topic = match &self.topic {
            Some(p) => text_at(body, p, "topic")?,
            None => format!("webhooks.{source}"),
        };
        let topic = Topic::new(topic).map_err(|e| bad("topic", e))?;
        let mut mapped = Mapped::new(event_type, topic);
        if let Some(p) = &self.entity {
            let id = text_at(body, p, "entity id")?;
            mapped.entity = Some(EntityId::new(id).map_err(|e| bad("entity id", e))?);
        }
        if let Some(p) = &self.version {
            let v = body
                .pointer(p)
                .and_then(Value::as_u64)
                .ok_or_else(|| MapError::new(format!("no unsigned integer version at {p}")))?;
            mapped.version = Some(v);
        }
        Ok(mapped)
    }
}
