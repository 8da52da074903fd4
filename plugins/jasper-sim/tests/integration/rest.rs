//! REST API: every operation, authentication, error codes and quirks.

use crate::util::*;

fn is_rest_datetime(s: &str) -> bool {
    // 2016-06-29 00:21:33.339+0000
    let b = s.as_bytes();
    b.len() == 28
        && b[10] == b' '
        && b[19] == b'.'
        && s.ends_with("+0000")
        && chrono::NaiveDateTime::parse_from_str(&s[..23], "%Y-%m-%d %H:%M:%S%.3f").is_ok()
}

fn is_iso_millis(s: &str) -> bool {
    // 2018-08-26T16:00:00.000Z
    s.len() == 24 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn authentication() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/rws/api/v1/devices/{}", active.iccid);

    let missing = send(sim.addr(), "GET", &path, &[], b"").await.unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Basic realm=\"Jasper\"")
    );
    assert!(missing.json()["errorMessage"].is_string());
    assert!(missing.json().get("errorCode").is_none());

    for auth in [
        basic("demo", "wrong-key"),
        basic("someone", "demo-api-key"),
        "Basic !!!".to_owned(),
        "Bearer demo-api-key".to_owned(),
    ] {
        let wrong = send(sim.addr(), "GET", &path, &[("Authorization", &auth)], b"")
            .await
            .unwrap();
        assert_rest_error(&wrong, 401, "10000001");
        assert_eq!(wrong.json()["errorMessage"], "Invalid credentials");
    }
    // The SOAP password is not the API key.
    let soap_password = basic("demo", "demo-password");
    let wrong = send(
        sim.addr(),
        "GET",
        &path,
        &[("Authorization", &soap_password)],
        b"",
    )
    .await
    .unwrap();
    assert_rest_error(&wrong, 401, "10000001");

    assert_eq!(
        rest_get(&sim, &format!("/devices/{}", active.iccid))
            .await
            .status,
        200
    );

    // Writes need credentials too, and are not applied without them.
    let put = send(
        sim.addr(),
        "PUT",
        &path,
        &[("Content-Type", "application/json")],
        br#"{"status":"DEACTIVATED"}"#,
    )
    .await
    .unwrap();
    assert_eq!(put.status, 401);
    let sms_path = format!("{path}/smsMessages");
    let wrong_key = basic("demo", "nope");
    let post = send(
        sim.addr(),
        "POST",
        &sms_path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &wrong_key),
        ],
        br#"{"messageText":"x"}"#,
    )
    .await
    .unwrap();
    assert_rest_error(&post, 401, "10000001");
    assert_eq!(sim.sim(&active.iccid).unwrap().status, "activated");
    assert!(sim.sms_log().is_empty());
}

#[tokio::test]
async fn device_details() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let response = rest_get(&sim, &format!("/devices/{}", active.iccid)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let d = response.json();
    assert_eq!(d["iccid"], active.iccid.as_str());
    assert_eq!(d["status"], "ACTIVATED");
    assert_eq!(d["ratePlan"], active.rate_plan.as_str());
    assert_eq!(d["msisdn"], active.msisdn.as_str());
    for field in ["dateAdded", "dateUpdated", "dateShipped", "dateActivated"] {
        let value = d[field].as_str().unwrap_or_default();
        assert!(is_rest_datetime(value), "{field}: {value}");
    }
    // Extra fields a strict client would choke on.
    assert!(d.get("simIccidType").is_some());
    assert!(d.get("accountCustom10").is_some());

    let partial = rest_get(
        &sim,
        &format!("/devices/{}?fields=iccid,status", active.iccid),
    )
    .await
    .json();
    assert_eq!(partial.as_object().unwrap().len(), 2);

    assert_rest_error(
        &rest_get(&sim, "/devices/8900000000000000000").await,
        404,
        "20000001",
    );
    let foreign = sim.other_account_iccids()[0].clone();
    assert_rest_error(
        &rest_get(&sim, &format!("/devices/{foreign}")).await,
        404,
        "20000001",
    );
    assert_rest_error(
        &rest_get(&sim, "/devices/not-an-iccid").await,
        400,
        "10000021",
    );
    assert_rest_error(
        &rest_get(&sim, &format!("/devices/{}?bogus=1", active.iccid)).await,
        400,
        "10000028",
    );
    assert_eq!(rest_get(&sim, "/nothing/here").await.status, 404);
}

