//! `jasper`: binds devices to their SIMs in Cisco Jasper Control Center (Cisco IoT Control
//! Center), over its SOAP API (WS-Security, license key) or its REST API (`/rws/api/v1`).
//!
//! Operations: `overview`, `usage`, `usage_history`, `set_status`, `send_sms`,
//! `set_rate_plan`, and the organisation-scope views `rate_plans` and `test_connection` (the
//! manifest's connection check; see `README.md` for the mapping tables and decisions).
//!
//! Code map:
//! - [`schemas`]: the manifest (configuration schemas, operations, warnings).
//! - [`config`]: the org configuration, the ICCID, the per-account key.
//! - [`connection`]: what the connection test's answers mean; the usage history's cycles.
//! - [`model`]: SIM statuses, unit conversions, the outputs.
//! - [`soap`] / [`rest`]: request building and response parsing, pure functions.
//! - [`xml`]: the namespace-aware XML tree the SOAP parser reads.
//! - [`dates`]: the lenient date parser.
//! - [`errors`]: Jasper's error tables and what each failure means for a retry.
//! - [`limits`]: Jasper's limits and retry policy, as configuration of the plugin API's helpers
//!   (`devext_plugin_api::util`: `Retry`, `AccountGate`, `SingleFlight`).
//! - this file: the [`Plugin`] impl, and the one place that does I/O (through the [`Host`]).
//!
//! Architecture invariant: all I/O (HTTP, clock, timers, logs) goes through [`Host`]; the
//! plugin has no runtime, no threads and no network client of its own.

pub mod config;
pub mod connection;
pub mod dates;
pub mod errors;
pub mod limits;
pub mod model;
pub mod rest;
pub mod schemas;
pub mod soap;
pub mod xml;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use devext_plugin_api::util::{AccountGate, Retriable, Safety, SingleFlight};
use devext_plugin_api::{
    Call, CallContext, ErrorKind, Host, HttpRequest, HttpResponse, LogLevel, Manifest, Plugin,
    PluginError, Value, json,
};

use crate::config::{Api, OrgConfig};
use crate::connection::CycleRow;
use crate::dates::Date;
use crate::errors::{Failure, OpHint, RetryClass};
use crate::limits::Account;
use crate::model::{Change, SimStatus, SmsSent};

/// The plugin. One instance serves every call, concurrently.
#[derive(Default)]
pub struct Jasper {
    /// Concurrent identical reads share one upstream call.
    flights: SingleFlight<String, Value>,
    /// Feeds SOAP message ids.
    counter: AtomicU64,
    ids: RandomState,
}

/// One call's context.
struct Ctx<'a> {
    host: &'a Host,
    cfg: &'a OrgConfig,
    iccid: &'a str,
    deadline_ms: i64,
    /// The host's call context, with `deadline_ms` as its deadline (for the retry policy).
    context: CallContext,
    account: Account,
}

/// How one attempt at a request ended, for the retry policy.
enum Attempt {
    /// Jasper (or the way to it) failed: retried or not as its [`RetryClass`] says.
    Failed(Failure),
    /// Not an answer of Jasper (no permit in time, the host's clock, a request that cannot be
    /// built): returned as it is, never retried.
    Stop(PluginError),
}

impl From<PluginError> for Attempt {
    fn from(e: PluginError) -> Attempt {
        Attempt::Stop(e)
    }
}

impl Retriable for Attempt {
    fn worth_retrying(&self, safety: Safety) -> bool {
        matches!(self, Attempt::Failed(f) if f.worth_retrying(safety))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Attempt::Failed(f) => f.retry_after(),
            Attempt::Stop(_) => None,
        }
    }

    fn summary(&self) -> String {
        match self {
            Attempt::Failed(f) => f.summary(),
            Attempt::Stop(e) => format!("{}: {}", e.kind, e.message),
        }
    }
}

impl Ctx<'_> {
    fn soap_creds(&self) -> soap::Credentials<'_> {
        soap::Credentials {
            username: &self.cfg.username,
            password: &self.cfg.password,
            license_key: &self.cfg.license_key,
        }
    }

    fn rest_creds(&self) -> rest::Credentials<'_> {
        rest::Credentials {
            username: &self.cfg.username,
            api_key: &self.cfg.api_key,
        }
    }
}

