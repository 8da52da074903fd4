//! Integration tests of the Jasper simulator over real loopback sockets.
//!
//! One test binary (see ripgrep's layout): every module below talks to a
//! simulator started in-process on `127.0.0.1:0`, with a tiny hand-written
//! HTTP/1.1 client so dropped connections and malformed bodies are visible
//! exactly as they happen on the wire.

mod cli;
mod control;
mod faults;
mod limits;
mod rest;
mod soap;
mod util;
