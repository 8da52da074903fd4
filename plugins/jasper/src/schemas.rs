//! The manifest: configuration schemas, operations and declared warnings (JSON Schema draft
//! 2020-12, with titles and descriptions a UI can show).

use devext_plugin_api::{DeclaredWarning, Manifest, OpScope, Operation, Value, json};

use crate::config::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_RATE_PER_SECOND, MAX_MAX_IN_FLIGHT, MAX_RATE_PER_SECOND,
    MAX_RATE_PLAN_CHARS, MAX_RATE_PLANS,
};
use crate::model::SimStatus;
use crate::rest::REST_SMS_MAX_CHARS;
use crate::soap::SOAP_SMS_MAX_CHARS;

pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

pub fn org_config() -> Value {
    json!({
        "$schema": DRAFT,
        "title": "Cisco Jasper Control Center account",
        "description": "How to reach the org's Jasper (Cisco IoT Control Center) account. SOAP \
            needs the username, password and license key; REST needs the username and API key.",
        "type": "object",
        "properties": {
            "api": {
                "type": "string",
                "title": "API",
                "description": "Which Jasper API to use: SOAP (username, password, license key) \
                    or REST (username, API key).",
                "oneOf": [
                    {"const": "soap", "title": "SOAP (license key)"},
                    {"const": "rest", "title": "REST (API key)"}
                ]
            },
            "endpoint": {
                "type": "string",
                "format": "uri",
                "title": "API endpoint",
                "description": "Origin of the account's API host, http or https, without a path \
                    (for example https://api.jasper.com or https://restapi3.jasper.com). The \
                    plugin appends /ws/service/... (SOAP) or /rws/api/v1/... (REST).",
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s\\\\]+/?$",
                "maxLength": 200,
                "examples": ["https://api.jasper.com", "https://rws-jpotest.jasper.com"]
            },
            "username": {
                "type": "string",
                "title": "Username",
                "description": "The Jasper API user's login.",
                "minLength": 1,
                "maxLength": 200
            },
            "password": {
                "type": "string",
                "title": "Password",
                "description": "SOAP only: the API user's password (sent in a WS-Security \
                    UsernameToken).",
                "minLength": 1,
                "maxLength": 500,
                "writeOnly": true
            },
            "license_key": {
                "type": "string",
                "title": "License key",
                "description": "SOAP only: the account's API license key.",
                "minLength": 1,
                "maxLength": 500,
                "writeOnly": true
            },
            "api_key": {
                "type": "string",
                "title": "API key",
                "description": "REST only: the API user's API key (HTTP Basic username:api_key).",
                "minLength": 1,
                "maxLength": 500,
                "writeOnly": true
            },
            "rate_per_second": {
                "type": "integer",
                "title": "Calls per second",
                "description": "Jasper's per-account limit of API calls started in any one \
                    second (shared with every other client of the account). The plugin never \
                    exceeds it.",
                "minimum": 1,
                "maximum": MAX_RATE_PER_SECOND,
                "default": DEFAULT_RATE_PER_SECOND
            },
            "max_in_flight": {
                "type": "integer",
                "title": "Calls at once",
                "description": "Jasper's per-account limit of concurrent API calls (Cisco asks \
                    for one at a time).",
                "minimum": 1,
                "maximum": MAX_MAX_IN_FLIGHT,
                "default": DEFAULT_MAX_IN_FLIGHT
            },
            "rate_plans": rate_plans_schema(
                "Rate plans",
                "Optional: the names of the account's rate plans this organisation uses, exactly \
                    as in Control Center (Jasper's APIs offer no list to read). The view \
                    rate_plans shows them, and set_rate_plan accepts only these names when the \
                    list is set (without it, Jasper judges the name).",
            )
        },
        "required": ["api", "endpoint", "username"],
        "allOf": [
            {
                "if": {"properties": {"api": {"const": "soap"}}, "required": ["api"]},
                "then": {"required": ["password", "license_key"]}
            },
            {
                "if": {"properties": {"api": {"const": "rest"}}, "required": ["api"]},
                "then": {"required": ["api_key"]}
            }
        ],
        "additionalProperties": false
    })
}

