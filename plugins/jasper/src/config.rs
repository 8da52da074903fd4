//! The org's settings and the device's ICCID, read defensively (the host has validated them
//! against the manifest's schemas, but a plugin never trusts that with a panic).

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use devext_plugin_api::{CallContext, PluginError, Value};

/// Which Jasper API the org uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Soap,
    Rest,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Soap => "soap",
            Api::Rest => "rest",
        }
    }
}

pub const DEFAULT_RATE_PER_SECOND: u32 = 5;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
pub const MAX_RATE_PER_SECOND: u32 = 10_000;
pub const MAX_MAX_IN_FLIGHT: u32 = 1_000;
/// At most this many rate plans in the org's settings.
pub const MAX_RATE_PLANS: usize = 200;
/// A rate plan's name: 1 to this many characters.
pub const MAX_RATE_PLAN_CHARS: usize = 100;

/// The org configuration. Deliberately not `Debug`: it holds secrets.
pub struct OrgConfig {
    pub api: Api,
    /// The API host's origin, without a trailing slash (`https://api.jasper.com`).
    pub endpoint: String,
    pub username: String,
    pub password: String,
    pub license_key: String,
    pub api_key: String,
    pub rate_per_second: u32,
    pub max_in_flight: u32,
    /// The account's rate plans that the org uses, as its settings list them (empty: no list;
    /// Jasper's APIs offer none to read).
    pub rate_plans: Vec<String>,
}

fn string(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// The optional `rate_plans`: distinct names of 1 to 100 characters, at most 200.
fn rate_plans(v: &Value) -> Result<Vec<String>, PluginError> {
    let bad = || {
        PluginError::invalid_input(format!(
            "rate_plans must be a list of at most {MAX_RATE_PLANS} distinct rate plan names of 1 \
             to {MAX_RATE_PLAN_CHARS} characters"
        ))
    };
    let items = match v.get("rate_plans") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_RATE_PLANS => items,
        Some(_) => return Err(bad()),
    };
    let mut plans: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().map(str::trim).ok_or_else(bad)?;
        if name.is_empty()
            || name.chars().count() > MAX_RATE_PLAN_CHARS
            || plans.iter().any(|p| p == name)
        {
            return Err(bad());
        }
        plans.push(name.to_owned());
    }
    Ok(plans)
}

fn bounded(v: &Value, key: &str, default: u32, max: u32) -> Result<u32, PluginError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=u64::from(max)).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| {
                PluginError::invalid_input(format!("{key} must be an integer from 1 to {max}"))
            }),
    }
}

impl OrgConfig {
    pub fn from_value(v: &Value) -> Result<OrgConfig, PluginError> {
        let api = match v.get("api").and_then(Value::as_str) {
            Some("soap") => Api::Soap,
            Some("rest") => Api::Rest,
            _ => {
                return Err(PluginError::invalid_input(
                    "the org configuration's api must be \"soap\" or \"rest\"",
                ));
            }
        };
        let cfg = OrgConfig {
            api,
            endpoint: normalize_endpoint(v.get("endpoint").and_then(Value::as_str).unwrap_or(""))?,
            username: string(v, "username"),
            password: string(v, "password"),
            license_key: string(v, "license_key"),
            api_key: string(v, "api_key"),
            rate_per_second: bounded(
                v,
                "rate_per_second",
                DEFAULT_RATE_PER_SECOND,
                MAX_RATE_PER_SECOND,
            )?,
            max_in_flight: bounded(v, "max_in_flight", DEFAULT_MAX_IN_FLIGHT, MAX_MAX_IN_FLIGHT)?,
            rate_plans: rate_plans(v)?,
        };
        if cfg.username.is_empty() {
            return Err(PluginError::invalid_input(
                "the org configuration needs a Jasper username",
            ));
        }
        let missing = match api {
            Api::Soap if cfg.password.is_empty() => Some("password"),
            Api::Soap if cfg.license_key.is_empty() => Some("license_key"),
            Api::Rest if cfg.api_key.is_empty() => Some("api_key"),
            _ => None,
        };
        if let Some(field) = missing {
            return Err(PluginError::invalid_input(format!(
                "the org configuration needs {field} for Jasper's {} API",
                api.as_str()
            )));
        }
        Ok(cfg)
    }

