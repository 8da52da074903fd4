//! Jasper's REST API (`/rws/api/v1`): request building and lenient JSON parsing.
//!
//! Unknown fields are ignored, keys are matched case-insensitively when the exact spelling is
//! missing, numbers may come as JSON numbers or strings, and dates in any of Jasper's formats.

use base64::Engine as _;
use devext_plugin_api::{HttpRequest, HttpResponse, Value, json};

use crate::dates::{self, Date};
use crate::errors::{self, Failure, OpHint};
use crate::model::{self, Counters, OverageLimit, Overview, Usage};

/// Longest SMS text when `dataCoding` is not set (Jasper sends it in two parts).
pub const REST_SMS_MAX_CHARS: usize = 320;

/// Why REST usage has no billable figures.
pub const BILLABLE_UNAVAILABLE: &str = "Jasper's REST API reports total usage only (all usage is \
pre-invoiced): billable volumes are available through the SOAP API";

/// The org's REST credentials.
pub struct Credentials<'a> {
    pub username: &'a str,
    pub api_key: &'a str,
}

/// `{endpoint}/rws/api/v1{path}`.
pub fn url(endpoint: &str, path: &str) -> String {
    format!("{endpoint}/rws/api/v1{path}")
}

/// A request with Basic authentication and JSON headers.
pub fn request(
    method: &str,
    url: String,
    creds: &Credentials<'_>,
    body: Option<&Value>,
) -> HttpRequest {
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.api_key));
    let mut req = HttpRequest::new(method, url)
        .header("Authorization", format!("Basic {token}"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json");
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    req
}

/// `GET /devices/{iccid}`.
pub fn get_device(endpoint: &str, iccid: &str, creds: &Credentials<'_>) -> HttpRequest {
    request(
        "GET",
        url(endpoint, &format!("/devices/{iccid}")),
        creds,
        None,
    )
}

/// `GET /devices/{iccid}/ctdUsages`.
pub fn get_ctd_usages(endpoint: &str, iccid: &str, creds: &Credentials<'_>) -> HttpRequest {
    request(
        "GET",
        url(endpoint, &format!("/devices/{iccid}/ctdUsages")),
        creds,
        None,
    )
}

/// `GET /devices/{iccid}/usageInZone?cycleStartDate=YYYY-MM-DDZ`.
pub fn get_usage_in_zone(
    endpoint: &str,
    iccid: &str,
    cycle_start: Date,
    creds: &Credentials<'_>,
) -> HttpRequest {
    let path = format!(
        "/devices/{iccid}/usageInZone?cycleStartDate={}",
        cycle_start.xs_date_utc()
    );
    request("GET", url(endpoint, &path), creds, None)
}

/// `PUT /devices/{iccid}` with one field (`status` or `ratePlan`) and an optional effective date.
pub fn edit_device(
    endpoint: &str,
    iccid: &str,
    field: &str,
    value: &str,
    effective_date: Option<Date>,
    creds: &Credentials<'_>,
) -> HttpRequest {
    let mut body = json!({ field: value });
    if let Some(date) = effective_date {
        body["effectiveDate"] = json!(date.xs_date_utc());
    }
    request(
        "PUT",
        url(endpoint, &format!("/devices/{iccid}")),
        creds,
        Some(&body),
    )
}

/// `POST /devices/{iccid}/smsMessages`.
pub fn send_sms(endpoint: &str, iccid: &str, text: &str, creds: &Credentials<'_>) -> HttpRequest {
    let body = json!({ "messageText": text, "messageEncoding": "LITERAL" });
    request(
        "POST",
        url(endpoint, &format!("/devices/{iccid}/smsMessages")),
        creds,
        Some(&body),
    )
}

fn looks_like_html(body: &str) -> bool {
    let head = body
        .trim_start()
        .get(..15)
        .unwrap_or(body.trim_start())
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with('<')
}

/// A REST answer: its JSON on 2xx, or the failure it means.
pub fn parse_response(resp: &HttpResponse, hint: OpHint) -> Result<Value, Failure> {
    let ok_status = (200..300).contains(&resp.status);
    let parsed: Option<Value> = serde_json::from_str(&resp.body).ok();
    if ok_status {
        return match parsed {
            Some(v @ Value::Object(_)) => Ok(v),
            Some(_) => Err(
                Failure::unreadable("REST answer", "it is not a JSON object")
                    .at_status(resp.status),
            ),
            // 202/204 without a body are fine for writes.
            None if resp.body.trim().is_empty() => Ok(json!({})),
            None if looks_like_html(&resp.body) => Err(Failure::unreadable(
                "REST answer",
                "it is an HTML page, not JSON (check the endpoint is the account's REST API host)",
            )
            .at_status(resp.status)),
            None => Err(Failure::garbled("REST answer", "it is not JSON").at_status(resp.status)),
        };
    }
    let code = parsed
        .as_ref()
        .and_then(|v| get_ci(v, "errorCode"))
        .and_then(|c| match c {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let message = parsed
        .as_ref()
        .and_then(|v| get_ci(v, "errorMessage"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let failure = code
        .as_deref()
        .and_then(|code| errors::rest_code(code, message, hint));
    let failure = match failure {
        Some(f) => f,
        None => {
            let mut f = errors::http_status(
                resp.status,
                "rest",
                parsed.is_none() && looks_like_html(&resp.body),
            );
            // A JSON 404 (not an HTML page) is Jasper saying the SIM does not exist.
            if resp.status == 404 && parsed.is_some() {
                f.error.kind = devext_plugin_api::ErrorKind::NotFound;
                f.error.message = errors::NOT_IN_ACCOUNT.into();
                f.error.details["code"] = json!(errors::CODE_ICCID_NOT_IN_ACCOUNT);
            }
            if !message.is_empty() || code.is_some() {
                f.error.message = format!(
                    "{} (Jasper: {}{})",
                    f.error.message,
                    errors::excerpt(message),
                    code.as_deref()
                        .map(|c| format!(", code {c}"))
                        .unwrap_or_default()
                );
            }
            f
        }
    };
    let mut failure = failure.at_status(resp.status);
    if let Some(code) = code {
        failure.error.details["error_code"] = json!(code);
    }
    failure.error.details["api"] = json!("rest");
    if let Some(secs) = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        failure.retry_after_ms = Some(secs.saturating_mul(1000));
    }
    Err(failure)
}

/// The value at `key`, or at a key equal to it ignoring ASCII case.
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get_ci(v, key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A non-negative number given as a JSON number or a numeric string (rounded).
fn count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && (0.0..9.0e15).contains(f))
                .map(|f| f.round() as u64)
        }),
        Value::String(s) => model::decimal_count(s),
        _ => None,
    }
}

