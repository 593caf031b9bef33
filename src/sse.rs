//! The `SSE` class: its constructor runs here (headers, UUID, the welcome
//! event, framed by the core); its other methods are installed on the
//! prototype by the JavaScript front (`js/stream.js`), which owns the I/O
//! on the response and calls the binding with primitive arguments.

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;
use native_sse_core::options::Form;
use native_sse_core::StreamOptions;

use crate::errors::{self, type_error};
use crate::open;
use crate::state::{call_glue, State};

/// One Server-Sent Events connection, a drop-in replacement for the `SSE`
/// class of S42Core.
///
/// `new SSE(req, res)` answers the request with status 200 and the
/// `text/event-stream` headers, flushes them, and sends the `welcome` event
/// whose data is `{"uuid":"<uuid>"}` with id 0. Each `send()` then writes one
/// event with the next id (1, 2, 3, ...). `new SSE(request)` with a Fetch
/// `Request` makes a `Response` (`getResponse()`) whose events are numbered
/// from 0, without a welcome, as in S42Core 3.x.
///
/// The stream does not depend on this object staying reachable: it lives
/// until the client leaves or it is closed.
#[napi(js_name = "SSE")]
pub struct SSE {}

#[napi]
impl SSE {
  /// Opens the event stream, in either of S42Core's two forms.
  ///
  /// `new SSE(req, res, options?)` (the Node form, S42Core 1.x) writes
  /// status 200 with `Content-Type: text/event-stream`,
  /// `Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no` and
  /// (HTTP/1.x, unless the request asked to close the connection)
  /// `Connection: keep-alive`, then `options.headers` over them, flushes the
  /// headers, sends `retry: <ms>` when `options.retry` is set, and the
  /// welcome event (unless `options.welcome` is `false`): the lines
  /// `id: 0`, `event: welcome`, `data: {"uuid":"<uuid>"}` and a blank line.
  /// Events follow with ids from 1.
  ///
  /// `new SSE(request, options?)` with a Fetch `Request` (the Fetch form,
  /// S42Core 2.x/3.x) makes the `Response` that `getResponse()` returns:
  /// status 200, the same headers but `Connection` (the runtime owns the
  /// connection), a body of `Uint8Array` chunks. No welcome event unless
  /// `options.welcome` is `true`; without one, events are numbered from 0.
  /// Events sent before the runtime reads the body wait in it.
  ///
  /// A heartbeat comment follows every `options.keepAlive` ms (15 000 in
  /// the Node form, 5 000 in the Fetch form, under Bun.serve's idle
  /// timeout).
  ///
  /// Throws a `TypeError` and writes nothing when it is called without `new`,
  /// when the arguments are neither `(req, res)` nor a Fetch `Request`
  /// (`ERR_SSE_INVALID_ARGUMENT`) or an option is invalid
  /// (`ERR_SSE_INVALID_OPTION`).
  #[napi(
    constructor,
    ts_args_type = "...args: [req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, options?: SSEOptions] | [request: Request, options?: SSEOptions]"
  )]
  pub fn new(
    env: &Env,
    this: This,
    req: Unknown,
    res: Unknown,
    options: Option<Unknown>,
  ) -> Result<Self> {
    crate::construct::check_new::<SSE>(env, &this.object, "SSE")?;
    if let Some(request) = fetch_request(req, res)? {
      return open_fetch(env, this, request, Some(res), options);
    }
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
    let given = open::read_options(env, options, Form::Node)?;
    let request = native_sse_core::headers::Request {
      http2: open::http_major_version(&req)? >= 2,
      closes: open::asks_to_close(&req)?,
    };
    let headers = open::response_headers(env, &given.headers, request)?;
    let last_event_id = open::last_event_id(&req)?;

    let write_head: Function<FnArgs<(u32, Object)>, Unknown> =
      res.get_named_property("writeHead")?;
    write_head.apply(res, FnArgs::from((200, headers)))?;
    let flush: Unknown = res.get_named_property("flushHeaders")?;
    if flush.get_type()? == ValueType::Function {
      let flush: Function<(), Unknown> = res.get_named_property("flushHeaders")?;
      flush.apply(res, ())?;
    }

    let state = State::get(env)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let (key, flags) = open_in_engine(&state, &uuid, &last_event_id, given.options, Form::Node)?;
    let opened = Opened {
      key,
      flags,
      uuid,
      last_event_id,
    };
    hand_over(env, &state, "attachStream", this, res.to_unknown(), opened)
  }
}

/// The Fetch form: the options come second. Everything that can fail or
/// run user code (the options, `headers.get`, the `signal` getter, the
/// `Headers` the front builds) runs before the engine opens the stream, so
/// a failure leaves nothing behind; what runs after is the front's own code.
fn open_fetch<'env>(
  env: &Env,
  this: This<'env>,
  request: open::FetchRequest<'env>,
  options: Option<Unknown<'env>>,
  extra: Option<Unknown<'env>>,
) -> Result<SSE> {
  if extra.is_some_and(|extra| !matches!(extra.get_type(), Ok(ValueType::Undefined))) {
    return Err(type_error(
      env,
      errors::INVALID_ARGUMENT,
      "new SSE(request, options) takes two arguments: a Fetch Request and the options",
    ));
  }
  let given = open::read_options(env, options, Form::Fetch)?;
  let response_headers = open::response_headers(
    env,
    &given.headers,
    native_sse_core::headers::Request::fetch(),
  )?;
  let last_event_id = open::fetch_last_event_id(&request)?;
  let state = State::get(env)?;
  // The cap, for the body's own high-water mark (Infinity for none).
  let cap = match given.options.max_buffered_bytes {
    u64::MAX => f64::INFINITY,
    bytes => bytes as f64,
  };
  let prepare: Function<PrepareFetchArgs, Unknown> = state.glue(env, "prepareFetch")?;
  // Heartbeats on: the first read of an empty body gets one at once.
  let greet = given.options.keep_alive_ms > 0;
  let sink = call_glue(
    env,
    &prepare,
    FnArgs::from((request.object, response_headers, cap, greet)),
  )?;
  let uuid = uuid::Uuid::new_v4().to_string();
  let (key, flags) = open_in_engine(&state, &uuid, &last_event_id, given.options, Form::Fetch)?;
  let opened = Opened {
    key,
    flags,
    uuid,
    last_event_id,
  };
  hand_over(env, &state, "attachFetch", this, sink, opened)
}

