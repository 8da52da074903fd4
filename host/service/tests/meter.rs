//! `meter`: a neutral plugin linked statically into this test binary, whose devices are found
//! by their `serial` (its one lookup field). It calls no service.

use devext_plugin_api::{Call, Host, Manifest, Operation, Plugin, PluginError, Value, json};

#[derive(Default)]
pub(crate) struct Meter;

impl Plugin for Meter {
    fn manifest(&self) -> Manifest {
        Manifest::new("meter", "Meter", "1.0.0")
            .description("A test plugin whose devices are found by serial number.")
            .org_config_schema(json!({"type": "object", "additionalProperties": false}))
            .device_config_schema(json!({
                "type": "object",
                "properties": {
                    "serial": {"type": "string", "minLength": 1, "maxLength": 64},
                    "note": {"type": "string"}
                },
                "required": ["serial"],
                "additionalProperties": false
            }))
            .lookup_fields(["serial"])
            .with_operation(
                Operation::view("read", "Read")
                    .description("Returns the device's serial.")
                    .input_schema(json!({"type": "object", "additionalProperties": false}))
                    .output_schema(json!({
                        "type": "object",
                        "properties": {"serial": {"type": "string"}},
                        "required": ["serial"]
                    })),
            )
    }

    async fn invoke(&self, _host: Host, call: Call) -> Result<Value, PluginError> {
        Ok(json!({"serial": call.device_config["serial"]}))
    }
}

devext_plugin_api::export_plugin!(Meter, Meter);
