//! The SOAP 1.1 API: Terminal, Billing and Sms services.
//!
//! Requests are parsed namespace-aware (any prefix, or a default namespace),
//! checked against the element order of the Jasper schema, authenticated with
//! a WS-Security UsernameToken (PasswordText) plus the `licenseKey` of the
//! body, then executed against the account. Responses use the `ns2:` prefix,
//! like the real (JAXB-based) servers, and include a few elements that are
//! not in the published schema, which clients must ignore.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDate, Utc};

use crate::account::{
    self, DateRuleError, Edit, EditError, LookupError, OverageOverride, Sim, SimStatus, SmsError,
    SmsSubmission, Totals,
};
use crate::xml::{Element, XmlOut};
use crate::{AppState, SharedState, WriteApplied, dates};

/// SOAP 1.1 envelope namespace.
pub(crate) const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace (answered with a VersionMismatch fault).
const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// Jasper schema namespace of every body element.
pub(crate) const JASPER_NS: &str = "http://api.jasperwireless.com/ws/schema";
/// WS-Security extension namespace.
pub(crate) const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// The only accepted UsernameToken password type.
pub(crate) const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const SPRING_WS_NS: &str = "http://springframework.org/spring-ws";

/// API version reported in responses (the version public samples show).
const API_VERSION: &str = "7.28";
/// Build reported in responses.
const BUILD: &str = concat!("jasper-sim-", env!("CARGO_PKG_VERSION"));
/// Longest SMS text accepted by SOAP SendSMS.
const SMS_MAX_CHARS: usize = 160;

/// A SOAP service endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Terminal,
    Billing,
    Sms,
}

impl Service {
    /// Service from the last path segment, case-insensitively.
    fn parse(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "terminal" => Some(Service::Terminal),
            "billing" => Some(Service::Billing),
            "sms" => Some(Service::Sms),
            _ => None,
        }
    }

    fn operations(self) -> &'static [Op] {
        match self {
            Service::Terminal => &[Op::GetTerminalDetails, Op::EditTerminal],
            Service::Billing => &[Op::GetTerminalUsage],
            Service::Sms => &[Op::SendSms],
        }
    }
}

/// A simulated operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    GetTerminalDetails,
    EditTerminal,
    GetTerminalUsage,
    SendSms,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetTerminalDetails => "GetTerminalDetails",
            Op::EditTerminal => "EditTerminal",
            Op::GetTerminalUsage => "GetTerminalUsage",
            Op::SendSms => "SendSMS",
        }
    }

    /// Child elements of the request, in schema order.
    fn spec(self) -> &'static [Slot] {
        match self {
            Op::GetTerminalDetails => GET_TERMINAL_DETAILS,
            Op::EditTerminal => EDIT_TERMINAL,
            Op::GetTerminalUsage => GET_TERMINAL_USAGE,
            Op::SendSms => SEND_SMS,
        }
    }
}

const fn slot(name: &'static str, min: usize, max: usize) -> Slot {
    Slot { name, min, max }
}

const GET_TERMINAL_DETAILS: &[Slot] = &[
    slot("messageId", 1, 1),
    slot("version", 1, 1),
    slot("licenseKey", 1, 1),
    slot("iccids", 1, 1),
];
const ICCID_LIST: &[Slot] = &[slot("iccid", 1, 50)];
const EDIT_TERMINAL: &[Slot] = &[
    slot("messageId", 1, 1),
    slot("version", 1, 1),
    slot("licenseKey", 1, 1),
    slot("iccid", 1, 1),
    slot("effectiveDate", 0, 1),
    slot("targetValue", 0, 1),
    slot("changeType", 1, 1),
];
const GET_TERMINAL_USAGE: &[Slot] = &[
    slot("messageId", 1, 1),
    slot("version", 1, 1),
    slot("licenseKey", 1, 1),
    slot("iccid", 1, 1),
    slot("cycleStartDate", 0, 1),
];
const SEND_SMS: &[Slot] = &[
    slot("messageId", 1, 1),
    slot("version", 1, 1),
    slot("licenseKey", 1, 1),
    slot("sentToIccid", 1, 1),
    slot("messageText", 0, 1),
    slot("tpvp", 0, 1),
];

