//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
//!
//! Written on `hmac` + `sha2` + `base64` + `subtle` rather than the `standardwebhooks`
//! crate, whose tolerance cannot be set, which accepts an empty secret and whose timestamp
//! arithmetic overflows on extreme values. Here the tolerance is a setting, a secret is
//! checked when it is made (never at request time), timestamps are compared with saturating
//! arithmetic, and signatures are compared in constant time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header carrying the message id, stable across a sender's retries.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header carrying the unix time (seconds) the message was signed at.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying one or more space-separated signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The default tolerance between a message's timestamp and the receiver's clock, both ways.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const PREFIX: &str = "whsec_";

/// A signing secret: the key bytes of a `whsec_` + base64 secret. Its `Debug` hides the key.
///
/// # Examples
///
/// ```
/// use syncbus_webhook::Secret;
/// let secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
/// assert_eq!(format!("{secret:?}"), "Secret(..)");
/// assert!(Secret::new("whsec_").is_err());
/// assert!(Secret::new("whsec_not base64!").is_err());
/// # Ok::<(), syncbus_webhook::SecretError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a secret was refused.
///
/// # Examples
///
/// ```
/// use syncbus_webhook::{Secret, SecretError};
/// assert_eq!(Secret::new("").unwrap_err(), SecretError::Empty);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No key bytes at all.
    #[error("the webhook secret is empty")]
    Empty,
    /// The part after `whsec_` is not standard base64.
    #[error("the webhook secret is not base64 after its `whsec_` prefix")]
    NotBase64,
}

impl Secret {
    /// Reads a secret in the Standard Webhooks form `whsec_` + base64 of the key. Text
    /// without the prefix is read as the base64 of the key too, as the reference libraries
    /// do.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = syncbus_webhook::Secret::new("whsec_c2VjcmV0")?;
    /// let b = syncbus_webhook::Secret::new("c2VjcmV0")?;
    /// assert_eq!(a, b);
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SecretError::NotBase64`] for text that is not base64, [`SecretError::Empty`] for
    /// a key of no bytes.
    pub fn new(text: &str) -> Result<Secret, SecretError> {
        let b64 = text.strip_prefix(PREFIX).unwrap_or(text);
        let key = STANDARD
            .decode(b64.trim())
            .map_err(|_| SecretError::NotBase64)?;
        Secret::from_bytes(key)
    }

    /// A secret of these key bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = syncbus_webhook::Secret::from_bytes(b"secret".to_vec())?;
    /// assert_eq!(s.to_string_form(), "whsec_c2VjcmV0");
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SecretError::Empty`] for no bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<Secret, SecretError> {
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret { key })
    }

    /// The secret in its `whsec_` + base64 form, to hand to the other side.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = syncbus_webhook::Secret::new("whsec_c2VjcmV0")?;
    /// assert_eq!(s.to_string_form(), "whsec_c2VjcmV0");
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    pub fn to_string_form(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // An HMAC takes a key of any length, so this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_key(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Signs a message: the value of one `v1,` signature.
    ///
    /// # Examples
    ///
    /// The Standard Webhooks test vector:
    ///
    /// ```
    /// let secret = syncbus_webhook::Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
    /// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    /// assert_eq!(
    ///     secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
    ///     "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    /// );
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }
}

#[cold]
fn unreachable_key() -> ! {
    // Hmac<Sha256> accepts keys of every length; new_from_slice only fails for fixed-size MACs.
    unreachable!("HMAC-SHA256 accepts a key of any length")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a request's signature was refused. The messages name no secret.
///
/// # Examples
///
/// ```
/// use syncbus_webhook::{Secret, SignatureError, Verifier};
/// let v = Verifier::new([Secret::new("whsec_c2VjcmV0")?]);
/// let err = v.verify_at("msg_1", "1000", "v1,AAAA", b"{}", 1000).unwrap_err();
/// assert_eq!(err, SignatureError::NoMatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The `webhook-timestamp` header is not an integer number of seconds.
    #[error("webhook-timestamp is not a unix time in seconds")]
    BadTimestamp,
    /// The timestamp is older than the tolerance allows.
    #[error("webhook-timestamp is too old")]
    Stale,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("webhook-timestamp is in the future")]
    Future,
    /// No `v1,` signature in the header.
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    /// No signature in the header matches any of the secrets.
    #[error("no signature matches")]
    NoMatch,
}

