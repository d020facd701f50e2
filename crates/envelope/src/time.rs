//! Wall-clock timestamps with nanosecond precision and RFC 3339 text form, over the whole
//! range RFC 3339 writes in UTC (years 0000 to 9999), leap seconds included.

use std::error::Error;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

const SECS_PER_DAY: i64 = 86_400;

/// A point in time, in UTC, with nanosecond precision.
///
/// Covers every time RFC 3339 can write in UTC: `0000-01-01T00:00:00Z` to
/// `9999-12-31T23:59:59.999999999Z` ([`Timestamp::MIN`], [`Timestamp::MAX`]), leap seconds
/// (`23:59:60`) included. Displays as RFC 3339 in UTC with as many fractional digits as
/// needed (none, 3, 6 or 9); [`Timestamp::parse_rfc3339`] reads any RFC 3339 offset and keeps
/// the instant, not the offset, so `14:30:00+02:00` displays as `12:30:00Z`.
///
/// Ordering is by instant; a leap second sorts after second 59 of its minute and before the
/// next minute.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::Timestamp;
///
/// let t = Timestamp::parse_rfc3339("2024-05-01T14:30:00.250+02:00")?;
/// assert_eq!(t.to_string(), "2024-05-01T12:30:00.250Z");
/// assert_eq!(t, Timestamp::from_unix_millis(1_714_566_600_250));
///
/// let leap = Timestamp::parse_rfc3339("2016-12-31T23:59:60.5Z")?;
/// assert!(leap.is_leap_second());
/// assert_eq!(leap.to_string(), "2016-12-31T23:59:60.500Z");
/// assert_eq!(Timestamp::parse_rfc3339("0001-01-01T00:00:00Z")?.to_string(), "0001-01-01T00:00:00Z");
/// # Ok::<(), syncbus_envelope::TimeError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the unix epoch.
    secs: i64,
    /// Nanoseconds into the second; 1e9 and up inside a leap second (only on second 59).
    nanos: u32,
}

/// Unix seconds of 0000-01-01T00:00:00Z.
const MIN_SECS: i64 = -62_167_219_200;
/// Unix seconds of 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;
const NANOS: u32 = 1_000_000_000;

impl Timestamp {
    /// The earliest timestamp, `0000-01-01T00:00:00Z`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00Z");
    /// ```
    pub const MIN: Timestamp = Timestamp {
        secs: MIN_SECS,
        nanos: 0,
    };

    /// The latest timestamp outside a leap second, `9999-12-31T23:59:59.999999999Z`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999999Z");
    /// ```
    pub const MAX: Timestamp = Timestamp {
        secs: MAX_SECS,
        nanos: NANOS - 1,
    };