/// A list of rate plan names: distinct, each 1 to 100 characters without surrounding spaces.
fn rate_plans_schema(title: &str, description: &str) -> Value {
    json!({
        "type": "array",
        "title": title,
        "description": description,
        "items": {
            "type": "string",
            "title": "Rate plan",
            "minLength": 1,
            "maxLength": MAX_RATE_PLAN_CHARS,
            "pattern": "^\\S(.*\\S)?$"
        },
        "uniqueItems": true,
        "maxItems": MAX_RATE_PLANS,
        "examples": [["IoT_Basic_10MB", "IoT_Pro_1GB"]]
    })
}

pub fn device_config() -> Value {
    json!({
        "$schema": DRAFT,
        "title": "Jasper SIM",
        "description": "The SIM of this device in the org's Jasper account.",
        "type": "object",
        "properties": {
            "iccid": {
                "type": "string",
                "title": "ICCID",
                "description": "The SIM's ICCID: 19 or 20 digits, as shown in Control Center.",
                "pattern": "^[0-9]{19,20}$"
            }
        },
        "required": ["iccid"],
        "additionalProperties": false
    })
}

pub fn warnings() -> Vec<DeclaredWarning> {
    vec![DeclaredWarning::new(
        "iccid_check_digit",
        "The ICCID's last digit is not a valid Luhn check digit. Jasper often stores 19-digit \
            ICCIDs without their check digit, so this may be fine; if the SIM is not found, \
            compare the ICCID with the one in Control Center.",
        json!({"properties": {"iccid": {"format": "luhn"}}}),
    )]
}

/// The usage view's cycle: a date defaulting, in a form, to the current cycle's start.
fn cycle_start_input() -> Value {
    let mut v = date_input(
        "Cycle start date",
        "The first day of the billing cycle (YYYY-MM-DD). SOAP has completed cycles only; REST \
            only the last 3 cycles, the current one included.",
    );
    v["x-devext-default"] = json!("cycle-start");
    v
}

fn date_input(title: &str, description: &str) -> Value {
    json!({
        "type": "string",
        "format": "date",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        "title": title,
        "description": description
    })
}

fn nullable(ty: &str, title: &str, description: &str) -> Value {
    json!({"type": [ty, "null"], "title": title, "description": description})
}

fn nullable_count(title: &str, description: &str) -> Value {
    json!({"type": ["integer", "null"], "minimum": 0, "title": title, "description": description})
}

/// A count with its presentation unit (`x-devext-unit`: bytes, seconds or count).
fn nullable_measure(unit: &str, title: &str, description: &str) -> Value {
    let mut v = nullable_count(title, description);
    v["x-devext-unit"] = json!(unit);
    v
}

fn nullable_datetime(title: &str, description: &str) -> Value {
    json!({"type": ["string", "null"], "format": "date-time", "title": title, "description": description})
}

fn api_field() -> Value {
    json!({"type": "string", "enum": ["soap", "rest"], "title": "API", "description": "The Jasper API that answered."})
}

fn iccid_field() -> Value {
    json!({"type": "string", "title": "ICCID", "pattern": "^[0-9]{19,20}$"})
}

const DATA_BYTES: &str = "Data in bytes. SOAP reports decimal megabytes, converted as MB × \
1,000,000, rounded to the nearest byte; REST reports bytes.";

fn counters(title: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "title": title,
        "description": description,
        "properties": {
            "data_bytes": nullable_measure("bytes", "Data", DATA_BYTES),
            "sms_messages": nullable_measure("count", "SMS", "SMS messages, sent and received."),
            "voice_seconds": nullable_measure("seconds", "Voice", "Voice calls, in seconds.")
        },
        "required": ["data_bytes", "sms_messages", "voice_seconds"],
        "additionalProperties": false
    })
}

fn status_id_field() -> Value {
    json!({
        "type": "string",
        "title": "Status",
        "description": "The SIM status id: inventory, activation_ready, activated, deactivated, \
            retired, test_ready, trial, purged, replaced, or another Jasper status as a \
            snake_case id (unknown when Jasper gave none).",
        "pattern": "^[a-z0-9_]+$",
        "examples": ["activated", "activation_ready", "test_ready"]
    })
}

