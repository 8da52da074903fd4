//! End-to-end tests of the Jasper plugin through the real host against the simulator.
//!
//! This crate has no code of its own: the tests are in `tests/` (one binary, `e2e`). Run them
//! with `cargo test -p devext-e2e`.