/// A stream the engine has just opened.
struct Opened {
  key: native_sse_core::Key,
  flags: u32,
  uuid: String,
  last_event_id: Option<String>,
}

/// Hands the opened stream to the front (`attachStream` for a response,
/// `attachFetch` for a Fetch body's sink); when that fails, the engine
/// forgets the stream and the constructor fails with the error.
fn hand_over(
  env: &Env,
  state: &State,
  glue: &str,
  this: This,
  target: Unknown,
  opened: Opened,
) -> Result<SSE> {
  let attach: Function<AttachArgs, Unknown> = state.glue(env, glue)?;
  let attached = call_glue(
    env,
    &attach,
    FnArgs::from((
      this.object,
      target,
      opened.key.to_bits() as f64,
      opened.flags,
      opened.uuid,
      opened.last_event_id,
    )),
  );
  if let Err(err) = attached {
    let key = opened.key;
    let _ = state.with(|engine| engine.gone(key, native_sse_core::CloseReason::Server));
    return Err(err);
  }
  Ok(SSE {})
}

fn open_in_engine(
  state: &State,
  uuid: &str,
  last_event_id: &Option<String>,
  options: native_sse_core::options::Options,
  form: Form,
) -> Result<(native_sse_core::Key, u32)> {
  let now = state.now_ms();
  let opened = state.with(|engine| {
    engine.open_stream(
      uuid.to_owned(),
      last_event_id.clone(),
      StreamOptions {
        max_buffered: options.max_buffered_bytes,
        keep_alive_ms: options.keep_alive_ms,
        retry_ms: options.retry_ms,
        welcome: options.welcome,
        first_id: options.first_event_id(form),
      },
      now,
    )
  })?;
  opened.ok_or_else(|| {
    Error::new(
      Status::GenericFailure,
      "native-sse: too many open streams (16777216)",
    )
  })
}

/// The request's parts when the arguments are the Fetch form: a first
/// argument with a `url` string and `headers` that have a `get` method
/// (a `Request`, or a framework's request that stands for one), and no
/// response object second (its options, if anything). Each property is
/// read once; what is read is what is used.
fn fetch_request<'env>(
  first: Unknown<'env>,
  second: Unknown<'env>,
) -> Result<Option<open::FetchRequest<'env>>> {
  if first.get_type()? != ValueType::Object {
    return Ok(None);
  }
  if second.get_type()? == ValueType::Object {
    // SAFETY: the value's type was checked just before.
    let second = unsafe { second.cast::<Object>() }?;
    let write_head: Unknown = second.get_named_property("writeHead")?;
    if write_head.get_type()? == ValueType::Function {
      return Ok(None);
    }
  }
  // SAFETY: the value's type was checked above.
  let object = unsafe { first.cast::<Object>() }?;
  let url: Unknown = object.get_named_property("url")?;
  if url.get_type()? != ValueType::String {
    return Ok(None);
  }
  let headers: Unknown = object.get_named_property("headers")?;
  if headers.get_type()? != ValueType::Object {
    return Ok(None);
  }
  // SAFETY: the value's type was checked just before.
  let headers = unsafe { headers.cast::<Object>() }?;
  let get: Unknown = headers.get_named_property("get")?;
  if get.get_type()? != ValueType::Function {
    return Ok(None);
  }
  Ok(Some(open::FetchRequest {
    object,
    url,
    headers,
    // SAFETY: the value's type was checked just before.
    get: unsafe { get.cast::<Function<&'static str, Unknown>>() }?,
  }))
}

/// `attachStream(sse, res, key, flags, uuid, lastEventId)` (the front takes
/// over the response) and `attachFetch(sse, sink, ...)` (the front takes
/// over the Fetch body's sink; its own code only).
type AttachArgs<'env> = FnArgs<(
  Object<'env>,
  Unknown<'env>,
  f64,
  u32,
  String,
  Option<String>,
)>;

/// `prepareFetch(request, headers, cap, greet)`: the front reads the signal
/// and builds the `Headers` and the body's sink; it may throw.
type PrepareFetchArgs<'env> = FnArgs<(Object<'env>, Object<'env>, f64, bool)>;

fn expect_object<'env>(env: &Env, value: Unknown<'env>, what: &str) -> Result<Object<'env>> {
  let value_type = value.get_type()?;
  if value_type != ValueType::Object {
    return Err(errors::wrong_type(
      env,
      errors::INVALID_ARGUMENT,
      what,
      "an object",
      value_type,
    ));
  }
  // SAFETY: the value's type was checked just above.
  unsafe { value.cast::<Object>() }
}
