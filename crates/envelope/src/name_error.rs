//! The one error for every validated name, with the rules the derive macro checks too (topics,
//! patterns, event types): they live in `syncbus-names`, so a name refused here is refused
//! at compile time by `#[derive(Event)]` with the same message. This crate's files use them
//! through this module.

pub(crate) use syncbus_names::check_len;
pub use syncbus_names::{check_plain_name, NameError, NameKind, NameReason};

/// The rule the CloudEvents type system sets for its `String` type: no control characters
/// (U+0000 to U+001F, U+007F to U+009F) and no Unicode noncharacters. (Unpaired surrogates
/// cannot occur in a Rust string.)
pub(crate) const CE_STRING_RULE: &str =
    "control characters and unicode noncharacters are not allowed";

/// The first character that the CloudEvents `String` type disallows, with its byte offset.
pub(crate) fn find_non_ce_char(s: &str) -> Option<(usize, char)> {
    s.char_indices()
        .find(|&(_, c)| c.is_control() || is_noncharacter(c))
}

/// Checks `s` against the CloudEvents `String` rule, as a name of `kind`.
pub(crate) fn check_ce_string(kind: NameKind, s: &str) -> Result<(), NameError> {
    match find_non_ce_char(s) {
        Some((byte, ch)) => {
            let reason = NameReason::InvalidChar {
                ch,
                byte,
                rule: CE_STRING_RULE,
            };
            Err(NameError::new(kind, reason, s))
        }
        None => Ok(()),
    }
}

fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}
