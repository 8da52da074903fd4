//! The REST API under `/rws/api/v1`.
//!
//! HTTP Basic authentication (`username:apiKey`), JSON bodies, string error
//! codes in `{"errorMessage", "errorCode"}`, and the documented quirks:
//! device dates like `2016-06-29 00:21:33.339+0000`, ISO dates in
//! usageInZone, lowercase `smsmousage`/`smsmtusage` keys, `smsMessageId` in
//! the SendSMS answer, and extra fields clients must ignore.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use crate::account::{
    self, DateRuleError, Edit, EditError, LookupError, OverageOverride, SimStatus, SmsError,
    SmsSubmission, When,
};
use crate::{AppState, SharedState, WriteApplied, dates};

/// Custom fields accepted by `PUT /devices/{iccid}` and echoed in details.
const CUSTOM_FIELDS: [(&str, usize); 3] = [
    ("operatorCustom", 5),
    ("accountCustom", 10),
    ("customerCustom", 5),
];

/// A REST error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestError {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Some(code),
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "20000001",
            "Resource not found - Invalid ICCID",
        )
    }

    fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "10000023",
            format!("Invalid JSON in request body: {detail}"),
        )
    }
}

impl From<LookupError> for RestError {
    /// SIMs of other accounts are indistinguishable from unknown ones.
    fn from(_: LookupError) -> Self {
        RestError::not_found()
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("errorMessage".to_owned(), Value::String(self.message));
        if let Some(code) = self.code {
            body.insert("errorCode".to_owned(), Value::String(code.to_owned()));
        }
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Jasper\""),
            );
        }
        response
    }
}

type RestResult = Result<Response, RestError>;

/// Routes under `/rws/api/v1`, all behind Basic authentication.
pub(crate) fn router(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/devices/{iccid}", get(get_device).put(put_device))
        .route("/devices/{iccid}/ctdUsages", get(get_ctd_usages))
        .route("/devices/{iccid}/usageInZone", get(get_usage_in_zone))
        .route(
            "/devices/{iccid}/smsMessages",
            axum::routing::post(post_sms),
        )
        .fallback(unknown_resource)
        .layer(middleware::from_fn_with_state(state, basic_auth))
}

/// HTTP Basic authentication with `username:apiKey`.
async fn basic_auth(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return RestError {
            status: StatusCode::UNAUTHORIZED,
            code: None,
            message: "Full authentication is required to access this resource".to_owned(),
        }
        .into_response();
    };
    let credentials = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| BASE64.decode(encoded.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let expected = &state.credentials;
    let valid = credentials
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .is_some_and(|(user, key)| user == expected.username && key == expected.api_key);
    if !valid {
        return RestError::new(StatusCode::UNAUTHORIZED, "10000001", "Invalid credentials")
            .into_response();
    }
    next.run(request).await
}

async fn unknown_resource(request: Request) -> RestError {
    RestError {
        status: StatusCode::NOT_FOUND,
        code: None,
        message: format!(
            "No resource found for {} {}",
            request.method(),
            request.uri().path()
        ),
    }
}

/// Extracts and checks the `{iccid}` path segment.
fn iccid_param(path: Result<Path<String>, PathRejection>) -> Result<String, RestError> {
    let Path(iccid) = path.map_err(|_| RestError::bad_request("10000021", "Invalid ICCID"))?;
    if account::iccid_well_formed(&iccid) {
        Ok(iccid)
    } else {
        Err(RestError::bad_request(
            "10000021",
            format!("Invalid ICCID '{iccid}'"),
        ))
    }
}

/// Query parameters, rejecting names the endpoint does not know.
fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, RestError> {
    let Query(pairs) =
        query.map_err(|e| RestError::bad_request("10000028", format!("Invalid query: {e}")))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(RestError::bad_request(
                "10000028",
                format!("Unrecognized parameter '{name}'"),
            ));
        }
        params.insert(name, value);
    }
    Ok(params)
}

