//! The domain: SIM statuses, unit conversions and the operations' outputs, independent of the API
//! (SOAP or REST) that produced them.

use serde::Serialize;

/// A SIM's lifecycle status, as the plugin names it (snake_case ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SimStatus {
    Inventory,
    ActivationReady,
    Activated,
    Deactivated,
    Retired,
    TestReady,
    Trial,
    Purged,
    Replaced,
    /// A status this plugin does not know, as a snake_case id derived from Jasper's value.
    Other(String),
}

impl SimStatus {
    /// The five statuses a user may set, in the UI's order.
    pub const SETTABLE: [SimStatus; 5] = [
        SimStatus::Inventory,
        SimStatus::ActivationReady,
        SimStatus::Activated,
        SimStatus::Deactivated,
        SimStatus::Retired,
    ];

    /// The id used in inputs and outputs (`activation_ready`).
    pub fn id(&self) -> &str {
        match self {
            SimStatus::Inventory => "inventory",
            SimStatus::ActivationReady => "activation_ready",
            SimStatus::Activated => "activated",
            SimStatus::Deactivated => "deactivated",
            SimStatus::Retired => "retired",
            SimStatus::TestReady => "test_ready",
            SimStatus::Trial => "trial",
            SimStatus::Purged => "purged",
            SimStatus::Replaced => "replaced",
            SimStatus::Other(id) => id,
        }
    }

    /// A label for people ("Activation Ready"); unknown statuses are title-cased from their id.
    pub fn label(&self) -> String {
        match self {
            SimStatus::Inventory => "Inventory".into(),
            SimStatus::ActivationReady => "Activation Ready".into(),
            SimStatus::Activated => "Activated".into(),
            SimStatus::Deactivated => "Deactivated".into(),
            SimStatus::Retired => "Retired".into(),
            SimStatus::TestReady => "Test Ready".into(),
            SimStatus::Trial => "Trial".into(),
            SimStatus::Purged => "Purged".into(),
            SimStatus::Replaced => "Replaced".into(),
            SimStatus::Other(id) => id
                .split('_')
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// A settable status from its id (`None` for any other id).
    pub fn settable_from_id(id: &str) -> Option<SimStatus> {
        SimStatus::SETTABLE.into_iter().find(|s| s.id() == id)
    }

    /// From any spelling Jasper uses: SOAP `ACTIVATION_READY_NAME`, REST `ACTIVATION_READY`,
    /// `GetModifiedTerminals`' `ACTIVATIONREADY`, or camel case. Never fails: an unknown value
    /// becomes [`SimStatus::Other`] with a snake_case id (`unknown` when empty).
    pub fn from_upstream(raw: &str) -> SimStatus {
        let id = snake_id(raw);
        let id = id.strip_suffix("_name").unwrap_or(&id);
        match id {
            "inventory" => SimStatus::Inventory,
            "activation_ready" | "activationready" => SimStatus::ActivationReady,
            "activated" => SimStatus::Activated,
            "deactivated" => SimStatus::Deactivated,
            "retired" => SimStatus::Retired,
            "test_ready" | "testready" => SimStatus::TestReady,
            "trial" => SimStatus::Trial,
            "purged" => SimStatus::Purged,
            "replaced" => SimStatus::Replaced,
            "" | "name" => SimStatus::Other("unknown".into()),
            other => SimStatus::Other(other.to_owned()),
        }
    }

    /// The value of SOAP `EditTerminal` change type 3 (`ACTIVATED_NAME`).
    pub fn soap_name(&self) -> String {
        format!("{}_NAME", self.id().to_ascii_uppercase())
    }

    /// The REST `status` value (`ACTIVATED`).
    pub fn rest_name(&self) -> String {
        self.id().to_ascii_uppercase()
    }
}

/// `ACTIVATION_READY_NAME`, `ActivationReady`, `activation-ready` → `activation_ready_name`,
/// `activation_ready`, ...: lowercase ASCII letters, digits and single underscores only.
pub fn snake_id(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 4);
    let mut prev_lower = false;
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out.truncate(64);
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Converts a decimal megabyte count (SOAP: `12.345678`) to bytes: MB × 1,000,000, rounded half
/// up, computed exactly on the decimal digits. `None` for anything that is not a non-negative
/// decimal number that fits in a `u64`.
pub fn decimal_mb_to_bytes(text: &str) -> Option<u64> {
    scale_decimal(text, 6)
}

/// A non-negative count (SMS, seconds) given as an integer or a decimal (rounded half up).
pub fn decimal_count(text: &str) -> Option<u64> {
    scale_decimal(text, 0)
}

/// `text` × 10^`exp`, rounded half up; exact for plain decimals, via `f64` for exponent forms.
fn scale_decimal(text: &str, exp: u32) -> Option<u64> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.contains(['e', 'E']) {
        let v: f64 = s.parse().ok()?;
        let scaled = (v * 10f64.powi(i32::try_from(exp).ok()?)).round();
        // f64 → u64 is exact below 2^53; refuse anything larger or not finite.
        return (scaled.is_finite() && (0.0..9.0e15).contains(&scaled)).then_some(scaled as u64);
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let significant = int.trim_start_matches('0');
    let int_val: u64 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    let pow = 10u64.checked_pow(exp)?;
    let mut value = int_val.checked_mul(pow)?;
    let frac = frac.as_bytes();
    let mut frac_val = 0u64;
    for i in 0..exp as usize {
        frac_val = frac_val * 10 + frac.get(i).map_or(0, |d| u64::from(d - b'0'));
    }
    value = value.checked_add(frac_val)?;
    if frac.get(exp as usize).is_some_and(|d| *d >= b'5') {
        value = value.checked_add(1)?;
    }
    Some(value)
}

/// Usage counters with their units in their names. `None`: Jasper did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Data, in bytes.
    pub data_bytes: Option<u64>,
    /// SMS, in messages (mobile-originated plus mobile-terminated).
    pub sms_messages: Option<u64>,
    /// Voice, in seconds.
    pub voice_seconds: Option<u64>,
}

/// The overage limit of a SIM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OverageLimit {
    /// Whether the SIM reached its overage limit.
    pub reached: Option<bool>,
    /// `default`, `temporary_override`, `permanent_override`, or another snake_case id.
    pub override_mode: Option<String>,
}

