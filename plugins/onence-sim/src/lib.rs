//! A simulator of 1NCE's Management API v1, for the `onence` plugin's tests and demos.
//!
//! It shares no code with the plugin: it is written from the API reference, so that each
//! catches the other's mistakes. Seeded SIMs (the same seed gives the same SIMs and usage),
//! the token lifecycle (client credentials, Bearer tokens that expire), and fault injection:
//! a 401 as for an expired token, 429, 500, slow answers and malformed bodies, for requests
//! whose path contains a given text.
//!
//! Where the reference leaves the API's behaviour open, the simulator takes the side that is
//! hardest on a client: a `PUT` that omits `label` or `imei_lock` resets them, dates come in
//! the `YYYY-MM-DD HH:MM:SS` form clients report (quota, location) and usage volumes as
//! strings, newest day first, with a `TOTAL` row.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, Datelike as _, Duration as Days, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen (`127.0.0.1:0`: a free port).
    pub listen: SocketAddr,
    /// Seeds the SIMs and their usage.
    pub seed: u64,
    /// How many SIMs the account holds.
    pub sims: usize,
    /// The API user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Lifetime of the tokens issued (1NCE: 3600 s).
    pub token_lifetime_secs: u64,
    /// Append a `TOTAL` row to usage answers.
    pub usage_total_row: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            sims: 20,
            username: "12345_demo".into(),
            password: "demo-secret".into(),
            token_lifetime_secs: 3600,
            usage_total_row: true,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `401` with an empty body, as for an expired token (the token is revoked).
    ExpiredToken,
    /// `429 Too Many Requests`, with `Retry-After` in seconds when set.
    RateLimited {
        /// `Retry-After` seconds.
        retry_after_secs: Option<u64>,
    },
    /// `500` with a v2-style error body; the request is not carried out.
    ServerError,
    /// `500` after the request was carried out (a write applied, its answer lost).
    ServerErrorAfterApplying,
    /// The answer comes after this long (then normally).
    Slow {
        /// The delay in milliseconds.
        ms: u64,
    },
    /// `200` with a body that is no JSON.
    Malformed,
}

/// A fault for the next `count` requests whose method and path (`POST /v1/sims/.../sms`)
/// contain `matching` (token requests included only when `matching` names them).
#[derive(Debug, Clone)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Text the request's method and path must contain.
    pub matching: String,
    /// How many requests it hits.
    pub count: u32,
}

impl Fault {
    /// `kind` for the next `count` requests matching `matching`.
    pub fn new(kind: FaultKind, matching: &str, count: u32) -> Fault {
        Fault {
            kind,
            matching: matching.to_owned(),
            count,
        }
    }
}

/// A simulated SIM, as the simulator holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sim {
    /// 19 digits.
    pub iccid: String,
    /// `Enabled` or `Disabled`.
    pub status: String,
    /// The label (`None` after a PUT that omitted it).
    pub label: Option<String>,
    /// The IMEI lock.
    pub imei_lock: bool,
    /// IMSI.
    pub imsi: String,
    /// MSISDN.
    pub msisdn: String,
    /// IMEI.
    pub imei: String,
    /// Fixed IP.
    pub ip_address: String,
    /// `ONLINE`, `ATTACHED` or `OFFLINE`.
    pub connectivity: String,
    /// Data left, MB.
    pub data_left_mb: f64,
    /// SMS left.
    pub sms_left: u64,
    /// Connectivity resets requested.
    pub resets: u32,
    /// Top-up orders placed.
    pub top_ups: u32,
}

/// An SMS the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRecord {
    /// The SIM.
    pub iccid: String,
    /// `source_address` as sent.
    pub source_address: String,
    /// The text.
    pub payload: String,
}

/// Counts of what the simulator answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Token requests answered with a token.
    pub tokens_issued: u64,
    /// Token requests refused.
    pub tokens_refused: u64,
    /// Requests to `/v1` (whatever their answer).
    pub api_requests: u64,
    /// `/v1` requests refused for their token.
    pub unauthorized: u64,
}

