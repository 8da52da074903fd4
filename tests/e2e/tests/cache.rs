//! The host's view cache (overview declares `fresh_for_secs: 60`): a repeat is served without
//! calling Jasper, and an action on the device drops it.

use serde_json::json;

use crate::support::{
    Api, Linking, call, expect_ok, fast_org, host, lift_limits, sim, sim_of, sims_with_status,
};

async fn cache(api: Api) {
    let sim = sim().await;
    lift_limits(&sim);
    let host = host(Linking::Static, 1000).await;
    let rt = &host.rt;
    let org = fast_org(&sim, api);
    let iccids = sims_with_status(&sim, "activated", 2);
    let (iccid, other) = (&iccids[0], &iccids[1]);

    let first = expect_ok(call(rt, &org, iccid, "overview", json!({})).await, "first");
    assert_eq!(first["status"], "activated");
    let requests = sim.stats().requests;
    assert!(requests > 0);

    // Served from the cache: the simulator sees nothing, and the result (with its as_of) is the
    // first one.
    let second = expect_ok(call(rt, &org, iccid, "overview", json!({})).await, "second");
    assert_eq!(second, first);
    assert_eq!(sim.stats().requests, requests, "the repeat reached Jasper");

    // Keys: another device, or other org settings (another account), are not served from it.
    expect_ok(call(rt, &org, other, "overview", json!({})).await, "other");
    let after_other = sim.stats().requests;
    assert!(after_other > requests, "another device must reach Jasper");
    let wrong = {
        let mut o = org.clone();
        o["username"] = json!("someone-else");
        o
    };
    let e = call(rt, &wrong, iccid, "overview", json!({})).await;
    assert!(
        e.is_err(),
        "other credentials were served from the cache: {e:?}"
    );
    let after_wrong = sim.stats().requests;
    assert!(after_wrong > after_other);

    // An action on the device drops its cached views: the next overview is fresh.
    expect_ok(
        call(
            rt,
            &org,
            iccid,
            "set_status",
            json!({"status": "deactivated"}),
        )
        .await,
        "deactivate",
    );
    assert_eq!(sim_of(&sim, iccid).status, "deactivated");
    let after_action = sim.stats().requests;
    let third = expect_ok(call(rt, &org, iccid, "overview", json!({})).await, "third");
    assert_eq!(
        third["status"], "deactivated",
        "a stale overview after the action"
    );
    assert!(sim.stats().requests > after_action);
    assert_ne!(third["as_of"], first["as_of"]);

    // The other device's entry survived the action.
    let before = sim.stats().requests;
    expect_ok(
        call(rt, &org, other, "overview", json!({})).await,
        "other again",
    );
    assert_eq!(
        sim.stats().requests,
        before,
        "another device's cache entry was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_soap() {
    cache(Api::Soap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_rest() {
    cache(Api::Rest).await;
}