fn to_output<T: serde::Serialize>(value: &T) -> Result<Value, PluginError> {
    serde_json::to_value(value)
        .map_err(|e| PluginError::internal(format!("cannot encode the output: {e}")))
}

fn optional_date(input: &Value, key: &str) -> Result<Option<Date>, PluginError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Date::parse_iso(s).map(Some).ok_or_else(|| {
            PluginError::invalid_input(format!("{key} must be a calendar date written YYYY-MM-DD"))
        }),
        Some(_) => Err(PluginError::invalid_input(format!(
            "{key} must be a date written YYYY-MM-DD"
        ))),
    }
}

impl Jasper {
    /// A fresh, unique SOAP `messageId`: host clock + process counter + random bits.
    fn message_id(&self, now_ms: i64) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let random = self.ids.hash_one((n, now_ms));
        format!("devext-{now_ms:x}-{n:x}-{random:016x}")
    }

    /// One upstream request with the account's limits and the retry policy, inside the call's
    /// deadline. `build` gets a fresh message id per attempt.
    async fn exchange<T>(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        write: bool,
        build: impl Fn(&str) -> Result<HttpRequest, PluginError>,
        parse: impl Fn(&HttpResponse) -> Result<T, Failure>,
    ) -> Result<T, PluginError> {
        let safety = if write { Safety::Write } else { Safety::Read };
        let attempts = AtomicU32::new(0);
        let (build, parse, attempts_ref) = (&build, &parse, &attempts);
        let result = limits::retry_policy(what)
            .run(ctx.host, &ctx.context, safety, move |n| {
                attempts_ref.store(n, Ordering::Relaxed);
                self.attempt(ctx, what, n, build, parse)
            })
            .await;
        match result {
            Ok(v) => Ok(v),
            Err(Attempt::Stop(e)) => Err(e),
            Err(Attempt::Failed(failure)) => {
                Err(final_error(failure, attempts.into_inner(), write, what))
            }
        }
    }

    /// Attempt `n` (1, 2, ...) of a request: a permit of the account, the request, its answer.
    async fn attempt<T>(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        n: u32,
        build: &impl Fn(&str) -> Result<HttpRequest, PluginError>,
        parse: &impl Fn(&HttpResponse) -> Result<T, Failure>,
    ) -> Result<T, Attempt> {
        let host = ctx.host;
        let deadline = ctx.deadline_ms;
        let now = host.now_unix_ms()?;
        if !limits::attempt_fits(now, deadline) {
            return Err(Attempt::Stop(PluginError::new(
                ErrorKind::Timeout,
                format!("no time left before the call's deadline to call Jasper ({what})"),
            )));
        }
        // A permit of the account: a turn among its calls in flight, and a start within its
        // per-second limit (the host's limiter, shared by its replicas).
        let permit = ctx.account.acquire(host, now, deadline).await?;
        let now = host.now_unix_ms()?;
        let mut req = build(&self.message_id(now))?;
        req.timeout_ms = Some((deadline - now).max(1) as u64);
        let answer = host.http(&req).await;
        drop(permit);
        let failure = match answer {
            Ok(resp) => match parse(&resp).map_err(|f| with_retry_after(f, &resp)) {
                Ok(v) => {
                    if n > 1 {
                        host.log(
                            LogLevel::Info,
                            format!("jasper {what}: succeeded after {} retries", n - 1),
                        );
                    }
                    return Ok(v);
                }
                Err(f) => f,
            },
            Err(e) => errors::host_http_error(e),
        };
        if failure.error.kind == ErrorKind::RateLimited {
            // Jasper refused for its rate: every caller of the account waits, not just us.
            let pause = limits::rate_limit_pause_ms(failure.retry_after_ms);
            ctx.account
                .back_off(host, pause, &format!("jasper {what}: rate limit refusal"));
        }
        Err(Attempt::Failed(failure))
    }

    async fn overview(&self, ctx: &Ctx<'_>) -> Result<Value, PluginError> {
        to_output(&self.overview_data(ctx).await?)
    }

    async fn overview_data(&self, ctx: &Ctx<'_>) -> Result<model::Overview, PluginError> {
        let iccid = ctx.iccid;
        let endpoint = &ctx.cfg.endpoint;
        let out = match ctx.cfg.api {
            Api::Soap => {
                let req = soap::Request::GetTerminalDetails { iccid };
                self.exchange(
                    ctx,
                    "GetTerminalDetails",
                    false,
                    |id| soap::http_request(endpoint, &req, &ctx.soap_creds(), id),
                    |resp| {
                        let el = soap::parse_response(resp, req.operation(), OpHint::Overview)?;
                        soap::overview(&el, iccid)
                    },
                )
                .await?
            }
            Api::Rest => {
                let device = self
                    .exchange(
                        ctx,
                        "GET device",
                        false,
                        |_| Ok(rest::get_device(endpoint, iccid, &ctx.rest_creds())),
                        |resp| rest::parse_response(resp, OpHint::Overview),
                    )
                    .await?;
                let ctd = self
                    .exchange(
                        ctx,
                        "GET ctdUsages",
                        false,
                        |_| Ok(rest::get_ctd_usages(endpoint, iccid, &ctx.rest_creds())),
                        |resp| rest::parse_response(resp, OpHint::Overview),
                    )
                    .await?;
                rest::overview(iccid, &device, &ctd)
            }
        };
        Ok(out)
    }

    async fn usage(&self, ctx: &Ctx<'_>, cycle_start: Date) -> Result<Value, PluginError> {
        to_output(&self.usage_data(ctx, cycle_start).await?)
    }

    async fn usage_data(
        &self,
        ctx: &Ctx<'_>,
        cycle_start: Date,
    ) -> Result<model::Usage, PluginError> {
        let iccid = ctx.iccid;
        let endpoint = &ctx.cfg.endpoint;
        let out = match ctx.cfg.api {
            Api::Soap => {
                let req = soap::Request::GetTerminalUsage { iccid, cycle_start };
                self.exchange(
                    ctx,
                    "GetTerminalUsage",
                    false,
                    |id| soap::http_request(endpoint, &req, &ctx.soap_creds(), id),
                    |resp| {
                        let el = soap::parse_response(resp, req.operation(), OpHint::Usage)?;
                        Ok(soap::usage(&el, iccid, cycle_start))
                    },
                )
                .await?
            }
            Api::Rest => {
                self.exchange(
                    ctx,
                    "GET usageInZone",
                    false,
                    |_| {
                        Ok(rest::get_usage_in_zone(
                            endpoint,
                            iccid,
                            cycle_start,
                            &ctx.rest_creds(),
                        ))
                    },
                    |resp| {
                        let body = rest::parse_response(resp, OpHint::Usage)?;
                        rest::usage(iccid, cycle_start, &body)
                    },
                )
                .await?
            }
        };
        Ok(out)
    }

    /// The cheapest authenticated call: a read of the probe SIM (see [`connection`]).
    async fn test_connection(&self, ctx: &Ctx<'_>) -> Result<Value, PluginError> {
        let iccid = ctx.iccid;
        let endpoint = &ctx.cfg.endpoint;
        let result = match ctx.cfg.api {
            Api::Soap => {
                let req = soap::Request::GetTerminalDetails { iccid };
                self.exchange(
                    ctx,
                    "GetTerminalDetails (connection test)",
                    false,
                    |id| soap::http_request(endpoint, &req, &ctx.soap_creds(), id),
                    |resp| {
                        soap::parse_response(resp, req.operation(), OpHint::Overview).map(|_| ())
                    },
                )
                .await
            }
            Api::Rest => {
                self.exchange(
                    ctx,
                    "GET device (connection test)",
                    false,
                    |_| Ok(rest::get_device(endpoint, iccid, &ctx.rest_creds())),
                    |resp| rest::parse_response(resp, OpHint::Overview).map(|_| ()),
                )
                .await
            }
        };
        connection::classify(result)?;
        Ok(connection::passed(ctx.cfg.api.as_str(), endpoint))
    }

    /// The last three billing cycles, oldest first (see [`connection`] for the APIs' rules).
    async fn usage_history(&self, ctx: &Ctx<'_>) -> Result<Value, PluginError> {
        let today = dates::date_of_ms(ctx.host.now_unix_ms()?)
            .ok_or_else(|| PluginError::internal("the host's clock is out of range"))?;
        let [oldest, previous, current] = connection::last_three_cycles(today);
        let mut cycles = Vec::with_capacity(3);
        let mut missing = Vec::new();
        for start in [oldest, previous] {
            match self.cycle_totals(ctx, start).await {
                Ok(total) => cycles.push(CycleRow::new(start, false, total)),
                // SOAP has no record of a cycle without usage: a cycle without figures.
                Err(e) if connection::is_no_usage(&e) => {
                    missing.push(start.to_string());
                    cycles.push(CycleRow::new(start, false, Default::default()));
                }
                Err(e) => return Err(e),
            }
        }
        let now = match ctx.cfg.api {
            // GetTerminalUsage has completed cycles only: the current one is month to date.
            Api::Soap => self.overview_data(ctx).await?.month_to_date,
            Api::Rest => self.cycle_totals(ctx, current).await?,
        };
        cycles.push(CycleRow::new(current, true, now));
        let note = (!missing.is_empty()).then(|| {
            format!(
                "Jasper has no usage recorded for the cycles starting {}",
                missing.join(", ")
            )
        });
        Ok(json!({
            "iccid": ctx.iccid,
            "api": ctx.cfg.api.as_str(),
            "cycles": cycles,
            "note": note,
        }))
    }

    /// The total usage of the cycle starting `start` (SOAP `GetTerminalUsage`, REST
    /// `usageInZone`).
    async fn cycle_totals(
        &self,
        ctx: &Ctx<'_>,
        start: Date,
    ) -> Result<model::Counters, PluginError> {
        Ok(self.usage_data(ctx, start).await?.total)
    }

    /// `EditTerminal` (SOAP) or `PUT /devices/{iccid}` (REST) of one field; returns whether
    /// Jasper scheduled the change (202, or an effective date).
    async fn edit(
        &self,
        ctx: &Ctx<'_>,
        hint: OpHint,
        soap_change: (u32, &str),
        rest_field: (&str, &str),
        effective_date: Option<Date>,
    ) -> Result<bool, PluginError> {
        let iccid = ctx.iccid;
        let endpoint = &ctx.cfg.endpoint;
        match ctx.cfg.api {
            Api::Soap => {
                let req = soap::Request::EditTerminal {
                    iccid,
                    effective_date,
                    target_value: soap_change.1,
                    change_type: soap_change.0,
                };
                self.exchange(
                    ctx,
                    "EditTerminal",
                    true,
                    |id| soap::http_request(endpoint, &req, &ctx.soap_creds(), id),
                    |resp| soap::parse_response(resp, req.operation(), hint).map(|_| ()),
                )
                .await?;
                Ok(effective_date.is_some())
            }
            Api::Rest => {
                let status = self
                    .exchange(
                        ctx,
                        "PUT device",
                        true,
                        |_| {
                            Ok(rest::edit_device(
                                endpoint,
                                iccid,
                                rest_field.0,
                                rest_field.1,
                                effective_date,
                                &ctx.rest_creds(),
                            ))
                        },
                        |resp| rest::parse_response(resp, hint).map(|_| resp.status),
                    )
                    .await?;
                Ok(effective_date.is_some() || status == 202)
            }
        }
    }

    async fn set_status(&self, ctx: &Ctx<'_>, input: &Value) -> Result<Value, PluginError> {
        let id = input.get("status").and_then(Value::as_str).unwrap_or("");
        let status = SimStatus::settable_from_id(id).ok_or_else(|| {
            PluginError::invalid_input(
                "status must be one of inventory, activation_ready, activated, deactivated, retired",
            )
        })?;
        let effective_date = optional_date(input, "effective_date")?;
        self.check_effective_date(ctx, effective_date)?;
        let scheduled = self
            .edit(
                ctx,
                OpHint::SetStatus,
                (soap::CHANGE_SIM_STATUS, &status.soap_name()),
                ("status", &status.rest_name()),
                effective_date,
            )
            .await?;
        to_output(&Change {
            iccid: ctx.iccid.to_owned(),
            api: ctx.cfg.api.as_str(),
            status: Some(status.id().to_owned()),
            rate_plan: None,
            effective_date: effective_date.map(|d| d.to_string()),
            scheduled,
        })
    }

    async fn set_rate_plan(&self, ctx: &Ctx<'_>, input: &Value) -> Result<Value, PluginError> {
        let plan = input
            .get("rate_plan")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        if plan.is_empty() || plan.chars().count() > 100 {
            return Err(PluginError::invalid_input(
                "rate_plan must be a plan name of 1 to 100 characters",
            ));
        }
        if ctx.cfg.api == Api::Soap && plan.contains([',', '*']) {
            return Err(PluginError::invalid_input(
                "Jasper's SOAP API does not accept commas or '*' in a rate plan name",
            ));
        }
        let known = &ctx.cfg.rate_plans;
        if !known.is_empty() && !known.iter().any(|p| p == plan) {
            return Err(unknown_rate_plan(plan, known));
        }
        let effective_date = optional_date(input, "effective_date")?;
        self.check_effective_date(ctx, effective_date)?;
        let scheduled = self
            .edit(
                ctx,
                OpHint::SetRatePlan,
                (soap::CHANGE_RATE_PLAN, plan),
                ("ratePlan", plan),
                effective_date,
            )
            .await
            .map_err(|e| jasper_refused_plan(e, known))?;
        to_output(&Change {
            iccid: ctx.iccid.to_owned(),
            api: ctx.cfg.api.as_str(),
            status: None,
            rate_plan: Some(plan.to_owned()),
            effective_date: effective_date.map(|d| d.to_string()),
            scheduled,
        })
    }

    /// REST accepts effective dates at most 180 days ahead: say so before calling.
    fn check_effective_date(&self, ctx: &Ctx<'_>, date: Option<Date>) -> Result<(), PluginError> {
        let (Some(date), Api::Rest) = (date, ctx.cfg.api) else {
            return Ok(());
        };
        let today = ctx.host.now_unix_ms()?.div_euclid(86_400_000);
        if date.days_since_epoch() > today + 180 {
            return Err(PluginError::invalid_input(
                "effective_date is more than 180 days ahead, which Jasper's REST API refuses",
            ));
        }
        Ok(())
    }

    async fn send_sms(&self, ctx: &Ctx<'_>, input: &Value) -> Result<Value, PluginError> {
        let text = input.get("message").and_then(Value::as_str).unwrap_or("");
        let chars = text.chars().count();
        let max = match ctx.cfg.api {
            Api::Soap => soap::SOAP_SMS_MAX_CHARS,
            Api::Rest => rest::REST_SMS_MAX_CHARS,
        };
        if chars == 0 {
            return Err(PluginError::invalid_input("the message is empty"));
        }
        if chars > max {
            return Err(PluginError::invalid_input(format!(
                "the message has {chars} characters; Jasper's {} API accepts at most {max}",
                ctx.cfg.api.as_str().to_ascii_uppercase()
            )));
        }
        let iccid = ctx.iccid;
        let endpoint = &ctx.cfg.endpoint;
        let message_id = match ctx.cfg.api {
            Api::Soap => {
                let req = soap::Request::SendSms { iccid, text };
                self.exchange(
                    ctx,
                    "SendSMS",
                    true,
                    |id| soap::http_request(endpoint, &req, &ctx.soap_creds(), id),
                    |resp| {
                        let el = soap::parse_response(resp, req.operation(), OpHint::SendSms)?;
                        Ok(soap::sms_id(&el))
                    },
                )
                .await?
            }
            Api::Rest => {
                self.exchange(
                    ctx,
                    "POST smsMessages",
                    true,
                    |_| Ok(rest::send_sms(endpoint, iccid, text, &ctx.rest_creds())),
                    |resp| rest::parse_response(resp, OpHint::SendSms).map(|b| rest::sms_id(&b)),
                )
                .await?
            }
        };
        if message_id.is_none() {
            ctx.host.log(
                LogLevel::Warn,
                "jasper SendSMS: Jasper accepted the message without returning its id",
            );
        }
        to_output(&SmsSent {
            iccid: iccid.to_owned(),
            api: ctx.cfg.api.as_str(),
            message_id,
            characters: chars as u64,
        })
    }

    /// Runs a read through single-flight: concurrent identical reads of the same account share
    /// one upstream call.
    async fn shared_read<F, Fut>(
        &self,
        ctx: &Ctx<'_>,
        key: String,
        work: F,
    ) -> Result<Value, PluginError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, PluginError>>,
    {
        let (result, shared) = self.flights.run_shared(key.clone(), &work).await;
        if !shared {
            return result;
        }
        ctx.host.log(
            LogLevel::Debug,
            "jasper: answered from a concurrent identical call",
        );
        // The call we joined ran out of its own (shorter) deadline: try again with ours.
        let leader_timed_out = matches!(&result, Err(e) if e.kind == ErrorKind::Timeout);
        if leader_timed_out && limits::attempt_fits(ctx.host.now_unix_ms()?, ctx.deadline_ms) {
            return self.flights.run(key, &work).await;
        }
        result
    }
}

