//! `test_connection` (the manifest's `connection_check`) and `usage_history`: what their answers
//! mean, as pure functions; the calls themselves are in `lib.rs`.
//!
//! **Test connection** makes the cheapest authenticated call of the chosen API: one read of a
//! single SIM, with an ICCID no account holds ([`PROBE_ICCID`]). Jasper checks the credentials
//! (and, for SOAP, the license key) before it looks the SIM up, so an answer about the SIM (no
//! such SIM, in SOAP an empty list) proves the settings work; it reads nothing and changes
//! nothing. A failure carries `details.code` (see [`classify`]).
//!
//! **Usage history** covers the last three billing cycles, the current one included: cycles
//! start on the 1st of each month (UTC). REST's `usageInZone` has exactly those three; SOAP's
//! `GetTerminalUsage` has completed cycles only, so the current cycle comes from
//! `GetTerminalDetails`' month-to-date counters.

use devext_plugin_api::{ErrorKind, PluginError, Value, json};
use serde::Serialize;

use crate::dates::Date;
use crate::errors;
use crate::model::Counters;

/// An ICCID no account holds (19 digits, as many of Jasper's are; not a Luhn-valid number):
/// the SIM the connection test asks for.
pub const PROBE_ICCID: &str = "8900000000000000001";

/// How long before the host's deadline the connection test stops waiting for Jasper.
pub const DEADLINE_MARGIN_MS: i64 = 250;

/// `details.code` of a connection test whose username, password or API key was refused.
pub const CODE_BAD_CREDENTIALS: &str = "bad_credentials";
/// `details.code`: the SOAP license key was refused.
pub const CODE_LICENSE_REFUSED: &str = "license_refused";
/// `details.code`: no connection to the endpoint.
pub const CODE_UNREACHABLE: &str = "unreachable";
/// `details.code`: the host's egress rules refused the endpoint.
pub const CODE_EGRESS_REFUSED: &str = "egress_refused";
/// `details.code`: no answer before the deadline.
pub const CODE_TIMEOUT: &str = "timeout";
/// `details.code`: Jasper answered, but not as a working account does.
pub const CODE_UPSTREAM_ERROR: &str = "upstream_error";
/// `details.code` (the plugin's own): the account is over its API rate limit.
pub const CODE_RATE_LIMITED: &str = "rate_limited";

