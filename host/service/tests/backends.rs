//! The store itself on the backend of the binary (SQLite in `main.rs`, PostgreSQL in
//! `postgres.rs`); what only replicas on PostgreSQL need is in `replicas.rs`.

use std::time::Duration;

use devext_service::store::{AnyStore, IdempotencyClaim, Role, SessionLimits, Store, StoreError};
use devext_service::testing::fresh_store;

async fn store(name: &str) -> (AnyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    match fresh_store(crate::BACKEND, dir.path(), name).await {
        Some(s) => (s, dir),
        None => {
            println!("skipped: PostgreSQL not installed");
            std::process::exit(0);
        }
    }
}

#[tokio::test]
async fn users_sessions_and_login_failures_behave_alike_on_both_stores() {
    let (s, _dir) = store("users").await;
    let a = s.create_org("a").await.unwrap();
    let u = s
        .create_user(a.id, " Ann@Example.COM ", Role::Operator, "$argon2id$x")
        .await
        .unwrap();
    assert_eq!(u.email, "ann@example.com");
    let e = s
        .create_user(a.id, "ANN@example.com", Role::Viewer, "h")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let e = s
        .create_user(999, "x@example.com", Role::Viewer, "h")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    let c = s
        .user_credentials("ann@EXAMPLE.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.password_hash, "$argon2id$x");
    assert_eq!(s.users(a.id).await.unwrap(), vec![u.clone()]);

    let limits = SessionLimits::default();
    s.create_session(&u.id, b"t1").await.unwrap();
    s.create_session(&u.id, b"t2").await.unwrap();
    assert_eq!(s.session(b"t1", limits).await.unwrap().unwrap().user, u);
    assert!(
        s.set_password(a.id, &u.id, "$new", Some(b"t1"))
            .await
            .unwrap()
    );
    assert!(s.session(b"t1", limits).await.unwrap().is_some(), "kept");
    assert!(s.session(b"t2", limits).await.unwrap().is_none(), "ended");
    assert!(s.set_user_disabled(a.id, &u.id, true).await.unwrap());
    assert!(s.session(b"t1", limits).await.unwrap().is_none());
    assert!(s.user(a.id, &u.id).await.unwrap().unwrap().disabled);

    let w = Duration::from_secs(60);
    assert_eq!(s.record_login_failure("account:x", w).await.unwrap(), 1);
    assert_eq!(s.record_login_failure("account:x", w).await.unwrap(), 2);
    assert_eq!(s.login_failures("account:x", w).await.unwrap(), 2);
    s.clear_login_failures("account:x").await.unwrap();
    assert_eq!(s.login_failures("account:x", w).await.unwrap(), 0);
}

#[tokio::test]
async fn idempotency_claims_and_audit_round_trip() {
    let (s, _dir) = store("idem").await;
    let a = s.create_org("a").await.unwrap();
    assert_eq!(
        s.claim_idempotency(a.id, "k", "f").await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert!(matches!(
        s.claim_idempotency(a.id, "k", "f").await.unwrap(),
        IdempotencyClaim::InProgress { .. }
    ));
    assert_eq!(
        s.claim_idempotency(a.id, "k", "other").await.unwrap(),
        IdempotencyClaim::Mismatch
    );
    s.complete_idempotency(a.id, "k", 200, "{}").await.unwrap();
    assert_eq!(
        s.claim_idempotency(a.id, "k", "f").await.unwrap(),
        IdempotencyClaim::Done {
            status: 200,
            body: "{}".into()
        }
    );
}
