#![deny(clippy::all)]
#![deny(clippy::undocumented_unsafe_blocks)]
// The #[napi] functions are registered with Node only outside `cargo test`.
#![cfg_attr(test, allow(dead_code))]
//! `native-sse`: the Node-API binding over `native-sse-core`.
//!
//! The core decides everything (framing, validation, streams, channels,
//! replay); this crate only converts JavaScript values into core calls and
//! the core's answers back into values, and the JavaScript front (`js/`)
//! carries them out on the responses. Rules that keep it sound:
//!
//! - Bytes that come from JavaScript (strings, `Buffer`s, typed arrays,
//!   resizable or transferable buffers) are copied into the core inside the
//!   call that receives them, before any user code can run (`text`).
//! - No Node-API handle outlives the call (handle scope) it came from: the
//!   binding keeps only keys (numbers) and the front's glue object, in a
//!   reference.
//! - The engine is borrowed for one core call at a time and the core never
//!   calls out, so no JavaScript runs while core state is borrowed; a call
//!   made from user code (a `res.write` wrapper, a predicate, an `onClose`
//!   callback) finds a consistent state (`state`).
//!
//! Modules: `sse` and `channel` (the classes and their constructors),
//! `calls` (the functions the front calls), `hot` (the per-event ones as
//! plain Node-API functions), `open` (options, headers,
//! `Last-Event-ID`), `text` and `chunk` (values in and out), `construct`
//! (the `new` check), `metrics` (the counters), `state` (per-environment
//! state), `errors`.

mod calls;
mod channel;
mod chunk;
mod construct;
mod errors;
mod hot;
mod metrics;
mod open;
mod sse;
mod state;
mod text;

pub use channel::Channel;
pub use sse::SSE;
