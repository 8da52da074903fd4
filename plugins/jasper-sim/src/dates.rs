//! Date helpers: billing cycles and the wire date formats of both APIs.
//!
//! Billing cycles start on the 1st of each month at 00:00 UTC.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

/// Start of the billing cycle that contains `now`, moved back `back` cycles.
pub(crate) fn cycle_start(now: DateTime<Utc>, back: u32) -> NaiveDate {
    let first = first_of_month(now.date_naive());
    first.checked_sub_months(Months::new(back)).unwrap_or(first)
}

/// First day of the month of `date`.
pub(crate) fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// Start of the cycle following the one starting at `start`.
pub(crate) fn next_cycle_start(start: NaiveDate) -> NaiveDate {
    start.checked_add_months(Months::new(1)).unwrap_or(start)
}

/// Parses an `xs:date` lexically: `YYYY-MM-DD` with an optional time zone
/// (`Z`, `+hh:mm` or `-hh:mm`). The calendar date is returned as written; the
/// zone is validated but otherwise ignored (Jasper documents dates as UTC).
pub(crate) fn parse_xs_date(text: &str) -> Option<NaiveDate> {
    let (date, zone) = split_zone(text.trim())?;
    if let Some(zone) = zone {
        validate_zone(zone)?;
    }
    parse_plain_date(date)
}

/// Parses a date that must carry a zone designator (`YYYY-MM-DDZ` or
/// `YYYY-MM-DD±hh:mm`), as REST `usageInZone` expects.
pub(crate) fn parse_zoned_date(text: &str) -> Option<NaiveDate> {
    let (date, zone) = split_zone(text.trim())?;
    validate_zone(zone?)?;
    parse_plain_date(date)
}

fn split_zone(text: &str) -> Option<(&str, Option<&str>)> {
    if text.len() < 10 || !text.is_char_boundary(10) {
        return None;
    }
    let (date, rest) = text.split_at(10);
    Some((date, (!rest.is_empty()).then_some(rest)))
}

fn validate_zone(zone: &str) -> Option<()> {
    if zone == "Z" {
        return Some(());
    }
    let bytes = zone.as_bytes();
    let ok = bytes.len() == 6
        && (bytes[0] == b'+' || bytes[0] == b'-')
        && bytes[1].is_ascii_digit()
        && bytes[2].is_ascii_digit()
        && bytes[3] == b':'
        && bytes[4].is_ascii_digit()
        && bytes[5].is_ascii_digit();
    ok.then_some(())
}

fn parse_plain_date(date: &str) -> Option<NaiveDate> {
    let bytes = date.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// SOAP `xs:dateTime` as Jasper writes it: `2017-02-17T15:36:21.828Z`.
pub(crate) fn soap_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// SOAP `xs:date` with the `Z` zone, as JAXB writes UTC dates: `2016-08-01Z`.
pub(crate) fn soap_date(d: NaiveDate) -> String {
    format!("{}Z", d.format("%Y-%m-%d"))
}

/// REST device-details timestamp: `2016-06-29 00:21:33.339+0000`.
pub(crate) fn rest_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f+0000").to_string()
}

/// REST usageInZone timestamp: `2018-08-26T16:00:00.000Z`.
pub(crate) fn iso_millis(t: DateTime<Utc>) -> String {
    soap_datetime(t)
}

/// Midnight UTC of `d`.
pub(crate) fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn xs_date_variants() {
        assert_eq!(parse_xs_date("2016-08-01"), Some(d(2016, 8, 1)));
        assert_eq!(parse_xs_date("2016-08-01Z"), Some(d(2016, 8, 1)));
        assert_eq!(parse_xs_date("2016-08-01+00:00"), Some(d(2016, 8, 1)));
        assert_eq!(parse_xs_date(" 2016-04-18+05:00 "), Some(d(2016, 4, 18)));
        assert_eq!(parse_xs_date("2016-8-01"), None);
        assert_eq!(parse_xs_date("2016-02-30"), None);
        assert_eq!(parse_xs_date("2016-08-01X"), None);
        assert_eq!(parse_xs_date("2016-08-01 00:00"), None);
        assert_eq!(parse_xs_date("ééééééééééé"), None);
        assert_eq!(parse_zoned_date("2016-08-01"), None);
        assert_eq!(parse_zoned_date("2016-08-01Z"), Some(d(2016, 8, 1)));
    }

    #[test]
    fn cycles() {
        let now = Utc.with_ymd_and_hms(2024, 3, 15, 10, 0, 0).unwrap();
        assert_eq!(cycle_start(now, 0), d(2024, 3, 1));
        assert_eq!(cycle_start(now, 3), d(2023, 12, 1));
        assert_eq!(next_cycle_start(d(2024, 12, 1)), d(2025, 1, 1));
    }

    #[test]
    fn formats() {
        let t = Utc.with_ymd_and_hms(2016, 6, 29, 0, 21, 33).unwrap()
            + chrono::Duration::milliseconds(339);
        assert_eq!(rest_datetime(t), "2016-06-29 00:21:33.339+0000");
        assert_eq!(soap_datetime(t), "2016-06-29T00:21:33.339Z");
        assert_eq!(soap_date(d(2016, 8, 1)), "2016-08-01Z");
    }
}
