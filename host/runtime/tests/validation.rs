//! Validation of device extension configurations: pointers, keywords and messages.

use devext_host::{Runtime, RuntimeConfig, Violation};
use serde_json::json;

fn runtime() -> Runtime {
    Runtime::load(RuntimeConfig::default()).unwrap()
}

fn one(v: &[Violation]) -> &Violation {
    assert_eq!(v.len(), 1, "{v:?}");
    &v[0]
}

#[test]
fn a_valid_configuration_has_no_violations() {
    let rt = runtime();
    let doc = json!({"echo": {"id": "dev-1"}});
    assert!(rt.validate_device_extensions(&doc).is_empty());
    assert!(rt.is_valid_device_extensions(&doc));
    assert!(rt.validate_device_extensions(&json!({})).is_empty());
}

#[test]
fn errors_carry_pointer_keyword_and_message() {
    let rt = runtime();
    let cases = [
        (
            json!({"echo": {}}),
            "/echo",
            "required",
            "\"id\" is a required property",
        ),
        (
            json!({"echo": {"id": 7}}),
            "/echo/id",
            "type",
            "7 is not of type \"string\"",
        ),
        (
            json!({"echo": {"id": "a b"}}),
            "/echo/id",
            "pattern",
            "\"a b\" does not match",
        ),
        (
            json!({"echo": {"id": "a".repeat(65)}}),
            "/echo/id",
            "maxLength",
            "is longer than 64 characters",
        ),
        (
            json!({"echo": {"id": "a", "colour": "red"}}),
            "/echo",
            "additionalProperties",
            "'colour' was unexpected",
        ),
        (
            json!({"jaspr": {"iccid": "1"}}),
            "/jaspr",
            "additionalProperties",
            "unknown extension \"jaspr\": loaded plugins are echo",
        ),
        (json!([1]), "", "type", "is not of type \"object\""),
    ];
    for (doc, pointer, keyword, message) in cases {
        let v = rt.validate_device_extensions(&doc);
        let v = one(&v);
        assert_eq!(v.pointer, pointer, "{doc}");
        assert_eq!(v.keyword, keyword, "{doc}");
        assert!(
            v.message.contains(message),
            "{doc}: {:?} lacks {message:?}",
            v.message
        );
        assert!(!rt.is_valid_device_extensions(&doc));
    }
}

#[test]
fn pointer_tokens_are_escaped() {
    let rt = runtime();
    let v = rt.validate_device_extensions(&json!({"a/b~c": {}}));
    assert_eq!(one(&v).pointer, "/a~1b~0c");
}

#[test]
fn the_combined_schema_validates_like_the_host() {
    let rt = runtime();
    let schema = rt.combined_device_schema();
    assert_eq!(schema["$id"], "urn:devext:device-extensions");
    assert_eq!(
        schema["properties"]["echo"]["$id"],
        "urn:devext:plugin:echo:device-config"
    );
    let validator = jsonschema::validator_for(&schema).expect("the combined schema compiles");
    for doc in [
        json!({"echo": {"id": "x"}}),
        json!({"echo": {}}),
        json!({"other": {}}),
    ] {
        assert_eq!(
            validator.is_valid(&doc),
            rt.is_valid_device_extensions(&doc),
            "{doc}"
        );
    }
    // Deterministic output.
    assert_eq!(schema, rt.combined_device_schema());
}

#[test]
fn org_settings_are_checked_against_the_plugin_schema() {
    let rt = runtime();
    assert!(
        rt.validate_org_config("echo", &json!({"greeting": "hi"}))
            .is_ok()
    );
    let v = rt
        .validate_org_config("echo", &json!({"greeting": "x".repeat(101)}))
        .unwrap_err();
    assert_eq!(one(&v).keyword, "maxLength");
    let v = rt.validate_org_config("nope", &json!({})).unwrap_err();
    assert!(one(&v).message.contains("no plugin named \"nope\""));
}
