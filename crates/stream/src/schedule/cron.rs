//! A cron expression in a time zone: when a job runs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::error::ScheduleError;

/// A cron expression (parsed by `croner` 4) in a time zone: UTC unless
/// [`in_zone`](Self::in_zone) names another (an IANA name such as `Europe/Paris`).
///
/// Five fields (`minute hour day-of-month month day-of-week`) or six with seconds first;
/// `L`, `W` and `#` as croner has them. Across daylight-saving changes in the zone
/// (croner's rules, the Open Cron Pattern Specification's):
///
/// - **spring forward**: a fixed-time job whose time falls in the gap runs at the first
///   valid time after it, the same day (02:30 becomes 03:00): no run is lost; a job at a
///   time that exists runs as always.
/// - **fall back**: a fixed-time job whose time occurs twice runs once, at the first one;
///   interval and wildcard jobs run for each occurrence in real time.
///
/// # Examples
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use syncbus_stream::Schedule;
///
/// // 23:59 every day in Paris (CET in winter: 22:59 UTC)
/// let eod = Schedule::cron("59 23 * * *")?.in_zone("Europe/Paris")?;
/// let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
/// assert_eq!(eod.next_after(now), Some(Utc.with_ymd_and_hms(2026, 1, 15, 22, 59, 0).unwrap()));
/// assert_eq!(eod.to_string(), "59 23 * * * (Europe/Paris)");
///
/// assert!(Schedule::cron("61 * * * *").is_err());
/// assert!(Schedule::cron("* * * * *")?.in_zone("Mars/Olympus_Mons").is_err());
/// # Ok::<(), syncbus_stream::ScheduleError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// The schedule of a cron expression, in UTC.
    ///
    /// # Examples
    ///
    /// See [`Schedule`].
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Cron`] for an expression croner does not accept.
    pub fn cron(expression: &str) -> Result<Self, ScheduleError> {
        let cron = Cron::from_str(expression).map_err(|e| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Schedule {
            expression: expression.trim().to_owned(),
            cron,
            zone: Tz::UTC,
        })
    }

    /// The same expression read in the zone named `zone` (IANA: `America/New_York`).
    ///
    /// # Examples
    ///
    /// See [`Schedule`].
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Zone`] for a name the compiled-in time zone database does not have.
    pub fn in_zone(self, zone: &str) -> Result<Self, ScheduleError> {
        let zone = Tz::from_str(zone).map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        Ok(self.with_zone(zone))
    }

    /// The same expression read in `zone`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::Schedule;
    /// let s = Schedule::cron("0 9 * * MON-FRI")?.with_zone(chrono_tz::Asia::Tokyo);
    /// assert_eq!(s.zone().name(), "Asia/Tokyo");
    /// # Ok::<(), syncbus_stream::ScheduleError>(())
    /// ```
    pub fn with_zone(mut self, zone: Tz) -> Self {
        self.zone = zone;
        self
    }

    /// The zone the expression is read in.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_stream::Schedule::cron("* * * * *")?.zone().name(), "UTC");
    /// # Ok::<(), syncbus_stream::ScheduleError>(())
    /// ```
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The expression as given (trimmed).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_stream::Schedule::cron(" 0 0 * * * ")?.expression(), "0 0 * * *");
    /// # Ok::<(), syncbus_stream::ScheduleError>(())
    /// ```
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time the schedule fires strictly after `t`; `None` if it never does again
    /// (an expression for a year past, or croner's search limit).
    ///
    /// # Examples
    ///
    /// See [`Schedule`].
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.zone.name())
    }
}
