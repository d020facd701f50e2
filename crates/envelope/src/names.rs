//! Validated names: event types and entity ids.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use smol_str::SmolStr;

use syncbus_names::{is_valid_event_type, EVENT_TYPE_MAX_LEN};

use crate::name_error::{check_ce_string, check_len, NameError, NameKind};

/// Longest entity id, in bytes.
const MAX_LEN: usize = 256;

/// The type of an event, such as `shop.order.placed`. Maps to the CloudEvents `type`
/// attribute.
///
/// [`EventType::new`] takes what CloudEvents allows, any `String` (spaces and non-ASCII
/// included, no control characters or Unicode noncharacters), up to 256 bytes, so the type of
/// an event from another system is kept as it came. The types syncbus code declares,
/// [`EventType::from_static`], [`Event::TYPE`](crate::Event::TYPE) and `#[derive(Event)]`,
/// keep to `syncbus-names`'s stricter rule, printable ASCII without spaces (`!` through
/// `~`), checked at compile time.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::EventType;
///
/// const PLACED: EventType = EventType::from_static("shop.order.placed");
/// assert_eq!(PLACED.as_str(), "shop.order.placed");
///
/// let parsed = EventType::new("shop.order.placed")?;
/// assert_eq!(parsed, PLACED);
/// assert_eq!(EventType::new("commande passée")?.as_str(), "commande passée");
/// assert!(EventType::new("line\nbreak").is_err());
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(SmolStr);

impl EventType {
    /// Longest event type, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventType;
    ///
    /// assert!(EventType::new("a".repeat(EventType::MAX_LEN)).is_ok());
    /// ```
    pub const MAX_LEN: usize = EVENT_TYPE_MAX_LEN;

    /// Validates and wraps an event type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventType;
    ///
    /// let t = EventType::new(String::from("billing.invoice.paid"))?;
    /// assert_eq!(t.to_string(), "billing.invoice.paid");
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NameError`] of kind [`NameKind::EventType`] if the name is empty, longer than 256
    /// bytes, or holds a control character or a Unicode noncharacter.
    ///
    /// ```
    /// use syncbus_envelope::{EventType, NameReason};
    ///
    /// assert_eq!(EventType::new("").unwrap_err().reason(), &NameReason::Empty);
    /// let err = EventType::new("order\tplaced").unwrap_err();
    /// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: '\t', byte: 5, .. }));
    /// assert!(matches!(EventType::new("x".repeat(257)).unwrap_err().reason(), NameReason::TooLong { .. }));
    /// ```
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        check_len(NameKind::EventType, name, EVENT_TYPE_MAX_LEN)?;
        check_ce_string(NameKind::EventType, name)?;
        Ok(EventType(SmolStr::new(name)))
    }

    /// Wraps a static event type without allocating; usable in `const` items.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventType;
    ///
    /// let t = EventType::from_static("shop.order.placed");
    /// assert_eq!(t.as_str(), "shop.order.placed");
    /// ```
    ///
    /// # Panics
    ///
    /// If `name` is not 1 to 256 bytes of printable ASCII without spaces. In a `const` item
    /// the check runs at compile time.
    ///
    /// ```should_panic
    /// use syncbus_envelope::EventType;
    ///
    /// let _ = EventType::from_static("not valid");
    /// ```
    pub const fn from_static(name: &'static str) -> Self {
        assert!(
            is_valid_event_type(name),
            "invalid event type: must be 1 to 256 bytes of printable ASCII without spaces"
        );
        EventType(SmolStr::new_static(name))
    }

    /// Wraps a static event type whose validity the caller has already checked.
    pub(crate) const fn from_static_unchecked(name: &'static str) -> Self {
        EventType(SmolStr::new_static(name))
    }

    /// The event type as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventType;
    ///
    /// assert_eq!(EventType::from_static("a.b").as_str(), "a.b");
    /// ```
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of the entity (aggregate, row, document) an event is about, such as `order-42`.
///
/// 1 to 256 bytes with no control characters or Unicode noncharacters (the CloudEvents
/// `String` rule). Ids of up to 23 bytes, including every
/// integer, are stored inline without a heap allocation. Maps to the CloudEvents extension
/// attribute `entityid`.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::EntityId;
///
/// let id = EntityId::new("order-42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert_eq!(EntityId::from(42u64).as_str(), "42");
/// assert_eq!(EntityId::from(-7i64).to_string(), "-7");
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(SmolStr);

