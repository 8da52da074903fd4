//! Test helpers: starting a simulator, a raw HTTP/1.1 client, SOAP request
//! building and SOAP/JSON response reading.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use devext_jasper_sim::{LimitSettings, RunningSim, SimConfig, SimView};
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub(crate) const JASPER_NS: &str = "http://api.jasperwireless.com/ws/schema";
pub(crate) const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub(crate) const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub(crate) const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// A simulator with rate limits off (most tests fire requests back to back).
pub(crate) async fn sim() -> RunningSim {
    sim_with(|_| {}).await
}

/// A simulator with limits off, customised by `tweak`.
pub(crate) async fn sim_with(tweak: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut config = SimConfig {
        limits: LimitSettings {
            enabled: false,
            ..LimitSettings::default()
        },
        ..SimConfig::default()
    };
    tweak(&mut config);
    devext_jasper_sim::start(config)
        .await
        .expect("simulator starts")
}

/// First SIM with the given status id.
pub(crate) fn sim_in(sim: &RunningSim, status: &str) -> SimView {
    sim.sims()
        .into_iter()
        .find(|s| s.status == status)
        .unwrap_or_else(|| panic!("no SIM in status {status}"))
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        self.json_as()
    }

    /// The body deserialized as `T` (e.g. a view of the control endpoints).
    pub(crate) fn json_as<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not the expected JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads
/// the whole answer. A connection closed without any byte is an
/// `UnexpectedEof` error.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in 10 s"))?;
    // A connection aborted with unread request bytes may be reset rather
    // than closed: both mean "no response".
    let raw = match raw {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Vec::new(),
        other => other?,
    };
    if raw.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no header end"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A control-endpoint request (`/_sim/...`: no credentials); a non-empty `json` is sent as the
/// body with `Content-Type: application/json`.
pub(crate) async fn control(
    sim: &RunningSim,
    method: &str,
    path: &str,
    json: &str,
) -> HttpResponse {
    let headers: &[(&str, &str)] = if json.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    send(sim.addr(), method, path, headers, json.as_bytes())
        .await
        .expect("control endpoint answered")
}

/// `GET` on a control endpoint.
pub(crate) async fn control_get(sim: &RunningSim, path: &str) -> HttpResponse {
    control(sim, "GET", path, "").await
}

/// Basic authorization header value.
pub(crate) fn basic(user: &str, key: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{key}")))
}

/// Authenticated REST GET (`path` relative to `/rws/api/v1`).
pub(crate) async fn rest_get(sim: &RunningSim, path: &str) -> HttpResponse {
    let auth = basic("demo", "demo-api-key");
    send(
        sim.addr(),
        "GET",
        &format!("/rws/api/v1{path}"),
        &[("Authorization", &auth), ("Accept", "application/json")],
        b"",
    )
    .await
    .expect("REST GET answered")
}

