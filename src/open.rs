//! Opening a stream: reading the constructor's options out of JavaScript,
//! building the response headers, and reading the client's resume position
//! from the request. The rules themselves live in `options` and `validate`.

use napi::bindgen_prelude::*;
use napi::{Env, JsString, ValueType};

use native_sse_core::headers;
use native_sse_core::options::{self, Form, Options};
use native_sse_core::validate;

use crate::errors;

/// The options as given: the checked values, and the user's headers (names
/// and values, copied out of JavaScript when they are checked, so no user
/// code can change them between the check and the response).
pub struct GivenOptions {
  pub options: Options,
  pub headers: Vec<(String, HeaderValue)>,
}

/// A header value as `writeHead` and `Headers` take it.
pub enum HeaderValue {
  Text(String),
  Number(f64),
  /// The header repeated, once per item.
  List(Vec<String>),
}

/// The call as errors name it.
pub fn call_of(form: Form) -> &'static str {
  match form {
    Form::Node => "new SSE(req, res, options)",
    Form::Fetch => "new SSE(request, options)",
  }
}

/// Reads and checks every option before anything is written, so a bad one
/// throws with the response untouched. Absent options take the defaults of
/// `form`.
pub fn read_options(env: &Env, value: Option<Unknown>, form: Form) -> Result<GivenOptions> {
  let mut given = GivenOptions {
    options: Options::defaults(form),
    headers: Vec::new(),
  };
  let call = call_of(form);
  let Some(object) = options_object(env, value, call)? else {
    return Ok(given);
  };
  let option_error =
    |env: &Env, name: &str, rule: &str| errors::option_error(env, call, name, rule);
  let checked = |env: &Env, name: &str, value: std::result::Result<u64, String>| {
    value.map_err(|rule| option_error(env, name, &rule))
  };
  let options = &mut given.options;

  if let Some(ms) = number_option(env, &object, "keepAlive", call)? {
    options.keep_alive_ms = checked(
      env,
      "keepAlive",
      options::integer_in(ms, 0, options::MAX_TIMER_MS),
    )?;
  }
  if let Some(ms) = number_option(env, &object, "retry", call)? {
    let ms = options::integer_in(ms, 0, options::MAX_SAFE_INTEGER);
    options.retry_ms = Some(checked(env, "retry", ms)?);
  }
  if let Some(bytes) = number_option(env, &object, "maxBufferedBytes", call)? {
    let bytes = options::max_buffered_bytes(bytes);
    options.max_buffered_bytes = checked(env, "maxBufferedBytes", bytes)?;
  }
  let welcome: Unknown = object.get_named_property("welcome")?;
  match welcome.get_type()? {
    ValueType::Undefined => {}
    // SAFETY: the value's type was checked just before.
    ValueType::Boolean => options.welcome = unsafe { welcome.cast::<bool>() }?,
    other => {
      return Err(option_error(
        env,
        "welcome",
        &format!("must be a boolean (got {})", errors::type_name(other)),
      ))
    }
  }
  let headers: Unknown = object.get_named_property("headers")?;
  match headers.get_type()? {
    ValueType::Undefined => {}
    ValueType::Object if !headers.is_array()? => {
      // SAFETY: the value's type was checked just before.
      let headers = unsafe { headers.cast::<Object>() }?;
      given.headers = read_headers(env, &headers, call)?;
    }
    other => {
      let got = if other == ValueType::Object {
        "array"
      } else {
        errors::type_name(other)
      };
      return Err(option_error(
        env,
        "headers",
        &format!("must be an object of header names and values (got {got})"),
      ));
    }
  }
  Ok(given)
}

/// `object[name]` when it is a number, `None` when it is `undefined`, a
/// `TypeError` otherwise.
fn number_option(env: &Env, object: &Object, name: &str, call: &str) -> Result<Option<f64>> {
  let value: Unknown = object.get_named_property(name)?;
  match value.get_type()? {
    ValueType::Undefined => Ok(None),
    // SAFETY: the value's type was checked just before.
    ValueType::Number => Ok(Some(unsafe { value.cast::<f64>() }?)),
    other => Err(errors::option_error(
      env,
      call,
      name,
      &format!("must be a number (got {})", errors::type_name(other)),
    )),
  }
}

