//! The HTTP API (`/api/v1`): plugins, keys, extension settings, devices, the drilldown and its
//! operations, the audit log; plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.
//!
//! Every route is declared once in [`routes`] (module `routes`): the table builds the router —
//! each route's least role and body limit are enforced from it by layers, before the handler
//! runs — and generates the OpenAPI document, so none of them can drift apart. One module per
//! concept: `state` ([`App`]), `error` ([`ApiError`]), `auth` ([`Caller`] and the role check),
//! `routes`, `health`, `plugins`, `keys`, `settings`, `devices`, `ops` (drilldown, operations,
//! idempotency), `page` (page sizes of listings), `request_id` (each request's id, in its
//! logs, its answer and its audit entries) and `audit`.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod devices;
pub(crate) mod error;
mod health;
pub(crate) mod import;
pub(crate) mod keys;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod page;
mod plugins;
pub(crate) mod request_id;
mod routes;
pub(crate) mod settings;
pub(crate) mod state;

pub use auth::Caller;
pub use error::ApiError;
pub use request_id::HEADER as REQUEST_ID_HEADER;
pub use routes::{
    Header, IMPORT_MAX_BYTES, MAX_BODY_BYTES, PerPlugin, QueryParam, Route, openapi_document,
    router, routes,
};
pub use settings::{SECRET_MASK, secret_fields};
pub use state::{App, WebConfig};
