//! The link between an `SSE` instance and its HTTP response: holds the
//! response while the stream is open, collects the events of the current
//! tick into one buffer, caps what a slow client may queue, beats the
//! keep-alive heartbeat, notices when the stream ends and why, and lets go
//! of the response, the timer and the listeners on every path.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::{sys, Env};

use crate::frame;
use crate::js::{self, call_method};
use crate::runtime::Runtime;
use crate::shared::SharedBytes;

/// Past this many bytes of its own (not shared with other connections), a
/// connection writes its events at once instead of at the end of the tick,
/// which bounds its buffer.
const FLUSH_AT_BYTES: usize = 128 * 1024;

/// A group the connection belongs to (a channel).
pub trait Membership {
  /// The connection ended.
  fn member_closed(&self, env: &Env, conn: &Connection);
  /// The connection is about to take bytes from elsewhere (or to write):
  /// a channel that counts on writing this tick's events to it together
  /// with its other members must hand them over now, so that they come
  /// first.
  fn member_touched(&self, env: &Env, conn: &Rc<Connection>);
  /// The connection joined another channel as well: events of different
  /// channels must keep the order they were sent in.
  fn member_shared(&self, env: &Env, conn: &Rc<Connection>);
}

/// Bytes waiting for `res.write`, before the connection's own buffer.
enum Piece {
  Own(Vec<u8>),
  /// A range of bytes framed once for many connections.
  Shared(Rc<SharedBytes>, usize, usize),
}

/// Why a stream ended, as `onClose()` callbacks receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
  /// The client went away (or the response was destroyed).
  Client,
  /// The server ended it: `close()`, or other code calling `res.end()`.
  Server,
  /// The client fell more than `maxBufferedBytes` behind.
  Overflow,
}

impl CloseReason {
  pub fn as_str(self) -> &'static str {
    match self {
      CloseReason::Client => "client",
      CloseReason::Server => "server",
      CloseReason::Overflow => "overflow",
    }
  }
}

/// Shared by the `SSE` instance, the `'close'` listener on the response, the
/// heartbeat timer and the end-of-tick flush queue.
pub struct Connection {
  /// Unique among the connections of the environment.
  pub id: u64,
  res: RefCell<Option<ObjectRef<false>>>,
  closed: Cell<bool>,
  reason: Cell<Option<CloseReason>>,
  /// Framed events not yet handed to `res.write`: `pieces`, then `buffer`.
  buffer: RefCell<Vec<u8>>,
  pieces: RefCell<Vec<Piece>>,
  pieces_len: Cell<usize>,
  /// Whether this connection is in the runtime's flush queue.
  queued: Cell<bool>,
  /// `res.writableLength` after the last write: bytes Node still holds.
  res_queued: Cell<u64>,
  max_buffered: u64,
  /// The heartbeat's `setInterval` handle, while it runs.
  timer: RefCell<Option<ObjectRef<false>>>,
  /// `onClose()` callbacks, called once when the stream ends.
  on_close: RefCell<Vec<sys::napi_ref>>,
  /// Channels this connection is a member of.
  memberships: RefCell<Vec<Weak<dyn Membership>>>,
  pub runtime: Rc<Runtime>,
}

impl Connection {
  /// Keeps a reference to `res` and listens for its end.
  ///
  /// An `'error'` listener is added so that a late write error (socket reset)
  /// is never an unhandled `'error'` event, which would kill the process.
  pub fn attach(
    env: &Env,
    res: &Object,
    runtime: Rc<Runtime>,
    max_buffered: u64,
  ) -> Result<Rc<Connection>> {
    let conn = Rc::new(Connection {
      id: runtime.next_connection_id(),
      res: RefCell::new(Some(res.create_ref()?)),
      closed: Cell::new(false),
      reason: Cell::new(None),
      buffer: RefCell::new(Vec::new()),
      pieces: RefCell::new(Vec::new()),
      pieces_len: Cell::new(0),
      queued: Cell::new(false),
      res_queued: Cell::new(0),
      max_buffered,
      timer: RefCell::new(None),
      on_close: RefCell::new(Vec::new()),
      memberships: RefCell::new(Vec::new()),
      runtime,
    });

    let raw = env.raw();
    let on = js::get(raw, res.raw(), c"on")?;
    let error = js::string(raw, "error")?;
    js::call(
      raw,
      res.raw(),
      on,
      &[error, js::deref(raw, conn.runtime.noop)?],
    )?;

    // The listener and the heartbeat hold the connection strongly; `finish`
    // breaks both cycles by letting go of the response and the timer.
    let listener = Rc::clone(&conn);
    let on_close = env.create_function_from_closure::<(), (), _>("onSSEClose", move |ctx| {
      listener.response_closed(ctx.env)
    })?;
    call_method(res, "on", FnArgs::from(("close", on_close)))?;

    // The client may have left before the stream was set up.
    if let Some(reason) = gone_reason(&conn.runtime, res)? {
      conn.finish(env, reason)?;
    }
    Ok(conn)
  }