/// The options argument of `call` as an object: `None` when it is absent,
/// `undefined` or `null`, an `ERR_SSE_INVALID_OPTION` when it is anything
/// else but an object.
pub fn options_object<'env>(
  env: &Env,
  value: Option<Unknown<'env>>,
  call: &str,
) -> Result<Option<Object<'env>>> {
  let Some(value) = value else {
    return Ok(None);
  };
  match value.get_type()? {
    ValueType::Undefined | ValueType::Null => Ok(None),
    // SAFETY: the value's type was checked just before.
    ValueType::Object => Ok(Some(unsafe { value.cast::<Object>() }?)),
    other => Err(errors::option_error(
      env,
      call,
      "options",
      &format!("must be an object (got {})", errors::type_name(other)),
    )),
  }
}

/// The user's headers: own, enumerable, string keys, each with its value,
/// which must be a string, a number or an array of strings, as `writeHead`
/// takes them (Node checks the characters itself when it writes them).
fn read_headers(env: &Env, headers: &Object, call: &str) -> Result<Vec<(String, HeaderValue)>> {
  let names = own_enumerable_keys(headers)?;
  let count = names.get_array_length()?;
  let mut pairs = Vec::with_capacity(count as usize);
  for i in 0..count {
    let name: String = names.get_element(i)?;
    let value: Unknown = headers.get_named_property(&name)?;
    let copied = match value.get_type()? {
      ValueType::String => Some(HeaderValue::Text(text_of(value)?)),
      // SAFETY: the value's type was checked just before.
      ValueType::Number => Some(HeaderValue::Number(unsafe { value.cast::<f64>() }?)),
      ValueType::Object if value.is_array()? => {
        // SAFETY: the value's type was checked just before.
        let array = unsafe { value.cast::<Object>() }?;
        let len = array.get_array_length()?;
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len {
          // Each item is read once, checked and copied at once.
          let item: Unknown = array.get_element(i)?;
          if item.get_type()? != ValueType::String {
            items.clear();
            break;
          }
          items.push(text_of(item)?);
        }
        (items.len() == len as usize).then_some(HeaderValue::List(items))
      }
      _ => None,
    };
    let Some(copied) = copied else {
      return Err(errors::option_error(
        env,
        call,
        &format!("headers[{name:?}]"),
        "must be a string, a number or an array of strings",
      ));
    };
    pairs.push((name, copied));
  }
  Ok(pairs)
}

/// A string value's text (lone surrogates become U+FFFD; Node and
/// `Headers` refuse such values anyway).
fn text_of(value: Unknown) -> Result<String> {
  // SAFETY: callers checked that the value is a string.
  let text = unsafe { value.cast::<JsString>() }?;
  text.into_utf8()?.into_owned()
}

/// The default headers, then the user's over them (a user header replaces a
/// default of the same name in any letter case). On HTTP/2 the
/// connection-specific headers are left out, the user's too.
pub fn response_headers<'env>(
  env: &'env Env,
  user: &[(String, HeaderValue)],
  request: headers::Request,
) -> Result<Object<'env>> {
  let names: Vec<&str> = user.iter().map(|(name, _)| name.as_str()).collect();
  let mut headers = Object::new(env)?;
  for (name, value) in headers::defaults(request, &names) {
    headers.set_named_property(name, value)?;
  }
  for (name, value) in user {
    if !headers::keeps_user_header(request, name) {
      continue;
    }
    match value {
      HeaderValue::Text(text) => headers.set_named_property(name, text.as_str())?,
      HeaderValue::Number(number) => headers.set_named_property(name, *number)?,
      HeaderValue::List(items) => {
        let mut array = env.create_array(items.len() as u32)?;
        for (i, item) in items.iter().enumerate() {
          array.set(i as u32, item.as_str())?;
        }
        headers.set_named_property(name, array)?
      }
    }
  }
  Ok(headers)
}

/// `Object.keys(object)`: its own enumerable string keys, as an array.
fn own_enumerable_keys<'env>(object: &Object<'env>) -> Result<Object<'env>> {
  let env = object.value().env;
  let mut result = std::ptr::null_mut();
  // SAFETY: `object` is an object of the call in progress; `result` is a
  // local out pointer.
  napi::check_status!(unsafe {
    napi::sys::napi_get_all_property_names(
      env,
      object.raw(),
      napi::sys::KeyCollectionMode::own_only,
      napi::sys::KeyFilter::enumerable | napi::sys::KeyFilter::skip_symbols,
      napi::sys::KeyConversion::numbers_to_strings,
      &mut result,
    )
  })?;
  Ok(Object::from_raw(env, result))
}

