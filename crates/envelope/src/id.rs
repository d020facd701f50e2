//! Event ids: time-ordered UUIDv7 for ids made here, any opaque text for ids from elsewhere.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use smol_str::SmolStr;

use crate::name_error::{check_ce_string, check_len, NameError, NameKind};

/// The unique id of one event.
///
/// Ids made by [`EventId::new`] are [UUIDv7] (RFC 9562): they start with the unix time in
/// milliseconds, so they sort by creation time. Ids from one thread are strictly increasing;
/// ids from different threads of one process never collide.
///
/// An id is an opaque string, kept byte for byte: [`EventId::parse`] takes any CloudEvents
/// `String` of 1 to 256 bytes (spaces and non-ASCII included; no control characters or
/// Unicode noncharacters), and [`Display`](fmt::Display) gives the same text back. A UUID in
/// its canonical form (lowercase, hyphenated, as [`EventId::new`] writes it) is stored in 16
/// bytes; any other spelling of a UUID (uppercase, without hyphens) is a different id, kept as
/// the text it came as. [`EventId::uuid`] reads the UUID out of any spelling.
///
/// Ordering puts every canonical UUID before every other id; UUIDs compare by their 128-bit
/// value (the same order as their text), other ids by their bytes.
///
/// [UUIDv7]: https://www.rfc-editor.org/rfc/rfc9562#name-uuid-version-7
///
/// # Examples
///
/// ```
/// use syncbus_envelope::EventId;
///
/// let a = EventId::new();
/// let b = EventId::new();
/// assert!(a < b);
///
/// let parsed: EventId = a.to_string().parse()?;
/// assert_eq!(parsed, a);
///
/// let foreign = EventId::parse("order-42/attempt-1")?;
/// assert_eq!(foreign.as_u128(), None);
/// assert_eq!(foreign.to_string(), "order-42/attempt-1");
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// Big-endian bytes: byte-aligned, so the enum fits in 24 bytes (a `u128` would make it
    /// 32) and orders like the integer.
    Uuid([u8; 16]),
    Text(SmolStr),
}

/// Longest foreign (non-UUID) id accepted, in bytes.
const MAX_TEXT_LEN: usize = 256;

impl EventId {
    /// Longest id accepted by [`EventId::parse`], in bytes (a size limit: CloudEvents sets
    /// none).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// assert!(EventId::parse(&"x".repeat(EventId::MAX_TEXT_LEN)).is_ok());
    /// assert!(EventId::parse(&"x".repeat(EventId::MAX_TEXT_LEN + 1)).is_err());
    /// ```
    pub const MAX_TEXT_LEN: usize = MAX_TEXT_LEN;

    /// Makes a fresh UUIDv7 id.
    ///
    /// Needs no lock and does not allocate: each thread keeps its own counter and random
    /// tag. The embedded time comes from a shared clock that a background thread
    /// (`syncbus-clock`) refreshes every millisecond while ids are being made, so it costs a
    /// load and stays within a few milliseconds of the system clock even for threads that
    /// make ids rarely. If the clock steps back, ids keep
    /// the last time seen and stay increasing.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// let id = EventId::new();
    /// assert!(id.timestamp_ms().is_some());
    /// ```
    #[inline]
    pub fn new() -> EventId {
        EventId(Repr::Uuid(generate_v7().to_be_bytes()))
    }

    /// Makes an id from a UUID given as a 128-bit big-endian integer.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// let id = EventId::from_u128(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
    /// assert_eq!(id.to_string(), "01901234-5678-7abc-8def-0123456789ab");
    /// ```
    #[inline]
    pub const fn from_u128(value: u128) -> EventId {
        EventId(Repr::Uuid(value.to_be_bytes()))
    }