/// One element of a schema sequence.
#[derive(Debug)]
struct Slot {
    name: &'static str,
    min: usize,
    max: usize,
}

/// `faultcode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultCode {
    Client,
    Server,
    VersionMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FaultDetail {
    None,
    /// `<detail><error>…</error></detail>`: Jasper's token or message.
    Error(String),
    /// Spring-WS schema validation message.
    Validation(String),
}

/// A SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    code: FaultCode,
    string: String,
    detail: FaultDetail,
}

impl Fault {
    /// A Jasper API error: `faultstring` is the numeric code.
    fn jasper(code: u32, detail: impl Into<String>) -> Self {
        let server = matches!(code, 400300 | 500600);
        Fault {
            code: if server {
                FaultCode::Server
            } else {
                FaultCode::Client
            },
            string: code.to_string(),
            detail: FaultDetail::Error(detail.into()),
        }
    }

    /// A protocol-level client error (not a Jasper code).
    fn client(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Client,
            string: message.into(),
            detail: FaultDetail::None,
        }
    }

    /// A schema validation error, as Spring-WS reports it.
    fn validation(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Client,
            string: "Validation error".to_owned(),
            detail: FaultDetail::Validation(message.into()),
        }
    }

    fn invalid_value(value: &str, ty: &str) -> Self {
        Fault::validation(format!(
            "cvc-datatype-valid.1.2.1: '{value}' is not a valid value for '{ty}'."
        ))
    }

    fn lookup(error: LookupError, iccid: &str) -> Self {
        match error {
            LookupError::NotFound => {
                Fault::jasper(100100, format!("Device not found for ICCID {iccid}"))
            }
            LookupError::OtherAccount => Fault::jasper(
                400201,
                format!("Access violation: ICCID {iccid} belongs to another account"),
            ),
        }
    }
}

/// A successful operation's envelope.
#[derive(Debug)]
struct Reply {
    xml: Vec<u8>,
    write: bool,
}

/// Request-wide values echoed in responses.
#[derive(Debug)]
struct Ctx {
    correlation_id: String,
    request_id: String,
    now: DateTime<Utc>,
}

/// Validated children of a request element, grouped by slot.
#[derive(Debug)]
struct Fields<'a> {
    slots: &'static [Slot],
    found: Vec<Vec<&'a Element>>,
}

impl<'a> Fields<'a> {
    fn all(&self, name: &str) -> &[&'a Element] {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| self.found.get(i))
            .map_or(&[], Vec::as_slice)
    }

    fn first(&self, name: &str) -> Option<&'a Element> {
        self.all(name).first().copied()
    }

    /// Trimmed text of the first element named `name`.
    fn text(&self, name: &str) -> Option<&'a str> {
        self.first(name).map(Element::trimmed)
    }
}

