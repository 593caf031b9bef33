//! Small, checked wrappers over the raw Node-API calls of the hot path.
//!
//! `send()` runs once per event, so it avoids what the general napi-rs
//! helpers do per call: allocating a C string for every property name, and
//! copying strings into temporary `String`s. Property names are C string
//! literals, JS functions are looked up once and kept in references
//! (`runtime.rs`), and UTF-8 text is written straight into the connection's
//! output buffer.

use std::ffi::{c_void, CStr};
use std::ptr;

use napi::{check_status, sys, Error, Result, Status};

/// A raw JS value handle, valid in the current handle scope.
pub type Value = sys::napi_value;

/// `typeof value`, as the napi value type.
pub fn type_of(env: sys::napi_env, value: Value) -> Result<sys::napi_valuetype> {
  let mut value_type = 0;
  check_status!(unsafe { sys::napi_typeof(env, value, &mut value_type) })?;
  Ok(value_type)
}

/// `object[name]`, with the name given as a C string literal (no allocation).
pub fn get(env: sys::napi_env, object: Value, name: &CStr) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_named_property(env, object, name.as_ptr(), &mut result) })?;
  Ok(result)
}

/// Runs `source`, a function expression, and returns the function when it
/// is one.
pub fn compile_function(env: sys::napi_env, source: &str) -> Result<Value> {
  let script = string(env, source)?;
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_run_script(env, script, &mut result) })?;
  if type_of(env, result)? != sys::ValueType::napi_function {
    return Err(Error::new(Status::FunctionExpected, "not a function"));
  }
  Ok(result)
}

/// `Some(value)` when `value` is a number that fits a `u32`, read as one.
pub fn as_u32(env: sys::napi_env, value: Value) -> Result<Option<u32>> {
  if type_of(env, value)? != sys::ValueType::napi_number {
    return Ok(None);
  }
  let mut result = 0;
  check_status!(unsafe { sys::napi_get_value_uint32(env, value, &mut result) })?;
  Ok(Some(result))
}

/// A promise resolved with `undefined`.
pub fn resolved_promise(env: sys::napi_env) -> Result<Value> {
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  check_status!(unsafe { sys::napi_create_promise(env, &mut deferred, &mut promise) })?;
  check_status!(unsafe { sys::napi_resolve_deferred(env, deferred, undefined(env)?) })?;
  Ok(promise)
}

/// Reports `err` as an uncaught exception (`'uncaughtException'`): the
/// pending JS exception when there is one, otherwise an `Error` with its
/// message.
pub fn throw_uncaught(env: sys::napi_env, err: Error) {
  let mut pending = false;
  unsafe { sys::napi_is_exception_pending(env, &mut pending) };
  let mut error = ptr::null_mut();
  if pending {
    unsafe { sys::napi_get_and_clear_last_exception(env, &mut error) };
  } else if let Ok(message) = string(env, &err.reason) {
    unsafe { sys::napi_create_error(env, ptr::null_mut(), message, &mut error) };
  }
  if !error.is_null() {
    unsafe { sys::napi_fatal_exception(env, error) };
  }
}

/// The value a reference points to.
pub fn deref(env: sys::napi_env, reference: sys::napi_ref) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_reference_value(env, reference, &mut result) })?;
  if result.is_null() {
    return Err(Error::new(
      Status::GenericFailure,
      "reference was collected",
    ));
  }
  Ok(result)
}

/// A strong reference to `value` (count 1).
pub fn reference(env: sys::napi_env, value: Value) -> Result<sys::napi_ref> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_create_reference(env, value, 1, &mut result) })?;
  Ok(result)
}

/// `function.apply(this, args)`. A JS exception stays pending and is
/// reported as an error with status `PendingException`.
pub fn call(env: sys::napi_env, this: Value, function: Value, args: &[Value]) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe {
    sys::napi_call_function(env, this, function, args.len(), args.as_ptr(), &mut result)
  })?;
  Ok(result)
}

/// `Some(value)` when `value` is a boolean, `None` otherwise.
pub fn as_bool(env: sys::napi_env, value: Value) -> Result<Option<bool>> {
  if type_of(env, value)? != sys::ValueType::napi_boolean {
    return Ok(None);
  }
  let mut result = false;
  check_status!(unsafe { sys::napi_get_value_bool(env, value, &mut result) })?;
  Ok(Some(result))
}