/// Output of `overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub iccid: String,
    pub api: &'static str,
    pub status: String,
    pub status_label: String,
    pub upstream_status: Option<String>,
    pub rate_plan: Option<String>,
    pub month_to_date: Counters,
    pub overage_limit: OverageLimit,
    pub date_added: Option<String>,
    pub date_modified: Option<String>,
}

impl Overview {
    /// An overview with the status derived from Jasper's raw value.
    pub fn with_status(iccid: &str, api: &'static str, raw_status: Option<&str>) -> Overview {
        let status = SimStatus::from_upstream(raw_status.unwrap_or(""));
        Overview {
            iccid: iccid.to_owned(),
            api,
            status: status.id().to_owned(),
            status_label: status.label(),
            upstream_status: raw_status.map(str::to_owned),
            rate_plan: None,
            month_to_date: Counters::default(),
            overage_limit: OverageLimit::default(),
            date_added: None,
            date_modified: None,
        }
    }
}

/// Output of `usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub iccid: String,
    pub api: &'static str,
    pub cycle_start_date: String,
    pub cycle_start: Option<String>,
    pub cycle_end: Option<String>,
    pub cycle_billed: Option<bool>,
    pub rate_plan: Option<String>,
    pub total: Counters,
    pub billable: Counters,
    pub billable_unavailable_reason: Option<String>,
}

/// Output of `set_status` and `set_rate_plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub iccid: String,
    pub api: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_plan: Option<String>,
    pub effective_date: Option<String>,
    pub scheduled: bool,
}

/// Output of `send_sms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmsSent {
    pub iccid: String,
    pub api: &'static str,
    pub message_id: Option<String>,
    pub characters: u64,
}

/// An id Jasper gave (an SMS id): trimmed, 1 to 64 characters, no control characters.
pub fn clean_id(raw: &str) -> Option<String> {
    let id = raw.trim();
    (!id.is_empty() && id.chars().count() <= 64 && !id.chars().any(char::is_control))
        .then(|| id.to_owned())
}