/// Keeps only the comma-separated `fields` of a JSON object, if asked.
fn select_fields(value: Value, fields: Option<&String>) -> Value {
    match (value, fields) {
        (Value::Object(map), Some(fields)) => {
            let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
            Value::Object(
                map.into_iter()
                    .filter(|(k, _)| wanted.contains(&k.as_str()))
                    .collect(),
            )
        }
        (value, _) => value,
    }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A 200 answer of a GET endpoint: `body`, cut to the `fields` the query asked for.
fn selected_fields(body: Value, params: &BTreeMap<String, String>) -> Response {
    json_response(StatusCode::OK, select_fields(body, params.get("fields")))
}

async fn get_device(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> RestResult {
    state.traffic.record_op("rest:GET /devices/{iccid}");
    let iccid = iccid_param(path)?;
    let params = query_params(query, &["fields"])?;
    let account = state.account();
    let sim = account.lookup(&iccid)?;
    let mut body = json!({
        "iccid": sim.iccid,
        "imsi": sim.imsi,
        "msisdn": sim.msisdn,
        "imei": sim.imei,
        "status": sim.status.rest_name(),
        "ratePlan": sim.rate_plan,
        "communicationPlan": sim.communication_plan,
        "customer": sim.customer,
        "endConsumerId": null,
        "dateActivated": sim.date_activated.map(dates::rest_datetime),
        "dateAdded": dates::rest_datetime(sim.date_added),
        "dateUpdated": dates::rest_datetime(sim.date_modified),
        "dateShipped": dates::rest_datetime(sim.date_shipped),
        "accountId": account::ACCOUNT_ID,
        "fixedIPAddress": sim.custom.get("ipv4Address"),
        "fixedIpv6Address": sim.custom.get("ipv6Address"),
        "simNotes": null,
        "deviceID": sim.device_id,
        "modemID": sim.modem_id,
        "globalSimType": "",
        "eid": null,
        "simProfileId": null,
        // Not in the published model: clients must ignore unknown fields.
        "ipAddressType": "IPV4",
        "simIccidType": "REGULAR",
    });
    if let Value::Object(map) = &mut body {
        for (prefix, count) in CUSTOM_FIELDS {
            for i in 1..=count {
                let name = format!("{prefix}{i}");
                let value = sim.custom.get(&name).cloned().unwrap_or_default();
                map.insert(name, Value::String(value));
            }
        }
    }
    drop(account);
    Ok(selected_fields(body, &params))
}

async fn get_ctd_usages(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> RestResult {
    state
        .traffic
        .record_op("rest:GET /devices/{iccid}/ctdUsages");
    let iccid = iccid_param(path)?;
    let params = query_params(query, &["fields"])?;
    let now = AppState::now();
    let account = state.account();
    let sim = account.lookup(&iccid)?;
    let cycle = sim.current_usage(now);
    let usage = cycle.totals();
    let body = json!({
        "iccid": sim.iccid,
        "imsi": sim.imsi,
        "msisdn": sim.msisdn,
        "imei": sim.imei,
        "status": sim.status.rest_name(),
        "ratePlan": sim.rate_plan,
        "communicationPlan": sim.communication_plan,
        "ctdDataUsage": usage.data_bytes,
        "ctdSMSUsage": usage.sms(),
        "ctdVoiceUsage": usage.voice_secs(),
        "ctdSessionCount": cycle.sessions,
        "overageLimitReached": account.overage_reached(sim, now),
        "overageLimitOverride": sim.overage_override.wire(),
    });
    Ok(selected_fields(body, &params))
}

async fn get_usage_in_zone(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> RestResult {
    state
        .traffic
        .record_op("rest:GET /devices/{iccid}/usageInZone");
    let iccid = iccid_param(path)?;
    let params = query_params(
        query,
        &[
            "cycleStartDate",
            "ratePlan",
            "zone",
            "isActiveRatePlan",
            "fields",
        ],
    )?;
    let now = AppState::now();
    let raw_date = params.get("cycleStartDate").ok_or_else(|| {
        RestError::bad_request("10000012", "cycleStartDate is required (yyyy-MM-ddZ)")
    })?;
    let cycle = dates::parse_zoned_date(raw_date).ok_or_else(|| {
        RestError::bad_request(
            "10000012",
            format!("Invalid cycleStartDate '{raw_date}', expected yyyy-MM-ddZ"),
        )
    })?;
    if !(0..3).any(|back| dates::cycle_start(now, back) == cycle) {
        return Err(RestError::bad_request(
            "10000032",
            "cycleStartDate must be the start of one of the last 3 billing cycles",
        ));
    }
    let active_only = match params.get("isActiveRatePlan").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::bad_request(
                "10000028",
                format!("Invalid isActiveRatePlan '{other}'"),
            ));
        }
    };

    let account = state.account();
    let sim = account.lookup(&iccid)?;
    if let Some(plan) = params.get("ratePlan")
        && account.plan(plan).is_none()
    {
        return Err(RestError::bad_request(
            "10000013",
            format!("Invalid rate plan '{plan}'"),
        ));
    }
    if let Some(zone) = params.get("zone")
        && !account.plans().iter().any(|p| p.zones.contains(zone))
    {
        return Err(RestError::bad_request(
            "10000031",
            format!("Invalid zone '{zone}'"),
        ));
    }
    let usage = sim.usage.get(&cycle).cloned().unwrap_or_default();
    let mut zones: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for z in usage.zones.iter().filter(|z| {
        params.get("ratePlan").is_none_or(|p| *p == z.rate_plan)
            && params.get("zone").is_none_or(|zone| *zone == z.zone)
            && (!active_only || z.rate_plan == sim.rate_plan)
    }) {
        zones
            .entry(format!("{}, {}", z.rate_plan, z.rate_plan_version))
            .or_default()
            .push(json!({
                "ratePlan": z.rate_plan,
                "ratePlanVersion": z.rate_plan_version,
                "zone": z.zone,
                "dataUsage": z.data_bytes,
                "dataUsageUnit": "bytes",
                "voiceMOUsage": z.voice_mo_secs,
                "voiceMOUsageUnit": "seconds",
                "voiceMTUsage": z.voice_mt_secs,
                "voiceMTUsageUnit": "seconds",
                "smsmousage": z.sms_mo,
                "smsmtusage": z.sms_mt,
            }));
    }
    let end: DateTime<Utc> =
        dates::midnight(dates::next_cycle_start(cycle)) - Duration::milliseconds(1);
    let body = json!({
        "iccid": sim.iccid,
        "timeStamp": dates::iso_millis(now),
        "cycleStartDate": dates::iso_millis(dates::midnight(cycle)),
        "cycleEndDate": dates::iso_millis(end),
        "deviceCycleUsageInZones": zones,
    });
    Ok(selected_fields(body, &params))
}

/// Parses a JSON object body (requires `Content-Type: application/json`).
fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, RestError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(RestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "10000023",
            format!("Content type '{content_type}' not supported, use application/json"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(RestError::malformed_json("expected a JSON object")),
        Err(e) => Err(RestError::malformed_json(e)),
    }
}

fn string_field(name: &str, value: &Value) -> Result<String, RestError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| RestError::malformed_json(format!("'{name}' must be a string")))
}

