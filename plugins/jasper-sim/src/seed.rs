//! Deterministic generation of the simulated account from a seed.
//!
//! Everything (ICCIDs, states, dates, usage) comes from one SplitMix64
//! stream, so the same seed always yields the same account. Dates are
//! absolute (2019 onwards) and usage cycles are relative to the cycle that
//! contains the start time: the current cycle and the 3 before it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::account::{
    COMMUNICATION_PLANS, CycleUsage, OverageOverride, RatePlan, Sim, SimStatus, ZoneUsage,
};
use crate::dates;
use crate::rng::SplitMix64;

/// A freshly seeded account.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) sims: Vec<Sim>,
    pub(crate) foreign: BTreeSet<String>,
    pub(crate) plans: Vec<RatePlan>,
    pub(crate) first_sms_id: u64,
}

/// Generates `count` SIMs (at least half Activated, the rest spread over
/// Deactivated, Inventory, Activation Ready, Retired and Test Ready), three
/// ICCIDs of another account, the rate plans and the first SMS id.
pub(crate) fn seed_account(count: usize, seed: u64, now: DateTime<Utc>) -> Seeded {
    let mut rng = SplitMix64::new(seed);
    let plans = default_plans();

    // At least half Activated; the rest spread over the other states.
    let activated = count.div_ceil(2) + count / 10;
    let others = [
        SimStatus::Deactivated,
        SimStatus::Inventory,
        SimStatus::ActivationReady,
        SimStatus::Retired,
        SimStatus::TestReady,
    ];
    let mut statuses: Vec<SimStatus> = (0..count)
        .map(|i| {
            if i < activated {
                SimStatus::Activated
            } else {
                others[(i - activated) % others.len()]
            }
        })
        .collect();
    rng.shuffle(&mut statuses);

    let mut used = HashSet::new();
    let mut sims = Vec::with_capacity(count);
    for status in statuses {
        let iccid = unique_iccid(&mut rng, &mut used, OWN_PREFIXES);
        sims.push(seed_sim(&mut rng, iccid, status, &plans, now));
    }
    let foreign = (0..3)
        .map(|_| unique_iccid(&mut rng, &mut used, FOREIGN_PREFIXES))
        .collect();
    Seeded {
        sims,
        foreign,
        plans,
        first_sms_id: 6_000_000_000 + rng.below(1_000_000) * 1000,
    }
}

fn default_plans() -> Vec<RatePlan> {
    let plan = |name: &str, version, included_bytes, zones: &[&str]| RatePlan {
        name: name.to_owned(),
        version,
        included_bytes,
        zones: zones.iter().map(|z| (*z).to_owned()).collect(),
    };
    vec![
        plan("IoT_Basic_1MB", 2, 1_000_000, &["Home", "Roaming_EU"]),
        plan(
            "IoT_Standard_50MB",
            3,
            50_000_000,
            &["Home", "Roaming_EU", "Roaming_World"],
        ),
        plan(
            "IoT_Pro_1GB",
            1,
            1_000_000_000,
            &["Home", "Roaming_EU", "Roaming_World"],
        ),
        plan("IoT_Test_Free", 1, 100_000, &["Home"]),
    ]
}

/// Issuer prefixes of this account's ICCIDs: (prefix, total length).
/// 19-digit ICCIDs are stored without a Luhn check digit, like many real
/// Jasper accounts; 20-digit ones carry a valid check digit.
const OWN_PREFIXES: &[(&str, usize)] = &[("8901260", 20), ("8946071", 20), ("8986061", 19)];
/// Prefixes of ICCIDs that belong to another account.
const FOREIGN_PREFIXES: &[(&str, usize)] = &[("8944500", 20)];

