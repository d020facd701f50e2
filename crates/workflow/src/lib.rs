//! syncbus workflow: the handler contract, reliability layers, chains and sagas.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod error;
pub mod store;

pub use crate::error::{ErrorKind, HandlerError, ResultExt};
