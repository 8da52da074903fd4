//! `meter`: a neutral plugin linked statically into this test binary, whose devices are found
//! by their `serial` (its one lookup field). Its optional `endpoint` setting is the origin the
//! egress rules let it reach; its org operation `fetch` GETs any URL through the host.

use devext_plugin_api::{
    Call, Host, HttpRequest, Manifest, OpScope, Operation, Plugin, PluginError, Value, json,
};

#[derive(Default)]
pub(crate) struct Meter;

impl Plugin for Meter {
    fn manifest(&self) -> Manifest {
        Manifest::new("meter", "Meter", "1.0.0")
            .description("A test plugin whose devices are found by serial number.")
            .org_config_schema(json!({
                "type": "object",
                "properties": {"endpoint": {"type": "string", "format": "uri"}},
                "additionalProperties": false
            }))
            .endpoint_field("endpoint")
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
            .with_operation(
                Operation::view("fetch", "Fetch")
                    .scope(OpScope::Org)
                    .description("GETs `url` through the host's HTTP capability.")
                    .input_schema(json!({
                        "type": "object",
                        "properties": {"url": {"type": "string"}},
                        "required": ["url"],
                        "additionalProperties": false
                    })),
            )
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        if call.op == "fetch" {
            let url = call.input["url"].as_str().unwrap_or_default();
            let response = host.http(&HttpRequest::new("GET", url)).await?;
            return Ok(json!({"status": response.status}));
        }
        Ok(json!({"serial": call.device_config["serial"]}))
    }
}

devext_plugin_api::export_plugin!(Meter, Meter);
