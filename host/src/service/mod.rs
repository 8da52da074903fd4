//! The devext service: storage, tenants and keys, and the HTTP API over the runtime.

pub mod crypto;
pub mod store;
