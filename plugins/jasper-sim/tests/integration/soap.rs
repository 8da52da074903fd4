//! SOAP API: every operation, prefix-agnostic parsing, authentication,
//! validation and Jasper fault codes.

use devext_jasper_sim::RunningSim;

use crate::util::*;

#[tokio::test]
async fn get_terminal_details_with_any_prefix() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    for style in [Style::Prefix("sch"), Style::Prefix("jws"), Style::Default] {
        let envelope = soap_request(
            style,
            &SoapAuth::default(),
            "GetTerminalDetails",
            "corr-42",
            &[],
            &[iccids(&[&active.iccid, "8900000000000000000"])],
        );
        let response = soap_post(&sim, "terminal", &envelope).await.unwrap();
        assert_eq!(response.status, 200, "{style:?}: {}", response.body);
        let body = &response.body;
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/xml")
        );
        assert!(body.contains("<ns2:GetTerminalDetailsResponse"), "{body}");
        assert_eq!(jasper_text(body, "correlationId"), "corr-42");
        assert!(!jasper_text(body, "version").is_empty());
        assert!(!jasper_text(body, "build").is_empty());
        let timestamp = jasper_text(body, "timestamp");
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
        // Unknown ICCIDs are simply left out.
        assert_eq!(
            xml_texts(body, Some(JASPER_NS), "iccid"),
            vec![active.iccid.clone()]
        );
        assert!(body.contains(&format!("<ns2:terminal msisdn=\"{}\">", active.msisdn)));
        assert_eq!(jasper_text(body, "status"), "ACTIVATED_NAME");
        assert_eq!(jasper_text(body, "ratePlan"), active.rate_plan);
        // Quirks: unknown elements and a nil fixedIpAddress.
        assert!(
            body.contains("<ns2:fixedIpAddress xsi:nil=\"true\"/>"),
            "{body}"
        );
        assert!(body.contains("<ns2:customer"), "{body}");
        assert!(body.contains("<ns2:eid xsi:nil=\"true\"/>"), "{body}");
        // MB with 3 decimals, consistent with the byte counter.
        let mb = jasper_text(body, "monthToDateDataUsage");
        let expected = (active.ctd_data_bytes + 500) / 1000;
        assert_eq!(mb, format!("{}.{:03}", expected / 1000, expected % 1000));
        assert_eq!(
            jasper_text(body, "monthToDateSMSUsage"),
            active.ctd_sms.to_string()
        );
        assert_eq!(
            jasper_text(body, "monthToDateVoiceUsage"),
            active.ctd_voice_seconds.to_string()
        );
        assert!(jasper_text(body, "dateAdded").ends_with('Z'));
    }
}

#[tokio::test]
async fn get_terminal_details_lists_and_limits() {
    let sim = sim().await;
    let all = sim.sims();
    let two = [
        all[0].iccid.as_str(),
        all[1].iccid.as_str(),
        all[0].iccid.as_str(),
    ];
    let response = terminal_details(&sim, &two).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        xml_texts(&response.body, Some(JASPER_NS), "terminal").len(),
        2
    );

    // Nothing found: an empty list, no fault.
    let response = terminal_details(&sim, &["8900000000000000001"]).await;
    assert_eq!(response.status, 200);
    assert!(xml_texts(&response.body, Some(JASPER_NS), "terminal").is_empty());

    // 1..50 ICCIDs.
    let many: Vec<String> = (0..51).map(|i| format!("89000000000000{i:05}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let response = terminal_details(&sim, &many).await;
    assert_fault(&response, "Validation error");
    let response = terminal_details(&sim, &[]).await;
    assert_fault(&response, "Validation error");

    // A SIM of another account is an access violation.
    let foreign = sim.other_account_iccids()[0].clone();
    let response = terminal_details(&sim, &[&foreign]).await;
    assert_fault(&response, "400201");
}

#[tokio::test]
async fn authentication_failures() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let fields = [iccids(&[&active.iccid])];
    let call = |auth: SoapAuth| {
        let envelope = soap_request(
            Style::Prefix("jws"),
            &auth,
            "GetTerminalDetails",
            "m",
            &[],
            &fields,
        );
        let sim = &sim;
        async move { soap_post(sim, "terminal", &envelope).await.unwrap() }
    };
    let wrong_password = SoapAuth {
        password: "nope".into(),
        ..SoapAuth::default()
    };
    assert_fault(&call(wrong_password).await, "400200");
    let wrong_user = SoapAuth {
        username: "other".into(),
        ..SoapAuth::default()
    };
    assert_fault(&call(wrong_user).await, "400200");
    let no_header = SoapAuth {
        header: false,
        ..SoapAuth::default()
    };
    assert_fault(&call(no_header).await, "400200");
    let digest = SoapAuth {
        password_type: Some(PASSWORD_TEXT.replace("PasswordText", "PasswordDigest")),
        ..SoapAuth::default()
    };
    assert_fault(&call(digest).await, "400200");
    let wrong_license = SoapAuth {
        license_key: "bad".into(),
        ..SoapAuth::default()
    };
    assert_fault(&call(wrong_license).await, "400100");
    // A Password without Type means PasswordText.
    let untyped = SoapAuth {
        password_type: None,
        ..SoapAuth::default()
    };
    assert_eq!(call(untyped).await.status, 200);
}

