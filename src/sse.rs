//! The `SSE` class: its constructor runs here (headers, UUID, the welcome
//! event, framed by the core); its other methods are installed on the
//! prototype by the JavaScript front (`js/stream.js`), which owns the I/O
//! on the response and calls the binding with primitive arguments.

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;
use native_sse_core::StreamOptions;

use crate::errors::{self, type_error};
use crate::open;
use crate::state::State;

/// One Server-Sent Events connection, a drop-in replacement for the `SSE`
/// class of S42Core.
///
/// The constructor answers the request with status 200 and the
/// `text/event-stream` headers, flushes them, and sends the `welcome` event
/// whose data is `{"uuid":"<uuid>"}` with id 0. Each `send()` then writes one
/// event with the next id (1, 2, 3, ...).
///
/// The stream does not depend on this object staying reachable: it lives
/// until the client leaves or it is closed.
#[napi(js_name = "SSE")]
pub struct SSE {}

#[napi]
impl SSE {
  /// Opens the event stream on `res`.
  ///
  /// Writes status 200 with `Content-Type: text/event-stream`,
  /// `Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no` and
  /// (HTTP/1.x, unless the request asked to close the connection)
  /// `Connection: keep-alive`, then `options.headers` over them, flushes the
  /// headers, sends `retry: <ms>` when `options.retry` is set, and the
  /// welcome event (unless `options.welcome` is `false`): the lines
  /// `id: 0`, `event: welcome`, `data: {"uuid":"<uuid>"}` and a blank line.
  /// A heartbeat comment follows every `options.keepAlive` ms.
  ///
  /// Throws a `TypeError` and writes nothing when it is called without `new`,
  /// when `req` or `res` is not a request/response object
  /// (`ERR_SSE_INVALID_ARGUMENT`) or an option is invalid
  /// (`ERR_SSE_INVALID_OPTION`).
  #[napi(
    constructor,
    ts_args_type = "req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, options?: SSEOptions"
  )]
  pub fn new(
    env: &Env,
    this: This,
    req: Unknown,
    res: Unknown,
    options: Option<Unknown>,
  ) -> Result<Self> {
    crate::construct::check_new::<SSE>(env, &this.object, "SSE")?;
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
    let given = open::read_options(env, options)?;
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
    let options = given.options;
    let now = state.now_ms();
    let opened = state.with(|engine| {
      engine.open_stream(
        uuid.clone(),
        last_event_id.clone(),
        StreamOptions {
          max_buffered: options.max_buffered_bytes,
          keep_alive_ms: options.keep_alive_ms,
          retry_ms: options.retry_ms,
          welcome: options.welcome,
        },
        now,
      )
    })?;
    let Some((key, flags)) = opened else {
      return Err(Error::new(
        Status::GenericFailure,
        "native-sse: too many open streams (16777216)",
      ));
    };
    let attach: Function<AttachStreamArgs, Unknown> = state.glue(env, "attachStream")?;
    let attached = attach.call(FnArgs::from((
      this.object,
      res,
      key.to_bits() as f64,
      flags,
      uuid,
      last_event_id,
    )));
    if let Err(err) = attached {
      let _ = state.with(|engine| engine.gone(key, native_sse_core::CloseReason::Server));
      return Err(err);
    }
    Ok(SSE {})
  }
}

/// `attachStream(sse, res, key, flags, uuid, lastEventId)`: the front takes
/// over the response.
type AttachStreamArgs<'env> =
  FnArgs<(Object<'env>, Object<'env>, f64, u32, String, Option<String>)>;

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
