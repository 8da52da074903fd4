//! The manifest: settings, device configuration and operations, with the dashboard's hints.

use devext_plugin_api::{Manifest, OpScope, Operation, Value, json};

/// Where 1NCE's Management API lives.
pub const DEFAULT_ENDPOINT: &str = "https://api.1nce.com/management-api";

fn quota(title: &str, unit: &str) -> Value {
    json!({
        "type": "object",
        "title": title,
        "properties": {
            "remaining": {"type": "number", "title": "Left", "x-devext-unit": unit},
            "total": {"type": ["number", "null"], "title": "Total", "x-devext-unit": unit},
            "expiry_date": {"type": ["string", "null"], "format": "date-time", "title": "Expires"},
            "threshold": {
                "type": "string", "title": "Threshold", "x-devext-badge": true,
                "enum": ["ok", "low", "exhausted", "unknown"],
                "description": "ok: more than the threshold left; low: less; exhausted: none left"
            },
            "threshold_percentage": {
                "type": ["number", "null"], "title": "Threshold", "x-devext-unit": "percent"
            }
        },
        "required": ["remaining", "total", "expiry_date", "threshold", "threshold_percentage"],
        "additionalProperties": false
    })
}

fn iccid_output() -> Value {
    json!({"type": "string", "pattern": "^[0-9]{19}$", "title": "ICCID"})
}

fn date_input(title: &str, default: &str) -> Value {
    json!({"type": "string", "format": "date", "title": title, "x-devext-default": default})
}

fn day_entry() -> Value {
    json!({
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date", "title": "Day"},
            "data_up_bytes": {"type": "integer", "minimum": 0, "title": "Data up", "x-devext-unit": "bytes"},
            "data_down_bytes": {"type": "integer", "minimum": 0, "title": "Data down", "x-devext-unit": "bytes"},
            "data_bytes": {"type": "integer", "minimum": 0, "title": "Data", "x-devext-unit": "bytes"},
            "sms_mo": {"type": "integer", "minimum": 0, "title": "SMS from the device", "x-devext-unit": "count"},
            "sms_mt": {"type": "integer", "minimum": 0, "title": "SMS to the device", "x-devext-unit": "count"},
            "sms_count": {"type": "integer", "minimum": 0, "title": "SMS", "x-devext-unit": "count"}
        },
        "required": ["date", "data_up_bytes", "data_down_bytes", "data_bytes", "sms_mo", "sms_mt", "sms_count"],
        "additionalProperties": false
    })
}

