//! The manifest's schemas accept and refuse what the issue says, checked by the host as it
//! checks them in production (the loader's meta-schema and compilation checks, its formats).

use devext_plugin_api::{OpKind, OpScope, Value, json};
use devext_plugin_test::Harness;

use crate::support::*;

/// Checks one kind of document against the host's compiled schema.
struct Check(Box<dyn Fn(&Value) -> bool>);

impl Check {
    fn is_valid(&self, v: &Value) -> bool {
        (self.0)(v)
    }
}

fn org_check() -> Check {
    let h = Harness::new("jasper");
    Check(Box::new(move |v| h.check_org(v).is_empty()))
}

fn device_check() -> Check {
    let h = Harness::new("jasper");
    Check(Box::new(move |v| h.check_device(v.clone()).is_empty()))
}

fn input_check(op: &'static str) -> Check {
    let h = Harness::new("jasper");
    Check(Box::new(move |v| h.check_input(op, v).is_empty()))
}

#[test]
fn the_host_loads_every_schema_without_a_hint_warning() {
    // The loader refuses a manifest whose schemas are not valid draft 2020-12 or do not compile.
    let h = Harness::new("jasper");
    assert_eq!(h.hint_warnings(), Vec::<String>::new());
    let m = h.manifest();
    for op in &m.operations {
        assert!(op.input_schema.get("title").is_some(), "{}", op.name);
        assert!(op.output_schema.get("title").is_some(), "{}", op.name);
    }
    assert_eq!(m.name, "jasper");
    assert_eq!(m.endpoint_field.as_deref(), Some("endpoint"));
}

#[test]
fn operations_are_the_five_of_the_issue_the_org_views_and_the_usage_history() {
    let m = manifest();
    let ops: Vec<(&str, OpKind, OpScope, bool, Option<u64>)> = m
        .operations
        .iter()
        .map(|o| {
            (
                o.name.as_str(),
                o.kind,
                o.scope,
                o.destructive,
                o.fresh_for_secs,
            )
        })
        .collect();
    use OpScope::{Device, Org};
    assert_eq!(
        ops,
        [
            ("overview", OpKind::View, Device, false, Some(60)),
            ("set_status", OpKind::Action, Device, true, None),
            ("usage", OpKind::View, Device, false, None),
            ("send_sms", OpKind::Action, Device, false, None),
            ("set_rate_plan", OpKind::Action, Device, false, None),
            ("rate_plans", OpKind::View, Org, false, None),
            ("usage_history", OpKind::View, Device, false, Some(60)),
            ("test_connection", OpKind::View, Org, false, None),
        ]
    );
}

#[test]
fn org_config_may_list_rate_plans() {
    let schema = manifest().org_config_schema;
    let v = org_check();
    let with = |plans: Value| {
        let mut org = rest_org("https://restapi3.jasper.com");
        org["rate_plans"] = plans;
        org
    };
    assert!(v.is_valid(&with(json!([]))));
    assert!(v.is_valid(&with(json!(["IoT 10MB", "IoT_Pro_1GB", "x".repeat(100)]))));
    let most: Vec<String> = (0..200).map(|n| format!("plan {n}")).collect();
    assert!(v.is_valid(&with(json!(most))));
    let too_many: Vec<String> = (0..201).map(|n| format!("plan {n}")).collect();
    for (bad, why) in [
        (json!("IoT 10MB"), "not a list"),
        (json!(["IoT 10MB", "IoT 10MB"]), "duplicates"),
        (json!([""]), "empty name"),
        (json!([" IoT 10MB"]), "leading space"),
        (json!(["IoT 10MB "]), "trailing space"),
        (json!(["x".repeat(101)]), "101 characters"),
        (json!([7]), "not a string"),
        (json!(too_many), "201 plans"),
    ] {
        assert!(!v.is_valid(&with(bad)), "{why}");
    }
    let plans = &schema["properties"]["rate_plans"];
    assert!(plans.get("writeOnly").is_none(), "not a secret");
    assert!(
        !schema["required"]
            .as_array()
            .unwrap()
            .contains(&json!("rate_plans"))
    );
}