/// The names of `plans` for a message: the first few, then how many more.
fn plan_list(plans: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = plans
        .iter()
        .take(SHOWN)
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if plans.len() > SHOWN {
        text.push_str(&format!(" and {} more", plans.len() - SHOWN));
    }
    text
}

/// A plan name that is not in the organisation's list: refused before calling Jasper.
fn unknown_rate_plan(plan: &str, known: &[String]) -> PluginError {
    let close = known
        .iter()
        .find(|k| k.to_lowercase() == plan.to_lowercase())
        .map(|k| format!(" (did you mean {k:?}? names are case-sensitive)"))
        .unwrap_or_default();
    PluginError::invalid_input(format!(
        "unknown rate plan {plan:?}{close}: this organisation's settings list the rate plans {}",
        plan_list(known)
    ))
    .with_details(json!({
        "code": errors::CODE_UNKNOWN_RATE_PLAN,
        "rate_plan": plan,
        "known_rate_plans": known,
        "checked_by": "settings",
    }))
}

/// Jasper refused the plan as unknown: name the organisation's plans, when it lists some.
fn jasper_refused_plan(mut e: PluginError, known: &[String]) -> PluginError {
    let unknown_plan =
        e.details.get("code").and_then(Value::as_str) == Some(errors::CODE_UNKNOWN_RATE_PLAN);
    if !unknown_plan {
        return e;
    }
    if known.is_empty() {
        e.message = format!(
            "{}; Jasper's APIs offer no list of the account's plans: an administrator can list \
             the ones this organisation uses in its settings (rate_plans), and the rate_plans \
             view shows them",
            e.message
        );
        return e;
    }
    e.message = format!(
        "{}; the rate plans in this organisation's settings are {} (Jasper did not accept this \
         one for the SIM: the list may be out of date)",
        e.message,
        plan_list(known)
    );
    if let Value::Object(details) = &mut e.details {
        details.insert("known_rate_plans".into(), json!(known));
    }
    e
}

