//! Tolerant reading of 1NCE's answers, where the sources disagree: numbers as numbers or
//! strings, dates in several forms, optional fields absent or `null`.

use devext_plugin_api::{Value, json};

use crate::dates;

/// A number given as a JSON number or a numeric string.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A non-empty string, or a number written as one.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A timestamp in any form the sources show, as RFC 3339 UTC.
pub(crate) fn timestamp(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    dates::parse_timestamp(s).map(dates::format_timestamp)
}

/// Megabytes (1NCE's data unit; taken as 10^6 bytes) as whole bytes.
pub(crate) fn mb_to_bytes(mb: f64) -> u64 {
    if mb <= 0.0 {
        0
    } else {
        (mb * 1_000_000.0).round() as u64
    }
}

/// `ok` / `low` / `exhausted` / `unknown` from a quota: its status id or description when
/// given (0: more than 20 % left, 1: less, 2: none), else from the volume left, the total and
/// the threshold percentage.
pub(crate) fn threshold(
    status: &Value,
    remaining: f64,
    total: Option<f64>,
    percent: Option<f64>,
) -> &'static str {
    if let Some(id) = number(&status["id"]) {
        match id as i64 {
            0 => return "ok",
            1 => return "low",
            2 => return "exhausted",
            _ => {}
        }
    }
    if let Some(d) = status["description"].as_str() {
        let d = d.to_ascii_lowercase();
        if d.starts_with("more than") {
            return "ok";
        }
        if d.starts_with("less than") {
            return "low";
        }
        if d.starts_with("no volume") {
            return "exhausted";
        }
    }
    if remaining <= 0.0 {
        return "exhausted";
    }
    match (total, percent) {
        (Some(t), Some(p)) if t > 0.0 => {
            if remaining * 100.0 / t < p {
                "low"
            } else {
                "ok"
            }
        }
        _ => "unknown",
    }
}

/// A quota of the overview: from `/quota/data` or `/quota/sms` (`quota`, when it was read),
/// else from the SIM object's `current_quota*` and `quota_status*` fields.
pub(crate) fn quota(quota: Option<&Value>, sim: &Value, data: bool) -> Value {
    let scale = |x: f64| {
        if data {
            mb_to_bytes(x) as f64
        } else {
            x.max(0.0).round()
        }
    };
    if let Some(q) = quota {
        let remaining = number(&q["volume"]).unwrap_or(0.0);
        let total = number(&q["total_volume"]);
        let percent = number(&q["threshold_percentage"]);
        let status = if data {
            &sim["quota_status"]
        } else {
            &sim["quota_status_SMS"]
        };
        return json!({
            "remaining": scale(remaining),
            "total": total.map(scale),
            "expiry_date": timestamp(&q["expiry_date"]),
            "threshold": threshold(status, remaining, total, percent),
            "threshold_percentage": percent,
        });
    }
    let (volume, status) = if data {
        (&sim["current_quota"], &sim["quota_status"])
    } else {
        (&sim["current_quota_SMS"], &sim["quota_status_SMS"])
    };
    let remaining = number(volume).unwrap_or(0.0);
    json!({
        "remaining": scale(remaining),
        "total": null,
        "expiry_date": null,
        "threshold": threshold(status, remaining, None, None),
        "threshold_percentage": null,
    })
}

/// One day of `/usage`: `(day number, data up, data down, data total, SMS MO, SMS MT)`, or
/// `None` for an entry that is no day (a `TOTAL` row, an unreadable date).
pub(crate) fn usage_day(entry: &Value) -> Option<(i64, u64, u64, u64, u64, u64)> {
    let date = entry["date"].as_str()?;
    let day = dates::parse_timestamp(date)?.div_euclid(86_400);
    let data = &entry["data"];
    let sms = &entry["sms"];
    let up = number(&data["volume_tx"]).map_or(0, mb_to_bytes);
    let down = number(&data["volume_rx"]).map_or(0, mb_to_bytes);
    let total = number(&data["volume"]).map_or(up + down, mb_to_bytes);
    let count = |v: &Value| number(v).map_or(0, |x| x.max(0.0).round() as u64);
    // SMS: volume_rx counts those from the device (MO), volume_tx those to it (MT).
    Some((
        day,
        up,
        down,
        total,
        count(&sms["volume_rx"]),
        count(&sms["volume_tx"]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        assert_eq!(number(&json!(1.5)), Some(1.5));
        assert_eq!(number(&json!("0.796092")), Some(0.796092));
        assert_eq!(number(&json!("")), None);
        assert_eq!(number(&json!(null)), None);
        assert_eq!(mb_to_bytes(0.796092), 796_092);
    }

    #[test]
    fn thresholds_from_ids_descriptions_or_volumes() {
        assert_eq!(threshold(&json!({"id": 1}), 5.0, None, None), "low");
        assert_eq!(
            threshold(
                &json!({"description": "No volume available"}),
                5.0,
                None,
                None
            ),
            "exhausted"
        );
        assert_eq!(
            threshold(&json!(null), 10.0, Some(500.0), Some(20.0)),
            "low"
        );
        assert_eq!(
            threshold(&json!(null), 400.0, Some(500.0), Some(20.0)),
            "ok"
        );
        assert_eq!(threshold(&json!(null), 0.0, None, None), "exhausted");
        assert_eq!(threshold(&json!(null), 3.0, None, None), "unknown");
    }

    #[test]
    fn a_total_row_and_sparse_sms_are_read() {
        assert_eq!(
            usage_day(&json!({"date": "TOTAL", "data": {"volume": "9"}})),
            None
        );
        let day = usage_day(&json!({
            "date": "2020-06-15",
            "data": {"volume": "0.796092", "volume_tx": "0.420887", "volume_rx": "0.375205"},
            "sms": {"volume": "0", "volume_tx": "0", "volume_rx": "0"}
        }))
        .unwrap();
        assert_eq!(day.1 + day.2, 796_092);
        assert_eq!(day.3, 796_092);
        let iso = usage_day(&json!({"date": "2021-06-30T00:00:00.000Z", "data": {}, "sms": {"volume_rx": 2, "volume_tx": "3"}})).unwrap();
        assert_eq!((iso.4, iso.5), (2, 3));
    }
}