struct Inner {
    config: SimConfig,
    sims: BTreeMap<String, Sim>,
    /// Token -> expiry.
    tokens: HashMap<String, DateTime<Utc>>,
    faults: VecDeque<Fault>,
    sms: Vec<SmsRecord>,
    stats: Stats,
    orders: u64,
    next_token: u64,
    /// ICCIDs that exist but belong to another account (403).
    foreign: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small deterministic generator (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn luhn(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn seed_sims(config: &SimConfig) -> (BTreeMap<String, Sim>, Vec<String>) {
    let mut sims = BTreeMap::new();
    for i in 0..config.sims as u64 {
        let r = mix(config.seed ^ (i << 8));
        let iccid = format!("898830300{:010}", (config.seed * 1000 + i) % 10_000_000_000);
        let connectivity = ["ONLINE", "ATTACHED", "OFFLINE"][(r % 3) as usize];
        sims.insert(
            iccid.clone(),
            Sim {
                status: if r.is_multiple_of(5) {
                    "Disabled"
                } else {
                    "Enabled"
                }
                .into(),
                label: Some(format!("device-{i:03}")),
                imei_lock: r.is_multiple_of(7),
                imsi: format!("9014{:011}", r % 100_000_000_000),
                msisdn: format!("88228{:010}", i),
                imei: format!("35{:013}", (r >> 8) % 10_000_000_000_000),
                ip_address: format!("100.64.{}.{}", i / 250, i % 250 + 1),
                connectivity: connectivity.into(),
                data_left_mb: [500.0, 80.5, 0.0][(r % 3) as usize],
                sms_left: [250, 30, 0][((r >> 3) % 3) as usize],
                resets: 0,
                top_ups: 0,
                iccid,
            },
        );
    }
    let foreign = vec![format!("898830399{:010}", config.seed % 10_000_000_000)];
    (sims, foreign)
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    state: Shared,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("1NCE simulator state")
    }
}

/// Starts a simulator on the caller's tokio runtime.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    let (sims, foreign) = seed_sims(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state: Shared = Arc::new(Mutex::new(Inner {
        config,
        sims,
        tokens: HashMap::new(),
        faults: VecDeque::new(),
        sms: Vec::new(),
        stats: Stats::default(),
        orders: 1000,
        next_token: 1,
        foreign,
    }));
    let (shutdown, mut signal) = watch::channel(false);
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            })
            .await;
    });
    Ok(RunningSim {
        addr,
        state,
        shutdown,
        task: Some(task),
    })
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL (`http://127.0.0.1:PORT/management-api`), for the org's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/management-api", self.addr)
    }

    /// The API user and password it accepts.
    pub fn credentials(&self) -> (String, String) {
        let s = lock(&self.state);
        (s.config.username.clone(), s.config.password.clone())
    }

    /// The ICCIDs of the account's SIMs.
    pub fn iccids(&self) -> Vec<String> {
        lock(&self.state).sims.keys().cloned().collect()
    }

    /// An ICCID of another account (answered with 403).
    pub fn foreign_iccid(&self) -> String {
        lock(&self.state).foreign[0].clone()
    }

    /// One SIM's state.
    pub fn sim(&self, iccid: &str) -> Option<Sim> {
        lock(&self.state).sims.get(iccid).cloned()
    }

    /// Changes one SIM's state.
    pub fn update_sim(&self, iccid: &str, f: impl FnOnce(&mut Sim)) {
        if let Some(s) = lock(&self.state).sims.get_mut(iccid) {
            f(s);
        }
    }

    /// The SMS accepted so far.
    pub fn sms_log(&self) -> Vec<SmsRecord> {
        lock(&self.state).sms.clone()
    }

    /// What it answered so far.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats.clone()
    }

    /// Adds a fault (faults apply in the order given).
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Revokes every token issued (as if they had all expired).
    pub fn expire_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    /// Stops the server.
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

fn router(state: Shared) -> Router {
    Router::new()
        .route("/management-api/oauth/token", post(token))
        .route("/management-api/v1/sims", get(list_sims))
        .route("/management-api/v1/sims/{iccid}", get(get_sim).put(put_sim))
        .route("/management-api/v1/sims/{iccid}/status", get(status))
        .route("/management-api/v1/sims/{iccid}/quota/{kind}", get(quota))
        .route("/management-api/v1/sims/{iccid}/usage", get(usage))
        .route("/management-api/v1/sims/{iccid}/sms", post(send_sms))
        .route("/management-api/v1/sims/{iccid}/topup", post(top_up))
        .route("/management-api/v1/sims/{iccid}/reset", post(reset))
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults))
        .with_state(state)
}

