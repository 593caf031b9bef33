//! The one error path: every bad input becomes a JavaScript `TypeError` with
//! a stable `code` and a message that names the argument and the rule.

use napi::{Env, Error, Status};

/// `send()` was given something that is not an object.
pub const INVALID_EVENT: &str = "ERR_SSE_INVALID_EVENT";
/// The event name is not a string, or breaks a single-line field rule.
pub const INVALID_EVENT_NAME: &str = "ERR_SSE_INVALID_EVENT_NAME";
/// The payload cannot be serialised by `JSON.stringify`.
pub const INVALID_PAYLOAD: &str = "ERR_SSE_INVALID_PAYLOAD";
/// A constructor argument is not a usable request or response object.
pub const INVALID_ARGUMENT: &str = "ERR_SSE_INVALID_ARGUMENT";

/// Throws a `TypeError` carrying `code` and returns the error that tells
/// napi-rs an exception is already pending, so the thrown one reaches JS.
pub fn type_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_type_error(message, Some(code)) {
    Ok(()) => Error::new(Status::PendingException, message.to_owned()),
    Err(err) => err,
  }
}

/// The name JavaScript's `typeof` would print for a napi value type, used in
/// error messages ("got number").
pub fn type_name(value_type: napi::ValueType) -> &'static str {
  use napi::ValueType::*;
  match value_type {
    Undefined => "undefined",
    Null => "null",
    Boolean => "boolean",
    Number => "number",
    String => "string",
    Symbol => "symbol",
    Object => "object",
    Function => "function",
    External => "external",
    BigInt => "bigint",
    _ => "unknown",
  }
}
