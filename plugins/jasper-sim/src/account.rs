//! The in-memory Jasper account: SIMs, rate plans, usage, the SMS log, and
//! the business rules (status transitions, effective dates, SMS eligibility).
//!
//! This module knows nothing about HTTP, XML or JSON: the SOAP and REST
//! front-ends translate its typed errors into their own wire error codes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::dates;
use crate::views::{RatePlanView, SimView, SmsView};

/// Identifier of the simulated account (`accountId` on the wire).
pub(crate) const ACCOUNT_ID: &str = "100020620";

/// How far ahead a scheduled change may be (REST documents 180 days).
pub(crate) const MAX_EFFECTIVE_DAYS: i64 = 180;

/// Communication plans known to the account.
pub(crate) const COMMUNICATION_PLANS: [&str; 2] = ["IoT_CP_Default", "IoT_CP_Private_APN"];

/// SIM life-cycle states of Control Center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimStatus {
    /// Test Ready (`TEST_READY_NAME` / `TEST_READY`).
    TestReady,
    /// Inventory (`INVENTORY_NAME` / `INVENTORY`).
    Inventory,
    /// Trial (`TRIAL_NAME` / `TRIAL`).
    Trial,
    /// Activation Ready (`ACTIVATION_READY_NAME` / `ACTIVATION_READY`).
    ActivationReady,
    /// Activated (`ACTIVATED_NAME` / `ACTIVATED`).
    Activated,
    /// Deactivated (`DEACTIVATED_NAME` / `DEACTIVATED`).
    Deactivated,
    /// Retired (`RETIRED_NAME` / `RETIRED`).
    Retired,
    /// Purged (`PURGED_NAME` / `PURGED`).
    Purged,
    /// Replaced (`REPLACED_NAME` / `REPLACED`); reported only, never a target.
    Replaced,
}

impl SimStatus {
    /// Every state.
    pub const ALL: [SimStatus; 9] = [
        SimStatus::TestReady,
        SimStatus::Inventory,
        SimStatus::Trial,
        SimStatus::ActivationReady,
        SimStatus::Activated,
        SimStatus::Deactivated,
        SimStatus::Retired,
        SimStatus::Purged,
        SimStatus::Replaced,
    ];