/// Calls `target[method](...args)` with `this` bound to `target`, through
/// napi-rs's typed arguments. For calls off the hot path (constructor,
/// listeners, `end`).
pub fn call_method<'env, Args: napi::bindgen_prelude::JsValuesTupleIntoVec>(
  target: &napi::bindgen_prelude::Object<'env>,
  method: &str,
  args: Args,
) -> Result<napi::bindgen_prelude::Unknown<'env>> {
  use napi::bindgen_prelude::{Function, JsObjectValue, Unknown};
  let function: Function<Args, Unknown> = target.get_named_property(method)?;
  function.apply(target, args)
}

/// A JS string from Rust text.
pub fn string(env: sys::napi_env, text: &str) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe {
    sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut result)
  })?;
  Ok(result)
}

/// A JS number from an unsigned 32-bit integer (a small integer in V8,
/// unlike [`number`], which makes a heap number).
pub fn uint32(env: sys::napi_env, value: u32) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_create_uint32(env, value, &mut result) })?;
  Ok(result)
}

/// `Some(value)` when `value` is a number, `None` otherwise.
pub fn as_f64(env: sys::napi_env, value: Value) -> Result<Option<f64>> {
  if type_of(env, value)? != sys::ValueType::napi_number {
    return Ok(None);
  }
  let mut result = 0.0;
  check_status!(unsafe { sys::napi_get_value_double(env, value, &mut result) })?;
  Ok(Some(result))
}

/// Deletes a reference made by [`reference`]. Fails only while the
/// environment is torn down, when there is nothing left to free.
pub fn delete_reference(env: sys::napi_env, reference: sys::napi_ref) {
  unsafe { sys::napi_delete_reference(env, reference) };
}

/// The bytes of a `Uint8Array` (or `Buffer`), when `value` is one. The slice
/// borrows the array's memory: use it before running any JavaScript.
pub fn as_bytes<'a>(env: sys::napi_env, value: Value) -> Result<Option<&'a [u8]>> {
  let mut is_typed_array = false;
  check_status!(unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) })?;
  if !is_typed_array {
    return Ok(None);
  }
  let mut kind = 0;
  let mut length = 0;
  let mut data = ptr::null_mut();
  let mut array_buffer = ptr::null_mut();
  let mut offset = 0;
  check_status!(unsafe {
    sys::napi_get_typedarray_info(
      env,
      value,
      &mut kind,
      &mut length,
      &mut data,
      &mut array_buffer,
      &mut offset,
    )
  })?;
  if kind != sys::TypedarrayType::uint8_array {
    return Ok(None);
  }
  if length == 0 || data.is_null() {
    return Ok(Some(&[]));
  }
  Ok(Some(unsafe {
    std::slice::from_raw_parts(data.cast::<u8>(), length)
  }))
}

/// `Object.keys(object)`: its own enumerable string keys, as an array.
pub fn own_enumerable_keys(env: sys::napi_env, object: Value) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe {
    sys::napi_get_all_property_names(
      env,
      object,
      sys::KeyCollectionMode::own_only,
      sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
      sys::KeyConversion::numbers_to_strings,
      &mut result,
    )
  })?;
  Ok(result)
}

/// A JS boolean.
pub fn boolean(env: sys::napi_env, value: bool) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_boolean(env, value, &mut result) })?;
  Ok(result)
}

/// `null`.
pub fn null(env: sys::napi_env) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_null(env, &mut result) })?;
  Ok(result)
}

/// The length of the array `array`.
pub fn array_length(env: sys::napi_env, array: Value) -> Result<u32> {
  let mut length = 0;
  check_status!(unsafe { sys::napi_get_array_length(env, array, &mut length) })?;
  Ok(length)
}

/// A new array of `length` holes.
pub fn array(env: sys::napi_env, length: usize) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_create_array_with_length(env, length, &mut result) })?;
  Ok(result)
}

/// `object[name] = value`, with the name given as a C string literal.
pub fn set_named(env: sys::napi_env, object: Value, name: &CStr, value: Value) -> Result<()> {
  check_status!(unsafe { sys::napi_set_named_property(env, object, name.as_ptr(), value) })
}

/// `array[index] = value`.
pub fn set_element(env: sys::napi_env, array: Value, index: u32, value: Value) -> Result<()> {
  check_status!(unsafe { sys::napi_set_element(env, array, index, value) })
}

/// `array[index]`.
pub fn element(env: sys::napi_env, array: Value, index: u32) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_element(env, array, index, &mut result) })?;
  Ok(result)
}

