//! Device import and export (`POST /api/v1/devices/import`, `GET /api/v1/devices/export`):
//! all or nothing, partial, re-runs, CSV and JSON Lines, matching by name, id and lookup field,
//! round trips, roles and the audit. Devices use the `meter` test plugin (lookup field
//! `serial`, a required string of 1 to 64 characters).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use devext_service::store::Role;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_env::Env;

/// An answer: status, content type, body text (and the body as JSON when it is).
struct Raw {
    status: StatusCode,
    content_type: String,
    text: String,
    json: Value,
}

async fn send(
    env: &Env,
    method: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Raw {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let response = env
        .router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Raw {
        status,
        content_type,
        text,
        json,
    }
}

async fn import(env: &Env, key: &str, query: &str, media: &str, body: &str) -> Raw {
    let path = format!("/api/v1/devices/import{query}");
    send(
        env,
        "POST",
        &path,
        key,
        &[("content-type", media)],
        body.into(),
    )
    .await
}

async fn jsonl(env: &Env, query: &str, body: &str) -> Raw {
    import(env, &env.admin, query, "application/x-ndjson", body).await
}

async fn export(env: &Env, key: &str, query: &str, accept: &str) -> Raw {
    let path = format!("/api/v1/devices/export{query}");
    let raw = send(env, "GET", &path, key, &[("accept", accept)], String::new()).await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    raw
}

/// The org's devices (all pages of 500 are more than these tests make).
async fn devices(env: &Env, key: &str) -> Vec<Value> {
    let (s, list) = env.get("/api/v1/devices?limit=500", key).await;
    assert_eq!(s, StatusCode::OK);
    list["items"].as_array().unwrap().clone()
}

fn names(devices: &[Value]) -> Vec<&str> {
    devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect()
}

fn line(name: &str, serial: &str) -> String {
    json!({"name": name, "type": "pump", "extensions": {"meter": {"serial": serial}}}).to_string()
}

/// Five records; the third has an empty serial (a `minLength` violation).
fn file_with_a_bad_third_line() -> String {
    [
        line("p1", "SN-1"),
        line("p2", "SN-2"),
        r#"{"name": "p3", "extensions": {"meter": {"serial": ""}}}"#.to_owned(),
        line("p4", "SN-4"),
        line("p5", "SN-5"),
    ]
    .join("\n")
}

#[tokio::test]
async fn all_or_nothing_writes_nothing_when_a_line_is_bad() {
    let env = Env::new().await;
    let r = jsonl(&env, "", &file_with_a_bad_third_line()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], "invalid_input");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    let report = &r.json["error"]["details"];
    assert_eq!(report["committed"], false);
    assert_eq!(report["records"], 5);
    assert_eq!(report["failed"], 1);
    let problem = &report["problems"][0];
    assert_eq!(problem["line"], 3);
    assert_eq!(problem["pointer"], "/extensions/meter/serial");
    assert_eq!(problem["keyword"], "minLength");
    // The column of the value in the line, as `devext validate` reports it.
    let col = r#"{"name": "p3", "extensions": {"meter": {"serial": "#.len() + 1;
    assert_eq!(problem["column"], col);
    assert_eq!(report["problems"].as_array().unwrap().len(), 1);
    assert!(devices(&env, &env.admin).await.is_empty());
}

#[tokio::test]
async fn partial_writes_every_other_line_and_reports_the_bad_one() {
    let env = Env::new().await;
    let r = jsonl(&env, "?partial=true", &file_with_a_bad_third_line()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["committed"], true);
    assert_eq!(
        (&r.json["created"], &r.json["failed"], &r.json["records"]),
        (&json!(4), &json!(1), &json!(5))
    );
    assert_eq!(r.json["problems"][0]["line"], 3);
    assert_eq!(r.json["problems"][0]["pointer"], "/extensions/meter/serial");
    let list = devices(&env, &env.admin).await;
    assert_eq!(names(&list), vec!["p1", "p2", "p4", "p5"]);
    assert_eq!(list[3]["extensions"], json!({"meter": {"serial": "SN-5"}}));
    assert_eq!(list[3]["type"], "pump");
    // Found by their lookup field.
    let (_, found) = env
        .get("/api/v1/devices?ext.meter.serial=SN-4", &env.admin)
        .await;
    assert_eq!(names(found["items"].as_array().unwrap()), vec!["p4"]);
}

