//! The `SSE` class: one Server-Sent Events stream over one HTTP response.
//!
//! This is the thin napi layer. It reads values out of JavaScript, hands them
//! to the napi-free modules (`frame`, `validate`) and calls the response's own
//! methods (`writeHead`, `flushHeaders`, `write`, `end`, `on`).

use std::cell::Cell;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;

use crate::connection::Connection;
use crate::errors::{self, type_error};
use crate::frame::{self, Event};
use crate::js::{self, call_method};
use crate::runtime::Runtime;
use crate::validate;

/// One Server-Sent Events connection, a drop-in replacement for the `SSE`
/// class of S42Core.
///
/// The constructor answers the request with status 200 and the
/// `text/event-stream` headers, flushes them, and sends the `welcome` event
/// whose data is `{"uuid":"<uuid>"}` with id 0. Each `send()` then writes one
/// event with the next id (1, 2, 3, ...).
#[napi(js_name = "SSE", custom_finalize)]
pub struct SSE {
  conn: Rc<Connection>,
  uuid: String,
  next_id: Cell<u64>,
}

#[napi]
impl SSE {
  /// Opens the event stream on `res`.
  ///
  /// Writes status 200 with `Content-Type: text/event-stream`,
  /// `Cache-Control: no-cache, no-transform` and (HTTP/1.x only)
  /// `Connection: keep-alive`, flushes the headers, and sends the welcome
  /// event: the lines `id: 0`, `event: welcome`, `data: {"uuid":"<uuid>"}`
  /// and a blank line.
  ///
  /// Throws a `TypeError` with code `ERR_SSE_INVALID_ARGUMENT` when `req` or
  /// `res` is not a request/response object.
  #[napi(
    constructor,
    ts_args_type = "req: IncomingMessage, res: ServerResponse"
  )]
  pub fn new(env: &Env, req: Unknown, res: Unknown) -> Result<Self> {
    let req = expect_object(env, req, "req")?;
    let res = expect_object(env, res, "res")?;
    for method in ["writeHead", "write", "end", "on"] {
      let member: Unknown = res.get_named_property(method)?;
      if member.get_type()? != ValueType::Function {
        return Err(type_error(
          env,
          errors::INVALID_ARGUMENT,
          &format!("res must be an http.ServerResponse: res.{method} is not a function"),
        ));
      }
    }

    let mut headers = Object::new(env)?;
    headers.set_named_property("Content-Type", "text/event-stream")?;
    headers.set_named_property("Cache-Control", "no-cache, no-transform")?;
    if http_major_version(&req)? < 2 {
      // Connection-specific headers are forbidden on HTTP/2 (RFC 9113 8.2.2).
      headers.set_named_property("Connection", "keep-alive")?;
    }
    call_method(&res, "writeHead", FnArgs::from((200, headers)))?;
    let flush: Unknown = res.get_named_property("flushHeaders")?;
    if flush.get_type()? == ValueType::Function {
      call_method(&res, "flushHeaders", ())?;
    }

    let conn = Connection::attach(env, &res, Runtime::get(env)?)?;
    let sse = SSE {
      conn,
      uuid: uuid::Uuid::new_v4().to_string(),
      next_id: Cell::new(0),
    };
    if !sse.conn.is_closed() {
      let welcome = frame::welcome_data(&sse.uuid);
      sse.push_event(env, Some(b"welcome"), welcome.as_bytes())?;
    }
    Ok(sse)
  }

  /// The random (version 4) UUID of this connection, as sent in the welcome
  /// event. Lowercase, hyphenated.
  #[napi(js_name = "getUUID")]
  pub fn get_uuid(&self) -> String {
    self.uuid.clone()
  }

  /// Sends one event: the lines `id: <n>`, `event: <eventName>`,
  /// `data: <JSON.stringify(eventPayload)>` and a blank line.
  ///
  /// The events sent in one tick of the event loop reach `res.write`
  /// together, in one call at the end of the tick (a microtask), with the
  /// same bytes in the same order. `close()` writes what is pending first.
  ///
  /// Returns `true` when the event was accepted for the stream, `false` when
  /// the stream is closed (by `close()`, because the client left, or because
  /// other code ended the response); nothing is written then and nothing is
  /// thrown.
  ///
  /// Throws a `TypeError`, writes nothing and keeps the id for the next event
  /// when `data` is not an object (`ERR_SSE_INVALID_EVENT`), when `eventName`
  /// is not a string or holds CR, LF, NUL or an unpaired surrogate
  /// (`ERR_SSE_INVALID_EVENT_NAME`), or when `JSON.stringify(eventPayload)`
  /// throws or returns `undefined` (`ERR_SSE_INVALID_PAYLOAD`).
  #[napi(ts_args_type = "data: TypeSSEventToSend")]
  pub fn send(&self, env: &Env, data: Unknown) -> Result<bool> {
    if !self.conn.is_writable(env)? {
      return Ok(false);
    }
    let raw = env.raw();
    let runtime = &self.conn.runtime;
    let data_type = data.get_type()?;
    if data_type != ValueType::Object {
      return Err(type_error(
        env,
        errors::INVALID_EVENT,
        &format!(
          "send(data): data must be an object {{ eventName, eventPayload }} (got {})",
          errors::type_name(data_type)
        ),
      ));
    }
    let name = js::get(raw, data.raw(), c"eventName")?;
    let name_type = js::type_of(raw, name)?;
    if name_type != napi::sys::ValueType::napi_string {
      return Err(type_error(
        env,
        errors::INVALID_EVENT_NAME,
        &format!(
          "send(data): data.eventName must be a string (got {})",
          errors::type_name(ValueType::from(name_type))
        ),
      ));
    }
    let payload = js::get(raw, data.raw(), c"eventPayload")?;
    let json = stringify_payload(env, runtime, payload)?;
    // `toJSON` is user code and may have closed the stream meanwhile.
    if self.conn.is_closed() {
      return Ok(false);
    }
    let id = self.next_id.get();
    self.conn.push(env, |out| {
      frame::push_event_in_place(
        out,
        id,
        |out| append_event_name(env, name, out),
        |out| js::append_utf8(raw, json, out).map(drop),
      )
    })?;
    self.next_id.set(id + 1);
    Ok(true)
  }

  /// Ends the response (`res.end()`). Calling it again, or after the client
  /// has left, does nothing.
  #[napi]
  pub fn close(&self, env: &Env) -> Result<()> {
    self.conn.close(env)
  }
}