    /// The SOAP enumeration value, e.g. `ACTIVATED_NAME`.
    pub fn soap_name(self) -> &'static str {
        match self {
            SimStatus::TestReady => "TEST_READY_NAME",
            SimStatus::Inventory => "INVENTORY_NAME",
            SimStatus::Trial => "TRIAL_NAME",
            SimStatus::ActivationReady => "ACTIVATION_READY_NAME",
            SimStatus::Activated => "ACTIVATED_NAME",
            SimStatus::Deactivated => "DEACTIVATED_NAME",
            SimStatus::Retired => "RETIRED_NAME",
            SimStatus::Purged => "PURGED_NAME",
            SimStatus::Replaced => "REPLACED_NAME",
        }
    }

    /// The REST enumeration value, e.g. `ACTIVATED`.
    pub fn rest_name(self) -> &'static str {
        match self {
            SimStatus::TestReady => "TEST_READY",
            SimStatus::Inventory => "INVENTORY",
            SimStatus::Trial => "TRIAL",
            SimStatus::ActivationReady => "ACTIVATION_READY",
            SimStatus::Activated => "ACTIVATED",
            SimStatus::Deactivated => "DEACTIVATED",
            SimStatus::Retired => "RETIRED",
            SimStatus::Purged => "PURGED",
            SimStatus::Replaced => "REPLACED",
        }
    }

    /// The plugin-facing id, e.g. `activation_ready`.
    pub fn id(self) -> &'static str {
        match self {
            SimStatus::TestReady => "test_ready",
            SimStatus::Inventory => "inventory",
            SimStatus::Trial => "trial",
            SimStatus::ActivationReady => "activation_ready",
            SimStatus::Activated => "activated",
            SimStatus::Deactivated => "deactivated",
            SimStatus::Retired => "retired",
            SimStatus::Purged => "purged",
            SimStatus::Replaced => "replaced",
        }
    }

    /// Parses a SOAP value (exact, case-sensitive).
    pub fn from_soap_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.soap_name() == s)
    }

    /// Parses a REST value (exact, case-sensitive).
    pub fn from_rest_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.rest_name() == s)
    }

    /// Parses a plugin id (exact).
    pub fn from_id(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.id() == s)
    }

    /// Whether the state can be requested through an edit call at all.
    pub fn is_target(self) -> bool {
        self != SimStatus::Replaced
    }

    /// States from which a change to `self` is accepted (see README).
    fn allowed_sources(self) -> &'static [SimStatus] {
        use SimStatus::*;
        match self {
            ActivationReady => &[Inventory, TestReady],
            TestReady => &[Inventory],
            Inventory => &[TestReady, ActivationReady],
            Trial => &[Inventory, TestReady, ActivationReady],
            Activated => &[Inventory, TestReady, ActivationReady, Trial, Deactivated],
            Deactivated => &[
                Inventory,
                TestReady,
                ActivationReady,
                Trial,
                Activated,
                Retired,
            ],
            Retired => &[
                Inventory,
                TestReady,
                ActivationReady,
                Trial,
                Activated,
                Deactivated,
            ],
            Purged => &[Retired],
            Replaced => &[],
        }
    }

    /// Checks the transition rules; a change to the current state is a no-op
    /// and always allowed.
    pub(crate) fn check_transition(self, to: SimStatus) -> Result<(), EditError> {
        if self == to || to.allowed_sources().contains(&self) {
            Ok(())
        } else if to == SimStatus::ActivationReady {
            Err(EditError::BackToActivationReady { from: self })
        } else {
            Err(EditError::Transition { from: self, to })
        }
    }
}

/// Overage limit override mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverageOverride {
    Default,
    TemporaryOverride,
    PermanentOverride,
}

impl OverageOverride {
    pub(crate) fn wire(self) -> &'static str {
        match self {
            OverageOverride::Default => "DEFAULT",
            OverageOverride::TemporaryOverride => "TEMPORARY_OVERRIDE",
            OverageOverride::PermanentOverride => "PERMANENT_OVERRIDE",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            OverageOverride::Default,
            OverageOverride::TemporaryOverride,
            OverageOverride::PermanentOverride,
        ]
        .into_iter()
        .find(|o| o.wire() == s)
    }
}

/// A rate plan of the account.
#[derive(Debug, Clone)]
pub(crate) struct RatePlan {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) included_bytes: u64,
    pub(crate) zones: Vec<String>,
}

/// Usage of one SIM in one zone of one rate plan during one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZoneUsage {
    pub(crate) rate_plan: String,
    pub(crate) rate_plan_version: u32,
    pub(crate) zone: String,
    pub(crate) data_bytes: u64,
    pub(crate) voice_mo_secs: u64,
    pub(crate) voice_mt_secs: u64,
    pub(crate) sms_mo: u64,
    pub(crate) sms_mt: u64,
}

/// Usage of one SIM during one billing cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CycleUsage {
    pub(crate) zones: Vec<ZoneUsage>,
    /// Data that is not billed (zero-rated APNs); `<= total data`.
    pub(crate) zero_rated_bytes: u64,
    /// Data sessions in the cycle.
    pub(crate) sessions: u64,
}

/// Sums over the zones of a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) data_bytes: u64,
    pub(crate) voice_mo_secs: u64,
    pub(crate) voice_mt_secs: u64,
    pub(crate) sms_mo: u64,
    pub(crate) sms_mt: u64,
}

