//! The account key of a call ([`devext_plugin_api::CallContext::account_key`]).
//!
//! A plugin keys its per-account state on it (its rate limits, say), and a later scale-out
//! keys a shared limiter on it, so it must name the *upstream account* the org's settings reach,
//! the same in every process and after every restart, and never carry or depend on a secret:
//!
//! `account_key` = lowercase hex of SHA-256 over, in order, each as a big-endian `u64` byte
//! length followed by the bytes:
//! 1. the domain tag `devext-account-key/1`;
//! 2. the plugin name;
//! 3. the normalised value of the manifest's `endpoint_field` (empty when the plugin declares
//!    none or the org config lacks it): a URL as the WHATWG parser serialises it (lowercase
//!    scheme and host, no default port) without trailing `/`, anything else trimmed;
//! 4. for each of the manifest's `account_fields`, in the declared order: the field's name,
//!    then its value as canonical JSON (object keys sorted, no whitespace; `null` when absent).
//!
//! The loader refuses manifests whose account fields are secrets (`writeOnly`) or undeclared,
//! so no secret ever reaches the digest; any other org setting (rate limits, say) does not
//! change the account either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use devext_plugin_api::{Manifest, Value};
use sha2::{Digest, Sha256};

/// Most identities a plugin's memo keeps before it starts over (one per upstream account in
/// use: far more than an installation has).
const MEMO_ENTRIES: usize = 4096;

/// One plugin's account keys, memoised by the raw settings they derive from: a call pays for a
/// short text and a map lookup instead of parsing the endpoint URL and a SHA-256.
#[derive(Default)]
pub(crate) struct AccountKeys {
    memo: Mutex<HashMap<Vec<u8>, Arc<str>>>,
}

impl AccountKeys {
    /// [`account_key`] of a call of `manifest`'s plugin with `org_config`.
    pub(crate) fn key(&self, manifest: &Manifest, org_config: &Value) -> Arc<str> {
        LAST.with(|last| {
            // A call nested in another's lookup (never today) gets a buffer of its own.
            let mut own = Last::default();
            let mut borrowed = last.try_borrow_mut();
            let last = match borrowed.as_deref_mut() {
                Ok(last) => last,
                Err(_) => &mut own,
            };
            std::mem::swap(&mut last.identity, &mut last.previous);
            write_identity(&mut last.identity, manifest, org_config);
            // This thread's previous lookup, if it was of the same identity (which determines
            // the key, whichever memo found it): most calls of a thread reach the account of
            // the call before.
            if let Some(key) = &last.key
                && last.identity == last.previous
            {
                return key.clone();
            }
            let identity = &last.identity;
            let found = self
                .memo
                .lock()
                .ok()
                .and_then(|memo| memo.get(identity.as_slice()).cloned());
            if let Some(key) = found {
                last.key = Some(key.clone());
                return key;
            }
            let key: Arc<str> = account_key(manifest, org_config).into();
            if let Ok(mut memo) = self.memo.lock() {
                if memo.len() >= MEMO_ENTRIES {
                    memo.clear();
                }
                memo.insert(identity.clone(), key.clone());
            }
            last.key = Some(key.clone());
            key
        })
    }
}

/// A thread's latest lookup.
#[derive(Default)]
struct Last {
    /// The identity being looked up (a memo hit then allocates nothing).
    identity: Vec<u8>,
    /// The identity of the lookup before.
    previous: Vec<u8>,
    /// The key of `previous`.
    key: Option<Arc<str>>,
}

thread_local! {
    static LAST: std::cell::RefCell<Last> = std::cell::RefCell::new(Last::default());
}

/// Writes into `out` (cleared first) everything an account key derives from, as it is (not
/// normalised): the plugin's name, the endpoint, and each account field's name and value. Equal
/// identities have equal keys (different ones may too: the memo then holds both).
fn write_identity(out: &mut Vec<u8>, manifest: &Manifest, org_config: &Value) {
    out.clear();
    // A separator that neither JSON text nor the manifest's names contain keeps the parts
    // apart; serde_json writes any `Value` into a `Vec` without failing.
    let name = |out: &mut Vec<u8>, name: &str| {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    };
    let value = |out: &mut Vec<u8>, value: Option<&Value>| {
        let _ = serde_json::to_writer(&mut *out, value.unwrap_or(&Value::Null));
        out.push(0);
    };
    name(out, &manifest.name);
    value(
        out,
        manifest
            .endpoint_field
            .as_ref()
            .and_then(|f| org_config.get(f)),
    );
    for field in &manifest.account_fields {
        name(out, field);
        value(out, org_config.get(field));
    }
}

/// The domain tag of the digest; a new derivation gets a new tag.
const DOMAIN: &[u8] = b"devext-account-key/1";

/// The account key of a call of `manifest`'s plugin with `org_config`.
pub(crate) fn account_key(manifest: &Manifest, org_config: &Value) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(DOMAIN);
    part(manifest.name.as_bytes());
    let endpoint = manifest
        .endpoint_field
        .as_ref()
        .and_then(|f| org_config.get(f))
        .and_then(Value::as_str)
        .map(normalise_endpoint)
        .unwrap_or_default();
    part(endpoint.as_bytes());
    let mut text = String::new();
    for field in &manifest.account_fields {
        part(field.as_bytes());
        text.clear();
        canonical_json(org_config.get(field).unwrap_or(&Value::Null), &mut text);
        part(text.as_bytes());
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    hex
}

/// `https://API.example.com:443/` and `https://api.example.com` are one endpoint.
fn normalise_endpoint(endpoint: &str) -> String {
    let trimmed = endpoint.trim();
    match url::Url::parse(trimmed) {
        Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
        Err(_) => trimmed.to_owned(),
    }
}

