//! From Jasper's answers to [`PluginError`]s: the SOAP fault and REST error-code tables, HTTP
//! statuses, and the host's transport errors, each with what it means for a retry.
//!
//! Messages say what the user can do and never contain credentials.

use std::time::Duration;

use devext_plugin_api::util::{Retriable, Safety};
use devext_plugin_api::{ErrorKind, PluginError, Value, json};

/// What a failed attempt means for trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// The request provably was not processed (rate-limit answer, 429, 503, no connection):
    /// safe to send again, even a write.
    NotProcessed,
    /// A transient failure after which the request may or may not have been processed (timeout
    /// of a gateway, dropped connection, 500): reads may be retried, writes never.
    Ambiguous,
    /// A definitive answer: retrying would get the same.
    Final,
}

/// A failed attempt: the error to report, and whether it may be retried.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: PluginError,
    pub class: RetryClass,
    /// The server's `Retry-After`, in milliseconds, when it sent one.
    pub retry_after_ms: Option<u64>,
}

/// Jasper's retry rule, for [`devext_plugin_api::util::Retry`]: a write only when the request
/// provably was not processed, a read after any transient failure; the server's `Retry-After`.
impl Retriable for Failure {
    fn worth_retrying(&self, safety: Safety) -> bool {
        match self.class {
            RetryClass::NotProcessed => true,
            RetryClass::Ambiguous => safety == Safety::Read,
            RetryClass::Final => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms.map(Duration::from_millis)
    }

    fn summary(&self) -> String {
        format!("{}: {}", self.error.kind, self.error.message)
    }
}

impl Failure {
    pub fn new(error: PluginError, class: RetryClass) -> Failure {
        Failure {
            error,
            class,
            retry_after_ms: None,
        }
    }

    pub fn final_(error: PluginError) -> Failure {
        Failure::new(error, RetryClass::Final)
    }

    /// A truncated or garbled answer (not well-formed): maybe a transient fault, so reads may
    /// retry; a write may have been processed.
    pub fn garbled(what: &str, why: impl std::fmt::Display) -> Failure {
        Failure::new(
            PluginError::upstream(format!("Jasper's {what} could not be read: {why}"))
                .retryable(true),
            RetryClass::Ambiguous,
        )
    }

    /// An answer that could not be understood (a definitive answer, but unusable).
    pub fn unreadable(what: &str, why: impl std::fmt::Display) -> Failure {
        Failure::final_(PluginError::upstream(format!(
            "Jasper's {what} could not be read: {why}"
        )))
    }
}

/// Which operation the answer belongs to: a few codes mean different things per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpHint {
    Overview,
    Usage,
    SetStatus,
    SetRatePlan,
    SendSms,
}

/// `details.code` of "Jasper does not know this ICCID in the configured account" (kind
/// `not_found`): tells it apart from the host's own `not_found` (no such device, plugin, ...).
pub const CODE_ICCID_NOT_IN_ACCOUNT: &str = "iccid_not_in_account";
/// `details.code` of SOAP 400201: the SIM belongs to another account or service provider, or
/// the API user may not access it (kind `unauthorized`).
pub const CODE_ACCESS_VIOLATION: &str = "access_violation";
/// `details.code` of an unknown rate plan (kind `invalid_input`), from Jasper or from the
/// organisation's list of rate plans.
pub const CODE_UNKNOWN_RATE_PLAN: &str = "unknown_rate_plan";
/// `details.code` of an effective date in the past (kind `invalid_input`).
pub const CODE_EFFECTIVE_DATE_IN_PAST: &str = "effective_date_in_past";
/// `details.code` of an effective date too far ahead (kind `invalid_input`).
pub const CODE_EFFECTIVE_DATE_TOO_FAR: &str = "effective_date_too_far";
/// `details.code` of an effective date Jasper refused without saying why (kind `invalid_input`).
pub const CODE_INVALID_EFFECTIVE_DATE: &str = "invalid_effective_date";

