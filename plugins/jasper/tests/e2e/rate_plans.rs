//! The organisation's rate plans: the `rate_plans` view (org scope, from the settings) and what
//! `set_rate_plan` does with the list.

use devext_jasper::Jasper;
use devext_plugin_api::{ErrorKind, Value, json};

use crate::support::*;

const EP: &str = "https://api.jasper.example";

fn with_plans(mut org: Value, plans: &[&str]) -> Value {
    org["rate_plans"] = json!(plans);
    org
}

const PLANS: [&str; 3] = ["IoT_Basic_10MB", "IoT_Pro_1GB", "IoT 5GB, EU"];

#[tokio::test(start_paused = true)]
async fn the_view_lists_the_settings_plans_without_calling_jasper() {
    let fake = FakeHost::new(|_, _| panic!("Jasper is not called"));
    let plugin = Jasper::default();
    for org in [soap_org(EP), rest_org(EP)] {
        let out = invoke_org(
            &plugin,
            &fake,
            &with_plans(org.clone(), &PLANS),
            "rate_plans",
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"rate_plans": PLANS, "note": null}));

        // None configured: an empty list, and a note saying where to add them.
        let out = invoke_org(&plugin, &fake, &org, "rate_plans", json!({}))
            .await
            .unwrap();
        assert_eq!(out["rate_plans"], json!([]));
        let note = out["note"].as_str().expect("a note");
        assert!(
            note.contains("settings") && note.contains("rate_plans"),
            "{note}"
        );
        let out = invoke_org(
            &plugin,
            &fake,
            &with_plans(org, &[]),
            "rate_plans",
            json!({}),
        )
        .await
        .unwrap();
        assert!(out["note"].is_string(), "an empty list is no list: {out}");
    }
    assert_eq!(fake.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_name_not_in_the_list_is_refused_before_calling_jasper() {
    let fake = FakeHost::new(|_, _| panic!("Jasper is not called"));
    let plugin = Jasper::default();
    for org in [soap_org(EP), rest_org(EP)] {
        let org = with_plans(org, &PLANS);
        let e = invoke(
            &plugin,
            &fake,
            &org,
            ICCID,
            "set_rate_plan",
            json!({"rate_plan": "IoT_Gold"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.starts_with("unknown rate plan"), "{}", e.message);
        for plan in PLANS {
            assert!(e.message.contains(plan), "{}", e.message);
        }
        assert_eq!(e.details["code"], "unknown_rate_plan");
        assert_eq!(e.details["known_rate_plans"], json!(PLANS));

        // Names are exact: a case slip gets a hint.
        let e = invoke(
            &plugin,
            &fake,
            &org,
            ICCID,
            "set_rate_plan",
            json!({"rate_plan": "iot_pro_1gb"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message.contains("did you mean \"IoT_Pro_1GB\""),
            "{}",
            e.message
        );
    }
    assert_eq!(fake.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_listed_name_goes_to_jasper_and_its_refusal_names_the_list() {
    let plugin = Jasper::default();
    // Accepted.
    let ok = FakeHost::new(|_, _| Reply::ok(json!({"iccid": ICCID}).to_string()));
    let out = invoke(
        &plugin,
        &ok,
        &with_plans(rest_org(EP), &PLANS),
        ICCID,
        "set_rate_plan",
        json!({"rate_plan": "IoT 5GB, EU"}),
    )
    .await
    .unwrap();
    assert_eq!(out["rate_plan"], "IoT 5GB, EU");
    assert_eq!(ok.requests(), 1);

    // Refused by Jasper (the list is out of date): the message names the listed plans.
    let soap = FakeHost::new(|_, _| soap_fault("100520", ""));
    let rest = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"Invalid rate plan","errorCode":"10000013"}"#,
        )
    });
    for (fake, org) in [(&soap, soap_org(EP)), (&rest, rest_org(EP))] {
        let e = invoke(
            &plugin,
            fake,
            &with_plans(org, &PLANS),
            ICCID,
            "set_rate_plan",
            json!({"rate_plan": "IoT_Pro_1GB"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.starts_with("unknown rate plan"), "{}", e.message);
        for plan in PLANS {
            assert!(e.message.contains(plan), "{}", e.message);
        }
        assert!(e.message.contains("out of date"), "{}", e.message);
        assert_eq!(e.details["code"], "unknown_rate_plan");
        assert_eq!(e.details["known_rate_plans"], json!(PLANS));
        assert_eq!(fake.requests(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_list_jasper_judges_and_the_error_says_where_to_list_plans() {
    let plugin = Jasper::default();
    let soap = FakeHost::new(|_, _| soap_fault("100300", "RATEPLAN_INVALID"));
    let rest = FakeHost::new(|_, _| {
        Reply::status(
            400,
            r#"{"errorMessage":"Invalid rate plan","errorCode":"10000013"}"#,
        )
    });
    for (fake, org) in [(&soap, soap_org(EP)), (&rest, rest_org(EP))] {
        let e = invoke(
            &plugin,
            fake,
            &org,
            ICCID,
            "set_rate_plan",
            json!({"rate_plan": "Whatever"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.starts_with("unknown rate plan"), "{}", e.message);
        assert!(e.message.contains("rate_plans"), "{}", e.message);
        assert_eq!(e.details["code"], "unknown_rate_plan");
        assert!(e.details.get("known_rate_plans").is_none());
        assert_eq!(fake.requests(), 1, "Jasper was asked");
    }
}
