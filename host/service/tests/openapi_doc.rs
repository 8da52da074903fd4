//! The OpenAPI document against the service: bodies typed by the loaded plugins' schemas, and
//! sample requests whose answers (status, body, headers) are what the document says, and whose
//! bodies the document allows exactly when the service takes them.

use axum::http::StatusCode;
use devext_host::schema::Schema;
use devext_service::store::Role;
use devext_service::testing::Reply;
use serde_json::{Value, json};

use crate::api_env::{Env, unique_echo_id};

/// `schema` with every `$ref` into `#/components/schemas/` replaced by the component.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("a $ref outside the components: {r}"));
                let target = &doc["components"]["schemas"][name];
                assert!(target.is_object(), "no component {name}");
                return resolve(doc, target);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve(doc, v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(doc, v)).collect()),
        other => other.clone(),
    }
}

/// Whether `instance` is valid against `schema` of the document.
fn allows(doc: &Value, schema: &Value, instance: &Value) -> bool {
    Schema::compile(&resolve(doc, schema))
        .expect("the document's schemas compile")
        .is_valid(instance)
}

/// The operation `method path` of the document.
fn op<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "the document has no {method} {path}");
    op
}

/// The request body schema of `method path`.
fn body_schema<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &op(doc, method, path)["requestBody"]["content"]["application/json"]["schema"]
}

/// Checks that `reply` to `method path` (the document's path) is one the document describes:
/// its status is listed, its body valid against that status's schema, and the answer's
/// documented headers present.
fn conforms(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let op = op(doc, method, path);
    let status = reply.status.as_u16().to_string();
    let answer = &op["responses"][status.as_str()];
    assert!(
        answer.is_object(),
        "{method} {path} answered {status}, which the document does not list: {}",
        reply.body
    );
    if let Some(schema) = answer["content"]["application/json"]["schema"].as_object() {
        let schema = Value::Object(schema.clone());
        assert!(
            allows(doc, &schema, &reply.body),
            "{method} {path} {status}: the body breaks the document: {}\nschema: {}",
            reply.body,
            resolve(doc, &schema)
        );
    }
    if let Some(headers) = answer["headers"].as_object() {
        for name in headers.keys() {
            if name == "Idempotent-Replay" {
                continue; // only on replays
            }
            assert!(
                reply.headers.contains_key(name.as_str()),
                "{method} {path} {status}: no {name} header"
            );
        }
    }
}

#[tokio::test]
async fn the_document_types_bodies_by_the_loaded_plugins_schemas() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let echo = env.app.runtime.plugin("echo").unwrap().manifest().clone();
    let without_meta = |schema: &Value| {
        let mut s = schema.clone();
        s.as_object_mut().unwrap().remove("$schema");
        s.as_object_mut().unwrap().remove("$id");
        s
    };
    // One path per plugin and operation, with its input and output schemas and its role.
    for o in &echo.operations {
        let path = match o.scope {
            devext_plugin_api::OpScope::Device => {
                format!("/api/v1/devices/{{id}}/extensions/echo/{}", o.name)
            }
            _ => format!("/api/v1/extensions/echo/{}", o.name),
        };
        let run = op(&doc, "POST", &path);
        assert_eq!(
            run["requestBody"]["content"]["application/json"]["schema"],
            without_meta(&o.input_schema),
            "{path}"
        );
        assert_eq!(
            run["responses"]["200"]["content"]["application/json"]["schema"],
            without_meta(&o.output_schema),
            "{path}"
        );
        let action = o.kind == devext_plugin_api::OpKind::Action;
        let role = if action { "operator" } else { "viewer" };
        assert_eq!(run["x-devext-role"], role, "{path}");
        let headers: Vec<&str> = run["parameters"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers.contains(&"Idempotency-Key"),
            action,
            "{path}: {headers:?}"
        );
        for status in ["401", "404", "409", "422", "429", "500", "502", "504"] {
            assert!(run["responses"][status].is_object(), "{path} {status}");
        }
    }
    // The device's extensions: the combined schema of the loaded plugins.
    let extensions = &doc["components"]["schemas"]["DeviceExtensions"];
    assert_eq!(
        extensions["properties"]["echo"],
        without_meta(&echo.device_config_schema)
    );
    assert_eq!(extensions["additionalProperties"], false);
    // Settings: the org schema in, the same without secrets out.
    let put = body_schema(&doc, "PUT", "/api/v1/extensions/echo");
    let config = &resolve(&doc, put)["properties"]["config"];
    assert_eq!(
        config["properties"], echo.org_config_schema["properties"],
        "{config}"
    );
    assert_eq!(config["properties"]["token"]["writeOnly"], true);
    let get = &op(&doc, "GET", "/api/v1/extensions/echo")["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let shown = resolve(&doc, get);
    assert!(shown["properties"]["config"]["properties"]["greeting"].is_object());
    assert!(
        shown["properties"]["config"]["properties"]
            .get("token")
            .is_none(),
        "a secret is never answered: {shown}"
    );
    assert_eq!(
        shown["properties"]["secrets_set"]["items"]["enum"],
        json!(["token"])
    );
    // Headers that matter.
    let put_device = op(&doc, "PUT", "/api/v1/devices/{id}");
    assert!(put_device["responses"]["412"].is_object());
    assert!(
        put_device["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header")
    );
    let created = &op(&doc, "POST", "/api/v1/devices")["responses"]["201"]["headers"];
    assert!(created["Location"].is_object() && created["ETag"].is_object());
}