pub const NOT_IN_ACCOUNT: &str = "ICCID not in this Jasper account: check the ICCID, and that \
the endpoint and credentials are those of the account that owns the SIM (sandbox and production \
accounts differ)";
const RATE_LIMITED: &str = "rate limit: Jasper refused the call because this account made too \
many API calls (at most 5 per second and one at a time by default); lower the load or try again \
shortly";

fn err(kind: ErrorKind, message: impl Into<String>) -> PluginError {
    PluginError::new(kind, message)
}

/// An error with a stable `details.code`.
fn coded(kind: ErrorKind, code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(kind, message).with_details(json!({ "code": code }))
}

/// "ICCID not in this Jasper account": `not_found` with `details.code`
/// [`CODE_ICCID_NOT_IN_ACCOUNT`].
pub fn not_in_account() -> PluginError {
    coded(
        ErrorKind::NotFound,
        CODE_ICCID_NOT_IN_ACCOUNT,
        NOT_IN_ACCOUNT,
    )
}

/// What an effective date Jasper refused was wrong with, from the words of its answer.
fn effective_date_error(said_by_jasper: &str, token: Option<&str>, said: &str) -> PluginError {
    let lower = said_by_jasper.to_ascii_lowercase();
    let why = match token {
        Some(t) => format!(" ({t})"),
        None => String::new(),
    };
    if token == Some("ACTIVATION_IN_PAST") || lower.contains("past") {
        coded(
            ErrorKind::InvalidInput,
            CODE_EFFECTIVE_DATE_IN_PAST,
            format!(
                "the effective date is in the past{why}: Jasper takes today or a later date \
                 (UTC); leave effective_date empty to apply the change now{said}"
            ),
        )
    } else if lower.contains("ahead") || lower.contains("future") || lower.contains("180") {
        coded(
            ErrorKind::InvalidInput,
            CODE_EFFECTIVE_DATE_TOO_FAR,
            format!(
                "the effective date is too far ahead{why}: Jasper takes at most 180 days \
                 ahead{said}"
            ),
        )
    } else {
        coded(
            ErrorKind::InvalidInput,
            CODE_INVALID_EFFECTIVE_DATE,
            format!(
                "Jasper rejected the effective date{why}: use today or a later date (UTC), not \
                 too far ahead{said}"
            ),
        )
    }
}

const UNKNOWN_RATE_PLAN_HINT: &str = "use the plan's exact name as shown in Control Center, for \
a plan available to this SIM";

