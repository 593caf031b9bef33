//! The binding's errors: a JavaScript `TypeError` (or `Error`) with a stable
//! `code` and a message that names the argument and the rule. The codes and
//! the text are the core's (`native_sse_core::given`); this file only
//! throws them (the JavaScript front makes the type errors it can see first,
//! with the same codes, in `js/errors.js`).

use napi::{Env, Error, Status, ValueType};
pub use native_sse_core::given::code::*;
use native_sse_core::given::{self, Kind};

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

/// `ERR_SSE_INVALID_OPTION` for the option `name` of `call`.
pub fn option_error(env: &Env, call: &str, name: &str, rule: &str) -> Error {
  type_error(
    env,
    INVALID_OPTION,
    &given::option_message(call, name, rule),
  )
}

/// A `TypeError` for an argument of the wrong type.
pub fn wrong_type(env: &Env, code: &str, subject: &str, expected: &str, got: ValueType) -> Error {
  type_error(
    env,
    code,
    &given::wrong_type_message(subject, expected, kind(got)),
  )
}

/// The kind of a napi value type (objects count as objects; callers that
/// tell arrays apart check `is_array` themselves).
pub fn kind(value_type: ValueType) -> Kind {
  match value_type {
    ValueType::Undefined => Kind::Undefined,
    ValueType::Null => Kind::Null,
    ValueType::Boolean => Kind::Boolean,
    ValueType::Number => Kind::Number,
    ValueType::String => Kind::String,
    ValueType::Symbol => Kind::Symbol,
    ValueType::Function => Kind::Function,
    ValueType::External => Kind::External,
    ValueType::BigInt => Kind::BigInt,
    _ => Kind::Object,
  }
}

/// The name JavaScript's `typeof` would print, used in error messages.
pub fn type_name(value_type: ValueType) -> &'static str {
  kind(value_type).name()
}