fn boolean(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "y" | "yes" => Some(true),
            "false" | "0" | "n" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        _ => None,
    }
}

/// A date in any of Jasper's formats, or epoch milliseconds, as RFC 3339.
fn date(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => dates::normalize(s),
        Value::Number(n) => n.as_i64().and_then(dates::format_rfc3339),
        _ => None,
    }
}

/// `overview` from `GET /devices/{iccid}` and `GET /devices/{iccid}/ctdUsages`.
pub fn overview(iccid: &str, device: &Value, ctd: &Value) -> Overview {
    let mut out = Overview::with_status(iccid, "rest", str_field(device, "status"));
    out.rate_plan = str_field(device, "ratePlan")
        .or_else(|| str_field(ctd, "ratePlan"))
        .map(str::to_owned);
    out.date_added = date(get_ci(device, "dateAdded"));
    out.date_modified =
        date(get_ci(device, "dateUpdated").or_else(|| get_ci(device, "dateModified")));
    out.month_to_date = Counters {
        data_bytes: count(get_ci(ctd, "ctdDataUsage")),
        sms_messages: count(get_ci(ctd, "ctdSMSUsage")),
        voice_seconds: count(get_ci(ctd, "ctdVoiceUsage")),
    };
    out.overage_limit = OverageLimit {
        reached: boolean(get_ci(ctd, "overageLimitReached")),
        override_mode: str_field(ctd, "overageLimitOverride").and_then(model::override_mode_id),
    };
    out
}