/// Checks Standard Webhooks signatures against one or more secrets (several during a
/// rotation: any valid signature by any of them passes).
///
/// # Examples
///
/// ```
/// use syncbus_webhook::{Secret, Verifier};
/// let secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
/// let sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
/// let v = Verifier::new([secret]);
/// v.verify_at("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", sig, body, 1649367553)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier of these secrets with the default tolerance (300 s both ways).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = syncbus_webhook::Verifier::new([syncbus_webhook::Secret::new("whsec_c2VjcmV0")?]);
    /// assert_eq!(v.tolerance(), std::time::Duration::from_secs(300));
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Verifier {
        Verifier {
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// How far a timestamp may be from the receiver's clock, in either direction.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let v = syncbus_webhook::Verifier::new([]).with_tolerance(Duration::from_secs(60));
    /// assert_eq!(v.tolerance(), Duration::from_secs(60));
    /// ```
    pub fn with_tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance = tolerance;
        self
    }

    /// The tolerance.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = syncbus_webhook::Verifier::new([]);
    /// assert_eq!(v.tolerance().as_secs(), 300);
    /// ```
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The secrets, in the order given.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = syncbus_webhook::Verifier::new([syncbus_webhook::Secret::new("whsec_c2VjcmV0")?]);
    /// assert_eq!(v.secrets().len(), 1);
    /// # Ok::<(), syncbus_webhook::SecretError>(())
    /// ```
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// Verifies a message against the system clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_webhook::{Secret, Verifier, unix_now};
    /// let secret = Secret::new("whsec_c2VjcmV0")?;
    /// let now = unix_now();
    /// let sig = secret.sign("msg_1", now, b"{}");
    /// Verifier::new([secret]).verify("msg_1", &now.to_string(), &sig, b"{}")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`verify_at`](Self::verify_at).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        self.verify_at(id, timestamp, signatures, body, unix_now())
    }

    /// Verifies a message as if the clock read `now` (unix seconds).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_webhook::{Secret, SignatureError, Verifier};
    /// let old = Secret::new("whsec_b2xk")?;
    /// let new = Secret::new("whsec_bmV3")?;
    /// // During a rotation the sender signs with both; either secret passes.
    /// let header = format!("{} {}", new.sign("m", 10, b"x"), old.sign("m", 10, b"x"));
    /// Verifier::new([old.clone()]).verify_at("m", "10", &header, b"x", 10)?;
    /// assert_eq!(
    ///     Verifier::new([old]).verify_at("m", "10", &header, b"x", 10_000),
    ///     Err(SignatureError::Stale)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SignatureError::BadTimestamp`] for a timestamp that is not an integer,
    /// [`SignatureError::Stale`] / [`SignatureError::Future`] outside the tolerance,
    /// [`SignatureError::NoSignature`] without a `v1,` signature, and
    /// [`SignatureError::NoMatch`] when none matches.
    pub fn verify_at(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if ts < now.saturating_sub(tolerance) {
            return Err(SignatureError::Stale);
        }
        if ts > now.saturating_add(tolerance) {
            return Err(SignatureError::Future);
        }
        let mut any = false;
        let mut matched = subtle::Choice::from(0u8);
        for sig in signatures.split(' ').filter(|s| !s.is_empty()) {
            let Some(b64) = sig.strip_prefix("v1,") else {
                continue;
            };
            any = true;
            let Ok(given) = STANDARD.decode(b64) else {
                continue;
            };
            for secret in &self.secrets {
                let expected = secret.mac(id, ts, body);
                matched |= expected[..].ct_eq(&given[..]);
            }
        }
        if !any {
            return Err(SignatureError::NoSignature);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

/// The system clock as unix seconds (0 before 1970, saturating far ahead).
///
/// # Examples
///
/// ```
/// assert!(syncbus_webhook::unix_now() > 1_600_000_000);
/// ```
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