impl SSE {
  /// Frames one event from Rust text with the next id and queues it.
  fn push_event(&self, env: &Env, name: Option<&[u8]>, data: &[u8]) -> Result<()> {
    let id = self.next_id.get();
    self.conn.push(env, |out| {
      let event = Event {
        id: Some(id),
        name,
        data,
      };
      frame::push_event(out, &event);
      Ok(())
    })?;
    self.next_id.set(id + 1);
    Ok(())
  }
}

impl ObjectFinalize for SSE {
  fn finalize(self, env: Env) -> Result<()> {
    self.conn.release(&env);
    Ok(())
  }
}

fn expect_object<'env>(env: &Env, value: Unknown<'env>, what: &str) -> Result<Object<'env>> {
  let value_type = value.get_type()?;
  if value_type != ValueType::Object {
    return Err(type_error(
      env,
      errors::INVALID_ARGUMENT,
      &format!(
        "{what} must be an object (got {})",
        errors::type_name(value_type)
      ),
    ));
  }
  unsafe { value.cast::<Object>() }
}

/// `req.httpVersionMajor`, or 1 when it is missing (framework wrappers).
fn http_major_version(req: &Object) -> Result<u32> {
  let major: Unknown = req.get_named_property("httpVersionMajor")?;
  if major.get_type()? == ValueType::Number {
    let major = unsafe { major.cast::<f64>() }?;
    return Ok(if major >= 2.0 { 2 } else { 1 });
  }
  Ok(1)
}

/// Appends the UTF-8 text of the event name `name` to `out` and checks it
/// against the single-line field rules; a `TypeError` when it breaks one.
fn append_event_name(env: &Env, name: js::Value, out: &mut Vec<u8>) -> Result<()> {
  let raw = env.raw();
  let start = out.len();
  js::append_utf8(raw, name, out)?;
  let text = &out[start..];
  let mut checked = validate::check_single_line(text);
  if checked.is_ok() && validate::may_hide_lone_surrogate(text) {
    checked = validate::check_utf16(&js::utf16(raw, name)?);
  }
  checked.map_err(|rule| {
    type_error(
      env,
      errors::INVALID_EVENT_NAME,
      &format!("send(data): data.eventName {rule}"),
    )
  })
}

/// `JSON.stringify(payload)` as a JS string, or a `TypeError` when it throws
/// or has no JSON text to give (undefined, functions, symbols).
fn stringify_payload(env: &Env, runtime: &Runtime, payload: js::Value) -> Result<js::Value> {
  let raw = env.raw();
  let stringify = js::deref(raw, runtime.stringify)?;
  let result = match js::call(raw, js::undefined(raw)?, stringify, &[payload]) {
    Ok(result) => result,
    Err(cause) => {
      let reason = take_pending_message(env).unwrap_or_else(|| cause.reason.clone());
      return Err(type_error(
        env,
        errors::INVALID_PAYLOAD,
        &format!("send(data): data.eventPayload cannot be serialised by JSON.stringify: {reason}"),
      ));
    }
  };
  if js::type_of(raw, result)? != napi::sys::ValueType::napi_string {
    return Err(type_error(
      env,
      errors::INVALID_PAYLOAD,
      &format!(
        "send(data): data.eventPayload must be serialisable by JSON.stringify, which returned undefined (got {})",
        errors::type_name(ValueType::from(js::type_of(raw, payload)?))
      ),
    ));
  }
  Ok(result)
}

/// Clears the pending JavaScript exception (left by a throwing callee) and
/// returns its message.
fn take_pending_message(env: &Env) -> Option<String> {
  let mut pending = false;
  unsafe { napi::sys::napi_is_exception_pending(env.raw(), &mut pending) };
  if !pending {
    return None;
  }
  let mut raw = std::ptr::null_mut();
  unsafe { napi::sys::napi_get_and_clear_last_exception(env.raw(), &mut raw) };
  let exception = unsafe { Unknown::from_raw_unchecked(env.raw(), raw) };
  let message = if exception.get_type().ok()? == ValueType::Object {
    let object = unsafe { exception.cast::<Object>() }.ok()?;
    object.get_named_property::<String>("message").ok()
  } else {
    exception
      .coerce_to_string()
      .ok()?
      .into_utf8()
      .ok()?
      .into_owned()
      .ok()
  };
  Some(message.unwrap_or_else(|| "unknown error".to_owned()))
}