  /// Starts the heartbeat: a comment every `ms` milliseconds on an unref'd
  /// timer (it never keeps the process alive), stopped when the stream ends.
  /// A heartbeat is queued like an event, so it never lands inside one.
  pub fn start_heartbeat(self: &Rc<Self>, env: &Env, ms: u64) -> Result<()> {
    if self.closed.get() {
      return Ok(());
    }
    let conn = Rc::clone(self);
    let beat = env.create_function_from_closure::<(), (), _>("heartbeatSSE", move |ctx| {
      conn.heartbeat(ctx.env)
    })?;
    let raw = env.raw();
    let set_interval = js::deref(raw, self.runtime.set_interval)?;
    let delay = js::uint32(raw, ms as u32)?;
    let timer = js::call(raw, js::undefined(raw)?, set_interval, &[beat.raw(), delay])?;
    let timer = Object::from_raw(raw, timer);
    let unref: Unknown = timer.get_named_property("unref")?;
    if unref.get_type()? == napi::ValueType::Function {
      call_method(&timer, "unref", ())?;
    }
    *self.timer.borrow_mut() = Some(timer.create_ref()?);
    Ok(())
  }

  fn heartbeat(self: &Rc<Self>, env: &Env) -> Result<()> {
    if self.is_writable(env)? {
      self.push(env, |out| {
        frame::push_comment(out, b"");
        Ok(())
      })?;
    }
    Ok(())
  }

  pub fn is_closed(&self) -> bool {
    self.closed.get()
  }

  /// Appends to the pending bytes with `fill`, then makes sure they are
  /// written: at the end of the tick, or now when enough has piled up.
  /// `fill` must not run JavaScript code, and must leave the buffer as it
  /// found it when it fails (then nothing is queued).
  ///
  /// Returns `false` when these bytes took the client past its cap: the
  /// connection is then closed with reason `'overflow'` and they are dropped.
  pub fn push(
    self: &Rc<Self>,
    env: &Env,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
  ) -> Result<bool> {
    self.touch(env);
    let own = {
      let mut buffer = self.buffer.borrow_mut();
      fill(&mut buffer)?;
      buffer.len()
    };
    self.queue(env, own)
  }

  /// Appends already framed `bytes` (a replay, a queued event), as
  /// [`Connection::push`] does.
  pub fn push_bytes(self: &Rc<Self>, env: &Env, bytes: &[u8]) -> Result<bool> {
    self.push(env, |out| {
      out.extend_from_slice(bytes);
      Ok(())
    })
  }

  /// Tells the channels this connection is in that other bytes are coming
  /// (see [`Membership::member_touched`]).
  fn touch(self: &Rc<Self>, env: &Env) {
    self.each_membership(|channel| channel.member_touched(env, self));
  }

  /// Calls `f` with each channel the connection is in, without holding the
  /// list while `f` runs (it may join or leave channels).
  fn each_membership(&self, f: impl Fn(Rc<dyn Membership>)) {
    let mut i = 0;
    loop {
      let Some(channel) = self.memberships.borrow().get(i).cloned() else {
        break;
      };
      if let Some(channel) = channel.upgrade() {
        f(channel);
      }
      i += 1;
    }
  }

