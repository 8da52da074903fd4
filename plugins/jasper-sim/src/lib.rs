//! Jasper (Cisco IoT) Control Center simulator.
//!
//! An in-memory, seeded Control Center account served on loopback through
//! both of Jasper's APIs:
//!
//! - SOAP 1.1 (`/ws/service/terminal`, `/ws/service/billing`,
//!   `/ws/service/Sms`) with WS-Security UsernameToken authentication;
//! - REST (`/rws/api/v1/...`) with HTTP Basic authentication;
//!
//! plus unauthenticated control endpoints under `/_sim/` to inspect the
//! account, read traffic statistics and inject faults. The wire format is an
//! independent implementation of the public Jasper documentation, meant to
//! catch client mistakes; see the crate's README for the rules it enforces.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = devext_jasper_sim::start(devext_jasper_sim::SimConfig::default()).await?;
//! println!("REST base: {}", sim.rest_base_url());
//! let activated = sim.sims().into_iter().find(|s| s.status == "activated");
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod account;
mod control;
mod dates;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod limits;
mod rest;
mod rng;
mod seed;
mod server;
mod soap;
mod views;
mod xml;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use account::SimStatus;
pub use faults::{FaultMode, FaultSettings};
pub use limits::LimitSettings;
pub use views::{CycleUsageView, RatePlanView, SimView, SmsView, StatsSnapshot};

use account::Account;
use faults::{Faults, PreFault};
use limits::{Admission, ApiKind, Traffic};

/// Credentials the simulated account accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// API user name (SOAP UsernameToken and REST Basic user).
    pub username: String,
    /// SOAP password (WS-Security PasswordText).
    pub password: String,
    /// SOAP license key (`licenseKey` in every request body).
    pub license_key: String,
    /// REST API key (Basic password).
    pub api_key: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            username: "demo".to_owned(),
            password: "demo-password".to_owned(),
            license_key: "demo-license".to_owned(),
            api_key: "demo-api-key".to_owned(),
        }
    }
}

/// Simulator configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Number of SIMs in the account.
    pub sims: usize,
    /// Seed of the account (same seed, same SIMs and usage).
    pub seed: u64,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Rate limits.
    pub limits: LimitSettings,
    /// Initial fault injection.
    pub faults: FaultSettings,
}

impl Default for SimConfig {
    /// `127.0.0.1:0`, 50 SIMs, seed 1, demo credentials, Cisco's limits
    /// (1 in flight, 5 per second), no faults.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sims: 50,
            seed: 1,
            credentials: Credentials::default(),
            limits: LimitSettings::default(),
            faults: FaultSettings::default(),
        }
    }
}

/// State shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) credentials: Credentials,
    account: Mutex<Account>,
    pub(crate) traffic: Traffic,
    pub(crate) faults: Faults,
}

pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    fn new(config: &SimConfig) -> anyhow::Result<Self> {
        config.faults.validate().map_err(anyhow::Error::msg)?;
        Ok(Self {
            credentials: config.credentials.clone(),
            account: Mutex::new(Account::seeded(config.sims, config.seed, Utc::now())),
            traffic: Traffic::new(config.limits),
            faults: Faults::new(config.faults.clone(), config.seed),
        })
    }

    /// Locks the account, first applying scheduled changes that are due.
    pub(crate) fn account(&self) -> MutexGuard<'_, Account> {
        let mut account = self.account.lock().unwrap_or_else(PoisonError::into_inner);
        account.apply_due(Self::now());
        account
    }

    /// The simulator's clock.
    pub(crate) fn now() -> DateTime<Utc> {
        Utc::now()
    }
}

/// Response extension: the request applied a write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteApplied;

/// Response extension: close the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// A response that makes the server close the connection without answering.
pub(crate) fn drop_connection() -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

/// Traffic accounting, rate limiting and fault injection for API requests.
async fn api_layer(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let api = if request.uri().path().starts_with("/ws/") {
        ApiKind::Soap
    } else {
        ApiKind::Rest
    };
    let (admission, _in_flight) = state.traffic.begin(api);
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if admission != Admission::Admitted {
        return rate_limited(api);
    }
    if let Some(fault) = state.faults.before() {
        state.traffic.record_fault();
        return match fault {
            PreFault::Http500 => match api {
                ApiKind::Soap => soap::server_error_response(),
                ApiKind::Rest => rest::server_error_response(),
            },
            PreFault::RateLimit => rate_limited(api),
            PreFault::Malformed => match api {
                ApiKind::Soap => soap::malformed_response(),
                ApiKind::Rest => rest::malformed_response(),
            },
            PreFault::Drop => {
                state.traffic.record_drop();
                drop_connection()
            }
        };
    }
    let response = next.run(request).await;
    if response.extensions().get::<WriteApplied>().is_some() {
        state.traffic.record_write();
        if state.faults.after_write() {
            state.traffic.record_fault();
            state.traffic.record_drop();
            return drop_connection();
        }
    }
    response
}