/// JSON text with object keys sorted at every level, whatever the map's order.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devext_plugin_api::json;

    fn manifest() -> Manifest {
        Manifest::new("acme", "Acme", "1.0.0")
            .org_config_schema(json!({
                "type": "object",
                "properties": {
                    "endpoint": {"type": "string"},
                    "api": {"type": "string"},
                    "username": {"type": "string"},
                    "password": {"type": "string", "writeOnly": true},
                    "rate_per_second": {"type": "integer"}
                }
            }))
            .endpoint_field("endpoint")
            .account_fields(["api", "username"])
    }

    fn org() -> Value {
        json!({
            "endpoint": "https://api.acme.example",
            "api": "soap",
            "username": "alice",
            "password": "s3cret",
            "rate_per_second": 5
        })
    }

    #[test]
    fn the_memo_gives_the_derived_key_and_tells_accounts_apart() {
        let keys = AccountKeys::default();
        let m = manifest();
        let first = keys.key(&m, &org());
        assert_eq!(&*first, account_key(&m, &org()));
        assert_eq!(&*keys.key(&m, &org()), &*first);
        let mut other = org();
        other["username"] = json!("bob");
        assert_eq!(&*keys.key(&m, &other), account_key(&m, &other));
        assert_ne!(keys.key(&m, &other), first);
        // A secret or another setting changes nothing.
        let mut same = org();
        same["password"] = json!("changed");
        same["rate_per_second"] = json!(50);
        assert_eq!(keys.key(&m, &same), first);
    }

    #[test]
    fn a_threads_latest_key_is_reused_only_for_the_same_plugin_and_account() {
        // One thread, lookups alternating between accounts, plugins and memos: each gets the
        // key derived for it, never the previous lookup's.
        let (a, b) = (AccountKeys::default(), AccountKeys::default());
        let m = manifest();
        let renamed = Manifest::new("other", "Other", "1.0.0")
            .org_config_schema(m.org_config_schema.clone())
            .endpoint_field("endpoint")
            .account_fields(["api", "username"]);
        let mut bob = org();
        bob["username"] = json!("bob");
        for _ in 0..2 {
            for (keys, manifest, org) in [
                (&a, &m, org()),
                (&a, &m, org()),
                (&a, &m, bob.clone()),
                (&b, &m, bob.clone()),
                (&b, &renamed, bob.clone()),
                (&a, &renamed, bob.clone()),
                (&a, &m, org()),
            ] {
                assert_eq!(&*keys.key(manifest, &org), account_key(manifest, &org));
            }
        }
    }

    #[test]
    fn the_key_is_the_same_in_every_process() {
        // A fixed input has a fixed digest: SHA-256 of the documented encoding (the expected
        // value was computed independently, with Python's hashlib), never a per-process hash.
        assert_eq!(
            account_key(&manifest(), &org()),
            "d2de5e39a24211e0c539ec5dccef03ffd350d53dc84a24d4da08abcaf30fd2c1"
        );
    }

    #[test]
    fn the_key_changes_with_the_plugin_the_endpoint_and_each_account_field() {
        let base = account_key(&manifest(), &org());
        let mut other_plugin = manifest();
        other_plugin.name = "acme2".into();
        assert_ne!(account_key(&other_plugin, &org()), base);
        for (field, value) in [
            ("endpoint", json!("https://other.acme.example")),
            ("api", json!("rest")),
            ("username", json!("bob")),
        ] {
            let mut o = org();
            o[field] = value;
            assert_ne!(account_key(&manifest(), &o), base, "{field}");
        }
        let mut missing = org();
        missing.as_object_mut().unwrap().remove("username");
        assert_ne!(account_key(&manifest(), &missing), base);
        // The parts cannot run into each other: ("ab", "c") is not ("a", "bc").
        let mut a = org();
        a["api"] = json!("ab");
        a["username"] = json!("c");
        let mut b = org();
        b["api"] = json!("a");
        b["username"] = json!("bc");
        assert_ne!(account_key(&manifest(), &a), account_key(&manifest(), &b));
    }

    #[test]
    fn secrets_and_other_settings_do_not_change_the_key() {
        let base = account_key(&manifest(), &org());
        let mut o = org();
        o["password"] = json!("another-password");
        o["rate_per_second"] = json!(50);
        assert_eq!(account_key(&manifest(), &o), base);
        o.as_object_mut().unwrap().remove("password");
        assert_eq!(account_key(&manifest(), &o), base);
        assert!(!base.contains("s3cret"));
    }

    #[test]
    fn equivalent_endpoints_are_one_account() {
        let base = account_key(&manifest(), &org());
        for same in [
            "https://api.acme.example/",
            " HTTPS://API.Acme.example:443 ",
        ] {
            let mut o = org();
            o["endpoint"] = json!(same);
            assert_eq!(account_key(&manifest(), &o), base, "{same}");
        }
        assert_eq!(
            normalise_endpoint("http://h.example:8080/x/"),
            "http://h.example:8080/x"
        );
        assert_eq!(normalise_endpoint(" not a url "), "not a url");
    }

    #[test]
    fn without_endpoint_or_account_fields_the_key_is_the_plugins() {
        let bare = Manifest::new("echo", "Echo", "1.0.0");
        let a = account_key(&bare, &json!({"greeting": "hi"}));
        assert_eq!(a, account_key(&bare, &json!({"greeting": "hej"})));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut a = String::new();
        canonical_json(&json!({"b": [1, {"d": null, "c": "x"}], "a": true}), &mut a);
        assert_eq!(a, r#"{"a":true,"b":[1,{"c":"x","d":null}]}"#);
    }
}