  /// Appends `shared[start..end]` to the pending bytes without copying
  /// them, then makes sure they are written, as [`Connection::push`] does.
  pub fn push_shared(
    self: &Rc<Self>,
    env: &Env,
    shared: &Rc<SharedBytes>,
    start: usize,
    end: usize,
  ) -> Result<bool> {
    self.touch(env);
    self.push_shared_untouched(env, shared, start, end)
  }

  /// [`Connection::push_shared`] for the channel that is handing over its
  /// bytes of the tick: without telling the channels again.
  pub fn push_shared_untouched(
    self: &Rc<Self>,
    env: &Env,
    shared: &Rc<SharedBytes>,
    start: usize,
    end: usize,
  ) -> Result<bool> {
    let own = {
      let mut buffer = self.buffer.borrow_mut();
      let mut pieces = self.pieces.borrow_mut();
      if !buffer.is_empty() {
        self.pieces_len.set(self.pieces_len.get() + buffer.len());
        pieces.push(Piece::Own(std::mem::take(&mut *buffer)));
      }
      match pieces.last_mut() {
        Some(Piece::Shared(last, _, last_end))
          if Rc::ptr_eq(last, shared) && *last_end == start =>
        {
          *last_end = end;
        }
        _ => pieces.push(Piece::Shared(Rc::clone(shared), start, end)),
      }
      self.pieces_len.set(self.pieces_len.get() + (end - start));
      0
    };
    self.queue(env, own)
  }

  /// After bytes were added: closes the connection when they took it past
  /// its cap, writes now when its own buffer holds `own` bytes past the
  /// flush threshold, else queues it for the end of the tick.
  fn queue(self: &Rc<Self>, env: &Env, own: usize) -> Result<bool> {
    let pending = (own + self.pieces_len.get()) as u64;
    if pending.saturating_add(self.res_queued.get()) > self.max_buffered {
      self.overflow(env)?;
      return Ok(false);
    }
    if own >= FLUSH_AT_BYTES {
      self.flush(env)?;
      return Ok(!self.closed.get());
    }
    if !self.queued.get() {
      self.queued.set(true);
      self.runtime.enqueue(env, self)?;
    }
    Ok(true)
  }

  /// Hands the pending bytes to `res.write` in one call.
  pub fn flush(self: &Rc<Self>, env: &Env) -> Result<()> {
    if !self.runtime.is_flushing() {
      // Written before the end of the tick (`close()`, a large event):
      // a channel's shared events for this tick come first.
      self.touch(env);
    }
    self.queued.set(false);
    let own = std::mem::take(&mut *self.buffer.borrow_mut());
    // The list of pieces keeps its allocation from tick to tick.
    let mut pieces = self.pieces.borrow_mut();
    self.pieces_len.set(0);
    if own.is_empty() && pieces.is_empty() {
      return Ok(());
    }
    let Some(res) = self.response(env)? else {
      pieces.clear();
      return Ok(());
    };
    let raw = env.raw();
    let write = js::get(raw, res.raw(), c"write")?;
    let chunk = self.chunk(raw, own, &pieces);
    pieces.clear();
    drop(pieces);
    let accepted = js::call(raw, res.raw(), write, &[chunk?])?;
    self.wrote(env, &res, js::as_bool(raw, accepted)? != Some(false))
  }

  /// When the pending bytes are exactly one whole shared batch (the usual
  /// case for a channel member), takes them for a write shared with other
  /// connections (see `Runtime::flush_pending`) and returns the batch with
  /// the response to write it to. The connection is no longer queued then.
  pub fn take_whole_shared(&self, env: &Env) -> Result<Option<(Rc<SharedBytes>, js::Value)>> {
    if !self.buffer.borrow().is_empty() {
      return Ok(None);
    }
    let mut pieces = self.pieces.borrow_mut();
    let shared = match &pieces[..] {
      [Piece::Shared(shared, 0, end)] if *end == shared.len() => Rc::clone(shared),
      _ => return Ok(None),
    };
    let Some(res) = self.response(env)? else {
      return Ok(None);
    };
    pieces.clear();
    self.pieces_len.set(0);
    self.queued.set(false);
    Ok(Some((shared, res.raw())))
  }

