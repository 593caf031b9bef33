//! The core of `native-sse`: everything that decides, and nothing that
//! does I/O.
//!
//! Framing (`frame`), field rules (`validate`), channel ids (`event_id`),
//! the history and the resume rule (`history`), option rules (`options`,
//! and `given` for values as the binding read them, with the errors' text),
//! the response headers (`headers`), the Redis stream rules (`redis`),
//! each stream's pending bytes, cap and replay (`bytes`, `stream`), channels
//! (`channel`), heartbeats (`heartbeat`), graceful drains (`drain`) and the engine that owns them all
//! (`engine`). The engine is driven by `&mut self` calls and answers with
//! what to write and what to do; it never calls out, holds no handle of a
//! JavaScript runtime and needs no `unsafe`. The `native-sse` binding
//! crate converts JavaScript values into these calls and carries out the
//! answers.
#![forbid(unsafe_code)]
#![deny(clippy::all)]

pub mod bytes;
pub mod channel;
pub mod drain;
pub mod engine;
pub mod event_id;
pub mod frame;
pub mod given;
pub mod headers;
pub mod heartbeat;
pub mod history;
pub mod metrics;
pub mod options;
pub mod redis;
pub mod slab;
pub mod stream;
pub mod validate;

pub use engine::{flags, Action, Engine, EventError, Prepared, StreamOptions, Text};
pub use slab::Key;
pub use stream::CloseReason;
