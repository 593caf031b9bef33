#![deny(clippy::all)]
//! `native-sse`: Server-Sent Events for Node.js and Bun, in Rust.
//!
//! Layout: `frame` (event-stream framing) and `validate` (field rules) are
//! napi-free and unit-tested with `cargo test`; `connection` and `sse` are the
//! thin napi layer that talks to the response object.

mod connection;
mod errors;
pub mod frame;
mod sse;
pub mod validate;

pub use sse::SSE;
