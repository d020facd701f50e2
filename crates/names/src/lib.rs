//! The naming rules of syncbus, in one place: what makes a valid topic, pattern and event
//! type, the length rule every name shares, and the one [`NameError`] each refusal is.
//!
//! Two crates check names with these functions: `syncbus-envelope`, at run time, when a
//! `Topic`, `Pattern` or `EventType` is made, and `syncbus-derive`, at compile time, on the
//! strings written in `#[event(type = "..", topic = "..")]`. Sharing the code is what makes
//! the two agree, down to the message. The crate has no dependencies, so the derive macro
//! stays cheap to build. Programs use it through `syncbus`, which re-exports [`NameError`],
//! [`NameKind`], [`NameReason`] and [`check_plain_name`].
//!
//! Each rule comes twice, from one implementation: `check_*` says what is wrong and where,
//! `is_valid_*` is a `const fn` for compile-time checks.
//!
//! # Examples
//!
//! ```
//! use syncbus_names::{check_event_type, check_pattern, check_topic, is_valid_topic, NameReason};
//!
//! assert!(check_topic("orders.eu.created").is_ok());
//! assert!(check_pattern("orders.*.created").is_ok());
//! assert!(check_event_type("shop.order.placed").is_ok());
//!
//! let err = check_topic("orders.*").unwrap_err();
//! assert_eq!(err.reason(), &NameReason::WildcardInTopic { byte: 7 });
//! assert_eq!(
//!     err.to_string(),
//!     r#"wildcard '*' at byte 7 in topic "orders.*": only patterns may contain wildcards"#
//! );
//!
//! const CHECKED: bool = is_valid_topic("orders.placed");
//! assert!(CHECKED);
//! ```

mod error;
mod event_type;
mod topic;
mod utf8;

pub use error::{check_len, check_plain_name, NameError, NameKind, NameReason};
pub use event_type::{check_event_type, is_valid_event_type, EVENT_TYPE_MAX_LEN};
pub use topic::{check_pattern, check_topic, is_valid_topic, TOPIC_MAX_LEN, TOPIC_MAX_TOKENS};
