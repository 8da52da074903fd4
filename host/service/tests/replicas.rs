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

#[tokio::test]
async fn a_copy_from_sqlite_holds_the_same_contents_and_refuses_a_non_empty_target() {
    use devext_service::store::{
        DeviceQuery, ExtensionSettings, LookupEntry, NewAudit, SqliteStore,
    };
    use serde_json::json;
    let Some(url) = pg_only("copy").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let src = SqliteStore::open(&db, None).await.unwrap();
    let key = SecretKey::read(&SqliteStore::key_file_for(&db)).unwrap();
    let mut keys = Vec::new();
    for name in ["acme", "globex"] {
        let org = src.create_org(name).await.unwrap();
        let (_, k) = src.create_key(org.id, Role::Admin, "admin").await.unwrap();
        let (revoked, _) = src.create_key(org.id, Role::Viewer, "old").await.unwrap();
        src.revoke_key(org.id, &revoked.id).await.unwrap();
        keys.push(k);
        let mut settings = ExtensionSettings {
            plugin: "echo".into(),
            enabled: true,
            config: serde_json::Map::new(),
            secrets: serde_json::Map::new(),
        };
        settings
            .config
            .insert("greeting".into(), json!(format!("hi {name}")));
        settings
            .secrets
            .insert("token".into(), json!(format!("secret-{name}")));
        src.put_extension(org.id, &settings).await.unwrap();
        for i in 0..3 {
            let ext = json!({"echo": {"id": format!("{name}-{i}")}});
            let lookup = [LookupEntry {
                plugin: "echo".into(),
                field: "id".into(),
                value: format!("{name}-{i}"),
            }];
            src.create_device(org.id, &format!("d{i}"), Some("t"), &ext, &lookup)
                .await
                .unwrap();
        }
        src.audit(
            org.id,
            NewAudit {
                action: "device",
                outcome: "ok",
                detail: "created",
                ..Default::default()
            },
        )
        .await
        .unwrap();
        src.claim_idempotency(org.id, "done", "f").await.unwrap();
        src.complete_idempotency(org.id, "done", 200, "{\"ok\":true}")
            .await
            .unwrap();
        src.claim_idempotency(org.id, "running", "f").await.unwrap();
        let user = src
            .create_user(org.id, &format!("ann@{name}.example"), Role::Operator, "$h")
            .await
            .unwrap();
        src.create_session(&user.id, name.as_bytes()).await.unwrap();
    }

    let dst = PgStore::open(&url, key.clone()).await.unwrap();
    let done = devext_service::store::copy::copy(&src, &dst).await.unwrap();
    assert!(done.to_string().contains("6 devices"), "{done}");

    assert_eq!(dst.orgs().await.unwrap(), src.orgs().await.unwrap());
    for (name, k) in ["acme", "globex"].iter().zip(&keys) {
        let org = src.org_by_name(name).await.unwrap().unwrap();
        assert_eq!(dst.org_by_name(name).await.unwrap(), Some(org.clone()));
        assert_eq!(
            dst.list_keys(org.id).await.unwrap(),
            src.list_keys(org.id).await.unwrap()
        );
        // Keys and secrets work on the copy (the same secret key opens them).
        assert_eq!(
            dst.authenticate(k)
                .await
                .unwrap()
                .map(|p| (p.org_id, p.role)),
            Some((org.id, Role::Admin))
        );
        assert_eq!(
            dst.extensions(org.id).await.unwrap(),
            src.extensions(org.id).await.unwrap()
        );
        let q = DeviceQuery {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            dst.devices(org.id, &q).await.unwrap(),
            src.devices(org.id, &q).await.unwrap()
        );
        let by_lookup = DeviceQuery {
            limit: 100,
            lookup: vec![LookupEntry {
                plugin: "echo".into(),
                field: "id".into(),
                value: format!("{name}-1"),
            }],
            ..Default::default()
        };
        assert_eq!(dst.devices(org.id, &by_lookup).await.unwrap().0.len(), 1);
        assert_eq!(
            dst.audit_log(org.id, None, None, 100).await.unwrap(),
            src.audit_log(org.id, None, None, 100).await.unwrap()
        );
        assert_eq!(
            dst.users(org.id).await.unwrap(),
            src.users(org.id).await.unwrap()
        );
        assert!(
            dst.session(name.as_bytes(), Default::default())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            dst.claim_idempotency(org.id, "done", "f").await.unwrap(),
            IdempotencyClaim::Done {
                status: 200,
                body: "{\"ok\":true}".into()
            }
        );
        assert!(matches!(
            dst.claim_idempotency(org.id, "running", "f").await.unwrap(),
            IdempotencyClaim::Unknown { .. }
        ));
    }
    // New rows continue after the copied ones.
    let new = dst.create_org("initech").await.unwrap();
    assert!(new.id > 2, "{new:?}");
    // A second copy finds the target in use.
    let e = devext_service::store::copy::copy(&src, &dst)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
}

#[tokio::test]
async fn on_the_shared_limiter_a_waiting_person_goes_before_bulk_jobs() {
    let Some(url) = pg_only("priority").await else {
        return;
    };
    let key = SecretKey::generate().unwrap();
    let a = PgStore::open(&url, key.clone()).await.unwrap();
    let b = PgStore::open(&url, key).await.unwrap();
    let la = std::sync::Arc::new(PgLimiter::new(a.pool().clone(), a.replica()));
    let lb = std::sync::Arc::new(PgLimiter::new(b.pool().clone(), b.replica()));
    let ask = |priority| {
        PermitAsk::new(
            "acct",
            1000,
            1,
            priority,
            tokio::time::Instant::now() + Duration::from_secs(10),
        )
    };
    for _ in 0..3 {
        let held = la.acquire(ask(Priority::Interactive)).await.unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Bulk jobs on both replicas wait first...
        for (i, l) in [&la, &lb, &la].into_iter().enumerate() {
            let (l, order) = (std::sync::Arc::clone(l), std::sync::Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let p = l.acquire(ask(Priority::Bulk)).await.unwrap();
                order.lock().unwrap().push(format!("bulk{i}"));
                tokio::time::sleep(Duration::from_millis(30)).await;
                l.release(&p);
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...then a person's call arrives on the other replica.
        let (l, o) = (std::sync::Arc::clone(&lb), std::sync::Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let p = l.acquire(ask(Priority::Interactive)).await.unwrap();
            o.lock().unwrap().push("person".to_owned());
            l.release(&p);
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        la.release(&held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order[0], "person", "{order:?}");
        assert_eq!(order.len(), 4);
    }
}
