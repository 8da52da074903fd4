//! Writes the seed inputs of every fuzz target into `tests/fuzz/corpus/<target>/seed-*`:
//! `cargo run -p devext-fuzz-targets --example seeds`.
//!
//! The seeds are real traffic: the Jasper plugin's own SOAP and REST requests (its request
//! builders), as the simulator receives them, and the simulator's answers to them, as the
//! plugin reads them; the plugins' manifests; documents and pointers from the tests.

use std::path::{Path, PathBuf};

use devext_jasper::dates::Date;
use devext_jasper::{rest, soap};
use devext_plugin_api::host::HttpRequest;
use serde_json::json;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut seeds = Seeds { root, count: 0 };
    let iccids = devext_jasper_sim::fuzz::iccids();
    let iccid = iccids.first().expect("the simulator has SIMs").clone();
    let unknown = "89882167000000000000";

    // The plugin's requests, each sent to the simulator; its answers are the plugin's inputs.
    let soap_creds = soap::Credentials {
        username: "demo",
        password: "demo-password",
        license_key: "demo-license",
    };
    let bad_creds = soap::Credentials {
        password: "wrong",
        ..soap_creds
    };
    let cycle = Date::new(2026, 11, 1).expect("a date");
    let mut n = 0;
    for (creds, id) in [
        (&soap_creds, iccid.as_str()),
        (&soap_creds, unknown),
        (&bad_creds, iccid.as_str()),
    ] {
        for req in [
            soap::Request::GetTerminalDetails { iccid: id },
            soap::Request::GetTerminalUsage {
                iccid: id,
                cycle_start: cycle,
            },
            soap::Request::EditTerminal {
                iccid: id,
                effective_date: None,
                target_value: "DEACTIVATED_NAME",
                change_type: soap::CHANGE_SIM_STATUS,
            },
            soap::Request::SendSms {
                iccid: id,
                text: "hello",
            },
        ] {
            let http = soap::http_request("http://sim", &req, creds, "m-1").expect("a request");
            n += 1;
            seeds.exchange(
                &format!("soap-{n}-{}", req.operation()),
                &http,
                "jasper_soap",
            );
        }
    }
    let rest_creds = rest::Credentials {
        username: "demo",
        api_key: "demo-api-key",
    };
    let bad_rest = rest::Credentials {
        api_key: "nope",
        ..rest_creds
    };
    for (creds, id, tag) in [
        (&rest_creds, iccid.as_str(), "ok"),
        (&rest_creds, unknown, "unknown"),
        (&bad_rest, iccid.as_str(), "unauth"),
    ] {
        let e = "http://sim";
        for (name, http) in [
            ("device", rest::get_device(e, id, creds)),
            ("ctd", rest::get_ctd_usages(e, id, creds)),
            ("zone", rest::get_usage_in_zone(e, id, cycle, creds)),
            (
                "status",
                rest::edit_device(e, id, "status", "DEACTIVATED", None, creds),
            ),
            (
                "plan",
                rest::edit_device(e, id, "ratePlan", "nope", Date::new(2020, 1, 1), creds),
            ),
            ("sms", rest::send_sms(e, id, "hello", creds)),
        ] {
            seeds.exchange(&format!("rest-{tag}-{name}"), &http, "jasper_rest");
        }
    }
    seeds.write(
        "sim_request",
        "soap-raw-envelope",
        soap::envelope(
            &soap::Request::GetTerminalDetails { iccid: &iccid },
            &soap_creds,
            "m",
        )
        .expect("xml")
        .as_bytes(),
    );
    seeds.write(
        "jasper_soap",
        "html",
        b"\x00<!DOCTYPE html><html><body>gateway</body></html>",
    );
    seeds.write("jasper_rest", "html-502", b"\x0d<html>bad gateway</html>");
    seeds.write(
        "jasper_rest",
        "rate-limited",
        b"\x0b{\"errorCode\": \"40000029\", \"errorMessage\": \"Rate Limit Exceeded\"}",
    );

    for (name, text) in [
        ("iso", "2026-11-01"),
        ("rest-device", "2016-06-29 00:21:33.339+0000"),
        ("iso-ms", "2018-08-26T16:00:00.000Z"),
        ("offset-colon", "2018-08-26T16:00:00+05:00"),
        ("offset-hours", "2018-08-26 16:00+05"),
        ("xs-date-z", "2016-08-01Z"),
        ("xs-date-offset", "2016-08-01+00:00"),
        ("leap", "2024-02-29T24:00:00Z"),
        ("fraction", "2024-02-29T23:59:60,5 UTC"),
    ] {
        seeds.write("jasper_dates", name, text.as_bytes());
    }

    let jasper = serde_json::to_vec(&devext_jasper::schemas::manifest()).expect("JSON");
    seeds.write("manifest", "jasper", &jasper);
    let small = devext_plugin_api::Manifest::new("demo", "Demo", "1.0.0")
        .org_config_schema(json!({"type": "object", "properties": {"endpoint": {"type": "string"}}}))
        .device_config_schema(json!({"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"}}}))
        .endpoint_field("endpoint")
        .lookup_fields(["id"]);
    seeds.write(
        "manifest",
        "small",
        &serde_json::to_vec(&small).expect("JSON"),
    );
    let mut broken = serde_json::to_value(&small).expect("JSON");
    broken["device_config_schema"] = json!({"type": "objekt", "$ref": "#/nope"});
    broken["name"] = json!("Bad-Name");
    seeds.write(
        "manifest",
        "broken",
        &serde_json::to_vec(&broken).expect("JSON"),
    );

    let doc = "{\n  \"acme\": {\n    \"serial\": \"123\",\n    \"colour\": \"red\"\n  },\n  \"a/b\": [1, {\"x~y\": \"é\"}, [2, 3]],\n  \"esc\\\"aped\": true,\n  \"dup\": 1,\n  \"dup\": 2\n}";
    for (name, pointer) in [
        ("root", ""),
        ("member", "/acme/serial"),
        ("escaped", "/a~1b/1/x~0y"),
        ("index", "/a~1b/2/1"),
        ("dup", "/dup"),
        ("quote", "/esc\"aped"),
    ] {
        seeds.write("locate", name, format!("{pointer}\n{doc}").as_bytes());
    }
    seeds.write(
        "locate",
        "big-number",
        b"/n\n{\"n\": 89460715903439706236, \"f\": 1.50E+3}",
    );

    for (name, text) in [
        (
            "valid",
            format!("{{\"jasper\": {{\"iccid\": \"{iccid}\"}}}}"),
        ),
        ("pattern", "{\"jasper\": {\"iccid\": \"123\"}}".to_owned()),
        (
            "check-digit",
            "{\n  \"jasper\": {\"iccid\": \"89882167000000000001\"}\n}".to_owned(),
        ),
        (
            "unknown-plugin",
            "{\"acme\": {}, \"jasper\": {\"iccid\": 8988216700000000000, \"x\": 1}}".to_owned(),
        ),
        ("not-object", "[1, 2]".to_owned()),
        ("not-json", "{\"jasper\": ".to_owned()),
    ] {
        seeds.write("device_config", name, text.as_bytes());
    }
    // Values as `CallModule::call` sends them: echo's arguments and output, a device config,
    // every kind of number, long strings and deep nesting.
    let deep = (0..127).fold(json!(null), |v, _| json!([v]));
    for (name, value) in [
        (
            "echo-input",
            json!({"message": "the quick brown fox", "tags": ["bench", "devext"]}),
        ),
        ("device-config", json!({"iccid": iccid})),
        (
            "numbers",
            json!([
                0,
                1,
                127,
                128,
                255,
                256,
                65_536,
                u64::MAX,
                -1,
                -32,
                -33,
                -129,
                i64::MIN,
                0.5,
                -1.5e300
            ]),
        ),
        (
            "strings",
            json!({"": "", "é": "✓", "long": "x".repeat(300), "key".repeat(20): null}),
        ),
        ("deep", deep),
        (
            "mixed",
            json!({"a": [true, false, null, {"b": {}}], "c": [[], [1]]}),
        ),
    ] {
        let mut bytes = Vec::new();
        devext_plugin_api::wire::write(&mut bytes, &value).expect("a seed encodes");
        seeds.write("wire", name, &bytes);
    }
    println!("{} seeds written", seeds.count);
}

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("write a seed");
        self.count += 1;
    }

    /// `http` as a simulator input, and the simulator's answer as an input of `answers`.
    fn exchange(&mut self, name: &str, http: &HttpRequest, answers: &str) {
        let path = http
            .url
            .strip_prefix("http://sim")
            .expect("the seeds' endpoint");
        let mut text = format!("{} {path}\n", http.method);
        for (k, v) in &http.headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push('\n');
        text.push_str(http.body.as_deref().unwrap_or(""));
        self.write("sim_request", name, text.as_bytes());
        let (status, body) = devext_jasper_sim::fuzz::respond(text.as_bytes());
        let class = devext_fuzz_targets::STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(0) as u8;
        let mut answer = vec![class];
        answer.extend_from_slice(&body);
        self.write(answers, name, &answer);
    }
}
