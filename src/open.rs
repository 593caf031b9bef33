//! Opening a stream: reading the constructor's options out of JavaScript,
//! building the response headers, and reading the client's resume position
//! from the request. The rules themselves live in `options` and `validate`.

use napi::bindgen_prelude::*;
use napi::{Env, JsString, ValueType};

use native_sse_core::given::{self, Given, HeaderValue, Kind};
use native_sse_core::headers;
use native_sse_core::options::{Form, Options};
use native_sse_core::validate;

use crate::errors;

/// The options as given: the checked values, and the user's headers (names
/// and values, copied out of JavaScript when they are checked, so no user
/// code can change them between the check and the response).
pub struct GivenOptions {
  pub options: Options,
  pub headers: Vec<(String, HeaderValue)>,
}

/// Reads and checks every option before anything is written, so a bad one
/// throws with the response untouched. Absent options take the defaults of
/// `form`. Each value is read once; the core decides what it means.
pub fn read_options(env: &Env, value: Option<Unknown>, form: Form) -> Result<GivenOptions> {
  let mut given = GivenOptions {
    options: Options::defaults(form),
    headers: Vec::new(),
  };
  let call = given::call_of(form);
  let Some(object) = options_object(env, value, call)? else {
    return Ok(given);
  };
  for name in given::STREAM_OPTIONS {
    let value = read_given(&object.get_named_property(name)?)?;
    given::set_stream_option(&mut given.options, name, value)
      .map_err(|rule| errors::option_error(env, call, name, &rule))?;
  }
  let headers: Unknown = object.get_named_property("headers")?;
  let mut kind = errors::kind(headers.get_type()?);
  if kind == Kind::Object && headers.is_array()? {
    kind = Kind::Array;
  }
  let present = given::headers_option(kind)
    .map_err(|rule| errors::option_error(env, call, "headers", &rule))?;
  if present {
    // SAFETY: the value's type was checked just before.
    let headers = unsafe { headers.cast::<Object>() }?;
    given.headers = read_headers(env, &headers, call)?;
  }
  Ok(given)
}

/// An option's value as the core takes it: its kind, and the number or
/// boolean when it is one.
pub fn read_given(value: &Unknown) -> Result<Given> {
  Ok(match value.get_type()? {
    ValueType::Undefined => Given::Absent,
    // SAFETY: the value's type was checked just before.
    ValueType::Number => Given::Number(unsafe { value.cast::<f64>() }?),
    // SAFETY: the value's type was checked just before.
    ValueType::Boolean => Given::Bool(unsafe { value.cast::<bool>() }?),
    other => Given::Other(errors::kind(other)),
  })
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
  let kind = errors::kind(value.get_type()?);
  if !given::options_argument(kind)
    .map_err(|rule| errors::option_error(env, call, "options", &rule))?
  {
    return Ok(None);
  }
  // SAFETY: `options_argument` accepts objects only.
  Ok(Some(unsafe { value.cast::<Object>() }?))
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
    let Some(copied) = header_value(value)? else {
      let option = given::header_option_name(&name);
      return Err(errors::option_error(
        env,
        call,
        &option,
        given::HEADER_VALUE_RULE,
      ));
    };
    pairs.push((name, copied));
  }
  Ok(pairs)
}

/// A header value copied out: `None` when it is not a string, a number or
/// an array of strings (each item is read once, checked and copied at once).
fn header_value(value: Unknown) -> Result<Option<HeaderValue>> {
  Ok(match value.get_type()? {
    ValueType::String => Some(HeaderValue::Text(text_of(value)?)),
    // SAFETY: the value's type was checked just before.
    ValueType::Number => Some(HeaderValue::Number(unsafe { value.cast::<f64>() }?)),
    ValueType::Object if value.is_array()? => {
      // SAFETY: the value's type was checked just before.
      let array = unsafe { value.cast::<Object>() }?;
      let len = array.get_array_length()?;
      let mut items = Vec::with_capacity(len as usize);
      for i in 0..len {
        let item: Unknown = array.get_element(i)?;
        if item.get_type()? != ValueType::String {
          return Ok(None);
        }
        items.push(text_of(item)?);
      }
      Some(HeaderValue::List(items))
    }
    _ => None,
  })
}

/// A string value's text (lone surrogates become U+FFFD; Node and
/// `Headers` refuse such values anyway).
fn text_of(value: Unknown) -> Result<String> {
  // SAFETY: callers checked that the value is a string.
  let text = unsafe { value.cast::<JsString>() }?;
  text.into_utf8()?.into_owned()
}

/// The response headers the core decided (`given::response_headers`), as
/// an object for `writeHead` or `new Response()`.
pub fn response_headers<'env>(
  env: &'env Env,
  user: &[(String, HeaderValue)],
  request: headers::Request,
) -> Result<Object<'env>> {
  let mut headers = Object::new(env)?;
  for (name, value) in given::response_headers(request, user) {
    match value {
      HeaderValue::Text(text) => headers.set_named_property(name, text)?,
      HeaderValue::Number(number) => headers.set_named_property(name, number)?,
      HeaderValue::List(items) => headers.set_named_property(name, items)?,
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

/// The client's resume position (`given::resume_position`): from the
/// `Last-Event-ID` header or the target's `lastEventId` query parameter.
/// Values are measured before they are copied, so a huge header costs
/// nothing; request targets are bounded by Node's header size limit.
pub fn last_event_id(req: &Object) -> Result<Option<String>> {
  let headers: Unknown = req.get_named_property("headers")?;
  let header = if headers.get_type()? == ValueType::Object {
    // SAFETY: the value's type was checked just before.
    let headers = unsafe { headers.cast::<Object>() }?;
    short_string(&headers, "last-event-id", validate::MAX_LAST_EVENT_ID_LEN)?
  } else {
    None
  };
  let url = short_string(req, "url", 64 * 1024)?;
  Ok(given::resume_position(header.as_deref(), url.as_deref()))
}

/// The resume position of a Fetch `Request`: its `Last-Event-ID` header
/// (`request.headers.get('last-event-id')`) or the `lastEventId` query
/// parameter of `request.url` (whole URLs: the target, with the scheme and
/// host before it). `request` is what [`crate::sse`] found: the `headers`
/// object, its `get` method and the `url`, each read once.
pub fn fetch_last_event_id(request: &FetchRequest) -> Result<Option<String>> {
  let value = request.get.apply(request.headers, "last-event-id")?;
  let header = bounded_string(value, validate::MAX_LAST_EVENT_ID_LEN)?;
  let url = bounded_string(request.url, 72 * 1024)?;
  Ok(given::resume_position(header.as_deref(), url.as_deref()))
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
