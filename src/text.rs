//! JavaScript strings and bytes as the core's `Text`: read straight into
//! the core's buffers, at the moment the core asks, inside one synchronous
//! call in which no JavaScript runs. No view of JavaScript memory is kept
//! past that moment, so user code (a getter, a predicate) that resizes,
//! transfers or detaches a buffer afterwards cannot reach what was copied.
//!
//! A string's UTF-8 form has each lone surrogate as U+FFFD on every engine,
//! which is what the core's checks rely on: Node (V8) and Bun write it so,
//! emnapi (the Node-API of the WASI build) does not (it joins a lone
//! surrogate with the next code unit into some other character). Which kind
//! of engine this is gets probed once; where it does not replace, strings
//! are read as UTF-16 and converted here, the same way.

use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use napi::sys;
use native_sse_core::engine::append_utf16;
use native_sse_core::Text;

/// What [`utf8_replaces_lone_surrogates`] found: not probed yet, or the
/// engine's UTF-8 conversion does or does not write U+FFFD.
static UTF8_CONVERSION: AtomicU8 = AtomicU8::new(NOT_PROBED);
const NOT_PROBED: u8 = 0;
const REPLACES: u8 = 1;
const DOES_NOT_REPLACE: u8 = 2;

/// Whether `napi_get_value_string_utf8` writes each lone surrogate as
/// U+FFFD, as Node does. One relaxed load after the first call.
fn utf8_replaces_lone_surrogates(env: sys::napi_env) -> bool {
  match UTF8_CONVERSION.load(Ordering::Relaxed) {
    REPLACES => true,
    DOES_NOT_REPLACE => false,
    _ => probe_utf8_conversion(env),
  }
}

/// Converts `'a\uD800b'` and compares with what Node writes. When the
/// probe cannot run, this call takes the UTF-16 path (right everywhere) and
/// the next one probes again.
#[cold]
fn probe_utf8_conversion(env: sys::napi_env) -> bool {
  const UNITS: [u16; 3] = [0x61, 0xD800, 0x62];
  const NODE_WRITES: &[u8] = b"a\xEF\xBF\xBDb";
  let mut value = ptr::null_mut();
  // SAFETY: `env` is the environment of the call in progress; `UNITS`
  // holds the length passed. The string lives in the current handle scope.
  let status =
    unsafe { sys::napi_create_string_utf16(env, UNITS.as_ptr(), UNITS.len() as isize, &mut value) };
  if status != sys::Status::napi_ok {
    return false;
  }
  let mut buf = [0u8; 16];
  let mut written = 0;
  // SAFETY: `buf` has the size passed; Node-API writes at most that many
  // bytes, a NUL included.
  let status = unsafe {
    sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), buf.len(), &mut written)
  };
  if status != sys::Status::napi_ok {
    return false;
  }
  let replaces = buf.get(..written) == Some(NODE_WRITES);
  let found = if replaces { REPLACES } else { DOES_NOT_REPLACE };
  UTF8_CONVERSION.store(found, Ordering::Relaxed);
  replaces
}

/// A JavaScript string, valid in the handle scope of the current call.
pub struct JsText {
  pub env: sys::napi_env,
  pub value: sys::napi_value,
}

