//! Rate limiting (concurrency and per-second) and the recorded peaks.

use std::time::Duration;

use devext_jasper_sim::{FaultSettings, LimitSettings};

use crate::util::*;

/// Starts `count` identical requests at once and returns the answers.
async fn burst(
    addr: std::net::SocketAddr,
    count: usize,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> Vec<HttpResponse> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (path, headers, body) = (path.clone(), headers.clone(), body.clone());
        tasks.spawn(async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(addr, method, &path, &headers, body.as_bytes()).await
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("task").expect("answered"));
    }
    answers
}

#[tokio::test]
async fn per_second_limit_gives_real_errors_and_records_peaks() {
    let sim = sim_with(|c| {
        c.limits = LimitSettings {
            enabled: true,
            rate_per_second: 5,
            max_in_flight: 0,
        };
    })
    .await;
    let active = sim_in(&sim, "activated");

    // A REST burst of 8: 5 admitted, 3 refused with the real error.
    let auth = vec![("Authorization", basic("demo", "demo-api-key"))];
    let path = format!("/rws/api/v1/devices/{}", active.iccid);
    let answers = burst(
        sim.addr(),
        8,
        "GET",
        path.clone(),
        auth.clone(),
        String::new(),
    )
    .await;
    let (ok, refused): (Vec<_>, Vec<_>) = answers.iter().partition(|r| r.status == 200);
    assert_eq!((ok.len(), refused.len()), (5, 3));
    for over in refused {
        assert_rest_error(over, 429, "40000029");
    }
    let stats = sim.stats();
    assert_eq!(stats.requests, 8);
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(stats.max_per_second_seen, 8, "{stats:?}");
    // The control endpoint reports the same numbers.
    let control = control_get(&sim, "/_sim/stats").await.json();
    assert_eq!(control["max_per_second_seen"], 8);
    assert_eq!(control["rate_limited"], 3);
    assert_eq!(
        control["max_in_flight_seen"].as_u64(),
        Some(stats.max_in_flight_seen)
    );

    // A second later, a SOAP burst of 6: one gets fault 400101.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let envelope = details_envelope(&active.iccid);
    let headers = vec![("Content-Type", "text/xml".to_owned())];
    let answers = burst(
        sim.addr(),
        6,
        "POST",
        "/ws/service/terminal".into(),
        headers,
        envelope,
    )
    .await;
    let (ok, refused): (Vec<_>, Vec<_>) = answers.iter().partition(|r| r.status == 200);
    assert_eq!((ok.len(), refused.len()), (5, 1));
    assert_fault(refused[0], "400101");

    // A client pacing itself at 5/s is never refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.reset_stats();
    for _ in 0..6 {
        let response = rest_get(&sim, &format!("/devices/{}", active.iccid)).await;
        assert_eq!(response.status, 200, "{}", response.body);
        tokio::time::sleep(Duration::from_millis(210)).await;
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0);
    assert!(stats.max_per_second_seen <= 5, "{stats:?}");
    assert_eq!(stats.max_in_flight_seen, 1);
}

#[tokio::test]
async fn in_flight_limit() {
    let sim = sim_with(|c| {
        c.limits = LimitSettings {
            enabled: true,
            rate_per_second: 0,
            max_in_flight: 1,
        };
        c.faults = FaultSettings {
            latency_ms: 500,
            ..FaultSettings::default()
        };
    })
    .await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    let (a, b) = tokio::join!(rest_get(&sim, &path), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rest_get(&sim, &path).await
    });
    // Whichever arrives second while the first is in flight is refused.
    let (ok, refused) = if a.status == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.status, 200);
    assert_rest_error(&refused, 429, "40000029");
    let stats = sim.stats();
    assert_eq!(stats.max_in_flight_seen, 2);
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.in_flight, 0);

    // Two concurrent SOAP calls: the second gets 400101.
    let iccid = [active.iccid.as_str()];
    let (a, b) = tokio::join!(terminal_details(&sim, &iccid), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        terminal_details(&sim, &iccid).await
    });
    let (ok, refused) = if a.status == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.status, 200);
    assert_fault(&refused, "400101");
}

#[tokio::test]
async fn limits_can_be_lifted_and_changed() {
    let sim = sim_with(|c| {
        c.limits = LimitSettings {
            enabled: false,
            ..LimitSettings::default()
        };
        c.faults.latency_ms = 100;
    })
    .await;
    let active = sim_in(&sim, "activated");
    let path = format!("/devices/{}", active.iccid);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (addr, path) = (sim.addr(), format!("/rws/api/v1{path}"));
        let auth = basic("demo", "demo-api-key");
        tasks
            .spawn(async move { send(addr, "GET", &path, &[("Authorization", &auth)], b"").await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().status, 200);
    }
    let stats = sim.stats();
    assert!(stats.max_in_flight_seen >= 2, "{stats:?}");
    assert_eq!(stats.max_per_second_seen, 4);
    assert_eq!(stats.rate_limited, 0);

    // Limits changed through the control endpoint.
    let set = control(
        &sim,
        "POST",
        "/_sim/limits",
        r#"{"enabled":true,"rate_per_second":1,"max_in_flight":0}"#,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(rest_get(&sim, &path).await.status, 200);
    assert_eq!(rest_get(&sim, &path).await.status, 429);

    // Reset.
    let reset = control(&sim, "POST", "/_sim/stats/reset", "").await.json();
    assert_eq!(reset["requests"], 0);
    assert_eq!(reset["max_per_second_seen"], 0);
}
