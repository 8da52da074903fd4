//! `onence`: the devext plugin for 1NCE IoT SIMs, over 1NCE's Management API v1.
//!
//! Written against the plugin API and tested with the plugin test kit only, as a third party
//! would write a plugin: see `README.md` for the settings, the operations, the mapping of the
//! API's answers and errors, the limits, and what is unknown about the real API.

mod api;
pub mod dates;
pub mod iccid;
mod parse;
mod schemas;

use std::sync::OnceLock;

use devext_plugin_api::util::{Safety, join_all};
use devext_plugin_api::{Call, Host, Manifest, Plugin, PluginError, Value, json};

use api::{Session, coded, malformed};

pub use schemas::DEFAULT_ENDPOINT;

/// The plugin. Its state (tokens, reads in flight) is shared by every call.
#[derive(Default)]
pub struct OneNce;

fn shared() -> &'static api::Shared {
    static SHARED: OnceLock<api::Shared> = OnceLock::new();
    SHARED.get_or_init(api::Shared::default)
}

fn parse_json(body: &str, what: &str) -> Result<Value, PluginError> {
    devext_plugin_api::serde_json::from_str(body).map_err(|e| malformed(what, &e.to_string()))
}

fn object(v: Value, what: &str) -> Result<Value, PluginError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(malformed(what, "not a JSON object"))
    }
}

fn today(host: &Host) -> Result<i64, PluginError> {
    Ok(host.now_unix_ms()?.div_euclid(86_400_000))
}

impl Plugin for OneNce {
    fn manifest(&self) -> Manifest {
        schemas::manifest()
    }

    async fn invoke(&self, host: Host, call: Call) -> Result<Value, PluginError> {
        let session = Session::new(&host, &call.context, &call.org_config);
        if call.op == "test_connection" {
            return session.test_connection().await;
        }
        let configured = call.device_config["iccid"].as_str().unwrap_or_default();
        let iccid = iccid::normalise(configured).map_err(|m| {
            coded(PluginError::invalid_input(m), "iccid_check_digit")
                .with_details(json!({"code": "iccid_check_digit", "pointer": "/onence/iccid"}))
        })?;
        let sim_path = format!("/v1/sims/{iccid}");
        match call.op.as_str() {
            "overview" => overview(&session, &iccid, &sim_path).await,
            "set_status" => set_status(&session, &iccid, &sim_path, &call.input).await,
            "usage" => usage(&session, &iccid, &sim_path, &call.input).await,
            "usage_history" => usage_history(&session, &iccid, &sim_path, &call.input).await,
            "send_sms" => {
                let source = call.org_config["sms_source_address"]
                    .as_str()
                    .unwrap_or("devext");
                let body = json!({"source_address": source, "payload": call.input["text"]});
                let what = "sending an SMS";
                session
                    .write(
                        "POST",
                        &format!("{sim_path}/sms"),
                        Some(&body),
                        what,
                        Safety::Write,
                    )
                    .await?;
                let now = host.now_unix_ms()?.div_euclid(1000);
                Ok(json!({
                    "iccid": iccid, "accepted": true,
                    "submitted_at": dates::format_timestamp(now)
                }))
            }
            "top_up" => {
                let method = call.input["payment_method"]
                    .as_str()
                    .or(call.org_config["payment_method"].as_str())
                    .unwrap_or("banktransfer");
                let path = format!("{sim_path}/topup?payment_method={method}");
                let resp = session
                    .write("POST", &path, None, "ordering a top-up", Safety::Write)
                    .await
                    .map_err(|e| {
                        if e.details["status"] == 400 {
                            coded(
                                PluginError::invalid_input(format!(
                                    "1NCE refused the payment method {method}"
                                )),
                                "payment_method_refused",
                            )
                        } else {
                            e
                        }
                    })?;
                let url = resp.header("location").map(str::to_owned);
                let number = url
                    .as_deref()
                    .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned);
                Ok(json!({
                    "iccid": iccid, "ordered": true, "payment_method": method,
                    "order_number": number, "order_url": url
                }))
            }
            "reset_connectivity" => {
                session
                    .write(
                        "POST",
                        &format!("{sim_path}/reset"),
                        None,
                        "resetting connectivity",
                        Safety::Write,
                    )
                    .await?;
                Ok(json!({"iccid": iccid, "requested": true}))
            }
            other => Err(PluginError::not_found(format!(
                "onence has no operation {other:?}"
            ))),
        }
    }
}