fn is_custom_field(name: &str) -> bool {
    CUSTOM_FIELDS.iter().any(|(prefix, count)| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (1..=*count).contains(&n))
    })
}

async fn put_device(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult {
    state.traffic.record_op("rest:PUT /devices/{iccid}");
    let iccid = iccid_param(path)?;
    let fields = json_object(&headers, &body)?;
    let mut edits = Vec::new();
    let mut effective = None;
    for (name, value) in &fields {
        let edit = match name.as_str() {
            "effectiveDate" => {
                let text = string_field(name, value)?;
                effective = Some(dates::parse_xs_date(&text).ok_or_else(|| {
                    RestError::bad_request("10000012", format!("Invalid effectiveDate '{text}'"))
                })?);
                continue;
            }
            "status" => {
                let text = string_field(name, value)?;
                let status = SimStatus::from_rest_name(&text)
                    .filter(|s| s.is_target())
                    .ok_or_else(|| {
                        RestError::bad_request("10000005", format!("Invalid status '{text}'"))
                    })?;
                Edit::Status(status)
            }
            "ratePlan" => Edit::RatePlan(string_field(name, value)?),
            "communicationPlan" => Edit::CommunicationPlan(string_field(name, value)?),
            "customer" => Edit::Customer(string_field(name, value)?),
            "deviceID" => Edit::DeviceId(string_field(name, value)?),
            "modemID" => Edit::ModemId(string_field(name, value)?),
            "overageLimitOverride" => {
                let text = string_field(name, value)?;
                Edit::OverageOverride(OverageOverride::parse(&text).ok_or_else(|| {
                    RestError::bad_request(
                        "10000016",
                        format!("Invalid overageLimitOverride '{text}'"),
                    )
                })?)
            }
            "ipv4Address" | "ipv6Address" => Edit::Custom(name.clone(), string_field(name, value)?),
            custom if is_custom_field(custom) => {
                Edit::Custom(name.clone(), string_field(name, value)?)
            }
            other => {
                return Err(RestError::bad_request(
                    "10000028",
                    format!("Unrecognized field '{other}'"),
                ));
            }
        };
        edits.push(edit);
    }
    if edits.is_empty() {
        return Err(RestError::bad_request(
            "10000028",
            "At least one editable field is required",
        ));
    }
    let now = AppState::now();
    let mut account = state.account();
    account.lookup(&iccid)?;
    let when = account::resolve_effective_date(effective, now).map_err(|e| {
        let why = match e {
            DateRuleError::InPast => "is in the past",
            DateRuleError::TooFar => "is more than 180 days ahead",
        };
        RestError::bad_request("10000012", format!("effectiveDate {why}"))
    })?;
    account
        .edit(&iccid, edits, when, now)
        .map_err(|e| match e {
            EditError::Lookup(l) => RestError::from(l),
            EditError::BackToActivationReady { from } => RestError::bad_request(
                "10000029",
                format!(
                    "Device cannot be changed back to Activation Ready from {}",
                    from.rest_name()
                ),
            ),
            EditError::Transition { from, to } => RestError::bad_request(
                "10000005",
                format!(
                    "Invalid status change from {} to {}",
                    from.rest_name(),
                    to.rest_name()
                ),
            ),
            EditError::UnknownRatePlan(plan) => {
                RestError::bad_request("10000013", format!("Invalid rate plan '{plan}'"))
            }
            EditError::UnknownCommunicationPlan(plan) => {
                RestError::bad_request("10000014", format!("Invalid communication plan '{plan}'"))
            }
        })?;
    drop(account);
    let status = match when {
        When::Now => StatusCode::OK,
        When::On(_) => StatusCode::ACCEPTED,
    };
    let mut response = json_response(status, json!({ "iccid": iccid }));
    response.extensions_mut().insert(WriteApplied);
    Ok(response)
}

/// Maximum SMS length for a `dataCoding` (characters, or bytes when binary).
fn max_sms_length(data_coding: Option<u8>) -> usize {
    match data_coding {
        None => 320,
        Some(4) => 140,
        Some(8) => 70,
        Some(_) => 160,
    }
}

async fn post_sms(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult {
    state
        .traffic
        .record_op("rest:POST /devices/{iccid}/smsMessages");
    let iccid = iccid_param(path)?;
    let fields = json_object(&headers, &body)?;
    let mut text = None;
    let mut encoding = "LITERAL".to_owned();
    let mut data_coding = None;
    let mut tpvp = None;
    for (name, value) in &fields {
        match name.as_str() {
            "messageText" => text = Some(string_field(name, value)?),
            "messageEncoding" => {
                encoding = string_field(name, value)?;
                if encoding != "LITERAL" && encoding != "BASE64" {
                    return Err(RestError::bad_request(
                        "10000017",
                        format!("Invalid messageEncoding '{encoding}'"),
                    ));
                }
            }
            "dataCoding" => {
                let dc = value
                    .as_u64()
                    .filter(|d| [0, 1, 3, 4, 8].contains(d))
                    .ok_or_else(|| {
                        RestError::bad_request("10000018", format!("Invalid dataCoding {value}"))
                    })?;
                data_coding = u8::try_from(dc).ok();
            }
            "tpvp" => {
                let v = value
                    .as_u64()
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        RestError::bad_request("10000019", format!("Invalid tpvp {value}"))
                    })?;
                tpvp = Some(v);
            }
            other => {
                return Err(RestError::bad_request(
                    "10000028",
                    format!("Unrecognized field '{other}'"),
                ));
            }
        }
    }
    let text = text
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RestError::bad_request("10000023", "messageText is required"))?;
    let (message, length) = if encoding == "BASE64" {
        let bytes = BASE64.decode(text.trim()).map_err(|e| {
            RestError::bad_request("10000017", format!("messageText is not valid BASE64: {e}"))
        })?;
        let length = if data_coding == Some(8) {
            bytes.len().div_ceil(2)
        } else {
            bytes.len()
        };
        (String::from_utf8_lossy(&bytes).into_owned(), length)
    } else {
        let length = text.chars().count();
        (text, length)
    };
    let max = max_sms_length(data_coding);
    if length > max {
        return Err(RestError::bad_request(
            "10000020",
            format!("Message is too long: {length} > {max}"),
        ));
    }
    let submission = SmsSubmission {
        message,
        encoding,
        data_coding,
        tpvp,
        api: "rest",
    };
    let id = state
        .account()
        .send_sms(&iccid, submission, AppState::now())
        .map_err(|e| match e {
            SmsError::Lookup(l) => RestError::from(l),
            SmsError::NotActive(status) => RestError::bad_request(
                "10000005",
                format!(
                    "SMS can only be sent to an ACTIVATED device, not {}",
                    status.rest_name()
                ),
            ),
        })?;
    // The documentation says smsMsgId; the live API answers smsMessageId.
    let mut response = json_response(StatusCode::OK, json!({ "smsMessageId": id }));
    response.extensions_mut().insert(WriteApplied);
    Ok(response)
}