    /// The UUID as a 128-bit integer, for an id stored as one (made by [`EventId::new`] or
    /// [`EventId::from_u128`], or parsed from a canonical UUID); `None` for any other id,
    /// including other spellings of a UUID (see [`EventId::uuid`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// assert_eq!(EventId::from_u128(7).as_u128(), Some(7));
    /// assert_eq!(EventId::parse("abc")?.as_u128(), None);
    /// assert_eq!(EventId::parse("0190123456787ABC8DEF0123456789AB")?.as_u128(), None);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    #[inline]
    pub fn as_u128(&self) -> Option<u128> {
        match self.0 {
            Repr::Uuid(v) => Some(u128::from_be_bytes(v)),
            Repr::Text(_) => None,
        }
    }

    /// The creation time in unix milliseconds, for a UUIDv7 id stored as one (see
    /// [`EventId::as_u128`]); `None` for any other id.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{SystemTime, UNIX_EPOCH};
    /// use syncbus_envelope::EventId;
    ///
    /// let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    /// let ms = EventId::new().timestamp_ms().unwrap();
    /// assert!(ms.abs_diff(now) < 60_000);
    ///
    /// // A version 4 UUID carries no time.
    /// assert_eq!(EventId::parse("9b2f7f4e-3c2a-4d7e-9a1b-0c2d3e4f5a6b")?.timestamp_ms(), None);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn timestamp_ms(&self) -> Option<u64> {
        match self.0 {
            Repr::Uuid(v) if is_v7(u128::from_be_bytes(v)) => {
                Some((u128::from_be_bytes(v) >> 80) as u64)
            }
            _ => None,
        }
    }

    /// The UUID this id spells, in any of the spellings RFC 9562 allows for text: hyphenated
    /// or not, any case. `None` for an id that is no UUID.
    ///
    /// Dedup keys and dead-letter ids use it to treat every spelling of one UUID as one key;
    /// the id itself keeps the text it came as.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// let upper = EventId::parse("0190123456787ABC8DEF0123456789AB")?;
    /// assert_eq!(upper.to_string(), "0190123456787ABC8DEF0123456789AB");
    /// assert_eq!(upper.uuid(), Some(0x0190_1234_5678_7abc_8def_0123_4567_89ab));
    /// assert_eq!(EventId::parse("order-42")?.uuid(), None);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn uuid(&self) -> Option<u128> {
        match &self.0 {
            Repr::Uuid(v) => Some(u128::from_be_bytes(*v)),
            Repr::Text(s) if s.len() == 32 || s.len() == 36 => {
                uuid::Uuid::try_parse(s).ok().map(|u| u.as_u128())
            }
            Repr::Text(_) => None,
        }
    }

    /// Parses an id, keeping its text exactly.
    ///
    /// A canonical UUID (lowercase, hyphenated) is stored in 16 bytes; anything else is kept
    /// as opaque text, so `parse(s)?.to_string() == s` for every `s` it accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// let id = EventId::parse("01901234-5678-7abc-8def-0123456789ab")?;
    /// assert_eq!(id.as_u128(), Some(0x0190_1234_5678_7abc_8def_0123_4567_89ab));
    ///
    /// // Any other spelling stays as it came: ids are compared as strings.
    /// let upper = EventId::parse("01901234-5678-7ABC-8DEF-0123456789AB")?;
    /// assert_eq!(upper.to_string(), "01901234-5678-7ABC-8DEF-0123456789AB");
    /// assert_ne!(upper, id);
    ///
    /// assert_eq!(EventId::parse("msg 17 / été")?.to_string(), "msg 17 / été");
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// An id that is empty, longer than [`EventId::MAX_TEXT_LEN`] bytes, or holds a
    /// character the CloudEvents `String` type disallows (a control character or a Unicode
    /// noncharacter).
    ///
    /// ```
    /// use syncbus_envelope::{EventId, NameKind, NameReason};
    ///
    /// let err = EventId::parse("").unwrap_err();
    /// assert_eq!((err.kind(), err.reason()), (NameKind::EventId, &NameReason::Empty));
    /// let err = EventId::parse("tab\there").unwrap_err();
    /// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: '\t', byte: 3, .. }));
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"invalid character '\t' at byte 3 in event id "tab\there": control characters and unicode noncharacters are not allowed"#
    /// );
    /// ```
    pub fn parse(s: &str) -> Result<EventId, NameError> {
        if let Some(v) = parse_canonical_uuid(s.as_bytes()) {
            return Ok(EventId(Repr::Uuid(v)));
        }
        check_len(NameKind::EventId, s, MAX_TEXT_LEN)?;
        check_ce_string(NameKind::EventId, s)?;
        Ok(EventId(Repr::Text(SmolStr::new(s))))
    }
}