  /// After a write of the pending bytes that `res.write` answered with
  /// `accepted`: remembers what Node holds, and closes the connection when
  /// that is past the cap or the response is gone.
  pub fn wrote(&self, env: &Env, res: &Object, accepted: bool) -> Result<()> {
    if accepted {
      self.res_queued.set(0);
      return Ok(());
    }
    // `false` is either backpressure (the chunk is queued) or a stream that
    // is already destroyed or ended (the chunk is dropped).
    if let Some(reason) = gone_reason(&self.runtime, res)? {
      return self.finish(env, reason);
    }
    let queued = writable_length(res)?;
    self.res_queued.set(queued);
    if queued > self.max_buffered {
      self.overflow(env)?;
    }
    Ok(())
  }

  /// The value to hand to `res.write` for `pieces` then `own`: the shared
  /// `Buffer` when they are exactly one whole shared batch, else one chunk
  /// with all the bytes.
  fn chunk(&self, raw: sys::napi_env, own: Vec<u8>, pieces: &[Piece]) -> Result<js::Value> {
    if pieces.is_empty() {
      return js::chunk_from_vec(raw, own);
    }
    if let ([Piece::Shared(shared, 0, end)], true) = (pieces, own.is_empty()) {
      if *end == shared.len() {
        return shared.buffer(raw, self.runtime.flush_generation());
      }
    }
    let mut bytes = Vec::with_capacity(pieces_len(pieces) + own.len());
    for piece in pieces {
      match piece {
        Piece::Own(part) => bytes.extend_from_slice(part),
        Piece::Shared(shared, start, end) => bytes.extend_from_slice(&shared.bytes()[*start..*end]),
      }
    }
    bytes.extend_from_slice(&own);
    js::chunk_from_vec(raw, bytes)
  }

  /// Bytes queued for this client and not yet taken by the socket: this
  /// tick's events plus what `res` holds.
  pub fn buffered_bytes(&self, env: &Env) -> Result<u64> {
    let Some(res) = self.response(env)? else {
      return Ok(0);
    };
    let pending = self.buffer.borrow().len() + self.pieces_len.get();
    Ok(pending as u64 + writable_length(&res)?)
  }

  /// Tells `channel` when this connection ends (and the other channels it
  /// is in that it is in more than one now).
  pub fn join(self: &Rc<Self>, env: &Env, channel: Weak<dyn Membership>) {
    self.memberships.borrow_mut().push(channel);
    if self.membership_count() > 1 {
      self.each_membership(|channel| channel.member_shared(env, self));
    }
  }

  /// How many channels the connection is in.
  pub fn membership_count(&self) -> usize {
    self.memberships.borrow().len()
  }

  /// Stops telling `channel` (found by address) when this connection ends.
  pub fn leave(&self, channel: *const ()) {
    self
      .memberships
      .borrow_mut()
      .retain(|member_of| member_of.as_ptr() as *const () != channel);
  }

  /// Writes what is pending, then ends the response once. Later calls do
  /// nothing.
  pub fn close(self: &Rc<Self>, env: &Env) -> Result<()> {
    self.flush(env)?;
    self.finish_with(env, CloseReason::Server, "end")
  }

  /// Closes a connection whose client fell behind by more than the cap:
  /// what is queued is dropped and the response destroyed, so its memory is
  /// freed now rather than when the client catches up.
  fn overflow(&self, env: &Env) -> Result<()> {
    self.finish_with(env, CloseReason::Overflow, "destroy")
  }

  /// Finishes an open stream for `reason`, then calls `res[method]()`.
  fn finish_with(&self, env: &Env, reason: CloseReason, method: &str) -> Result<()> {
    let Some(res) = self.response(env)? else {
      return Ok(());
    };
    self.finish(env, reason)?;
    call_method(&res, method, ())?;
    Ok(())
  }

  /// The response emitted `'close'`: ended by the server if it was ended,
  /// otherwise the client left.
  fn response_closed(&self, env: &Env) -> Result<()> {
    let Some(res) = self.response(env)? else {
      return Ok(());
    };
    let reason = if flag(res.value().env, res.raw(), c"writableEnded")? {
      CloseReason::Server
    } else {
      CloseReason::Client
    };
    self.finish(env, reason)
  }