    /// The key of the account's state (limits), from the call's context: the host derives
    /// `account_key` from the endpoint and the manifest's account fields (`api`, `username`),
    /// stable across processes and shared by every org configured with the same account. From
    /// a host that sends none, the same facts in clear (never the credentials).
    pub fn account_key(&self, context: &CallContext) -> String {
        if context.account_key.is_empty() {
            format!("{}|{}|{}", self.api.as_str(), self.endpoint, self.username)
        } else {
            context.account_key.clone()
        }
    }

    /// A keyed hash of the credentials (random per process, never the credentials, never sent
    /// anywhere). Single-flight shares a read's result only between calls that present the
    /// same credentials: an org with a wrong password must not be handed the answer obtained
    /// with another org's right one, even on the same account.
    pub fn credentials_tag(&self) -> String {
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let hasher = HASHER.get_or_init(RandomState::new);
        let (a, b) = match self.api {
            Api::Soap => (
                hasher.hash_one(("soap", &self.password, &self.license_key)),
                hasher.hash_one(("soap, second half", &self.password, &self.license_key)),
            ),
            Api::Rest => (
                hasher.hash_one(("rest", &self.api_key)),
                hasher.hash_one(("rest, second half", &self.api_key)),
            ),
        };
        format!("{a:016x}{b:016x}")
    }
}

/// Checks that `endpoint` is an http(s) origin (an optional trailing `/` is dropped) and returns
/// it without the slash.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, PluginError> {
    let bad = || {
        PluginError::invalid_input(
            "the endpoint must be the origin of the account's Jasper API host, such as \
             https://api.jasper.com (no path: the plugin appends /ws/service/... or \
             /rws/api/v1/...)",
        )
    };
    let e = endpoint.trim();
    let e = e.strip_suffix('/').unwrap_or(e);
    let lower = e.to_ascii_lowercase();
    let authority = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let clean = !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', '\\'])
        && !authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !clean {
        return Err(bad());
    }
    // Keep the original case of the host (hosts are case-insensitive), lowercase the scheme.
    let scheme_len = lower.len() - authority.len();
    Ok(format!("{}{}", &lower[..scheme_len], &e[scheme_len..]))
}

