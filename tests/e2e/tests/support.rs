//! Helpers: building the dynamic plugin and the `devext` binary, runtimes over the static or the
//! dynamic Jasper plugin, org configurations for the simulator, calls, dates.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use devext_host::egress::EgressConfig;
use devext_host::{CallRequest, ErrorKind, PluginError, PluginSource, Runtime, RuntimeConfig};
use devext_jasper_sim::{LimitSettings, RunningSim, SimConfig, SimView};
use serde_json::{Value, json};

// Links the plugin into this test binary: its `inventory` registration makes it a static plugin.
use devext_jasper as _;

/// Which Jasper API the org uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Soap,
    Rest,
}

impl Api {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Api::Soap => "soap",
            Api::Rest => "rest",
        }
    }
}

/// How the plugin gets into the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linking {
    /// Linked into this test binary (`use devext_jasper as _`).
    Static,
    /// `libdevext_jasper.so`, built with a nested `cargo build`, loaded from a plugin directory.
    Dynamic,
}

/// The `devext` binary.
pub(crate) fn devext_binary() -> PathBuf {
    devext_test_support::devext_binary()
}

/// A fresh directory holding a copy of `libdevext_jasper.so`.
fn jasper_plugin_dir() -> tempfile::TempDir {
    devext_test_support::plugin_dir(&["devext-jasper"])
}

/// A host runtime with the Jasper plugin, plain http to loopback allowed.
pub(crate) struct Host {
    pub(crate) rt: Runtime,
    _dir: Option<tempfile::TempDir>,
}