async fn read_sim(session: &Session<'_>, sim_path: &str) -> Result<Value, PluginError> {
    let resp = session.get(sim_path, "reading the SIM").await?;
    object(
        parse_json(&resp.body, "reading the SIM")?,
        "reading the SIM",
    )
}

async fn overview(
    session: &Session<'_>,
    iccid: &str,
    sim_path: &str,
) -> Result<Value, PluginError> {
    let paths = [
        (sim_path.to_owned(), "reading the SIM"),
        (
            format!("{sim_path}/status"),
            "reading the connectivity status",
        ),
        (format!("{sim_path}/quota/data"), "reading the data quota"),
        (format!("{sim_path}/quota/sms"), "reading the SMS quota"),
    ];
    let mut answers = join_all(paths.iter().map(|(p, what)| session.get(p, what)).collect()).await;
    let sim = object(
        parse_json(&answers.remove(0)?.body, "reading the SIM")?,
        "reading the SIM",
    )?;
    // The rest are extras: a failure other than the credentials' leaves its part unknown.
    let extra = |r: Result<devext_plugin_api::HttpResponse, PluginError>| match r {
        Ok(resp) => Ok(devext_plugin_api::serde_json::from_str::<Value>(&resp.body)
            .ok()
            .filter(Value::is_object)),
        Err(e) if e.kind == devext_plugin_api::ErrorKind::Unauthorized => Err(e),
        Err(e) => {
            session.host.log(
                devext_plugin_api::LogLevel::Info,
                format!("part of the overview is unknown: {}", e.message),
            );
            Ok(None)
        }
    };
    let status = extra(answers.remove(0))?;
    let data = extra(answers.remove(0))?;
    let sms = extra(answers.remove(0))?;
    let status_text = match sim["status"].as_str() {
        Some(s) if s.eq_ignore_ascii_case("enabled") || s.eq_ignore_ascii_case("activated") => {
            "Enabled"
        }
        Some(s) if s.eq_ignore_ascii_case("disabled") || s.eq_ignore_ascii_case("deactivated") => {
            "Disabled"
        }
        _ => "Unknown",
    };
    let connectivity = status
        .as_ref()
        .and_then(|s| s["status"].as_str().or(s["status"]["description"].as_str()))
        .map(str::to_ascii_uppercase)
        .filter(|s| ["ONLINE", "ATTACHED", "OFFLINE", "BLOCKED"].contains(&s.as_str()))
        .unwrap_or_else(|| "UNKNOWN".to_owned());
    let last_seen = status
        .as_ref()
        .and_then(|s| parse::timestamp(&s["location"]["last_updated"]));
    Ok(json!({
        "iccid": iccid,
        "iccid_with_luhn": parse::text(&sim["iccid_with_luhn"]).or_else(|| Some(iccid::with_check_digit(iccid))),
        "status": status_text,
        "label": parse::text(&sim["label"]),
        "imsi": parse::text(&sim["current_imsi"]).or_else(|| parse::text(&sim["imsi"])),
        "msisdn": parse::text(&sim["msisdn"]),
        "imei": parse::text(&sim["imei"]),
        "imei_lock": sim["imei_lock"].as_bool(),
        "ip_address": parse::text(&sim["ip_address"]),
        "activation_date": parse::timestamp(&sim["activation_date"]),
        "connectivity": connectivity,
        "last_seen": last_seen,
        "data_quota": parse::quota(data.as_ref(), &sim, true),
        "sms_quota": parse::quota(sms.as_ref(), &sim, false),
    }))
}

async fn set_status(
    session: &Session<'_>,
    iccid: &str,
    sim_path: &str,
    input: &Value,
) -> Result<Value, PluginError> {
    let wanted = input["status"].as_str().unwrap_or("Enabled");
    let sim = read_sim(session, sim_path).await?;
    let previous = sim["status"].as_str().unwrap_or("Unknown").to_owned();
    if previous.eq_ignore_ascii_case(wanted) {
        return Ok(
            json!({"iccid": iccid, "status": wanted, "previous_status": previous, "changed": false}),
        );
    }
    // Whether a PUT without `label` and `imei_lock` resets them is unknown: send them as they are.
    let mut body = json!({"iccid": iccid, "status": wanted});
    if let Some(label) = sim["label"].as_str() {
        body["label"] = json!(label);
    }
    if let Some(lock) = sim["imei_lock"].as_bool() {
        body["imei_lock"] = json!(lock);
    }
    // The whole state is sent: repeating it is harmless.
    session
        .write(
            "PUT",
            sim_path,
            Some(&body),
            "changing the SIM's status",
            Safety::Read,
        )
        .await?;
    Ok(json!({"iccid": iccid, "status": wanted, "previous_status": previous, "changed": true}))
}