/// Keeps at most 200 characters of a text that came from Jasper, on one line.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The SOAP fault table. `code` is the numeric code found in `faultstring`, `tokens` the
/// validation tokens found in `detail` (`SIMSTATUS_INVALID_TRANSITION`, ...).
pub fn soap_fault(code: Option<&str>, faultstring: &str, tokens: &[String], op: OpHint) -> Failure {
    let details = json!({
        "api": "soap",
        "fault_code": code,
        "faultstring": excerpt(faultstring),
        "detail_tokens": tokens,
    });
    let mut failure = soap_fault_inner(code, tokens, op, faultstring);
    // Keep what the table said (a stable `code`), and add what Jasper said.
    let mut all = match details {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    if let Value::Object(extra) = std::mem::take(&mut failure.error.details) {
        all.extend(extra);
    }
    failure.error.details = Value::Object(all);
    failure
}

fn soap_fault_inner(
    code: Option<&str>,
    tokens: &[String],
    op: OpHint,
    faultstring: &str,
) -> Failure {
    use ErrorKind::*;
    // Detail tokens are the most specific: check them first.
    for token in tokens {
        let mapped = match token.as_str() {
            "SIMSTATUS_INVALID_TRANSITION" => Some(err(
                Conflict,
                "Jasper refused this status change from the SIM's current status \
                 (SIMSTATUS_INVALID_TRANSITION): check the SIM's current status; not every \
                 transition is allowed",
            )),
            "SIMSTATUS_TRANSITION_UNAUTHORIZED" => Some(err(
                Conflict,
                "Jasper refused this status change: the API user's role may not make this \
                 transition (SIMSTATUS_TRANSITION_UNAUTHORIZED)",
            )),
            "SIMSTATUS_SUSPENDED" => Some(err(
                Conflict,
                "Jasper refused the change because the SIM is suspended (SIMSTATUS_SUSPENDED)",
            )),
            "SIMSTATUS_INVALID" | "SIMSTATUS_NULL" => Some(err(
                Conflict,
                format!("Jasper refused the requested status for this SIM ({token})"),
            )),
            "RATEPLAN_INVALID" | "RATEPLAN_NULL" => Some(coded(
                InvalidInput,
                CODE_UNKNOWN_RATE_PLAN,
                format!("unknown rate plan ({token}): {UNKNOWN_RATE_PLAN_HINT}"),
            )),
            "INVALID_EFFECTIVE_DATE" | "ACTIVATION_IN_PAST" => {
                Some(effective_date_error(faultstring, Some(token), ""))
            }
            "OVERRIDEMODE_INVALID" => Some(err(InvalidInput, "invalid overage override mode")),
            _ => None,
        };
        if let Some(e) = mapped {
            return Failure::final_(e);
        }
    }
    let Some(code) = code else {
        return Failure::final_(err(
            Upstream,
            format!(
                "Jasper returned a SOAP fault without a code: {}",
                excerpt(faultstring)
            ),
        ));
    };
    match code {
        "100100" => Failure::final_(not_in_account()),
        "100101" | "400500" => Failure::final_(err(
            InvalidInput,
            "Jasper says the ICCID is invalid: check the device's ICCID",
        )),
        "100200" => Failure::final_(err(
            Internal,
            "Jasper rejected the change type the plugin sent (100200); please report this",
        )),
        "100300" => Failure::final_(match op {
            OpHint::SetRatePlan => err(
                Conflict,
                "Jasper refused the rate plan change for this SIM in its current state (100300)",
            ),
            _ => err(
                Conflict,
                "Jasper refused this change for the SIM in its current state (100300): check \
                 the SIM's current status; not every status transition is allowed",
            ),
        }),
        "100520" => Failure::final_(coded(
            InvalidInput,
            CODE_UNKNOWN_RATE_PLAN,
            format!("unknown rate plan (100520): {UNKNOWN_RATE_PLAN_HINT}"),
        )),
        "200200" => Failure::final_(err(
            NotFound,
            "no usage for that cycle: Jasper has no usage for this SIM and cycle start date (only \
             completed billing cycles are available; check the date is the first day of a cycle)",
        )),
        "400100" => Failure::final_(err(
            Unauthorized,
            "credentials rejected: Jasper says the license key is invalid (check the license key, \
             and that it belongs to this endpoint's environment)",
        )),
        "400200" => Failure::final_(err(
            Unauthorized,
            "credentials rejected: Jasper says the username or password is wrong (check them, and \
             that they belong to this endpoint's environment: sandbox and production differ)",
        )),
        "400101" => Failure::new(err(RateLimited, RATE_LIMITED), RetryClass::NotProcessed),
        "400201" => Failure::final_(coded(
            Unauthorized,
            CODE_ACCESS_VIOLATION,
            "access violation (400201): the SIM belongs to another account or service provider, \
             or this API user may not access it",
        )),
        "400300" => Failure::new(
            err(
                Upstream,
                "Jasper had an internal error (400300); try again later",
            )
            .retryable(true),
            RetryClass::Ambiguous,
        ),
        "500400" => Failure::final_(err(InvalidInput, "the SMS text is empty (500400)")),
        "500500" => Failure::final_(err(
            InvalidInput,
            "the SMS text is too long for Jasper's SOAP API (500500): send fewer than 160 \
             characters",
        )),
        "500600" => Failure::final_(
            err(
                Upstream,
                "Jasper could not send the SMS (500600); check the SIM and try again later",
            )
            .retryable(true),
        ),
        "500700" => Failure::final_(err(
            Conflict,
            "the SMS was not sent: the SIM is not active or is suspended (500700)",
        )),
        "500800" | "500900" => Failure::final_(err(
            InvalidInput,
            format!("Jasper could not decode the SMS text ({code}): avoid unusual characters"),
        )),
        "1800132" => Failure::new(
            err(Upstream, "Jasper reported a duplicate messageId (1800132)").retryable(true),
            RetryClass::NotProcessed,
        ),
        other => Failure::final_(err(
            Upstream,
            format!(
                "Jasper returned SOAP fault {other}: {}",
                excerpt(faultstring)
            ),
        )),
    }
}

/// The REST `errorCode` table; `None` for a code this plugin does not know.
pub fn rest_code(code: &str, message: &str, op: OpHint) -> Option<Failure> {
    use ErrorKind::*;
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" (Jasper: {})", excerpt(message))
    };
    let f = match code {
        "10000001" => Failure::final_(err(
            Unauthorized,
            format!(
                "credentials rejected: check the username and API key, and that this server's \
                 IP address is allowed for the account{said}"
            ),
        )),
        "10000005" if op == OpHint::SendSms => Failure::final_(err(
            Conflict,
            format!("the SIM is not in a state that can receive SMS: activate it first{said}"),
        )),
        "10000005" => Failure::final_(err(
            Conflict,
            format!("Jasper refused the requested status for this SIM in its current state{said}"),
        )),
        "10000029" => Failure::final_(err(
            Conflict,
            format!(
                "Jasper refused this status change: a device cannot be changed back to Activation Ready{said}"
            ),
        )),
        // 10000012 is "invalid date format", but Jasper also gives it for a well-formed
        // effective date it refuses ("effectiveDate is in the past"): say what it says.
        "10000012" => {
            let lower = message.to_ascii_lowercase();
            let about_effective_date = matches!(op, OpHint::SetStatus | OpHint::SetRatePlan)
                || lower.contains("effectivedate");
            let judged = ["past", "ahead", "future", "180"]
                .iter()
                .any(|w| lower.contains(w));
            if about_effective_date && judged {
                Failure::final_(effective_date_error(message, None, &said))
            } else {
                Failure::final_(err(
                    InvalidInput,
                    format!("Jasper rejected the date format{said}"),
                ))
            }
        }
        "10000013" => Failure::final_(coded(
            InvalidInput,
            CODE_UNKNOWN_RATE_PLAN,
            format!("unknown rate plan: {UNKNOWN_RATE_PLAN_HINT}{said}"),
        )),
        "10000014" | "10000016" | "10000031" => Failure::final_(err(
            InvalidInput,
            format!("Jasper rejected a value ({code}){said}"),
        )),
        "10000017" | "10000018" | "10000019" => Failure::final_(err(
            InvalidInput,
            format!("Jasper rejected the SMS encoding or validity settings ({code}){said}"),
        )),
        "10000020" => Failure::final_(err(
            InvalidInput,
            format!("the SMS text is too long for Jasper (at most 320 characters){said}"),
        )),
        "10000021" => Failure::final_(err(
            InvalidInput,
            format!("Jasper says the ICCID is invalid: check the device's ICCID{said}"),
        )),
        "10000023" | "10000024" | "10000028" => Failure::final_(err(
            Internal,
            format!(
                "Jasper rejected the request the plugin built ({code}); please report this{said}"
            ),
        )),
        "10000030" => Failure::final_(err(
            Unauthorized,
            format!("the API user's role has no access to this Jasper API{said}"),
        )),
        "10000032" => Failure::final_(err(
            InvalidInput,
            format!(
                "Jasper's REST API only has usage for the last 3 cycles (including the current \
                 one): use a recent cycle start date{said}"
            ),
        )),
        "20000001" => Failure::final_(not_in_account()),
        "20000002" => Failure::final_(err(NotFound, format!("SMS message not found{said}"))),
        "30000001" => Failure::new(
            err(
                Upstream,
                format!("Jasper had an unknown server error{said}"),
            )
            .retryable(true),
            RetryClass::Ambiguous,
        ),
        "30000002" => Failure::final_(
            err(
                Upstream,
                format!("Jasper could not submit the SMS to the SMSC; try again later{said}"),
            )
            .retryable(true),
        ),
        "40000029" => Failure::new(err(RateLimited, RATE_LIMITED), RetryClass::NotProcessed),
        _ => return None,
    };
    Some(f)
}