pub(crate) fn manifest() -> Manifest {
    Manifest::new("onence", "1NCE", env!("CARGO_PKG_VERSION"))
        .description("1NCE IoT SIMs (Management API v1): status, quotas, usage, SMS and top-ups.")
        .org_config_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "1NCE settings",
            "type": "object",
            "properties": {
                "endpoint": {
                    "type": "string", "format": "uri", "title": "API base URL",
                    "default": DEFAULT_ENDPOINT,
                    "description": "The Management API's base URL, without /v1"
                },
                "username": {
                    "type": "string", "title": "API user", "minLength": 1, "maxLength": 200,
                    "description": "An API user's client id (prefixed with the account number) or the owner's portal e-mail"
                },
                "password": {
                    "type": "string", "title": "Password", "minLength": 1, "maxLength": 500,
                    "writeOnly": true, "x-devext-widget": "password",
                    "description": "The API user's client secret or the owner's password"
                },
                "sms_source_address": {
                    "type": "string", "title": "SMS sender", "minLength": 1, "maxLength": 16,
                    "pattern": "^[0-9A-Za-z+ ]+$", "default": "devext",
                    "description": "The sender shown on SMS sent to devices (1NCE's network does not use it)"
                },
                "payment_method": {
                    "title": "Top-up payment", "default": "banktransfer",
                    "oneOf": [
                        {"const": "banktransfer", "title": "Bank transfer"},
                        {"const": "creditcard", "title": "Credit card"},
                        {"const": "monthlyinvoice", "title": "Monthly invoice"},
                        {"const": "boleto", "title": "Boleto"}
                    ]
                }
            },
            "required": ["endpoint", "username", "password"],
            "additionalProperties": false
        }))
        .device_config_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "1NCE SIM",
            "type": "object",
            "properties": {
                "iccid": {
                    "type": "string", "title": "ICCID", "pattern": "^[0-9]{19,20}$",
                    "description": "19 digits, or 20 with the check digit as printed on the SIM"
                }
            },
            "required": ["iccid"],
            "additionalProperties": false
        }))
        .endpoint_field("endpoint")
        .account_fields(["username"])
        .lookup_fields(["iccid"])
        .connection_check("test_connection")
        .with_operation(
            Operation::view("overview", "Overview")
                .description("The SIM's state, identities, connectivity and quotas left.")
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "iccid_with_luhn": {"type": ["string", "null"], "title": "ICCID with check digit"},
                        "status": {"type": "string", "enum": ["Enabled", "Disabled", "Unknown"], "title": "Status", "x-devext-badge": true},
                        "label": {"type": ["string", "null"], "title": "Label"},
                        "imsi": {"type": ["string", "null"], "title": "IMSI"},
                        "msisdn": {"type": ["string", "null"], "title": "MSISDN"},
                        "imei": {"type": ["string", "null"], "title": "IMEI"},
                        "imei_lock": {"type": ["boolean", "null"], "title": "IMEI lock"},
                        "ip_address": {"type": ["string", "null"], "title": "IP address"},
                        "activation_date": {"type": ["string", "null"], "format": "date-time", "title": "Activated"},
                        "connectivity": {"type": "string", "enum": ["ONLINE", "ATTACHED", "OFFLINE", "BLOCKED", "UNKNOWN"], "title": "Connectivity", "x-devext-badge": true},
                        "last_seen": {"type": ["string", "null"], "format": "date-time", "title": "Network last updated"},
                        "data_quota": quota("Data quota", "bytes"),
                        "sms_quota": quota("SMS quota", "count")
                    },
                    "required": ["iccid", "status", "connectivity", "data_quota", "sms_quota"],
                    "additionalProperties": false
                }))
                .fresh_for_secs(30),
        )
        .with_operation(
            Operation::action("set_status", "Enable or disable")
                .description("Enables or disables the SIM (its label and IMEI lock are kept).")
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "status": {
                            "title": "Status",
                            "oneOf": [
                                {"const": "Enabled", "title": "Enabled"},
                                {"const": "Disabled", "title": "Disabled"}
                            ]
                        }
                    },
                    "required": ["status"],
                    "additionalProperties": false
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "status": {"type": "string", "enum": ["Enabled", "Disabled"]},
                        "previous_status": {"type": "string"},
                        "changed": {"type": "boolean"}
                    },
                    "required": ["iccid", "status", "previous_status", "changed"],
                    "additionalProperties": false
                })),
        )
        .with_operation(
            Operation::view("usage", "Usage")
                .description("Daily data (up and down) and SMS between two dates within the last six months.")
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "start_date": date_input("From", "cycle-start"),
                        "end_date": date_input("To", "today")
                    },
                    "required": ["start_date", "end_date"],
                    "additionalProperties": false
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "start_date": {"type": "string", "format": "date"},
                        "end_date": {"type": "string", "format": "date"},
                        "days": {"type": "array", "items": day_entry()},
                        "data_bytes": {"type": "integer", "minimum": 0, "title": "Data", "x-devext-unit": "bytes"},
                        "sms_count": {"type": "integer", "minimum": 0, "title": "SMS", "x-devext-unit": "count"}
                    },
                    "required": ["iccid", "start_date", "end_date", "days", "data_bytes", "sms_count"],
                    "additionalProperties": false
                }))
                .fresh_for_secs(300),
        )
        .with_operation(
            Operation::view("usage_history", "Usage by month")
                .description("Data and SMS per calendar month, this month included.")
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "months": {"type": "integer", "minimum": 1, "maximum": 6, "default": 6, "title": "Months"}
                    },
                    "additionalProperties": false
                }))
                .output_schema(json!({
                    "type": "object",
                    "x-devext-chart": {
                        "kind": "bar", "series": "/cycles", "x": "cycle_start",
                        "y": ["data_bytes", "sms_count"]
                    },
                    "properties": {
                        "iccid": iccid_output(),
                        "cycles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "cycle_start": {"type": "string", "format": "date", "title": "Month"},
                                    "data_bytes": {"type": "integer", "minimum": 0, "title": "Data", "x-devext-unit": "bytes"},
                                    "sms_count": {"type": "integer", "minimum": 0, "title": "SMS", "x-devext-unit": "count"}
                                },
                                "required": ["cycle_start", "data_bytes", "sms_count"],
                                "additionalProperties": false
                            }
                        }
                    },
                    "required": ["iccid", "cycles"],
                    "additionalProperties": false
                }))
                .fresh_for_secs(300),
        )
        .with_operation(
            Operation::action("send_sms", "Send SMS")
                .description("Sends a text SMS to the device (1NCE returns no message id).")
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "text": {
                            "type": "string", "title": "Text", "minLength": 1, "maxLength": 160,
                            "x-devext-widget": "textarea", "x-devext-audit": "length",
                            "description": "Up to 160 characters of GSM text"
                        }
                    },
                    "required": ["text"],
                    "additionalProperties": false
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "accepted": {"const": true},
                        "submitted_at": {"type": "string", "format": "date-time"}
                    },
                    "required": ["iccid", "accepted", "submitted_at"],
                    "additionalProperties": false
                })),
        )
        .with_operation(
            Operation::action("top_up", "Top up")
                .description("Orders a top-up of the SIM's data and SMS volume: creates an order that is invoiced.")
                .destructive(true)
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "payment_method": {
                            "title": "Payment (the settings' when absent)",
                            "enum": ["banktransfer", "creditcard", "monthlyinvoice", "boleto"]
                        }
                    },
                    "additionalProperties": false
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "ordered": {"const": true},
                        "payment_method": {"type": "string"},
                        "order_number": {"type": ["string", "null"], "title": "Order"},
                        "order_url": {"type": ["string", "null"]}
                    },
                    "required": ["iccid", "ordered", "payment_method", "order_number", "order_url"],
                    "additionalProperties": false
                })),
        )
        .with_operation(
            Operation::action("reset_connectivity", "Reset connectivity")
                .description("Asks the network to detach the SIM so that the device attaches again (asynchronous).")
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "iccid": iccid_output(),
                        "requested": {"const": true}
                    },
                    "required": ["iccid", "requested"],
                    "additionalProperties": false
                })),
        )
        .with_operation(
            Operation::view("test_connection", "Test connection")
                .scope(OpScope::Org)
                .description("Obtains a new token with the settings' credentials and lists one SIM.")
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "ok": {"const": true},
                        "token_lifetime_secs": {"type": "integer", "title": "Token lifetime", "x-devext-unit": "seconds"},
                        "sims": {"type": ["integer", "null"], "title": "SIMs in the account", "x-devext-unit": "count"}
                    },
                    "required": ["ok", "token_lifetime_secs", "sims"],
                    "additionalProperties": false
                })),
        )
}
