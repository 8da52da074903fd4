//! Devices found by a plugin's lookup field (`meter.serial`, see `meter.rs`): one device per
//! value in an org, the `ext.<plugin>.<field>` filter, and the index of devices written before
//! it existed.

use axum::http::StatusCode;
use devext_service::store::{LookupEntry, Role, Store};
use serde_json::{Value, json};

use crate::api_env::{Env, error_message, names_of};

fn meter(serial: &str) -> Value {
    json!({"meter": {"serial": serial}})
}

async fn create(env: &Env, key: &str, name: &str, serial: &str) -> (StatusCode, Value) {
    env.post(
        "/api/v1/devices",
        key,
        json!({"name": name, "extensions": meter(serial)}),
    )
    .await
}

/// Replaces the device at `path` with one named `name` whose meter has `serial`.
async fn replace(env: &Env, path: &str, name: &str, serial: &str) -> (StatusCode, Value) {
    env.put(
        path,
        &env.admin,
        json!({"name": name, "extensions": meter(serial)}),
    )
    .await
}

/// The names of the devices of a listing.
fn names(list: &Value) -> Vec<&str> {
    names_of(&list["items"])
}

#[tokio::test]
async fn devices_are_found_by_a_plugins_lookup_field() {
    let env = Env::new().await;
    for (name, serial) in [("one", "SN-1"), ("two", "SN-2")] {
        let (s, d) = create(&env, &env.admin, name, serial).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
    }
    let (s, found) = env
        .get("/api/v1/devices?ext.meter.serial=SN-2", &env.admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(names(&found), vec!["two"]);
    let (_, found) = env
        .get("/api/v1/devices?ext.meter.serial=SN-3", &env.admin)
        .await;
    assert_eq!(names(&found), Vec::<&str>::new());
    // With the other filters.
    let (_, found) = env
        .get("/api/v1/devices?name=one&ext.meter.serial=SN-2", &env.admin)
        .await;
    assert_eq!(names(&found), Vec::<&str>::new());
    // Another org has its own values.
    let other = env.key("globex", Role::Admin).await;
    let (s, _) = create(&env, &other, "theirs", "SN-2").await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, found) = env
        .get("/api/v1/devices?ext.meter.serial=SN-2", &other)
        .await;
    assert_eq!(names(&found), vec!["theirs"]);
}

#[tokio::test]
async fn a_taken_lookup_value_is_409_naming_the_field_and_nothing_is_written() {
    let env = Env::new().await;
    let (_, one) = create(&env, &env.admin, "one", "SN-1").await;
    let (s, body) = create(&env, &env.admin, "copy", "SN-1").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "conflict");
    assert_eq!(
        body["error"]["details"]["pointer"],
        "/extensions/meter/serial"
    );
    assert_eq!(body["error"]["details"]["device"], one["id"]);
    assert!(
        error_message(&body).starts_with("/extensions/meter/serial: "),
        "{body}"
    );
    let (_, all) = env.get("/api/v1/devices", &env.admin).await;
    assert_eq!(names(&all), vec!["one"], "nothing written");

    let (_, two) = create(&env, &env.admin, "two", "SN-2").await;
    let path = format!("/api/v1/devices/{}", two["id"].as_str().unwrap());
    let (s, body) = replace(&env, &path, "two", "SN-1").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["details"]["pointer"],
        "/extensions/meter/serial"
    );
    let (_, now) = env.get(&path, &env.admin).await;
    assert_eq!(now, two, "unchanged");
    // A device may keep its own value, and give it up.
    let (s, _) = replace(&env, &path, "two!", "SN-2").await;
    assert_eq!(s, StatusCode::OK);
    let one_path = format!("/api/v1/devices/{}", one["id"].as_str().unwrap());
    let (s, _) = env
        .put(
            &one_path,
            &env.admin,
            json!({"name": "one", "extensions": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = create(&env, &env.admin, "new one", "SN-1").await;
    assert_eq!(s, StatusCode::CREATED, "the value is free again");
}

#[tokio::test]
async fn unknown_filters_are_400_naming_the_parameter_and_the_known_ones() {
    let env = Env::new().await;
    for key in [
        "ext.meter.colour",
        "ext.echo.id",
        "ext.nope.serial",
        "ext.serial",
    ] {
        let (s, body) = env
            .get(&format!("/api/v1/devices?{key}=1"), &env.admin)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{key}: {body}");
        let message = error_message(&body);
        assert!(message.contains(&format!("{key:?}")), "{message}");
        assert!(message.contains("ext.meter.serial"), "{message}");
        assert_eq!(
            body["error"]["details"]["known"],
            json!(["ext.meter.serial"])
        );
    }
    for (query, named) in [
        ("colour=red", "\"colour\""),
        ("limit=abc", "\"limit\""),
        ("cursor=-", "\"cursor\""),
        ("name=a&name=b", "\"name\""),
    ] {
        let (s, body) = env
            .get(&format!("/api/v1/devices?{query}"), &env.admin)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = error_message(&body);
        assert!(message.contains(named), "{query}: {message}");
    }
}

#[tokio::test]
async fn the_openapi_document_names_each_lookup_filter() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let list = &doc["paths"]["/api/v1/devices"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, vec!["name", "cursor", "limit", "ext.meter.serial"]);
    assert!(
        list["description"]
            .as_str()
            .unwrap()
            .contains("ext.{plugin}.{field}")
    );
}

#[tokio::test]
async fn devices_written_before_the_index_are_indexed_at_start_up() {
    let env = Env::new().await;
    let org = env.app.store.org_by_name("acme").await.unwrap().unwrap();
    // As an older version wrote them: no index entries.
    for (name, serial) in [("old", "SN-7"), ("older", "SN-7")] {
        env.app
            .store
            .create_device(org.id, name, None, &meter(serial), &[])
            .await
            .unwrap();
    }
    let find = "/api/v1/devices?ext.meter.serial=SN-7";
    assert_eq!(
        names(&env.get(find, &env.admin).await.1),
        Vec::<&str>::new()
    );
    let done = env.app.reindex_lookups().await.unwrap().expect("rebuilt");
    assert_eq!((done.devices, done.entries), (2, 1));
    let taken: Vec<&LookupEntry> = done.taken.iter().map(|(_, e, _)| e).collect();
    assert_eq!(taken.len(), 1, "the second device's value is left out");
    assert_eq!(taken[0].pointer(), "/extensions/meter/serial");
    assert_eq!(names(&env.get(find, &env.admin).await.1), vec!["old"]);
    assert_eq!(env.app.reindex_lookups().await.unwrap(), None, "up to date");
}
