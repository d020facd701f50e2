//! `#[derive(Event)]` for syncbus: an event's type name, default topic, entity id and
//! version, written as one attribute and checked while it compiles.
//!
//! Use it through the facade, where the derive and the trait share the name `Event` (as
//! serde's derives and traits do), with the `derive` feature (on by default):
//!
//! ```
//! use syncbus::prelude::*;
//!
//! #[derive(Clone, Debug, Event)]
//! #[event(type = "shop.order.placed", topic = "orders.placed", entity = order)]
//! struct OrderPlaced {
//!     order: u64,
//!     total_cents: u64,
//! }
//!
//! let env = Envelope::from_event(OrderPlaced { order: 7, total_cents: 1999 });
//! assert_eq!(env.meta().event_type().as_str(), "shop.order.placed");
//! assert_eq!(env.meta().entity_id().map(EntityId::as_str), Some("7"));
//! ```
//!
//! The attributes are documented on the derive, [`Event`](derive@Event). The names are
//! checked with the very functions the runtime uses (`syncbus-names`), so what compiles is
//! what `Topic::new` and `EventType::new` accept, and a refusal reads the same.

mod attr;
mod errors;
mod expand;

use proc_macro::TokenStream;

/// Implements `syncbus::Event` for a struct from one `#[event(..)]` attribute.
///
/// ```
/// use syncbus::prelude::*;
///
/// #[derive(Clone, Debug, Event)]
/// #[event(type = "shop.order.status", topic = "orders.status", entity = order, version = step)]
/// struct OrderStatus {
///     order: u64,
///     step: u64,
///     status: &'static str,
/// }
///
/// let bus = Bus::new();
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let _sub = bus.subscribe::<OrderStatus>("orders.>")?.inline(move |env| {
///     let meta = env.meta();
///     log.lock().unwrap().push((
///         meta.event_type().to_string(),
///         meta.topic().map(|t| t.to_string()),
///         meta.entity_id().map(|id| id.to_string()),
///         meta.version(),
///     ));
/// })?;
/// bus.blocking_publish(OrderStatus { order: 7, step: 2, status: "paid" })?;
/// assert_eq!(
///     seen.lock().unwrap()[0],
///     ("shop.order.status".into(), Some("orders.status".into()), Some("7".into()), Some(2))
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It writes the impl you would write by hand, and the hand-written impl keeps working:
///
/// ```
/// use syncbus::{EntityId, Event};
///
/// #[derive(Clone, Debug)]
/// struct OrderStatus {
///     order: u64,
///     step: u64,
///     status: &'static str,
/// }
///
/// impl Event for OrderStatus {
///     const TYPE: &'static str = "shop.order.status";
///     const TOPIC: &'static str = "orders.status";
///     fn entity_id(&self) -> Option<EntityId> {
///         Some(self.order.into())
///     }
///     fn version(&self) -> Option<u64> {
///         Some(self.step)
///     }
/// }
/// # assert_eq!(OrderStatus { order: 7, step: 2, status: "paid" }.version(), Some(2));
/// ```
///
/// # Attributes
///
/// | key | | gives | the field may be |
/// | --- | --- | --- | --- |
/// | `type = ".."` | required | `Event::TYPE`, the CloudEvents `type` | |
/// | `topic = ".."` | optional | `Event::TOPIC`; without it the topic is the type | |
/// | `entity = field` | optional | `Event::entity_id`, read from that field | any `ToEntityId`: an integer, a string, an `EntityId`, an `Option` of one, or your own id type |
/// | `version = field` | optional | `Event::version`, read from that field | `Clone + Into<u64>`: `u64`, `u32`, `u16`, `u8`, or your own type |
/// | `crate = path` | optional | where the `syncbus` items are, when it is not `::syncbus` | |
///
/// `type` has no default: it is the name other programs, stored logs, outboxes and dead
/// letters know the event by, so it must not change when the struct is renamed. Keys may be
/// spread over several `#[event(..)]` attributes; each may be given once. In a tuple struct
/// a field is its index: `entity = 0`. An entity string that is not a valid entity id gives
/// no entity id, as `EntityId::new(..).ok()` would. For anything else (an `Option<u64>`
/// version, an id computed from several fields) write the impl by hand.
///
/// `crate = path` names the crate, or a module, that has `Event`, `EntityId` and
/// `ToEntityId`: the `syncbus` dependency under another name, or `syncbus_envelope` in a
/// crate that depends on that alone.
///
/// # Checked at compile time
///
/// `type` must be a valid event type (1 to 256 bytes of printable ASCII, no spaces) and
/// `topic`, or the type when there is no `topic`, a valid topic (dot-separated non-empty
/// tokens of printable ASCII, no wildcard, at most 256 bytes and 32 tokens). A name that
/// breaks a rule is an error on the string you wrote, with the message `Topic::new` or
/// `EventType::new` would give at run time:
///
/// ```compile_fail
/// # use syncbus::Event;
/// #[derive(Clone, Event)]
/// #[event(type = "shop.order.placed", topic = "orders.*")]
/// struct OrderPlaced;
/// // error: wildcard '*' at byte 7 in topic "orders.*": only patterns may contain wildcards
/// ```
///
/// So are an unknown or repeated key, a missing `type`, a field the struct does not have,
/// and an enum or union: an event type has one `TYPE`, so each kind of event is a struct.
///
/// # Generics
///
/// A generic struct gets an impl for every instance that is `Clone + Send + Sync + 'static`
/// (the trait's own requirement) and whose `entity` and `version` fields can give an entity
/// id and a version; every instance shares one `TYPE`:
///
/// ```
/// use syncbus::Event;
///
/// #[derive(Clone, Debug, Event)]
/// #[event(type = "sync.row.changed", entity = 0)]
/// struct RowChanged<K>(K);
///
/// assert_eq!(RowChanged("sku-1".to_string()).entity_id().unwrap().as_str(), "sku-1");
/// assert_eq!(RowChanged(9u32).entity_id().unwrap().as_str(), "9");
/// ```
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