    /// The current wall-clock time.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert!(Timestamp::now() > Timestamp::from_unix_millis(1_700_000_000_000));
    /// ```
    pub fn now() -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::from_unix_parts(
                i64::try_from(d.as_secs()).unwrap_or(MAX_SECS),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let back = Timestamp::from_unix_parts(
                    i64::try_from(d.as_secs()).map(|s| -s).unwrap_or(MIN_SECS),
                    0,
                );
                // Subtract the sub-second part, borrowing from the seconds.
                match d.subsec_nanos() {
                    0 => back,
                    n => Timestamp::from_unix_parts(back.secs - 1, NANOS - n),
                }
            }
        }
    }

    /// A timestamp from nanoseconds since the unix epoch (negative for earlier times).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_unix_nanos(1).to_string(), "1970-01-01T00:00:00.000000001Z");
    /// ```
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp {
            secs: nanos.div_euclid(NANOS as i64),
            nanos: nanos.rem_euclid(NANOS as i64) as u32,
        }
    }

    /// Nanoseconds since the unix epoch, saturating outside 1677-09-21 to 2262-04-11 (what
    /// an `i64` holds). A leap second counts as the last nanosecond of second 59.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_unix_millis(2).as_unix_nanos(), 2_000_000);
    /// assert_eq!(Timestamp::MAX.as_unix_nanos(), i64::MAX);
    /// assert_eq!(Timestamp::MIN.as_unix_nanos(), i64::MIN);
    /// ```
    pub const fn as_unix_nanos(self) -> i64 {
        let nanos = if self.nanos >= NANOS {
            NANOS - 1
        } else {
            self.nanos
        };
        let total = self.secs as i128 * NANOS as i128 + nanos as i128;
        if total > i64::MAX as i128 {
            i64::MAX
        } else if total < i64::MIN as i128 {
            i64::MIN
        } else {
            total as i64
        }
    }

    /// Whole seconds since the unix epoch (rounded down; a leap second counts as second 59).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_unix_nanos(-1).as_unix_secs(), -1);
    /// assert_eq!(Timestamp::MAX.as_unix_secs(), 253_402_300_799);
    /// ```
    pub const fn as_unix_secs(self) -> i64 {
        self.secs
    }

    /// Nanoseconds into the second, below 1,000,000,000 (inside a leap second, into the leap
    /// second).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_unix_nanos(-1).subsec_nanos(), 999_999_999);
    /// assert_eq!(Timestamp::parse_rfc3339("2016-12-31T23:59:60.25Z")?.subsec_nanos(), 250_000_000);
    /// # Ok::<(), syncbus_envelope::TimeError>(())
    /// ```
    pub const fn subsec_nanos(self) -> u32 {
        self.nanos % NANOS
    }

    /// Whether the time falls inside a leap second (`:60`).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert!(Timestamp::parse_rfc3339("2016-12-31T23:59:60Z")?.is_leap_second());
    /// assert!(!Timestamp::parse_rfc3339("2016-12-31T23:59:59Z")?.is_leap_second());
    /// # Ok::<(), syncbus_envelope::TimeError>(())
    /// ```
    pub const fn is_leap_second(self) -> bool {
        self.nanos >= NANOS
    }

    /// A timestamp from milliseconds since the unix epoch; saturates at [`Timestamp::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_unix_millis(1_500).to_string(), "1970-01-01T00:00:01.500Z");
    /// assert_eq!(Timestamp::from_unix_millis(u64::MAX), Timestamp::MAX);
    /// ```
    pub const fn from_unix_millis(millis: u64) -> Timestamp {
        let secs = millis / 1000;
        if secs > MAX_SECS as u64 {
            Timestamp::MAX
        } else {
            Timestamp {
                secs: secs as i64,
                nanos: (millis % 1000) as u32 * 1_000_000,
            }
        }
    }

    /// A timestamp from its parts, clamped into range; `nanos` below 1e9.
    const fn from_unix_parts(secs: i64, nanos: u32) -> Timestamp {
        if secs > MAX_SECS {
            Timestamp::MAX
        } else if secs < MIN_SECS {
            Timestamp::MIN
        } else {
            Timestamp { secs, nanos }
        }
    }

    /// The raw parts, for the binary codec: unix seconds and nanoseconds, the latter 1e9 and
    /// up inside a leap second.
    pub(crate) fn to_parts(self) -> (i64, u32) {
        (self.secs, self.nanos)
    }

    /// The inverse of [`to_parts`](Self::to_parts); `None` for parts it never returns.
    pub(crate) fn from_parts(secs: i64, nanos: u32) -> Option<Timestamp> {
        let in_range = (MIN_SECS..=MAX_SECS).contains(&secs);
        let leap_ok = nanos < NANOS || (nanos < 2 * NANOS && secs.rem_euclid(60) == 59);
        (in_range && leap_ok).then_some(Timestamp { secs, nanos })
    }

    /// Parses an RFC 3339 timestamp such as `2024-05-01T12:30:00Z` or
    /// `2024-05-01T14:30:00.123456+02:00`.
    ///
    /// `t`, `z` and a space in place of `T` are accepted, as RFC 3339 allows. Digits past the
    /// ninth fractional one are dropped. A leap second (`:60`) is kept as one, on any
    /// minute: only a table of past leap seconds could tell which are real.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Timestamp;
    ///
    /// let a = Timestamp::parse_rfc3339("2024-05-01T12:30:00Z")?;
    /// let b = Timestamp::parse_rfc3339("2024-05-01 07:30:00-05:00")?;
    /// assert_eq!(a, b);
    /// assert_eq!(Timestamp::parse_rfc3339("9999-12-31T23:59:59Z")?.to_string(), "9999-12-31T23:59:59Z");
    /// # Ok::<(), syncbus_envelope::TimeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TimeError::Malformed`] if the text is not RFC 3339 or names a day that does not
    /// exist; [`TimeError::OutOfRange`] if the offset moves the time out of years 0000 to
    /// 9999 in UTC.
    ///
    /// ```
    /// use syncbus_envelope::{TimeError, Timestamp};
    ///
    /// assert!(matches!(Timestamp::parse_rfc3339("2023-02-29T00:00:00Z"), Err(TimeError::Malformed { .. })));
    /// assert_eq!(Timestamp::parse_rfc3339("9999-12-31T23:00:00-01:00"), Err(TimeError::OutOfRange));
    /// ```
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimeError> {
        parse(s.as_bytes())
    }
}

fn malformed(reason: &'static str) -> TimeError {
    TimeError::Malformed { reason }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize, what: &'static str) -> Result<u32, TimeError> {
        let end = self.i + n;
        let part = self.b.get(self.i..end).ok_or_else(|| malformed(what))?;
        let mut v = 0u32;
        for &c in part {
            if !c.is_ascii_digit() {
                return Err(malformed(what));
            }
            v = v * 10 + u32::from(c - b'0');
        }
        self.i = end;
        Ok(v)
    }

    fn expect(&mut self, allowed: &[u8], what: &'static str) -> Result<u8, TimeError> {
        match self.b.get(self.i) {
            Some(c) if allowed.contains(c) => {
                self.i += 1;
                Ok(*c)
            }
            _ => Err(malformed(what)),
        }
    }
}