  /// Registers an `onClose()` callback; called with the reason in the next
  /// tick when the stream is already closed.
  pub fn on_close(&self, env: &Env, callback: js::Value) -> Result<()> {
    let raw = env.raw();
    if let Some(reason) = self.reason.get() {
      return self.runtime.next_tick(raw, callback, reason.as_str());
    }
    self
      .on_close
      .borrow_mut()
      .push(js::reference(raw, callback)?);
    Ok(())
  }

  /// Marks the stream closed for `reason` (once), drops pending bytes,
  /// stops the heartbeat, lets go of the response and schedules the
  /// `onClose()` callbacks for the next tick (so they never run inside
  /// `send()` or `close()`).
  fn finish(&self, env: &Env, reason: CloseReason) -> Result<()> {
    if self.closed.get() {
      return Ok(());
    }
    self.reason.set(Some(reason));
    self.drop_state(env);
    let memberships = std::mem::take(&mut *self.memberships.borrow_mut());
    for channel in memberships {
      if let Some(channel) = channel.upgrade() {
        channel.member_closed(env, self);
      }
    }
    let raw = env.raw();
    let mut first_error = None;
    if let Some(timer) = self.timer.borrow_mut().take() {
      let cleared = js::deref(raw, self.runtime.clear_interval).and_then(|clear| {
        let handle = timer.get_value(env)?;
        js::call(raw, js::undefined(raw)?, clear, &[handle.raw()])
      });
      if let Err(err) = cleared {
        first_error.get_or_insert(err);
      }
      let _ = timer.unref(env);
    }
    let callbacks = std::mem::take(&mut *self.on_close.borrow_mut());
    for callback in callbacks {
      let scheduled = js::deref(raw, callback)
        .and_then(|callback| self.runtime.next_tick(raw, callback, reason.as_str()));
      if let Err(err) = scheduled {
        first_error.get_or_insert(err);
      }
      js::delete_reference(raw, callback);
    }
    first_error.map_or(Ok(()), Err)
  }

  /// Marks the stream closed and drops the pending bytes and the reference
  /// to the response.
  fn drop_state(&self, env: &Env) {
    self.closed.set(true);
    if let Ok(mut buffer) = self.buffer.try_borrow_mut() {
      *buffer = Vec::new();
    }
    if let Ok(mut pieces) = self.pieces.try_borrow_mut() {
      *pieces = Vec::new();
      self.pieces_len.set(0);
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
      Some(res) => match gone_reason(&self.runtime, &res)? {
        Some(reason) => {
          self.finish(env, reason)?;
          Ok(false)
        }
        None => Ok(true),
      },
      None => Ok(false),
    }
  }

  /// The response, while the stream is open.
  pub fn response<'env>(&self, env: &'env Env) -> Result<Option<Object<'env>>> {
    if self.closed.get() {
      return Ok(None);
    }
    match self.res.borrow().as_ref() {
      Some(res) => res.get_value(env).map(Some),
      None => Ok(None),
    }
  }
}

/// Why the response can no longer carry events, if it cannot (see
/// [`Runtime::gone`]).
fn gone_reason(runtime: &Runtime, res: &Object) -> Result<Option<CloseReason>> {
  let raw = res.value().env;
  let gone = js::deref(raw, runtime.gone)?;
  let code = js::call(raw, js::undefined(raw)?, gone, &[res.raw()])?;
  Ok(match js::as_u32(raw, code)? {
    Some(1) => Some(CloseReason::Server),
    Some(2) => Some(CloseReason::Client),
    _ => None,
  })
}

fn pieces_len(pieces: &[Piece]) -> usize {
  pieces
    .iter()
    .map(|piece| match piece {
      Piece::Own(part) => part.len(),
      Piece::Shared(_, start, end) => end - start,
    })
    .sum()
}

/// `res.writableLength`, or 0 when the response does not have it.
fn writable_length(res: &Object) -> Result<u64> {
  let raw = res.value().env;
  let length = js::get(raw, res.raw(), c"writableLength")?;
  Ok(js::as_f64(raw, length)?.map_or(0, |n| n.max(0.0) as u64))
}

/// `target[name] === true`.
fn flag(env: sys::napi_env, target: js::Value, name: &std::ffi::CStr) -> Result<bool> {
  Ok(js::as_bool(env, js::get(env, target, name)?)? == Some(true))
}