#[tokio::test]
async fn every_kind_of_bad_line_is_reported_with_its_line() {
    let env = Env::new().await;
    let file = [
        line("ok", "SN-1"),                                        // 1
        "not json".to_owned(),                                     // 2
        r#"{"name": "x", "colour": "red"}"#.to_owned(),            // 3: unknown field
        r#"{"type": "no name"}"#.to_owned(),                       // 4: no name
        String::new(),                                             // 5: blank, skipped
        r#"{"name": "", "extensions": {}}"#.to_owned(),            // 6: empty name
        r#"{"name": "u", "extensions": {"nope": {}}}"#.to_owned(), // 7: no such plugin
        line("dup serial", "SN-1"),                                // 8: SN-1 is line 1's
    ]
    .join("\n");
    let r = jsonl(&env, "?partial=true", &file).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let lines: Vec<u64> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 6, 7, 8], "{}", r.text);
    assert_eq!(r.json["records"], 7);
    assert_eq!(r.json["created"], 1);
    let p = &r.json["problems"];
    assert!(p[0]["message"].as_str().unwrap().starts_with("not JSON"));
    assert!(p[1]["message"].as_str().unwrap().contains("colour"));
    assert_eq!(p[3]["pointer"], "/name");
    assert_eq!(p[4]["pointer"], "/extensions/nope");
    assert_eq!(p[5]["pointer"], "/extensions/meter/serial");
    assert!(
        p[5]["message"]
            .as_str()
            .unwrap()
            .contains("has this value already"),
        "{}",
        p[5]
    );
    assert_eq!(names(&devices(&env, &env.admin).await), vec!["ok"]);
}

#[tokio::test]
async fn a_rerun_of_the_same_file_changes_nothing() {
    let env = Env::new().await;
    let file = (1..=30)
        .map(|i| line(&format!("p{i}"), &format!("SN-{i}")))
        .collect::<Vec<_>>()
        .join("\n");
    let first = jsonl(&env, "", &file).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["created"], 30);
    let before = devices(&env, &env.admin).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = jsonl(&env, "", &file).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        (
            &again.json["created"],
            &again.json["updated"],
            &again.json["unchanged"]
        ),
        (&json!(0), &json!(0), &json!(30))
    );
    // Not a write: the same devices, the same `updated_at`.
    assert_eq!(devices(&env, &env.admin).await, before);
    // One line changed: one update, the rest untouched.
    let changed = file.replace(&line("p7", "SN-7"), &line("p7", "SN-70"));
    let third = jsonl(&env, "", &changed).await;
    assert_eq!(
        (&third.json["updated"], &third.json["unchanged"]),
        (&json!(1), &json!(29))
    );
    let after = devices(&env, &env.admin).await;
    assert_eq!(after.len(), 30);
    assert_eq!(after[6]["extensions"]["meter"]["serial"], "SN-70");
    assert_ne!(after[6]["updated_at"], before[6]["updated_at"]);
    assert_eq!(after[5], before[5]);
    // The audit: one entry per import, with its counts.
    let (_, audit) = env.get("/api/v1/audit", &env.admin).await;
    let imports: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == "import")
        .collect();
    assert_eq!(imports.len(), 3);
    assert_eq!(
        imports[0]["detail"],
        "match name: 30 records, 0 created, 1 updated, 29 unchanged, 0 failed"
    );
}

