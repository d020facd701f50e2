//! Event time as milliseconds since the unix epoch, the unit windows and watermarks count in.

use std::time::Duration;

use syncbus_envelope::Timestamp;

use crate::error::ConfigError;

/// The event time of a timestamp, in milliseconds since the unix epoch (floored).
pub(crate) fn millis(t: Timestamp) -> i64 {
    t.as_unix_nanos().div_euclid(1_000_000)
}

/// A setting's duration in whole milliseconds, at least one.
pub(crate) fn positive_millis(d: Duration, what: &'static str) -> Result<i64, ConfigError> {
    let ms = non_negative_millis(d, what)?;
    if ms == 0 {
        return Err(ConfigError::Zero { what });
    }
    Ok(ms)
}

/// A setting's duration in whole milliseconds; zero allowed.
pub(crate) fn non_negative_millis(d: Duration, what: &'static str) -> Result<i64, ConfigError> {
    // Keep far from i64::MAX so `end + grace` and `max - bound` cannot overflow in practice;
    // the arithmetic saturates anyway.
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= i64::MAX / 4)
        .ok_or(ConfigError::TooLong { what })
}