#[test]
fn org_config_requires_the_secrets_of_its_api() {
    let schema = manifest().org_config_schema;
    let v = org_check();
    assert!(v.is_valid(&soap_org("https://api.jasper.com")));
    assert!(v.is_valid(&rest_org("http://127.0.0.1:8080/")));
    let mut tuned = rest_org("https://restapi3.jasper.com");
    tuned["rate_per_second"] = json!(2);
    tuned["max_in_flight"] = json!(1);
    assert!(v.is_valid(&tuned));
    for (bad, why) in [
        (
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "password": "p"}),
            "no license key",
        ),
        (
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "license_key": "l"}),
            "no password",
        ),
        (
            json!({"api": "soap", "endpoint": "https://h", "username": "u", "api_key": "k"}),
            "soap with an api key only",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "password": "p", "license_key": "l"}),
            "rest without api key",
        ),
        (
            json!({"api": "graphql", "endpoint": "https://h", "username": "u", "api_key": "k"}),
            "unknown api",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h/rws/api/v1", "username": "u", "api_key": "k"}),
            "a path",
        ),
        (
            json!({"api": "rest", "endpoint": "ftp://h", "username": "u", "api_key": "k"}),
            "not http",
        ),
        (
            json!({"api": "rest", "endpoint": "https://u:p@h", "username": "u", "api_key": "k"}),
            "userinfo",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h", "api_key": "k"}),
            "no username",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "extra": 1}),
            "extra property",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "rate_per_second": 0}),
            "rate 0",
        ),
        (
            json!({"api": "rest", "endpoint": "https://h", "username": "u", "api_key": "k", "max_in_flight": 0}),
            "in flight 0",
        ),
    ] {
        assert!(!v.is_valid(&bad), "{why}");
    }
    for secret in ["password", "license_key", "api_key"] {
        assert_eq!(schema["properties"][secret]["writeOnly"], true, "{secret}");
    }
    assert_eq!(schema["properties"]["rate_per_second"]["default"], 5);
    assert_eq!(schema["properties"]["max_in_flight"]["default"], 1);
    assert_eq!(schema["properties"]["endpoint"]["format"], "uri");
}

#[test]
fn device_config_and_the_luhn_warning() {
    let m = manifest();
    let v = device_check();
    // 19 digits, check digit wrong (as Jasper often stores them), and 20 digits.
    assert!(v.is_valid(&json!({"iccid": "8988216716970004975"})));
    assert!(v.is_valid(&json!({"iccid": "89882167169700049759"})));
    for bad in [
        json!({"iccid": "898821671697000497"}),
        json!({"iccid": "898821671697000497512"}),
        json!({"iccid": "8988216716970004975x"}),
        json!({"iccid": "8988216716970004975", "msisdn": "1"}),
        json!({}),
    ] {
        assert!(!v.is_valid(&bad), "{bad}");
    }
    let [warning] = m.warnings.as_slice() else {
        panic!("one warning")
    };
    assert_eq!(warning.code, "iccid_check_digit");
    assert_eq!(
        warning.schema,
        json!({"properties": {"iccid": {"format": "luhn"}}})
    );
    // The host evaluates the warning with its own `luhn` format, as `devext validate` does.
    let h = Harness::new("jasper");
    assert_eq!(
        h.device_warnings(json!({"iccid": "8988216716970004975"})),
        ["iccid_check_digit"],
        "fails Luhn: warned"
    );
    assert_eq!(
        h.device_warnings(json!({"iccid": "89882167169700049759"})),
        Vec::<String>::new(),
        "passes Luhn"
    );
}

#[test]
fn inputs_are_checked_by_their_schemas() {
    let m = manifest();
    let input = input_check;
    let s = input("set_status");
    for id in [
        "inventory",
        "activation_ready",
        "activated",
        "deactivated",
        "retired",
    ] {
        assert!(s.is_valid(&json!({"status": id})), "{id}");
    }
    assert!(s.is_valid(&json!({"status": "activated", "effective_date": "2030-01-31"})));
    for bad in [
        json!({"status": "purged"}),
        json!({"status": "ACTIVATED"}),
        json!({}),
        json!({"status": "activated", "effective_date": "2030-02-30"}),
        json!({"status": "activated", "effective_date": "2030-01-31T00:00:00Z"}),
        json!({"status": "activated", "x": 1}),
    ] {
        assert!(!s.is_valid(&bad), "{bad}");
    }
    let titles: Vec<&str> = m.operation("set_status").unwrap().input_schema["properties"]["status"]
        ["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Inventory",
            "Activation Ready",
            "Activated",
            "Deactivated",
            "Retired"
        ]
    );

    let u = input("usage");
    assert!(u.is_valid(&json!({"cycle_start_date": "2024-02-29"})));
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "yesterday",
        "2024-01-01Z",
    ] {
        assert!(!u.is_valid(&json!({"cycle_start_date": bad})), "{bad}");
    }
    let sms = input("send_sms");
    assert!(sms.is_valid(&json!({"message": "x".repeat(320)})));
    assert!(!sms.is_valid(&json!({"message": "x".repeat(321)})));
    assert!(!sms.is_valid(&json!({"message": ""})));
    let plan = input("set_rate_plan");
    assert!(plan.is_valid(&json!({"rate_plan": "IoT 10MB"})));
    assert!(!plan.is_valid(&json!({"rate_plan": ""})));
    assert!(input("overview").is_valid(&json!({})));
    assert!(input("rate_plans").is_valid(&json!({})));
    assert!(!input("rate_plans").is_valid(&json!({"x": 1})));
}
