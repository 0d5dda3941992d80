//! Time as Leasehold stores it: UTC microseconds since the Unix epoch.
//!
//! On the wire a timestamp is RFC 3339 *with* an offset (`Z` or `+02:00`);
//! any offset is normalised to UTC, and a timestamp without an offset is
//! rejected, because guessing a zone is how leases silently expire early.
//! Storage keeps the integer, never text compared lexically.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An instant in UTC with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Earliest accepted instant: 0001-01-01T00:00:00Z.
const MICROS_MIN: i64 = -62_135_596_800_000_000;
/// Latest accepted instant: 9999-12-31T23:59:59.999999Z.
const MICROS_MAX: i64 = 253_402_300_799_999_999;

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from microseconds since the epoch; `None` outside years 1..=9999.
    pub fn from_micros(micros: i64) -> Option<Timestamp> {
        (MICROS_MIN..=MICROS_MAX)
            .contains(&micros)
            .then_some(Timestamp(micros))
    }

    /// Microseconds since the epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time, truncated to microseconds. Only binaries
    /// call this; libraries and tests take time as a parameter.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_micros())
    }

    /// Parse RFC 3339 with a mandatory offset, normalising to UTC.
    pub fn parse(text: &str) -> Result<Timestamp, Error> {
        let parsed = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
            Error::InvalidInput(format!(
                "timestamp {text:?} is not RFC 3339 with an offset (e.g. 2026-06-03T10:00:00Z): {e}"
            ))
        })?;
        let utc = parsed.with_timezone(&Utc);
        Timestamp::from_micros(utc.timestamp_micros()).ok_or_else(|| {
            Error::InvalidInput(format!("timestamp {text:?} is outside years 1 to 9999"))
        })
    }

    /// Add a signed number of microseconds, failing on overflow or leaving years 1..=9999.
    pub fn checked_add_micros(self, micros: i64) -> Option<Timestamp> {
        self.0.checked_add(micros).and_then(Timestamp::from_micros)
    }

    /// Add a duration, failing past year 9999.
    pub fn checked_add(self, d: std::time::Duration) -> Option<Timestamp> {
        let micros = i64::try_from(d.as_micros()).ok()?;
        self.checked_add_micros(micros)
    }

    /// Microseconds from `earlier` to `self` (negative when `self` is before).
    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 in UTC with a `Z`, microseconds shown when non-zero.
    pub fn to_rfc3339(self) -> String {
        let dt = DateTime::<Utc>::from_timestamp_micros(self.0).expect("timestamp in range");
        dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_utc() {
        let a = Timestamp::parse("2026-06-03T10:00:00+02:00").unwrap();
        let b = Timestamp::parse("2026-06-03T08:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_rfc3339(), "2026-06-03T08:00:00Z");
    }

    #[test]
    fn missing_offset_is_invalid_input() {
        let err = Timestamp::parse("2026-06-03T10:00:00").unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidInput);
    }

    #[test]
    fn micros_round_trip() {
        let t = Timestamp::parse("2026-06-03T10:00:00.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-06-03T10:00:00.123456Z");
        assert_eq!(Timestamp::parse(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn out_of_range_is_rejected() {
        assert!(Timestamp::from_micros(i64::MAX).is_none());
        assert!(Timestamp::from_micros(MICROS_MAX)
            .unwrap()
            .checked_add_micros(1)
            .is_none());
    }
}
