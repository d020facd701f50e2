//! The syncbus event envelope: ids, metadata, typed events and wire formats.
//!
//! Every event on the bus travels as an [`Envelope`]: [`Metadata`] (id, type, topic, entity,
//! version, time, correlation, headers...) plus a payload. In process the payload is a typed
//! [`Event`]; on the wire and in storage it is [`Bytes`], written by one of two codecs:
//!
//! | codec | format | use it for |
//! | --- | --- | --- |
//! | [`CloudEventsJson`] | CloudEvents 1.0, JSON structured mode | webhooks, HTTP, other systems |
//! | [`Binary`] | versioned postcard | outbox tables, logs, syncbus-to-syncbus links |
//!
//! Both codecs keep every metadata field, and decoding checks [`Limits`] before copying
//! large inputs, so they are safe to feed untrusted bytes. CloudEvents JSON takes any
//! spec-valid event and gives the same event back: ids byte for byte, the time (or its
//! absence), `subject`, `dataschema`, each extension attribute with its CloudEvents type
//! ([`ExtensionValue`]), and the data in the form it came in.
//!
//! Names are validated once, when made, and carried as newtypes from then on: [`Topic`] and
//! [`Pattern`] (NATS rules), [`EventType`], [`EntityId`], [`EventId`], header names. Every
//! refusal is one [`NameError`] that says which kind of name, what is wrong and where
//! ([`NameKind`], [`NameReason`]); [`check_plain_name`] applies the plain-name rule to
//! consumer, member and checkpoint names.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use syncbus_envelope::{Binary, CloudEventsJson, EntityId, Envelope, Event, Limits};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct OrderPlaced {
//!     order_id: u64,
//!     total_cents: u64,
//! }
//!
//! impl Event for OrderPlaced {
//!     const TYPE: &'static str = "shop.order.placed";
//!     const TOPIC: &'static str = "shop.orders";
//!
//!     fn entity_id(&self) -> Option<EntityId> {
//!         Some(EntityId::from(self.order_id))
//!     }
//! }
//!
//! let typed = Envelope::from_event(OrderPlaced { order_id: 42, total_cents: 1999 });
//! let raw = typed.to_bytes_payload()?;
//!
//! // CloudEvents JSON, for other systems.
//! let json = CloudEventsJson::encode(&raw)?;
//! let from_json = CloudEventsJson::decode(&json, &Limits::default())?;
//! assert_eq!(from_json, raw);
//!
//! // Compact binary, for storage.
//! let bin = Binary::encode(&raw)?;
//! let from_bin = Binary::decode(&bin, &Limits::default())?;
//! assert_eq!(from_bin, raw);
//!
//! let back = from_bin.decode_payload::<OrderPlaced>()?;
//! assert_eq!(back.payload(), typed.payload());
//! assert_eq!(back.meta().entity_id().map(EntityId::as_str), Some("42"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clock;
mod codec;
mod envelope;
mod error;
mod event;
mod extension;
mod headers;
mod id;
mod metadata;
mod name_error;
mod names;
mod payload;
mod time;
mod to_entity_id;
mod topic;
mod uri;

pub use bytes::Bytes;
pub use codec::binary::Binary;
pub use codec::cloudevents::CloudEventsJson;
pub use codec::Limits;
pub use envelope::Envelope;
pub use error::{DecodeError, EncodeError};
pub use event::{Encoded, Event};

/// What `#[derive(Event)]` writes, not an API: its `encode` picks JSON for a `Serialize`
/// type and "not encodable" otherwise, by autoref (the first impl whose bound holds wins).
#[doc(hidden)]
pub mod __derive {
    use crate::{EncodeError, Encoded};

    /// The value being encoded.
    #[derive(Debug)]
    pub struct Probe<'a, T>(pub &'a T);

    /// Found first, through `&&Probe`, when `T: Serialize`.
    pub trait ViaSerialize {
        /// The JSON encoding.
        fn __syncbus_encode(&self) -> Option<Result<Encoded, EncodeError>>;
    }

    impl<T: serde::Serialize> ViaSerialize for &Probe<'_, T> {
        fn __syncbus_encode(&self) -> Option<Result<Encoded, EncodeError>> {
            Some(Encoded::json(self.0))
        }
    }

    /// Found otherwise, through `&Probe`.
    pub trait NotSerialize {
        /// Not encodable.
        fn __syncbus_encode(&self) -> Option<Result<Encoded, EncodeError>>;
    }

    impl<T> NotSerialize for Probe<'_, T> {
        fn __syncbus_encode(&self) -> Option<Result<Encoded, EncodeError>> {
            None
        }
    }
}
pub use extension::{ExtensionKind, ExtensionValue};
pub use headers::{HeaderError, Headers};
pub use id::EventId;
pub use metadata::Metadata;
pub use name_error::{check_plain_name, NameError, NameKind, NameReason};
pub use names::{EntityId, EventType};
pub use payload::{PackedEvent, Payload};
pub use smol_str::SmolStr;
pub use time::{TimeError, Timestamp};
pub use to_entity_id::ToEntityId;
pub use topic::{Pattern, Topic};