/// An HTTP status without a usable error body (`html`: the body looked like a web page).
pub fn http_status(status: u16, api: &str, html: bool) -> Failure {
    use ErrorKind::*;
    let page = if html { " (an HTML page)" } else { "" };
    match status {
        401 => Failure::final_(err(
            Unauthorized,
            if api == "rest" {
                "credentials rejected: check the username and API key (HTTP 401)"
            } else {
                "credentials rejected: check the username, password and license key (HTTP 401)"
            },
        )),
        403 => Failure::final_(err(
            Unauthorized,
            "Jasper refused access (HTTP 403): check the API user's permissions and that this \
             server's IP address is allowed",
        )),
        404 => Failure::final_(err(
            Upstream,
            format!(
                "the endpoint does not serve Jasper's {api} API (HTTP 404{page}): check the \
                 endpoint is the account's API host"
            ),
        )),
        429 => Failure::new(err(RateLimited, RATE_LIMITED), RetryClass::NotProcessed),
        503 => Failure::new(
            err(
                Upstream,
                "Jasper is unavailable (HTTP 503); try again later",
            )
            .retryable(true),
            RetryClass::NotProcessed,
        ),
        502 | 504 => Failure::new(
            err(
                Upstream,
                format!("Jasper's gateway failed (HTTP {status}); try again later"),
            )
            .retryable(true),
            RetryClass::Ambiguous,
        ),
        500..=599 => Failure::new(
            err(Upstream, format!("Jasper failed (HTTP {status}{page})")).retryable(true),
            RetryClass::Ambiguous,
        ),
        400..=499 => Failure::final_(err(
            Upstream,
            format!("Jasper refused the request (HTTP {status}{page})"),
        )),
        _ => Failure::final_(err(
            Upstream,
            format!("Jasper answered with an unexpected HTTP status {status}{page}"),
        )),
    }
    .with_status(status)
}

