//! An org's extension settings: reading them with secrets masked, and writing them (a secret
//! left out, or sent back as [`SECRET_MASK`], keeps its stored value).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use devext_host::{Runtime, Violation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::audit::audit;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::state::App;
use crate::store::{ExtensionSettings, NewAudit, Store};

/// What a secret looks like when a client sends a masked value back.
pub const SECRET_MASK: &str = "********";

/// Top-level org-config properties marked `writeOnly` in the plugin's schema (see
/// [`devext_host::schema::secret_properties`]).
pub fn secret_fields(schema: &Value) -> Vec<String> {
    devext_host::schema::secret_properties(schema)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn settings_view(plugin: &str, settings: Option<&ExtensionSettings>) -> Value {
    match settings {
        Some(s) => {
            let mut set: Vec<&String> = s.secrets.keys().collect();
            set.sort();
            json!({"plugin": plugin, "enabled": s.enabled, "config": s.config, "secrets_set": set})
        }
        None => json!({"plugin": plugin, "enabled": false, "config": {}, "secrets_set": []}),
    }
}

pub(crate) fn plugin_or_404<'a>(
    app: &'a Runtime,
    plugin: &str,
) -> ApiResult<&'a devext_host::LoadedPlugin> {
    app.plugin(plugin).ok_or_else(|| {
        ApiError::not_found(format!(
            "no plugin {plugin:?}; loaded plugins are {}",
            app.plugin_names().join(", ")
        ))
    })
}

pub(crate) async fn list_extensions<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let stored = app.store.extensions(caller.0.org_id).await?;
    let items: Vec<Value> = app
        .runtime
        .plugin_names()
        .into_iter()
        .map(|name| settings_view(name, stored.iter().find(|s| s.plugin == name)))
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn get_extension<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(plugin): Path<String>,
) -> ApiResult<axum::response::Response> {
    plugin_or_404(&app.runtime, &plugin)?;
    let stored = app.store.extension(caller.0.org_id, &plugin).await?;
    let etag = app.store.extension_etag(caller.0.org_id, &plugin).await?;
    Ok(super::devices::with_etag(
        axum::http::StatusCode::OK,
        etag.as_deref(),
        settings_view(&plugin, stored.as_ref()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    enabled: bool,
    /// The new settings; left out, the stored ones (config and secrets) stay as they are.
    #[serde(default, deserialize_with = "present")]
    config: Option<Map<String, Value>>,
}

/// A `config` that is given is an object: `null` is refused, not taken for one left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    Map::deserialize(d).map(Some)
}

pub(crate) async fn put_extension<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path(plugin): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> ApiResult<axum::response::Response> {
    let Json(body) = body?;
    // With `If-Match` (the ETag of the settings as read), settings changed since are not
    // overwritten: 412.
    let if_match = super::devices::if_match(&headers)?;
    let loaded = plugin_or_404(&app.runtime, &plugin)?;
    let secret_names = secret_fields(&loaded.manifest().org_config_schema);
    let stored = app.store.extension(caller.0.org_id, &plugin).await?;
    let mut secrets = stored
        .as_ref()
        .map(|s| s.secrets.clone())
        .unwrap_or_default();
    let secrets_before = secrets.clone();
    // Settings switched off and not changed are not checked: switching off always works, even
    // when the stored settings no longer fit the plugin's schema.
    let check = body.enabled || body.config.is_some();
    let config = match body.config {
        Some(given) => replace_config(given, &secret_names, &mut secrets),
        None => stored.map(|s| s.config).unwrap_or_default(),
    };
    let settings = ExtensionSettings {
        plugin: plugin.clone(),
        enabled: body.enabled,
        config,
        secrets,
    };
    if check && let Err(violations) = app.runtime.validate_org_config(&plugin, &settings.merged()) {
        let violations: Vec<Violation> = violations
            .into_iter()
            .map(|v| Violation {
                pointer: format!("/config{}", v.pointer),
                ..v
            })
            .collect();
        audit_update(&app, &caller, &plugin, "invalid_input", "").await;
        return Err(ApiError::violations(
            format!("the settings for {plugin} are"),
            violations,
        ));
    }
    // An endpoint the egress rules refuse is reported now, not at the first operation.
    if check && let Err(refused) = app.runtime.check_endpoint(&plugin, &settings.merged()) {
        let hint = if refused.plain_http_to_loopback {
            "; plain http to a loopback address (a local simulator) is allowed only when the \
             service runs with --allow-loopback-http (DEVEXT_ALLOW_LOOPBACK_HTTP=1)"
        } else {
            ""
        };
        let violations = vec![Violation {
            pointer: format!("/config/{}", refused.field),
            keyword: "egress".into(),
            message: format!("{}{hint}", refused.message),
        }];
        audit_update(&app, &caller, &plugin, "invalid_input", "").await;
        return Err(ApiError::violations(
            format!("the settings for {plugin} are"),
            violations,
        ));
    }
    app.store
        .put_extension_if(caller.0.org_id, &settings, if_match.as_deref())
        .await?;
    app.settings.forget(&(caller.0.org_id, plugin.clone()));
    let changed = format!(
        "enabled={}; secrets changed: {}",
        settings.enabled,
        changed_secrets(&secrets_before, &settings.secrets)
    );
    audit_update(&app, &caller, &plugin, "ok", &changed).await;
    let etag = app.store.extension_etag(caller.0.org_id, &plugin).await?;
    Ok(super::devices::with_etag(
        axum::http::StatusCode::OK,
        etag.as_deref(),
        settings_view(&plugin, Some(&settings)),
    ))
}

/// The non-secret config of `given`, which replaces the stored one; its secrets (named in
/// `secret_names`) update `secrets`: a value sets one, `null` removes it, and one left out or
/// sent back as [`SECRET_MASK`] keeps its stored value.
fn replace_config(
    given: Map<String, Value>,
    secret_names: &[String],
    secrets: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut config = Map::new();
    for (name, value) in given {
        if secret_names.contains(&name) {
            match value {
                // A mask sent back never overwrites the stored secret.
                Value::String(s) if s == SECRET_MASK => {}
                Value::Null => {
                    secrets.remove(&name);
                }
                v => {
                    secrets.insert(name, v);
                }
            }
        } else {
            config.insert(name, value);
        }
    }
    config
}

/// The names of the secrets a write set, changed or removed (sorted), `none` if none: what
/// the audit says, never their values.
fn changed_secrets(before: &Map<String, Value>, after: &Map<String, Value>) -> String {
    let mut names: Vec<&str> = after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(*value))
        .map(|(name, _)| name.as_str())
        .chain(
            before
                .keys()
                .filter(|name| !after.contains_key(*name))
                .map(String::as_str),
        )
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

/// Records an update of the org's settings for `plugin` (never the secrets' values).
async fn audit_update<S: Store>(
    app: &App<S>,
    caller: &Caller,
    plugin: &str,
    outcome: &str,
    detail: &str,
) {
    let entry = NewAudit {
        action: "settings",
        plugin: Some(plugin),
        op: Some("update"),
        outcome,
        detail,
        ..Default::default()
    };
    audit(app, caller, entry).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secrets_that_changed_are_named() {
        let map = |v: Value| v.as_object().unwrap().clone();
        let before = map(json!({"password": "a", "key": "k"}));
        assert_eq!(changed_secrets(&before, &before), "none");
        let after = map(json!({"password": "b", "key": "k", "token": "t"}));
        assert_eq!(changed_secrets(&before, &after), "password,token");
        let after = map(json!({"key": "k"}));
        assert_eq!(changed_secrets(&before, &after), "password");
    }
}