/// The `rate_plans` view: the organisation's list, from its settings.
fn rate_plans_view(cfg: &OrgConfig) -> Value {
    let note = if cfg.rate_plans.is_empty() {
        Some(
            "no rate plans are listed in this organisation's settings (rate_plans): Jasper's \
             APIs offer no list of an account's plans, so an administrator can add the names \
             used, exactly as in Control Center; until then set_rate_plan passes any name on to \
             Jasper",
        )
    } else {
        None
    };
    json!({"rate_plans": cfg.rate_plans, "note": note})
}

/// Takes the server's `Retry-After` (in seconds) into account, when the parser did not.
fn with_retry_after(mut failure: Failure, resp: &HttpResponse) -> Failure {
    if failure.retry_after_ms.is_none() {
        failure.retry_after_ms = resp
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| secs.saturating_mul(1000));
    }
    failure
}

/// The error of the last attempt, saying how often it was retried and, for a write whose fate
/// is unknown, that it may have been applied.
fn final_error(failure: Failure, attempts: u32, write: bool, what: &str) -> PluginError {
    let mut e = failure.error;
    if attempts > 1 {
        let retries = attempts - 1;
        let count = if retries == 1 {
            "once".to_owned()
        } else {
            format!("{retries} times")
        };
        e.message = match e.kind {
            ErrorKind::RateLimited => {
                let rest = e.message.strip_prefix("rate limit: ").unwrap_or(&e.message);
                format!("rate limit, retried {count}: {rest}")
            }
            _ => format!("{} (retried {count})", e.message),
        };
    }
    if write && failure.class == RetryClass::Ambiguous {
        e.message = format!(
            "{}; the request may still have been processed by Jasper: check the SIM before \
             repeating it",
            e.message
        );
        e.retryable = false;
    }
    let mut details = match std::mem::take(&mut e.details) {
        Value::Object(map) => map,
        Value::Null => Default::default(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("cause".into(), other);
            m
        }
    };
    details.insert("attempts".into(), json!(attempts));
    details.insert("request".into(), json!(what));
    e.details = Value::Object(details);
    e
}