/// Whether the request asked to close the connection after this response
/// (`Connection: close`).
pub fn asks_to_close(req: &Object) -> Result<bool> {
  let headers: Unknown = req.get_named_property("headers")?;
  if headers.get_type()? != ValueType::Object {
    return Ok(false);
  }
  // SAFETY: the type was checked just above.
  let headers = unsafe { headers.cast::<Object>() }?;
  let Some(value) = short_string(&headers, "connection", 1024)? else {
    return Ok(false);
  };
  Ok(headers::asks_to_close(&value))
}

/// `req.httpVersionMajor`, or 1 when it is missing (framework wrappers).
pub fn http_major_version(req: &Object) -> Result<u32> {
  let major: Unknown = req.get_named_property("httpVersionMajor")?;
  if major.get_type()? == ValueType::Number {
    // SAFETY: the value's type was checked just before.
    let major = unsafe { major.cast::<f64>() }?;
    return Ok(if major >= 2.0 { 2 } else { 1 });
  }
  Ok(1)
}

/// The client's resume position: the `Last-Event-ID` header when it has the
/// accepted form, else the `lastEventId` query parameter when that has it.
/// Values are measured before they are copied, so a huge header costs
/// nothing.
pub fn last_event_id(req: &Object) -> Result<Option<String>> {
  let headers: Unknown = req.get_named_property("headers")?;
  if headers.get_type()? == ValueType::Object {
    // SAFETY: the value's type was checked just before.
    let headers = unsafe { headers.cast::<Object>() }?;
    if let Some(value) = short_string(&headers, "last-event-id", validate::MAX_LAST_EVENT_ID_LEN)? {
      if let Some(id) = validate::last_event_id(value.as_bytes()) {
        return Ok(Some(id.to_owned()));
      }
    }
  }
  // Request targets are bounded by Node's header size limit (16 KiB).
  let Some(url) = short_string(req, "url", 64 * 1024)? else {
    return Ok(None);
  };
  Ok(validate::query_last_event_id(url.as_bytes()))
}

/// The resume position of a Fetch `Request`: its `Last-Event-ID` header
/// (`request.headers.get('last-event-id')`) when it has the accepted form,
/// else the `lastEventId` query parameter of `request.url`.
/// `request` is what [`crate::sse`] found: the `headers` object, its `get`
/// method and the `url`, each read once.
pub fn fetch_last_event_id(request: &FetchRequest) -> Result<Option<String>> {
  let value = request.get.apply(request.headers, "last-event-id")?;
  if let Some(value) = bounded_string(value, validate::MAX_LAST_EVENT_ID_LEN)? {
    if let Some(id) = validate::last_event_id(value.as_bytes()) {
      return Ok(Some(id.to_owned()));
    }
  }
  // Whole URLs: the request target, with the scheme and host before it.
  let Some(url) = bounded_string(request.url, 72 * 1024)? else {
    return Ok(None);
  };
  Ok(validate::query_last_event_id(url.as_bytes()))
}

/// The parts of a Fetch `Request` the constructor reads, each read once.
pub struct FetchRequest<'env> {
  pub object: Object<'env>,
  pub url: Unknown<'env>,
  pub headers: Object<'env>,
  pub get: Function<'env, &'static str, Unknown<'env>>,
}

/// `object[name]` when it is a string of at most `max` UTF-16 units.
fn short_string(object: &Object, name: &str, max: usize) -> Result<Option<String>> {
  bounded_string(object.get_named_property(name)?, max)
}

/// `value` when it is a string of at most `max` UTF-16 units.
fn bounded_string(value: Unknown, max: usize) -> Result<Option<String>> {
  if value.get_type()? != ValueType::String {
    return Ok(None);
  }
  // SAFETY: the value's type was checked just before.
  let text = unsafe { value.cast::<JsString>() }?;
  if text.utf16_len()? > max {
    return Ok(None);
  }
  Ok(Some(text.into_utf8()?.into_owned()?))
}