impl EntityId {
    /// Longest entity id, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// assert!(EntityId::new("x".repeat(EntityId::MAX_LEN + 1)).is_err());
    /// ```
    pub const MAX_LEN: usize = MAX_LEN;

    /// Validates and wraps an entity id.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// let id = EntityId::new("customer/7 (eu)")?;
    /// assert_eq!(id.as_str(), "customer/7 (eu)");
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NameError`] of kind [`NameKind::EntityId`] if the id is empty, longer than 256
    /// bytes, or holds a control character or a Unicode noncharacter.
    ///
    /// ```
    /// use syncbus_envelope::{EntityId, NameKind};
    ///
    /// let err = EntityId::new("a\nb").unwrap_err();
    /// assert_eq!((err.kind(), err.position()), (NameKind::EntityId, Some(1)));
    /// ```
    pub fn new(id: impl AsRef<str>) -> Result<Self, NameError> {
        let id = id.as_ref();
        check_len(NameKind::EntityId, id, MAX_LEN)?;
        check_ce_string(NameKind::EntityId, id)?;
        Ok(EntityId(SmolStr::new(id)))
    }

    /// Wraps a static entity id without allocating; usable in `const` items.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// const SINGLETON: EntityId = EntityId::from_static("settings");
    /// assert_eq!(SINGLETON.as_str(), "settings");
    /// ```
    ///
    /// # Panics
    ///
    /// If `id` is not a valid entity id (see [`EntityId::new`]).
    ///
    /// ```should_panic
    /// use syncbus_envelope::EntityId;
    ///
    /// let _ = EntityId::from_static("");
    /// ```
    pub const fn from_static(id: &'static str) -> Self {
        assert!(
            is_valid_entity_id(id),
            "invalid entity id: must be 1 to 256 bytes without control characters"
        );
        EntityId(SmolStr::new_static(id))
    }

    /// The entity id as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// assert_eq!(EntityId::from(7u32).as_str(), "7");
    /// ```
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const fn is_valid_entity_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > MAX_LEN {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        // C0 controls and DEL are single bytes; C1 controls (U+0080..=U+009F) are encoded
        // as 0xC2 0x80..=0x9F, and 0xC2 is never a continuation byte in valid UTF-8.
        if b[i] < 0x20 || b[i] == 0x7F {
            return false;
        }
        if b[i] == 0xC2 && i + 1 < b.len() && b[i + 1] >= 0x80 && b[i + 1] <= 0x9F {
            return false;
        }
        i += 1;
    }
    true
}

/// Formats an integer into an inline `SmolStr` (at most 21 bytes with the sign, so never
/// allocates). In `u64` arithmetic (a division by a constant is a multiply) and straight
/// into the inline form: an entity id per published event is made here.
fn inline_int(mut n: u64, negative: bool) -> SmolStr {
    let mut buf = [0u8; 21];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    // Only ASCII digits and '-' were written, at most 21 of them (the inline limit is 23).
    SmolStr::new_inline(std::str::from_utf8(&buf[i..]).unwrap_or_default())
}

impl From<u64> for EntityId {
    /// Formats the integer in decimal, without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// assert_eq!(EntityId::from(u64::MAX).as_str(), "18446744073709551615");
    /// ```
    fn from(n: u64) -> Self {
        EntityId(inline_int(n, false))
    }
}

impl From<u32> for EntityId {
    /// Formats the integer in decimal, without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// assert_eq!(EntityId::from(0u32).as_str(), "0");
    /// ```
    fn from(n: u32) -> Self {
        EntityId(inline_int(u64::from(n), false))
    }
}

impl From<i64> for EntityId {
    /// Formats the integer in decimal, without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EntityId;
    ///
    /// assert_eq!(EntityId::from(i64::MIN).as_str(), "-9223372036854775808");
    /// ```
    fn from(n: i64) -> Self {
        EntityId(inline_int(n.unsigned_abs(), n < 0))
    }
}

macro_rules! string_like {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({:?})"), self.0.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;

                impl Visitor<'_> for V {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::new(v).map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(V)
            }
        }
    };
}

string_like!(EventType, "an event type string");
string_like!(EntityId, "an entity id string");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_entity_check_matches_runtime_check() {
        for s in ["a", "a\u{85}b", "a\u{7f}", "é", "\u{a0}", "x\u{9f}"] {
            assert_eq!(is_valid_entity_id(s), EntityId::new(s).is_ok(), "{s:?}");
        }
    }
}