/// Rate limit: HTTP 429 with `40000029`.
pub(crate) fn rate_limit_response() -> Response {
    RestError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "40000029",
        "Rate limit exceeded",
    )
    .into_response()
}

/// Injected server error: HTTP 500 with `30000001`.
pub(crate) fn server_error_response() -> Response {
    RestError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "30000001",
        "Unknown server error",
    )
    .into_response()
}

/// Injected malformed answer: HTTP 200 with truncated JSON.
pub(crate) fn malformed_response() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"iccid\":\"8901260",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_lengths() {
        assert_eq!(max_sms_length(None), 320);
        assert_eq!(max_sms_length(Some(0)), 160);
        assert_eq!(max_sms_length(Some(3)), 160);
        assert_eq!(max_sms_length(Some(4)), 140);
        assert_eq!(max_sms_length(Some(8)), 70);
    }

    #[test]
    fn custom_fields() {
        assert!(is_custom_field("accountCustom10"));
        assert!(!is_custom_field("accountCustom11"));
        assert!(!is_custom_field("operatorCustom0"));
        assert!(!is_custom_field("ratePlan"));
    }

    #[test]
    fn field_selection() {
        let v = json!({"a": 1, "b": 2, "c": 3});
        assert_eq!(select_fields(v.clone(), None), v);
        assert_eq!(
            select_fields(v, Some(&"a, c".to_owned())),
            json!({"a": 1, "c": 3})
        );
    }
}
