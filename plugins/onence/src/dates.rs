//! Dates without a date crate: civil-day arithmetic, and tolerant reading of 1NCE's timestamps.

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` text (exactly that form, a real date).
pub fn parse_day(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = text[0..4].parse().ok()?;
    let m: u32 = text[5..7].parse().ok()?;
    let d: u32 = text[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The day `months` months before `day` (clamped to the end of a shorter month).
pub fn months_before(day: i64, months: u32) -> i64 {
    let (y, m, d) = civil_from_days(day);
    let total = y * 12 + i64::from(m) - 1 - i64::from(months);
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    days_from_civil(ny, nm, d.min(days_in_month(ny, nm)))
}

/// The first day of the month of `day`.
pub fn month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// Seconds since the epoch of a 1NCE timestamp in any of the forms the sources show:
/// `2029-01-01 00:00:00`, `2018-03-09T07:59:09.000+0000`, `2021-06-30T00:00:00.000Z`,
/// `2018-03-14T16:10:29Z`, `+01:00` offsets, or a bare `2020-06-15`.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let day = parse_day(text.get(0..10)?)?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(day * 86_400);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let (h, mi, s) = (
        rest.get(0..2)?.parse::<i64>().ok()?,
        rest.get(3..5)?.parse::<i64>().ok()?,
        rest.get(6..8)?.parse::<i64>().ok()?,
    );
    if rest.as_bytes().get(2) != Some(&b':') || rest.as_bytes().get(5) != Some(&b':') {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut zone = &rest[8..];
    if let Some(frac) = zone.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        zone = &frac[digits..];
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z if z.starts_with(['+', '-']) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return None;
            }
            let oh: i64 = digits[0..2].parse().ok()?;
            let om: i64 = digits[2..4].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(day * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// RFC 3339 in UTC (`2029-01-01T00:00:00Z`).
pub fn format_timestamp(secs: i64) -> String {
    let day = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_day(day),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for day in [-1000, 0, 19_000, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(
            parse_day("2024-02-29").map(format_day).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2023-2-01"), None);
    }

    #[test]
    fn months_back_clamp_to_short_months() {
        let d = parse_day("2024-08-31").unwrap();
        assert_eq!(format_day(months_before(d, 6)), "2024-02-29");
        assert_eq!(format_day(months_before(d, 8)), "2023-12-31");
        assert_eq!(format_day(month_start(d)), "2024-08-01");
    }

    #[test]
    fn every_timestamp_form_of_the_sources_is_read() {
        assert_eq!(parse_timestamp("1970-01-02 00:00:01"), Some(86_401));
        for (text, iso) in [
            ("2029-01-01 00:00:00", "2029-01-01T00:00:00Z"),
            ("2018-03-09T07:59:09.000+0000", "2018-03-09T07:59:09Z"),
            ("2021-06-30T00:00:00.000Z", "2021-06-30T00:00:00Z"),
            ("2018-03-14T16:10:29Z", "2018-03-14T16:10:29Z"),
            ("2018-03-14T18:10:29+02:00", "2018-03-14T16:10:29Z"),
            ("2020-06-15", "2020-06-15T00:00:00Z"),
        ] {
            let secs = parse_timestamp(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(format_timestamp(secs), iso, "{text}");
        }
        for bad in [
            "",
            "TOTAL",
            "2020-13-01",
            "2020-06-15T25:00:00Z",
            "2020-06-15 10:00",
            "2020-06-15Tx",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
