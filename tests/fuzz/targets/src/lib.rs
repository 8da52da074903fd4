//! The fuzz targets of devext: one function per parser of untrusted input, taking any bytes.
//! A panic is a bug (a crash, or a broken property the function checks).
//!
//! `tests/fuzz` (cargo-fuzz, libFuzzer) drives them coverage-guided; `tests/corpus.rs` replays
//! every committed input of `tests/fuzz/corpus/<target>/` under `cargo test` on stable Rust, so
//! an input that once crashed stays fixed. See `tests/fuzz/README.md`.

use std::sync::OnceLock;

use devext_host::{Runtime, RuntimeConfig};
use devext_jasper::dates::{self, Date};
use devext_jasper::errors::OpHint;
use devext_jasper::{rest, soap, xml};
use devext_plugin_api::host::HttpResponse;

/// A fuzz target: any bytes in, a panic for a bug.
pub type Target = fn(&[u8]);

/// Every target: its name (the corpus directory and the cargo-fuzz binary) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("jasper_soap", jasper_soap),
    ("jasper_rest", jasper_rest),
    ("jasper_dates", jasper_dates),
    ("manifest", manifest),
    ("locate", locate),
    ("device_config", device_config),
    ("sim_request", sim_request),
    ("wire", wire),
];

/// The statuses a response input's first byte picks from (byte modulo 16).
pub const STATUSES: [u16; 16] = [
    200, 201, 202, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504,
];

/// The first byte picks the HTTP status (so faults, errors and successes are all
/// reached); the rest is the body.
fn response(data: &[u8]) -> HttpResponse {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (STATUSES[usize::from(*s) % STATUSES.len()], rest),
        None => (200, data),
    };
    HttpResponse::new(status, String::from_utf8_lossy(body).into_owned())
}

const HINTS: [OpHint; 5] = [
    OpHint::Overview,
    OpHint::Usage,
    OpHint::SetStatus,
    OpHint::SetRatePlan,
    OpHint::SendSms,
];

const ICCID: &str = "89882167169700049750";

/// The Jasper plugin's SOAP answer parsing: the envelope, faults, then each operation's
/// reading of its response element.
pub fn jasper_soap(data: &[u8]) {
    let resp = response(data);
    let _ = xml::parse(&resp.body);
    let cycle = Date::new(2026, 11, 1).expect("a date");
    for (op, hint) in [
        ("GetTerminalDetails", OpHint::Overview),
        ("GetTerminalUsage", OpHint::Usage),
        ("EditTerminal", OpHint::SetStatus),
        ("SendSMS", OpHint::SendSms),
    ] {
        match soap::parse_response(&resp, op, hint) {
            Ok(el) => {
                let _ = soap::overview(&el, ICCID);
                let _ = soap::usage(&el, ICCID, cycle);
                let _ = soap::sms_id(&el);
            }
            Err(f) => assert!(!f.error.message.is_empty(), "a failure says what failed"),
        }
    }
}

/// The Jasper plugin's REST answer parsing: errors, then each operation's reading of the JSON.
pub fn jasper_rest(data: &[u8]) {
    let resp = response(data);
    let cycle = Date::new(2026, 11, 1).expect("a date");
    for hint in HINTS {
        match rest::parse_response(&resp, hint) {
            Ok(body) => {
                let _ = rest::overview(ICCID, &body, &body);
                let _ = rest::usage(ICCID, cycle, &body);
                let _ = rest::sms_id(&body);
            }
            Err(f) => assert!(!f.error.message.is_empty(), "a failure says what failed"),
        }
    }
}

/// The Jasper plugin's date parsing. Properties: a normalised timestamp normalises to itself,
/// and the milliseconds it stands for survive the round trip.
pub fn jasper_dates(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Date::parse_iso(&text);
    if let Some(ms) = dates::parse_timestamp_ms(&text)
        && let Some(out) = dates::format_rfc3339(ms)
    {
        assert_eq!(
            dates::parse_timestamp_ms(&out),
            Some(ms),
            "{text:?} -> {out}"
        );
        assert_eq!(dates::normalize(&out).as_deref(), Some(out.as_str()));
        let day = dates::date_of_ms(ms).expect("a formatted time has a date");
        assert_eq!(day.to_string(), out[..10]);
    }
}

/// The loader's manifest checks, on a manifest as a plugin would return it.
pub fn manifest(data: &[u8]) {
    let _ = devext_host::fuzz::check_manifest_json(data);
}

/// The MessagePack reader of `CallModule::call` (`devext_plugin_api::wire`), which reads what
/// another library wrote: a refusal leaves the slot `Null`; a value read writes back to bytes
/// that read the same value, and crosses as JSON text too (the same nesting limit).
pub fn wire(data: &[u8]) {
    use devext_plugin_api::wire;
    let mut slot = serde_json::json!({"left": "over"});
    match wire::read_into(data, &mut slot) {
        Err(e) => {
            assert!(slot.is_null(), "a refusal leaves the slot null");
            assert!(
                e.offset <= data.len(),
                "offset {} beyond the bytes",
                e.offset
            );
        }
        Ok(()) => {
            let mut again = Vec::new();
            wire::write(&mut again, &slot).expect("a value read is short enough to write");
            assert_eq!(
                wire::read(&again).as_ref(),
                Ok(&slot),
                "written back, read the same"
            );
            let text = serde_json::to_string(&slot).expect("a value writes as JSON");
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "what crosses as MessagePack crosses as JSON text"
            );
        }
    }
}

/// The validator's JSON-pointer locator: the first line is the pointer, the rest the document.
pub fn locate(data: &[u8]) {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let pointer = String::from_utf8_lossy(&data[..end]);
    let text = data.get(end + 1..).unwrap_or_default();
    devext_host::fuzz::locate(text, &pointer);
}

/// A runtime with the plugins linked into `devext` (Jasper), loaded once.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = Runtime::load(RuntimeConfig::default()).expect("the runtime loads");
        assert!(
            runtime.plugin("jasper").is_some(),
            "the Jasper plugin is linked: {:?}",
            runtime.refused()
        );
        runtime
    })
}

/// Device-config validation of arbitrary JSON, as `devext validate` does it.
pub fn device_config(data: &[u8]) {
    devext_host::fuzz::validate_document(runtime(), data);
}

/// The Jasper simulator's request parsing (SOAP and REST), through its router.
pub fn sim_request(data: &[u8]) {
    let _ = devext_jasper_sim::fuzz::request(data);
}
