//! The link between an `SSE` instance and its HTTP response: holds the
//! response while the stream is open, collects the events of the current
//! tick into one buffer, notices when the stream ends, and lets go of the
//! response on every path (client left, `close()`, garbage collection).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::Env;

use crate::js::{self, call_method};
use crate::runtime::Runtime;

/// Past this many buffered bytes, a tick's events are written at once
/// instead of at the end of the tick, which bounds the buffer.
const FLUSH_AT_BYTES: usize = 128 * 1024;

/// Shared by the `SSE` instance, the `'close'` listener on the response and
/// the end-of-tick flush queue.
pub struct Connection {
  res: RefCell<Option<ObjectRef<false>>>,
  closed: Cell<bool>,
  /// Framed events not yet handed to `res.write`.
  buffer: RefCell<Vec<u8>>,
  /// Whether this connection is in the runtime's flush queue.
  queued: Cell<bool>,
  pub runtime: Rc<Runtime>,
}

impl Connection {
  /// Keeps a reference to `res` and listens for its end.
  ///
  /// An `'error'` listener is added so that a late write error (socket reset)
  /// is never an unhandled `'error'` event, which would kill the process.
  pub fn attach(env: &Env, res: &Object, runtime: Rc<Runtime>) -> Result<Rc<Connection>> {
    let conn = Rc::new(Connection {
      res: RefCell::new(Some(res.create_ref()?)),
      closed: Cell::new(false),
      buffer: RefCell::new(Vec::new()),
      queued: Cell::new(false),
      runtime,
    });

    let on_error = env.create_function_from_closure::<Unknown, (), _>("onSSEError", |_| Ok(()))?;
    call_method(res, "on", FnArgs::from(("error", on_error)))?;

    let listener = Rc::clone(&conn);
    let on_close = env.create_function_from_closure::<(), (), _>("onSSEClose", move |ctx| {
      listener.release(ctx.env);
      Ok(())
    })?;
    call_method(res, "on", FnArgs::from(("close", on_close)))?;

    // The client may have left before the stream was set up.
    if is_gone(res)? {
      conn.release(env);
    }
    Ok(conn)
  }

  pub fn is_closed(&self) -> bool {
    self.closed.get()
  }

  /// Appends to the pending bytes with `fill`, then makes sure they are
  /// written: at the end of the tick, or now when enough has piled up.
  /// `fill` must not run JavaScript code, and must leave the buffer as it
  /// found it when it fails (then nothing is queued).
  pub fn push(
    self: &Rc<Self>,
    env: &Env,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
  ) -> Result<()> {
    let len = {
      let mut buffer = self.buffer.borrow_mut();
      fill(&mut buffer)?;
      buffer.len()
    };
    if len >= FLUSH_AT_BYTES {
      return self.flush(env);
    }
    if !self.queued.get() {
      self.queued.set(true);
      self.runtime.enqueue(env, self)?;
    }
    Ok(())
  }

  /// Hands the pending bytes to `res.write` in one call.
  pub fn flush(&self, env: &Env) -> Result<()> {
    self.queued.set(false);
    let bytes = std::mem::take(&mut *self.buffer.borrow_mut());
    if bytes.is_empty() {
      return Ok(());
    }
    let Some(res) = self.response(env)? else {
      return Ok(());
    };
    let raw = env.raw();
    let write = js::get(raw, res.raw(), c"write")?;
    let chunk = js::chunk_from_vec(raw, bytes)?;
    let accepted = js::call(raw, res.raw(), write, &[chunk])?;
    // `false` is either backpressure (the chunk is queued) or a stream that
    // is already destroyed or ended (the chunk is dropped).
    if js::as_bool(raw, accepted)? == Some(false) && is_gone(&res)? {
      self.release(env);
    }
    Ok(())
  }

  /// Writes what is pending, then ends the response once. Later calls do
  /// nothing.
  pub fn close(&self, env: &Env) -> Result<()> {
    self.flush(env)?;
    let Some(res) = self.response(env)? else {
      return Ok(());
    };
    self.release(env);
    call_method(&res, "end", ())?;
    Ok(())
  }

  /// Marks the stream closed, drops pending bytes and the reference to the
  /// response.
  pub fn release(&self, env: &Env) {
    self.closed.set(true);
    if let Ok(mut buffer) = self.buffer.try_borrow_mut() {
      *buffer = Vec::new();
    }
    if let Some(res) = self.res.borrow_mut().take() {
      // Failing to delete a reference only happens while the environment is
      // being torn down, when there is nothing left to free.
      let _ = res.unref(env);
    }
  }

  /// Whether events can still be written. Once per tick (when nothing is
  /// queued yet) this asks the response itself, because a client that just
  /// left is only reported by `'close'` one tick later.
  pub fn is_writable(&self, env: &Env) -> Result<bool> {
    if self.closed.get() {
      return Ok(false);
    }
    if self.queued.get() {
      return Ok(true);
    }
    match self.response(env)? {
      Some(res) if is_gone(&res)? => {
        self.release(env);
        Ok(false)
      }
      Some(_) => Ok(true),
      None => Ok(false),
    }
  }

  fn response<'env>(&self, env: &'env Env) -> Result<Option<Object<'env>>> {
    if self.closed.get() {
      return Ok(None);
    }
    match self.res.borrow().as_ref() {
      Some(res) => res.get_value(env).map(Some),
      None => Ok(None),
    }
  }
}

/// Whether the response can no longer carry events: destroyed (client left),
/// ended (by us or by other code), or its socket destroyed (the response
/// itself only learns that a tick later, with `'close'`).
fn is_gone(res: &Object) -> Result<bool> {
  let raw = res.value().env;
  let res = res.raw();
  if flag(raw, res, c"destroyed")? || flag(raw, res, c"writableEnded")? {
    return Ok(true);
  }
  let socket = js::get(raw, res, c"socket")?;
  if js::type_of(raw, socket)? == napi::sys::ValueType::napi_object {
    return flag(raw, socket, c"destroyed");
  }
  Ok(false)
}

/// `target[name] === true`.
fn flag(env: napi::sys::napi_env, target: js::Value, name: &std::ffi::CStr) -> Result<bool> {
  Ok(js::as_bool(env, js::get(env, target, name)?)? == Some(true))
}