/// The override mode as an id (`TEMPORARY_OVERRIDE` → `temporary_override`).
pub fn override_mode_id(raw: &str) -> Option<String> {
    let id = snake_id(raw);
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_every_spelling() {
        let cases = [
            ("ACTIVATED_NAME", "activated", "Activated"),
            ("ACTIVATED", "activated", "Activated"),
            (
                "ACTIVATION_READY_NAME",
                "activation_ready",
                "Activation Ready",
            ),
            ("ACTIVATIONREADY", "activation_ready", "Activation Ready"),
            ("ActivationReady", "activation_ready", "Activation Ready"),
            ("INVENTORY_NAME", "inventory", "Inventory"),
            ("DEACTIVATED", "deactivated", "Deactivated"),
            ("RETIRED_NAME", "retired", "Retired"),
            ("TEST_READY_NAME", "test_ready", "Test Ready"),
            ("TRIAL_NAME", "trial", "Trial"),
            ("PURGED", "purged", "Purged"),
            ("REPLACED_NAME", "replaced", "Replaced"),
            (
                "SUSPENDED_BY_OPERATOR_NAME",
                "suspended_by_operator",
                "Suspended By Operator",
            ),
            ("Fraud Review", "fraud_review", "Fraud Review"),
            ("", "unknown", "Unknown"),
            ("  ", "unknown", "Unknown"),
            ("<script>", "script", "Script"),
            ("ÄÖÜ", "unknown", "Unknown"),
        ];
        for (raw, id, label) in cases {
            let s = SimStatus::from_upstream(raw);
            assert_eq!((s.id(), s.label().as_str()), (id, label), "{raw}");
        }
    }

    #[test]
    fn settable_statuses_map_to_both_wire_names() {
        let names: Vec<_> = SimStatus::SETTABLE
            .iter()
            .map(|s| (s.id().to_owned(), s.soap_name(), s.rest_name()))
            .collect();
        assert_eq!(
            names[1],
            (
                "activation_ready".into(),
                "ACTIVATION_READY_NAME".into(),
                "ACTIVATION_READY".into()
            )
        );
        for s in SimStatus::SETTABLE {
            assert_eq!(SimStatus::settable_from_id(s.id()), Some(s.clone()));
            assert_eq!(SimStatus::from_upstream(&s.soap_name()), s);
            assert_eq!(SimStatus::from_upstream(&s.rest_name()), s);
        }
        assert_eq!(SimStatus::settable_from_id("purged"), None);
    }

    #[test]
    fn megabytes_become_bytes_exactly() {
        let cases = [
            ("0.000", Some(0)),
            ("1", Some(1_000_000)),
            ("1.5", Some(1_500_000)),
            ("12.345678", Some(12_345_678)),
            ("0.0000004", Some(0)),
            ("0.0000005", Some(1)),
            ("0.1234565", Some(123_457)),
            (" 3.25 ", Some(3_250_000)),
            ("+2", Some(2_000_000)),
            (".5", Some(500_000)),
            ("5.", Some(5_000_000)),
            ("007.5", Some(7_500_000)),
            ("1E3", Some(1_000_000_000)),
            ("-1", None),
            ("", None),
            (".", None),
            ("abc", None),
            ("1.2.3", None),
            ("NaN", None),
            ("99999999999999999999", None),
            ("18446744073709.551615", Some(18_446_744_073_709_551_615)),
            ("18446744073709.5516155", None),
        ];
        for (mb, want) in cases {
            assert_eq!(decimal_mb_to_bytes(mb), want, "{mb}");
        }
        assert_eq!(decimal_count("42"), Some(42));
        assert_eq!(decimal_count("42.5"), Some(43));
        assert_eq!(decimal_count("00"), Some(0));
    }

    #[test]
    fn snake_ids_are_bounded_and_clean() {
        assert_eq!(snake_id("PERMANENT_OVERRIDE"), "permanent_override");
        assert_eq!(snake_id("a--b__c"), "a_b_c");
        assert_eq!(snake_id(&"X_".repeat(100)).len(), 63);
    }
}
