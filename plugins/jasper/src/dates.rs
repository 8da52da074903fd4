//! Dates: a lenient parser for every timestamp shape Jasper sends, and RFC 3339 output.
//!
//! Jasper's APIs use several formats (see `README.md`): `2016-06-29 00:21:33.339+0000` (REST device
//! details), `2018-08-26T16:00:00.000Z` (ISO, REST and SOAP `xs:dateTime`), offsets as `+05:00`,
//! `+0500` or `+05`, and `xs:date` values such as `2016-08-01`, `2016-08-01Z` or
//! `2016-08-01+00:00`. Everything is converted to milliseconds since the Unix epoch and printed
//! back as RFC 3339 in UTC. No function here panics on any input.

use std::fmt;

/// A calendar date (proleptic Gregorian), always valid once constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u32,
    day: u32,
}

impl Date {
    /// A date if it exists in the calendar (years 1..=9999).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Strict `YYYY-MM-DD`, the format of the plugin's inputs.
    pub fn parse_iso(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let year = digits(&s[0..4])?;
        let month = digits(&s[5..7])?;
        let day = digits(&s[8..10])?;
        Date::new(i32::try_from(year).ok()?, month, day)
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
    }

    /// `YYYY-MM-DDZ`: an `xs:date` in UTC, as Jasper's APIs expect for cycle and effective dates.
    pub fn xs_date_utc(self) -> String {
        format!("{self}Z")
    }

    /// The first day of this date's month: the start of its billing cycle (Jasper's cycles
    /// start on the 1st of each month, UTC).
    pub fn first_of_month(self) -> Date {
        Date { day: 1, ..self }
    }