fn settable_status() -> Value {
    let options: Vec<Value> = SimStatus::SETTABLE
        .iter()
        .map(|s| json!({"const": s.id(), "title": s.label()}))
        .collect();
    json!({
        "type": "string",
        "title": "New status",
        "description": "The SIM status to set. Jasper refuses some transitions (for example back \
            to Activation Ready).",
        "oneOf": options
    })
}

fn change_output(field: (&str, Value)) -> Value {
    let (name, schema) = field;
    json!({
        "type": "object",
        "title": "Change accepted",
        "properties": {
            "iccid": iccid_field(),
            "api": api_field(),
            name: schema,
            "effective_date": {
                "type": ["string", "null"], "format": "date", "title": "Effective date",
                "description": "The date (UTC) the change takes effect; null: immediately."
            },
            "scheduled": {
                "type": "boolean", "title": "Scheduled",
                "description": "Whether Jasper scheduled the change for later instead of applying it now."
            }
        },
        "required": ["iccid", "api", name, "effective_date", "scheduled"],
        "additionalProperties": false
    })
}

pub fn operations() -> Vec<Operation> {
    vec![
        Operation::view("overview", "Overview")
            .description("The SIM's status, rate plan, month-to-date data, SMS and voice usage, \
                overage limit and dates, from Jasper.")
            .input_schema(json!({
                "type": "object", "title": "No input", "properties": {}, "additionalProperties": false
            }))
            .output_schema(json!({
                "type": "object",
                "title": "SIM overview",
                "properties": {
                    "iccid": iccid_field(),
                    "api": api_field(),
                    "status": status_id_field(),
                    "status_label": {"type": "string", "title": "SIM status", "description": "The status for people (\"Activation Ready\").", "x-devext-badge": true},
                    "upstream_status": nullable("string", "Jasper status", "The status exactly as Jasper sent it (ACTIVATED_NAME, ACTIVATED, ...)."),
                    "rate_plan": nullable("string", "Rate plan", "The name of the SIM's rate plan."),
                    "month_to_date": counters("Month to date", "Usage in the current billing cycle so far."),
                    "overage_limit": {
                        "type": "object",
                        "title": "Overage limit",
                        "properties": {
                            "reached": nullable("boolean", "Reached", "Whether the SIM reached its overage limit."),
                            "override_mode": {
                                "type": ["string", "null"], "title": "Override mode",
                                "description": "default, temporary_override, permanent_override (or another Jasper mode as a snake_case id).",
                                "pattern": "^[a-z0-9_]+$"
                            }
                        },
                        "required": ["reached", "override_mode"],
                        "additionalProperties": false
                    },
                    "date_added": nullable_datetime("Date added", "When the SIM was added to the account (RFC 3339, UTC)."),
                    "date_modified": nullable_datetime("Date modified", "When the SIM was last modified (RFC 3339, UTC)."),
                },
                "required": ["iccid", "api", "status", "status_label", "upstream_status", "rate_plan",
                    "month_to_date", "overage_limit", "date_added", "date_modified"],
                "additionalProperties": false
            }))
            // Jasper asks clients to poll this kind of data at most about once a minute.
            .fresh_for_secs(60),
        Operation::action("set_status", "Change status")
            .description("Changes the SIM's status (for example activates or retires it), now \
                or on an effective date.")
            .destructive(true)
            .input_schema(json!({
                "type": "object",
                "title": "Change status",
                "properties": {
                    "status": settable_status(),
                    "effective_date": date_input("Effective date", "Optional: the date (UTC) the change takes effect; empty: now. REST allows at most 180 days ahead."),
                },
                "required": ["status"],
                "additionalProperties": false
            }))
            .output_schema(change_output((
                "status",
                json!({
                    "type": "string", "title": "Requested status",
                    "enum": SimStatus::SETTABLE.iter().map(SimStatus::id).collect::<Vec<_>>()
                }),
            ))),
        Operation::view("usage", "Usage for a billing cycle")
            .description("Data, SMS and voice usage of one billing cycle, billable and total \
                (REST reports totals only).")
            .input_schema(json!({
                "type": "object",
                "title": "Billing cycle",
                "properties": {
                    "cycle_start_date": cycle_start_input(),
                },
                "required": ["cycle_start_date"],
                "additionalProperties": false
            }))
            .output_schema(json!({
                "type": "object",
                "title": "Cycle usage",
                "properties": {
                    "iccid": iccid_field(),
                    "api": api_field(),
                    "cycle_start_date": {"type": "string", "format": "date", "title": "Cycle start date", "description": "The cycle asked for."},
                    "cycle_start": nullable_datetime("Cycle start", "The cycle's start as Jasper reports it (RFC 3339, UTC)."),
                    "cycle_end": nullable_datetime("Cycle end", "The cycle's end as Jasper reports it (RFC 3339, UTC; REST only)."),
                    "cycle_billed": nullable("boolean", "Billed", "SOAP only: whether the cycle is billable (false for the current cycle)."),
                    "rate_plan": nullable("string", "Rate plan", "SOAP only: the rate plan of the cycle."),
                    "total": counters("Total usage", "All usage of the cycle."),
                    "billable": counters("Billable usage", "Usage that is billed; every field is null when the API does not report it (see billable_unavailable_reason)."),
                    "billable_unavailable_reason": nullable("string", "Why no billable usage", "Set when the API does not report billable usage."),
                },
                "required": ["iccid", "api", "cycle_start_date", "cycle_start", "cycle_end", "cycle_billed",
                    "rate_plan", "total", "billable", "billable_unavailable_reason"],
                "additionalProperties": false
            })),
        Operation::action("send_sms", "Send SMS")
            .description("Sends a text message to the SIM.")
            .input_schema(json!({
                "type": "object",
                "title": "Send SMS",
                "properties": {
                    "message": {
                        "type": "string",
                        "title": "Message",
                        "description": format!("The text to send: at most {SOAP_SMS_MAX_CHARS} characters with the SOAP API, {REST_SMS_MAX_CHARS} with REST (sent in two parts)."),
                        "minLength": 1,
                        "maxLength": REST_SMS_MAX_CHARS,
                        "x-devext-widget": "textarea",
                        // The audit log keeps the message's length, never its text.
                        "x-devext-audit": "length"
                    }
                },
                "required": ["message"],
                "additionalProperties": false
            }))
            .output_schema(json!({
                "type": "object",
                "title": "SMS sent",
                "properties": {
                    "iccid": iccid_field(),
                    "api": api_field(),
                    "message_id": {
                        "type": ["string", "null"], "title": "Message id",
                        "description": "Jasper's id of the message (smsMsgId / smsMessageId, as text); null if Jasper accepted the message without returning one.",
                        "minLength": 1,
                        "maxLength": 64
                    },
                    "characters": {"type": "integer", "minimum": 1, "title": "Characters", "description": "Length of the message sent, in characters.", "x-devext-unit": "count"}
                },
                "required": ["iccid", "api", "message_id", "characters"],
                "additionalProperties": false
            })),
        Operation::action("set_rate_plan", "Change rate plan")
            .description("Moves the SIM to another rate plan of the account.")
            .input_schema(json!({
                "type": "object",
                "title": "Change rate plan",
                "properties": {
                    "rate_plan": {
                        "type": "string",
                        "title": "Rate plan",
                        "description": "The new plan's name, exactly as in Control Center.",
                        "minLength": 1,
                        "maxLength": 100
                    },
                    "effective_date": date_input("Effective date", "Optional: the date (UTC) the change takes effect; empty: now."),
                },
                "required": ["rate_plan"],
                "additionalProperties": false
            }))
            .output_schema(change_output((
                "rate_plan",
                json!({"type": "string", "title": "Rate plan"}),
            ))),
        Operation::view("rate_plans", "Rate plans")
            .scope(OpScope::Org)
            .description("The rate plans this organisation uses, as its settings list them \
                (Jasper's APIs offer no list of an account's plans).")
            .input_schema(json!({
                "type": "object", "title": "No input", "properties": {}, "additionalProperties": false
            }))
            .output_schema(json!({
                "type": "object",
                "title": "Rate plans",
                "properties": {
                    "rate_plans": rate_plans_schema(
                        "Rate plans",
                        "The names from the organisation's settings, in their order; empty when \
                            the settings list none.",
                    ),
                    "note": nullable("string", "Note", "Set when the settings list no rate plans: \
                        says where to add them and that set_rate_plan then leaves the name to \
                        Jasper; null otherwise."),
                },
                "required": ["rate_plans", "note"],
                "additionalProperties": false
            })),
        Operation::view("usage_history", "Usage history")
            .description("Data, SMS and voice usage of the last three billing cycles, the \
                current one so far included (cycles start on the 1st of each month, UTC).")
            .input_schema(json!({
                "type": "object", "title": "No input", "properties": {}, "additionalProperties": false
            }))
            .output_schema(usage_history_output())
            .fresh_for_secs(60),
        Operation::view("test_connection", "Test connection")
            .scope(OpScope::Org)
            .description("Checks the settings with the cheapest authenticated call of the chosen \
                API (a read of one SIM that no account holds): reads and changes nothing.")
            .input_schema(json!({
                "type": "object", "title": "No input", "properties": {}, "additionalProperties": false
            }))
            .output_schema(json!({
                "type": "object",
                "title": "Connection works",
                "properties": {
                    "ok": {"const": true, "title": "OK"},
                    "api": api_field(),
                    "endpoint": {"type": "string", "title": "API endpoint"},
                    "request": {"type": "string", "title": "Request made", "description": "The Jasper request the test made."},
                    "message": {"type": "string", "title": "Result", "description": "What Jasper accepted, for people."}
                },
                "required": ["ok", "api", "endpoint", "request", "message"],
                "additionalProperties": false
            })),
    ]
}

