//! Helpers every networked plugin needs, on the host's timers and inside the call's deadline:
//!
//! - [`Retry`]: retries with exponential back-off that never repeat a write that may have been
//!   processed;
//! - [`SingleFlight`]: identical reads running at once share one upstream request;
//! - [`AccountGate`]: a per-account gate over the host's limiter capability (`limit.*`), so that
//!   every call, of every org and every replica using the account, counts against the same
//!   limits;
//! - [`TokenCache`]: OAuth-style access tokens, refreshed one at a time and before they expire,
//!   with one retry on a refused token.
//!
//! [`join_all`] runs several requests of one call at once.
//!
//! They use nothing but [`Host`](crate::Host): no runtime, thread or clock of their own.

mod gate;
mod join;
mod retry;
mod single_flight;
mod token;

pub use gate::AccountGate;
pub use join::join_all;
pub use retry::{may_have_been_processed, Retriable, Retry, Safety};
pub use single_flight::SingleFlight;
pub use token::{Token, TokenCache};