/// `undefined`.
pub fn undefined(env: sys::napi_env) -> Result<Value> {
  let mut result = ptr::null_mut();
  check_status!(unsafe { sys::napi_get_undefined(env, &mut result) })?;
  Ok(result)
}

/// Appends the UTF-8 form of the JS string `value` to `out` (lone surrogates
/// become U+FFFD, as everywhere in Node). Returns the number of bytes added.
pub fn append_utf8(env: sys::napi_env, value: Value, out: &mut Vec<u8>) -> Result<usize> {
  let mut len = 0;
  check_status!(unsafe {
    sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len)
  })?;
  // napi writes a terminating NUL, which is not kept.
  out.reserve(len + 1);
  let start = out.len();
  let mut written = 0;
  check_status!(unsafe {
    sys::napi_get_value_string_utf8(
      env,
      value,
      out.as_mut_ptr().add(start).cast(),
      len + 1,
      &mut written,
    )
  })?;
  unsafe { out.set_len(start + written) };
  Ok(written)
}

/// The UTF-16 code units of the JS string `value`.
pub fn utf16(env: sys::napi_env, value: Value) -> Result<Vec<u16>> {
  let mut len = 0;
  check_status!(unsafe {
    sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut len)
  })?;
  let mut units = vec![0u16; len + 1];
  let mut written = 0;
  check_status!(unsafe {
    sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), len + 1, &mut written)
  })?;
  units.truncate(written);
  Ok(units)
}

/// Below this size a chunk is handed to `res.write` as a string; above it, as
/// a `Buffer` that takes over the allocation. Measured side by side (4 rounds,
/// events/s relative to raw `res.write`): a one-byte (latin1) string for ASCII
/// text gave burst 1.16x and paced 1.51x CPU, a copied `Buffer` 1.03x and
/// 1.64x. Each small `Buffer` is a fresh ArrayBuffer with its own backing
/// store, while Node packs small strings with the chunk framing in one copy.
const STRING_BELOW_BYTES: usize = 64 * 1024;

/// The chunk to pass to `res.write`. `bytes` is UTF-8 (framed from JS
/// strings): ASCII text becomes a one-byte string (a plain copy), other small
/// text a string decoded from UTF-8, and large chunks an external `Buffer`.
pub fn chunk_from_vec(env: sys::napi_env, bytes: Vec<u8>) -> Result<Value> {
  if bytes.len() < STRING_BELOW_BYTES {
    let mut result = ptr::null_mut();
    let (ptr, len) = (bytes.as_ptr().cast(), bytes.len() as isize);
    if bytes.is_ascii() {
      check_status!(unsafe { sys::napi_create_string_latin1(env, ptr, len, &mut result) })?;
    } else {
      check_status!(unsafe { sys::napi_create_string_utf8(env, ptr, len, &mut result) })?;
    }
    return Ok(result);
  }
  let mut bytes = std::mem::ManuallyDrop::new(bytes);
  let data = bytes.as_mut_ptr();
  let len = bytes.len();
  let capacity = bytes.capacity();
  let mut result = ptr::null_mut();
  let status = unsafe {
    sys::napi_create_external_buffer(
      env,
      len,
      data.cast(),
      Some(drop_vec),
      capacity as *mut c_void,
      &mut result,
    )
  };
  if status == sys::Status::napi_ok {
    return Ok(result);
  }
  // Runtimes that forbid external buffers: copy instead.
  let bytes = unsafe { Vec::from_raw_parts(data, len, capacity) };
  buffer_copy(env, &bytes)
}

pub fn buffer_copy(env: sys::napi_env, bytes: &[u8]) -> Result<Value> {
  let mut result = ptr::null_mut();
  let mut copy_data = ptr::null_mut();
  check_status!(unsafe {
    sys::napi_create_buffer_copy(
      env,
      bytes.len(),
      bytes.as_ptr().cast(),
      &mut copy_data,
      &mut result,
    )
  })?;
  Ok(result)
}

unsafe extern "C" fn drop_vec(_env: sys::napi_env, data: *mut c_void, hint: *mut c_void) {
  // `data` and `hint` are the pointer and capacity of the Vec handed over in
  // `chunk_from_vec`; the length does not matter for deallocation of u8s.
  drop(unsafe { Vec::from_raw_parts(data.cast::<u8>(), 0, hint as usize) });
}
