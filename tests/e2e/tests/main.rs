//! End-to-end tests of the Jasper plugin through the real host (`devext_host::Runtime`, and the
//! `devext` binary) against the Jasper simulator (`devext_jasper_sim`), both APIs.
//!
//! - `contract`: every operation and mapped error, {SOAP, REST} × {static, dynamic} plugin.
//! - `connection`: `test_connection` and `usage_history`, and the hints of Jasper's schemas.
//! - `burst`: 25 concurrent overviews stay within Jasper's limits.
//! - `cache`: the host's view cache, and its invalidation by actions.
//! - `faults`: each fault mode of the simulator; no write applied twice.
//! - `cli`: `devext invoke` against the simulator.
//! - `jobs_cli`: `devext jobs` against a `devext serve` child process over the simulator.

mod burst;
mod cache;
mod cli;
mod connection;
mod contract;
mod faults;
mod jobs_cli;
mod support;