/// Checks the children of `element` against a schema sequence.
fn validate<'a>(element: &'a Element, slots: &'static [Slot]) -> Result<Fields<'a>, Fault> {
    let mut found: Vec<Vec<&Element>> = vec![Vec::new(); slots.len()];
    let expected = |from: usize| {
        slots
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|s| format!("\"{JASPER_NS}\":{}", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let incomplete = |k: usize| {
        Fault::validation(format!(
            "cvc-complex-type.2.4.b: The content of element '{}' is not complete. One of '{{{}}}' is expected.",
            element.local,
            expected(k)
        ))
    };
    let mut i = 0;
    for child in &element.children {
        let position = if child.ns.as_deref() == Some(JASPER_NS) {
            slots
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|s| s.name == child.local)
                .map(|p| p + i)
        } else {
            None
        };
        let unexpected = || {
            Fault::validation(format!(
                "cvc-complex-type.2.4.a: Invalid content was found starting with element '{}'. One of '{{{}}}' is expected.",
                child.label(),
                expected(i)
            ))
        };
        let Some(j) = position else {
            return Err(unexpected());
        };
        for k in i..j {
            if found[k].len() < slots[k].min {
                return Err(incomplete(k));
            }
        }
        if found[j].len() >= slots[j].max {
            return Err(unexpected());
        }
        found[j].push(child);
        i = j;
    }
    for k in i..slots.len() {
        if found[k].len() < slots[k].min {
            return Err(incomplete(k));
        }
    }
    Ok(Fields { slots, found })
}

fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("sim-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Handler of `/ws/service/{service}`.
pub(crate) async fn endpoint(
    State(state): State<SharedState>,
    Path(service): Path<String>,
    method: Method,
    body: Bytes,
) -> Response {
    let Some(service) = Service::parse(&service) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    if method != Method::POST {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    match handle(&state, service, &body) {
        Ok(reply) => {
            let mut response = xml_response(StatusCode::OK, reply.xml);
            if reply.write {
                response.extensions_mut().insert(WriteApplied);
            }
            response
        }
        Err(fault) => fault_response(&fault),
    }
}

fn handle(state: &AppState, service: Service, body: &[u8]) -> Result<Reply, Fault> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Fault::client("Could not access envelope: the request is not UTF-8"))?;
    let root = crate::xml::parse_document(text)
        .map_err(|e| Fault::client(format!("Could not access envelope: {e}")))?;
    if root.is(SOAP12_ENV, "Envelope") {
        return Err(Fault {
            code: FaultCode::VersionMismatch,
            string: "Only SOAP 1.1 envelopes are supported".to_owned(),
            detail: FaultDetail::None,
        });
    }
    if !root.is(SOAP_ENV, "Envelope") {
        return Err(Fault::client(format!(
            "Could not access envelope: root element {} is not a SOAP 1.1 Envelope",
            root.label()
        )));
    }
    let soap_body = root
        .child(SOAP_ENV, "Body")
        .ok_or_else(|| Fault::client("The SOAP envelope has no Body"))?;
    let request = soap_body
        .children
        .first()
        .ok_or_else(|| Fault::client("The SOAP Body is empty"))?;
    let op = service
        .operations()
        .iter()
        .copied()
        .find(|op| request.is(JASPER_NS, &format!("{}Request", op.name())))
        .ok_or_else(|| {
            Fault::client(format!(
                "No endpoint mapping found for [SaajSoapMessage {}]",
                request.label()
            ))
        })?;
    state.traffic.record_op(&format!("soap:{}", op.name()));

    let (username, password) = username_token(&root)?;
    let fields = validate(request, op.spec())?;
    let credentials = &state.credentials;
    if username != credentials.username || password != credentials.password {
        return Err(Fault::jasper(400200, "Invalid username or password"));
    }
    if fields.text("licenseKey") != Some(credentials.license_key.as_str()) {
        return Err(Fault::jasper(400100, "Invalid license key"));
    }
    let ctx = Ctx {
        correlation_id: fields.text("messageId").unwrap_or_default().to_owned(),
        request_id: next_request_id(),
        now: AppState::now(),
    };
    match op {
        Op::GetTerminalDetails => get_terminal_details(state, &fields, &ctx),
        Op::EditTerminal => edit_terminal(state, &fields, &ctx),
        Op::GetTerminalUsage => get_terminal_usage(state, &fields, &ctx),
        Op::SendSms => send_sms(state, request, &fields, &ctx),
    }
}

/// Extracts the UsernameToken credentials of the WS-Security header.
fn username_token(envelope: &Element) -> Result<(String, String), Fault> {
    let token = envelope
        .child(SOAP_ENV, "Header")
        .and_then(|h| h.child(WSSE_NS, "Security"))
        .and_then(|s| s.child(WSSE_NS, "UsernameToken"))
        .ok_or_else(|| Fault::jasper(400200, "A WS-Security UsernameToken header is required"))?;
    let username = token.child(WSSE_NS, "Username");
    let password = token.child(WSSE_NS, "Password");
    let (Some(username), Some(password)) = (username, password) else {
        return Err(Fault::jasper(
            400200,
            "The UsernameToken must contain a Username and a Password",
        ));
    };
    if let Some(kind) = password.attr("Type")
        && kind.trim() != PASSWORD_TEXT
    {
        return Err(Fault::jasper(
            400200,
            "Only the PasswordText password type is supported",
        ));
    }
    Ok((username.trimmed().to_owned(), password.text.clone()))
}

fn check_iccid(iccid: &str) -> Result<(), Fault> {
    if account::iccid_well_formed(iccid) {
        Ok(())
    } else {
        Err(Fault::jasper(100101, format!("Invalid ICCID '{iccid}'")))
    }
}

/// Data volume in decimal megabytes with 3 decimals (1 MB = 1,000,000 bytes,
/// rounded half up to the kilobyte).
pub(crate) fn format_mb(bytes: u64) -> String {
    let thousandths = bytes.saturating_add(500) / 1000;
    format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
}

fn reply(
    ctx: &Ctx,
    op: Op,
    write: bool,
    content: impl FnOnce(&mut XmlOut) -> io::Result<()>,
) -> Result<Reply, Fault> {
    let build = || -> io::Result<Vec<u8>> {
        let mut out = XmlOut::new()?;
        out.start("SOAP-ENV:Envelope", &[("xmlns:SOAP-ENV", SOAP_ENV)])?;
        out.empty("SOAP-ENV:Header", &[])?;
        out.start("SOAP-ENV:Body", &[])?;
        let name = format!("ns2:{}Response", op.name());
        out.start(
            &name,
            &[
                ("xmlns:ns2", JASPER_NS),
                ("xmlns:xsi", XSI_NS),
                ("ns2:requestId", &ctx.request_id),
            ],
        )?;
        out.leaf("ns2:correlationId", &ctx.correlation_id)?;
        out.leaf("ns2:version", API_VERSION)?;
        out.leaf("ns2:build", BUILD)?;
        out.leaf("ns2:timestamp", &dates::soap_datetime(ctx.now))?;
        content(&mut out)?;
        out.end(&name)?;
        out.end("SOAP-ENV:Body")?;
        out.end("SOAP-ENV:Envelope")?;
        Ok(out.finish())
    };
    build()
        .map(|xml| Reply { xml, write })
        .map_err(|e| Fault::jasper(400300, e.to_string()))
}

/// Everything needed to write one `<terminal>`.
struct TerminalRow {
    sim: Sim,
    usage: Totals,
    sessions: u64,
    overage: bool,
}

fn get_terminal_details(state: &AppState, f: &Fields<'_>, ctx: &Ctx) -> Result<Reply, Fault> {
    let iccids = f
        .first("iccids")
        .ok_or_else(|| Fault::validation("iccids is required"))?;
    let list = validate(iccids, ICCID_LIST)?;
    let mut rows = Vec::new();
    {
        let account = state.account();
        let mut seen = HashSet::new();
        for el in list.all("iccid") {
            let iccid = el.trimmed();
            if !seen.insert(iccid) {
                continue;
            }
            match account.lookup(iccid) {
                Ok(sim) => {
                    let cycle = sim.current_usage(ctx.now);
                    rows.push(TerminalRow {
                        sim: sim.clone(),
                        usage: cycle.totals(),
                        sessions: cycle.sessions,
                        overage: account.overage_reached(sim, ctx.now),
                    });
                }
                // A SIM of another account is a security violation...
                Err(LookupError::OtherAccount) => {
                    return Err(Fault::lookup(LookupError::OtherAccount, iccid));
                }
                // ...while unknown ICCIDs are simply left out.
                Err(LookupError::NotFound) => {}
            }
        }
    }
    reply(ctx, Op::GetTerminalDetails, false, |out| {
        out.start("ns2:terminals", &[])?;
        for row in &rows {
            write_terminal(out, row)?;
        }
        out.end("ns2:terminals")
    })
}

fn write_terminal(out: &mut XmlOut, row: &TerminalRow) -> io::Result<()> {
    let sim = &row.sim;
    let nil = [("xsi:nil", "true")];
    out.start("ns2:terminal", &[("msisdn", &sim.msisdn)])?;
    out.leaf("ns2:iccid", &sim.iccid)?;
    if let Some(id) = &sim.device_id {
        out.leaf("ns2:terminalId", id)?;
    }
    if let Some(id) = &sim.modem_id {
        out.leaf("ns2:modemId", id)?;
    }
    match &sim.customer {
        Some(c) => out.leaf("ns2:customer", c)?,
        None => out.empty("ns2:customer", &[])?,
    }
    out.leaf("ns2:suspended", "N")?;
    out.leaf("ns2:ratePlan", &sim.rate_plan)?;
    out.leaf("ns2:status", sim.status.soap_name())?;
    out.leaf("ns2:monthToDateUsage", &format_mb(row.usage.data_bytes))?;
    out.leaf("ns2:overageLimitReached", bool_text(row.overage))?;
    out.leaf("ns2:overageLimitOverride", sim.overage_override.wire())?;
    if let Some(d) = sim.date_activated {
        out.leaf("ns2:dateActivated", &dates::soap_datetime(d))?;
    }
    out.leaf("ns2:dateAdded", &dates::soap_datetime(sim.date_added))?;
    out.leaf("ns2:dateModified", &dates::soap_datetime(sim.date_modified))?;
    out.leaf("ns2:dateShipped", &dates::soap_datetime(sim.date_shipped))?;
    out.leaf("ns2:monthToDateDataUsage", &format_mb(row.usage.data_bytes))?;
    out.leaf("ns2:monthToDateSMSUsage", &row.usage.sms().to_string())?;
    out.leaf(
        "ns2:monthToDateVoiceUsage",
        &row.usage.voice_secs().to_string(),
    )?;
    out.leaf("ns2:accountId", account::ACCOUNT_ID)?;
    match sim.custom.get("ipv4Address") {
        Some(ip) => out.leaf("ns2:fixedIpAddress", ip)?,
        None => out.empty("ns2:fixedIpAddress", &nil)?,
    }
    out.leaf("ns2:ctdSessionCount", &row.sessions.to_string())?;
    out.leaf("ns2:imsi", &sim.imsi)?;
    out.leaf("ns2:primaryICCID", &sim.iccid)?;
    if let Some(imei) = &sim.imei {
        out.leaf("ns2:imei", imei)?;
    }
    // Not in the published schema (the real type ends with xs:any).
    out.leaf("ns2:communicationPlan", &sim.communication_plan)?;
    out.empty("ns2:eid", &nil)?;
    out.end("ns2:terminal")
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn parse_date_field(f: &Fields<'_>, name: &str) -> Result<Option<NaiveDate>, Fault> {
    match f.text(name) {
        None => Ok(None),
        Some(text) => dates::parse_xs_date(text)
            .map(Some)
            .ok_or_else(|| Fault::invalid_value(text, "date")),
    }
}

fn edit_terminal(state: &AppState, f: &Fields<'_>, ctx: &Ctx) -> Result<Reply, Fault> {
    let iccid = f.text("iccid").unwrap_or_default();
    let effective = parse_date_field(f, "effectiveDate")?;
    let change_text = f.text("changeType").unwrap_or_default();
    let change_type: i32 = change_text
        .parse()
        .map_err(|_| Fault::invalid_value(change_text, "integer"))?;
    let target = f.text("targetValue").filter(|t| !t.is_empty());
    check_iccid(iccid)?;
    state
        .account()
        .lookup(iccid)
        .map_err(|e| Fault::lookup(e, iccid))?;

    let text_value = |max: usize| -> Result<String, Fault> {
        let value = target.unwrap_or_default();
        if value.chars().count() > max || value.contains([',', '*']) {
            return Err(Fault::jasper(100300, "INVALID_TARGET_VALUE"));
        }
        Ok(value.to_owned())
    };
    let edit = match change_type {
        1 => Edit::DeviceId(text_value(50)?),
        2 => Edit::ModemId(text_value(40)?),
        3 => {
            let value = target.ok_or_else(|| Fault::jasper(100300, "SIMSTATUS_NULL"))?;
            let status = SimStatus::from_soap_name(value)
                .filter(|s| s.is_target())
                .ok_or_else(|| Fault::jasper(100300, "SIMSTATUS_INVALID"))?;
            Edit::Status(status)
        }
        4 => Edit::RatePlan(
            target
                .ok_or_else(|| Fault::jasper(100520, "RATEPLAN_NULL"))?
                .to_owned(),
        ),
        6 => Edit::Customer(text_value(100)?),
        7 => Edit::OverageOverride(
            target
                .and_then(OverageOverride::parse)
                .ok_or_else(|| Fault::jasper(100300, "OVERRIDEMODE_INVALID"))?,
        ),
        other => {
            return Err(Fault::jasper(
                100200,
                format!("Invalid or unsupported change type {other}"),
            ));
        }
    };
    let when = account::resolve_effective_date(effective, ctx.now).map_err(|e| {
        let activation = edit == Edit::Status(SimStatus::Activated);
        let token = match e {
            DateRuleError::InPast if activation => "ACTIVATION_IN_PAST",
            DateRuleError::InPast | DateRuleError::TooFar => "INVALID_EFFECTIVE_DATE",
        };
        Fault::jasper(100300, token)
    })?;
    state
        .account()
        .edit(iccid, vec![edit], when, ctx.now)
        .map_err(|e| match e {
            EditError::Lookup(l) => Fault::lookup(l, iccid),
            EditError::BackToActivationReady { .. } | EditError::Transition { .. } => {
                Fault::jasper(100300, "SIMSTATUS_INVALID_TRANSITION")
            }
            EditError::UnknownRatePlan(_) => Fault::jasper(100520, "RATEPLAN_INVALID"),
            EditError::UnknownCommunicationPlan(_) => Fault::jasper(100300, "COMMPLAN_INVALID"),
        })?;
    let effective = effective.unwrap_or_else(|| ctx.now.date_naive());
    reply(ctx, Op::EditTerminal, true, |out| {
        out.leaf("ns2:iccid", iccid)?;
        out.leaf("ns2:effectiveDate", &dates::soap_date(effective))
    })
}

fn get_terminal_usage(state: &AppState, f: &Fields<'_>, ctx: &Ctx) -> Result<Reply, Fault> {
    let iccid = f.text("iccid").unwrap_or_default();
    let cycle = parse_date_field(f, "cycleStartDate")?
        .ok_or_else(|| Fault::jasper(200200, "cycleStartDate is required"))?;
    check_iccid(iccid)?;
    let (sim, usage) = {
        let account = state.account();
        let sim = account.lookup(iccid).map_err(|e| Fault::lookup(e, iccid))?;
        let usage = sim.usage.get(&cycle).cloned().ok_or_else(|| {
            Fault::jasper(
                200200,
                format!("No usage found for ICCID {iccid} in the cycle starting {cycle}"),
            )
        })?;
        (sim.clone(), usage)
    };
    let total = usage.totals();
    let billable = usage.billable();
    let is_billed = cycle != dates::cycle_start(ctx.now, 0);
    let plan = usage
        .zones
        .first()
        .map_or(sim.rate_plan.as_str(), |z| z.rate_plan.as_str());
    reply(ctx, Op::GetTerminalUsage, false, |out| {
        out.leaf("ns2:iccid", &sim.iccid)?;
        if let Some(id) = &sim.device_id {
            out.leaf("ns2:terminalId", id)?;
        }
        match &sim.customer {
            Some(c) => out.leaf("ns2:customer", c)?,
            None => out.empty("ns2:customer", &[])?,
        }
        out.leaf("ns2:totalDataVolume", &format_mb(total.data_bytes))?;
        out.leaf("ns2:billableDataVolume", &format_mb(billable.data_bytes))?;
        out.leaf("ns2:cycleStartDate", &dates::soap_date(cycle))?;
        out.leaf("ns2:billable", bool_text(is_billed))?;
        out.leaf("ns2:totalSMSVolume", &total.sms().to_string())?;
        out.leaf("ns2:billableSMSVolume", &billable.sms().to_string())?;
        out.leaf("ns2:totalVoiceVolume", &total.voice_secs().to_string())?;
        out.leaf(
            "ns2:billableVoiceVolume",
            &billable.voice_secs().to_string(),
        )?;
        out.leaf("ns2:ratePlan", plan)?;
        out.leaf("ns2:eventsUsage", "0.000")?;
        out.leaf("ns2:totalEvents", "0")
    })
}

fn send_sms(
    state: &AppState,
    request: &Element,
    f: &Fields<'_>,
    ctx: &Ctx,
) -> Result<Reply, Fault> {
    let encoding = request
        .attr("messageTextEncoding")
        .map_or("LITERAL", str::trim);
    if encoding != "LITERAL" && encoding != "BASE64" {
        return Err(Fault::validation(format!(
            "cvc-enumeration-valid: Value '{encoding}' is not facet-valid with respect to enumeration '[LITERAL, BASE64]'."
        )));
    }
    let tpvp = match f.text("tpvp") {
        None => None,
        Some(t) => Some(
            t.parse::<u8>()
                .map_err(|_| Fault::invalid_value(t, "unsignedByte"))?,
        ),
    };
    let iccid = f.text("sentToIccid").unwrap_or_default();
    let raw = f.first("messageText").map_or("", |e| e.text.as_str());
    if raw.is_empty() {
        return Err(Fault::jasper(500400, "Message text is null"));
    }
    let message = if encoding == "BASE64" {
        let bytes = BASE64
            .decode(raw.trim())
            .map_err(|e| Fault::jasper(500800, format!("BASE64 decoding error: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| Fault::jasper(500900, "Decoded message text is not UTF-8"))?
    } else {
        raw.to_owned()
    };
    if message.is_empty() {
        return Err(Fault::jasper(500400, "Message text is null"));
    }
    if message.chars().count() > SMS_MAX_CHARS {
        return Err(Fault::jasper(
            500500,
            format!("Message text is longer than {SMS_MAX_CHARS} characters"),
        ));
    }
    check_iccid(iccid)?;
    let submission = SmsSubmission {
        message,
        encoding: encoding.to_owned(),
        data_coding: None,
        tpvp,
        api: "soap",
    };
    let id = state
        .account()
        .send_sms(iccid, submission, ctx.now)
        .map_err(|e| match e {
            SmsError::Lookup(l) => Fault::lookup(l, iccid),
            SmsError::NotActive(status) => Fault::jasper(
                500700,
                format!(
                    "SIM is not active or suspended (status {})",
                    status.soap_name()
                ),
            ),
        })?;
    reply(ctx, Op::SendSms, true, |out| {
        out.leaf("ns2:smsMsgId", &id.to_string())
    })
}

fn xml_response(status: StatusCode, xml: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

fn fault_xml(fault: &Fault) -> io::Result<Vec<u8>> {
    let mut out = XmlOut::new()?;
    out.start("SOAP-ENV:Envelope", &[("xmlns:SOAP-ENV", SOAP_ENV)])?;
    out.empty("SOAP-ENV:Header", &[])?;
    out.start("SOAP-ENV:Body", &[])?;
    out.start("SOAP-ENV:Fault", &[])?;
    let code = match fault.code {
        FaultCode::Client => "SOAP-ENV:Client",
        FaultCode::Server => "SOAP-ENV:Server",
        FaultCode::VersionMismatch => "SOAP-ENV:VersionMismatch",
    };
    out.leaf("faultcode", code)?;
    out.leaf_with("faultstring", &[("xml:lang", "en")], &fault.string)?;
    match &fault.detail {
        FaultDetail::None => {}
        FaultDetail::Error(text) => {
            out.start("detail", &[])?;
            out.leaf("error", text)?;
            out.end("detail")?;
        }
        FaultDetail::Validation(text) => {
            out.start("detail", &[])?;
            out.leaf_with(
                "spring-ws:ValidationError",
                &[("xmlns:spring-ws", SPRING_WS_NS)],
                text,
            )?;
            out.end("detail")?;
        }
    }
    out.end("SOAP-ENV:Fault")?;
    out.end("SOAP-ENV:Body")?;
    out.end("SOAP-ENV:Envelope")?;
    Ok(out.finish())
}

/// The fault envelope, HTTP 500 (SOAP 1.1 over HTTP).
pub(crate) fn fault_response(fault: &Fault) -> Response {
    match fault_xml(fault) {
        Ok(xml) => xml_response(StatusCode::INTERNAL_SERVER_ERROR, xml),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Rate-limit fault `400101`.
pub(crate) fn rate_limit_response() -> Response {
    fault_response(&Fault::jasper(
        400101,
        "License has exceeded the rate limit for API calls",
    ))
}

/// Injected server error: fault `400300`.
pub(crate) fn server_error_response() -> Response {
    fault_response(&Fault::jasper(400300, "System internal error"))
}

/// Injected malformed answer: HTTP 200 with a truncated envelope.
pub(crate) fn malformed_response() -> Response {
    let truncated = || -> io::Result<Vec<u8>> {
        let mut out = XmlOut::new()?;
        out.start("SOAP-ENV:Envelope", &[("xmlns:SOAP-ENV", SOAP_ENV)])?;
        out.start("SOAP-ENV:Body", &[])?;
        out.start(
            "ns2:GetTerminalDetailsResponse",
            &[("xmlns:ns2", JASPER_NS)],
        )?;
        out.raw("<ns2:correlationId>12");
        Ok(out.finish())
    };
    match truncated() {
        Ok(xml) => xml_response(StatusCode::OK, xml),
        Err(_) => StatusCode::OK.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes() {
        assert_eq!(format_mb(0), "0.000");
        assert_eq!(format_mb(1_000_000), "1.000");
        assert_eq!(format_mb(1_234_567), "1.235");
        assert_eq!(format_mb(499), "0.000");
        assert_eq!(format_mb(500), "0.001");
        assert_eq!(format_mb(2_999_999_999), "3000.000");
    }

    #[test]
    fn sequence_validation() {
        let doc = format!(
            r#"<r xmlns="{JASPER_NS}"><messageId/><version/><licenseKey/><iccid>1</iccid><changeType>3</changeType></r>"#
        );
        let el = crate::xml::parse_document(&doc).unwrap();
        let f = validate(&el, Op::EditTerminal.spec()).unwrap();
        assert_eq!(f.text("changeType"), Some("3"));
        assert_eq!(f.text("targetValue"), None);

        let wrong_order = format!(
            r#"<r xmlns="{JASPER_NS}"><messageId/><licenseKey/><version/><iccid>1</iccid><changeType>3</changeType></r>"#
        );
        let el = crate::xml::parse_document(&wrong_order).unwrap();
        assert!(validate(&el, Op::EditTerminal.spec()).is_err());

        let missing = format!(r#"<r xmlns="{JASPER_NS}"><messageId/><version/></r>"#);
        let el = crate::xml::parse_document(&missing).unwrap();
        assert!(validate(&el, Op::EditTerminal.spec()).is_err());

        let foreign = format!(
            r#"<r xmlns="{JASPER_NS}"><messageId/><version/><licenseKey/><x:iccid xmlns:x="urn:other">1</x:iccid><changeType>3</changeType></r>"#
        );
        let el = crate::xml::parse_document(&foreign).unwrap();
        assert!(validate(&el, Op::EditTerminal.spec()).is_err());
    }
}