impl Failure {
    fn with_status(mut self, status: u16) -> Failure {
        let mut details = match std::mem::take(&mut self.error.details) {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        details.insert("http_status".into(), json!(status));
        self.error.details = Value::Object(details);
        self
    }

    /// Adds the HTTP status to the details (kept when it is already there).
    pub fn at_status(self, status: u16) -> Failure {
        if self.error.details.get("http_status").is_some() {
            self
        } else {
            self.with_status(status)
        }
    }
}

/// A failure of the host's `http.request` capability (the request got no HTTP answer).
///
/// Coordinated with the host: an `upstream` error whose details hold `"stage": "connect"` means
/// the connection could not be established, so nothing was sent.
pub fn host_http_error(e: PluginError) -> Failure {
    let stage = e.details.get("stage").and_then(Value::as_str).unwrap_or("");
    match e.kind {
        ErrorKind::Upstream if stage == "connect" => Failure::new(
            PluginError::upstream(format!(
                "cannot connect to the Jasper endpoint: {}; check the endpoint",
                excerpt(&e.message)
            ))
            .with_details(e.details)
            .retryable(true),
            RetryClass::NotProcessed,
        ),
        ErrorKind::Upstream => Failure::new(
            PluginError::upstream(format!(
                "the connection to Jasper failed after the request was sent: {}",
                excerpt(&e.message)
            ))
            .with_details(e.details)
            .retryable(true),
            RetryClass::Ambiguous,
        ),
        // The deadline passed after the request went out: Jasper may have processed it. (The
        // retry loop starts no attempt without time left, so this is never retried in practice.)
        ErrorKind::Timeout if stage == "response" => Failure::new(e, RetryClass::Ambiguous),
        // Timeouts before sending, egress refusals and the rest are final as they are.
        _ => Failure::final_(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS_REJECTED: &str = "credentials rejected";

    #[test]
    fn retry_policy_protects_writes() {
        let f = |class| Failure::new(PluginError::upstream("x"), class);
        let (np, amb, fin) = (
            f(RetryClass::NotProcessed),
            f(RetryClass::Ambiguous),
            f(RetryClass::Final),
        );
        assert!(np.worth_retrying(Safety::Read));
        assert!(np.worth_retrying(Safety::Write));
        assert!(amb.worth_retrying(Safety::Read));
        assert!(!amb.worth_retrying(Safety::Write));
        assert!(!fin.worth_retrying(Safety::Read));
        assert!(!fin.worth_retrying(Safety::Write));
        let mut later = f(RetryClass::NotProcessed);
        later.retry_after_ms = Some(3000);
        assert_eq!(later.retry_after(), Some(Duration::from_millis(3000)));
        assert_eq!(np.retry_after(), None);
    }

    fn kind(f: &Failure) -> ErrorKind {
        f.error.kind
    }

    #[test]
    fn soap_codes_map_to_kinds_and_retry_classes() {
        let cases = [
            ("100100", ErrorKind::NotFound, RetryClass::Final),
            ("100101", ErrorKind::InvalidInput, RetryClass::Final),
            ("400500", ErrorKind::InvalidInput, RetryClass::Final),
            ("100300", ErrorKind::Conflict, RetryClass::Final),
            ("100520", ErrorKind::InvalidInput, RetryClass::Final),
            ("200200", ErrorKind::NotFound, RetryClass::Final),
            ("400100", ErrorKind::Unauthorized, RetryClass::Final),
            ("400200", ErrorKind::Unauthorized, RetryClass::Final),
            ("400101", ErrorKind::RateLimited, RetryClass::NotProcessed),
            ("400201", ErrorKind::Unauthorized, RetryClass::Final),
            ("400300", ErrorKind::Upstream, RetryClass::Ambiguous),
            ("500400", ErrorKind::InvalidInput, RetryClass::Final),
            ("500500", ErrorKind::InvalidInput, RetryClass::Final),
            ("500600", ErrorKind::Upstream, RetryClass::Final),
            ("500700", ErrorKind::Conflict, RetryClass::Final),
            ("500800", ErrorKind::InvalidInput, RetryClass::Final),
            ("999999", ErrorKind::Upstream, RetryClass::Final),
        ];
        for (code, k, class) in cases {
            let f = soap_fault(Some(code), code, &[], OpHint::SetStatus);
            assert_eq!((kind(&f), f.class), (k, class), "{code}");
            assert_eq!(f.error.details["fault_code"], code);
        }
        let f = soap_fault(Some("100100"), "100100", &[], OpHint::Overview);
        assert!(
            f.error
                .message
                .starts_with("ICCID not in this Jasper account")
        );
        let f = soap_fault(Some("400200"), "400200", &[], OpHint::Overview);
        assert!(f.error.message.starts_with(CREDENTIALS_REJECTED));
    }

    #[test]
    fn soap_detail_tokens_win_over_codes() {
        let t = |s: &str| vec![s.to_owned()];
        let f = soap_fault(
            Some("100300"),
            "x",
            &t("SIMSTATUS_INVALID_TRANSITION"),
            OpHint::SetStatus,
        );
        assert_eq!(kind(&f), ErrorKind::Conflict);
        assert!(f.error.message.contains("SIMSTATUS_INVALID_TRANSITION"));
        let f = soap_fault(
            Some("100300"),
            "x",
            &t("RATEPLAN_INVALID"),
            OpHint::SetRatePlan,
        );
        assert_eq!(kind(&f), ErrorKind::InvalidInput);
        assert!(f.error.message.contains("unknown rate plan"));
        let f = soap_fault(None, "x", &t("ACTIVATION_IN_PAST"), OpHint::SetStatus);
        assert_eq!(kind(&f), ErrorKind::InvalidInput);
        let f = soap_fault(None, "boom", &t("SOMETHING_NEW"), OpHint::SetStatus);
        assert_eq!(kind(&f), ErrorKind::Upstream);
    }

    #[test]
    fn rest_codes_map_to_kinds_and_retry_classes() {
        let cases = [
            ("20000001", ErrorKind::NotFound, RetryClass::Final),
            ("10000013", ErrorKind::InvalidInput, RetryClass::Final),
            ("40000029", ErrorKind::RateLimited, RetryClass::NotProcessed),
            ("10000001", ErrorKind::Unauthorized, RetryClass::Final),
            ("10000029", ErrorKind::Conflict, RetryClass::Final),
            ("10000005", ErrorKind::Conflict, RetryClass::Final),
            ("10000032", ErrorKind::InvalidInput, RetryClass::Final),
            ("10000020", ErrorKind::InvalidInput, RetryClass::Final),
            ("30000001", ErrorKind::Upstream, RetryClass::Ambiguous),
            ("30000002", ErrorKind::Upstream, RetryClass::Final),
        ];
        for (code, k, class) in cases {
            let f = rest_code(code, "msg", OpHint::Overview).expect(code);
            assert_eq!((kind(&f), f.class), (k, class), "{code}");
        }
        assert!(rest_code("77777777", "", OpHint::Overview).is_none());
        let sms = rest_code("10000005", "", OpHint::SendSms).expect("sms");
        assert!(
            sms.error.message.contains("can receive SMS"),
            "{}",
            sms.error.message
        );
        let f = rest_code("10000032", "", OpHint::Usage).unwrap();
        assert!(f.error.message.contains("last 3 cycles"));
    }

    #[test]
    fn http_statuses_and_host_errors() {
        assert_eq!(
            http_status(429, "rest", false).class,
            RetryClass::NotProcessed
        );
        assert_eq!(
            http_status(503, "rest", false).class,
            RetryClass::NotProcessed
        );
        assert_eq!(http_status(504, "rest", false).class, RetryClass::Ambiguous);
        assert_eq!(http_status(500, "soap", true).class, RetryClass::Ambiguous);
        assert_eq!(
            kind(&http_status(401, "rest", false)),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            http_status(404, "rest", true).error.details["http_status"],
            404
        );

        let connect =
            PluginError::upstream("connection refused").with_details(json!({"stage": "connect"}));
        assert_eq!(host_http_error(connect).class, RetryClass::NotProcessed);
        let response = PluginError::upstream("reset").with_details(json!({"stage": "response"}));
        assert_eq!(host_http_error(response).class, RetryClass::Ambiguous);
        let bare = PluginError::upstream("reset");
        assert_eq!(host_http_error(bare).class, RetryClass::Ambiguous);
        let timeout = PluginError::new(ErrorKind::Timeout, "deadline");
        let f = host_http_error(timeout);
        assert_eq!((kind(&f), f.class), (ErrorKind::Timeout, RetryClass::Final));
        let forbidden = PluginError::new(ErrorKind::Forbidden, "egress");
        assert_eq!(host_http_error(forbidden).class, RetryClass::Final);
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), 201);
    }
}