/// `usage_history`'s output: three cycles, drawn as a bar chart (`x-devext-chart`).
fn usage_history_output() -> Value {
    json!({
        "type": "object",
        "title": "Usage history",
        "x-devext-chart": {
            "kind": "bar",
            "series": "/cycles",
            "x": "cycle_start",
            "y": ["data_bytes", "sms_messages", "voice_seconds"]
        },
        "properties": {
            "iccid": iccid_field(),
            "api": api_field(),
            "cycles": {
                "type": "array",
                "title": "Billing cycles",
                "description": "The last three billing cycles, oldest first; the last one is the \
                    current cycle so far.",
                "minItems": 3,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "cycle_start": {"type": "string", "format": "date", "title": "Cycle start", "description": "The cycle's first day (UTC)."},
                        "current": {"type": "boolean", "title": "Current cycle", "description": "Whether the cycle is in progress (its figures are so far)."},
                        "data_bytes": nullable_measure("bytes", "Data", DATA_BYTES),
                        "sms_messages": nullable_measure("count", "SMS", "SMS messages, sent and received."),
                        "voice_seconds": nullable_measure("seconds", "Voice", "Voice calls, in seconds.")
                    },
                    "required": ["cycle_start", "current", "data_bytes", "sms_messages", "voice_seconds"],
                    "additionalProperties": false
                }
            },
            "note": nullable("string", "Note", "Set when Jasper has no usage recorded for a cycle (SOAP); null otherwise.")
        },
        "required": ["iccid", "api", "cycles", "note"],
        "additionalProperties": false
    })
}

pub fn manifest() -> Manifest {
    Manifest::new(
        "jasper",
        "Cisco Jasper Control Center",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Binds a device to its SIM in Cisco Jasper Control Center (SOAP or REST API): SIM \
         status and usage, status and rate plan changes, and SMS.",
    )
    .org_config_schema(org_config())
    .device_config_schema(device_config())
    .endpoint_field("endpoint")
    // A SIM belongs to one device of an organisation.
    .lookup_fields(["iccid"])
    // The account is its API flavour and user at the endpoint (never the credentials).
    .account_fields(["api", "username"])
    .with_operations(operations())
    .with_warnings(warnings())
    // Settings → "Test connection".
    .connection_check("test_connection")
}