impl Totals {
    pub(crate) fn sms(&self) -> u64 {
        self.sms_mo + self.sms_mt
    }
    pub(crate) fn voice_secs(&self) -> u64 {
        self.voice_mo_secs + self.voice_mt_secs
    }
}

impl CycleUsage {
    pub(crate) fn totals(&self) -> Totals {
        self.zones.iter().fold(Totals::default(), |t, z| Totals {
            data_bytes: t.data_bytes + z.data_bytes,
            voice_mo_secs: t.voice_mo_secs + z.voice_mo_secs,
            voice_mt_secs: t.voice_mt_secs + z.voice_mt_secs,
            sms_mo: t.sms_mo + z.sms_mo,
            sms_mt: t.sms_mt + z.sms_mt,
        })
    }

    /// Billable volumes: data minus zero-rated data, mobile-originated SMS
    /// and mobile-originated voice (MT traffic is free in the simulated
    /// plans). Always `<=` the totals.
    pub(crate) fn billable(&self) -> Totals {
        let t = self.totals();
        Totals {
            data_bytes: t.data_bytes.saturating_sub(self.zero_rated_bytes),
            voice_mo_secs: t.voice_mo_secs,
            voice_mt_secs: 0,
            sms_mo: t.sms_mo,
            sms_mt: 0,
        }
    }
}

/// One SIM of the account.
#[derive(Debug, Clone)]
pub(crate) struct Sim {
    pub(crate) iccid: String,
    pub(crate) imsi: String,
    pub(crate) msisdn: String,
    pub(crate) imei: Option<String>,
    pub(crate) status: SimStatus,
    pub(crate) rate_plan: String,
    pub(crate) communication_plan: String,
    pub(crate) customer: Option<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) modem_id: Option<String>,
    pub(crate) overage_override: OverageOverride,
    pub(crate) date_added: DateTime<Utc>,
    pub(crate) date_shipped: DateTime<Utc>,
    pub(crate) date_activated: Option<DateTime<Utc>>,
    pub(crate) date_modified: DateTime<Utc>,
    pub(crate) custom: BTreeMap<String, String>,
    /// Usage per cycle start date.
    pub(crate) usage: BTreeMap<NaiveDate, CycleUsage>,
}

impl Sim {
    /// Usage of the cycle containing `now` (empty when none was recorded).
    pub(crate) fn current_usage(&self, now: DateTime<Utc>) -> CycleUsage {
        self.usage
            .get(&dates::cycle_start(now, 0))
            .cloned()
            .unwrap_or_default()
    }
}

/// Why an ICCID cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// Unknown everywhere.
    NotFound,
    /// Belongs to another account.
    OtherAccount,
}

/// A single requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    Status(SimStatus),
    RatePlan(String),
    CommunicationPlan(String),
    Customer(String),
    DeviceId(String),
    ModemId(String),
    OverageOverride(OverageOverride),
    Custom(String, String),
}

/// Why an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EditError {
    Lookup(LookupError),
    /// Back to Activation Ready from a state other than Inventory/Test Ready.
    BackToActivationReady {
        from: SimStatus,
    },
    /// Any other refused transition.
    Transition {
        from: SimStatus,
        to: SimStatus,
    },
    UnknownRatePlan(String),
    UnknownCommunicationPlan(String),
}

impl From<LookupError> for EditError {
    fn from(e: LookupError) -> Self {
        EditError::Lookup(e)
    }
}

/// When a change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Now,
    On(NaiveDate),
}

/// Why an effective date is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateRuleError {
    InPast,
    TooFar,
}

/// Applies the effective-date rules: none or today → now; past → refused;
/// up to [`MAX_EFFECTIVE_DAYS`] ahead → scheduled; further → refused.
pub(crate) fn resolve_effective_date(
    date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<When, DateRuleError> {
    let today = now.date_naive();
    match date {
        None => Ok(When::Now),
        Some(d) if d < today => Err(DateRuleError::InPast),
        Some(d) if d == today => Ok(When::Now),
        Some(d) if (d - today).num_days() > MAX_EFFECTIVE_DAYS => Err(DateRuleError::TooFar),
        Some(d) => Ok(When::On(d)),
    }
}

/// Why an SMS is refused by the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmsError {
    Lookup(LookupError),
    NotActive(SimStatus),
}

