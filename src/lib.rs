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

mod channel;
mod connection;
mod errors;
mod event;
pub mod event_id;
pub mod frame;
pub mod history;
mod js;
mod open;
pub mod options;
mod redis;
mod runtime;
mod shared;
mod sse;
pub mod validate;

pub use channel::Channel;
pub use sse::SSE;
