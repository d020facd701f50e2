//! Reading an entity id out of a value: what `#[derive(Event)]` calls for `entity = field`.

use std::borrow::Cow;
use std::sync::Arc;

use smol_str::SmolStr;

use crate::EntityId;

/// A value that names an entity, such as an order number: what `#[event(entity = field)]`
/// reads an event's [`entity_id`](crate::Event::entity_id) from.
///
/// - Integers give their decimal form, without allocating.
/// - Strings are checked as [`EntityId::new`] checks them; one that is not a valid entity id
///   (empty, longer than 256 bytes, or with a control character) gives `None`, so the event
///   carries no entity id, as `EntityId::new(..).ok()` in a hand-written `entity_id` would.
/// - An [`EntityId`] gives itself, an `Option` its value's id or `None`, and references,
///   `Box`, `Arc` and `Cow` what they point to.
///
/// Implement it for an id type of your own.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{EntityId, ToEntityId};
///
/// assert_eq!(42u64.to_entity_id(), Some(EntityId::from(42u64)));
/// assert_eq!("order-42".to_entity_id(), EntityId::new("order-42").ok());
/// assert_eq!("".to_entity_id(), None);
/// assert_eq!(None::<u32>.to_entity_id(), None);
///
/// struct Sku(String);
///
/// impl ToEntityId for Sku {
///     fn to_entity_id(&self) -> Option<EntityId> {
///         EntityId::new(format!("sku-{}", self.0)).ok()
///     }
/// }
///
/// assert_eq!(Sku("7".into()).to_entity_id().unwrap().as_str(), "sku-7");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not name an entity: it does not implement `ToEntityId`",
    label = "the entity id is read from this",
    note = "integers, strings, `EntityId` and `Option`s of them do; implement `ToEntityId` for `{Self}`, or write `Event::entity_id` by hand"
)]
pub trait ToEntityId {
    /// The entity id this value names, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ToEntityId;
    ///
    /// assert_eq!((-7i32).to_entity_id().unwrap().as_str(), "-7");
    /// ```
    fn to_entity_id(&self) -> Option<EntityId>;
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl ToEntityId for $ty {
            #[inline]
            fn to_entity_id(&self) -> Option<EntityId> {
                Some(EntityId::from(*self as u64))
            }
        }
    )*};
}

macro_rules! signed {
    ($($ty:ty),*) => {$(
        impl ToEntityId for $ty {
            #[inline]
            fn to_entity_id(&self) -> Option<EntityId> {
                Some(EntityId::from(*self as i64))
            }
        }
    )*};
}

// `usize` and `isize` are at most 64 bits on every target Rust supports, so `as` is lossless.
unsigned!(u8, u16, u32, u64, usize);
signed!(i8, i16, i32, i64, isize);

impl ToEntityId for EntityId {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        Some(self.clone())
    }
}

impl ToEntityId for str {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        EntityId::new(self).ok()
    }
}

impl ToEntityId for String {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        EntityId::new(self).ok()
    }
}

impl ToEntityId for SmolStr {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        EntityId::new(self).ok()
    }
}

impl<T: ToEntityId> ToEntityId for Option<T> {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        self.as_ref().and_then(T::to_entity_id)
    }
}

impl<T: ToEntityId + ?Sized> ToEntityId for &T {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        (**self).to_entity_id()
    }
}

impl<T: ToEntityId + ?Sized> ToEntityId for Box<T> {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        (**self).to_entity_id()
    }
}

impl<T: ToEntityId + ?Sized> ToEntityId for Arc<T> {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        (**self).to_entity_id()
    }
}

impl<T: ToEntityId + ToOwned + ?Sized> ToEntityId for Cow<'_, T> {
    #[inline]
    fn to_entity_id(&self) -> Option<EntityId> {
        (**self).to_entity_id()
    }
}