/// Applies the first matching fault, if any, before (or after) the handler.
async fn faults(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!("{} {}", request.method(), request.uri().path());
    let fault = {
        let mut s = lock(&state);
        let is_token = line.contains("/oauth/token");
        let hit = s.faults.iter().position(|f| {
            line.contains(&f.matching) && (!is_token || f.matching.contains("oauth"))
        });
        hit.map(|i| {
            let f = &mut s.faults[i];
            f.count = f.count.saturating_sub(1);
            let kind = f.kind.clone();
            if f.count == 0 {
                s.faults.remove(i);
            }
            kind
        })
    };
    match fault {
        None => next.run(request).await,
        Some(FaultKind::ExpiredToken) => {
            if let Some(t) = bearer(request.headers()) {
                lock(&state).tokens.remove(&t);
            }
            lock(&state).stats.unauthorized += 1;
            StatusCode::UNAUTHORIZED.into_response()
        }
        Some(FaultKind::RateLimited { retry_after_secs }) => {
            let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
            if let Some(s) = retry_after_secs {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, s.to_string().parse().expect("digits"));
            }
            r
        }
        Some(FaultKind::ServerError) => server_error(),
        Some(FaultKind::ServerErrorAfterApplying) => {
            let _ = next.run(request).await;
            server_error()
        }
        Some(FaultKind::Slow { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        Some(FaultKind::Malformed) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"stats\": [ {\"date\": ",
        )
            .into_response(),
    }
}

fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"error_code": 1000, "error_token": "InternalServerError", "message": "Internal server error"})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::to_owned)
}

fn token_error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"statusCode": 400, "errorCode": code, "message": message})),
    )
        .into_response()
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return token_error("UnsupportedContentTypeError", "Content-Type not supported");
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
        return token_error(
            "AuthValidationError",
            "Auth header validation error: Missing attributes 'password'",
        );
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if body.get("grant_type").and_then(Value::as_str).is_none() {
        return token_error(
            "BodyValidationError",
            "Request body validation error: Missing attributes 'grant_type'",
        );
    }
    let mut s = lock(&state);
    if user != s.config.username || password != s.config.password {
        s.stats.tokens_refused += 1;
        return token_error("BadCredentials", "User does not exist.");
    }
    let n = s.next_token;
    s.next_token += 1;
    let token = format!("eyJsim.{:016x}.{n}", mix(s.config.seed ^ n));
    let lifetime = s.config.token_lifetime_secs;
    s.tokens
        .insert(token.clone(), Utc::now() + Days::seconds(lifetime as i64));
    s.stats.tokens_issued += 1;
    axum::Json(json!({
        "status_code": 200, "access_token": token, "token_type": "bearer",
        "expires_in": lifetime, "userId": user, "scope": "all"
    }))
    .into_response()
}

/// The request's token is valid: `Ok`, else the 401 to answer.
#[allow(clippy::result_large_err)] // answered at once, never propagated far
fn authorise(s: &mut Inner, headers: &HeaderMap) -> Result<(), Response> {
    s.stats.api_requests += 1;
    let valid = bearer(headers)
        .and_then(|t| s.tokens.get(&t).copied())
        .is_some_and(|expiry| expiry > Utc::now());
    if valid {
        Ok(())
    } else {
        s.stats.unauthorized += 1;
        Err(StatusCode::UNAUTHORIZED.into_response())
    }
}

/// The SIM addressed by the path (19 digits), or the 403/404 to answer.
#[allow(clippy::result_large_err)] // answered at once, never propagated far
fn sim_mut<'a>(s: &'a mut Inner, iccid: &str) -> Result<&'a mut Sim, Response> {
    if s.foreign.iter().any(|f| f == iccid) {
        return Err((StatusCode::FORBIDDEN, "SIM does not belong to user.").into_response());
    }
    s.sims
        .get_mut(iccid)
        .ok_or_else(|| (StatusCode::NOT_FOUND, "SIM not found.").into_response())
}