/// The bytes of a UUID written in canonical form: 8-4-4-4-12 lowercase hex digits.
fn parse_canonical_uuid(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 36 || [s[8], s[13], s[18], s[23]] != [b'-'; 4] {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = s.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = lower_hex(*nibbles.next()?)?;
        let lo = lower_hex(*nibbles.next()?)?;
        *byte = hi << 4 | lo;
    }
    // Exactly four hyphens were skipped: 32 digits, no more.
    nibbles.next().is_none().then_some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl EventId {
    /// The text of a foreign id; empty for a UUID.
    pub(crate) fn as_text(&self) -> &str {
        match &self.0 {
            Repr::Uuid(_) => "",
            Repr::Text(s) => s,
        }
    }
}

impl Default for EventId {
    /// Same as [`EventId::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::EventId;
    ///
    /// assert!(EventId::default().timestamp_ms().is_some());
    /// ```
    fn default() -> Self {
        EventId::new()
    }
}

impl FromStr for EventId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventId::parse(s)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Uuid(v) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                f.write_str(
                    uuid::Uuid::from_bytes(*v)
                        .hyphenated()
                        .encode_lower(&mut buf),
                )
            }
            Repr::Text(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Uuid(_) => write!(f, "EventId({self})"),
            Repr::Text(s) => write!(f, "EventId({:?})", s.as_str()),
        }
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Uuid(v) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                serializer.serialize_str(
                    uuid::Uuid::from_bytes(*v)
                        .hyphenated()
                        .encode_lower(&mut buf),
                )
            }
            Repr::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = EventId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event id string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventId, E> {
                EventId::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(IdVisitor)
    }
}

fn is_v7(v: u128) -> bool {
    (v >> 76) & 0xF == 7 && (v >> 62) & 0b11 == 0b10
}

// Bit layout of a generated id (RFC 9562, section 5.7), most significant first:
//   48 unix_ts_ms | 4 ver=7 | 12 counter[41:30] | 2 var=0b10 | 32 thread tag | 30 counter[29:0]
// The counter is per thread and never resets, so one thread's ids increase strictly as long
// as the millisecond field never goes back (it is clamped to the last value seen). The thread
// tag is a bijection of a process-wide thread number, so two threads of one process never
// share a tag; a random per-process key mixed into it keeps processes apart.
const COUNTER_BITS: u32 = 42;
const COUNTER_LO_BITS: u32 = 30;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

thread_local! {
    /// The last id this thread made; 0 before the first (no UUIDv7 is 0). The next id is
    /// this one plus one in the counter, with the millisecond field moved up to the clock's:
    /// the thread tag and the version and variant bits ride along, so the common case is an
    /// add, a compare and a store.
    static LAST: Cell<u128> = const { Cell::new(0) };
}

static NEXT_THREAD: AtomicU32 = AtomicU32::new(0);

const MS_SHIFT: u32 = 80;
const MS_MASK: u128 = 0xFFFF_FFFF_FFFF << MS_SHIFT;
const LO_MASK: u128 = (1 << COUNTER_LO_BITS) - 1;

#[inline]
fn generate_v7() -> u128 {
    let now = u128::from(unix_ms() & 0xFFFF_FFFF_FFFF) << MS_SHIFT;
    LAST.try_with(|last| {
        let prev = last.get();
        // The low counter field has room (and this thread made an id before): count up.
        let next = if prev & LO_MASK != LO_MASK && prev != 0 {
            prev + 1
        } else {
            carry(prev)
        };
        // The millisecond field only moves forward: a clock that steps back is ignored.
        let next = if now > next & MS_MASK {
            (next & !MS_MASK) | now
        } else {
            next
        };
        last.set(next);
        next
    })
    // Thread-local storage is gone while the thread exits: fall back to fresh randomness.
    .unwrap_or_else(|_| {
        let r = random_u64();
        layout(
            unix_ms(),
            r & COUNTER_MAX,
            (r >> COUNTER_BITS) as u32 ^ random_u64() as u32,
        )
    })
}

