//! The device lookup index, as the loaded plugins define it: each manifest's `lookup_fields` name
//! the properties of the plugin's device configuration that identify a device in its service.
//! [`LookupFields`] turns a device's extension configuration into its index entries (which the
//! store writes with the device) and names the list filters (`ext.<plugin>.<field>`).
//!
//! The service knows no plugin's fields: they come from the manifests only.

use devext_host::Runtime;
use devext_plugin_api::Manifest;
use serde_json::Value;

use crate::store::LookupEntry;

/// The prefix of a lookup filter in a device listing's query: `ext.<plugin>.<field>=value`.
pub const FILTER_PREFIX: &str = "ext.";

/// The lookup fields of a set of plugins, as sorted `(plugin, field)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupFields(Vec<(String, String)>);

impl LookupFields {
    /// The lookup fields the manifests declare.
    pub fn from_manifests<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Self {
        let mut fields: Vec<(String, String)> = manifests
            .into_iter()
            .flat_map(|m| m.lookup_fields.iter().map(|f| (m.name.clone(), f.clone())))
            .collect();
        fields.sort();
        fields.dedup();
        LookupFields(fields)
    }

    /// The lookup fields of the runtime's plugins.
    pub fn of(runtime: &Runtime) -> Self {
        Self::from_manifests(runtime.plugins().map(|p| p.manifest()))
    }

    /// The `(plugin, field)` pairs, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(p, f)| (p.as_str(), f.as_str()))
    }

    /// Whether `plugin` declares `field`.
    pub fn contains(&self, plugin: &str, field: &str) -> bool {
        self.iter().any(|pf| pf == (plugin, field))
    }

    /// The filter names of the list query: `ext.<plugin>.<field>`, sorted.
    pub fn filter_names(&self) -> Vec<String> {
        self.iter()
            .map(|(p, f)| format!("{FILTER_PREFIX}{p}.{f}"))
            .collect()
    }

    /// What the index is built from, as one string (`meter.asset,meter.serial`): the store
    /// rebuilds its index when this changes.
    pub fn signature(&self) -> String {
        self.iter()
            .map(|(p, f)| format!("{p}.{f}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index entries of a device's extension configuration: one per lookup field that the
    /// device's configuration for its plugin sets (to anything but `null`).
    pub fn entries(&self, extensions: &Value) -> Vec<LookupEntry> {
        self.iter()
            .filter_map(|(plugin, field)| {
                let value = extensions.get(plugin)?.get(field)?;
                Some(LookupEntry {
                    plugin: plugin.to_owned(),
                    field: field.to_owned(),
                    value: value_text(value)?,
                })
            })
            .collect()
    }
}

/// The indexed text of a lookup value: a JSON string as it is, any other value (but `null`) as
/// its JSON text, so that `?ext.p.n=5` finds the number 5.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A neutral plugin `meter` whose devices are found by `serial` and `asset`.
    fn manifests() -> Vec<Manifest> {
        let plugin = |name: &str, lookup: &[&str]| -> Manifest {
            serde_json::from_value(json!({
                "protocol": 1, "name": name, "display_name": name, "version": "1.0.0",
                "api_version": "0.1.0",
                "org_config_schema": {"type": "object"},
                "device_config_schema": {"type": "object"},
                "lookup_fields": lookup, "operations": []
            }))
            .unwrap()
        };
        vec![plugin("meter", &["serial", "asset"]), plugin("plain", &[])]
    }

    #[test]
    fn entries_come_from_the_declared_fields_only() {
        let fields = LookupFields::from_manifests(&manifests());
        assert_eq!(
            fields.iter().collect::<Vec<_>>(),
            vec![("meter", "asset"), ("meter", "serial")]
        );
        assert_eq!(fields.signature(), "meter.asset,meter.serial");
        assert_eq!(
            fields.filter_names(),
            vec!["ext.meter.asset", "ext.meter.serial"]
        );
        assert!(fields.contains("meter", "serial") && !fields.contains("plain", "serial"));
        let ext = json!({
            "meter": {"serial": "SN-1", "asset": 42, "note": "not a lookup field"},
            "plain": {"serial": "SN-2"}
        });
        let entry = |field: &str, value: &str| LookupEntry {
            plugin: "meter".into(),
            field: field.into(),
            value: value.into(),
        };
        assert_eq!(
            fields.entries(&ext),
            vec![entry("asset", "42"), entry("serial", "SN-1")]
        );
        // Unset and null values are not indexed.
        assert_eq!(
            fields.entries(&json!({"meter": {"asset": null}})),
            Vec::new()
        );
        assert_eq!(LookupFields::default().entries(&ext), Vec::new());
    }
}