fn parse(b: &[u8]) -> Result<Timestamp, TimeError> {
    let mut c = Cursor { b, i: 0 };
    let year = c.digits(4, "expected a four-digit year")?;
    c.expect(b"-", "expected '-' after the year")?;
    let month = c.digits(2, "expected a two-digit month")?;
    c.expect(b"-", "expected '-' after the month")?;
    let day = c.digits(2, "expected a two-digit day")?;
    c.expect(b"Tt ", "expected 'T' between date and time")?;
    let hour = c.digits(2, "expected a two-digit hour")?;
    c.expect(b":", "expected ':' after the hour")?;
    let minute = c.digits(2, "expected two-digit minutes")?;
    c.expect(b":", "expected ':' after the minutes")?;
    let mut second = c.digits(2, "expected two-digit seconds")?;

    let mut nanos: i64 = 0;
    if c.b.get(c.i) == Some(&b'.') {
        c.i += 1;
        let start = c.i;
        while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
            if c.i - start < 9 {
                nanos = nanos * 10 + i64::from(c.b[c.i] - b'0');
            }
            c.i += 1;
        }
        let n = c.i - start;
        if n == 0 {
            return Err(malformed("expected digits after '.'"));
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }

    let offset_secs: i64 = match c.expect(b"Zz+-", "expected 'Z' or an offset such as +02:00")? {
        b'Z' | b'z' => 0,
        sign => {
            let oh = c.digits(2, "expected a two-digit offset hour")?;
            c.expect(b":", "expected ':' in the offset")?;
            let om = c.digits(2, "expected two-digit offset minutes")?;
            if oh > 23 || om > 59 {
                return Err(malformed("offset out of range"));
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
    };
    if c.i != b.len() {
        return Err(malformed("unexpected text after the timestamp"));
    }

    if !(1..=12).contains(&month) {
        return Err(malformed("month out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(malformed("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(malformed("time of day out of range"));
    }
    let mut nanos = nanos as u32;
    if second == 60 {
        second = 59;
        nanos += NANOS;
    }

    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Timestamp::from_parts(secs, nanos).ok_or(TimeError::OutOfRange)
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days`
// (https://howardhinnant.github.io/date_algorithms.html), proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let sod = self.secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let second = sod % 60 + i64::from(self.is_leap_second());
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{second:02}",
            sod / 3600,
            sod / 60 % 60,
        )?;
        let nanos = self.subsec_nanos();
        if nanos != 0 {
            if nanos.is_multiple_of(1_000_000) {
                write!(f, ".{:03}", nanos / 1_000_000)?;
            } else if nanos.is_multiple_of(1_000) {
                write!(f, ".{:06}", nanos / 1_000)?;
            } else {
                write!(f, ".{nanos:09}")?;
            }
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, TimeError> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TsVisitor;

        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TsVisitor)
    }
}

/// Why a string is not a valid RFC 3339 timestamp.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{TimeError, Timestamp};
///
/// let err = Timestamp::parse_rfc3339("2024-05-01").unwrap_err();
/// assert_eq!(err.to_string(), "invalid rfc 3339 timestamp: expected 'T' between date and time");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// The text is not an RFC 3339 timestamp.
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The time falls outside years 0000 to 9999 in UTC (an offset moved it out).
    OutOfRange,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Malformed { reason } => write!(f, "invalid rfc 3339 timestamp: {reason}"),
            TimeError::OutOfRange => {
                f.write_str("timestamp out of range, supported are years 0000 to 9999 in utc")
            }
        }
    }
}

impl Error for TimeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_range() {
        let (lo, hi) = (MIN_SECS / SECS_PER_DAY, MAX_SECS / SECS_PER_DAY);
        for days in (lo..=hi).step_by(17).chain([lo, hi]) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn range_constants_match_the_calendar() {
        assert_eq!(days_from_civil(0, 1, 1) * SECS_PER_DAY, MIN_SECS);
        assert_eq!(
            days_from_civil(9999, 12, 31) * SECS_PER_DAY + 86_399,
            MAX_SECS
        );
    }

    #[test]
    fn extremes_format_and_parse() {
        for t in [
            Timestamp::from_unix_nanos(i64::MIN),
            Timestamp::from_unix_nanos(i64::MAX),
            Timestamp::from_unix_nanos(0),
            Timestamp::from_unix_nanos(-1),
            Timestamp::MIN,
            Timestamp::MAX,
        ] {
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t), "{t}");
        }
    }

    #[test]
    fn parts_refuse_what_to_parts_never_gives() {
        assert_eq!(Timestamp::from_parts(MAX_SECS + 1, 0), None);
        assert_eq!(Timestamp::from_parts(MIN_SECS - 1, 0), None);
        assert_eq!(Timestamp::from_parts(0, NANOS), None); // 00:00:00 is no leap second
        assert!(Timestamp::from_parts(59, NANOS).is_some());
        assert_eq!(Timestamp::from_parts(59, 2 * NANOS), None);
    }
}
