//! Helpers shared by the store tests: the storage contract suite and its envelopes.
#![allow(unused_imports, unreachable_pub)]

pub use syncbus_storage::testing as contract;
pub use syncbus_storage::testing::{env, num};
