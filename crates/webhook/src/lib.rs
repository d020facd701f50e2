//! Webhooks for syncbus: idempotent signed ingress and reliable signed delivery.
//!
//! - **Signatures** ([`Secret`], [`Verifier`]): Standard Webhooks (`webhook-id`,
//!   `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), several secrets
//!   for rotation, a configurable tolerance, constant-time comparison.
//! - **Ingress** ([`Ingress`]): `POST /webhooks/{source}` → verify → dedup by `webhook-id`
//!   → durable append to the SQLite event log (one transaction for key and event, shared by
//!   concurrent requests) → 2xx; then a `DurableConsumer` served by `Workflow::serve`
//!   processes the log with retries, dead letters and redrive.
//! - **Egress** ([`Egress`]): endpoints subscribed to patterns of the log's events, each
//!   delivery signed with the event id as `webhook-id`, retried on a schedule (Svix's by
//!   default), dead-lettered when exhausted; endpoint state (disabled, failing since) kept
//!   in the store.
//!
//! Delivery is at least once on both sides; the ingress dedup and the handler's
//! transactional inbox (`ctx.inbox()` + `SqliteStore::record_done`) make effects happen
//! once.
//!
//! # Examples
//!
//! ```
//! use syncbus_webhook::{Secret, Verifier};
//! let secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
//! let body = br#"{"email":"test@example.com","username":"test_user"}"#;
//! let sig = secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
//! assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
//! Verifier::new([secret]).verify_at("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", &sig, body, 1649367553)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `rustls` | TLS for egress to `https://` endpoints (off by default) |

mod egress;
mod ingress;
mod intake;
mod mapping;
mod signature;

pub use crate::egress::{
    Egress, EgressError, Endpoint, EndpointConfig, EndpointState, DEFAULT_SCHEDULE,
};
pub use crate::ingress::{
    ConfigError, Ingress, IngressConfig, IngressMetrics, SourceConfig, DEFAULT_DEDUP_TTL,
    DEFAULT_MAX_BODY, DUPLICATE_HEADER,
};
pub use crate::mapping::{MapError, Mapped, Mapping};
pub use crate::signature::{
    unix_now, Secret, SecretError, SignatureError, Verifier, DEFAULT_TOLERANCE, WEBHOOK_ID,
    WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
/// Any event with its payload as the bytes it came with (the workflow crate's, re-exported).
pub use syncbus_workflow::RawEvent;