#[tokio::test]
async fn ctd_usages() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let u = rest_get(&sim, &format!("/devices/{}/ctdUsages", active.iccid))
        .await
        .json();
    assert_eq!(u["iccid"], active.iccid.as_str());
    assert_eq!(u["ctdDataUsage"].as_u64(), Some(active.ctd_data_bytes));
    assert_eq!(u["ctdSMSUsage"].as_u64(), Some(active.ctd_sms));
    assert_eq!(u["ctdVoiceUsage"].as_u64(), Some(active.ctd_voice_seconds));
    assert!(u["overageLimitReached"].is_boolean());
    assert_eq!(u["overageLimitOverride"], "DEFAULT");
    assert_rest_error(
        &rest_get(&sim, "/devices/8900000000000000000/ctdUsages").await,
        404,
        "20000001",
    );
}

#[tokio::test]
async fn edit_device() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    let before = rest_get(&sim, &path).await.json();

    let response = rest_put(&sim, &path, r#"{"status":"DEACTIVATED"}"#).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["iccid"], active.iccid.as_str());
    let after = rest_get(&sim, &path).await.json();
    assert_eq!(after["status"], "DEACTIVATED");
    assert_ne!(after["dateUpdated"], before["dateUpdated"]);
    assert_eq!(sim.sim(&active.iccid).unwrap().status, "deactivated");

    // Refused transitions.
    let response = rest_put(&sim, &path, r#"{"status":"ACTIVATION_READY"}"#).await;
    assert_rest_error(&response, 400, "10000029");
    let retired = format!("/devices/{}", sim_in(&sim, "retired").iccid);
    let response = rest_put(&sim, &retired, r#"{"status":"ACTIVATED"}"#).await;
    assert_rest_error(&response, 400, "10000005");
    let response = rest_put(&sim, &retired, r#"{"status":"DEACTIVATED"}"#).await;
    assert_eq!(response.status, 200);
    for bad in [
        r#"{"status":"ACTIVATED_NAME"}"#,
        r#"{"status":"activated"}"#,
        r#"{"status":"REPLACED"}"#,
    ] {
        let response = rest_put(&sim, &path, bad).await;
        assert_rest_error(&response, 400, "10000005");
    }
    // Allowed: back to Activated, from Inventory to Activation Ready.
    assert_eq!(
        rest_put(&sim, &path, r#"{"status":"ACTIVATED"}"#)
            .await
            .status,
        200
    );
    let inventory = sim_in(&sim, "inventory");
    let response = rest_put(
        &sim,
        &format!("/devices/{}", inventory.iccid),
        r#"{"status":"ACTIVATION_READY"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        sim.sim(&inventory.iccid).unwrap().status,
        "activation_ready"
    );

    // Rate plans.
    let plan = sim
        .rate_plans()
        .into_iter()
        .find(|p| p.name != active.rate_plan)
        .unwrap()
        .name;
    let response = rest_put(&sim, &path, &format!(r#"{{"ratePlan":"{plan}"}}"#)).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        rest_get(&sim, &path).await.json()["ratePlan"],
        plan.as_str()
    );
    let response = rest_put(&sim, &path, r#"{"ratePlan":"IoT Basic 1MB"}"#).await;
    assert_rest_error(&response, 400, "10000013");

    // Scheduled change: 202, nothing visible yet.
    let soon =
        (chrono::Utc::now().date_naive() + chrono::Duration::days(5)).format("%Y-%m-%d+00:00");
    let response = rest_put(
        &sim,
        &path,
        &format!(r#"{{"status":"DEACTIVATED","effectiveDate":"{soon}"}}"#),
    )
    .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(rest_get(&sim, &path).await.json()["status"], "ACTIVATED");
    let response = rest_put(
        &sim,
        &path,
        r#"{"status":"DEACTIVATED","effectiveDate":"2001-01-01Z"}"#,
    )
    .await;
    assert_rest_error(&response, 400, "10000012");
    let response = rest_put(
        &sim,
        &path,
        r#"{"status":"DEACTIVATED","effectiveDate":"01/01/2030"}"#,
    )
    .await;
    assert_rest_error(&response, 400, "10000012");

    // Malformed bodies: not JSON, not an object, a wrong type; an unknown field, no field.
    for (body, code) in [
        (r#"{"status":"#, "10000023"),
        (r#"["x"]"#, "10000023"),
        (r#"{"status":5}"#, "10000023"),
        (r#"{"rate_plan":"x"}"#, "10000028"),
        (r#"{}"#, "10000028"),
    ] {
        assert_rest_error(&rest_put(&sim, &path, body).await, 400, code);
    }
    let auth = basic("demo", "demo-api-key");
    let text = send(
        sim.addr(),
        "PUT",
        &format!("/rws/api/v1{path}"),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        br#"{"status":"ACTIVATED"}"#,
    )
    .await
    .unwrap();
    assert_eq!(text.status, 415);

    // Unknown device.
    let response = rest_put(
        &sim,
        "/devices/8900000000000000000",
        r#"{"status":"ACTIVATED"}"#,
    )
    .await;
    assert_rest_error(&response, 404, "20000001");
}

#[tokio::test]
async fn usage_in_zone() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let get = |query: String| {
        let sim = &sim;
        let iccid = active.iccid.clone();
        async move { rest_get(sim, &format!("/devices/{iccid}/usageInZone?{query}")).await }
    };
    let response = get(format!("cycleStartDate={}Z", cycle(0))).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let u = response.json();
    assert_eq!(u["iccid"], active.iccid.as_str());
    for field in ["timeStamp", "cycleStartDate", "cycleEndDate"] {
        assert!(
            is_iso_millis(u[field].as_str().unwrap()),
            "{field}: {}",
            u[field]
        );
    }
    assert!(
        u["cycleStartDate"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}T00:00:00.000Z", cycle(0)))
    );
    let zones = u["deviceCycleUsageInZones"].as_object().unwrap();
    assert!(!zones.is_empty());
    let mut bytes = 0;
    let mut sms = 0;
    let mut voice = 0;
    for (key, entries) in zones {
        let entries = entries.as_array().unwrap();
        let first = &entries[0];
        assert_eq!(
            key,
            &format!(
                "{}, {}",
                first["ratePlan"].as_str().unwrap(),
                first["ratePlanVersion"]
            )
        );
        for e in entries {
            assert_eq!(e["dataUsageUnit"], "bytes");
            assert!(
                e.get("smsmousage").is_some() && e.get("smsmtusage").is_some(),
                "{e}"
            );
            assert!(e.get("SMSMOUsage").is_none());
            bytes += e["dataUsage"].as_u64().unwrap();
            sms += e["smsmousage"].as_u64().unwrap() + e["smsmtusage"].as_u64().unwrap();
            voice += e["voiceMOUsage"].as_u64().unwrap() + e["voiceMTUsage"].as_u64().unwrap();
        }
    }
    assert_eq!(
        (bytes, sms, voice),
        (
            active.ctd_data_bytes,
            active.ctd_sms,
            active.ctd_voice_seconds
        )
    );

    // Last 3 cycles only, with Z or an encoded +00:00.
    assert_eq!(
        get(format!("cycleStartDate={}%2B00:00", cycle(1)))
            .await
            .status,
        200
    );
    assert_eq!(
        get(format!("cycleStartDate={}Z", cycle(2))).await.status,
        200
    );
    assert_rest_error(
        &get(format!("cycleStartDate={}Z", cycle(3))).await,
        400,
        "10000032",
    );
    assert_rest_error(
        &get(format!("cycleStartDate={}-15Z", &cycle(0)[..7])).await,
        400,
        "10000032",
    );
    // A plain date, an unencoded '+' (decoded as a space), no date at all.
    assert_rest_error(
        &get(format!("cycleStartDate={}", cycle(0))).await,
        400,
        "10000012",
    );
    assert_rest_error(
        &get(format!("cycleStartDate={}+00:00", cycle(0))).await,
        400,
        "10000012",
    );
    assert_rest_error(&get(String::new()).await, 400, "10000012");
    // Filters.
    let plan = active.rate_plan.clone();
    let filtered = get(format!(
        "cycleStartDate={}Z&ratePlan={plan}&zone=Home",
        cycle(0)
    ))
    .await
    .json();
    for entries in filtered["deviceCycleUsageInZones"]
        .as_object()
        .unwrap()
        .values()
    {
        for e in entries.as_array().unwrap() {
            assert_eq!(
                (e["ratePlan"].as_str(), e["zone"].as_str()),
                (Some(plan.as_str()), Some("Home"))
            );
        }
    }
    assert_rest_error(
        &get(format!("cycleStartDate={}Z&zone=Mars", cycle(0))).await,
        400,
        "10000031",
    );
    assert_rest_error(
        &get(format!("cycleStartDate={}Z&ratePlan=Nope", cycle(0))).await,
        400,
        "10000013",
    );
}

#[tokio::test]
async fn send_sms() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}/smsMessages", active.iccid);
    let post = |body: String| {
        let sim = &sim;
        let path = path.clone();
        async move { rest_post(sim, &path, &body).await }
    };
    let response = post(r#"{"messageText":"reboot","messageEncoding":"LITERAL"}"#.into()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    // The live API's key, not the documented smsMsgId.
    let id = body["smsMessageId"].as_u64().expect("numeric smsMessageId");
    assert!(body.get("smsMsgId").is_none());
    let log = sim.sms_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].id, log[0].message.as_str(), log[0].api.as_str()),
        (id, "reboot", "rest")
    );

    // Lengths by dataCoding.
    let text = |n: usize| "x".repeat(n);
    for (coding, max) in [
        ("", 320),
        (r#","dataCoding":0"#, 160),
        (r#","dataCoding":1"#, 160),
        (r#","dataCoding":3"#, 160),
        (r#","dataCoding":4"#, 140),
        (r#","dataCoding":8"#, 70),
    ] {
        let ok = post(format!(r#"{{"messageText":"{}"{coding}}}"#, text(max))).await;
        assert_eq!(ok.status, 200, "{coding} {max}: {}", ok.body);
        let too_long = post(format!(r#"{{"messageText":"{}"{coding}}}"#, text(max + 1))).await;
        assert_rest_error(&too_long, 400, "10000020");
    }
    // BASE64.
    let response =
        post(r#"{"messageText":"aGk=","messageEncoding":"BASE64","tpvp":10}"#.into()).await;
    assert_eq!(response.status, 200);
    let last = sim.sms_log().pop().unwrap();
    assert_eq!((last.message.as_str(), last.tpvp), ("hi", Some(10)));

    assert_rest_error(
        &post(r#"{"messageText":"x","dataCoding":2}"#.into()).await,
        400,
        "10000018",
    );
    assert_rest_error(
        &post(r#"{"messageText":"x","messageEncoding":"UTF8"}"#.into()).await,
        400,
        "10000017",
    );
    assert_rest_error(
        &post(r#"{"messageText":"x","tpvp":256}"#.into()).await,
        400,
        "10000019",
    );
    assert_rest_error(&post(r#"{"messageText":""}"#.into()).await, 400, "10000023");
    assert_rest_error(&post(r#"{"text":"x"}"#.into()).await, 400, "10000028");
    assert_rest_error(&post("not json".into()).await, 400, "10000023");

    let deactivated = sim_in(&sim, "deactivated");
    let response = rest_post(
        &sim,
        &format!("/devices/{}/smsMessages", deactivated.iccid),
        r#"{"messageText":"x"}"#,
    )
    .await;
    assert_rest_error(&response, 400, "10000005");
    let response = rest_post(
        &sim,
        "/devices/8900000000000000000/smsMessages",
        r#"{"messageText":"x"}"#,
    )
    .await;
    assert_rest_error(&response, 404, "20000001");
    // 1 + 6 ok + 1 BASE64
    assert_eq!(sim.sms_log().len(), 8);
    assert!(sim.sms_log().iter().all(|s| s.iccid == active.iccid));
}
