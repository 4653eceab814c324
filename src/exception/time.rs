//! TOML dates and date-times of an exceptions file as nanoseconds since the
//! epoch (UTC), and back to a date for messages.

use toml::value::Datetime;

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (Howard
/// Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a time in ns since the epoch.
pub fn format_date(ns: u64) -> String {
    let days = (ns / super::DAY_NS) as i64;
    // Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A TOML date (00:00 UTC) or date-time (an offset converted to UTC; none
/// taken as UTC) in ns since the epoch; `None` for a bare time or a date
/// before 1970.
pub fn datetime_ns(value: &Datetime) -> Option<u64> {
    let date = value.date?;
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let mut seconds = days * 86_400;
    let mut nanos = 0i64;
    if let Some(time) = value.time {
        seconds += i64::from(time.hour) * 3600
            + i64::from(time.minute) * 60
            + i64::from(time.second.unwrap_or(0));
        nanos = i64::from(time.nanosecond.unwrap_or(0));
    }
    if let Some(toml::value::Offset::Custom { minutes }) = value.offset {
        seconds -= i64::from(minutes) * 60;
    }
    let total = seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 1), 20_758);
        assert_eq!(format_date(20_758 * crate::exception::DAY_NS), "2026-11-01");
        let parse = |s: &str| datetime_ns(&s.parse::<Datetime>().unwrap());
        assert_eq!(parse("2026-11-01"), Some(20_758 * crate::exception::DAY_NS));
        assert_eq!(
            parse("2026-11-01T01:30:00+01:30"),
            Some(20_758 * crate::exception::DAY_NS)
        );
        assert_eq!(
            parse("2026-11-01T00:00:01.5Z"),
            Some(20_758 * crate::exception::DAY_NS + 1_500_000_000)
        );
        assert_eq!(parse("12:00:00"), None);
        assert_eq!(parse("1969-12-31"), None);
    }
}
