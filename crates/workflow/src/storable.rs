//! Payloads that can be kept as bytes: what dead letters and redrive need.

use serde::de::DeserializeOwned;
use serde::Serialize;
use syncbus_envelope::{Bytes, DecodeError, EncodeError, Envelope, Event};

/// A payload that can be stored as bytes and read back: every `Event` that is
/// `Serialize + DeserializeOwned` (JSON). Dead letters and redrive need it.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Envelope, Event};
/// use syncbus_workflow::Storable;
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Charged { cents: u64 }
/// impl Event for Charged { const TYPE: &'static str = "shop.charged"; }
///
/// let env = Envelope::from_event(Charged { cents: 1999 });
/// let stored = Charged::to_stored(&env)?; // what a dead letter keeps
/// let back = Charged::from_stored(&stored)?;
/// assert_eq!(back.payload(), &Charged { cents: 1999 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Storable: Clone + Send + Sync + Sized + 'static {
    /// The envelope with its payload as JSON bytes.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] if the payload does not serialize.
    fn to_stored(env: &Envelope<Self>) -> Result<Envelope<Bytes>, EncodeError>;

    /// The typed envelope back.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for another event type or a payload that does not decode.
    fn from_stored(env: &Envelope<Bytes>) -> Result<Envelope<Self>, DecodeError>;
}

impl<E: Event + Serialize + DeserializeOwned> Storable for E {
    fn to_stored(env: &Envelope<E>) -> Result<Envelope<Bytes>, EncodeError> {
        env.to_bytes_payload()
    }

    fn from_stored(env: &Envelope<Bytes>) -> Result<Envelope<E>, DecodeError> {
        env.decode_payload::<E>()
    }
}