#[tokio::test]
async fn matched_by_a_lookup_field_devices_are_renamed_not_duplicated() {
    let env = Env::new().await;
    let file = [line("a", "SN-1"), line("b", "SN-2")].join("\n");
    assert_eq!(jsonl(&env, "", &file).await.json["created"], 2);
    let renamed = [line("a2", "SN-1"), line("b2", "SN-2"), line("c", "SN-3")].join("\n");
    let r = jsonl(&env, "?match=ext.meter.serial", &renamed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.json["created"], &r.json["updated"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(
        names(&devices(&env, &env.admin).await),
        vec!["a2", "b2", "c"]
    );
    // A record without the field cannot be matched by it.
    let r = jsonl(&env, "?match=ext.meter.serial", r#"{"name": "z"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.json["error"]["details"]["problems"][0]["pointer"],
        "/extensions/meter/serial"
    );
    // Unknown ways to match are a 400 naming the known ones.
    let r = jsonl(&env, "?match=ext.meter.note", &line("a", "SN-1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.json["error"]["details"]["known"],
        json!(["name", "id", "ext.meter.serial"])
    );
}

#[tokio::test]
async fn a_lookup_value_a_record_gives_up_is_free_for_the_records_after_it() {
    let env = Env::new().await;
    assert_eq!(jsonl(&env, "", &line("a", "SN-5")).await.json["created"], 1);
    // Line 1 moves `a` from SN-5 to SN-1; line 2 may then take SN-5 (in the same batch).
    let file = [line("a", "SN-1"), line("c", "SN-5")].join("\n");
    let r = jsonl(&env, "", &file).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.json["updated"], &r.json["created"]),
        (&json!(1), &json!(1))
    );
    // In the other order, SN-5 is still a's when line 1 asks for it.
    let file = [line("d", "SN-1"), line("a", "SN-2")].join("\n");
    let r = jsonl(&env, "?partial=true", &file).await;
    assert_eq!(
        (&r.json["failed"], &r.json["updated"]),
        (&json!(1), &json!(1)),
        "{}",
        r.text
    );
    assert_eq!(r.json["problems"][0]["line"], 1);
    let (_, found) = env
        .get("/api/v1/devices?ext.meter.serial=SN-5", &env.admin)
        .await;
    assert_eq!(names(found["items"].as_array().unwrap()), vec!["c"]);
}

#[tokio::test]
async fn matched_by_name_a_file_naming_a_device_twice_updates_it_and_ambiguous_names_fail() {
    let env = Env::new().await;
    // In one file: the second line updates the device the first created.
    let file = [line("same", "SN-1"), line("same", "SN-2")].join("\n");
    let r = jsonl(&env, "", &file).await;
    assert_eq!(
        (&r.json["created"], &r.json["updated"]),
        (&json!(1), &json!(1)),
        "{}",
        r.text
    );
    let list = devices(&env, &env.admin).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["extensions"]["meter"]["serial"], "SN-2");
    // Two devices with one name (made through the API): matching by it is refused.
    for _ in 0..2 {
        let (s, _) = env
            .post("/api/v1/devices", &env.admin, json!({"name": "twin"}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let r = jsonl(&env, "", r#"{"name": "twin"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let problem = &r.json["error"]["details"]["problems"][0];
    assert_eq!(problem["pointer"], "/name");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("several devices")
    );
}

#[tokio::test]
async fn csv_cells_are_typed_and_problems_name_their_column() {
    let env = Env::new().await;
    let long = "9".repeat(65);
    let csv = format!(
        "name,type,meter.serial,meter.note\n\
         one,pump,00123,\"a note, with a comma\nand a newline\"\n\
         two,,{long},\n\
         three,valve,SN-3,\n"
    );
    let r = import(&env, &env.admin, "?partial=true", "text/csv", &csv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.json["created"], &r.json["failed"]),
        (&json!(2), &json!(1))
    );
    let problem = &r.json["problems"][0];
    // Line 4: the first record spans lines 2 and 3.
    assert_eq!(problem["line"], 4, "{problem}");
    assert_eq!(problem["field"], "meter.serial");
    assert_eq!(problem["pointer"], "/extensions/meter/serial");
    assert_eq!(problem["keyword"], "maxLength");
    let list = devices(&env, &env.admin).await;
    assert_eq!(names(&list), vec!["one", "three"]);
    // A string property keeps the cell as text (leading zeros and all); empty cells set nothing.
    assert_eq!(
        list[0]["extensions"],
        json!({"meter": {"serial": "00123", "note": "a note, with a comma\nand a newline"}})
    );
    assert_eq!(list[1]["extensions"], json!({"meter": {"serial": "SN-3"}}));
    assert_eq!(list[1]["type"], "valve");
    // A header naming an unknown column refuses the file, naming the column.
    let r = import(&env, &env.admin, "", "text/csv", "name,colour\nx,red\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"colour\""),
        "{}",
        r.text
    );
    // A re-run changes nothing.
    let r = import(&env, &env.admin, "?partial=true", "text/csv", &csv).await;
    assert_eq!(r.json["unchanged"], 2, "{}", r.text);
}

#[tokio::test]
async fn an_export_imports_back_as_json_lines_and_as_csv() {
    let env = Env::new().await;
    let file = [
        line("p1", "SN-1"),
        json!({"name": "bare"}).to_string(),
        json!({"name": "noted, \"quoted\"", "extensions": {"meter": {"serial": "007", "note": "n\nl"}}})
            .to_string(),
    ]
    .join("\n");
    assert_eq!(jsonl(&env, "", &file).await.json["created"], 3);

    let exported = export(&env, &env.admin, "", "application/x-ndjson").await;
    assert!(exported.content_type.starts_with("application/x-ndjson"));
    let records: Vec<Value> = exported
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[1],
        json!({"id": records[1]["id"], "name": "bare", "type": null, "extensions": {}})
    );
    // Into the same org by id: nothing changes.
    let r = jsonl(&env, "?match=id", &exported.text).await;
    assert_eq!(r.json["unchanged"], 3, "{}", r.text);

    // Into other orgs, as JSON Lines and as CSV: the same devices.
    let strip = |list: Vec<Value>| -> Vec<Value> {
        list.into_iter()
            .map(|d| json!([d["name"], d["type"], d["extensions"]]))
            .collect()
    };
    let original = strip(devices(&env, &env.admin).await);
    let beta = env.key("beta", Role::Admin).await;
    let r = import(&env, &beta, "", "application/x-ndjson", &exported.text).await;
    assert_eq!(r.json["created"], 3, "{}", r.text);
    assert_eq!(strip(devices(&env, &beta).await), original);

    let csv = export(&env, &env.admin, "", "text/csv").await;
    assert!(csv.content_type.starts_with("text/csv"));
    let header = csv.text.lines().next().unwrap();
    // A column per top-level property of each loaded plugin's device schema, by plugin.
    assert_eq!(
        header,
        "id,name,type,bulk.tag,echo.id,meter.note,meter.serial"
    );
    let gamma = env.key("gamma", Role::Admin).await;
    let r = import(&env, &gamma, "", "text/csv", &csv.text).await;
    assert_eq!(r.json["created"], 3, "{}", r.text);
    assert_eq!(strip(devices(&env, &gamma).await), original);

    // The list's filters select what is exported.
    let one = export(
        &env,
        &env.admin,
        "?ext.meter.serial=007",
        "application/x-ndjson",
    )
    .await;
    assert_eq!(one.text.lines().count(), 1);
    assert!(one.text.contains("noted"));
    let named = export(&env, &env.admin, "?name=P1", "text/csv").await;
    assert_eq!(named.text.lines().count(), 2, "{}", named.text);
    let bad = send(
        &env,
        "GET",
        "/api/v1/devices/export?limit=3",
        &env.admin,
        &[],
        String::new(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_export_spans_pages() {
    let env = Env::new().await;
    let file = (0..1234)
        .map(|i| line(&format!("d{i:04}"), &format!("S{i}")))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(jsonl(&env, "", &file).await.json["created"], 1234);
    let out = export(&env, &env.admin, "", "application/x-ndjson").await;
    let names: Vec<String> = out
        .text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..1234).map(|i| format!("d{i:04}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn importing_needs_admin_and_exporting_viewer() {
    let env = Env::new().await;
    let viewer = env.key("acme", Role::Viewer).await;
    let operator = env.key("acme", Role::Operator).await;
    for key in [&viewer, &operator] {
        let r = import(&env, key, "", "application/x-ndjson", &line("x", "SN-1")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert!(devices(&env, &env.admin).await.is_empty());
    assert_eq!(
        jsonl(&env, "", &line("x", "SN-1")).await.status,
        StatusCode::OK
    );
    let out = export(&env, &viewer, "", "application/x-ndjson").await;
    assert_eq!(out.text.lines().count(), 1);
    // Another org's export has none of these.
    let other = env.key("other", Role::Viewer).await;
    assert_eq!(
        export(&env, &other, "", "text/csv")
            .await
            .text
            .lines()
            .count(),
        1
    );
    // `org` guards against a key of another organisation.
    let r = import(
        &env,
        &env.admin,
        "?org=other",
        "application/x-ndjson",
        &line("y", "SN-2"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = import(
        &env,
        &env.admin,
        "?org=acme",
        "application/x-ndjson",
        &line("y", "SN-2"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(
        &env,
        "GET",
        "/api/v1/devices/export?org=other",
        &viewer,
        &[],
        String::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // JSON is neither format: 415.
    let r = import(&env, &env.admin, "", "application/json", &line("x", "SN-1")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
}
