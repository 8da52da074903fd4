//! Every operation over the SOAP API, end to end through the fake host.

use devext_jasper::Jasper;
use devext_plugin_api::{ErrorKind, json};

use crate::support::*;

const EP: &str = "https://api.jasper.example";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

#[tokio::test(start_paused = true)]
async fn overview_reads_get_terminal_details() {
    let fake = FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "ACTIVATION_READY_NAME")));
    let plugin = Jasper::default();
    let mut out = invoke(&plugin, &fake, &soap_org(EP), ICCID, "overview", json!({}))
        .await
        .unwrap();
    // The host stamps the view (it declares `fresh_for_secs`) when its answer came.
    assert_eq!(out["as_of"], "2023-11-14T22:13:20.020Z");
    out.as_object_mut().unwrap().remove("as_of");
    assert_eq!(
        out,
        json!({
            "iccid": ICCID,
            "api": "soap",
            "status": "activation_ready",
            "status_label": "Activation Ready",
            "upstream_status": "ACTIVATION_READY_NAME",
            "rate_plan": "IoT 10MB",
            "month_to_date": {"data_bytes": 3_500_000, "sms_messages": 4, "voice_seconds": 61},
            "overage_limit": {"reached": true, "override_mode": "default"},
            "date_added": "2015-05-15T09:27:33.069Z",
            "date_modified": "2016-06-29T00:21:33.339Z"
        })
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "one GetTerminalDetails");
    let req = &seen[0].req;
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, format!("{EP}/ws/service/terminal"));
    assert_eq!(
        header(req, "SOAPAction"),
        Some("\"http://api.jasperwireless.com/ws/service/terminal/GetTerminalDetails\"")
    );
    assert!(req.timeout_ms.is_some_and(|t| t <= 30_000));
    // The WS-Security header carries the credentials, escaped, read back namespace-aware.
    let root = devext_jasper::xml::parse(req.body.as_deref().unwrap()).unwrap();
    let token = root.children[0].children[0].children[0].clone();
    assert!(token.is(WSSE, "UsernameToken"));
    assert_eq!(token.children[1].text, "s3cret<&>pw");
    let op = soap_op(req);
    assert!(op.is(JASPER_NS, "GetTerminalDetailsRequest"));
    let names: Vec<&str> = op.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["messageId", "version", "licenseKey", "iccids"]);
    assert_eq!(op.child_text(JASPER_NS, "licenseKey"), Some("LIC-KEY-1"));
}

