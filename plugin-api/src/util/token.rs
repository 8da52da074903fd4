//! A cache of OAuth-style access tokens.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use super::SingleFlight;
use crate::{ErrorKind, Host, PluginError};

/// An access token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The token itself (a secret: never log it).
    pub value: String,
    /// When it stops being valid, in milliseconds since the Unix epoch (host clock).
    pub expires_at_unix_ms: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .finish()
    }
}

impl Token {
    /// A token valid for `lifetime` from `now_unix_ms`.
    pub fn new(value: impl Into<String>, now_unix_ms: i64, lifetime: Duration) -> Token {
        Token {
            value: value.into(),
            expires_at_unix_ms: now_unix_ms
                .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// Access tokens by key, kept in the plugin's memory: one refresh at a time per key (callers
/// arriving during a refresh wait for it), a refresh `refresh_before` the expiry (or half-way
/// through the token's life, for tokens that live less than twice that), and
/// [`TokenCache::with_token`] to retry a call once with a new token when the upstream refuses
/// the cached one.
///
/// Key it on the account *and the credentials* (e.g. the call's `account_key` and the user
/// name and password the token is obtained with): orgs that share an account key but hold
/// different credentials must not share a token.
pub struct TokenCache {
    /// Each token with the time it is due for a refresh.
    tokens: Mutex<HashMap<String, (Token, i64)>>,
    refreshes: SingleFlight<String, Token>,
    refresh_before: Duration,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("refresh_before", &self.refresh_before)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TokenCache {
    /// An empty cache that refreshes tokens `refresh_before` their expiry.
    pub fn new(refresh_before: Duration) -> TokenCache {
        TokenCache {
            tokens: Mutex::new(HashMap::new()),
            refreshes: SingleFlight::new(),
            refresh_before,
        }
    }

    /// The cached token of `key` if it is not due for a refresh, else a new one from `fetch`
    /// (shared with every caller of `key` that arrives while it runs).
    pub async fn get<F, Fut>(&self, host: &Host, key: &str, fetch: F) -> Result<Token, PluginError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, PluginError>>,
    {
        let now = host.now_unix_ms()?;
        if let Some((t, refresh_at)) = lock(&self.tokens).get(key) {
            if now < *refresh_at {
                return Ok(t.clone());
            }
        }
        self.refreshes
            .run(key.to_owned(), || async {
                let token = fetch().await?;
                let margin = i64::try_from(self.refresh_before.as_millis()).unwrap_or(i64::MAX);
                let half_life = token.expires_at_unix_ms.saturating_sub(now) / 2;
                let refresh_at = token.expires_at_unix_ms - margin.min(half_life.max(0));
                lock(&self.tokens).insert(key.to_owned(), (token.clone(), refresh_at));
                Ok(token)
            })
            .await
    }

    /// Drops the cached token of `key` if it is still `value` (a token that was refreshed in
    /// the meantime is kept).
    pub fn forget(&self, key: &str, value: &str) {
        let mut tokens = lock(&self.tokens);
        if tokens.get(key).is_some_and(|(t, _)| t.value == value) {
            tokens.remove(key);
        }
    }

    /// Runs `call` with the token of `key`; when it fails with `unauthorized` (the upstream
    /// refused the token: expired early, revoked), forgets that token, gets a new one and runs
    /// `call` once more. A second refusal is returned as it is.
    pub async fn with_token<T, F, Fut, C, CFut>(
        &self,
        host: &Host,
        key: &str,
        fetch: F,
        mut call: C,
    ) -> Result<T, PluginError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, PluginError>>,
        C: FnMut(String) -> CFut,
        CFut: Future<Output = Result<T, PluginError>>,
    {
        let token = self.get(host, key, &fetch).await?;
        match call(token.value.clone()).await {
            Err(e) if e.kind == ErrorKind::Unauthorized => {
                self.forget(key, &token.value);
                let fresh = self.get(host, key, &fetch).await?;
                call(fresh.value).await
            }
            other => other,
        }
    }
}