/// Bytes per unit of `dataUsageUnit` (decimal units; `None` for an unknown unit).
fn data_unit(unit: Option<&str>) -> Option<u64> {
    let unit = unit.map(|u| u.trim().to_ascii_lowercase());
    Some(match unit.as_deref() {
        None | Some("" | "b" | "byte" | "bytes") => 1,
        Some("kb" | "kilobytes") => 1_000,
        Some("kib") => 1_024,
        Some("mb" | "megabytes") => 1_000_000,
        Some("mib") => 1_048_576,
        Some("gb" | "gigabytes") => 1_000_000_000,
        Some("gib") => 1_073_741_824,
        _ => return None,
    })
}

/// Seconds per unit of a voice usage unit (`None` for an unknown unit).
fn voice_unit(unit: Option<&str>) -> Option<u64> {
    let unit = unit.map(|u| u.trim().to_ascii_lowercase());
    Some(match unit.as_deref() {
        None | Some("" | "s" | "sec" | "secs" | "second" | "seconds") => 1,
        Some("min" | "mins" | "minute" | "minutes") => 60,
        _ => return None,
    })
}

/// A usage amount × its unit, as an exact integer (decimal strings are scaled exactly).
fn amount(v: Option<&Value>, factor: u64) -> Result<Option<u64>, String> {
    let Some(v) = v else { return Ok(None) };
    let scaled = match v {
        Value::Null => return Ok(None),
        Value::Number(n) if n.as_u64().is_some() => n.as_u64().and_then(|n| n.checked_mul(factor)),
        Value::Number(n) => n
            .as_f64()
            .map(|f| (f * factor as f64).round())
            .filter(|f| f.is_finite() && (0.0..9.0e15).contains(f))
            .map(|f| f as u64),
        Value::String(s) => match factor.checked_ilog10().filter(|e| 10u64.pow(*e) == factor) {
            // Exact: move the decimal point instead of multiplying a float.
            Some(exp) => shift_decimal(s, exp).and_then(|t| model::decimal_count(&t)),
            None => s
                .trim()
                .parse::<f64>()
                .ok()
                .map(|f| (f * factor as f64).round())
                .filter(|f| f.is_finite() && (0.0..9.0e15).contains(f))
                .map(|f| f as u64),
        },
        _ => None,
    };
    scaled
        .map(Some)
        .ok_or_else(|| format!("unusable amount {v}"))
}

/// Moves the decimal point of a plain decimal text `exp` places to the right.
fn shift_decimal(s: &str, exp: u32) -> Option<String> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let exp = exp as usize;
    let mut frac = frac.to_owned();
    while frac.len() < exp {
        frac.push('0');
    }
    let (moved, rest) = frac.split_at(exp);
    Some(format!("{int}{moved}.{rest}"))
}

fn add(total: &mut Option<u64>, part: Option<u64>) -> Result<(), String> {
    if let Some(p) = part {
        *total = Some(
            total
                .unwrap_or(0)
                .checked_add(p)
                .ok_or("usage total overflows")?,
        );
    }
    Ok(())
}

