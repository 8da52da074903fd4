//! A burst of concurrent views for one account stays within Jasper's limits (1 in flight, 5 per
//! second, as the simulator enforces them by default) and every call still succeeds.
//!
//! The `*_strict` tests also require that the simulator refused nothing: the plugin paces
//! request starts with a margin over the rolling second Jasper counts in, so no request needs a
//! retry. (Spacing starts exactly 1000 ms apart used to let a sixth one in now and then.)

use std::time::{Duration, Instant};

use devext_host::ErrorKind;

use crate::support::{Api, Linking, call, host, org, sim};

async fn burst(api: Api, strict: bool) {
    let sim = sim().await;
    let host = host(Linking::Static, 0).await;
    let org = org(&sim, api);
    let sims: Vec<_> = sim.sims().into_iter().take(25).collect();
    assert_eq!(sims.len(), 25);
    sim.reset_stats();

    let started = Instant::now();
    let tasks: Vec<_> = sims
        .iter()
        .map(|s| {
            let (rt, org, iccid) = (host.rt.clone(), org.clone(), s.iccid.clone());
            tokio::spawn(async move {
                let result = call(&rt, &org, &iccid, "overview", serde_json::json!({})).await;
                (iccid, result, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    let elapsed = started.elapsed();

    for ((iccid, result, took), s) in results.iter().zip(&sims) {
        assert_eq!(iccid, &s.iccid);
        match result {
            Ok(out) => {
                assert_eq!(out["iccid"], s.iccid.as_str());
                assert_eq!(out["status"], s.status, "{out}");
                assert_eq!(out["rate_plan"], s.rate_plan.as_str());
            }
            Err(e) => {
                assert_ne!(e.kind, ErrorKind::RateLimited, "{iccid}: {}", e.message);
                panic!("{iccid} failed after {took:?}: {}: {}", e.kind, e.message);
            }
        }
        assert!(*took < Duration::from_secs(30), "{iccid} took {took:?}");
    }

    let stats = sim.stats();
    let per_call = match api {
        Api::Soap => 1,
        Api::Rest => 2,
    };
    let executed: u64 = stats.operations.values().sum();
    assert_eq!(executed, 25 * per_call, "{stats:?}");
    assert_eq!(stats.requests - stats.rate_limited, executed, "{stats:?}");
    assert!(stats.max_in_flight_seen <= 1, "{stats:?}");
    if strict {
        assert_eq!(
            stats.rate_limited, 0,
            "the simulator refused calls: {stats:?}"
        );
        assert!(stats.max_per_second_seen <= 5, "{stats:?}");
    }
    // Pacing, not serial slowness: 5 per second means about requests / 5 seconds.
    let floor = Duration::from_millis((executed / 5 - 1) * 1000);
    assert!(elapsed >= floor, "{elapsed:?} is faster than 5 per second");
    assert!(
        elapsed < floor + Duration::from_secs(6),
        "{elapsed:?} for {} requests",
        stats.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_soap() {
    burst(Api::Soap, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_rest() {
    burst(Api::Rest, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_soap_strict() {
    burst(Api::Soap, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_rest_strict() {
    burst(Api::Rest, true).await;
}