#[tokio::test]
async fn sample_answers_are_what_the_document_says() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let viewer = env.key("acme", Role::Viewer).await;
    let admin = env.admin.as_str();
    let send = |method: &'static str, path: String, key: Option<String>, body: Option<Value>| {
        let client = env.client.clone();
        async move { client.send(method, &path, key.as_deref(), body, &[]).await }
    };
    let key = Some(admin.to_owned());

    let r = env
        .client
        .send(
            "PUT",
            "/api/v1/extensions/echo",
            Some(admin),
            Some(json!({"enabled": true, "config": {"greeting": "hi", "token": "t-1"}})),
            &[],
        )
        .await;
    conforms(&doc, "PUT", "/api/v1/extensions/echo", &r);
    conforms(&doc, "PUT", "/api/v1/extensions/{plugin}", &r);
    let r = send("GET", "/api/v1/extensions/echo".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/extensions/echo", &r);
    let r = send("GET", "/api/v1/extensions".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/extensions", &r);

    let new =
        json!({"name": "pump", "type": null, "extensions": {"echo": {"id": unique_echo_id()}}});
    assert!(allows(
        &doc,
        body_schema(&doc, "POST", "/api/v1/devices"),
        &new
    ));
    let r = send("POST", "/api/v1/devices".into(), key.clone(), Some(new)).await;
    conforms(&doc, "POST", "/api/v1/devices", &r);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/api/v1/devices/{id}"));
    let r = send(
        "GET",
        r.headers["location"].to_str().unwrap().to_owned(),
        key.clone(),
        None,
    )
    .await;
    conforms(&doc, "GET", "/api/v1/devices/{id}", &r);
    let r = send("GET", "/api/v1/devices?limit=1".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/devices", &r);
    let r = send(
        "GET",
        format!("/api/v1/devices/{id}/extensions?include=views"),
        key.clone(),
        None,
    )
    .await;
    conforms(&doc, "GET", "/api/v1/devices/{id}/extensions", &r);

    // Each operation of echo, on the device or the org, with an input its schema allows.
    let m = env.app.runtime.plugin("echo").unwrap().manifest().clone();
    for o in &m.operations {
        let (path, doc_path) = match o.scope {
            devext_plugin_api::OpScope::Device => (
                format!("/api/v1/devices/{id}/extensions/echo/{}", o.name),
                format!("/api/v1/devices/{{id}}/extensions/echo/{}", o.name),
            ),
            _ => (
                format!("/api/v1/extensions/echo/{}", o.name),
                format!("/api/v1/extensions/echo/{}", o.name),
            ),
        };
        let input = if o.name == "echo" {
            json!({"message": "m"})
        } else {
            json!({})
        };
        assert!(
            allows(&doc, body_schema(&doc, "POST", &doc_path), &input),
            "{doc_path}"
        );
        let r = send("POST", path, key.clone(), Some(input)).await;
        assert_eq!(r.status, StatusCode::OK, "{doc_path}: {}", r.body);
        conforms(&doc, "POST", &doc_path, &r);
        // The body the service refuses, the document refuses too.
        let bad = json!({"unexpected": [1]});
        if !allows(&doc, body_schema(&doc, "POST", &doc_path), &bad) {
            let path = doc_path.replace("{id}", &id);
            let r = send("POST", path, key.clone(), Some(bad)).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{doc_path}: {}",
                r.body
            );
            conforms(&doc, "POST", &doc_path, &r);
        }
    }

    // A stale If-Match is a 412; an empty one, which the document refuses, a 400.
    let put = json!({"name": "pump 2"});
    for (tag, status) in [
        ("\"stale\"", StatusCode::PRECONDITION_FAILED),
        ("", StatusCode::BAD_REQUEST),
    ] {
        let header = op(&doc, "PUT", "/api/v1/devices/{id}")["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "If-Match")
            .unwrap()["schema"]
            .clone();
        assert_eq!(
            allows(&doc, &header, &json!(tag)),
            !tag.is_empty(),
            "{tag:?}"
        );
        let r = env
            .client
            .send(
                "PUT",
                &format!("/api/v1/devices/{id}"),
                Some(admin),
                Some(put.clone()),
                &[("if-match", tag)],
            )
            .await;
        assert_eq!(r.status, status, "If-Match {tag:?}: {}", r.body);
        conforms(&doc, "PUT", "/api/v1/devices/{id}", &r);
    }
    let r = send(
        "PUT",
        format!("/api/v1/devices/{id}"),
        key.clone(),
        Some(put),
    )
    .await;
    conforms(&doc, "PUT", "/api/v1/devices/{id}", &r);

    // Errors: each listed, each with the error body.
    let r = send("GET", "/api/v1/devices/dev_nope".into(), key.clone(), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    conforms(&doc, "GET", "/api/v1/devices/{id}", &r);
    let r = send("GET", "/api/v1/devices".into(), None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    conforms(&doc, "GET", "/api/v1/devices", &r);
    let r = send(
        "POST",
        "/api/v1/devices".into(),
        Some(viewer.clone()),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    conforms(&doc, "POST", "/api/v1/devices", &r);
    let r = send(
        "POST",
        "/api/v1/keys".into(),
        key.clone(),
        Some(json!({"role": "viewer", "name": "k"})),
    )
    .await;
    conforms(&doc, "POST", "/api/v1/keys", &r);
    let r = send("GET", "/api/v1/keys".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/keys", &r);
    let r = send("GET", "/api/v1/audit?limit=2".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/audit", &r);
    let r = send("GET", "/api/v1/plugins".into(), key.clone(), None).await;
    conforms(&doc, "GET", "/api/v1/plugins", &r);
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let r = send("GET", path.into(), None, None).await;
        conforms(&doc, "GET", path, &r);
    }
    let r = send("DELETE", format!("/api/v1/devices/{id}"), key.clone(), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    conforms(&doc, "DELETE", "/api/v1/devices/{id}", &r);
    // An operation on a device that has no configuration for the plugin: 409, as documented.
    let r = send(
        "POST",
        "/api/v1/devices".into(),
        key.clone(),
        Some(json!({"name": "bare"})),
    )
    .await;
    let bare = r.body["id"].as_str().unwrap().to_owned();
    let r = send(
        "POST",
        format!("/api/v1/devices/{bare}/extensions/echo/echo"),
        key.clone(),
        Some(json!({"message": "m"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    conforms(
        &doc,
        "POST",
        "/api/v1/devices/{id}/extensions/echo/echo",
        &r,
    );
}

#[tokio::test]
async fn the_document_allows_a_device_body_exactly_when_the_service_takes_it() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let schema = body_schema(&doc, "POST", "/api/v1/devices").clone();
    let bodies = [
        json!({"name": "a"}),
        json!({"name": "a", "extensions": null}),
        json!({"name": "a", "type": "t", "extensions": {}}),
        json!({"name": "a", "extensions": {"echo": {"id": unique_echo_id()}}}),
        json!({"name": ""}),
        json!({"name": "x".repeat(201)}),
        json!({"name": "a", "type": "t".repeat(101)}),
        json!({"name": "a", "extensions": {"nope": {}}}),
        json!({"name": "a", "extensions": {"echo": {"id": 7}}}),
        json!({"name": "a", "extensions": []}),
        json!({"name": "a", "colour": "red"}),
        json!({"type": "t"}),
    ];
    for body in bodies {
        let allowed = allows(&doc, &schema, &body);
        let (s, out) = env.post("/api/v1/devices", &env.admin, body.clone()).await;
        assert_eq!(
            s == StatusCode::CREATED,
            allowed,
            "{body}: the document {} it, the service answered {s} {out}",
            if allowed { "allows" } else { "refuses" }
        );
    }
    // Query parameters: the limit's bounds.
    let limit = op(&doc, "GET", "/api/v1/devices")["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]
        .clone();
    for n in [0, 1, 500, 501] {
        let (s, _) = env
            .get(&format!("/api/v1/devices?limit={n}"), &env.admin)
            .await;
        assert_eq!(
            s == StatusCode::OK,
            allows(&doc, &limit, &json!(n)),
            "limit={n}"
        );
    }
}

/// The media types the document lists for the success answer of `method path`.
fn answer_media(doc: &Value, method: &str, path: &str, status: &str) -> Vec<String> {
    op(doc, method, path)["responses"][status]["content"]
        .as_object()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default()
}

/// The essence of a `Content-Type` (`text/csv; charset=utf-8` is `text/csv`).
fn essence(reply: &Reply) -> String {
    reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The schema of query parameter `name` of `method path`.
fn query_schema(doc: &Value, method: &str, path: &str, name: &str) -> Value {
    op(doc, method, path)["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["in"] == "query")
        .unwrap_or_else(|| panic!("{method} {path} has no query parameter {name}"))["schema"]
        .clone()
}

#[tokio::test]
async fn the_document_allows_a_job_exactly_when_the_service_creates_it_and_types_its_answers() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let (s, b) = env
        .put(
            "/api/v1/extensions/bulk",
            &env.admin,
            json!({"enabled": true, "config": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let serial = format!("doc-{}", unique_echo_id());
    let mut ids = Vec::new();
    for i in 0..6 {
        let (s, d) = env
            .post(
                "/api/v1/devices",
                &env.admin,
                json!({"name": format!("doc unit {i}"),
                       "extensions": {"bulk": {"tag": format!("{serial}-{i}")},
                                      "meter": {"serial": format!("{serial}-{i}")}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        ids.push(d["id"].as_str().unwrap().to_owned());
    }

    // One variant per loaded plugin and device operation: plugin and op as constants, the
    // input its input schema; organisation operations have none.
    let variants = doc["components"]["schemas"]["JobCreate"]["oneOf"]
        .as_array()
        .unwrap();
    for plugin in env.app.runtime.plugins() {
        let m = plugin.manifest();
        for o in &m.operations {
            let v = variants.iter().find(|v| {
                v["properties"]["plugin"]["const"] == m.name.as_str()
                    && v["properties"]["op"]["const"] == o.name.as_str()
            });
            match o.scope {
                devext_plugin_api::OpScope::Device => {
                    let v = v.unwrap_or_else(|| panic!("no job variant for {}.{}", m.name, o.name));
                    let mut input = o.input_schema.clone();
                    if let Some(obj) = input.as_object_mut() {
                        obj.remove("$schema");
                        obj.remove("$id");
                    }
                    assert_eq!(v["properties"]["input"], input, "{}.{}", m.name, o.name);
                }
                _ => assert!(v.is_none(), "{}.{} is an org operation", m.name, o.name),
            }
        }
    }
    let filters = &doc["components"]["schemas"]["JobSelection"]["oneOf"][1]["properties"]["filter"]
        ["properties"];
    assert!(filters["name"].is_object() && filters["ext.meter.serial"].is_object());

    // Bodies: the document allows each exactly when the service creates the job.
    let schema = body_schema(&doc, "POST", "/api/v1/jobs").clone();
    let read = |devices: Value| json!({"plugin": "bulk", "op": "read", "devices": devices});
    let one = json!({"ids": [ids[0]]});
    let bodies = [
        read(one.clone()),
        json!({"plugin": "bulk", "op": "read", "input": {}, "devices": one, "confirm": 3}),
        read(json!({"filter": {"ext.meter.serial": format!("{serial}-2")}})),
        read(json!({"filter": {"name": "doc unit 3", "ext.meter.serial": format!("{serial}-3")}})),
        json!({"plugin": "bulk", "op": "apply", "input": {"value": "v"}, "devices": one}),
        // Refused by both.
        json!({"plugin": "bulk", "op": "read", "input": null, "devices": one}),
        json!({"plugin": "bulk", "op": "read", "devices": one, "confirm": null}),
        json!({"plugin": "bulk", "op": "read", "devices": one, "confirm": -1}),
        json!({"plugin": "bulk", "op": "apply", "devices": one}),
        json!({"plugin": "bulk", "op": "apply", "input": {"value": "x".repeat(11)}, "devices": one}),
        json!({"plugin": "bulk", "op": "probe", "devices": one}),
        json!({"plugin": "bulk", "op": "nope", "devices": one}),
        json!({"plugin": "nope", "op": "read", "devices": one}),
        read(json!({})),
        read(json!({"ids": []})),
        read(json!({"ids": [""]})),
        read(json!({"ids": null, "filter": {"name": "doc"}})),
        read(json!({"ids": [ids[0]], "filter": {"name": "doc"}})),
        read(json!({"filter": {"colour": "red"}})),
        read(json!({"filter": {"name": 7}})),
        json!({"plugin": "bulk", "op": "read", "devices": one, "colour": "red"}),
    ];
    let mut created = Vec::new();
    for body in bodies {
        let allowed = allows(&doc, &schema, &body);
        let r = env
            .client
            .send(
                "POST",
                "/api/v1/jobs",
                Some(&env.admin),
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(
            r.status == StatusCode::ACCEPTED,
            allowed,
            "{body}: the document {} it, the service answered {} {}",
            if allowed { "allows" } else { "refuses" },
            r.status,
            r.body
        );
        conforms(&doc, "POST", "/api/v1/jobs", &r);
        if r.status == StatusCode::ACCEPTED {
            let id = r.body["id"].as_str().unwrap().to_owned();
            assert_eq!(r.headers["location"], format!("/api/v1/jobs/{id}"));
            created.push(id);
        }
    }
    // A destructive operation on more than 5 devices without confirm: 409, as documented.
    let r = env
        .client
        .send(
            "POST",
            "/api/v1/jobs",
            Some(&env.admin),
            Some(
                json!({"plugin": "bulk", "op": "apply", "input": {"value": "v"},
                        "devices": {"ids": ids}}),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["kind"], "confirmation_required");
    assert_eq!(r.body["error"]["details"]["total"], 6);
    conforms(&doc, "POST", "/api/v1/jobs", &r);
    // A refusal repeated with its Idempotency-Key is answered as it was, not as a job.
    let bad = read(json!({"ids": ["dev_not_here"]}));
    for _ in 0..2 {
        let r = env
            .client
            .send(
                "POST",
                "/api/v1/jobs",
                Some(&env.admin),
                Some(bad.clone()),
                &[("idempotency-key", "doc-refused-1")],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        conforms(&doc, "POST", "/api/v1/jobs", &r);
    }

    // The listing, its bounds, a job, its results in both media types, cancel.
    let r = env
        .client
        .send("GET", "/api/v1/jobs?limit=2", Some(&env.admin), None, &[])
        .await;
    conforms(&doc, "GET", "/api/v1/jobs", &r);
    let next = r.body["next"].as_str().unwrap().to_owned();
    let r = env
        .client
        .send(
            "GET",
            &format!("/api/v1/jobs?limit=2&cursor={next}"),
            Some(&env.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    conforms(&doc, "GET", "/api/v1/jobs", &r);
    let limit = query_schema(&doc, "GET", "/api/v1/jobs", "limit");
    let cursor = query_schema(&doc, "GET", "/api/v1/jobs", "cursor");
    for (query, allowed) in [
        ("limit=0", allows(&doc, &limit, &json!(0))),
        ("limit=500", allows(&doc, &limit, &json!(500))),
        ("limit=501", allows(&doc, &limit, &json!(501))),
        ("cursor=12", allows(&doc, &cursor, &json!(12))),
        ("cursor=abc", allows(&doc, &cursor, &json!("abc"))),
    ] {
        let r = env
            .client
            .send(
                "GET",
                &format!("/api/v1/jobs?{query}"),
                Some(&env.admin),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status == StatusCode::OK, allowed, "{query}: {}", r.body);
        conforms(&doc, "GET", "/api/v1/jobs", &r);
    }
    let id = &created[0];
    let r = env
        .client
        .send(
            "GET",
            &format!("/api/v1/jobs/{id}"),
            Some(&env.admin),
            None,
            &[],
        )
        .await;
    conforms(&doc, "GET", "/api/v1/jobs/{id}", &r);
    let r = env
        .client
        .send("GET", "/api/v1/jobs/job_nope", Some(&env.admin), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    conforms(&doc, "GET", "/api/v1/jobs/{id}", &r);
    let media = answer_media(&doc, "GET", "/api/v1/jobs/{id}/results", "200");
    assert_eq!(media, ["application/x-ndjson", "text/csv"]);
    for accept in ["application/x-ndjson", "text/csv", "*/*"] {
        let r = env
            .client
            .send(
                "GET",
                &format!("/api/v1/jobs/{id}/results"),
                Some(&env.admin),
                None,
                &[("accept", accept)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            media.contains(&essence(&r)),
            "Accept {accept}: {:?}",
            r.headers
        );
        conforms(&doc, "GET", "/api/v1/jobs/{id}/results", &r);
    }
    // No runner runs in this test: the job is queued, cancelled, then cancelled again (409).
    let path = format!("/api/v1/jobs/{id}/cancel");
    let r = env
        .client
        .send("POST", &path, Some(&env.admin), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "cancelled");
    conforms(&doc, "POST", "/api/v1/jobs/{id}/cancel", &r);
    let r = env
        .client
        .send("POST", &path, Some(&env.admin), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    conforms(&doc, "POST", "/api/v1/jobs/{id}/cancel", &r);
    let viewer = env.key("acme", Role::Viewer).await;
    let r = env
        .client
        .send("POST", &path, Some(&viewer), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    conforms(&doc, "POST", "/api/v1/jobs/{id}/cancel", &r);
}

/// `POST /api/v1/devices/import` with `body` as `media`.
async fn import(env: &Env, query: &str, media: &str, body: &str) -> Reply {
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/api/v1/devices/import{query}"))
        .header("authorization", format!("Bearer {}", env.admin))
        .header("content-type", media)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = env.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Reply {
        status,
        headers,
        body,
        text,
    }
}

#[tokio::test]
async fn import_and_export_answer_as_the_document_says() {
    let env = Env::new().await;
    let doc = env.openapi().await;
    let path = "/api/v1/devices/import";
    let request = op(&doc, "POST", path)["requestBody"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(request, ["application/x-ndjson", "text/csv"]);
    let serial = format!("imp-{}", unique_echo_id());
    let line = json!({"name": "imported", "extensions": {"meter": {"serial": serial}}});
    let r = import(&env, "", "application/x-ndjson", &format!("{line}\n")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["created"], 1);
    conforms(&doc, "POST", path, &r);
    let r = import(&env, "?partial=true", "text/csv", "name,type\ncsv one,\n").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    conforms(&doc, "POST", path, &r);
    // A bad record: 422 with the report; a media type the document does not list: 415.
    let r = import(&env, "", "application/x-ndjson", "{\"name\": 5}\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    conforms(&doc, "POST", path, &r);
    let r = import(&env, "", "application/xml", "<devices/>").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    conforms(&doc, "POST", path, &r);
    // `match`: the document's values are the service's.
    let matching = query_schema(&doc, "POST", path, "match");
    for (by, body) in [
        ("name", json!({"name": "imported"})),
        ("id", json!({"name": "by id"})),
        ("ext.meter.serial", line.clone()),
        ("ext.meter.colour", line.clone()),
        ("colour", line.clone()),
    ] {
        let r = import(
            &env,
            &format!("?match={by}&partial=true"),
            "application/x-ndjson",
            &format!("{body}\n"),
        )
        .await;
        assert_eq!(
            r.status == StatusCode::OK,
            allows(&doc, &matching, &json!(by)),
            "match={by}: {}",
            r.body
        );
        conforms(&doc, "POST", path, &r);
    }
    let r = import(&env, "?org=elsewhere", "application/x-ndjson", "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    conforms(&doc, "POST", path, &r);

    // Export: JSON Lines by default, CSV when asked, both documented; its filters.
    let path = "/api/v1/devices/export";
    let media = answer_media(&doc, "GET", path, "200");
    assert_eq!(media, ["application/x-ndjson", "text/csv"]);
    for accept in ["application/x-ndjson", "text/csv", "*/*"] {
        let r = env
            .client
            .send(
                "GET",
                &format!("{path}?ext.meter.serial={serial}"),
                Some(&env.admin),
                None,
                &[("accept", accept)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            media.contains(&essence(&r)),
            "Accept {accept}: {:?}",
            r.headers
        );
        assert!(r.text.contains("imported"), "{}", r.text);
    }
    query_schema(&doc, "GET", path, "ext.meter.serial");
    query_schema(&doc, "GET", path, "name");
    let r = env
        .client
        .send(
            "GET",
            &format!("{path}?org=elsewhere"),
            Some(&env.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    conforms(&doc, "GET", path, &r);
}
