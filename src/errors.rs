//! The binding's errors: a JavaScript `TypeError` with a stable `code` and a
//! message that names the argument and the rule (the JavaScript front makes
//! the type errors it can see first, with the same codes, in `js/errors.js`).

use napi::{Env, Error, Status};

/// The event name is not a string, or breaks a single-line field rule.
pub const INVALID_EVENT_NAME: &str = "ERR_SSE_INVALID_EVENT_NAME";
/// An argument is not what the method takes: the constructor's `req` or
/// `res`, or the callback of `onClose()`.
pub const INVALID_ARGUMENT: &str = "ERR_SSE_INVALID_ARGUMENT";
/// A constructor option has the wrong type or is out of range.
pub const INVALID_OPTION: &str = "ERR_SSE_INVALID_OPTION";
/// An explicit event id is not a string, or breaks a single-line field rule.
pub const INVALID_EVENT_ID: &str = "ERR_SSE_INVALID_EVENT_ID";
/// Pre-serialised `data` is neither a string nor bytes, or comes together
/// with `eventPayload`.
pub const INVALID_DATA: &str = "ERR_SSE_INVALID_DATA";

/// `add()` or `broadcast()` on a channel after `close()`.
pub const CHANNEL_CLOSED: &str = "ERR_SSE_CHANNEL_CLOSED";

/// Throws an `Error` (not a `TypeError`: the input is fine, the state is
/// not) carrying `code`.
pub fn state_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_error(message, Some(code)) {
    Ok(()) => Error::new(Status::PendingException, message.to_owned()),
    Err(err) => err,
  }
}

/// Throws a `TypeError` carrying `code` and returns the error that tells
/// napi-rs an exception is already pending, so the thrown one reaches JS.
pub fn type_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_type_error(message, Some(code)) {
    Ok(()) => Error::new(Status::PendingException, message.to_owned()),
    Err(err) => err,
  }
}

/// `ERR_SSE_INVALID_OPTION` for the option `name` of `call` (`"options"`
/// for the options argument itself): "`call`: options.`name` `rule`".
pub fn option_error(env: &Env, call: &str, name: &str, rule: &str) -> Error {
  let what = if name == "options" {
    "options".to_owned()
  } else {
    format!("options.{name}")
  };
  type_error(env, INVALID_OPTION, &format!("{call}: {what} {rule}"))
}

/// A `TypeError` for an argument of the wrong type: "`subject` must be
/// `expected` (got <typeof>)", e.g. "send(event): event.id must be a string
/// (got number)".
pub fn wrong_type(
  env: &Env,
  code: &str,
  subject: &str,
  expected: &str,
  got: napi::ValueType,
) -> Error {
  type_error(
    env,
    code,
    &format!("{subject} must be {expected} (got {})", type_name(got)),
  )
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
