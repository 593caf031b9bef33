//! Bytes the core hands out, as the JavaScript values `res.write` takes.

use std::ptr;

use napi::{check_status, sys, Result};
use native_sse_core::bytes::ChunkKind;

/// A JS value with `bytes`, of the kind the core chooses
/// ([`ChunkKind::of`]): a one-byte string, a string from UTF-8, or a
/// `Buffer`.
pub fn value(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
  let mut result = ptr::null_mut();
  let (data, len) = (bytes.as_ptr().cast(), bytes.len() as isize);
  match ChunkKind::of(bytes) {
    ChunkKind::Latin1 => {
      // SAFETY: `data` points at `len` initialised bytes, copied by the call.
      let status = unsafe { sys::napi_create_string_latin1(env, data, len, &mut result) };
      check_status!(status)?;
    }
    ChunkKind::Utf8 => {
      // SAFETY: as above; the bytes are valid UTF-8, so they decode to
      // exactly the text they encode.
      let status = unsafe { sys::napi_create_string_utf8(env, data, len, &mut result) };
      check_status!(status)?;
    }
    ChunkKind::Buffer => return buffer(env, bytes),
  }
  Ok(result)
}

/// A new `Buffer` with a copy of `bytes`.
pub fn buffer(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
  let mut result = ptr::null_mut();
  let mut copy = ptr::null_mut();
  // SAFETY: `bytes` is a valid slice for the length passed; Node-API copies
  // it into memory of its own before returning.
  check_status!(unsafe {
    sys::napi_create_buffer_copy(
      env,
      bytes.len(),
      bytes.as_ptr().cast(),
      &mut copy,
      &mut result,
    )
  })?;
  Ok(result)
}
