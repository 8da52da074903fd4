//! `meter`: a neutral plugin linked statically into this test binary, whose devices are found
//! by their `serial` (its one lookup field). It calls no service.

use devext_plugin_api::{
    Call, Host, Manifest, OpKind, Operation, Plugin, PluginError, Value, json,
};

#[derive(Default)]
pub(crate) struct Meter;

impl Plugin for Meter {
    fn manifest(&self) -> Manifest {
        Manifest {
            protocol: devext_plugin_api::PROTOCOL_VERSION,
            name: "meter".into(),
            display_name: "Meter".into(),
            version: "1.0.0".into(),
            api_version: devext_plugin_api::API_VERSION.into(),
            description: "A test plugin whose devices are found by serial number.".into(),
            org_config_schema: json!({"type": "object", "additionalProperties": false}),
            device_config_schema: json!({
                "type": "object",
                "properties": {
                    "serial": {"type": "string", "minLength": 1, "maxLength": 64},
                    "note": {"type": "string"}
                },
                "required": ["serial"],
                "additionalProperties": false
            }),
            endpoint_field: None,
            lookup_fields: vec!["serial".into()],
            account_fields: Vec::new(),
            operations: vec![Operation {
                name: "read".into(),
                title: "Read".into(),
                description: "Returns the device's serial.".into(),
                kind: OpKind::View,
                destructive: false,
                input_schema: json!({"type": "object", "additionalProperties": false}),
                output_schema: json!({
                    "type": "object",
                    "properties": {"serial": {"type": "string"}},
                    "required": ["serial"]
                }),
                fresh_for_secs: None,
            }],
            warnings: Vec::new(),
        }
    }

    async fn invoke(&self, _host: Host, call: Call) -> Result<Value, PluginError> {
        Ok(json!({"serial": call.device_config["serial"]}))
    }
}

devext_plugin_api::export_plugin!(Meter, Meter);
