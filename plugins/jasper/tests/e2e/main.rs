//! End-to-end tests of the Jasper plugin through the real host runtime, with the plugin test kit
//! (canned HTTP answers behind the host's egress rules, the host's timers on virtual time, the
//! host's schema checks): every operation over both APIs, the manifest's schemas, limits,
//! retries and single-flight.
//!
//! One test binary (`cargo test -p devext-jasper --test e2e`), one module per concern.

// Helpers are shared by modules that each use part of them.
#![allow(dead_code, unreachable_pub)]

mod abi;
mod error_codes;
mod limits;
mod manifest;
mod rate_plans;
mod rest;
mod soap;
mod support;
