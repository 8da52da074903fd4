//! End-to-end tests of the Jasper plugin over a fake host (canned HTTP answers, virtual time):
//! every operation over both APIs, the manifest's schemas, limits, retries and single-flight.
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
