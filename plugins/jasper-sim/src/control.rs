//! Control endpoints under `/_sim` (no authentication, no rate limit, no
//! fault injection): inspect the account, read statistics, inject faults.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::account::{EditError, SimStatus};
use crate::faults::FaultSettings;
use crate::limits::LimitSettings;
use crate::{AppState, SharedState};

/// Routes mounted at `/_sim`.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/", get(info))
        .route("/sims", get(list_sims))
        .route("/sims/{iccid}", get(get_sim).patch(patch_sim))
        .route("/other_account_iccids", get(other_account_iccids))
        .route("/rate_plans", get(rate_plans))
        .route("/sms", get(sms_log).delete(clear_sms_log))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route(
            "/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/limits", get(get_limits).post(set_limits))
}

/// An error answer of a control endpoint: `{"error": message}`.
struct ControlError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ControlError {
    ControlError {
        status,
        message: message.into(),
    }
}

type Answer = Result<Response, ControlError>;

/// The JSON body, or a 400 answer.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

/// The `{iccid}` path segment, or a 400 answer.
fn iccid_param(path: Result<Path<String>, PathRejection>) -> Result<String, ControlError> {
    path.map(|Path(iccid)| iccid)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "invalid iccid"))
}

fn not_in_account(iccid: &str) -> ControlError {
    error(
        StatusCode::NOT_FOUND,
        format!("no SIM {iccid} in the account"),
    )
}

async fn info() -> Response {
    axum::Json(json!({
        "name": "jasper-sim",
        "version": env!("CARGO_PKG_VERSION"),
        "soap": ["/ws/service/terminal", "/ws/service/billing", "/ws/service/Sms"],
        "rest": "/rws/api/v1",
    }))
    .into_response()
}

async fn list_sims(State(state): State<SharedState>) -> Response {
    axum::Json(state.account().sim_views(AppState::now())).into_response()
}

async fn get_sim(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
) -> Answer {
    let iccid = iccid_param(path)?;
    let account = state.account();
    let sim = account.lookup(&iccid).map_err(|_| not_in_account(&iccid))?;
    Ok(axum::Json(account.sim_view(sim, AppState::now())).into_response())
}

/// Body of `PATCH /_sim/sims/{iccid}`: forces state, bypassing the rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimPatch {
    /// Plugin status id, e.g. `activated`.
    status: Option<String>,
    rate_plan: Option<String>,
}

async fn patch_sim(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Answer {
    let iccid = iccid_param(path)?;
    let patch: SimPatch = parse_body(&body)?;
    let status = match patch.status.as_deref().map(SimStatus::from_id) {
        None => None,
        Some(Some(status)) => Some(status),
        Some(None) => return Err(error(StatusCode::BAD_REQUEST, "unknown status id")),
    };
    let now = AppState::now();
    let mut account = state.account();
    account
        .force(&iccid, status, patch.rate_plan, now)
        .map_err(|e| match e {
            EditError::UnknownRatePlan(plan) => {
                error(StatusCode::BAD_REQUEST, format!("unknown rate plan {plan}"))
            }
            _ => not_in_account(&iccid),
        })?;
    let sim = account
        .lookup(&iccid)
        .map_err(|_| error(StatusCode::NOT_FOUND, "SIM vanished"))?;
    Ok(axum::Json(account.sim_view(sim, now)).into_response())
}

async fn other_account_iccids(State(state): State<SharedState>) -> Response {
    axum::Json(state.account().foreign_iccids()).into_response()
}

async fn rate_plans(State(state): State<SharedState>) -> Response {
    axum::Json(state.account().plan_views()).into_response()
}

async fn sms_log(State(state): State<SharedState>) -> Response {
    axum::Json(state.account().sms_views()).into_response()
}

async fn clear_sms_log(State(state): State<SharedState>) -> Response {
    state.account().clear_sms_log();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(state): State<SharedState>) -> Response {
    axum::Json(state.traffic.snapshot()).into_response()
}

async fn reset_stats(State(state): State<SharedState>) -> Response {
    state.traffic.reset();
    axum::Json(state.traffic.snapshot()).into_response()
}

async fn get_faults(State(state): State<SharedState>) -> Response {
    axum::Json(state.faults.settings()).into_response()
}

async fn set_faults(State(state): State<SharedState>, body: Bytes) -> Answer {
    let settings: FaultSettings = parse_body(&body)?;
    state
        .faults
        .set(settings)
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    Ok(axum::Json(state.faults.settings()).into_response())
}

async fn clear_faults(State(state): State<SharedState>) -> Response {
    // The default settings are always valid.
    let _ = state.faults.set(FaultSettings::default());
    axum::Json(state.faults.settings()).into_response()
}

async fn get_limits(State(state): State<SharedState>) -> Response {
    axum::Json(state.traffic.settings()).into_response()
}

async fn set_limits(State(state): State<SharedState>, body: Bytes) -> Answer {
    let limits: LimitSettings = parse_body(&body)?;
    state.traffic.set_settings(limits);
    Ok(axum::Json(limits).into_response())
}
