//! People who sign in: password hashing (argon2id), the password and email rules, session
//! tokens, and the sign-in check with its throttling (counted in the store, so that replicas
//! share the counts).

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::crypto::{self, CryptoError};
use crate::store::{Role, Store, StoreError, User};

/// Shortest accepted password, characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, characters (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_CHARS: usize = 200;

/// Failed sign-ins allowed per account within [`THROTTLE_WINDOW`].
pub const ACCOUNT_FAILURES: u32 = 5;
/// Failed sign-ins allowed per client address within [`THROTTLE_WINDOW`].
pub const ADDRESS_FAILURES: u32 = 30;
/// The window the failures are counted in.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The message of every failed sign-in, whatever failed (no such user, wrong password,
/// disabled): nothing tells which.
pub const SIGN_IN_FAILED: &str = "email or password is wrong";

/// Why a user cannot be created or a password set.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The email does not look like one.
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    /// The password is too short or too long.
    #[error(
        "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters (this one has {0})"
    )]
    BadPassword(usize),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// argon2id with OWASP's parameters (Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the password rules (length in characters).
pub fn check_password(password: &str) -> Result<(), UserError> {
    let n = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(UserError::BadPassword(n))
    }
}

/// A PHC string of `password` (argon2id, a fresh random salt); checks the password rules first.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    check_password(password)?;
    let salt_bytes = crypto::random_bytes::<16>().map_err(|e| UserError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| UserError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (a corrupt hash matches nothing).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when there is no such user, so that a wrong email costs as much
/// time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, matches nothing").unwrap_or_default())
}

/// Checks the email shape: one `@`, something on each side, no spaces, at most 254 characters.
pub fn check_email(email: &str) -> Result<(), UserError> {
    let email = email.trim();
    let ok = email.len() <= 254
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(UserError::BadEmail(email.to_owned()))
    }
}

/// Creates a user of the org with `password` (checked, hashed).
pub async fn create_user<S: Store>(
    store: &S,
    org_id: i64,
    email: &str,
    role: Role,
    password: &str,
) -> Result<User, UserError> {
    check_email(email)?;
    let hash = hash_password(password)?;
    Ok(store.create_user(org_id, email, role, &hash).await?)
}

/// A new session token (256 random bits, hex) and the hash the store keeps of it.
pub fn new_session_token() -> Result<(String, Vec<u8>), CryptoError> {
    let token = crypto::hex(&crypto::random_bytes::<32>()?);
    let hash = session_hash(&token);
    Ok((token, hash))
}

/// What the store keeps of a session token: its SHA-256.
pub fn session_hash(token: &str) -> Vec<u8> {
    crypto::key_hash(&format!("session:{token}"))
}

/// The anti-forgery token of the session with `token`: derived from it (never stored), so
/// every replica computes the same, and knowing it reveals nothing of the session token.
pub fn csrf_token(token: &str) -> String {
    crypto::hex(&crypto::key_hash(&format!("csrf:{token}"))[..16])
}

/// The outcome of a sign-in.
#[derive(Debug)]
pub enum SignIn {
    /// The password is right: the user, to open a session for.
    Ok(User),
    /// Wrong email, wrong password or a disabled user: [`SIGN_IN_FAILED`].
    Failed,
    /// Too many failures for this account or this address: try again later.
    Throttled,
}

/// Checks a sign-in, counting failures per account and per client `address` in the store
/// (see [`ACCOUNT_FAILURES`], [`ADDRESS_FAILURES`]); a success clears the account's count.
/// Logged without the password.
pub async fn sign_in<S: Store>(
    store: &S,
    email: &str,
    password: &str,
    address: &str,
) -> Result<SignIn, StoreError> {
    let account_key = format!("account:{}", email.trim().to_lowercase());
    let address_key = format!("address:{address}");
    if store.login_failures(&account_key, THROTTLE_WINDOW).await? >= ACCOUNT_FAILURES
        || store.login_failures(&address_key, THROTTLE_WINDOW).await? >= ADDRESS_FAILURES
    {
        tracing::warn!(%address, "sign-in refused: too many failed attempts");
        return Ok(SignIn::Throttled);
    }
    let found = store.user_credentials(email).await?;
    let password = password.to_owned();
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |c| c.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    match found {
        Some(c) if matches && !c.user.disabled => {
            store.clear_login_failures(&account_key).await?;
            tracing::info!(user = %c.user.id, "signed in");
            Ok(SignIn::Ok(c.user))
        }
        _ => {
            store
                .record_login_failure(&account_key, THROTTLE_WINDOW)
                .await?;
            store
                .record_login_failure(&address_key, THROTTLE_WINDOW)
                .await?;
            tracing::info!(%address, "sign-in failed");
            Ok(SignIn::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        // Salted: the same password hashes differently.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
        assert!(matches!(
            hash_password("short"),
            Err(UserError::BadPassword(5))
        ));
    }

    #[test]
    fn emails_are_checked_for_their_shape() {
        for good in ["a@b.co", "ann.smith+x@example.com"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a b@c.co", "a@b@c.co"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_csrf_token_is_per_session_and_not_the_token() {
        let (t1, h1) = new_session_token().unwrap();
        let (t2, _) = new_session_token().unwrap();
        assert_eq!(h1, session_hash(&t1));
        assert_ne!(csrf_token(&t1), csrf_token(&t2));
        assert_eq!(csrf_token(&t1), csrf_token(&t1));
        assert!(!csrf_token(&t1).contains(&t1));
    }
}
