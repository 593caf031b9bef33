//! The hot path as plain Node-API functions: `send`, `comment` and the
//! end-of-tick `flush`, called once per event or tick. A napi-rs function
//! costs several thousand instructions of glue per call (measured with
//! callgrind); these read their arguments with one `napi_get_cb_info`,
//! find the state through the function's data pointer instead of a lookup,
//! and answer with a number or one array.
//!
//! They follow the binding's rules: arguments are read and strings copied
//! into the core within the call, nothing is kept past it, and the engine
//! is borrowed for one core call during which no JavaScript runs.

use std::ffi::{c_void, CString};
use std::ptr;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{sys, Env};
use napi_derive::napi;
use native_sse_core::engine::Plan;
use native_sse_core::{EventError, Text};

use crate::chunk;
use crate::errors;
use crate::state::{key, State};
use crate::text::{JsBytes, JsText};

/// The arguments of a call, up to `N`, and the function's data pointer.
struct Call<const N: usize> {
  argc: usize,
  argv: [sys::napi_value; N],
  state: *const State,
}

impl<const N: usize> Call<N> {
  /// # Safety
  /// `env` and `info` must be those Node-API passed to the callback.
  // SAFETY: (for callers) only the callbacks below call it, with their own
  // `env` and `info`.
  unsafe fn read(env: sys::napi_env, info: sys::napi_callback_info) -> Option<Call<N>> {
    let mut call = Call {
      argc: N,
      argv: [ptr::null_mut(); N],
      state: ptr::null(),
    };
    let mut data = ptr::null_mut();
    // SAFETY: the caller passes this callback's `env` and `info`; `argv`
    // holds `argc` slots, which Node-API fills (with `undefined` past the
    // arguments given).
    let status = unsafe {
      sys::napi_get_cb_info(
        env,
        info,
        &mut call.argc,
        call.argv.as_mut_ptr(),
        ptr::null_mut(),
        &mut data,
      )
    };
    if status != sys::Status::napi_ok || data.is_null() {
      return None;
    }
    call.state = data.cast_const().cast();
    Some(call)
  }

  fn state(&self) -> &State {
    // SAFETY: the data pointer is the environment's `State`, kept alive
    // by its instance data for as long as the environment can call these.
    unsafe { &*self.state }
  }
}

fn number(env: sys::napi_env, value: sys::napi_value) -> f64 {
  let mut result = 0.0;
  // SAFETY: a read of a value of the call in progress into a local; a
  // non-number leaves 0, which names no stream.
  unsafe { sys::napi_get_value_double(env, value, &mut result) };
  result
}

fn type_of(env: sys::napi_env, value: sys::napi_value) -> sys::napi_valuetype {
  let mut result = sys::ValueType::napi_undefined;
  // SAFETY: a type query on a value of the call in progress.
  unsafe { sys::napi_typeof(env, value, &mut result) };
  result
}

fn uint32(env: sys::napi_env, value: u32) -> sys::napi_value {
  let mut result = ptr::null_mut();
  // SAFETY: makes a number in the current handle scope.
  unsafe { sys::napi_create_uint32(env, value, &mut result) };
  result
}

/// Throws a `TypeError` with `code`; the callback then returns null.
fn throw_type_error(env: sys::napi_env, code: &str, message: &str) -> sys::napi_value {
  let code = CString::new(code).unwrap_or_default();
  let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
  // SAFETY: both strings are NUL-terminated and live across the call.
  unsafe { sys::napi_throw_type_error(env, code.as_ptr(), message.as_ptr()) };
  ptr::null_mut()
}

fn throw_error(env: sys::napi_env, message: &str) -> sys::napi_value {
  let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
  // SAFETY: a NUL-terminated string that lives across the call.
  unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
  ptr::null_mut()
}

/// `send(stream, name, data, id?)` → flags. `data` is a string or a
/// `Uint8Array`; `id` a string, or left out for the next number.
// SAFETY: a Node-API callback: Node-API calls it with a valid `env` and
// `info` of a call into this environment (it is registered in `functions`).
unsafe extern "C" fn send(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  const CALL: &str = "send(event)";
  // SAFETY: `env` and `info` are this callback's.
  let Some(call) = (unsafe { Call::<4>::read(env, info) }) else {
    return throw_error(env, "native-sse: send called without its state");
  };
  let stream = key(number(env, call.argv[0]));
  let name = JsText {
    env,
    value: call.argv[1],
  };
  let text;
  let bytes;
  let data: &dyn Text = if type_of(env, call.argv[2]) == sys::ValueType::napi_string {
    text = JsText {
      env,
      value: call.argv[2],
    };
    &text
  } else {
    match JsBytes::new(env, call.argv[2]) {
      Some(found) => {
        bytes = found;
        &bytes
      }
      None => {
        return throw_type_error(
          env,
          errors::INVALID_DATA,
          &format!(
            "{CALL}: event.data must be a string, Buffer or Uint8Array (got {})",
            type_name(type_of(env, call.argv[2]))
          ),
        )
      }
    }
  };
  let id = (call.argc >= 4 && type_of(env, call.argv[3]) == sys::ValueType::napi_string).then_some(
    JsText {
      env,
      value: call.argv[3],
    },
  );
  let sent = call
    .state()
    .with(|engine| engine.send(stream, &name, data, id.as_ref().map(|id| id as &dyn Text)));
  match sent {
    Ok(Ok(flags)) => uint32(env, flags),
    Ok(Err(EventError::Name(rule))) => throw_type_error(
      env,
      errors::INVALID_EVENT_NAME,
      &format!("{CALL}: event.eventName {rule}"),
    ),
    Ok(Err(EventError::Id(rule))) => throw_type_error(
      env,
      errors::INVALID_EVENT_ID,
      &format!("{CALL}: event.id {rule}"),
    ),
    Err(err) => throw_error(env, &err.reason),
  }
}