#[tokio::test]
async fn envelope_and_schema_validation() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let good = details_envelope(&active.iccid);

    // messageId is required.
    let no_message_id = good.replace("<sch:messageId>m</sch:messageId>", "");
    let response = soap_post(&sim, "terminal", &no_message_id).await.unwrap();
    let detail = xml_texts(
        &response.body,
        Some("http://springframework.org/spring-ws"),
        "ValidationError",
    );
    assert_fault(&response, "Validation error");
    assert!(detail[0].contains("messageId"), "{detail:?}");

    // Elements in the wrong order.
    let swapped = good.replace(
        "<sch:version>1.0</sch:version><sch:licenseKey>demo-license</sch:licenseKey>",
        "<sch:licenseKey>demo-license</sch:licenseKey><sch:version>1.0</sch:version>",
    );
    assert_fault(
        &soap_post(&sim, "terminal", &swapped).await.unwrap(),
        "Validation error",
    );

    // Unqualified body elements do not match any endpoint.
    let unqualified = good
        .replace("sch:", "")
        .replace(&format!(" xmlns:sch=\"{JASPER_NS}\""), "");
    let response = soap_post(&sim, "terminal", &unqualified).await.unwrap();
    assert_fault(
        &response,
        "No endpoint mapping found for [SaajSoapMessage GetTerminalDetailsRequest]",
    );

    // Operation posted to the wrong service.
    let response = soap_post(&sim, "billing", &good).await.unwrap();
    assert_eq!(response.status, 500);
    assert!(
        response.body.contains("No endpoint mapping found"),
        "{}",
        response.body
    );

    // Not XML at all, and SOAP 1.2.
    let response = soap_post(&sim, "terminal", "<oops").await.unwrap();
    assert_eq!(response.status, 500);
    assert!(response.body.contains("SOAP-ENV:Client"));
    let soap12 = good.replace(SOAP_ENV, "http://www.w3.org/2003/05/soap-envelope");
    let response = soap_post(&sim, "terminal", &soap12).await.unwrap();
    assert!(
        response.body.contains("SOAP-ENV:VersionMismatch"),
        "{}",
        response.body
    );

    // Case-insensitive service paths; unknown services are 404.
    for path in ["Terminal", "TERMINAL", "terminal"] {
        assert_eq!(
            soap_post(&sim, path, &good).await.unwrap().status,
            200,
            "{path}"
        );
    }
    assert_eq!(soap_post(&sim, "nothing", &good).await.unwrap().status, 404);
}

fn edit(iccid: &str, change_type: u32, target: &str, effective: Option<&str>) -> Vec<Node> {
    let mut fields = vec![leaf("iccid", iccid)];
    if let Some(date) = effective {
        fields.push(leaf("effectiveDate", date));
    }
    fields.push(leaf("targetValue", target));
    fields.push(leaf("changeType", change_type.to_string()));
    fields
}

/// `EditTerminal` with default credentials (fields as `edit` writes them).
async fn edit_terminal(
    sim: &RunningSim,
    iccid: &str,
    change_type: u32,
    target: &str,
    effective: Option<&str>,
) -> HttpResponse {
    let fields = edit(iccid, change_type, target, effective);
    soap_call(sim, "terminal", "EditTerminal", &fields).await
}

