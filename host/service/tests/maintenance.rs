//! Retention and key rotation on the backend of the binary (SQLite in `main.rs`, PostgreSQL in
//! `postgres.rs`): old rows go, recent ones stay, in batches; a store opened before a rotation
//! refuses to write secrets under its old key.

use std::time::Duration;

use chrono::Utc;
use devext_service::crypto::SecretKey;
use devext_service::store::retention::{Retention, RetentionPolicy, prune};
use devext_service::store::{
    AnyStore, ExtensionSettings, IdempotencyClaim, NewAudit, Role, SessionLimits, Store, StoreError,
};
use devext_service::testing::{Backend, fresh_postgres_database};
use serde_json::{Map, json};

/// Where a store of this binary's backend lives: a file in `dir`, or a fresh database.
async fn location(name: &str, dir: &std::path::Path) -> String {
    match crate::BACKEND {
        Backend::Sqlite => dir
            .join(format!("{name}.db"))
            .to_string_lossy()
            .into_owned(),
        Backend::Postgres => match fresh_postgres_database(name).await {
            Some(url) => url,
            None => {
                println!("skipped: PostgreSQL not installed");
                std::process::exit(0);
            }
        },
    }
}

async fn audit(s: &AnyStore, org: i64, detail: &str) {
    s.audit(
        org,
        NewAudit {
            action: "test",
            outcome: "ok",
            detail,
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Sleeps past the store's millisecond time stamps.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(15)).await;
}

#[tokio::test]
async fn retention_deletes_old_rows_in_batches_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = location("retention", dir.path()).await;
    let s = AnyStore::open(&db, Some(SecretKey::generate().unwrap()))
        .await
        .unwrap();
    let org = s.create_org("a").await.unwrap().id;
    let user = s
        .create_user(org, "ann@example.com", Role::Viewer, "$h")
        .await
        .unwrap();
    // Old: 5 audit entries, 3 idempotency records (one still claimed), 2 sessions.
    for i in 0..5 {
        audit(&s, org, &format!("old {i}")).await;
    }
    for k in ["old-1", "old-2", "old-3"] {
        assert_eq!(
            s.claim_idempotency(org, k, "f").await.unwrap(),
            IdempotencyClaim::Claimed
        );
    }
    s.complete_idempotency(org, "old-1", 200, "{}")
        .await
        .unwrap();
    s.complete_idempotency(org, "old-2", 200, "{}")
        .await
        .unwrap();
    s.create_session(&user.id, b"old-a").await.unwrap();
    s.create_session(&user.id, b"old-b").await.unwrap();
    tick().await;
    let cutoff = Utc::now();
    tick().await;
    // Recent: 3 audit entries, 2 idempotency records, 1 session.
    for i in 0..3 {
        audit(&s, org, &format!("new {i}")).await;
    }
    for k in ["new-1", "new-2"] {
        s.claim_idempotency(org, k, "f").await.unwrap();
        s.complete_idempotency(org, k, 201, "{}").await.unwrap();
    }
    s.create_session(&user.id, b"new-a").await.unwrap();

    // In batches of 2: 2, 2, 1, then nothing.
    let mut batches = Vec::new();
    loop {
        let n = s.prune_audit_before(cutoff, 2).await.unwrap();
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, vec![2, 2, 1]);
    let left: Vec<String> = s
        .audit_log(org, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(left, vec!["new 2", "new 1", "new 0"]);
    assert_eq!(s.prune_audit_before(cutoff, 2).await.unwrap(), 0);

    // The SQLite store has no claim lease, so its unfinished old claim goes too; PostgreSQL
    // keeps a claim its replica renews (this store's own, alive).
    let expected = match crate::BACKEND {
        Backend::Sqlite => 3,
        Backend::Postgres => 2,
    };
    let mut idem = 0;
    loop {
        let n = s.prune_idempotency_before(cutoff, 2).await.unwrap();
        idem += n;
        if n < 2 {
            break;
        }
    }
    assert_eq!(idem, expected);
    // A pruned key is new again; a recent one still answers what it answered.
    assert_eq!(
        s.claim_idempotency(org, "old-1", "f").await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        s.claim_idempotency(org, "new-1", "f").await.unwrap(),
        IdempotencyClaim::Done {
            status: 201,
            body: "{}".into()
        }
    );

    // Sessions unused since before the cutoff are expired under an idle limit that ends there.
    let limits = SessionLimits::default();
    let far_past = chrono::DateTime::<Utc>::MIN_UTC;
    assert_eq!(
        s.prune_sessions_before(cutoff, far_past, 10).await.unwrap(),
        2
    );
    assert!(s.session(b"old-a", limits).await.unwrap().is_none());
    assert!(s.session(b"old-b", limits).await.unwrap().is_none());
    assert!(s.session(b"new-a", limits).await.unwrap().is_some());

    // The policy as `devext serve` runs it: periods back from now.
    audit(&s, org, "newest").await;
    let keep_all = RetentionPolicy {
        audit: Some(Duration::from_secs(3600)),
        idempotency: Some(Duration::from_secs(3600)),
        ..RetentionPolicy::default()
    };
    let pruned = prune(&s, &keep_all).await.unwrap();
    assert_eq!(
        (pruned.audit, pruned.idempotency, pruned.sessions),
        (0, 0, 0)
    );
    tick().await;
    let everything = RetentionPolicy {
        audit: Some(Duration::from_millis(1)),
        idempotency: None,
        sessions: None,
        batch: 2,
        pause: Duration::ZERO,
        ..RetentionPolicy::default()
    };
    let pruned = prune(&s, &everything).await.unwrap();
    assert_eq!((pruned.audit, pruned.idempotency), (4, 0));
    assert!(s.audit_log(org, None, None, 10).await.unwrap().is_empty());
}

fn settings(password: &str) -> ExtensionSettings {
    let mut secrets = Map::new();
    secrets.insert("password".into(), json!(password));
    let mut config = Map::new();
    config.insert("user".into(), json!("u"));
    ExtensionSettings {
        plugin: "meter".into(),
        enabled: true,
        config,
        secrets,
    }
}

#[tokio::test]
async fn a_store_opened_before_a_key_rotation_never_writes_secrets_under_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = location("rotation", dir.path()).await;
    let old = SecretKey::generate().unwrap();
    let new = SecretKey::generate().unwrap();
    let running = AnyStore::open(&db, Some(old.clone())).await.unwrap();
    let org = running.create_org("a").await.unwrap().id;
    let other = running.create_org("b").await.unwrap().id;
    running.put_extension(org, &settings("one")).await.unwrap();
    running
        .put_extension(other, &settings("two"))
        .await
        .unwrap();

    let admin = AnyStore::open(&db, Some(old.clone())).await.unwrap();
    assert_eq!(admin.rotate_key(&new).await.unwrap().secrets, 2);
    // Rotating again with the old key in hand is refused: it no longer opens the store.
    let e = admin.rotate_key(&new).await.unwrap_err();
    assert!(matches!(e, StoreError::KeyChanged), "{e:?}");

    // The process still running with the old key refuses to write secrets.
    let e = running
        .put_extension(org, &settings("three"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::KeyChanged), "{e:?}");
    assert!(e.to_string().contains("restart it with the new key"), "{e}");

    // The old key is refused from now on; the new one opens every secret, unchanged.
    let e = AnyStore::open(&db, Some(old)).await.unwrap_err();
    assert!(matches!(e, StoreError::WrongKey), "{e:?}");
    let reopened = AnyStore::open(&db, Some(new)).await.unwrap();
    for (o, password) in [(org, "one"), (other, "two")] {
        let s = reopened.extension(o, "meter").await.unwrap().unwrap();
        assert_eq!(s.secrets["password"], password);
        assert_eq!(s.config["user"], "u");
    }
    reopened
        .put_extension(org, &settings("four"))
        .await
        .unwrap();
    let s = reopened.extension(org, "meter").await.unwrap().unwrap();
    assert_eq!(s.secrets["password"], "four");
}
