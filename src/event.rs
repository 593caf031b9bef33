//! Reading an event object from JavaScript: `{ eventName, eventPayload }`
//! or `{ eventName, data }`, with an optional `id`, checked by the rules
//! `send()` and `Channel.broadcast()` share. The name's text is checked as
//! it is copied into the output (see [`append_name`]), so it is read once.

use napi::bindgen_prelude::*;
use napi::{sys, Env, ValueType};

use crate::errors::{self, type_error};
use crate::js;
use crate::runtime::Runtime;
use crate::validate;

/// An event read from JavaScript, before its name is copied.
pub struct EventInput<'a> {
  /// `event.eventName`, a JS string not checked yet: see [`append_name`].
  pub name: js::Value,
  /// `event.id`, checked.
  pub id: Option<Vec<u8>>,
  pub body: Body<'a>,
}

/// Reads `event` for `call` (the method as error messages name it, such as
/// `send(event)`): a `TypeError` unless it is an object with a string
/// `eventName`, a valid optional `id` and either a JSON-serialisable
/// `eventPayload` or a string/bytes `data`. `JSON.stringify` runs here.
pub fn read<'a>(
  env: &Env,
  call: &str,
  runtime: &Runtime,
  event: Unknown,
) -> Result<EventInput<'a>> {
  let raw = env.raw();
  let event_type = event.get_type()?;
  if event_type != ValueType::Object {
    return Err(errors::wrong_type(
      env,
      errors::INVALID_EVENT,
      &format!("{call}: event"),
      "an object { eventName, eventPayload }",
      event_type,
    ));
  }
  let name = js::get(raw, event.raw(), c"eventName")?;
  let name_type = js::type_of(raw, name)?;
  if name_type != sys::ValueType::napi_string {
    return Err(errors::wrong_type(
      env,
      errors::INVALID_EVENT_NAME,
      &format!("{call}: event.eventName"),
      "a string",
      ValueType::from(name_type),
    ));
  }
  let id = read_event_id(env, call, js::get(raw, event.raw(), c"id")?)?;
  let payload = js::get(raw, event.raw(), c"eventPayload")?;
  let data = js::get(raw, event.raw(), c"data")?;
  let body = if js::type_of(raw, data)? == sys::ValueType::napi_undefined {
    Body::Text(stringify_payload(env, call, runtime, payload)?)
  } else {
    read_data(env, call, data, payload)?
  };
  Ok(EventInput { name, id, body })
}

/// The data of an event: a JS string (the JSON text, or text given as is)
/// or bytes.
pub enum Body<'a> {
  Text(js::Value),
  Bytes(&'a [u8]),
}

impl Body<'_> {
  pub fn append(&self, raw: sys::napi_env, out: &mut Vec<u8>) -> Result<()> {
    match self {
      Body::Text(text) => js::append_utf8(raw, *text, out).map(drop),
      Body::Bytes(bytes) => {
        out.extend_from_slice(bytes);
        Ok(())
      }
    }
  }
}

/// `event.data`, which is not `undefined`: a string or bytes, and never
/// together with `event.eventPayload`.
fn read_data<'a>(env: &Env, call: &str, data: js::Value, payload: js::Value) -> Result<Body<'a>> {
  let raw = env.raw();
  if js::type_of(raw, payload)? != sys::ValueType::napi_undefined {
    return Err(type_error(
      env,
      errors::INVALID_DATA,
      &format!("{call}: give either event.eventPayload (sent as JSON) or event.data (sent as it is), not both"),
    ));
  }
  let data_type = js::type_of(raw, data)?;
  if data_type == sys::ValueType::napi_string {
    return Ok(Body::Text(data));
  }
  if let Some(bytes) = js::as_bytes(raw, data)? {
    return Ok(Body::Bytes(bytes));
  }
  Err(errors::wrong_type(
    env,
    errors::INVALID_DATA,
    &format!("{call}: event.data"),
    "a string, Buffer or Uint8Array",
    ValueType::from(data_type),
  ))
}

/// `event.id`: `None` when absent, else its checked UTF-8 text.
fn read_event_id(env: &Env, call: &str, id: js::Value) -> Result<Option<Vec<u8>>> {
  let raw = env.raw();
  let id_type = js::type_of(raw, id)?;
  if id_type == sys::ValueType::napi_undefined {
    return Ok(None);
  }
  if id_type != sys::ValueType::napi_string {
    return Err(errors::wrong_type(
      env,
      errors::INVALID_EVENT_ID,
      &format!("{call}: event.id"),
      "a string",
      ValueType::from(id_type),
    ));
  }
  let mut text = Vec::new();
  js::append_utf8(raw, id, &mut text)?;
  if let Some(rule) = broken_field_rule(raw, id, &text)? {
    return Err(type_error(
      env,
      errors::INVALID_EVENT_ID,
      &format!("{call}: event.id {rule}"),
    ));
  }
  Ok(Some(text))
}

/// The single-line field rule that the JS string `value`, whose UTF-8 form
/// is `text`, breaks, if any.
fn broken_field_rule(
  raw: sys::napi_env,
  value: js::Value,
  text: &[u8],
) -> Result<Option<validate::FieldError>> {
  if let Err(rule) = validate::check_single_line(text) {
    return Ok(Some(rule));
  }
  if validate::may_hide_lone_surrogate(text) {
    return Ok(validate::check_utf16(&js::utf16(raw, value)?).err());
  }
  Ok(None)
}

/// Appends the UTF-8 text of the event name `name` to `out` and checks it
/// against the single-line field rules; a `TypeError` when it breaks one.
pub fn append_name(env: &Env, call: &str, name: js::Value, out: &mut Vec<u8>) -> Result<()> {
  let raw = env.raw();
  let start = out.len();
  js::append_utf8(raw, name, out)?;
  match broken_field_rule(raw, name, &out[start..])? {
    Some(rule) => Err(type_error(
      env,
      errors::INVALID_EVENT_NAME,
      &format!("{call}: event.eventName {rule}"),
    )),
    None => Ok(()),
  }
}

/// `JSON.stringify(payload)` as a JS string, or a `TypeError` when it throws
/// or has no JSON text to give (undefined, functions, symbols).
fn stringify_payload(
  env: &Env,
  call: &str,
  runtime: &Runtime,
  payload: js::Value,
) -> Result<js::Value> {
  let raw = env.raw();
  let stringify = js::deref(raw, runtime.stringify)?;
  let result = match js::call(raw, js::undefined(raw)?, stringify, &[payload]) {
    Ok(result) => result,
    Err(cause) => {
      let reason = take_pending_message(env).unwrap_or_else(|| cause.reason.clone());
      return Err(type_error(
        env,
        errors::INVALID_PAYLOAD,
        &format!("{call}: event.eventPayload cannot be serialised by JSON.stringify: {reason}"),
      ));
    }
  };
  if js::type_of(raw, result)? != napi::sys::ValueType::napi_string {
    return Err(type_error(
      env,
      errors::INVALID_PAYLOAD,
      &format!(
        "{call}: event.eventPayload must be serialisable by JSON.stringify, which returned undefined (got {})",
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