fn sim_json(sim: &Sim) -> Value {
    let quota_status = |left: f64, total: f64| {
        let (id, description) = if left <= 0.0 {
            (2, "No volume available")
        } else if left / total < 0.2 {
            (1, "Less than 20% available")
        } else {
            (0, "More than 20% available")
        };
        json!({"id": id, "description": description, "threshold_reached_date": null, "quota_exceeded_date": null})
    };
    json!({
        "iccid": sim.iccid,
        "iccid_with_luhn": format!("{}{}", sim.iccid, luhn(&sim.iccid)),
        "imsi": sim.imsi, "imsi_2": null, "current_imsi": sim.imsi,
        "msisdn": sim.msisdn, "imei": sim.imei, "imei_lock": sim.imei_lock,
        "status": sim.status,
        "activation_date": "2022-11-25T12:56:06.000+0000",
        "ip_address": sim.ip_address,
        "current_quota": sim.data_left_mb,
        "quota_status": quota_status(sim.data_left_mb, 500.0),
        "current_quota_SMS": sim.sms_left,
        "quota_status_SMS": quota_status(sim.sms_left as f64, 250.0),
        "label": sim.label,
    })
}

async fn list_sims(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let size: usize = q
        .get("pageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let all: Vec<Value> = s.sims.values().map(sim_json).collect();
    let total = all.len();
    let items: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
    let pages = total.div_ceil(size).max(1);
    (
        [
            ("x-total-count", total.to_string()),
            ("x-total-pages", pages.to_string()),
            ("x-current-page", page.to_string()),
            ("x-count-per-page", size.to_string()),
        ],
        axum::Json(Value::Array(items)),
    )
        .into_response()
}

async fn get_sim(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    match sim_mut(&mut s, &iccid) {
        Ok(sim) => axum::Json(sim_json(sim)).into_response(),
        Err(r) => r,
    }
}

async fn put_sim(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let sim = match sim_mut(&mut s, &iccid) {
        Ok(sim) => sim,
        Err(r) => return r,
    };
    let status = body["status"].as_str();
    if body["iccid"].as_str() != Some(iccid.as_str())
        || !matches!(status, Some("Enabled" | "Disabled"))
    {
        return (
            StatusCode::BAD_REQUEST,
            "iccid and status (Enabled or Disabled) are required",
        )
            .into_response();
    }
    sim.status = status.unwrap_or_default().to_owned();
    // Omitted fields take their defaults: the strictest reading of an unknown.
    sim.label = body["label"].as_str().map(str::to_owned);
    sim.imei_lock = body["imei_lock"].as_bool().unwrap_or(false);
    StatusCode::OK.into_response()
}

fn sim_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn status(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let sim = match sim_mut(&mut s, &iccid) {
        Ok(sim) => sim,
        Err(r) => return r,
    };
    let online = sim.connectivity == "ONLINE";
    axum::Json(json!({
        "status": sim.connectivity,
        "location": {
            "iccid": sim.iccid, "imsi": sim.imsi,
            "last_updated": sim_time(Utc::now() - Days::minutes(7)),
            "operator": {"id": "3", "name": "Telekom", "country": {"id": "74", "name": "Germany", "iso-code": "de"}}
        },
        "pdp_context": if online { json!({"duration": "02:39:10", "rat_type": {"rat_type_id": "6", "description": "4G"}}) } else { Value::Null },
        "services": if online { json!(["GPRS", "SMS"]) } else { json!([]) }
    }))
    .into_response()
}

async fn quota(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((iccid, kind)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let sim = match sim_mut(&mut s, &iccid) {
        Ok(sim) => sim,
        Err(r) => return r,
    };
    let (left, total) = match kind.as_str() {
        "data" => (sim.data_left_mb, 500.0),
        "sms" => (sim.sms_left as f64, 250.0),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    axum::Json(json!({
        "volume": left, "total_volume": total,
        "expiry_date": "2029-01-01 00:00:00",
        "peak_throughput": 1_000_000, "last_volume_added": total,
        "last_status_change_date": "2024-10-01 11:59:44",
        "threshold_percentage": 20
    }))
    .into_response()
}

async fn usage(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let seed = s.config.seed;
    let total_row = s.config.usage_total_row;
    if let Err(r) = sim_mut(&mut s, &iccid) {
        return r;
    }
    let day = |name: &str| {
        q.get(name)
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
    };
    let (Some(start), Some(end)) = (day("start_dt"), day("end_dt")) else {
        return (
            StatusCode::BAD_REQUEST,
            "start_dt and end_dt (YYYY-MM-DD) are required",
        )
            .into_response();
    };
    let today = Utc::now().date_naive();
    let earliest = today
        .checked_sub_months(chrono::Months::new(6))
        .unwrap_or(today);
    let mut stats = Vec::new();
    let (mut data_total, mut sms_total) = (0.0, 0u64);
    let mut d = end.min(today);
    while d >= start.max(earliest) {
        let r = mix(seed ^ mix(iccid.parse::<u64>().unwrap_or(0)) ^ d.num_days_from_ce() as u64);
        let tx = (r % 3_000_000) as f64 / 1_000_000.0;
        let rx = ((r >> 20) % 2_000_000) as f64 / 1_000_000.0;
        let mo = (r >> 40) % 3;
        let mt = (r >> 44) % 2;
        data_total += tx + rx;
        sms_total += mo + mt;
        let sms = if mo + mt == 0 {
            json!({"volume": "0", "volume_tx": "0", "volume_rx": "0"})
        } else {
            json!({
                "volume": (mo + mt).to_string(), "volume_tx": mt.to_string(), "volume_rx": mo.to_string(),
                "cost": format!("{}.0000000000", mo + mt),
                "currency": {"code": "EUR", "symbol": "€", "id": 1},
                "traffic_type": {"description": "SMS", "unit": "SMS", "id": 6}
            })
        };
        stats.push(json!({
            "date": d.format("%Y-%m-%d").to_string(),
            "data": {
                "volume": format!("{:.6}", tx + rx), "volume_tx": format!("{tx:.6}"), "volume_rx": format!("{rx:.6}"),
                "cost": format!("{:.10}", tx + rx),
                "traffic_type": {"description": "Data", "unit": "MB", "id": 5},
                "currency": {"code": "EUR", "symbol": "€", "id": 1}
            },
            "sms": sms
        }));
        d -= Days::days(1);
    }
    if total_row {
        stats.push(json!({
            "date": "TOTAL",
            "data": {"volume": format!("{data_total:.6}")},
            "sms": {"volume": sms_total.to_string()}
        }));
    }
    axum::Json(json!({"stats": stats})).into_response()
}

async fn send_sms(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    if let Err(r) = sim_mut(&mut s, &iccid) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(source), Some(payload)) = (body["source_address"].as_str(), body["payload"].as_str())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "source_address and payload are required",
        )
            .into_response();
    };
    s.sms.push(SmsRecord {
        iccid,
        source_address: source.to_owned(),
        payload: payload.to_owned(),
    });
    StatusCode::CREATED.into_response()
}