/// `usage` from `GET /devices/{iccid}/usageInZone`: sums every zone of every rate plan. REST has
/// no billable split: the billable counters stay `None`, with the reason.
pub fn usage(iccid: &str, cycle_start: Date, body: &Value) -> Result<Usage, Failure> {
    let mut total = Counters::default();
    if let Some(zones) = get_ci(body, "deviceCycleUsageInZones").filter(|z| !z.is_null()) {
        // A map "<plan>, <version>" → [zone usage]; tolerate a bare list or single objects too.
        let groups: Vec<&Value> = match zones {
            Value::Object(map) => map.values().collect(),
            other => vec![other],
        };
        let mut entries: Vec<&Value> = Vec::new();
        for g in groups {
            match g {
                Value::Array(items) => entries.extend(items.iter()),
                Value::Object(_) => entries.push(g),
                _ => {}
            }
        }
        total = Counters {
            data_bytes: Some(0),
            sms_messages: Some(0),
            voice_seconds: Some(0),
        };
        let bad = |e: String| Failure::unreadable("usage answer", e);
        for zone in entries {
            let unit = str_field(zone, "dataUsageUnit");
            let factor = data_unit(unit)
                .ok_or_else(|| bad(format!("unknown data unit {:?}", unit.unwrap_or(""))))?;
            add(
                &mut total.data_bytes,
                amount(get_ci(zone, "dataUsage"), factor).map_err(bad)?,
            )
            .map_err(bad)?;
            for key in ["smsMOUsage", "smsMTUsage"] {
                add(
                    &mut total.sms_messages,
                    amount(get_ci(zone, key), 1).map_err(bad)?,
                )
                .map_err(bad)?;
            }
            for (key, unit_key) in [
                ("voiceMOUsage", "voiceMOUsageUnit"),
                ("voiceMTUsage", "voiceMTUsageUnit"),
            ] {
                let unit = str_field(zone, unit_key);
                let factor = voice_unit(unit)
                    .ok_or_else(|| bad(format!("unknown voice unit {:?}", unit.unwrap_or(""))))?;
                add(
                    &mut total.voice_seconds,
                    amount(get_ci(zone, key), factor).map_err(bad)?,
                )
                .map_err(bad)?;
            }
        }
    }
    Ok(Usage {
        iccid: iccid.to_owned(),
        api: "rest",
        cycle_start_date: cycle_start.to_string(),
        cycle_start: date(get_ci(body, "cycleStartDate")),
        cycle_end: date(get_ci(body, "cycleEndDate")),
        cycle_billed: None,
        rate_plan: None,
        total,
        billable: Counters::default(),
        billable_unavailable_reason: Some(BILLABLE_UNAVAILABLE.into()),
    })
}