/// The device's ICCID: 19 or 20 digits (the Luhn check is only a manifest warning).
pub fn iccid(device_config: &Value) -> Result<String, PluginError> {
    let iccid = device_config
        .get("iccid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if (19..=20).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit()) {
        Ok(iccid.to_owned())
    } else {
        Err(PluginError::invalid_input(
            "the device's Jasper configuration needs an iccid of 19 or 20 digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devext_plugin_api::{ErrorKind, json};

    #[test]
    fn endpoints_are_origins() {
        assert_eq!(
            normalize_endpoint("https://api.jasper.com").unwrap(),
            "https://api.jasper.com"
        );
        assert_eq!(
            normalize_endpoint(" HTTPS://Api.Jasper.com/ ").unwrap(),
            "https://Api.Jasper.com"
        );
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "",
            "api.jasper.com",
            "ftp://x",
            "https://",
            "https://h/rws/api/v1",
            "https://u:p@h",
            "https://h?x",
            "https://h#f",
            "https://h h",
            "https://h//",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_needs_the_secrets_of_its_api() {
        let soap = json!({"api": "soap", "endpoint": "https://h", "username": "u", "password": "p", "license_key": "l"});
        let cfg = OrgConfig::from_value(&soap).unwrap();
        assert_eq!((cfg.rate_per_second, cfg.max_in_flight), (5, 1));
        let rest = json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "rate_per_second": 2, "max_in_flight": 3});
        let cfg = OrgConfig::from_value(&rest).unwrap();
        assert_eq!(
            (cfg.api, cfg.rate_per_second, cfg.max_in_flight),
            (Api::Rest, 2, 3)
        );
        for bad in [
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "password": "p"}),
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "password": "p"}),
            json!({"api": "grpc", "endpoint": "https://h", "username": "u", "api_key": "k"}),
            json!({"api": "rest", "endpoint": "https://h", "api_key": "k"}),
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "rate_per_second": 0}),
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "max_in_flight": 1.5}),
            json!(null),
        ] {
            let e = OrgConfig::from_value(&bad).err().expect("rejected");
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            assert!(!e.message.contains("\"p\""));
        }
    }

    #[test]
    fn the_account_key_is_the_hosts_and_never_the_credentials() {
        let cfg = |v: Value| OrgConfig::from_value(&v).unwrap();
        let from_host = CallContext::new("c", 0).account_key("0f1e2d");
        let no_key = CallContext::new("c", 0);
        let a = cfg(
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "secret-one"}),
        );
        assert_eq!(a.account_key(&from_host), "0f1e2d");
        // Without a key from the host: the account's facts, never its secrets.
        let key = |v: Value| cfg(v).account_key(&no_key);
        let a1 = a.account_key(&no_key);
        let a2 = key(
            json!({"api": "rest", "endpoint": "https://h/", "username": "u", "api_key": "secret-two", "rate_per_second": 3}),
        );
        let c = key(
            json!({"api": "rest", "endpoint": "https://h", "username": "v", "api_key": "secret-one"}),
        );
        let d = key(
            json!({"api": "rest", "endpoint": "https://g", "username": "u", "api_key": "secret-one"}),
        );
        let e = key(
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "password": "secret-one", "license_key": "l"}),
        );
        assert_eq!(a1, a2, "the same account, whatever its credentials");
        assert!(a1 != c && a1 != d && a1 != e && c != d);
        assert!(!a1.contains("secret"));
    }

    #[test]
    fn credential_tags_separate_credentials_and_hide_them() {
        let tag = |v: Value| OrgConfig::from_value(&v).unwrap().credentials_tag();
        let a = tag(
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "secret-one"}),
        );
        let a2 = tag(
            json!({"api": "rest", "endpoint": "https://g", "username": "v", "api_key": "secret-one"}),
        );
        let b = tag(
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "secret-two"}),
        );
        let soap = tag(
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "password": "secret-one", "license_key": "l"}),
        );
        assert_eq!(a, a2);
        assert!(a != b && a != soap);
        assert!(!a.contains("secret") && a.len() == 32);
    }

    #[test]
    fn rate_plans_are_optional_distinct_names() {
        let base = json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k"});
        let with = |plans: Value| {
            let mut v = base.clone();
            v["rate_plans"] = plans;
            OrgConfig::from_value(&v).map(|c| c.rate_plans)
        };
        assert!(OrgConfig::from_value(&base).unwrap().rate_plans.is_empty());
        assert_eq!(with(json!(null)).unwrap(), Vec::<String>::new());
        assert_eq!(
            with(json!(["IoT 10MB", "IoT_Pro_1GB"])).unwrap(),
            ["IoT 10MB", "IoT_Pro_1GB"]
        );
        let too_many: Vec<String> = (0..=MAX_RATE_PLANS).map(|n| format!("p{n}")).collect();
        for bad in [
            json!("IoT 10MB"),
            json!([""]),
            json!(["  "]),
            json!(["a", "a"]),
            json!([1]),
            json!(["x".repeat(MAX_RATE_PLAN_CHARS + 1)]),
            json!(too_many),
        ] {
            let e = with(bad.clone()).expect_err("refused");
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn iccids() {
        assert_eq!(
            iccid(&json!({"iccid": "8988216716970004975"})).unwrap(),
            "8988216716970004975"
        );
        assert!(iccid(&json!({"iccid": "89882167169700049751"})).is_ok());
        for bad in [
            json!({}),
            json!({"iccid": "898821671697000497"}),
            json!({"iccid": "8988216716970004975a"}),
            json!({"iccid": 8988216716970004975u64}),
        ] {
            assert!(iccid(&bad).is_err());
        }
    }
}