/// `comment(stream, text?)` → flags.
// SAFETY: a Node-API callback: Node-API calls it with a valid `env` and
// `info` of a call into this environment (it is registered in `functions`).
unsafe extern "C" fn comment(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: `env` and `info` are this callback's.
  let Some(call) = (unsafe { Call::<2>::read(env, info) }) else {
    return throw_error(env, "native-sse: comment called without its state");
  };
  let stream = key(number(env, call.argv[0]));
  let flags = if call.argc >= 2 && type_of(env, call.argv[1]) == sys::ValueType::napi_string {
    let text = JsText {
      env,
      value: call.argv[1],
    };
    call.state().with(|engine| engine.comment(stream, &text))
  } else {
    call.state().with(|engine| engine.comment(stream, &""))
  };
  match flags {
    Ok(flags) => uint32(env, flags),
    Err(err) => throw_error(env, &err.reason),
  }
}

/// `flush(expected)` → `[chunk, target, chunk, target, ..., flags?]`: a
/// target is a stream key, or an array of keys that all get the same chunk
/// (one `Buffer` for the members of one shared batch); the flags come last
/// when there are any (the length is then odd). When the only write is one
/// chunk for the stream `expected` (the one whose send scheduled the flush)
/// and there are no flags, the chunk alone: a tick with one event for one
/// stream, the paced case, makes no array (about 1,000 instructions of an
/// event's 37,000, measured with callgrind).
// SAFETY: a Node-API callback: Node-API calls it with a valid `env` and
// `info` of a call into this environment (it is registered in `functions`).
unsafe extern "C" fn flush(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: `env` and `info` are this callback's.
  let Some(call) = (unsafe { Call::<1>::read(env, info) }) else {
    return throw_error(env, "native-sse: flush called without its state");
  };
  let expected = number(env, call.argv[0]);
  let planned = call.state().with(|engine| {
    engine.flush_plan(
      |bytes| chunk::value(env, bytes),
      |bytes| chunk::buffer(env, bytes),
    )
  });
  let plan = match planned {
    Ok(Ok(plan)) => plan,
    Ok(Err(err)) | Err(err) => return throw_error(env, &err.reason),
  };
  if let (Some((key, chunk)), [], 0) = (plan.first, &plan.groups[..], plan.flags) {
    if key.to_bits() as f64 == expected {
      return chunk;
    }
  }
  match array(env, plan) {
    Ok(plan) => plan,
    Err(err) => throw_error(env, &err.reason),
  }
}

/// The plan as the front reads it (see `flush`).
fn array(env: sys::napi_env, plan: Plan<sys::napi_value>) -> Result<sys::napi_value> {
  let Plan {
    first,
    mut single,
    groups,
    flags,
  } = plan;
  single.extend(first);
  let len = 2 * (single.len() + groups.len()) + usize::from(flags != 0);
  let mut array = ptr::null_mut();
  // SAFETY: makes an array in the current handle scope.
  check_status!(unsafe { sys::napi_create_array_with_length(env, len, &mut array) })?;
  let set = |at: usize, value: sys::napi_value| -> Result<()> {
    // SAFETY: `array` and `value` belong to this call's handle scope.
    check_status!(unsafe { sys::napi_set_element(env, array, at as u32, value) })
  };
  let double = |value: f64| -> Result<sys::napi_value> {
    let mut result = ptr::null_mut();
    // SAFETY: makes a number in the current handle scope.
    check_status!(unsafe { sys::napi_create_double(env, value, &mut result) })?;
    Ok(result)
  };
  let mut at = 0;
  for (key, value) in single {
    set(at, value)?;
    set(at + 1, double(key.to_bits() as f64)?)?;
    at += 2;
  }
  for (buffer, members) in groups {
    set(at, buffer)?;
    let keys: Vec<f64> = members.iter().map(|key| key.to_bits() as f64).collect();
    if keys.len() == 1 {
      set(at + 1, double(keys[0])?)?;
    } else {
      set(at + 1, keys_array(env, &keys)?)?;
    }
    at += 2;
  }
  if flags != 0 {
    set(at, uint32(env, flags))?;
  }
  Ok(array)
}