/// The id of a sent SMS: `smsMessageId` (what the live API returns) or `smsMsgId` (documented).
pub fn sms_id(body: &Value) -> Option<String> {
    ["smsMessageId", "smsMsgId"]
        .iter()
        .find_map(|k| match get_ci(body, k)? {
            Value::Number(n) => model::clean_id(&n.to_string()),
            Value::String(s) => model::clean_id(s),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devext_plugin_api::ErrorKind;

    const ICCID: &str = "89011704278930000001";
    const CREDS: Credentials<'static> = Credentials {
        username: "user",
        api_key: "key:with:colons",
    };

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(status, body)
    }

    #[test]
    fn requests_have_auth_json_headers_and_paths() {
        let req = get_device("https://h.example", ICCID, &CREDS);
        assert_eq!(
            req.url,
            format!("https://h.example/rws/api/v1/devices/{ICCID}")
        );
        let header = |r: &HttpRequest, n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        // base64("user:key:with:colons")
        assert_eq!(
            header(&req, "Authorization").as_deref(),
            Some("Basic dXNlcjprZXk6d2l0aDpjb2xvbnM=")
        );
        assert_eq!(header(&req, "Accept").as_deref(), Some("application/json"));
        assert_eq!(
            header(&req, "Content-Type").as_deref(),
            Some("application/json")
        );
        assert_eq!(req.body, None);

        let d = Date::parse_iso("2016-11-10").unwrap();
        assert_eq!(
            get_usage_in_zone("http://h", ICCID, d, &CREDS).url,
            format!("http://h/rws/api/v1/devices/{ICCID}/usageInZone?cycleStartDate=2016-11-10Z")
        );
        assert_eq!(
            get_ctd_usages("http://h", ICCID, &CREDS).url,
            format!("http://h/rws/api/v1/devices/{ICCID}/ctdUsages")
        );

        let put = edit_device("http://h", ICCID, "status", "ACTIVATED", Some(d), &CREDS);
        assert_eq!(put.method, "PUT");
        let body: Value = serde_json::from_str(put.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"status": "ACTIVATED", "effectiveDate": "2016-11-10Z"})
        );

        let sms = send_sms("http://h", ICCID, "a \"quoted\" <text>", &CREDS);
        assert_eq!(sms.method, "POST");
        let body: Value = serde_json::from_str(sms.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"messageText": "a \"quoted\" <text>", "messageEncoding": "LITERAL"})
        );
    }

    #[test]
    fn device_and_ctd_usage_with_unknown_fields() {
        let device = json!({
            "iccid": ICCID, "imsi": "1", "status": "ACTIVATION_READY", "ratePlan": "Plan B",
            "communicationPlan": "C", "dateAdded": "2016-06-29 00:21:33.339+0000",
            "dateUpdated": "2016-07-01T10:00:00+02:00", "brandNewField": {"nested": [1, 2]},
            "apn": "internet"
        });
        let ctd = json!({
            "iccid": ICCID, "ctdDataUsage": 123456789, "ctdSMSUsage": "4", "ctdVoiceUsage": 61.0,
            "ctdSessionCount": 2, "overageLimitReached": true, "overageLimitOverride": "PERMANENT_OVERRIDE",
            "somethingNew": null
        });
        let o = overview(ICCID, &device, &ctd);
        assert_eq!(o.status, "activation_ready");
        assert_eq!(o.status_label, "Activation Ready");
        assert_eq!(o.rate_plan.as_deref(), Some("Plan B"));
        assert_eq!(o.date_added.as_deref(), Some("2016-06-29T00:21:33.339Z"));
        assert_eq!(o.date_modified.as_deref(), Some("2016-07-01T08:00:00Z"));
        assert_eq!(
            o.month_to_date,
            Counters {
                data_bytes: Some(123_456_789),
                sms_messages: Some(4),
                voice_seconds: Some(61)
            }
        );
        assert_eq!(o.overage_limit.reached, Some(true));
        assert_eq!(
            o.overage_limit.override_mode.as_deref(),
            Some("permanent_override")
        );

        let empty = overview(ICCID, &json!({}), &json!({}));
        assert_eq!(empty.status, "unknown");
        assert_eq!(empty.month_to_date, Counters::default());
        let weird = overview(
            ICCID,
            &json!({"status": 5, "dateAdded": "yesterday"}),
            &json!({"ctdDataUsage": -5}),
        );
        assert_eq!(
            (
                weird.status.as_str(),
                weird.date_added,
                weird.month_to_date.data_bytes
            ),
            ("unknown", None, None)
        );
    }

    #[test]
    fn usage_in_zone_sums_zones_and_plans_case_insensitively() {
        let body = json!({
            "iccid": ICCID, "timeStamp": "2016-11-20T10:00:00.000Z",
            "cycleStartDate": "2016-11-10T00:00:00.000Z", "cycleEndDate": "2016-12-09T23:59:59.000Z",
            "deviceCycleUsageInZones": {
                "Plan A, 1": [
                    {"ratePlan": "Plan A", "zone": "Z1", "dataUsage": 1000, "dataUsageUnit": "bytes",
                     "voiceMOUsage": 60, "voiceMOUsageUnit": "seconds", "voiceMTUsage": 30,
                     "smsmousage": 2, "smsmtusage": 3},
                    {"ratePlan": "Plan A", "zone": "Z2", "dataUsage": "2.5", "dataUsageUnit": "KB",
                     "SMSMOUsage": 1, "SMSMTUsage": 0, "extra": true}
                ],
                "Plan B, 2": [
                    {"zone": "Z3", "dataUsage": 1, "dataUsageUnit": "MB", "voiceMTUsage": 2, "voiceMTUsageUnit": "minutes"}
                ]
            }
        });
        let u = usage(ICCID, Date::parse_iso("2016-11-10").unwrap(), &body).unwrap();
        assert_eq!(
            u.total,
            Counters {
                data_bytes: Some(1000 + 2500 + 1_000_000),
                sms_messages: Some(6),
                voice_seconds: Some(60 + 30 + 120)
            }
        );
        assert_eq!(
            u.billable,
            Counters::default(),
            "REST has no billable split"
        );
        assert_eq!(
            u.billable_unavailable_reason.as_deref(),
            Some(BILLABLE_UNAVAILABLE)
        );
        assert_eq!(u.cycle_start.as_deref(), Some("2016-11-10T00:00:00Z"));
        assert_eq!(u.cycle_end.as_deref(), Some("2016-12-09T23:59:59Z"));

        let none = usage(
            ICCID,
            Date::parse_iso("2016-11-10").unwrap(),
            &json!({"deviceCycleUsageInZones": {}}),
        )
        .unwrap();
        assert_eq!(
            none.total,
            Counters {
                data_bytes: Some(0),
                sms_messages: Some(0),
                voice_seconds: Some(0)
            }
        );
        let absent = usage(ICCID, Date::parse_iso("2016-11-10").unwrap(), &json!({})).unwrap();
        assert_eq!(absent.total, Counters::default());
        let bad_unit = json!({"deviceCycleUsageInZones": {"p": [{"dataUsage": 1, "dataUsageUnit": "parsecs"}]}});
        let e = usage(ICCID, Date::parse_iso("2016-11-10").unwrap(), &bad_unit).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::Upstream);
        let bad_amount = json!({"deviceCycleUsageInZones": {"p": [{"dataUsage": "lots"}]}});
        assert!(usage(ICCID, Date::parse_iso("2016-11-10").unwrap(), &bad_amount).is_err());
    }

    #[test]
    fn both_sms_id_spellings() {
        assert_eq!(
            sms_id(&json!({"smsMessageId": 6_612_000_000_i64})).as_deref(),
            Some("6612000000")
        );
        assert_eq!(sms_id(&json!({"smsMsgId": "42"})).as_deref(), Some("42"));
        assert_eq!(sms_id(&json!({"SMSMESSAGEID": 7})).as_deref(), Some("7"));
        assert_eq!(sms_id(&json!({"other": 1})), None);
    }

    #[test]
    fn error_bodies_are_mapped() {
        let cases = [
            (
                404,
                r#"{"errorMessage":"Resource not found - Invalid ICCID","errorCode":"20000001"}"#,
                ErrorKind::NotFound,
            ),
            (
                400,
                r#"{"errorMessage":"Invalid ratePlan","errorCode":"10000013"}"#,
                ErrorKind::InvalidInput,
            ),
            (
                429,
                r#"{"errorMessage":"Rate limit exceeded","errorCode":"40000029"}"#,
                ErrorKind::RateLimited,
            ),
            (
                400,
                r#"{"errorMessage":"rate","errorCode":40000029}"#,
                ErrorKind::RateLimited,
            ),
            (
                401,
                r#"{"errorMessage":"Invalid credentials","errorCode":"10000001"}"#,
                ErrorKind::Unauthorized,
            ),
            (401, "", ErrorKind::Unauthorized),
            (
                401,
                r#"{"errorMessage":"Full authentication is required to access this resource"}"#,
                ErrorKind::Unauthorized,
            ),
            (
                400,
                r#"{"errorMessage":"x","errorCode":"10000029"}"#,
                ErrorKind::Conflict,
            ),
            (
                400,
                r#"{"errorMessage":"x","errorCode":"10000032"}"#,
                ErrorKind::InvalidInput,
            ),
            (404, r#"{"errorMessage":"nope"}"#, ErrorKind::NotFound),
            (
                404,
                "<html><body>Not found</body></html>",
                ErrorKind::Upstream,
            ),
            (500, "<html>oops", ErrorKind::Upstream),
            (503, "", ErrorKind::Upstream),
            (
                400,
                r#"{"errorMessage":"x","errorCode":"99999999"}"#,
                ErrorKind::Upstream,
            ),
        ];
        for (status, body, kind) in cases {
            let e = parse_response(&resp(status, body), OpHint::Overview).unwrap_err();
            assert_eq!(e.error.kind, kind, "{status} {body}");
            assert_eq!(e.error.details["http_status"], status);
        }
        let e = parse_response(
            &resp(400, r#"{"errorMessage":"x","errorCode":"10000032"}"#),
            OpHint::Usage,
        )
        .unwrap_err();
        assert!(
            e.error.message.contains("last 3 cycles"),
            "{}",
            e.error.message
        );
        assert_eq!(e.error.details["error_code"], "10000032");
        let e = parse_response(
            &resp(404, r#"{"errorMessage":"x","errorCode":"20000001"}"#),
            OpHint::Overview,
        )
        .unwrap_err();
        assert!(
            e.error
                .message
                .starts_with("ICCID not in this Jasper account")
        );
        let mut limited = resp(429, "");
        limited.headers.push(("retry-after".into(), "3".into()));
        assert_eq!(
            parse_response(&limited, OpHint::Overview)
                .unwrap_err()
                .retry_after_ms,
            Some(3000)
        );
    }

    #[test]
    fn garbage_with_success_status_is_upstream() {
        for body in [
            "<html><body>hello</body></html>",
            "not json",
            "[1,2]",
            "\"str\"",
            "{\"truncated\": ",
        ] {
            let e = parse_response(&resp(200, body), OpHint::Overview).unwrap_err();
            assert_eq!(e.error.kind, ErrorKind::Upstream, "{body}");
        }
        let class = |body: &str| {
            parse_response(&resp(200, body), OpHint::Overview)
                .unwrap_err()
                .class
        };
        assert_eq!(
            class("{\"truncated\": "),
            crate::errors::RetryClass::Ambiguous
        );
        assert_eq!(
            class("<html>login</html>"),
            crate::errors::RetryClass::Final
        );
        assert_eq!(class("[1]"), crate::errors::RetryClass::Final);
        assert_eq!(
            parse_response(&resp(202, ""), OpHint::SetStatus).unwrap(),
            json!({})
        );
        assert_eq!(
            parse_response(&resp(200, r#"{"iccid":"1"}"#), OpHint::SetStatus).unwrap(),
            json!({"iccid":"1"})
        );
    }

    /// Every prefix and many corrupted variants of real answers: errors, never panics.
    #[test]
    fn no_input_makes_the_parser_panic() {
        let date = Date::parse_iso("2016-11-10").unwrap();
        let doc = json!({
            "status": "ACTIVATED", "dateAdded": "2016-06-29 00:21:33.339+0000", "ctdDataUsage": 12.5,
            "deviceCycleUsageInZones": {"p, 1": [{"dataUsage": "1.5", "dataUsageUnit": "MB",
                "voiceMOUsage": 3, "voiceMOUsageUnit": "minutes", "smsmousage": 1}]},
            "smsMessageId": 5, "errorCode": "40000029", "errorMessage": "x"
        })
        .to_string();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut variants: Vec<String> = (0..doc.len()).map(|i| doc[..i].to_owned()).collect();
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes = doc.as_bytes().to_vec();
            let at = (seed as usize) % bytes.len();
            let pool = b"{}[]\",:-0e.9 n";
            bytes[at] = pool[(seed >> 32) as usize % pool.len()];
            variants.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        for v in variants {
            for status in [200, 400, 404, 429, 500] {
                if let Ok(body) = parse_response(&resp(status, &v), OpHint::Usage) {
                    let _ = overview(ICCID, &body, &body);
                    let _ = usage(ICCID, date, &body);
                    let _ = sms_id(&body);
                }
            }
        }
        // Extreme values.
        for value in [
            json!(u64::MAX),
            json!(-1),
            json!(1e308),
            json!("1e400"),
            json!(f64::MIN_POSITIVE),
        ] {
            let body = json!({"ctdDataUsage": value, "deviceCycleUsageInZones": {"p": [{"dataUsage": value, "dataUsageUnit": "GB", "voiceMOUsage": value, "voiceMOUsageUnit": "minutes"}]}});
            let _ = overview(ICCID, &body, &body);
            let _ = usage(ICCID, date, &body);
        }
    }

    #[test]
    fn exact_unit_scaling() {
        assert_eq!(amount(Some(&json!("2.5")), 1000), Ok(Some(2500)));
        assert_eq!(amount(Some(&json!("0.1")), 1_000_000), Ok(Some(100_000)));
        assert_eq!(amount(Some(&json!(0.1)), 1_000_000), Ok(Some(100_000)));
        assert_eq!(amount(Some(&json!("3")), 1024), Ok(Some(3072)));
        assert_eq!(amount(Some(&json!(null)), 1), Ok(None));
        assert_eq!(amount(None, 1), Ok(None));
        assert!(amount(Some(&json!(-1)), 1).is_err());
        assert!(amount(Some(&json!(u64::MAX)), 10).is_err());
    }
}
