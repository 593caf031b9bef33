//! The check every constructor makes first: that it was called with `new`,
//! on a fresh object of its class, as a JavaScript class would insist.

use napi::bindgen_prelude::*;
use napi::{sys, Env};

use crate::errors::{self, type_error};

/// A `TypeError` unless `this` is a new, not yet wrapped, instance of `T`
/// (so `SSE(req, res)`, `SSE.call(other, ...)` and calls on an existing
/// instance write nothing and wrap nothing).
pub fn check_new<T: JavaScriptClassExt>(env: &Env, this: &Object, class: &str) -> Result<()> {
  let refuse = || {
    type_error(
      env,
      errors::INVALID_ARGUMENT,
      &format!("Class constructor {class} cannot be invoked without 'new'"),
    )
  };
  if !T::instance_of(env, this).unwrap_or(false) {
    return Err(refuse());
  }
  let mut wrapped = std::ptr::null_mut();
  // SAFETY: `this` is an object of the call in progress; `napi_unwrap` only
  // reads whether a native value is attached, into a local.
  let status = unsafe { sys::napi_unwrap(env.raw(), this.raw(), &mut wrapped) };
  if status == sys::Status::napi_ok {
    return Err(refuse());
  }
  clear_pending(env);
  Ok(())
}

/// Clears an exception a failed Node-API query may have left pending.
pub fn clear_pending(env: &Env) {
  let mut pending = false;
  // SAFETY: plain queries on the environment of the call in progress.
  unsafe { sys::napi_is_exception_pending(env.raw(), &mut pending) };
  if pending {
    let mut ignored = std::ptr::null_mut();
    // SAFETY: as above; the exception value is dropped.
    unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &mut ignored) };
  }
}
