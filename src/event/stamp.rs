//! The event's typed scalars: capture times as RFC 3339 UTC with
//! microseconds, and 64-bit ids as 16 lowercase hex digits. Each is written
//! into a stack buffer, so that building and writing an event allocates
//! nothing for them.

use std::fmt;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};

/// A capture time, nanoseconds since the Unix epoch, written as RFC 3339 UTC
/// with microseconds (finer stamps are truncated): `2026-11-28T08:00:01.000123Z`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

/// The length of [`Timestamp`]'s text.
const TIMESTAMP_LEN: usize = 27;

impl Timestamp {
    /// Its text, in a stack buffer: the civil date from the day count
    /// (Howard Hinnant's `civil_from_days`), then fixed-width digits. By hand
    /// rather than through humantime's `Display` (which the test
    /// `hand_written_timestamps_equal_humantime` holds it to): `fmt` and a
    /// `String` per event cost more than the rest of writing it.
    pub fn text(self) -> TimestampText {
        let micros = self.0 / 1_000;
        let secs = micros / 1_000_000;
        let (days, of_day) = (secs / 86_400, secs % 86_400);
        // Days since 0000-03-01; u64 nanoseconds end in 2554, so no era is
        // negative.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut digits = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        digits(0, 4, year);
        digits(5, 2, month);
        digits(8, 2, day);
        digits(11, 2, of_day / 3_600);
        digits(14, 2, of_day / 60 % 60);
        digits(17, 2, of_day % 60);
        digits(20, 6, micros % 1_000_000);
        TimestampText(text)
    }

    /// Milliseconds since the epoch (CEF's `rt`, LEEF's `devTime`).
    pub fn epoch_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Reads RFC 3339 UTC text back (any precision).
    pub fn parse(text: &str) -> Option<Timestamp> {
        let time = humantime::parse_rfc3339_weak(text)
            .ok()
            .or_else(|| humantime::parse_rfc3339(text).ok())?;
        let nanos = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        u64::try_from(nanos).ok().map(Timestamp)
    }
}

/// A [`Timestamp`]'s text.
#[derive(Clone, Copy)]
pub struct TimestampText([u8; TIMESTAMP_LEN]);

impl TimestampText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Digits, dashes, colons, a dot and letters: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| D::Error::custom("not an RFC 3339 time"))
    }
}

/// A 64-bit id (`flow_id`, `incident_id`), written as 16 lowercase hex
/// digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HexId(pub u64);

impl HexId {
    /// Its 16 digits, in a stack buffer.
    pub fn text(self) -> HexText {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        HexText(text)
    }
}

/// A [`HexId`]'s text.
#[derive(Clone, Copy)]
pub struct HexText([u8; 16]);

impl HexText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Hex digits: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Serialize for HexId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if text.len() != 16 {
            return Err(D::Error::custom("not 16 hex digits"));
        }
        u64::from_str_radix(&text, 16)
            .map(HexId)
            .map_err(|_| D::Error::custom("not 16 hex digits"))
    }
}

/// RFC 3339 UTC with microseconds: finer stamps are truncated.
pub fn rfc3339_micros(ts_ns: u64) -> String {
    Timestamp(ts_ns).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn hand_written_timestamps_equal_humantime() {
        let mut rng = fastrand::Rng::with_seed(5);
        let edges = [
            0,
            999,
            1_000,
            86_399_999_999_999,
            86_400_000_000_000,
            u64::MAX,
        ];
        let leap_days = (1972..2550u64)
            .step_by(4)
            .map(|year| (year - 1970) * 365 * 86_400_000_000_000);
        let samples = edges
            .into_iter()
            .chain(leap_days)
            .chain((0..200_000).map(|_| rng.u64(..)));
        for ts in samples {
            let time = UNIX_EPOCH + Duration::from_micros(ts / 1_000);
            let reference = humantime::format_rfc3339_micros(time).to_string();
            assert_eq!(Timestamp(ts).to_string(), reference, "{ts}");
        }
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds_and_read_back() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        let ts = Timestamp(1_795_852_801_000_123_999);
        assert_eq!(ts.to_string(), "2026-11-28T08:00:01.000123Z");
        assert_eq!(
            Timestamp::parse(&ts.to_string()),
            Some(Timestamp(1_795_852_801_000_123_000))
        );
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn ids_are_sixteen_hex_digits_both_ways() {
        for id in [0, 1, 0x5f3a_9c0e_12ab_4477, u64::MAX] {
            let json = serde_json::to_string(&HexId(id)).unwrap();
            assert_eq!(json, format!("\"{id:016x}\""));
            assert_eq!(serde_json::from_str::<HexId>(&json).unwrap(), HexId(id));
        }
        assert!(serde_json::from_str::<HexId>("\"12\"").is_err());
    }
}