impl Plugin for Jasper {
    fn manifest(&self) -> Manifest {
        schemas::manifest()
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        let cfg = OrgConfig::from_value(&call.org_config)?;
        // Organisation-scope operations: no device.
        if call.op == "rate_plans" {
            return Ok(rate_plans_view(&cfg));
        }
        let iccid = if call.op == "test_connection" {
            connection::PROBE_ICCID.to_owned()
        } else {
            config::iccid(&call.device_config)?
        };
        // Limits are the upstream account's, whichever org reaches it; a shared read's result
        // also needs the same credentials.
        let account = cfg.account_key(&call.context);
        let flight = format!("{account}|{}", cfg.credentials_tag());
        let ctx = Ctx {
            host: &host,
            cfg: &cfg,
            iccid: &iccid,
            deadline_ms: call.context.deadline_unix_ms,
            context: call.context.clone(),
            account: Account {
                key: account,
                gate: AccountGate::new(cfg.rate_per_second, cfg.max_in_flight),
            },
        };

        // The connection test keeps a margin before the host's deadline, so that a slow
        // endpoint gets the test's own `timeout` answer (with its details.code) rather than the
        // host's cancellation.
        let ctx = if call.op == "test_connection" {
            let deadline_ms = ctx.deadline_ms - connection::DEADLINE_MARGIN_MS;
            let mut context = ctx.context.clone();
            context.deadline_unix_ms = deadline_ms;
            Ctx {
                deadline_ms,
                context,
                ..ctx
            }
        } else {
            ctx
        };
        match call.op.as_str() {
            "overview" => {
                let key = format!("{flight}|overview|{iccid}");
                self.shared_read(&ctx, key, || self.overview(&ctx)).await
            }
            "usage" => {
                let date = call
                    .input
                    .get("cycle_start_date")
                    .and_then(Value::as_str)
                    .and_then(Date::parse_iso)
                    .ok_or_else(|| {
                        PluginError::invalid_input(
                            "cycle_start_date must be a calendar date written YYYY-MM-DD",
                        )
                    })?;
                let key = format!("{flight}|usage|{iccid}|{date}");
                self.shared_read(&ctx, key, || self.usage(&ctx, date)).await
            }
            "usage_history" => {
                let key = format!("{flight}|usage_history|{iccid}");
                self.shared_read(&ctx, key, || self.usage_history(&ctx))
                    .await
            }
            "test_connection" => self.test_connection(&ctx).await,
            "set_status" => self.set_status(&ctx, &call.input).await,
            "set_rate_plan" => self.set_rate_plan(&ctx, &call.input).await,
            "send_sms" => self.send_sms(&ctx, &call.input).await,
            other => Err(PluginError::not_found(format!(
                "the jasper plugin has no operation {other:?}"
            ))),
        }
    }
}

devext_plugin_api::export_plugin!(Jasper, Jasper::default());
