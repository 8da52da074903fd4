//! The devext service: storage, tenants and keys, and the HTTP API over the runtime.

pub mod api;
pub mod chart;
pub mod crypto;
pub mod dashboard;
pub mod jobs;
pub mod lookup;
pub mod memo;
pub mod metrics;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;

use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

pub use api::{App, WebConfig, router};
pub use store::{SqliteStore, Store};

/// Serves the API on `listener` until `shutdown` completes; then stops accepting, marks the
/// service not ready, and lets in-flight requests finish (each operation is bounded by its
/// deadline). First brings the device lookup index up to the loaded plugins
/// ([`App::reindex_lookups`]), and warns, in the background, about devices that name a plugin
/// that is not loaded ([`App::warn_unloaded_extensions`]).
pub async fn serve<S: Store>(
    listener: TcpListener,
    app: Arc<App<S>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    app.reindex_lookups().await.map_err(std::io::Error::other)?;
    // A scan of every device, only to warn: it runs beside the service, not before it.
    let scan = app.clone();
    tokio::spawn(async move {
        if let Err(e) = scan.warn_unloaded_extensions().await {
            tracing::warn!(error = %e, "cannot check the devices for plugins that are not loaded");
        }
    });
    // Bulk jobs run beside the requests, from the store (also those a previous run left).
    let runner = jobs::runner::start(&app);
    let state = app.clone();
    let signal = async move {
        shutdown.await;
        state.ready.store(false, Ordering::Relaxed);
        tracing::info!("shutting down: finishing in-flight requests");
    };
    // Answers are small and written whole: send them at once rather than let Nagle's
    // algorithm hold a segment for the peer's (possibly delayed) acknowledgement.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
    });
    // The peer's address: sign-in failures are counted per client address.
    let served = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await;
    // The items in flight finish (each bounded by its call's deadline); the rest wait in the
    // store for the next run or another replica.
    runner.stop().await;
    served
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// An address the service cannot listen on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why (in use, not permitted, ...).
    pub source: std::io::Error,
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}
