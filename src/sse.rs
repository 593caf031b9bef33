//! The `SSE` class: one Server-Sent Events stream over one HTTP response.
//!
//! This is the thin napi layer. It reads values out of JavaScript, hands them
//! to the napi-free modules (`frame`, `validate`, `options`) and leaves the
//! response to `connection` (writing, closing) and `open` (headers, options).

use std::cell::Cell;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;

use crate::connection::Connection;
use crate::errors::{self, type_error};
use crate::event;
use crate::frame::{self, Event, EventId};
use crate::js::{self, call_method};
use crate::open;
use crate::runtime::Runtime;

/// One Server-Sent Events connection, a drop-in replacement for the `SSE`
/// class of S42Core.
///
/// The constructor answers the request with status 200 and the
/// `text/event-stream` headers, flushes them, and sends the `welcome` event
/// whose data is `{"uuid":"<uuid>"}` with id 0. Each `send()` then writes one
/// event with the next id (1, 2, 3, ...).
///
/// The stream does not depend on this object staying reachable: the
/// response's `'close'` listener and the heartbeat hold the connection, and
/// let go of it (and of the response) when the stream ends.
/// How `send()` is named in its error messages.
const SEND: &str = "send(event)";

#[napi(js_name = "SSE")]
pub struct SSE {
  conn: Rc<Connection>,
  uuid: String,
  next_id: Cell<u64>,
  last_event_id: Option<String>,
}

