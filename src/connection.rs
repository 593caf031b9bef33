//! The link between an `SSE` instance and its HTTP response: holds the
//! response while the stream is open, notices when it ends, and lets go of it
//! on every path (client left, `close()`, garbage collection).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};

use crate::sse::call_method;

/// Shared by the `SSE` instance and the `'close'` listener on the response.
pub struct Connection {
  res: RefCell<Option<ObjectRef<false>>>,
  closed: Cell<bool>,
}

impl Connection {
  /// Keeps a reference to `res` and listens for its end.
  ///
  /// An `'error'` listener is added so that a late write error (socket reset)
  /// is never an unhandled `'error'` event, which would kill the process.
  pub fn attach(env: &Env, res: &Object) -> Result<Rc<Connection>> {
    let conn = Rc::new(Connection {
      res: RefCell::new(Some(res.create_ref()?)),
      closed: Cell::new(false),
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

  /// Writes `chunk` with one `res.write` call. Returns whether it was handed
  /// to the response; `false` means the stream is gone and nothing was sent.
  pub fn write(&self, env: &Env, chunk: String) -> Result<bool> {
    let Some(res) = self.response(env)? else {
      return Ok(false);
    };
    let accepted = call_method(&res, "write", chunk)?;
    if accepted.get_type()? == ValueType::Boolean && !unsafe { accepted.cast::<bool>() }? {
      // `false` is either backpressure (the chunk is queued) or a stream that
      // is already destroyed or ended (the chunk is dropped).
      if is_gone(&res)? {
        self.release(env);
        return Ok(false);
      }
    }
    Ok(true)
  }

  /// Ends the response once. Later calls do nothing.
  pub fn close(&self, env: &Env) -> Result<()> {
    let Some(res) = self.response(env)? else {
      return Ok(());
    };
    self.release(env);
    call_method(&res, "end", ())?;
    Ok(())
  }

  /// Marks the stream closed and drops the reference to the response.
  pub fn release(&self, env: &Env) {
    self.closed.set(true);
    if let Some(res) = self.res.borrow_mut().take() {
      // Failing to delete a reference only happens while the environment is
      // being torn down, when there is nothing left to free.
      let _ = res.unref(env);
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
  if flag(res, "destroyed")? || flag(res, "writableEnded")? {
    return Ok(true);
  }
  let socket: Unknown = res.get_named_property("socket")?;
  if socket.get_type()? == ValueType::Object {
    return flag(&unsafe { socket.cast::<Object>() }?, "destroyed");
  }
  Ok(false)
}

/// `target[name] === true`.
fn flag(target: &Object, name: &str) -> Result<bool> {
  let value: Unknown = target.get_named_property(name)?;
  Ok(value.get_type()? == ValueType::Boolean && unsafe { value.cast::<bool>() }?)
}