async fn top_up(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    let method = q
        .get("payment_method")
        .map(String::as_str)
        .unwrap_or("banktransfer");
    if !["banktransfer", "creditcard", "monthlyinvoice", "boleto"].contains(&method) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "Payment method used is not valid."})),
        )
            .into_response();
    }
    s.orders += 1;
    let order = s.orders;
    let sim = match sim_mut(&mut s, &iccid) {
        Ok(sim) => sim,
        Err(r) => return r,
    };
    sim.top_ups += 1;
    sim.data_left_mb += 500.0;
    sim.sms_left += 250;
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("https://api.1nce.com/management-api/v1/orders/{order}"),
        )],
    )
        .into_response()
}

async fn reset(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(iccid): Path<String>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = authorise(&mut s, &headers) {
        return r;
    }
    match sim_mut(&mut s, &iccid) {
        Ok(sim) => {
            sim.resets += 1;
            StatusCode::CREATED.into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sims_are_the_same_for_the_same_seed_and_carry_valid_check_digits() {
        let config = SimConfig::default();
        let (a, _) = seed_sims(&config);
        let (b, _) = seed_sims(&config);
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
        for iccid in a.keys() {
            assert_eq!(iccid.len(), 19);
        }
        assert_eq!(luhn("7992739871"), 3);
        let other = seed_sims(&SimConfig {
            seed: 2,
            ..SimConfig::default()
        })
        .0;
        assert_ne!(a.keys().next(), other.keys().next());
    }
}