/// A `Float64Array` with `keys`: a few Node-API calls for any number of
/// members, where an array would take two per member.
fn keys_array(env: sys::napi_env, keys: &[f64]) -> Result<sys::napi_value> {
  let (buffer, offset) = keys_buffer(env, keys)?;
  let mut array = ptr::null_mut();
  // SAFETY: a typed array over the keys' bytes, in the current scope.
  check_status!(unsafe {
    sys::napi_create_typedarray(
      env,
      sys::TypedarrayType::float64_array,
      keys.len(),
      buffer,
      offset,
      &mut array,
    )
  })?;
  Ok(array)
}

/// An `ArrayBuffer` holding `keys` and their byte offset in it.
///
/// A native engine hands out the buffer's own memory, which is filled in
/// place.
#[cfg(not(target_family = "wasm"))]
fn keys_buffer(env: sys::napi_env, keys: &[f64]) -> Result<(sys::napi_value, usize)> {
  let bytes = std::mem::size_of_val(keys);
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: makes an ArrayBuffer of `bytes` bytes in the current handle
  // scope; `data` receives its memory.
  check_status!(unsafe { sys::napi_create_arraybuffer(env, bytes, &mut data, &mut buffer) })?;
  if !data.is_null() && bytes > 0 {
    // SAFETY: the buffer was made just now with room for exactly
    // `keys.len()` doubles, nothing else has seen it, and no JavaScript
    // runs before this copy ends; the regions cannot overlap.
    unsafe { ptr::copy_nonoverlapping(keys.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes) };
  }
  Ok((buffer, 0))
}

/// An `ArrayBuffer` holding `keys` and their byte offset in it.
///
/// Under WASI (emnapi) the memory `napi_create_arraybuffer` hands out is a
/// copy in wasm memory that the `ArrayBuffer` never sees (every key would
/// read as 0), so the keys are copied in by `napi_create_buffer_copy`.
#[cfg(target_family = "wasm")]
fn keys_buffer(env: sys::napi_env, keys: &[f64]) -> Result<(sys::napi_value, usize)> {
  let mut copy = ptr::null_mut();
  // SAFETY: `keys` is valid for the byte length passed; Node-API copies the
  // bytes into a new `Buffer` before returning (no data pointer asked for).
  check_status!(unsafe {
    sys::napi_create_buffer_copy(
      env,
      std::mem::size_of_val(keys),
      keys.as_ptr().cast(),
      ptr::null_mut(),
      &mut copy,
    )
  })?;
  let mut buffer = ptr::null_mut();
  let mut offset = 0;
  // SAFETY: `copy` is the `Buffer` (a `Uint8Array`) just made; the out
  // pointers left null are optional in Node-API.
  check_status!(unsafe {
    sys::napi_get_typedarray_info(
      env,
      copy,
      ptr::null_mut(),
      ptr::null_mut(),
      ptr::null_mut(),
      &mut buffer,
      &mut offset,
    )
  })?;
  // emnapi gives the copy a buffer of its own (offset 0).
  if offset % std::mem::align_of::<f64>() != 0 {
    return Err(Error::new(
      Status::GenericFailure,
      "native-sse: the member keys' buffer is not aligned for a Float64Array",
    ));
  }
  Ok((buffer, offset))
}

fn type_name(value_type: sys::napi_valuetype) -> &'static str {
  errors::type_name(napi::ValueType::from(value_type))
}

/// The hot functions, bound to `state`: `{ send, comment, flush }`.
pub fn functions<'env>(env: &'env Env, state: &Rc<State>) -> Result<Object<'env>> {
  let mut object = Object::new(env)?;
  // The functions point at the state; the environment's instance data
  // holds it for the environment's whole life (it is never replaced).
  let data = Rc::as_ptr(state).cast_mut().cast::<c_void>();
  let entries: [(&str, sys::napi_callback); 3] = [
    ("send", Some(send)),
    ("comment", Some(comment)),
    ("flush", Some(flush)),
  ];
  for (name, callback) in entries {
    let mut function = ptr::null_mut();
    // SAFETY: `name` is valid for `name.len()` bytes; `callback` has the
    // Node-API callback signature; `data` outlives every call (see above).
    check_status!(unsafe {
      sys::napi_create_function(
        env.raw(),
        name.as_ptr().cast(),
        name.len() as isize,
        callback,
        data,
        &mut function,
      )
    })?;
    // SAFETY: `function` was just made in this handle scope.
    let function = unsafe { Unknown::from_raw_unchecked(env.raw(), function) };
    object.set_named_property(name, function)?;
  }
  Ok(object)
}

/// Hands the front's glue object to the constructors; returns the hot
/// functions (`send`, `comment`, `flush`, see `hot`).
#[napi(js_name = "init", skip_typescript)]
pub fn init<'env>(env: &'env Env, glue: Object) -> Result<Object<'env>> {
  let state = State::get(env)?;
  state.set_glue(env, &glue)?;
  functions(env, &state)
}
