//! What several replicas on one PostgreSQL need (this module is in the PostgreSQL binary only):
//! the key check, schema versions, concurrent start-up, change announcements, claims of a dead
//! replica, the shared limiter.

use std::time::Duration;

use devext_host::Priority;
use devext_host::limiter::{Limiter, PermitAsk};
use devext_service::crypto::SecretKey;
use devext_service::store::pg_limiter::PgLimiter;
use devext_service::store::{
    AnyStore, IdempotencyClaim, PgStore, Role, Store, StoreChange, StoreError,
};
use devext_service::testing::fresh_postgres_database;

async fn pg_only(name: &str) -> Option<String> {
    let url = fresh_postgres_database(name).await;
    if url.is_none() {
        println!("skipped: PostgreSQL not installed");
    }
    url
}

#[tokio::test]
async fn a_postgres_store_needs_its_key_and_refuses_another() {
    let Some(url) = pg_only("key").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let e = AnyStore::open(&url, None).await.unwrap_err();
    assert!(matches!(e, StoreError::KeyRequired), "{e}");
    assert!(e.to_string().contains("DEVEXT_SECRET_KEY"), "{e}");
    let s = PgStore::open(&url, key.clone()).await.unwrap();
    s.create_org("a").await.unwrap();
    drop(s);
    let e = PgStore::open(&url, SecretKey::generate().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::WrongKey), "{e}");
    // The right key opens it again, with its data.
    let s = PgStore::open(&url, key).await.unwrap();
    assert!(s.org_by_name("a").await.unwrap().is_some());
}

#[tokio::test]
async fn replicas_starting_together_on_an_empty_database_all_come_up() {
    let Some(url) = pg_only("together").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move { PgStore::open(&url, key).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().expect("every replica starts");
    }
}

#[tokio::test]
async fn a_binary_older_than_the_schema_refuses_to_start() {
    use sqlx::Connection as _;
    let Some(url) = pg_only("newer").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    drop(PgStore::open(&url, key.clone()).await.unwrap());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let e = PgStore::open(&url, key).await.unwrap_err().to_string();
    assert!(
        e.contains("schema is version 999") && e.contains("newer than this devext"),
        "{e}"
    );
}

#[tokio::test]
async fn writes_are_announced_to_the_other_replicas() {
    let Some(url) = pg_only("notify").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let a = PgStore::open(&url, key.clone()).await.unwrap();
    let b = PgStore::open(&url, key).await.unwrap();
    let mut heard = b.changes().unwrap();
    let org = a.create_org("o").await.unwrap();
    let (info, _) = a.create_key(org.id, Role::Admin, "k").await.unwrap();
    assert!(a.revoke_key(org.id, &info.id).await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(1), heard.recv())
        .await
        .expect("announced within a second")
        .unwrap();
    assert_eq!(change, StoreChange::Keys);
    let d = a
        .create_device(org.id, "d", None, &serde_json::json!({}), &[])
        .await
        .unwrap();
    assert!(a.delete_device(org.id, &d.id).await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(1), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        change,
        StoreChange::Device {
            org_id: org.id,
            id: d.id
        }
    );
}

#[tokio::test]
async fn a_claim_whose_replica_died_has_an_unknown_outcome_and_never_runs_again() {
    let Some(url) = pg_only("claims").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let a = PgStore::open(&url, key.clone()).await.unwrap();
    let b = PgStore::open(&url, key).await.unwrap();
    let org = a.create_org("o").await.unwrap();
    assert_eq!(
        a.claim_idempotency(org.id, "k", "f").await.unwrap(),
        IdempotencyClaim::Claimed
    );
    // Another replica sees it running while its claimant renews it...
    tokio::time::sleep(devext_service::store::postgres::CLAIM_LEASE + Duration::from_secs(1)).await;
    assert!(matches!(
        b.claim_idempotency(org.id, "k", "f").await.unwrap(),
        IdempotencyClaim::InProgress { .. }
    ));
    // ...and as unknown once the claimant is gone.
    drop(a);
    tokio::time::sleep(devext_service::store::postgres::CLAIM_LEASE + Duration::from_secs(1)).await;
    assert!(matches!(
        b.claim_idempotency(org.id, "k", "f").await.unwrap(),
        IdempotencyClaim::Unknown { .. }
    ));
}

#[tokio::test]
async fn the_shared_limiter_holds_across_replicas_and_frees_a_dead_ones_slot() {
    let Some(url) = pg_only("limiter").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let a = PgStore::open(&url, key.clone()).await.unwrap();
    let b = PgStore::open(&url, key).await.unwrap();
    let la = PgLimiter::new(a.pool().clone(), a.replica());
    let lb = PgLimiter::new(b.pool().clone(), b.replica());
    let ask = |wait: Duration| {
        PermitAsk::new(
            "acct",
            5,
            1,
            Priority::Interactive,
            tokio::time::Instant::now() + wait,
        )
    };
    // One in flight across both replicas.
    let held = la.acquire(ask(Duration::from_secs(5))).await.unwrap();
    let e = lb
        .acquire(ask(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(e.details["limit"], "in_flight", "{e:?}");
    la.release(&held);
    let p = lb.acquire(ask(Duration::from_secs(5))).await.unwrap();
    lb.release(&p);

    // Starts: never more than 5 in any rolling second, whichever replica asks.
    let t0 = tokio::time::Instant::now();
    let mut starts = Vec::new();
    for i in 0..12 {
        let l = if i % 2 == 0 { &la } else { &lb };
        let p = l.acquire(ask(Duration::from_secs(10))).await.unwrap();
        starts.push(t0.elapsed());
        l.release(&p);
    }
    for s in &starts {
        let in_second = starts
            .iter()
            .filter(|&&x| x <= *s && *s - x < Duration::from_millis(1000))
            .count();
        assert!(in_second <= 5, "{starts:?}");
    }

    // A back-off reported on one replica pauses the other.
    la.back_off("acct", Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t1 = tokio::time::Instant::now();
    let p = lb.acquire(ask(Duration::from_secs(5))).await.unwrap();
    assert!(
        t1.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t1.elapsed()
    );
    lb.release(&p);

    // A replica dies holding the slot: the other gets it once the lease ends.
    let _never_released = la.acquire(ask(Duration::from_secs(5))).await.unwrap();
    drop(la);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t2 = tokio::time::Instant::now();
    let p = lb.acquire(ask(Duration::from_secs(10))).await.unwrap();
    let waited = t2.elapsed();
    assert!(
        waited <= devext_service::store::pg_limiter::LEASE + Duration::from_secs(1),
        "{waited:?}"
    );
    lb.release(&p);
}