/// Loads a runtime (on a blocking thread: loading runs plugin code) and checks where the Jasper
/// plugin came from. `view_cache_entries: 0` makes every view reach the simulator.
pub(crate) async fn host(linking: Linking, view_cache_entries: usize) -> Host {
    tokio::task::spawn_blocking(move || {
        let dir = (linking == Linking::Dynamic).then(jasper_plugin_dir);
        let config = RuntimeConfig {
            plugin_dirs: dir.iter().map(|d| d.path().to_owned()).collect(),
            static_plugins: linking == Linking::Static,
            egress: EgressConfig {
                allow_loopback_http: true,
                ..EgressConfig::default()
            },
            view_cache_entries,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::load(config).expect("runtime");
        assert!(rt.refused().is_empty(), "refused: {:?}", rt.refused());
        assert_eq!(rt.plugin_names(), vec!["jasper"]);
        let source = rt.plugin("jasper").expect("jasper loaded").source().clone();
        match (linking, &source, &dir) {
            (Linking::Static, PluginSource::Static, None) => {}
            (Linking::Dynamic, PluginSource::File(path), Some(dir)) => {
                assert_eq!(path, &dir.path().join("libdevext_jasper.so"));
            }
            _ => panic!("{linking:?} runtime has the jasper plugin from {source}"),
        }
        Host { rt, _dir: dir }
    })
    .await
    .expect("load the runtime")
}

/// A simulator with the default account (50 SIMs, seed 1, Cisco's limits).
pub(crate) async fn sim() -> RunningSim {
    devext_jasper_sim::start(SimConfig::default())
        .await
        .expect("start the simulator")
}

/// Turns the simulator's rate limits off (peaks are still recorded).
pub(crate) fn lift_limits(sim: &RunningSim) {
    sim.set_limits(LimitSettings {
        enabled: false,
        ..LimitSettings::default()
    });
}

/// The org settings for the simulator's account, with the plugin's default limits (5/s, 1 in
/// flight: the simulator's).
pub(crate) fn org(sim: &RunningSim, api: Api) -> Value {
    let c = sim.credentials();
    match api {
        Api::Soap => json!({
            "api": "soap",
            "endpoint": sim.base_url(),
            "username": c.username,
            "password": c.password,
            "license_key": c.license_key,
        }),
        Api::Rest => json!({
            "api": "rest",
            "endpoint": sim.base_url(),
            "username": c.username,
            "api_key": c.api_key,
        }),
    }
}

/// `org` with the plugin's limits raised, for tests that lift the simulator's.
pub(crate) fn fast_org(sim: &RunningSim, api: Api) -> Value {
    let mut org = org(sim, api);
    org["rate_per_second"] = json!(100);
    org["max_in_flight"] = json!(20);
    org
}

/// The device configuration of `iccid`.
pub(crate) fn device(iccid: &str) -> Value {
    json!({ "iccid": iccid })
}

/// One call of the jasper plugin.
pub(crate) async fn call(
    rt: &Runtime,
    org: &Value,
    iccid: &str,
    op: &str,
    input: Value,
) -> Result<Value, PluginError> {
    call_with(rt, org, &device(iccid), op, input, None).await
}

/// One call with any device configuration and an optional deadline.
pub(crate) async fn call_with(
    rt: &Runtime,
    org: &Value,
    device: &Value,
    op: &str,
    input: Value,
    timeout: Option<Duration>,
) -> Result<Value, PluginError> {
    rt.invoke(CallRequest {
        plugin: "jasper",
        op,
        org_config: org,
        device_config: device,
        input: &input,
        timeout,
        priority: Default::default(),
    })
    .await
}

/// Unwraps an error, naming the call in the panic message.
#[track_caller]
pub(crate) fn expect_err(result: Result<Value, PluginError>, what: &str) -> PluginError {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// Unwraps a success, naming the call in the panic message.
#[track_caller]
pub(crate) fn expect_ok(result: Result<Value, PluginError>, what: &str) -> Value {
    match result {
        Ok(v) => v,
        Err(e) => panic!(
            "{what}: expected success, got {}: {} ({})",
            e.kind, e.message, e.details
        ),
    }
}

/// Checks an error's kind and that its message contains `needle`.
#[track_caller]
pub(crate) fn assert_error(e: &PluginError, kind: ErrorKind, needle: &str, what: &str) {
    assert_eq!(
        e.kind, kind,
        "{what}: wrong kind; message: {} ({})",
        e.message, e.details
    );
    assert!(
        e.message.contains(needle),
        "{what}: message {:?} lacks {needle:?}",
        e.message
    );
}

/// The simulator's view of a SIM.
#[track_caller]
pub(crate) fn sim_of(sim: &RunningSim, iccid: &str) -> SimView {
    sim.sim(iccid)
        .unwrap_or_else(|| panic!("{iccid} not in the simulator"))
}

/// `n` distinct SIMs of the account with status `status`.
#[track_caller]
pub(crate) fn sims_with_status(sim: &RunningSim, status: &str, n: usize) -> Vec<String> {
    let found: Vec<String> = sim
        .sims()
        .into_iter()
        .filter(|s| s.status == status)
        .map(|s| s.iccid)
        .take(n)
        .collect();
    assert_eq!(
        found.len(),
        n,
        "the simulator has fewer than {n} {status} SIMs"
    );
    found
}

/// A well-formed ICCID that is in no account of the simulator.
pub(crate) fn unknown_iccid(sim: &RunningSim) -> String {
    let taken: Vec<String> = sim
        .sims()
        .into_iter()
        .map(|s| s.iccid)
        .chain(sim.other_account_iccids())
        .collect();
    (0..)
        .map(|n| format!("8999000000000{n:06}"))
        .find(|i| !taken.contains(i))
        .expect("a free ICCID")
}

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ymd {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
}

impl std::fmt::Display for Ymd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Today (UTC), from the system clock.
pub(crate) fn today() -> Ymd {
    days_ahead(0)
}

fn civil_from_days(days: i64) -> Ymd {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ymd { year, month, day }
}

/// The first day of the billing cycle `back` months before the current one (cycles start on
/// the 1st, 00:00 UTC).
pub(crate) fn cycle_start(back: u32) -> Ymd {
    let t = today();
    let months = t.year * 12 + i64::from(t.month - 1) - i64::from(back);
    Ymd {
        year: months.div_euclid(12),
        month: u32::try_from(months.rem_euclid(12)).expect("month") + 1,
        day: 1,
    }
}

/// A date `days` ahead of today (UTC), from the system clock (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn days_ahead(days: i64) -> Ymd {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    civil_from_days(i64::try_from(secs / 86_400).expect("days fit") + days)
}

/// SOAP data volumes travel as decimal megabytes with 3 decimals (rounded half up): the bytes a
/// SOAP client can know of `bytes`.
pub(crate) fn soap_bytes(bytes: u64) -> u64 {
    (bytes + 500) / 1000 * 1000
}

#[test]
fn dates_are_computed_right() {
    assert_eq!(civil_from_days(0).to_string(), "1970-01-01");
    assert_eq!(civil_from_days(19_782).to_string(), "2024-02-29");
    assert_eq!(civil_from_days(20_454).to_string(), "2026-01-01");
    let c = cycle_start(0);
    assert_eq!((c.day, c.month, c.year), (1, today().month, today().year));
    let back = cycle_start(13);
    assert_eq!(back.month, if c.month == 1 { 12 } else { c.month - 1 });
    assert_eq!(soap_bytes(1_234_567), 1_235_000);
    assert_eq!(soap_bytes(1_234_499), 1_234_000);
    assert_eq!(soap_bytes(1_234_500), 1_235_000);
}