#[tokio::test]
async fn edit_terminal_status_rules() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");

    // Activated -> Deactivated is allowed and visible in later reads.
    let response = edit_terminal(&sim, &active.iccid, 3, "DEACTIVATED_NAME", None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(jasper_text(&response.body, "iccid"), active.iccid);
    assert_eq!(jasper_text(&response.body, "correlationId"), "msg-1");
    assert!(jasper_text(&response.body, "effectiveDate").ends_with('Z'));
    let after = sim.sim(&active.iccid).unwrap();
    assert_eq!(after.status, "deactivated");
    assert_ne!(after.date_modified, active.date_modified);
    let details = terminal_details(&sim, &[&active.iccid]).await;
    assert_eq!(jasper_text(&details.body, "status"), "DEACTIVATED_NAME");
    assert_eq!(
        jasper_text(&details.body, "dateModified"),
        after.date_modified
    );

    // Deactivated -> Activation Ready is refused.
    let response = edit_terminal(&sim, &active.iccid, 3, "ACTIVATION_READY_NAME", None).await;
    assert_eq!(
        assert_fault(&response, "100300"),
        "SIMSTATUS_INVALID_TRANSITION"
    );
    // Back to Activated is allowed.
    let response = edit_terminal(&sim, &active.iccid, 3, "ACTIVATED_NAME", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(sim.sim(&active.iccid).unwrap().status, "activated");

    // Inventory -> Activation Ready is allowed.
    let inventory = sim_in(&sim, "inventory");
    let response = edit_terminal(&sim, &inventory.iccid, 3, "ACTIVATION_READY_NAME", None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        sim.sim(&inventory.iccid).unwrap().status,
        "activation_ready"
    );

    // Retired can only go to Deactivated (or Purged).
    let retired = sim_in(&sim, "retired");
    let response = edit_terminal(&sim, &retired.iccid, 3, "ACTIVATED_NAME", None).await;
    assert_eq!(
        assert_fault(&response, "100300"),
        "SIMSTATUS_INVALID_TRANSITION"
    );

    // Bad values.
    let response = edit_terminal(&sim, &active.iccid, 3, "ACTIVATED", None).await;
    assert_eq!(assert_fault(&response, "100300"), "SIMSTATUS_INVALID");
    let response = edit_terminal(&sim, &active.iccid, 3, "", None).await;
    assert_eq!(assert_fault(&response, "100300"), "SIMSTATUS_NULL");
    let response = edit_terminal(&sim, &active.iccid, 99, "x", None).await;
    assert_fault(&response, "100200");
    let response =
        edit_terminal(&sim, &active.iccid, 3, "ACTIVATED_NAME", Some("2001-01-01")).await;
    assert_eq!(assert_fault(&response, "100300"), "ACTIVATION_IN_PAST");
    let response = edit_terminal(
        &sim,
        &active.iccid,
        3,
        "DEACTIVATED_NAME",
        Some("not-a-date"),
    )
    .await;
    assert_fault(&response, "Validation error");

    // Unknown and foreign ICCIDs.
    let response = edit_terminal(&sim, "8900000000000000000", 3, "ACTIVATED_NAME", None).await;
    assert_fault(&response, "100100");
    let foreign = sim.other_account_iccids()[0].clone();
    let response = edit_terminal(&sim, &foreign, 3, "ACTIVATED_NAME", None).await;
    assert_fault(&response, "400201");
    let response = edit_terminal(&sim, "12ab", 3, "ACTIVATED_NAME", None).await;
    assert_fault(&response, "100101");
}

#[tokio::test]
async fn edit_terminal_rate_plan_and_schedule() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let other_plan = sim
        .rate_plans()
        .into_iter()
        .find(|p| p.name != active.rate_plan)
        .unwrap()
        .name;
    let response = edit_terminal(&sim, &active.iccid, 4, &other_plan, None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(sim.sim(&active.iccid).unwrap().rate_plan, other_plan);
    let details = terminal_details(&sim, &[&active.iccid]).await;
    assert_eq!(jasper_text(&details.body, "ratePlan"), other_plan);

    let response = edit_terminal(&sim, &active.iccid, 4, "No_Such_Plan", None).await;
    assert_eq!(assert_fault(&response, "100520"), "RATEPLAN_INVALID");

    // A future effective date schedules the change.
    let soon = (chrono::Utc::now().date_naive() + chrono::Duration::days(10))
        .format("%Y-%m-%dZ")
        .to_string();
    let response = edit_terminal(&sim, &active.iccid, 3, "DEACTIVATED_NAME", Some(&soon)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(jasper_text(&response.body, "effectiveDate"), soon);
    let after = sim.sim(&active.iccid).unwrap();
    assert_eq!(after.status, "activated");
    assert_eq!(after.pending_changes, 1);
    let far = (chrono::Utc::now().date_naive() + chrono::Duration::days(400))
        .format("%Y-%m-%d")
        .to_string();
    let response = edit_terminal(&sim, &active.iccid, 3, "DEACTIVATED_NAME", Some(&far)).await;
    assert_eq!(assert_fault(&response, "100300"), "INVALID_EFFECTIVE_DATE");
}

#[tokio::test]
async fn get_terminal_usage_per_cycle() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let usage = |date: String| {
        let sim = &sim;
        let iccid = active.iccid.clone();
        async move {
            soap_call(
                sim,
                "billing",
                "GetTerminalUsage",
                &[leaf("iccid", iccid), leaf("cycleStartDate", date)],
            )
            .await
        }
    };
    // Current cycle: not billable yet.
    let response = usage(format!("{}Z", cycle(0))).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(jasper_text(&response.body, "billable"), "false");
    assert_eq!(
        jasper_text(&response.body, "cycleStartDate"),
        format!("{}Z", cycle(0))
    );
    assert_eq!(
        jasper_text(&response.body, "totalDataVolume"),
        jasper_text(
            &terminal_details(&sim, &[&active.iccid]).await.body,
            "monthToDateDataUsage"
        )
    );

    // Previous cycles, with +00:00 and plain dates: billable, billable <= total.
    for (back, date) in [(1, format!("{}+00:00", cycle(1))), (3, cycle(3))] {
        let response = usage(date).await;
        assert_eq!(response.status, 200, "{back}: {}", response.body);
        assert_eq!(jasper_text(&response.body, "billable"), "true");
        let num = |name: &str| jasper_text(&response.body, name).parse::<f64>().unwrap();
        assert!(num("billableDataVolume") <= num("totalDataVolume"));
        assert!(num("billableSMSVolume") <= num("totalSMSVolume"));
        assert!(num("billableVoiceVolume") <= num("totalVoiceVolume"));
        assert!(num("totalDataVolume") > 0.0, "an activated SIM has usage");
    }

    // SOAP and REST agree on a cycle REST can see (MB = bytes / 1e6, 3 decimals).
    let soap = usage(format!("{}Z", cycle(1))).await;
    let rest = rest_get(
        &sim,
        &format!(
            "/devices/{}/usageInZone?cycleStartDate={}Z",
            active.iccid,
            cycle(1)
        ),
    )
    .await;
    let zones = rest.json()["deviceCycleUsageInZones"].clone();
    let mut bytes = 0;
    let mut sms = 0;
    for entries in zones.as_object().unwrap().values() {
        for e in entries.as_array().unwrap() {
            bytes += e["dataUsage"].as_u64().unwrap();
            sms += e["smsmousage"].as_u64().unwrap() + e["smsmtusage"].as_u64().unwrap();
        }
    }
    let thousandths = (bytes + 500) / 1000;
    assert_eq!(
        jasper_text(&soap.body, "totalDataVolume"),
        format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
    );
    assert_eq!(jasper_text(&soap.body, "totalSMSVolume"), sms.to_string());

    // No usage for older cycles, or without a cycle.
    assert_fault(&usage(cycle(6)).await, "200200");
    let response = soap_call(
        &sim,
        "billing",
        "GetTerminalUsage",
        &[leaf("iccid", active.iccid.clone())],
    )
    .await;
    assert_fault(&response, "200200");
    let response = soap_call(
        &sim,
        "billing",
        "GetTerminalUsage",
        &[
            leaf("iccid", "8900000000000000000"),
            leaf("cycleStartDate", cycle(1)),
        ],
    )
    .await;
    assert_fault(&response, "100100");
}

#[tokio::test]
async fn send_sms_rules() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    let send = |attrs: Vec<(&'static str, &'static str)>, text: Option<String>, iccid: String| {
        let sim = &sim;
        async move {
            let mut fields = vec![leaf("sentToIccid", iccid)];
            if let Some(text) = text {
                fields.push(leaf("messageText", text));
            }
            let envelope = soap_request(
                Style::Prefix("sch"),
                &SoapAuth::default(),
                "SendSMS",
                "sms-1",
                &attrs,
                &fields,
            );
            soap_post(sim, "Sms", &envelope).await.unwrap()
        }
    };
    let response = send(vec![], Some("hello & <bye>".into()), active.iccid.clone()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let id: u64 = jasper_text(&response.body, "smsMsgId").parse().unwrap();
    let log = sim.sms_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].id, log[0].message.as_str(), log[0].iccid.as_str()),
        (id, "hello & <bye>", active.iccid.as_str())
    );

    // BASE64, on the lowercase path too.
    let mut fields = vec![
        leaf("sentToIccid", active.iccid.clone()),
        leaf("messageText", "d2FrZSB1cA=="),
        leaf("tpvp", "167"),
    ];
    let envelope = soap_request(
        Style::Default,
        &SoapAuth::default(),
        "SendSMS",
        "sms-2",
        &[("messageTextEncoding", "BASE64")],
        &fields,
    );
    let response = soap_post(&sim, "sms", &envelope).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let last = sim.sms_log().pop().unwrap();
    assert_eq!(
        (last.message.as_str(), last.encoding.as_str(), last.tpvp),
        ("wake up", "BASE64", Some(167))
    );

    // Exactly 160 characters pass, 161 do not.
    assert_eq!(
        send(vec![], Some("é".repeat(160)), active.iccid.clone())
            .await
            .status,
        200
    );
    assert_fault(
        &send(vec![], Some("a".repeat(161)), active.iccid.clone()).await,
        "500500",
    );
    assert_fault(
        &send(vec![], Some(String::new()), active.iccid.clone()).await,
        "500400",
    );
    assert_fault(&send(vec![], None, active.iccid.clone()).await, "500400");
    assert_fault(
        &send(
            vec![("messageTextEncoding", "BASE64")],
            Some("!!!".into()),
            active.iccid.clone(),
        )
        .await,
        "500800",
    );
    assert_fault(
        &send(
            vec![("messageTextEncoding", "UTF8")],
            Some("x".into()),
            active.iccid.clone(),
        )
        .await,
        "Validation error",
    );

    // Only Activated SIMs receive SMS.
    let deactivated = sim_in(&sim, "deactivated");
    assert_fault(
        &send(vec![], Some("x".into()), deactivated.iccid.clone()).await,
        "500700",
    );
    assert_fault(
        &send(vec![], Some("x".into()), "8900000000000000000".into()).await,
        "100100",
    );
    let foreign = sim.other_account_iccids()[0].clone();
    assert_fault(&send(vec![], Some("x".into()), foreign).await, "400201");
    assert_eq!(sim.sms_log().len(), 3);
    fields.clear();
}