/// The id after `prev` when its low counter field is full (or for the thread's first id):
/// the counter carries into its high field; after 2^42 ids the millisecond field moves on
/// by one and the counter starts again, so ids stay increasing.
#[cold]
fn carry(prev: u128) -> u128 {
    if prev == 0 {
        return layout(0, 0, thread_tag());
    }
    let ms = (prev >> MS_SHIFT) as u64;
    let tag = (prev >> COUNTER_LO_BITS) as u32;
    let counter = ((prev >> 64) as u64 & 0xFFF) << COUNTER_LO_BITS | (prev & LO_MASK) as u64;
    if counter >= COUNTER_MAX {
        layout(ms + 1, 0, tag)
    } else {
        layout(ms, counter + 1, tag)
    }
}

fn layout(ms: u64, counter: u64, tag: u32) -> u128 {
    let ms = u128::from(ms & 0xFFFF_FFFF_FFFF);
    let hi = u128::from(counter >> COUNTER_LO_BITS) & 0xFFF;
    let lo = u128::from(counter) & ((1 << COUNTER_LO_BITS) - 1);
    (ms << 80) | (0x7 << 76) | (hi << 64) | (0b10 << 62) | (u128::from(tag) << 30) | lo
}

#[inline]
fn unix_ms() -> u64 {
    crate::clock::now_ms()
}

fn random_u64() -> u64 {
    // std seeds each RandomState from the OS once per thread; hashing the time on top
    // makes successive calls differ.
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn thread_tag() -> u32 {
    static PROCESS_KEY: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let key = *PROCESS_KEY.get_or_init(|| random_u64() as u32);
    let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    // Adding a constant and multiplying by an odd number are both bijections mod 2^32.
    n.wrapping_add(key).wrapping_mul(0x9E37_79B9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sets_version_and_variant() {
        let v = layout(0xABCDEF, 0x3FF_FFFF_FFFF, 0xDEAD_BEEF);
        assert!(is_v7(v));
        assert_eq!((v >> 80) as u64, 0xABCDEF);
        assert_eq!(((v >> 30) & 0xFFFF_FFFF) as u32, 0xDEAD_BEEF);
    }

    #[test]
    fn canonical_uuid_parser_matches_the_uuid_crate() {
        let canonical = "01901234-5678-7abc-8def-0123456789ab";
        let expected = *uuid::Uuid::try_parse(canonical).unwrap().as_bytes();
        assert_eq!(parse_canonical_uuid(canonical.as_bytes()), Some(expected));
        for other in [
            "01901234-5678-7ABC-8def-0123456789ab",
            "0190123456787abc8def0123456789ab",
            "01901234-5678-7abc-8def-0123456789a-",
            "01901234-5678-7abc-8def-0123456789ag",
            "0190123-45678-7abc-8def-0123456789ab",
            "{01901234-5678-7abc-8def-0123456789}",
        ] {
            assert_eq!(parse_canonical_uuid(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn carry_moves_the_counter_into_its_high_field_then_the_millisecond_on() {
        let full_lo = layout(9, (1 << COUNTER_LO_BITS) - 1, 0xABCD_0123);
        assert_eq!(carry(full_lo), layout(9, 1 << COUNTER_LO_BITS, 0xABCD_0123));
        assert!(carry(full_lo) > full_lo);
        let exhausted = layout(9, COUNTER_MAX, 0xABCD_0123);
        assert_eq!(carry(exhausted), layout(10, 0, 0xABCD_0123));
        assert!(carry(exhausted) > exhausted);
        assert!(is_v7(carry(0)));
    }

    #[test]
    fn counter_order_matches_id_order() {
        let a = layout(5, (1 << COUNTER_LO_BITS) - 1, u32::MAX);
        let b = layout(5, 1 << COUNTER_LO_BITS, 0);
        assert!(a < b);
    }
}
