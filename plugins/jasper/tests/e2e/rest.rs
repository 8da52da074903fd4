//! Every operation over the REST API, end to end through the fake host.

use devext_jasper::Jasper;
use devext_plugin_api::{ErrorKind, Value, json};

use crate::support::*;

const EP: &str = "https://restapi3.jasper.example";

fn device_body() -> String {
    json!({
        "iccid": ICCID, "imsi": "204043", "msisdn": "31", "status": "ACTIVATED",
        "ratePlan": "IoT 10MB", "communicationPlan": "Data Only",
        "dateAdded": "2016-06-29 00:21:33.339+0000", "dateUpdated": "2016-07-01 10:00:00.000+0200",
        "fixedIPAddress": null, "eid": "x", "someFieldFromTheFuture": {"a": [1]}
    })
    .to_string()
}

fn ctd_body() -> String {
    json!({
        "iccid": ICCID, "ctdDataUsage": 2_500_000, "ctdSMSUsage": 3, "ctdVoiceUsage": 75,
        "ctdSessionCount": 9, "overageLimitReached": false, "overageLimitOverride": "TEMPORARY_OVERRIDE",
        "apn": "internet"
    })
    .to_string()
}

#[tokio::test(start_paused = true)]
async fn overview_reads_device_then_ctd_usages() {
    let fake = FakeHost::new(|req, _| {
        if req.url.ends_with("/ctdUsages") {
            Reply::ok(ctd_body())
        } else {
            Reply::ok(device_body())
        }
    });
    let mut out = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    // Two answers of 20 ms each; the host stamps the view when the second came.
    assert_eq!(out["as_of"], "2023-11-14T22:13:20.040Z");
    out.as_object_mut().unwrap().remove("as_of");
    assert_eq!(
        out,
        json!({
            "iccid": ICCID, "api": "rest", "status": "activated", "status_label": "Activated",
            "upstream_status": "ACTIVATED", "rate_plan": "IoT 10MB",
            "month_to_date": {"data_bytes": 2_500_000, "sms_messages": 3, "voice_seconds": 75},
            "overage_limit": {"reached": false, "override_mode": "temporary_override"},
            "date_added": "2016-06-29T00:21:33.339Z", "date_modified": "2016-07-01T08:00:00Z"
        })
    );
    let seen = fake.seen();
    let urls: Vec<&str> = seen.iter().map(|s| s.req.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            format!("{EP}/rws/api/v1/devices/{ICCID}"),
            format!("{EP}/rws/api/v1/devices/{ICCID}/ctdUsages")
        ]
    );
    for s in &seen {
        assert_eq!(s.req.method, "GET");
        // base64("alice:api-key-1")
        assert_eq!(
            header(&s.req, "Authorization"),
            Some("Basic YWxpY2U6YXBpLWtleS0x")
        );
        assert_eq!(header(&s.req, "Accept"), Some("application/json"));
        assert_eq!(header(&s.req, "Content-Type"), Some("application/json"));
    }
}

#[tokio::test(start_paused = true)]
async fn overview_errors() {
    let cases: [(u16, &str, ErrorKind, &str); 4] = [
        (
            404,
            r#"{"errorMessage":"Resource not found - Invalid ICCID","errorCode":"20000001"}"#,
            ErrorKind::NotFound,
            "ICCID not in this Jasper account",
        ),
        (401, "", ErrorKind::Unauthorized, "credentials rejected"),
        (
            401,
            r#"{"errorMessage":"Invalid credentials","errorCode":"10000001"}"#,
            ErrorKind::Unauthorized,
            "credentials rejected",
        ),
        (
            200,
            "<html><body>Jasper Control Center login</body></html>",
            ErrorKind::Upstream,
            "HTML",
        ),
    ];
    for (status, body, kind, says) in cases {
        let fake = FakeHost::new(move |_, _| Reply::status(status, body));
        let e = invoke(
            &Jasper::default(),
            &fake,
            &rest_org(EP),
            ICCID,
            "overview",
            json!({}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, kind, "{status} {body}");
        assert!(e.message.contains(says), "{}", e.message);
        assert_eq!(fake.requests(), 1);
    }
    let garbage = FakeHost::new(|_, _| Reply::ok("this is not json"));
    let e = invoke(
        &Jasper::default(),
        &garbage,
        &rest_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
}

#[tokio::test(start_paused = true)]
async fn usage_sums_zones_and_says_billable_is_unavailable() {
    let fake = FakeHost::new(|_, _| {
        Reply::ok(
            json!({
                "iccid": ICCID, "timeStamp": "2016-11-20T10:00:00.000Z",
                "cycleStartDate": "2016-11-10T00:00:00.000Z", "cycleEndDate": "2016-12-09T23:59:59.999Z",
                "deviceCycleUsageInZones": {
                    "IoT 10MB, 1": [
                        {"ratePlan": "IoT 10MB", "ratePlanVersion": "1", "zone": "Home", "dataUsage": 1000,
                         "dataUsageUnit": "bytes", "voiceMOUsage": 10, "voiceMOUsageUnit": "seconds",
                         "voiceMTUsage": 20, "voiceMTUsageUnit": "seconds", "smsmousage": 1, "smsmtusage": 2},
                        {"zone": "Roaming", "dataUsage": 500, "dataUsageUnit": "bytes", "SMSMOUsage": 4}
                    ],
                    "Old plan, 3": [{"zone": "Home", "dataUsage": 1, "dataUsageUnit": "bytes", "smsMTUsage": 1}]
                }
            })
            .to_string(),
        )
    });
    let out = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2016-11-10"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["total"],
        json!({"data_bytes": 1501, "sms_messages": 8, "voice_seconds": 30})
    );
    assert_eq!(
        out["billable"],
        json!({"data_bytes": null, "sms_messages": null, "voice_seconds": null})
    );
    assert!(
        out["billable_unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("total usage only")
    );
    assert_eq!(out["cycle_start_date"], "2016-11-10");
    assert_eq!(out["cycle_end"], "2016-12-09T23:59:59.999Z");
    assert_eq!(
        fake.seen()[0].req.url,
        format!("{EP}/rws/api/v1/devices/{ICCID}/usageInZone?cycleStartDate=2016-11-10Z")
    );

    let old = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"Invalid cycleStartDate","errorCode":"10000032"}"#,
        )
    });
    let e = invoke(
        &Jasper::default(),
        &old,
        &rest_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2015-01-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("last 3 cycles"));
}