/// service, operation, fields, request attributes.
type Call<'a> = (&'a str, &'a str, Vec<Node>, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn every_operation_with_every_style() {
    let sim = sim().await;
    let active = sim_in(&sim, "activated");
    for (i, style) in [Style::Prefix("sch"), Style::Prefix("jws"), Style::Default]
        .into_iter()
        .enumerate()
    {
        let calls: [Call<'_>; 4] = [
            (
                "terminal",
                "GetTerminalDetails",
                vec![iccids(&[&active.iccid])],
                &[],
            ),
            (
                "terminal",
                "EditTerminal",
                edit(&active.iccid, 3, "ACTIVATED_NAME", None),
                &[],
            ),
            (
                "billing",
                "GetTerminalUsage",
                vec![
                    leaf("iccid", active.iccid.clone()),
                    leaf("cycleStartDate", format!("{}Z", cycle(1))),
                ],
                &[],
            ),
            (
                "Sms",
                "SendSMS",
                vec![
                    leaf("sentToIccid", active.iccid.clone()),
                    leaf("messageText", format!("style {i}")),
                ],
                &[("messageTextEncoding", "LITERAL")],
            ),
        ];
        for (service, op, fields, attrs) in calls {
            let message_id = format!("{op}-{i}");
            let envelope =
                soap_request(style, &SoapAuth::default(), op, &message_id, attrs, &fields);
            let response = soap_post(&sim, service, &envelope).await.unwrap();
            assert_eq!(response.status, 200, "{style:?} {op}: {}", response.body);
            assert!(
                response.body.contains(&format!("<ns2:{op}Response")),
                "{}",
                response.body
            );
            assert_eq!(jasper_text(&response.body, "correlationId"), message_id);
        }
    }
    assert_eq!(sim.sms_log().len(), 3);
    let stats = sim.stats();
    for op in [
        "GetTerminalDetails",
        "EditTerminal",
        "GetTerminalUsage",
        "SendSMS",
    ] {
        assert_eq!(
            stats.operations.get(&format!("soap:{op}")),
            Some(&3),
            "{op}"
        );
    }
}