/// An SMS accepted for delivery.
#[derive(Debug, Clone)]
pub(crate) struct SmsRecord {
    pub(crate) id: u64,
    pub(crate) iccid: String,
    pub(crate) message: String,
    pub(crate) encoding: String,
    pub(crate) data_coding: Option<u8>,
    pub(crate) tpvp: Option<u8>,
    pub(crate) api: &'static str,
    pub(crate) sent_at: DateTime<Utc>,
}

/// SMS submission details other than the recipient.
#[derive(Debug, Clone)]
pub(crate) struct SmsSubmission {
    pub(crate) message: String,
    pub(crate) encoding: String,
    pub(crate) data_coding: Option<u8>,
    pub(crate) tpvp: Option<u8>,
    pub(crate) api: &'static str,
}

#[derive(Debug, Clone)]
struct PendingChange {
    iccid: String,
    date: NaiveDate,
    edits: Vec<Edit>,
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct Account {
    sims: Vec<Sim>,
    index: HashMap<String, usize>,
    foreign: BTreeSet<String>,
    plans: Vec<RatePlan>,
    sms: Vec<SmsRecord>,
    next_sms_id: u64,
    pending: Vec<PendingChange>,
}

impl Account {
    /// Builds an account with `count` SIMs, fully determined by `seed` (the
    /// usage cycles are anchored on the cycle containing `now`).
    pub(crate) fn seeded(count: usize, seed: u64, now: DateTime<Utc>) -> Self {
        let seeded = crate::seed::seed_account(count, seed, now);
        let index = seeded
            .sims
            .iter()
            .enumerate()
            .map(|(i, s)| (s.iccid.clone(), i))
            .collect();
        Account {
            sims: seeded.sims,
            index,
            foreign: seeded.foreign,
            plans: seeded.plans,
            sms: Vec::new(),
            next_sms_id: seeded.first_sms_id,
            pending: Vec::new(),
        }
    }

    /// ICCIDs that belong to another account.
    pub(crate) fn foreign_iccids(&self) -> Vec<String> {
        self.foreign.iter().cloned().collect()
    }

    /// Rate plans of the account.
    pub(crate) fn plans(&self) -> &[RatePlan] {
        &self.plans
    }

    /// A rate plan by exact name.
    pub(crate) fn plan(&self, name: &str) -> Option<&RatePlan> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Finds a SIM of this account.
    pub(crate) fn lookup(&self, iccid: &str) -> Result<&Sim, LookupError> {
        match self.index.get(iccid) {
            Some(&i) => self.sims.get(i).ok_or(LookupError::NotFound),
            None if self.foreign.contains(iccid) => Err(LookupError::OtherAccount),
            None => Err(LookupError::NotFound),
        }
    }

    fn lookup_mut(&mut self, iccid: &str) -> Result<&mut Sim, LookupError> {
        match self.index.get(iccid) {
            Some(&i) => self.sims.get_mut(i).ok_or(LookupError::NotFound),
            None if self.foreign.contains(iccid) => Err(LookupError::OtherAccount),
            None => Err(LookupError::NotFound),
        }
    }

    /// Applies scheduled changes whose date has come.
    pub(crate) fn apply_due(&mut self, now: DateTime<Utc>) {
        let today = now.date_naive();
        if self.pending.iter().all(|p| p.date > today) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.date <= today);
        self.pending = later;
        for change in due {
            // A change that became invalid meanwhile is dropped, as the
            // platform would reject it when executing the schedule.
            if self.validate(&change.iccid, &change.edits).is_ok() {
                self.apply(&change.iccid, change.edits, now);
            }
        }
    }

