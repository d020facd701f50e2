//! The one error for every validated name, with the rules the derive macro checks too (topics,
//! patterns, event types): they live in `syncbus-names`, so a name refused here is refused
//! at compile time by `#[derive(Event)]` with the same message. This crate's files use them
//! through this module.

pub(crate) use syncbus_names::check_len;
pub use syncbus_names::{check_plain_name, NameError, NameKind, NameReason};
