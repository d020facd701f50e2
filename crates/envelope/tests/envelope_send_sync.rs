//! Pins the auto traits of the public types at compile time.

use syncbus_envelope::{
    Binary, Bytes, CloudEventsJson, DecodeError, EncodeError, EntityId, Envelope, EventId,
    EventType, ExtensionKind, ExtensionValue, HeaderError, Headers, Limits, Metadata, NameError,
    NameKind, NameReason, Pattern, TimeError, Timestamp, Topic,
};

fn send_sync<T: Send + Sync + 'static>() {}
fn unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_sync_unpin() {
    send_sync::<EventId>();
    send_sync::<EventType>();
    send_sync::<EntityId>();
    send_sync::<Headers>();
    send_sync::<ExtensionValue>();
    send_sync::<ExtensionKind>();
    send_sync::<Timestamp>();
    send_sync::<Metadata>();
    send_sync::<Envelope<Bytes>>();
    send_sync::<Envelope<String>>();
    send_sync::<Limits>();
    send_sync::<CloudEventsJson>();
    send_sync::<Binary>();
    send_sync::<NameError>();
    send_sync::<NameKind>();
    send_sync::<NameReason>();
    send_sync::<Topic>();
    send_sync::<Pattern>();
    send_sync::<HeaderError>();
    send_sync::<TimeError>();
    send_sync::<DecodeError>();
    send_sync::<EncodeError>();
    unpin::<Envelope<Bytes>>();
    unpin::<Metadata>();
}

fn error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn errors_are_std_errors() {
    error::<NameError>();
    error::<HeaderError>();
    error::<TimeError>();
    error::<DecodeError>();
    error::<EncodeError>();
}