impl JsText {
  /// The string's UTF-16 code units; `None` when Node-API refuses.
  fn utf16(&self) -> Option<Vec<u16>> {
    let mut len = 0;
    // SAFETY: as in `append_utf8`: a length query on a string of this call.
    let status = unsafe {
      sys::napi_get_value_string_utf16(self.env, self.value, ptr::null_mut(), 0, &mut len)
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    let mut units = vec![0u16; len + 1];
    let mut written = 0;
    // SAFETY: `units` holds `len + 1` code units, the size passed.
    let status = unsafe {
      sys::napi_get_value_string_utf16(
        self.env,
        self.value,
        units.as_mut_ptr(),
        len + 1,
        &mut written,
      )
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    units.truncate(written);
    Some(units)
  }
}

impl Text for JsText {
  fn append_utf8(&self, out: &mut Vec<u8>) {
    if !utf8_replaces_lone_surrogates(self.env) {
      if let Some(units) = self.utf16() {
        append_utf16(out, &units);
      }
      return;
    }
    // One call when the text fits the buffer's spare room (the usual case:
    // the buffer keeps its capacity from write to write), else a length
    // query and a second call.
    out.reserve(64);
    let start = out.len();
    let room = out.capacity() - start;
    let mut written = 0;
    // `env` and `value` are the handles of the call in progress and
    // `value` was checked to be a string.
    // SAFETY: `out` has `room` writable bytes after `start`, the size
    // passed; Node-API writes at most `room - 1` bytes and a NUL.
    let status = unsafe {
      sys::napi_get_value_string_utf8(
        self.env,
        self.value,
        out.as_mut_ptr().add(start).cast(),
        room,
        &mut written,
      )
    };
    if status != sys::Status::napi_ok {
      return;
    }
    // Node-API stops before a character that does not fit whole, so the
    // text is complete only when a 4-byte character would still have fit.
    if written + 5 <= room {
      // SAFETY: Node-API initialised `written` bytes after `start`, within
      // the capacity.
      unsafe { out.set_len(start + written) };
      return;
    }
    let mut len = 0;
    // SAFETY: a length query (null buffer) on the same string.
    let status = unsafe {
      sys::napi_get_value_string_utf8(self.env, self.value, ptr::null_mut(), 0, &mut len)
    };
    if status != sys::Status::napi_ok {
      return;
    }
    out.reserve(len + 1);
    // SAFETY: `out` now has room for `len + 1` bytes after `start`, the
    // size passed; Node-API writes at most that many.
    let status = unsafe {
      sys::napi_get_value_string_utf8(
        self.env,
        self.value,
        out.as_mut_ptr().add(start).cast(),
        len + 1,
        &mut written,
      )
    };
    if status == sys::Status::napi_ok && written <= len {
      // SAFETY: Node-API initialised `written` bytes after `start`, within
      // the reserved capacity.
      unsafe { out.set_len(start + written) };
    }
  }

  fn is_well_formed(&self) -> bool {
    self
      .utf16()
      .is_some_and(|units| native_sse_core::validate::check_utf16(&units).is_ok())
  }
}

/// A `Uint8Array` (or `Buffer`): its bytes are copied when the core asks,
/// as they are at that moment (a detached or shrunk buffer has fewer).
pub struct JsBytes {
  pub env: sys::napi_env,
  pub value: sys::napi_value,
}

impl JsBytes {
  /// `Some` when `value` is a `Uint8Array`.
  pub fn new(env: sys::napi_env, value: sys::napi_value) -> Option<JsBytes> {
    let mut is_typed_array = false;
    // SAFETY: a type query on a value of the call in progress.
    let status = unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) };
    if status != sys::Status::napi_ok || !is_typed_array {
      return None;
    }
    let (kind, _, _) = typed_array_info(env, value)?;
    (kind == sys::TypedarrayType::uint8_array).then_some(JsBytes { env, value })
  }
}

/// The kind, data pointer and length of a typed array, as it is now.
fn typed_array_info(env: sys::napi_env, value: sys::napi_value) -> Option<(i32, *const u8, usize)> {
  let mut kind = 0;
  let mut length = 0;
  let mut data = ptr::null_mut();
  let mut array_buffer = ptr::null_mut();
  let mut offset = 0;
  // SAFETY: `value` is a typed array of the call in progress; every out
  // pointer points at a local of the right type.
  let status = unsafe {
    sys::napi_get_typedarray_info(
      env,
      value,
      &mut kind,
      &mut length,
      &mut data,
      &mut array_buffer,
      &mut offset,
    )
  };
  (status == sys::Status::napi_ok).then_some((kind, data.cast::<u8>().cast_const(), length))
}

impl Text for JsBytes {
  fn append_utf8(&self, out: &mut Vec<u8>) {
    let Some((_, data, length)) = typed_array_info(self.env, self.value) else {
      return;
    };
    if length == 0 || data.is_null() {
      return;
    }
    // SAFETY: Node-API reported `length` bytes at `data` for this array at
    // this moment; they are copied before this call returns, and no
    // JavaScript runs in between, so nothing can detach or resize them.
    let bytes = unsafe { std::slice::from_raw_parts(data, length) };
    out.extend_from_slice(bytes);
  }

  fn is_well_formed(&self) -> bool {
    true
  }
}