fn rate_limited(api: ApiKind) -> Response {
    match api {
        ApiKind::Soap => soap::rate_limit_response(),
        ApiKind::Rest => rest::rate_limit_response(),
    }
}

/// The whole application: API routes (limited, faultable) and control routes.
fn app(state: SharedState) -> Router {
    let api = Router::new()
        .route("/ws/service/{service}", axum::routing::any(soap::endpoint))
        .nest("/rws/api/v1", rest::router(state.clone()))
        // `route_layer`: unknown paths outside the APIs are plain 404s that
        // neither count as API traffic nor consume injected faults.
        .route_layer(middleware::from_fn_with_state(state.clone(), api_layer));
    Router::new()
        .merge(api)
        .nest("/_sim", control::router())
        .with_state(state)
}

/// Starts the simulator on the caller's tokio runtime.
///
/// The server runs until [`RunningSim::shutdown`] is called or the
/// [`RunningSim`] is dropped.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    let state = Arc::new(AppState::new(&config)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let (shutdown, signal) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, app(state.clone()), signal));
    Ok(RunningSim {
        addr,
        state,
        config,
        shutdown,
        task: Some(task),
    })
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    state: SharedState,
    config: SimConfig,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// The bound address (with the real port when 0 was requested).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: the "API endpoint" to configure in a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/rws/api/v1`.
    pub fn rest_base_url(&self) -> String {
        format!("{}/rws/api/v1", self.base_url())
    }

    /// SOAP endpoint of a service: `terminal`, `billing` or `sms`.
    pub fn soap_url(&self, service: &str) -> String {
        format!("{}/ws/service/{service}", self.base_url())
    }

    /// The configuration the simulator was started with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The accepted credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.config.credentials
    }

    /// Every SIM of the account, in a stable order.
    pub fn sims(&self) -> Vec<SimView> {
        self.state.account().sim_views(AppState::now())
    }

    /// One SIM, if it belongs to the account.
    pub fn sim(&self, iccid: &str) -> Option<SimView> {
        let account = self.state.account();
        let sim = account.lookup(iccid).ok()?;
        Some(account.sim_view(sim, AppState::now()))
    }

    /// The usage of SIM `iccid` in the billing cycle starting `cycle_start` (`YYYY-MM-DD`, a
    /// 1st of the month); `None` for an unknown SIM, a malformed date or a cycle without a
    /// record (the seeded account records the current cycle and the 3 before it).
    pub fn cycle_usage(&self, iccid: &str, cycle_start: &str) -> Option<CycleUsageView> {
        let date = chrono::NaiveDate::parse_from_str(cycle_start, "%Y-%m-%d").ok()?;
        let account = self.state.account();
        let sim = account.lookup(iccid).ok()?;
        let totals = sim.usage.get(&date)?.totals();
        Some(CycleUsageView {
            data_bytes: totals.data_bytes,
            sms: totals.sms(),
            voice_seconds: totals.voice_secs(),
        })
    }

    /// ICCIDs that belong to another account.
    pub fn other_account_iccids(&self) -> Vec<String> {
        self.state.account().foreign_iccids()
    }

    /// Rate plans of the account.
    pub fn rate_plans(&self) -> Vec<RatePlanView> {
        self.state.account().plan_views()
    }

    /// SMS log, oldest first.
    pub fn sms_log(&self) -> Vec<SmsView> {
        self.state.account().sms_views()
    }

    /// Traffic statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.state.traffic.snapshot()
    }

    /// Zeroes the traffic statistics.
    pub fn reset_stats(&self) {
        self.state.traffic.reset();
    }

    /// Replaces the fault-injection settings.
    pub fn set_faults(&self, faults: FaultSettings) -> anyhow::Result<()> {
        self.state.faults.set(faults).map_err(anyhow::Error::msg)
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        // The default settings are always valid.
        let _ = self.state.faults.set(FaultSettings::default());
    }

    /// Replaces the rate limits.
    pub fn set_limits(&self, limits: LimitSettings) {
        self.state.traffic.set_settings(limits);
    }

    /// Stops accepting connections, lets open ones finish (up to a few
    /// seconds) and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