#[tokio::test(start_paused = true)]
async fn message_ids_are_fresh_per_request() {
    let fake = FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "ACTIVATED_NAME")));
    let plugin = Jasper::default();
    for _ in 0..3 {
        invoke(&plugin, &fake, &soap_org(EP), ICCID, "overview", json!({}))
            .await
            .unwrap();
    }
    let mut ids: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| {
            soap_op(&s.req)
                .child_text(JASPER_NS, "messageId")
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn unknown_statuses_and_missing_terminals() {
    let fake = FakeHost::new(|_, _| Reply::ok(terminal_details(ICCID, "RESTORED_BY_ADMIN_NAME")));
    let out = invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "restored_by_admin");
    assert_eq!(out["status_label"], "Restored By Admin");

    let empty =
        FakeHost::new(|_, _| Reply::ok(soap_response("GetTerminalDetails", "<ns2:terminals/>")));
    let e = invoke(
        &Jasper::default(),
        &empty,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.message.contains("ICCID not in this Jasper account"),
        "{}",
        e.message
    );

    let fault = FakeHost::new(|_, _| soap_fault("100100", ""));
    let e = invoke(
        &Jasper::default(),
        &fault,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(fault.requests(), 1, "a definitive answer is not retried");

    let creds = FakeHost::new(|_, _| soap_fault("400200", ""));
    let e = invoke(
        &Jasper::default(),
        &creds,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(e.message.starts_with("credentials rejected"));
}

#[tokio::test(start_paused = true)]
async fn set_status_sends_edit_terminal_change_type_3() {
    let fake = FakeHost::new(|_, _| {
        Reply::ok(soap_response(
            "EditTerminal",
            &format!(
                "<ns2:iccid>{ICCID}</ns2:iccid><ns2:effectiveDate>2030-01-31Z</ns2:effectiveDate>"
            ),
        ))
    });
    let plugin = Jasper::default();
    let out = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "set_status",
        json!({"status": "deactivated", "effective_date": "2030-01-31"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"iccid": ICCID, "api": "soap", "status": "deactivated", "effective_date": "2030-01-31", "scheduled": true})
    );
    let req = &fake.seen()[0].req;
    assert_eq!(
        header(req, "SOAPAction"),
        Some("\"http://api.jasperwireless.com/ws/service/terminal/EditTerminal\"")
    );
    let op = soap_op(req);
    assert!(op.is(JASPER_NS, "EditTerminalRequest"));
    assert_eq!(op.child_text(JASPER_NS, "iccid"), Some(ICCID));
    assert_eq!(
        op.child_text(JASPER_NS, "effectiveDate"),
        Some("2030-01-31Z")
    );
    assert_eq!(
        op.child_text(JASPER_NS, "targetValue"),
        Some("DEACTIVATED_NAME")
    );
    assert_eq!(op.child_text(JASPER_NS, "changeType"), Some("3"));

    let now = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "set_status",
        json!({"status": "activated"}),
    )
    .await
    .unwrap();
    assert_eq!(now["scheduled"], false);
    assert_eq!(now["effective_date"], json!(null));
    assert_eq!(
        soap_op(&fake.seen()[1].req).child(JASPER_NS, "effectiveDate"),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn refused_transitions_are_conflicts() {
    for (code, detail) in [
        ("100300", "SIMSTATUS_INVALID_TRANSITION"),
        ("100300", ""),
        ("100300", "SIMSTATUS_TRANSITION_UNAUTHORIZED"),
    ] {
        let fake = FakeHost::new(move |_, _| soap_fault(code, detail));
        let e = invoke(
            &Jasper::default(),
            &fake,
            &soap_org(EP),
            ICCID,
            "set_status",
            json!({"status": "activation_ready"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{code} {detail}");
        assert!(e.message.contains("refused"), "{}", e.message);
        assert_eq!(fake.requests(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn usage_reads_get_terminal_usage_on_billing() {
    let fake = FakeHost::new(|_, _| {
        Reply::ok(soap_response(
            "GetTerminalUsage",
            &format!(
                "<ns2:iccid>{ICCID}</ns2:iccid><ns2:totalDataVolume>12.345678</ns2:totalDataVolume>\
                 <ns2:billableDataVolume>10</ns2:billableDataVolume><ns2:cycleStartDate>2016-08-01Z</ns2:cycleStartDate>\
                 <ns2:billable>true</ns2:billable><ns2:totalSMSVolume>9</ns2:totalSMSVolume>\
                 <ns2:billableSMSVolume>8</ns2:billableSMSVolume><ns2:totalVoiceVolume>300</ns2:totalVoiceVolume>\
                 <ns2:billableVoiceVolume>240</ns2:billableVoiceVolume><ns2:ratePlan>IoT 10MB</ns2:ratePlan>"
            ),
        ))
    });
    let out = invoke(
        &Jasper::default(),
        &fake,
        &soap_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2016-08-01"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({
            "iccid": ICCID, "api": "soap", "cycle_start_date": "2016-08-01",
            "cycle_start": "2016-08-01T00:00:00Z", "cycle_end": null, "cycle_billed": true,
            "rate_plan": "IoT 10MB",
            "total": {"data_bytes": 12_345_678, "sms_messages": 9, "voice_seconds": 300},
            "billable": {"data_bytes": 10_000_000, "sms_messages": 8, "voice_seconds": 240},
            "billable_unavailable_reason": null
        })
    );
    let req = &fake.seen()[0].req;
    assert_eq!(req.url, format!("{EP}/ws/service/billing"));
    assert_eq!(
        header(req, "SOAPAction"),
        Some("\"http://api.jasperwireless.com/ws/service/billing/GetTerminalUsage\"")
    );
    let op = soap_op(req);
    assert_eq!(
        op.child_text(JASPER_NS, "cycleStartDate"),
        Some("2016-08-01Z")
    );

    let none = FakeHost::new(|_, _| soap_fault("200200", ""));
    let e = invoke(
        &Jasper::default(),
        &none,
        &soap_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2016-08-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.message.starts_with("no usage for that cycle"),
        "{}",
        e.message
    );
}

#[tokio::test(start_paused = true)]
async fn send_sms_checks_length_first_and_escapes() {
    let fake = FakeHost::new(|_, _| {
        Reply::ok(soap_response(
            "SendSMS",
            "<ns2:smsMsgId>5551234</ns2:smsMsgId>",
        ))
    });
    let plugin = Jasper::default();
    let text = "<&> ".repeat(40); // exactly 160 characters
    assert_eq!(text.chars().count(), 160);
    let out = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "send_sms",
        json!({"message": text}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"iccid": ICCID, "api": "soap", "message_id": "5551234", "characters": 160})
    );
    let req = &fake.seen()[0].req;
    assert_eq!(req.url, format!("{EP}/ws/service/Sms"));
    assert_eq!(
        header(req, "SOAPAction"),
        Some("\"http://api.jasperwireless.com/ws/service/sms/SendSMS\"")
    );
    assert!(req.body.as_deref().unwrap().contains("&lt;&amp;&gt;"));
    let op = soap_op(req);
    assert!(op.is(JASPER_NS, "SendSMSRequest"));
    assert_eq!(op.attr(None, "messageTextEncoding"), Some("LITERAL"));
    assert_eq!(op.child(JASPER_NS, "messageText").unwrap().text, text);
    assert_eq!(op.child_text(JASPER_NS, "sentToIccid"), Some(ICCID));

    // 161 characters (multi-byte ones count as one): refused before anything is sent.
    let long = "é".repeat(161);
    let e = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "send_sms",
        json!({"message": long}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("at most 160"), "{}", e.message);
    assert_eq!(fake.requests(), 1);

    let inactive = FakeHost::new(|_, _| soap_fault("500700", ""));
    let e = invoke(
        &plugin,
        &inactive,
        &soap_org(EP),
        ICCID,
        "send_sms",
        json!({"message": "hi"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
}

#[tokio::test(start_paused = true)]
async fn set_rate_plan_and_unknown_plans() {
    let fake = FakeHost::new(|_, _| Reply::ok(soap_response("EditTerminal", "")));
    let plugin = Jasper::default();
    let out = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "set_rate_plan",
        json!({"rate_plan": "IoT <Big> & Co"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"iccid": ICCID, "api": "soap", "rate_plan": "IoT <Big> & Co", "effective_date": null, "scheduled": false})
    );
    let op = soap_op(&fake.seen()[0].req);
    assert_eq!(op.child_text(JASPER_NS, "changeType"), Some("4"));
    assert_eq!(
        op.child_text(JASPER_NS, "targetValue"),
        Some("IoT <Big> & Co")
    );

    for (code, detail) in [("100520", ""), ("100300", "RATEPLAN_INVALID")] {
        let bad = FakeHost::new(move |_, _| soap_fault(code, detail));
        let e = invoke(
            &plugin,
            &bad,
            &soap_org(EP),
            ICCID,
            "set_rate_plan",
            json!({"rate_plan": "Nope"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{code}");
        assert!(e.message.contains("unknown rate plan"));
    }
    let e = invoke(
        &plugin,
        &fake,
        &soap_org(EP),
        ICCID,
        "set_rate_plan",
        json!({"rate_plan": "a,b"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(fake.requests(), 1, "refused before sending");
}

#[tokio::test(start_paused = true)]
async fn garbage_answers_are_upstream_errors() {
    for body in [
        "<html><head><title>Error</title></head><body>Service Unavailable</body></html>",
        "<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><ns2:GetTerminalDetailsResponse xmlns:ns2=\"http://api.jasperwireless.com/ws/schema\"><ns2:terminals>",
        "{\"not\": \"xml\"}",
        "",
    ] {
        let fake = FakeHost::new(move |_, _| Reply::ok(body));
        let e = invoke(
            &Jasper::default(),
            &fake,
            &soap_org(EP),
            ICCID,
            "overview",
            json!({}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream, "{body}");
    }
}