/// Days `(day, up, down, data, mo, mt)` of `/usage` between two day numbers, oldest first.
async fn usage_days(
    session: &Session<'_>,
    sim_path: &str,
    start: i64,
    end: i64,
) -> Result<Vec<(i64, u64, u64, u64, u64, u64)>, PluginError> {
    let path = format!(
        "{sim_path}/usage?start_dt={}&end_dt={}",
        dates::format_day(start),
        dates::format_day(end)
    );
    let what = "reading the usage";
    let body = parse_json(&session.get(&path, what).await?.body, what)?;
    let stats = body["stats"]
        .as_array()
        .ok_or_else(|| malformed(what, "no stats array"))?;
    let mut days: Vec<_> = stats
        .iter()
        .filter_map(parse::usage_day)
        .filter(|d| (start..=end).contains(&d.0))
        .collect();
    days.sort_by_key(|d| d.0);
    Ok(days)
}

fn range_error(message: String, code: &str, pointer: &str) -> PluginError {
    PluginError::invalid_input(message).with_details(json!({"code": code, "pointer": pointer}))
}

async fn usage(
    session: &Session<'_>,
    iccid: &str,
    sim_path: &str,
    input: &Value,
) -> Result<Value, PluginError> {
    let day = |name: &str| {
        input[name]
            .as_str()
            .and_then(dates::parse_day)
            .ok_or_else(|| {
                range_error(
                    format!("{name} is not a date"),
                    "bad_range",
                    &format!("/{name}"),
                )
            })
    };
    let (start, end) = (day("start_date")?, day("end_date")?);
    let today = today(session.host)?;
    let earliest = dates::months_before(today, 6);
    if start > end {
        return Err(range_error(
            "start_date is after end_date".into(),
            "bad_range",
            "/start_date",
        ));
    }
    if end > today {
        return Err(range_error(
            format!(
                "end_date is in the future (today is {})",
                dates::format_day(today)
            ),
            "date_in_future",
            "/end_date",
        ));
    }
    if start < earliest {
        return Err(range_error(
            format!(
                "1NCE keeps usage for the last six months only: start_date must be {} or later",
                dates::format_day(earliest)
            ),
            "range_too_old",
            "/start_date",
        ));
    }
    let days = usage_days(session, sim_path, start, end).await?;
    let data: u64 = days.iter().map(|d| d.3).sum();
    let sms: u64 = days.iter().map(|d| d.4 + d.5).sum();
    let days: Vec<Value> = days
        .iter()
        .map(|&(day, up, down, total, mo, mt)| {
            json!({
                "date": dates::format_day(day), "data_up_bytes": up, "data_down_bytes": down,
                "data_bytes": total, "sms_mo": mo, "sms_mt": mt, "sms_count": mo + mt
            })
        })
        .collect();
    Ok(json!({
        "iccid": iccid,
        "start_date": dates::format_day(start),
        "end_date": dates::format_day(end),
        "days": days, "data_bytes": data, "sms_count": sms
    }))
}

async fn usage_history(
    session: &Session<'_>,
    iccid: &str,
    sim_path: &str,
    input: &Value,
) -> Result<Value, PluginError> {
    let months = input["months"].as_u64().unwrap_or(6).clamp(1, 6) as u32;
    let today = today(session.host)?;
    // Six whole months back would pass the API's six-month limit: the oldest month starts at
    // the later of its first day and the earliest day kept.
    let first_month = dates::month_start(dates::months_before(today, months - 1));
    let start = first_month.max(dates::months_before(today, 6));
    let days = usage_days(session, sim_path, start, today).await?;
    let mut cycles = Vec::new();
    let mut month = first_month;
    while month <= today {
        let next = dates::month_start(month + 31);
        let (data, sms) = days
            .iter()
            .filter(|d| (month..next).contains(&d.0))
            .fold((0u64, 0u64), |(a, b), d| (a + d.3, b + d.4 + d.5));
        cycles.push(
            json!({"cycle_start": dates::format_day(month), "data_bytes": data, "sms_count": sms}),
        );
        month = next;
    }
    Ok(json!({"iccid": iccid, "cycles": cycles}))
}

devext_plugin_api::export_plugin!(OneNce, OneNce);