#[tokio::test(start_paused = true)]
async fn set_status_puts_the_rest_status() {
    let fake = FakeHost::new(|req, _| {
        if req.body.as_deref().unwrap_or("").contains("effectiveDate") {
            Reply::status(202, "")
        } else {
            Reply::ok(json!({"iccid": ICCID}).to_string())
        }
    });
    let plugin = Jasper::default();
    let out = invoke(
        &plugin,
        &fake,
        &rest_org(EP),
        ICCID,
        "set_status",
        json!({"status": "activation_ready"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"iccid": ICCID, "api": "rest", "status": "activation_ready", "effective_date": null, "scheduled": false})
    );
    let req = &fake.seen()[0].req;
    assert_eq!(
        (req.method.as_str(), req.url.as_str()),
        ("PUT", format!("{EP}/rws/api/v1/devices/{ICCID}").as_str())
    );
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"status": "ACTIVATION_READY"}));

    // The fake clock is 2023-11-14: 2023-12-01 is within 180 days.
    let out = invoke(
        &plugin,
        &fake,
        &rest_org(EP),
        ICCID,
        "set_status",
        json!({"status": "retired", "effective_date": "2023-12-01"}),
    )
    .await
    .unwrap();
    assert_eq!(out["scheduled"], true);
    let body: Value = serde_json::from_str(fake.seen()[1].req.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"status": "RETIRED", "effectiveDate": "2023-12-01Z"})
    );

    let e = invoke(
        &plugin,
        &fake,
        &rest_org(EP),
        ICCID,
        "set_status",
        json!({"status": "retired", "effective_date": "2030-01-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(fake.requests(), 2, "refused before sending");

    for code in ["10000029", "10000005"] {
        let refused = FakeHost::new(move |_, _| {
            Reply::status(
                400,
                json!({"errorMessage": "Invalid status change", "errorCode": code}).to_string(),
            )
        });
        let e = invoke(
            &plugin,
            &refused,
            &rest_org(EP),
            ICCID,
            "set_status",
            json!({"status": "activation_ready"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{code}");
        assert_eq!(refused.requests(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn set_rate_plan_puts_the_plan() {
    let fake = FakeHost::new(|_, _| Reply::ok(json!({"iccid": ICCID}).to_string()));
    let out = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "set_rate_plan",
        json!({"rate_plan": "IoT 1GB, EU"}),
    )
    .await
    .unwrap();
    assert_eq!(out["rate_plan"], "IoT 1GB, EU");
    let body: Value = serde_json::from_str(fake.seen()[0].req.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"ratePlan": "IoT 1GB, EU"}));

    let unknown = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"Invalid ratePlan","errorCode":"10000013"}"#,
        )
    });
    let e = invoke(
        &Jasper::default(),
        &unknown,
        &rest_org(EP),
        ICCID,
        "set_rate_plan",
        json!({"rate_plan": "Nope"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("unknown rate plan"));
}

#[tokio::test(start_paused = true)]
async fn send_sms_accepts_both_id_spellings_and_320_characters() {
    for (answer, id) in [
        (json!({"smsMessageId": 6_612_000_001_u64}), "6612000001"),
        (json!({"smsMsgId": 42}), "42"),
        (json!({"smsMsgId": "43", "extra": true}), "43"),
    ] {
        let body = answer.to_string();
        let fake = FakeHost::new(move |_, _| Reply::ok(body.clone()));
        let text = "x".repeat(320);
        let out = invoke(
            &Jasper::default(),
            &fake,
            &rest_org(EP),
            ICCID,
            "send_sms",
            json!({"message": text}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            json!({"iccid": ICCID, "api": "rest", "message_id": id, "characters": 320})
        );
        let req = &fake.seen()[0].req;
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            (
                "POST",
                format!("{EP}/rws/api/v1/devices/{ICCID}/smsMessages").as_str()
            )
        );
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"messageText": text, "messageEncoding": "LITERAL"})
        );
    }
    // SOAP's limit does not apply to REST, and REST's is checked before sending.
    let fake = FakeHost::new(|_, _| Reply::ok("{}"));
    let out = invoke(
        &Jasper::default(),
        &fake,
        &rest_org(EP),
        ICCID,
        "send_sms",
        json!({"message": "y".repeat(200)}),
    )
    .await
    .unwrap();
    assert_eq!(out["message_id"], json!(null), "accepted without an id");
    let long = call(
        &fake,
        &rest_org(EP),
        "send_sms",
        json!({"message": "z".repeat(321)}),
    );
    let e = invoke_raw(&Jasper::default(), &fake, long)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("at most 320"), "{}", e.message);
    assert_eq!(fake.requests(), 1, "refused before sending");
}