/// The probe's outcome: `Ok` when Jasper's answer shows the settings work (an answer about the
/// probe SIM included), else the error with `details.code` set to what went wrong.
pub fn classify(result: Result<(), PluginError>) -> Result<(), PluginError> {
    let Err(mut e) = result else {
        return Ok(());
    };
    let detail = |key: &str| {
        e.details
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = detail("code");
    let fault = detail("fault_code").or_else(|| detail("error_code"));
    // Answers about the probe SIM: Jasper authenticated the call first.
    let about_the_sim = matches!(
        code.as_deref(),
        Some(errors::CODE_ICCID_NOT_IN_ACCOUNT | errors::CODE_ACCESS_VIOLATION)
    ) || matches!(
        fault.as_deref(),
        Some("100100" | "100101" | "400500" | "10000021" | "20000001")
    );
    if about_the_sim {
        return Ok(());
    }
    let stage = detail("stage");
    let what = match e.kind {
        ErrorKind::Unauthorized if fault.as_deref() == Some("400100") => CODE_LICENSE_REFUSED,
        ErrorKind::Unauthorized => CODE_BAD_CREDENTIALS,
        ErrorKind::Forbidden => CODE_EGRESS_REFUSED,
        ErrorKind::Timeout => CODE_TIMEOUT,
        ErrorKind::RateLimited => CODE_RATE_LIMITED,
        ErrorKind::Upstream if stage.as_deref() == Some("connect") => CODE_UNREACHABLE,
        _ => CODE_UPSTREAM_ERROR,
    };
    let mut details = match std::mem::take(&mut e.details) {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    if let Some(Value::String(own)) = details.remove("code") {
        details.insert("jasper_code".into(), json!(own));
    }
    details.insert("code".into(), json!(what));
    e.details = Value::Object(details);
    Err(e)
}

/// What a passed connection test says.
pub fn passed(api: &str, endpoint: &str) -> Value {
    let (what, request) = match api {
        "soap" => ("username, password and license key", "GetTerminalDetails"),
        _ => ("username and API key", "GET /devices/{iccid}"),
    };
    json!({
        "ok": true,
        "api": api,
        "endpoint": endpoint,
        "request": request,
        "message": format!(
            "Jasper accepted the {what} ({} API at {endpoint})",
            api.to_ascii_uppercase()
        ),
    })
}

/// The starts of the last three billing cycles, oldest first, for a call made on `today`.
pub fn last_three_cycles(today: Date) -> [Date; 3] {
    [
        today.months_back(2),
        today.months_back(1),
        today.first_of_month(),
    ]
}

/// One cycle of `usage_history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CycleRow {
    /// `YYYY-MM-DD`.
    pub cycle_start: String,
    /// Whether this is the cycle in progress (its counts are so far).
    pub current: bool,
    pub data_bytes: Option<u64>,
    pub sms_messages: Option<u64>,
    pub voice_seconds: Option<u64>,
}

impl CycleRow {
    pub fn new(start: Date, current: bool, counters: Counters) -> CycleRow {
        CycleRow {
            cycle_start: start.to_string(),
            current,
            data_bytes: counters.data_bytes,
            sms_messages: counters.sms_messages,
            voice_seconds: counters.voice_seconds,
        }
    }
}

/// Whether a failed read of a past cycle means "no usage recorded" (SOAP fault 200200), which
/// the history shows as a cycle without figures rather than failing.
pub fn is_no_usage(e: &PluginError) -> bool {
    e.details.get("fault_code").and_then(Value::as_str) == Some("200200")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(kind: ErrorKind, details: Value) -> Result<(), PluginError> {
        Err(PluginError::new(kind, "m").with_details(details))
    }

    fn code(r: Result<(), PluginError>) -> String {
        let e = classify(r).unwrap_err();
        e.details["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{e:?}"))
            .to_owned()
    }

    #[test]
    fn answers_about_the_probe_sim_mean_the_settings_work() {
        assert!(classify(Ok(())).is_ok());
        assert!(classify(Err(errors::not_in_account())).is_ok());
        assert!(
            classify(with(
                ErrorKind::InvalidInput,
                json!({"fault_code": "100101"})
            ))
            .is_ok()
        );
        assert!(
            classify(with(
                ErrorKind::InvalidInput,
                json!({"error_code": "10000021"})
            ))
            .is_ok()
        );
        assert!(
            classify(with(
                ErrorKind::Unauthorized,
                json!({"code": "access_violation"})
            ))
            .is_ok()
        );
    }

    #[test]
    fn failures_say_what_went_wrong() {
        let soap = |fault: &str| json!({"api": "soap", "fault_code": fault});
        assert_eq!(
            code(with(ErrorKind::Unauthorized, soap("400200"))),
            "bad_credentials"
        );
        assert_eq!(
            code(with(ErrorKind::Unauthorized, soap("400100"))),
            "license_refused"
        );
        assert_eq!(
            code(with(
                ErrorKind::Unauthorized,
                json!({"error_code": "10000001"})
            )),
            "bad_credentials"
        );
        assert_eq!(
            code(with(ErrorKind::Unauthorized, json!({"http_status": 401}))),
            "bad_credentials"
        );
        assert_eq!(
            code(with(ErrorKind::Forbidden, json!({"stage": "connect"}))),
            "egress_refused"
        );
        assert_eq!(
            code(with(ErrorKind::Upstream, json!({"stage": "connect"}))),
            "unreachable"
        );
        assert_eq!(
            code(with(ErrorKind::Upstream, json!({"stage": "response"}))),
            "upstream_error"
        );
        assert_eq!(
            code(with(ErrorKind::Upstream, json!({"http_status": 404}))),
            "upstream_error"
        );
        assert_eq!(code(with(ErrorKind::Timeout, Value::Null)), "timeout");
        assert_eq!(
            code(with(ErrorKind::RateLimited, json!({}))),
            "rate_limited"
        );
        // The plugin's own code is kept under another name; other details stay.
        let e = classify(with(
            ErrorKind::Conflict,
            json!({"code": "unknown_rate_plan", "attempts": 2}),
        ))
        .unwrap_err();
        assert_eq!(e.details["code"], "upstream_error");
        assert_eq!(e.details["jasper_code"], "unknown_rate_plan");
        assert_eq!(e.details["attempts"], 2);
        assert_eq!(e.message, "m");
    }

    #[test]
    fn the_last_three_cycles_end_with_the_current_one() {
        let cycles = last_three_cycles(Date::parse_iso("2026-01-15").unwrap());
        let shown: Vec<String> = cycles.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["2025-11-01", "2025-12-01", "2026-01-01"]);
    }

    #[test]
    fn a_passed_test_names_what_was_accepted() {
        let v = passed("soap", "https://api.jasper.com");
        assert_eq!(v["ok"], true);
        assert_eq!(
            v["message"],
            "Jasper accepted the username, password and license key (SOAP API at https://api.jasper.com)"
        );
        assert_eq!(passed("rest", "x")["request"], "GET /devices/{iccid}");
    }
}
