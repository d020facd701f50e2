//! The resequencer (the integration pattern of that name): per entity, versions reach the
//! handler in order; stale ones are dropped, early ones held until their gap fills.
//!
//! `config` holds the settings, `state` the per-entity positions and held events, `service`
//! the handler and its expiry task, `layer` the layer that builds it. Each file imports only
//! the ones before it in that list.

mod config;
mod layer;
mod service;
mod state;

pub use self::config::{OnExpiry, ResequenceConfig, StartAt};
pub use self::layer::ResequenceLayer;
pub use self::service::Resequence;
pub use self::state::REDRIVE_HEADER;
