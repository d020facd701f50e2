//! The event type rule: 1 to 256 bytes of printable ASCII, no spaces (the CloudEvents
//! `type` attribute).

use crate::error::{len_problem, NameError, NameKind, NameReason};
use crate::utf8::char_at;

/// Longest event type, in bytes.
pub const EVENT_TYPE_MAX_LEN: usize = 256;

const PRINTABLE_NO_SPACE: &str = "only printable ascii without spaces is allowed";

/// Checks an event type, such as `shop.order.placed`: 1 to 256 bytes of printable ASCII
/// (`!` through `~`), so no spaces.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_event_type, NameReason};
///
/// assert!(check_event_type("com.example/v1:Thing_Done!").is_ok());
/// let err = check_event_type("order placed").unwrap_err();
/// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: ' ', byte: 5, .. }));
/// ```
///
/// # Errors
///
/// A [`NameError`] of kind [`NameKind::EventType`] if the name is empty, longer than 256
/// bytes, or holds a character outside printable ASCII.
pub fn check_event_type(name: &str) -> Result<(), NameError> {
    match problem(name) {
        Some(reason) => Err(NameError::new(NameKind::EventType, reason, name)),
        None => Ok(()),
    }
}

/// Whether `name` is a valid event type (see [`check_event_type`]); usable at compile time.
///
/// # Examples
///
/// ```
/// use syncbus_names::is_valid_event_type;
///
/// const OK: bool = is_valid_event_type("shop.order.placed");
/// assert!(OK);
/// assert!(!is_valid_event_type("shop order"));
/// ```
pub const fn is_valid_event_type(name: &str) -> bool {
    problem(name).is_none()
}

/// The first thing wrong with `name` as an event type, scanning left to right.
const fn problem(name: &str) -> Option<NameReason> {
    if let Some(reason) = len_problem(name, EVENT_TYPE_MAX_LEN) {
        return Some(reason);
    }
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], 0x21..=0x7E) {
            // Every byte before `i` is ASCII, so `i` starts a character.
            return Some(NameReason::InvalidChar {
                ch: char_at(name, i),
                byte: i,
                rule: PRINTABLE_NO_SPACE,
            });
        }
        i += 1;
    }
    None
}