    /// Number of scheduled changes for `iccid`.
    pub(crate) fn pending_for(&self, iccid: &str) -> usize {
        self.pending.iter().filter(|p| p.iccid == iccid).count()
    }

    fn validate(&self, iccid: &str, edits: &[Edit]) -> Result<(), EditError> {
        let sim = self.lookup(iccid)?;
        for edit in edits {
            match edit {
                Edit::Status(to) => sim.status.check_transition(*to)?,
                Edit::RatePlan(name) if self.plan(name).is_none() => {
                    return Err(EditError::UnknownRatePlan(name.clone()));
                }
                Edit::CommunicationPlan(name) if !COMMUNICATION_PLANS.contains(&name.as_str()) => {
                    return Err(EditError::UnknownCommunicationPlan(name.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, iccid: &str, edits: Vec<Edit>, now: DateTime<Utc>) {
        let Ok(sim) = self.lookup_mut(iccid) else {
            return;
        };
        for edit in edits {
            match edit {
                Edit::Status(to) => {
                    if to == SimStatus::Activated && sim.date_activated.is_none() {
                        sim.date_activated = Some(now);
                    }
                    sim.status = to;
                }
                Edit::RatePlan(name) => sim.rate_plan = name,
                Edit::CommunicationPlan(name) => sim.communication_plan = name,
                Edit::Customer(c) => sim.customer = (!c.is_empty()).then_some(c),
                Edit::DeviceId(v) => sim.device_id = (!v.is_empty()).then_some(v),
                Edit::ModemId(v) => sim.modem_id = (!v.is_empty()).then_some(v),
                Edit::OverageOverride(o) => sim.overage_override = o,
                Edit::Custom(k, v) => {
                    sim.custom.insert(k, v);
                }
            }
        }
        sim.date_modified = now;
    }

    /// Validates and applies (or schedules) `edits` atomically.
    pub(crate) fn edit(
        &mut self,
        iccid: &str,
        edits: Vec<Edit>,
        when: When,
        now: DateTime<Utc>,
    ) -> Result<(), EditError> {
        self.apply_due(now);
        self.validate(iccid, &edits)?;
        match when {
            When::Now => self.apply(iccid, edits, now),
            When::On(date) => self.pending.push(PendingChange {
                iccid: iccid.to_owned(),
                date,
                edits,
            }),
        }
        Ok(())
    }

    /// Sends an SMS to an Activated SIM and logs it; returns its id.
    pub(crate) fn send_sms(
        &mut self,
        iccid: &str,
        sms: SmsSubmission,
        now: DateTime<Utc>,
    ) -> Result<u64, SmsError> {
        self.apply_due(now);
        let plans = self.plans.clone();
        let sim = self.lookup_mut(iccid).map_err(SmsError::Lookup)?;
        if sim.status != SimStatus::Activated {
            return Err(SmsError::NotActive(sim.status));
        }
        // Count the MT message in the current cycle's home zone.
        let version = plans
            .iter()
            .find(|p| p.name == sim.rate_plan)
            .map_or(1, |p| p.version);
        let cycle = sim.usage.entry(dates::cycle_start(now, 0)).or_default();
        match cycle
            .zones
            .iter_mut()
            .find(|z| z.rate_plan == sim.rate_plan && z.zone == "Home")
        {
            Some(zone) => zone.sms_mt += 1,
            None => cycle.zones.push(ZoneUsage {
                rate_plan: sim.rate_plan.clone(),
                rate_plan_version: version,
                zone: "Home".to_owned(),
                data_bytes: 0,
                voice_mo_secs: 0,
                voice_mt_secs: 0,
                sms_mo: 0,
                sms_mt: 1,
            }),
        }
        let id = self.next_sms_id;
        self.next_sms_id += 1;
        self.sms.push(SmsRecord {
            id,
            iccid: iccid.to_owned(),
            message: sms.message,
            encoding: sms.encoding,
            data_coding: sms.data_coding,
            tpvp: sms.tpvp,
            api: sms.api,
            sent_at: now,
        });
        Ok(id)
    }

    /// Clears the SMS log.
    pub(crate) fn clear_sms_log(&mut self) {
        self.sms.clear();
    }

    /// Whether the SIM is over its plan's data allowance this cycle (and
    /// no override lifts the limit).
    pub(crate) fn overage_reached(&self, sim: &Sim, now: DateTime<Utc>) -> bool {
        let included = self
            .plan(&sim.rate_plan)
            .map_or(u64::MAX, |p| p.included_bytes);
        sim.overage_override == OverageOverride::Default
            && sim.current_usage(now).totals().data_bytes > included
    }

    /// Forces a SIM's state, bypassing the rules (control endpoint).
    pub(crate) fn force(
        &mut self,
        iccid: &str,
        status: Option<SimStatus>,
        rate_plan: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), EditError> {
        if let Some(plan) = &rate_plan
            && self.plan(plan).is_none()
        {
            return Err(EditError::UnknownRatePlan(plan.clone()));
        }
        let sim = self.lookup_mut(iccid)?;
        if let Some(status) = status {
            if status == SimStatus::Activated && sim.date_activated.is_none() {
                sim.date_activated = Some(now);
            }
            sim.status = status;
        }
        if let Some(plan) = rate_plan {
            sim.rate_plan = plan;
        }
        sim.date_modified = now;
        Ok(())
    }

    /// Control-endpoint view of every SIM.
    pub(crate) fn sim_views(&self, now: DateTime<Utc>) -> Vec<SimView> {
        self.sims.iter().map(|s| self.sim_view(s, now)).collect()
    }

    /// Control-endpoint view of one SIM.
    pub(crate) fn sim_view(&self, sim: &Sim, now: DateTime<Utc>) -> SimView {
        let usage = sim.current_usage(now).totals();
        SimView {
            iccid: sim.iccid.clone(),
            status: sim.status.id().to_owned(),
            rate_plan: sim.rate_plan.clone(),
            soap_status: sim.status.soap_name().to_owned(),
            rest_status: sim.status.rest_name().to_owned(),
            msisdn: sim.msisdn.clone(),
            imsi: sim.imsi.clone(),
            imei: sim.imei.clone(),
            customer: sim.customer.clone(),
            communication_plan: sim.communication_plan.clone(),
            date_added: dates::soap_datetime(sim.date_added),
            date_activated: sim.date_activated.map(dates::soap_datetime),
            date_modified: dates::soap_datetime(sim.date_modified),
            ctd_data_bytes: usage.data_bytes,
            ctd_sms: usage.sms(),
            ctd_voice_seconds: usage.voice_secs(),
            pending_changes: self.pending_for(&sim.iccid),
        }
    }

    /// Control-endpoint view of the SMS log.
    pub(crate) fn sms_views(&self) -> Vec<SmsView> {
        self.sms
            .iter()
            .map(|s| SmsView {
                iccid: s.iccid.clone(),
                message: s.message.clone(),
                id: s.id,
                sent_at: dates::soap_datetime(s.sent_at),
                encoding: s.encoding.clone(),
                data_coding: s.data_coding,
                tpvp: s.tpvp,
                api: s.api.to_owned(),
            })
            .collect()
    }

    /// Control-endpoint view of the rate plans.
    pub(crate) fn plan_views(&self) -> Vec<RatePlanView> {
        self.plans
            .iter()
            .map(|p| RatePlanView {
                name: p.name.clone(),
                version: p.version,
                included_bytes: p.included_bytes,
                zones: p.zones.clone(),
            })
            .collect()
    }
}

/// Whether `iccid` looks like an ICCID: 18 to 22 decimal digits. The Luhn
/// digit is not checked (many real 19-digit Jasper ICCIDs lack it).
pub(crate) fn iccid_well_formed(iccid: &str) -> bool {
    (18..=22).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 15, 12, 0, 0).unwrap()
    }

    #[test]
    fn seeding_is_deterministic_and_well_formed() {
        let a = Account::seeded(50, 7, now());
        let b = Account::seeded(50, 7, now());
        let c = Account::seeded(50, 8, now());
        let ids = |acc: &Account| acc.sims.iter().map(|s| s.iccid.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        let activated = a
            .sims
            .iter()
            .filter(|s| s.status == SimStatus::Activated)
            .count();
        assert!(activated >= 25);
        for st in [
            SimStatus::Inventory,
            SimStatus::ActivationReady,
            SimStatus::Deactivated,
            SimStatus::Retired,
        ] {
            assert!(a.sims.iter().any(|s| s.status == st), "{st:?} missing");
        }
        for sim in &a.sims {
            assert!(sim.iccid.starts_with("89"));
            assert!(matches!(sim.iccid.len(), 19 | 20));
            assert_eq!(sim.usage.len(), 4);
            for cycle in sim.usage.values() {
                let (t, b) = (cycle.totals(), cycle.billable());
                assert!(b.data_bytes <= t.data_bytes && b.sms() <= t.sms());
                assert!(b.voice_secs() <= t.voice_secs());
            }
        }
        assert_eq!(a.foreign_iccids().len(), 3);
    }

    #[test]
    fn transitions() {
        use SimStatus::*;
        assert!(Inventory.check_transition(ActivationReady).is_ok());
        assert!(TestReady.check_transition(ActivationReady).is_ok());
        assert_eq!(
            Activated.check_transition(ActivationReady),
            Err(EditError::BackToActivationReady { from: Activated })
        );
        assert!(Activated.check_transition(Deactivated).is_ok());
        assert!(Deactivated.check_transition(Activated).is_ok());
        assert!(Retired.check_transition(Deactivated).is_ok());
        assert!(Retired.check_transition(Activated).is_err());
        assert!(Retired.check_transition(Purged).is_ok());
        assert!(Purged.check_transition(Deactivated).is_err());
        assert!(Activated.check_transition(Activated).is_ok());
    }

    #[test]
    fn effective_dates() {
        let n = now();
        let today = n.date_naive();
        assert_eq!(resolve_effective_date(None, n), Ok(When::Now));
        assert_eq!(resolve_effective_date(Some(today), n), Ok(When::Now));
        let past = today - Duration::days(1);
        assert_eq!(
            resolve_effective_date(Some(past), n),
            Err(DateRuleError::InPast)
        );
        let soon = today + Duration::days(3);
        assert_eq!(resolve_effective_date(Some(soon), n), Ok(When::On(soon)));
        let far = today + Duration::days(181);
        assert_eq!(
            resolve_effective_date(Some(far), n),
            Err(DateRuleError::TooFar)
        );
    }

    #[test]
    fn scheduled_changes_apply_when_due() {
        let n = now();
        let mut acc = Account::seeded(10, 1, n);
        let Some(sim) = acc.sims.iter().find(|s| s.status == SimStatus::Activated) else {
            panic!("no activated sim");
        };
        let iccid = sim.iccid.clone();
        let day = n.date_naive() + Duration::days(2);
        acc.edit(
            &iccid,
            vec![Edit::Status(SimStatus::Deactivated)],
            When::On(day),
            n,
        )
        .unwrap();
        assert_eq!(acc.lookup(&iccid).unwrap().status, SimStatus::Activated);
        assert_eq!(acc.pending_for(&iccid), 1);
        acc.apply_due(n + Duration::days(2));
        assert_eq!(acc.lookup(&iccid).unwrap().status, SimStatus::Deactivated);
        assert_eq!(acc.pending_for(&iccid), 0);
    }
}