fn unique_iccid(
    rng: &mut SplitMix64,
    used: &mut HashSet<String>,
    prefixes: &[(&str, usize)],
) -> String {
    loop {
        let (prefix, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
        let iccid = if len == 20 {
            with_luhn(&format!("{prefix}{}", rng.digits(len - 1 - prefix.len())))
        } else {
            format!("{prefix}{}", rng.digits(len - prefix.len()))
        };
        if used.insert(iccid.clone()) {
            return iccid;
        }
    }
}

/// Appends the Luhn check digit to a string of digits.
pub(crate) fn with_luhn(digits: &str) -> String {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

const CUSTOMERS: [&str; 3] = ["Acme Logistics", "Nordic Meters", "Blue Fleet"];

fn seed_sim(
    rng: &mut SplitMix64,
    iccid: String,
    status: SimStatus,
    plans: &[RatePlan],
    now: DateTime<Utc>,
) -> Sim {
    let base = Utc
        .with_ymd_and_hms(2019, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let secs = |rng: &mut SplitMix64, days: u64| {
        Duration::seconds(rng.below(days * 86_400) as i64)
            + Duration::milliseconds(rng.below(1000) as i64)
    };
    let date_added = base + secs(rng, 1500);
    let date_shipped = date_added + Duration::days(1) + secs(rng, 9);
    let ever_active = matches!(
        status,
        SimStatus::Activated | SimStatus::Deactivated | SimStatus::Retired
    );
    let date_activated = ever_active.then(|| date_shipped + Duration::days(1) + secs(rng, 59));
    let date_modified = date_activated.unwrap_or(date_shipped) + secs(rng, 200);

    let plan = if status == SimStatus::TestReady {
        plans.iter().find(|p| p.name == "IoT_Test_Free")
    } else {
        plans.get(rng.below(3) as usize)
    }
    .or(plans.first())
    .cloned()
    .unwrap_or_else(|| RatePlan {
        name: "IoT_Basic_1MB".to_owned(),
        version: 1,
        included_bytes: 1_000_000,
        zones: vec!["Home".to_owned()],
    });

    let mut usage = BTreeMap::new();
    for back in 0..=3u32 {
        let start = dates::cycle_start(now, back);
        let active = match status {
            SimStatus::Activated => true,
            SimStatus::Deactivated | SimStatus::Retired => back > 0,
            _ => false,
        };
        let cycle = if active {
            let cycle_plan = if back >= 2 && rng.chance(0.15) {
                plans
                    .iter()
                    .filter(|p| p.name != plan.name && p.name != "IoT_Test_Free")
                    .nth(rng.below(2) as usize)
                    .unwrap_or(&plan)
            } else {
                &plan
            };
            seed_cycle(rng, cycle_plan, back == 0)
        } else {
            CycleUsage::default()
        };
        usage.insert(start, cycle);
    }

    let imei = ever_active.then(|| with_luhn(&format!("35{}", rng.digits(12))));
    let customer = rng
        .chance(0.4)
        .then(|| CUSTOMERS[rng.below(CUSTOMERS.len() as u64) as usize].to_owned());
    let device_id = rng
        .chance(0.5)
        .then(|| format!("meter-{:05}", rng.below(100_000)));
    Sim {
        imsi: format!("24007{}", rng.digits(10)),
        msisdn: format!("882360{}", rng.digits(8)),
        iccid,
        imei,
        status,
        rate_plan: plan.name.clone(),
        communication_plan: COMMUNICATION_PLANS[0].to_owned(),
        customer,
        device_id,
        modem_id: None,
        overage_override: OverageOverride::Default,
        date_added,
        date_shipped,
        date_activated,
        date_modified,
        custom: BTreeMap::new(),
        usage,
    }
}

fn seed_cycle(rng: &mut SplitMix64, plan: &RatePlan, current: bool) -> CycleUsage {
    let mut zones = Vec::new();
    for (i, zone) in plan.zones.iter().enumerate() {
        if i > 0 && !rng.chance(0.3) {
            continue;
        }
        // Home carries most of the traffic; up to 150% of the allowance.
        let share = if i == 0 { 100 } else { 15 };
        let mut data = plan.included_bytes * rng.range(5, 150) / 100 * share / 100;
        if current {
            data = data * rng.range(10, 90) / 100;
        }
        let voice = rng.chance(0.5);
        zones.push(ZoneUsage {
            rate_plan: plan.name.clone(),
            rate_plan_version: plan.version,
            zone: zone.clone(),
            data_bytes: data + rng.below(1000),
            voice_mo_secs: if voice { rng.below(600) } else { 0 },
            voice_mt_secs: if voice { rng.below(300) } else { 0 },
            sms_mo: rng.below(20),
            sms_mt: rng.below(20),
        });
    }
    let total: u64 = zones.iter().map(|z| z.data_bytes).sum();
    CycleUsage {
        zero_rated_bytes: total * rng.range(0, 10) / 100,
        sessions: rng.range(1, 80),
        zones,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert_eq!(with_luhn("7992739871"), "79927398713");
    }
}