    /// The first day of the month `n` months before this date's month (year 1 at the earliest).
    pub fn months_back(self, n: u32) -> Date {
        let index = i64::from(self.year) * 12 + i64::from(self.month) - 1 - i64::from(n);
        let index = index.max(12);
        Date {
            year: (index / 12) as i32,
            month: (index % 12) as u32 + 1,
            day: 1,
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Only ASCII digits, parsed (empty or anything else: `None`).
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days from 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses any timestamp or date Jasper sends; returns milliseconds since the Unix epoch.
///
/// Accepted: `YYYY-MM-DD`, then optionally `T`/`t`/space and `HH:MM[:SS[.fraction]]`, then
/// optionally a zone: `Z`, `±HH:MM`, `±HHMM`, `±HH`, `UTC` or `GMT` (a space before the zone is
/// allowed). Without a zone the value is taken as UTC (Jasper documents UTC). A date alone means
/// midnight at its zone.
pub fn parse_timestamp_ms(input: &str) -> Option<i64> {
    let s = input.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let date = Date::parse_iso(&s[..10])?;
    let mut rest = &s[10..];
    let mut ms_of_day: i64 = 0;
    if let Some(time) = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| {
            rest.strip_prefix(' ')
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
    {
        let (ms, after) = parse_time(time)?;
        ms_of_day = ms;
        rest = after;
    }
    let offset_min = parse_zone(rest.trim_start())?;
    Some((date.days_since_epoch() * 86_400_000 + ms_of_day) - offset_min * 60_000)
}

/// `HH:MM[:SS[.fraction]]` → (milliseconds of the day, rest of the string).
fn parse_time(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if b.len() < 5 || b[2] != b':' {
        return None;
    }
    let hour = digits(s.get(0..2)?)?;
    let minute = digits(s.get(3..5)?)?;
    let mut rest = &s[5..];
    let mut second = 0;
    let mut millis = 0;
    if let Some(r) = rest.strip_prefix(':') {
        second = digits(r.get(0..2)?)?;
        rest = &r[2..];
        if let Some(r) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            // Milliseconds: the first three digits, right-padded (".5" is 500 ms).
            let mut ms = 0u32;
            for i in 0..3 {
                ms = ms * 10
                    + r.as_bytes()
                        .get(i)
                        .filter(|_| i < n)
                        .map_or(0, |d| u32::from(d - b'0'));
            }
            millis = ms;
            rest = &r[n..];
        }
    }
    // 24:00:00 is midnight at the end of the day; 60 is a leap second, kept as 59.
    let valid = (hour < 24 && minute < 60 && second <= 60)
        || (hour == 24 && minute == 0 && second == 0 && millis == 0);
    if !valid {
        return None;
    }
    let second = second.min(59);
    let ms = ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second)) * 1000
        + i64::from(millis);
    Some((ms, rest))
}

/// A zone designator → offset in minutes east of UTC. Empty: UTC.
fn parse_zone(s: &str) -> Option<i64> {
    match s {
        "" | "Z" | "z" | "UTC" | "GMT" => return Some(0),
        _ => {}
    }
    let sign = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &s[1..];
    let (h, m) = match body.len() {
        2 => (digits(body)?, 0),
        4 => (digits(body.get(0..2)?)?, digits(body.get(2..4)?)?),
        5 if body.as_bytes()[2] == b':' => (digits(body.get(0..2)?)?, digits(body.get(3..5)?)?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (i64::from(h) * 60 + i64::from(m)))
}

/// RFC 3339 in UTC: `2016-06-29T00:21:33.339Z`, or without the fraction when it is zero.
/// `None` outside years 1..=9999.
pub fn format_rfc3339(ms: i64) -> Option<String> {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    Some(if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    })
}

/// Lenient parse then RFC 3339 output; `None` when the text is not a date.
pub fn normalize(input: &str) -> Option<String> {
    parse_timestamp_ms(input).and_then(format_rfc3339)
}

/// The UTC date of a timestamp in milliseconds.
pub fn date_of_ms(ms: i64) -> Option<Date> {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    Date::new(i32::try_from(y).ok()?, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_start_on_the_first_of_the_month() {
        let d = Date::parse_iso("2026-03-31").unwrap();
        assert_eq!(d.first_of_month().to_string(), "2026-03-01");
        assert_eq!(d.months_back(0).to_string(), "2026-03-01");
        assert_eq!(d.months_back(1).to_string(), "2026-02-01");
        assert_eq!(d.months_back(3).to_string(), "2025-12-01");
        assert_eq!(d.months_back(15).to_string(), "2024-12-01");
        assert_eq!(
            Date::new(1, 2, 3).unwrap().months_back(5).to_string(),
            "0001-01-01"
        );
    }

    #[test]
    fn dates_must_exist_in_the_calendar() {
        assert_eq!(
            Date::parse_iso("2024-02-29")
                .map(|d| d.to_string())
                .as_deref(),
            Some("2024-02-29")
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-4-01",
            "24-04-01",
            "2024-04-01Z",
            "",
            "abcd-ef-gh",
            "2024-04-0١",
            "0000-01-01",
            "2024/04/01",
        ] {
            assert_eq!(Date::parse_iso(bad), None, "{bad}");
        }
        assert_eq!(Date::parse_iso("1900-02-29"), None);
        assert!(Date::parse_iso("2000-02-29").is_some());
    }

    #[test]
    fn every_jasper_format_is_understood() {
        let cases = [
            ("2016-06-29 00:21:33.339+0000", "2016-06-29T00:21:33.339Z"),
            ("2018-08-26T16:00:00.000Z", "2018-08-26T16:00:00Z"),
            ("2017-02-17T15:36:21.828Z", "2017-02-17T15:36:21.828Z"),
            ("2015-05-15T09:27:33.069Z", "2015-05-15T09:27:33.069Z"),
            ("2016-04-18T17:31:34+00:00", "2016-04-18T17:31:34Z"),
            ("2016-04-18T17:31:34+05:30", "2016-04-18T12:01:34Z"),
            ("2016-04-18T01:31:34-0300", "2016-04-18T04:31:34Z"),
            ("2016-04-18 01:31:34 +02", "2016-04-17T23:31:34Z"),
            ("2016-04-18T01:31", "2016-04-18T01:31:00Z"),
            ("2016-04-18T01:31:34.5Z", "2016-04-18T01:31:34.500Z"),
            ("2016-04-18T01:31:34.123456789Z", "2016-04-18T01:31:34.123Z"),
            ("2016-04-18 01:31:34 UTC", "2016-04-18T01:31:34Z"),
            ("2016-08-01", "2016-08-01T00:00:00Z"),
            ("2016-08-01Z", "2016-08-01T00:00:00Z"),
            ("2016-08-01+00:00", "2016-08-01T00:00:00Z"),
            ("2016-04-18+05:00", "2016-04-17T19:00:00Z"),
            ("  1970-01-01T00:00:00Z  ", "1970-01-01T00:00:00Z"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
            ("2016-12-31T24:00:00Z", "2017-01-01T00:00:00Z"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        for bad in [
            "",
            "2016",
            "2016-06-29T",
            "2016-06-29T25:00:00Z",
            "2016-06-29T10:61:00Z",
            "2016-06-29X10:00:00",
            "2016-06-29T10:00:00+25:00",
            "2016-06-29T10:00:00+5",
            "2016-06-29T10:00:00.Z",
            "not a date at all",
            "2016-06-29T10:00:00 Europe/Paris",
            "2016-06-2é",
            "é2016-06-29",
            "2016-06-29T1é:00",
            "2016-06-29T10:00:0",
            "2016-06-29T10:00:00+",
            "2016-06-29T10:00:00+1é1",
            "2016-06-29T10:00:00-é:00",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_prefix_or_corruption_panics() {
        let pool = ['0', '9', ':', '-', '+', 'T', ' ', 'Z', '.', 'é', '\u{0}'];
        for doc in [
            "2016-06-29 00:21:33.339+0000",
            "2016-04-18T17:31:34+05:30",
            "2016-08-01Z",
        ] {
            let chars: Vec<char> = doc.chars().collect();
            for i in 0..=chars.len() {
                let _ = normalize(&chars[..i].iter().collect::<String>());
                for c in pool {
                    let mut v = chars.clone();
                    if i < v.len() {
                        v[i] = c;
                    } else {
                        v.push(c);
                    }
                    let _ = normalize(&v.iter().collect::<String>());
                }
            }
        }
    }

    #[test]
    fn epoch_conversions_round_trip() {
        for days in [-719_162, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(format_rfc3339(i64::MAX), None);
        assert_eq!(
            date_of_ms(86_400_000 * 365)
                .map(|d| d.to_string())
                .as_deref(),
            Some("1971-01-01")
        );
        assert_eq!(
            Date::parse_iso("2016-08-01")
                .map(Date::xs_date_utc)
                .as_deref(),
            Some("2016-08-01Z")
        );
    }
}