/// Authenticated REST request with a JSON body; `Err` if the connection was
/// dropped.
pub(crate) async fn rest_send(
    sim: &RunningSim,
    method: &str,
    path: &str,
    body: &str,
) -> io::Result<HttpResponse> {
    let auth = basic("demo", "demo-api-key");
    send(
        sim.addr(),
        method,
        &format!("/rws/api/v1{path}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
}

/// Authenticated REST `PUT` with a JSON body, which must be answered.
pub(crate) async fn rest_put(sim: &RunningSim, path: &str, body: &str) -> HttpResponse {
    rest_send(sim, "PUT", path, body)
        .await
        .expect("REST PUT answered")
}

/// Authenticated REST `POST` with a JSON body, which must be answered.
pub(crate) async fn rest_post(sim: &RunningSim, path: &str, body: &str) -> HttpResponse {
    rest_send(sim, "POST", path, body)
        .await
        .expect("REST POST answered")
}

/// Asserts a REST error answer.
pub(crate) fn assert_rest_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    let body = response.json();
    assert_eq!(body["errorCode"], Value::String(code.to_owned()), "{body}");
    assert!(body["errorMessage"].is_string(), "{body}");
}

/// How the client writes the Jasper namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    /// `<p:Element xmlns:p="...">`.
    Prefix(&'static str),
    /// `<Element xmlns="...">`.
    Default,
}

/// A request body element.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Leaf(&'static str, String),
    Parent(&'static str, Vec<Node>),
}

pub(crate) fn leaf(name: &'static str, value: impl Into<String>) -> Node {
    Node::Leaf(name, value.into())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Credentials placed in a SOAP request.
#[derive(Debug, Clone)]
pub(crate) struct SoapAuth {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) password_type: Option<String>,
    pub(crate) license_key: String,
    /// Whether to send the WS-Security header at all.
    pub(crate) header: bool,
}

impl Default for SoapAuth {
    fn default() -> Self {
        Self {
            username: "demo".to_owned(),
            password: "demo-password".to_owned(),
            password_type: Some(PASSWORD_TEXT.to_owned()),
            license_key: "demo-license".to_owned(),
            header: true,
        }
    }
}

/// Builds a SOAP 1.1 request for `op` (`GetTerminalDetails`, ...), with the
/// common `messageId`, `version`, `licenseKey` followed by `fields`.
pub(crate) fn soap_request(
    style: Style,
    auth: &SoapAuth,
    op: &str,
    message_id: &str,
    attrs: &[(&str, &str)],
    fields: &[Node],
) -> String {
    let (p, decl) = match style {
        Style::Prefix(prefix) => (
            format!("{prefix}:"),
            format!(" xmlns:{prefix}=\"{JASPER_NS}\""),
        ),
        Style::Default => (String::new(), format!(" xmlns=\"{JASPER_NS}\"")),
    };
    fn write(out: &mut String, p: &str, node: &Node) {
        match node {
            Node::Leaf(name, value) => {
                out.push_str(&format!("<{p}{name}>{}</{p}{name}>", escape(value)));
            }
            Node::Parent(name, children) => {
                out.push_str(&format!("<{p}{name}>"));
                for child in children {
                    write(out, p, child);
                }
                out.push_str(&format!("</{p}{name}>"));
            }
        }
    }
    let mut body = String::new();
    let attrs: String = attrs
        .iter()
        .map(|(k, v)| format!(" {k}=\"{}\"", escape(v)))
        .collect();
    body.push_str(&format!("<{p}{op}Request{decl}{attrs}>"));
    let mut common = vec![
        leaf("messageId", message_id),
        leaf("version", "1.0"),
        leaf("licenseKey", auth.license_key.clone()),
    ];
    common.extend(fields.iter().cloned());
    for node in &common {
        write(&mut body, &p, node);
    }
    body.push_str(&format!("</{p}{op}Request>"));

    let header = if auth.header {
        let kind = auth
            .password_type
            .as_ref()
            .map(|t| format!(" Type=\"{t}\""))
            .unwrap_or_default();
        format!(
            "<soapenv:Header><wsse:Security soapenv:mustUnderstand=\"1\" xmlns:wsse=\"{WSSE_NS}\"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password{kind}>{}</wsse:Password></wsse:UsernameToken></wsse:Security></soapenv:Header>",
            escape(&auth.username),
            escape(&auth.password)
        )
    } else {
        "<soapenv:Header/>".to_owned()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\">{header}<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

/// Posts a SOAP envelope to `/ws/service/{service}`.
pub(crate) async fn soap_post(
    sim: &RunningSim,
    service: &str,
    envelope: &str,
) -> io::Result<HttpResponse> {
    send(
        sim.addr(),
        "POST",
        &format!("/ws/service/{service}"),
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("SOAPAction", "\"\""),
        ],
        envelope.as_bytes(),
    )
    .await
}

/// Builds and posts a request with default credentials and the `sch:` prefix.
pub(crate) async fn soap_call(
    sim: &RunningSim,
    service: &str,
    op: &str,
    fields: &[Node],
) -> HttpResponse {
    let envelope = soap_request(
        Style::Prefix("sch"),
        &SoapAuth::default(),
        op,
        "msg-1",
        &[],
        fields,
    );
    soap_post(sim, service, &envelope)
        .await
        .expect("SOAP answered")
}

/// The `<iccids>` list of a `GetTerminalDetails` request.
pub(crate) fn iccids(list: &[&str]) -> Node {
    Node::Parent("iccids", list.iter().map(|i| leaf("iccid", *i)).collect())
}

/// `GetTerminalDetails` for `list`, with default credentials and the `sch:` prefix.
pub(crate) async fn terminal_details(sim: &RunningSim, list: &[&str]) -> HttpResponse {
    soap_call(sim, "terminal", "GetTerminalDetails", &[iccids(list)]).await
}

/// A `GetTerminalDetails` envelope for one ICCID (default credentials, `sch:` prefix,
/// `messageId` `m`), for tests that post it themselves (edited, in a burst, to be dropped).
pub(crate) fn details_envelope(iccid: &str) -> String {
    soap_request(
        Style::Prefix("sch"),
        &SoapAuth::default(),
        "GetTerminalDetails",
        "m",
        &[],
        &[iccids(&[iccid])],
    )
}

/// Texts of every element with this local name in the given namespace (or
/// with no namespace when `ns` is `None`), in document order. Meant for leaf
/// elements.
pub(crate) fn xml_texts(xml: &str, ns: Option<&str>, local: &str) -> Vec<String> {
    let mut reader = NsReader::from_str(xml);
    let mut out: Vec<String> = Vec::new();
    let mut capturing = false;
    loop {
        let event = reader.read_event().expect("well-formed XML");
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let (resolved, name) = reader.resolver().resolve_element(start.name());
            let matches_ns = match (&resolved, ns) {
                (ResolveResult::Bound(n), Some(want)) => n.0 == want,
                (ResolveResult::Unbound, None) => true,
                _ => false,
            };
            let hit = matches_ns && name.as_ref() == local;
            if hit {
                out.push(String::new());
            }
            capturing = hit && !empty;
            continue;
        }
        match event {
            Event::Text(t) if capturing => {
                if let Some(last) = out.last_mut() {
                    last.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if capturing => {
                if let Some(last) = out.last_mut() {
                    let name = r.xml10_content();
                    let value = match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    };
                    last.push_str(value);
                }
            }
            Event::End(_) => capturing = false,
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Text of the single Jasper element `local`.
pub(crate) fn jasper_text(xml: &str, local: &str) -> String {
    let texts = xml_texts(xml, Some(JASPER_NS), local);
    assert_eq!(texts.len(), 1, "expected one <{local}> in {xml}");
    texts.into_iter().next().unwrap_or_default()
}

/// Asserts a SOAP fault with the given `faultstring`, and returns the
/// `detail/error` text (empty if none).
pub(crate) fn assert_fault(response: &HttpResponse, faultstring: &str) -> String {
    assert_eq!(response.status, 500, "{}", response.body);
    assert!(
        response
            .body
            .contains(&format!("xmlns:SOAP-ENV=\"{SOAP_ENV}\"")),
        "{}",
        response.body
    );
    let strings = xml_texts(&response.body, None, "faultstring");
    assert_eq!(strings, vec![faultstring.to_owned()], "{}", response.body);
    assert_eq!(xml_texts(&response.body, None, "faultcode").len(), 1);
    xml_texts(&response.body, None, "error")
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The current cycle start as `YYYY-MM-01`, moved back `back` months.
pub(crate) fn cycle(back: u32) -> String {
    use chrono::{Datelike, Months, Utc};
    let today = Utc::now().date_naive();
    let first = today.with_day(1).expect("day 1 exists");
    first
        .checked_sub_months(Months::new(back))
        .expect("representable")
        .format("%Y-%m-%d")
        .to_string()
}