#[napi]
impl SSE {
  /// Opens the event stream on `res`.
  ///
  /// Writes status 200 with `Content-Type: text/event-stream`,
  /// `Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no` and
  /// (HTTP/1.x only) `Connection: keep-alive`, then `options.headers` over
  /// them, flushes the headers, sends `retry: <ms>` when `options.retry` is
  /// set, and the welcome event (unless `options.welcome` is `false`): the
  /// lines `id: 0`, `event: welcome`, `data: {"uuid":"<uuid>"}` and a blank
  /// line. A heartbeat comment follows every `options.keepAlive` ms.
  ///
  /// Throws a `TypeError` and writes nothing when `req` or `res` is not a
  /// request/response object (`ERR_SSE_INVALID_ARGUMENT`) or an option is
  /// invalid (`ERR_SSE_INVALID_OPTION`).
  #[napi(
    constructor,
    ts_args_type = "req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, options?: SSEOptions"
  )]
  pub fn new(env: &Env, req: Unknown, res: Unknown, options: Option<Unknown>) -> Result<Self> {
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
    let http2 = open::http_major_version(&req)? >= 2;
    let headers = open::response_headers(env, &given.headers, http2)?;
    let last_event_id = open::last_event_id(&req)?;

    call_method(&res, "writeHead", FnArgs::from((200, headers)))?;
    let flush: Unknown = res.get_named_property("flushHeaders")?;
    if flush.get_type()? == ValueType::Function {
      call_method(&res, "flushHeaders", ())?;
    }

    let options = given.options;
    let conn = Connection::attach(env, &res, Runtime::get(env)?, options.max_buffered_bytes)?;
    let sse = SSE {
      conn,
      uuid: uuid::Uuid::new_v4().to_string(),
      next_id: Cell::new(1),
      last_event_id,
    };
    if let Some(ms) = options.retry_ms {
      sse.conn.push(env, |out| {
        frame::push_retry(out, ms);
        Ok(())
      })?;
    }
    if options.welcome && !sse.conn.is_closed() {
      let welcome = frame::welcome_data(&sse.uuid);
      sse.conn.push(env, |out| {
        // A client that came back with a Last-Event-ID keeps it: the
        // welcome then carries no id, so reading it does not move the
        // client's resume position (see "Resuming" in the README).
        let event = Event {
          id: sse.last_event_id.is_none().then_some(EventId::Number(0)),
          name: Some(b"welcome"),
          data: welcome.as_bytes(),
        };
        frame::push_event(out, &event);
        Ok(())
      })?;
    }
    if options.keep_alive_ms > 0 {
      sse.conn.start_heartbeat(env, options.keep_alive_ms)?;
    }
    Ok(sse)
  }

  pub(crate) fn connection(&self) -> &Rc<Connection> {
    &self.conn
  }

  pub(crate) fn uuid(&self) -> &str {
    &self.uuid
  }

  pub(crate) fn last_event_id_text(&self) -> Option<&str> {
    self.last_event_id.as_deref()
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
  /// With `data` (a string, `Buffer` or `Uint8Array`) instead of
  /// `eventPayload`, that text is sent as it is, one `data:` line per line
  /// (CR, LF and CRLF each end a line). With `id` (a string), that id is sent
  /// instead of the next number, and the counter does not move.
  ///
  /// The events sent in one tick of the event loop reach `res.write`
  /// together, in one call at the end of the tick (a microtask), with the
  /// same bytes in the same order. `close()` writes what is pending first.
  ///
  /// Returns `true` when the event was accepted for the stream, `false` when
  /// the stream is closed (by `close()`, because the client left, because it
  /// fell more than `maxBufferedBytes` behind, which this event may have
  /// done, or because other code ended the response); nothing is written
  /// then and nothing is thrown.
  ///
  /// Throws a `TypeError`, writes nothing and keeps the id for the next event
  /// when `event` is not an object (`ERR_SSE_INVALID_EVENT`), when `eventName`
  /// is not a string or holds CR, LF, NUL or an unpaired surrogate
  /// (`ERR_SSE_INVALID_EVENT_NAME`), when `id` is given and is not such a
  /// string (`ERR_SSE_INVALID_EVENT_ID`), when `data` is neither a string nor
  /// bytes or comes with an `eventPayload` (`ERR_SSE_INVALID_DATA`), or when
  /// `JSON.stringify(eventPayload)` throws or returns `undefined`
  /// (`ERR_SSE_INVALID_PAYLOAD`).
  #[napi(ts_args_type = "event: TypeSSEventToSend | SSERawEvent")]
  pub fn send(&self, env: &Env, event: Unknown) -> Result<bool> {
    if !self.conn.is_writable(env)? {
      return Ok(false);
    }
    let raw = env.raw();
    let input = event::read(env, SEND, &self.conn.runtime, event)?;
    // `toJSON` is user code and may have closed the stream meanwhile.
    if self.conn.is_closed() {
      return Ok(false);
    }
    let (name, explicit_id, body) = (input.name, input.id, input.body);
    let id = match &explicit_id {
      Some(text) => EventId::Text(text),
      None => EventId::Number(self.next_id.get()),
    };
    let accepted = self.conn.push(env, |out| {
      frame::push_event_in_place(
        out,
        id,
        |out| event::append_name(env, SEND, name, out),
        |out| body.append(raw, out),
      )
    })?;
    if explicit_id.is_none() {
      self.next_id.set(self.next_id.get() + 1);
    }
    Ok(accepted)
  }

  /// Sends a comment: `: <text>` (one comment line per line of `text`) and a
  /// blank line. Clients ignore comments; proxies and load balancers see
  /// traffic. `comment()` with no text sends the bare heartbeat `:`.
  ///
  /// Returns `false` when the stream is closed, like `send()`, before
  /// looking at `text`. Throws a `TypeError` (`ERR_SSE_INVALID_COMMENT`)
  /// when `text` is given and is not a string.
  #[napi(ts_args_type = "text?: string")]
  pub fn comment(&self, env: &Env, text: Option<Unknown>) -> Result<bool> {
    // Like `send()`: a closed stream answers `false` before the argument is
    // looked at.
    if !self.conn.is_writable(env)? {
      return Ok(false);
    }
    let raw = env.raw();
    let text = match text {
      Some(text) if text.get_type()? == ValueType::String => Some(text.raw()),
      Some(text) if text.get_type()? == ValueType::Undefined => None,
      None => None,
      Some(other) => {
        return Err(errors::wrong_type(
          env,
          errors::INVALID_COMMENT,
          "comment(text): text",
          "a string",
          other.get_type()?,
        ))
      }
    };
    let mut line = Vec::new();
    if let Some(text) = text {
      js::append_utf8(raw, text, &mut line)?;
    }
    self.conn.push(env, |out| {
      frame::push_comment(out, &line);
      Ok(())
    })
  }

  /// Ends the response (`res.end()`) after writing what is pending. Calling
  /// it again, or after the client has left, does nothing.
  #[napi]
  pub fn close(&self, env: &Env) -> Result<()> {
    self.conn.close(env)
  }

  /// Whether the stream has ended: `close()` was called, the client left,
  /// the client fell behind by more than `maxBufferedBytes`, or other code
  /// ended the response. `send()` returns `false` from then on.
  #[napi(getter)]
  pub fn closed(&self, env: &Env) -> Result<bool> {
    Ok(!self.conn.is_writable(env)?)
  }

  /// Bytes accepted for this client and not yet taken by its socket: events
  /// of the current tick plus what Node's response still holds. 0 once
  /// closed.
  #[napi(getter, js_name = "bufferedBytes")]
  pub fn buffered_bytes(&self, env: &Env) -> Result<f64> {
    Ok(self.conn.buffered_bytes(env)? as f64)
  }

  /// The id the client last saw, from the `Last-Event-ID` request header or
  /// else a `lastEventId` query parameter, when it has the accepted form: 1
  /// to 128 visible ASCII characters (`!` to `~`). `null` otherwise: a value
  /// of any other form is treated as absent.
  #[napi(getter, js_name = "lastEventId")]
  pub fn last_event_id(&self) -> Option<String> {
    self.last_event_id.clone()
  }

  /// Calls `callback(reason)` once when the stream ends, in the tick after
  /// it ended: `'client'` (the client left), `'server'` (`close()`, or other
  /// code ended the response) or `'overflow'` (the client fell more than
  /// `maxBufferedBytes` behind and was disconnected). On a stream that has
  /// already ended, `callback` is still called, in the next tick.
  ///
  /// Throws a `TypeError` (`ERR_SSE_INVALID_ARGUMENT`) when `callback` is not
  /// a function.
  #[napi(
    js_name = "onClose",
    ts_args_type = "callback: (reason: SSECloseReason) => void"
  )]
  pub fn on_close(&self, env: &Env, callback: Unknown) -> Result<()> {
    let callback_type = callback.get_type()?;
    if callback_type != ValueType::Function {
      return Err(errors::wrong_type(
        env,
        errors::INVALID_ARGUMENT,
        "onClose(callback): callback",
        "a function",
        callback_type,
      ));
    }
    // A client that just left is noticed here rather than a tick later.
    self.conn.is_writable(env)?;
    self.conn.on_close(env, callback.raw())
  }
}

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
  unsafe { value.cast::<Object>() }
}
