//! Errors a client tells apart by `details.code`: an ICCID the account does not know (vs the
//! host's own `not_found`), and an effective date in the past (vs a malformed date).

use devext_jasper::Jasper;
use devext_plugin_api::{ErrorKind, json};

use crate::support::*;

const EP: &str = "https://api.jasper.example";

#[tokio::test(start_paused = true)]
async fn an_iccid_not_in_the_account_has_its_own_code() {
    let plugin = Jasper::default();
    let soap_fault_100100 = FakeHost::new(|_, _| soap_fault("100100", ""));
    let soap_empty =
        FakeHost::new(|_, _| Reply::ok(soap_response("GetTerminalDetails", "<ns2:terminals/>")));
    let rest_20000001 = FakeHost::new(|_, _| {
        Reply::status(
            404,
            r#"{"errorMessage":"Resource not found - Invalid ICCID","errorCode":"20000001"}"#,
        )
    });
    let rest_bare_404 = FakeHost::new(|_, _| Reply::status(404, r#"{"errorMessage":"nope"}"#));
    for (fake, org) in [
        (&soap_fault_100100, soap_org(EP)),
        (&soap_empty, soap_org(EP)),
        (&rest_20000001, rest_org(EP)),
        (&rest_bare_404, rest_org(EP)),
    ] {
        let e = invoke(&plugin, fake, &org, ICCID, "overview", json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.starts_with("ICCID not in this Jasper account"),
            "{}",
            e.message
        );
        assert_eq!(e.details["code"], "iccid_not_in_account", "{}", e.details);
    }
    // SOAP's access violation (another account's SIM) has a code of its own.
    let foreign = FakeHost::new(|_, _| soap_fault("400201", ""));
    let e = invoke(
        &plugin,
        &foreign,
        &soap_org(EP),
        ICCID,
        "overview",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.details["code"], "access_violation");
    assert_eq!(e.details["fault_code"], "400201", "Jasper's facts are kept");
}

#[tokio::test(start_paused = true)]
async fn an_effective_date_in_the_past_is_said_to_be_in_the_past() {
    let plugin = Jasper::default();
    let rest = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"effectiveDate is in the past","errorCode":"10000012"}"#,
        )
    });
    let soap = FakeHost::new(|_, _| soap_fault("100300", "ACTIVATION_IN_PAST"));
    for (fake, org) in [(&rest, rest_org(EP)), (&soap, soap_org(EP))] {
        for (op, input) in [
            (
                "set_status",
                json!({"status": "activated", "effective_date": "2023-11-01"}),
            ),
            (
                "set_rate_plan",
                json!({"rate_plan": "IoT 10MB", "effective_date": "2023-11-01"}),
            ),
        ] {
            let e = invoke(&plugin, fake, &org, ICCID, op, input)
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{op}");
            assert!(
                e.message.starts_with("the effective date is in the past"),
                "{op}: {}",
                e.message
            );
            assert!(!e.message.contains("format"), "{}", e.message);
            assert_eq!(e.details["code"], "effective_date_in_past");
        }
    }

    // SOAP's INVALID_EFFECTIVE_DATE does not say why: the message says what Jasper takes.
    let soap = FakeHost::new(|_, _| soap_fault("100300", "INVALID_EFFECTIVE_DATE"));
    let e = invoke(
        &plugin,
        &soap,
        &soap_org(EP),
        ICCID,
        "set_status",
        json!({"status": "deactivated", "effective_date": "2023-11-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("today or a later date"), "{}", e.message);
    assert_eq!(e.details["code"], "invalid_effective_date");

    // REST's "too far ahead" (the plugin's own 180-day check aside) and a real format error.
    let far = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"effectiveDate is more than 180 days ahead","errorCode":"10000012"}"#,
        )
    });
    let e = invoke(
        &plugin,
        &far,
        &rest_org(EP),
        ICCID,
        "set_status",
        json!({"status": "deactivated", "effective_date": "2023-12-01"}),
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("too far ahead"), "{}", e.message);
    assert_eq!(e.details["code"], "effective_date_too_far");
    let format = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"Invalid date format","errorCode":"10000012"}"#,
        )
    });
    let e = invoke(
        &plugin,
        &format,
        &rest_org(EP),
        ICCID,
        "usage",
        json!({"cycle_start_date": "2023-11-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("date format"), "{}", e.message);
}
