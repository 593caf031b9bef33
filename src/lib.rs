#![deny(clippy::all)]
//! `native-sse`: Server-Sent Events for Node.js and Bun, in Rust.
//!
//! Layout: `frame` (event-stream framing), `validate` (field rules and
//! `Last-Event-ID`) and `options` (constructor option rules) are napi-free
//! and unit-tested with `cargo test`; `sse` (the class), `open` (reading
//! options, headers and the request), `connection` (one response: batching,
//! cap, heartbeat, close reasons), `runtime` (per-environment cache and the
//! end-of-tick flush) and `js` (raw Node-API calls of the hot path) are the
//! thin napi layer.

mod connection;
mod errors;
pub mod frame;
mod js;
mod open;
pub mod options;
mod runtime;
mod sse;
pub mod validate;

pub use sse::SSE;
