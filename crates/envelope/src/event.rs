//! The trait that typed events implement.

use crate::EntityId;

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
}
