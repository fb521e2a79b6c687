//! Event times. CloudTrail writes `eventTime` as RFC 3339 (`2023-07-10T11:45:00Z`, with or
//! without fractions, sometimes with an offset) and some exports (Athena, spreadsheets) as
//! `2023-07-10 11:45:00`. STS writes credential expirations in a third, human form
//! (`Jul 10, 2023, 6:30:22 PM`, with or without the comma after the year). All of them become
//! one integer: milliseconds since the Unix epoch, UTC, so ordering and arithmetic are cheap.

use std::fmt;

/// A point in time, milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct EventTime(pub i64);

impl EventTime {
    pub const MINUTE: i64 = 60_000;
    pub const HOUR: i64 = 3_600_000;

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> EventTime {
        EventTime(self.0.saturating_add(ms))
    }

    /// Parse an `eventTime` in any of the forms CloudTrail and its exports use.
    pub fn parse(s: &str) -> Option<EventTime> {
        let b = s.trim().as_bytes();
        if b.len() < 19 {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
            return None;
        }
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let mut rest = &b[19..];
        let mut millis = 0i64;
        if let Some((&b'.', frac)) = rest.split_first() {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            // Keep milliseconds; finer digits are truncated (ordering within a millisecond
            // falls back to eventID, which is what makes it deterministic).
            for i in 0..3 {
                millis = millis * 10
                    + frac
                        .get(i)
                        .filter(|c| i < n && c.is_ascii_digit())
                        .map_or(0, |c| (c - b'0') as i64);
            }
            rest = &frac[n..];
        }
        let offset_minutes = match rest {
            [] | [b'Z'] | [b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
                let h = digits(&[*h1, *h2])?;
                let m = digits(&[*m1, *m2])?;
                let v = h * 60 + m;
                if *sign == b'+' {
                    v
                } else {
                    -v
                }
            }
            _ => return None,
        };
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Some(EventTime(secs * 1000 + millis))
    }

    /// Parse a credential expiration: RFC 3339, or STS's `Jul 10, 2023, 6:30:22 PM` (also
    /// without the comma after the year).
    pub fn parse_expiration(s: &str) -> Option<EventTime> {
        if let Some(t) = EventTime::parse(s) {
            return Some(t);
        }
        let cleaned = s.replace(',', " ");
        let mut parts = cleaned.split_whitespace();
        let month = month_number(parts.next()?)?;
        let day: i64 = parts.next()?.parse().ok()?;
        // Four-digit years only: anything else is not a date STS wrote, and unbounded years
        // would overflow the millisecond arithmetic.
        let year: i64 = parts
            .next()?
            .parse()
            .ok()
            .filter(|y| (1000..=9999).contains(y))?;
        let clock = parts.next()?;
        let meridiem = parts.next();
        let mut hms = clock.split(':').map(|p| p.parse::<i64>().ok());
        let mut hour = hms.next()??;
        let minute = hms.next()??;
        let second = hms.next().unwrap_or(Some(0))?;
        match meridiem.map(|m| m.to_ascii_uppercase()) {
            Some(m) if m == "PM" && hour < 12 => hour += 12,
            Some(m) if m == "AM" && hour == 12 => hour = 0,
            Some(m) if m != "AM" && m != "PM" && m != "UTC" => return None,
            _ => {}
        }
        if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Some(EventTime(secs * 1000))
    }

    /// Whole seconds since the epoch and the (year, month, day, hour, minute, second) parts.
    pub fn to_parts(self) -> (i64, i64, i64, i64, i64, i64) {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60)
    }

    pub fn from_parts(
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: i64,
    ) -> EventTime {
        EventTime(
            (days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
                * 1000,
        )
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 in UTC; milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.to_parts();
        let ms = self.0.rem_euclid(1000);
        if ms == 0 {
            write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
        }
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

fn month_number(name: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.get(..3)?.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as i64 + 1)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the era-based method: 400-year eras
/// of 146097 days make the arithmetic exact without tables).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_event_time_form() {
        let base = EventTime::parse("2023-07-10T11:45:00Z").unwrap();
        assert_eq!(base.to_string(), "2023-07-10T11:45:00Z");
        assert_eq!(EventTime::parse("2023-07-10 11:45:00"), Some(base));
        assert_eq!(
            EventTime::parse("2023-07-10T11:45:00.250Z"),
            Some(base.plus_millis(250))
        );
        assert_eq!(
            EventTime::parse("2023-07-10T11:45:00.123456789Z"),
            Some(base.plus_millis(123))
        );
        assert_eq!(EventTime::parse("2023-07-10T13:45:00+02:00"), Some(base));
        assert_eq!(
            EventTime::parse("2023-07-10T11:45:00.5Z"),
            Some(base.plus_millis(500))
        );
        assert_eq!(base.plus_millis(7).to_string(), "2023-07-10T11:45:00.007Z");
    }

    #[test]
    fn rejects_garbage_times() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-07-10T11:45",
            "2023-07-10T11:45:00Q",
            "2023-07-10T11:45:00.",
        ] {
            assert_eq!(EventTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_arithmetic_matches_known_values() {
        assert_eq!(EventTime::parse("1970-01-01T00:00:00Z"), Some(EventTime(0)));
        assert_eq!(
            EventTime::parse("2000-03-01T00:00:00Z"),
            Some(EventTime(951_868_800_000))
        );
        assert_eq!(
            EventTime::parse("2024-02-29T23:59:59Z")
                .unwrap()
                .to_string(),
            "2024-02-29T23:59:59Z"
        );
        for days in [-1000i64, 0, 1, 59, 60, 11_016, 19_723, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parses_sts_expiration_forms() {
        let want = EventTime::parse("2023-07-10T18:30:22Z");
        assert_eq!(
            EventTime::parse_expiration("Jul 10, 2023, 6:30:22 PM"),
            want
        );
        assert_eq!(EventTime::parse_expiration("Jul 10, 2023 6:30:22 PM"), want);
        assert_eq!(EventTime::parse_expiration("2023-07-10T18:30:22Z"), want);
        assert_eq!(
            EventTime::parse_expiration("Jul 10, 2023, 12:05:00 AM"),
            EventTime::parse("2023-07-10T00:05:00Z")
        );
        assert_eq!(
            EventTime::parse_expiration("Foo 10, 2023, 6:30:22 PM"),
            None
        );
        assert_eq!(
            EventTime::parse_expiration("Jan 1, 300000000, 1:00:00 AM"),
            None
        );
    }
}
