//! Serializable views returned by the control endpoints (`/_sim/...`) and by
//! the [`RunningSim`](crate::RunningSim) accessors. Other crates can
//! deserialize the control endpoints' JSON into these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One SIM as seen by the control endpoint `GET /_sim/sims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimView {
    /// ICCID (19 or 20 digits, starting with 89).
    pub iccid: String,
    /// Plugin-facing status id: `inventory`, `activation_ready`, `activated`,
    /// `deactivated`, `retired`, `test_ready`, `trial`, `purged`, `replaced`.
    pub status: String,
    /// Rate plan name.
    pub rate_plan: String,
    /// SOAP status value, e.g. `ACTIVATED_NAME`.
    pub soap_status: String,
    /// REST status value, e.g. `ACTIVATED`.
    pub rest_status: String,
    /// MSISDN.
    pub msisdn: String,
    /// IMSI.
    pub imsi: String,
    /// IMEI, for SIMs that were ever activated.
    pub imei: Option<String>,
    /// Customer name, if any.
    pub customer: Option<String>,
    /// Communication plan name.
    pub communication_plan: String,
    /// Date added (ISO 8601, UTC, milliseconds).
    pub date_added: String,
    /// First activation date, if any.
    pub date_activated: Option<String>,
    /// Last modification date.
    pub date_modified: String,
    /// Cycle-to-date data usage in bytes.
    pub ctd_data_bytes: u64,
    /// Cycle-to-date SMS count (MO + MT).
    pub ctd_sms: u64,
    /// Cycle-to-date voice usage in seconds (MO + MT).
    pub ctd_voice_seconds: u64,
    /// Number of scheduled (future-dated) changes.
    pub pending_changes: usize,
}

/// Total usage of one SIM in one billing cycle ([`crate::RunningSim::cycle_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleUsageView {
    /// Data in bytes, every zone.
    pub data_bytes: u64,
    /// SMS count (MO + MT).
    pub sms: u64,
    /// Voice in seconds (MO + MT).
    pub voice_seconds: u64,
}

/// One SMS of the log (`GET /_sim/sms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsView {
    /// Recipient ICCID.
    pub iccid: String,
    /// Message text (decoded when it was sent as BASE64).
    pub message: String,
    /// Message id returned to the client.
    pub id: u64,
    /// When it was accepted (ISO 8601, UTC, milliseconds).
    pub sent_at: String,
    /// `LITERAL` or `BASE64`, as sent.
    pub encoding: String,
    /// REST `dataCoding`, if given.
    pub data_coding: Option<u8>,
    /// Validity period (`tpvp`), if given.
    pub tpvp: Option<u8>,
    /// `soap` or `rest`.
    pub api: String,
}

/// A rate plan (`GET /_sim/rate_plans`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePlanView {
    /// Plan name (no spaces).
    pub name: String,
    /// Plan version (used in usageInZone keys `"<name>, <version>"`).
    pub version: u32,
    /// Data included per cycle, in bytes.
    pub included_bytes: u64,
    /// Zones of the plan.
    pub zones: Vec<String>,
}

/// Traffic statistics (`GET /_sim/stats`). Only API requests (`/ws/...` and
/// `/rws/...`) are counted, never the control endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// API requests started.
    pub requests: u64,
    /// SOAP requests started.
    pub soap_requests: u64,
    /// REST requests started.
    pub rest_requests: u64,
    /// Requests currently being handled.
    pub in_flight: u64,
    /// Highest number of concurrent API requests ever observed.
    pub max_in_flight_seen: u64,
    /// Highest number of API requests started within any rolling 1-second
    /// window (all requests, including rejected ones).
    pub max_per_second_seen: u64,
    /// Requests answered with a rate-limit error by the limiter.
    pub rate_limited: u64,
    /// Requests that received an injected fault (any mode or error rate).
    pub faults_injected: u64,
    /// Connections closed without a response by fault injection.
    pub dropped_connections: u64,
    /// Write operations applied (EditTerminal, SendSMS, PUT device, POST SMS).
    pub writes: u64,
    /// Requests per operation, e.g. `soap:GetTerminalDetails`,
    /// `rest:GET /devices/{iccid}`.
    pub operations: BTreeMap<String, u64>,
}
