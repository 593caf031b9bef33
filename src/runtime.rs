//! Per-environment state shared by every stream: the JS values the hot path
//! needs (kept in references so they are looked up once), and the queues of
//! channels and connections with events waiting to be written at the end of
//! the tick.
//!
//! Batching: `send()` appends the framed event to its connection's buffer and
//! queues one microtask per tick (for all connections). The microtask hands
//! each buffer to `res.write` in one call, so N events sent in one tick cost
//! one `res.write` and one socket write instead of N.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{sys, Env};

use crate::connection::Connection;
use crate::js;
use crate::shared::SharedBytes;

/// Something with its own end-of-tick write (a channel), run before the
/// connections are flushed.
pub trait TickFlush {
  fn flush_tick(&self, env: &Env) -> Result<()>;
}

/// Members to receive the same shared batch in one end-of-tick write, with
/// their responses.
type SharedWrite = (Rc<SharedBytes>, Vec<(Rc<Connection>, js::Value)>);

/// Source of [`Runtime::gone`]: ended (by us or by other code) is 1;
/// destroyed (the client left), or its socket or HTTP/2 stream destroyed
/// (the response itself only learns that a tick later, with `'close'`), is
/// 2; still open is 0.
const GONE_SOURCE: &str = "(function goneSSE(res) {
  if (res.writableEnded === true) return 1;
  if (res.destroyed === true) return 2;
  const socket = res.socket;
  if (typeof socket === 'object' && socket !== null && socket.destroyed === true) return 2;
  const stream = res.stream;
  if (typeof stream === 'object' && stream !== null && stream.destroyed === true) return 2;
  return 0;
})";

/// Source of [`Runtime::write_shared`]: `write(chunk)` on every response of
/// `list`, in one JS loop where V8 caches the lookups, instead of one
/// Node-API call per response. Returns `null`, or the positions whose write
/// returned `false` (or threw: a throwing `write` is reported as an uncaught
/// exception, as a failed flush is, without stopping the other writes).
const WRITE_SHARED_SOURCE: &str = "(function writeSharedSSE(chunk, list, skip) {
  let slow = null;
  const skipped = skip === null ? null : new Set(skip);
  for (let i = 0; i < list.length; i++) {
    if (skipped !== null && skipped.has(i)) continue;
    try {
      if (list[i].write(chunk) === false) (slow ??= []).push(i);
    } catch (err) {
      (slow ??= []).push(i);
      queueMicrotask(() => { throw err; });
    }
  }
  return slow;
})";

pub struct Runtime {
  pub stringify: sys::napi_ref,
  pub set_interval: sys::napi_ref,
  pub clear_interval: sys::napi_ref,
  set_timeout: sys::napi_ref,
  /// A function that does nothing: the `'error'` listener every response
  /// gets, shared instead of made per connection.
  pub noop: sys::napi_ref,
  next_tick: sys::napi_ref,
  /// A resolved promise and `Promise.prototype.then`: `then.call(resolved,
  /// flush)` queues the end-of-tick flush as a microtask.
  resolved: sys::napi_ref,
  then: sys::napi_ref,
  flush_all: sys::napi_ref,
  /// `gone(res)`: whether the response can still carry events, as one small
  /// JS function (0 open, 1 ended, 2 destroyed), so the once-per-tick check
  /// is one call into JS, where V8 caches the property lookups, instead of
  /// five uncached reads through Node-API (callgrind, paced: ~8,000 fewer
  /// instructions per event, of ~65,000). Node and Bun both compile it.
  pub gone: sys::napi_ref,
  write_shared: sys::napi_ref,
  pending: RefCell<Vec<Rc<Connection>>>,
  /// Channels with a shared write for the end of the tick.
  flushers: RefCell<Vec<Rc<dyn TickFlush>>>,
  scheduled: Cell<bool>,
  /// Counts end-of-tick flushes; a channel starts a new shared batch when
  /// it has moved on.
  generation: Cell<u64>,
  /// Whether an end-of-tick flush is running.
  flushing: Cell<bool>,
  next_connection_id: Cell<u64>,
}

impl Runtime {
  /// The runtime of `env`, created on first use.
  pub fn get(env: &Env) -> Result<Rc<Runtime>> {
    if let Some(runtime) = env.get_instance_data::<Rc<Runtime>>()? {
      return Ok(Rc::clone(runtime));
    }
    let runtime = Rc::new(Runtime::create(env)?);
    env.set_instance_data(Rc::clone(&runtime), (), |_| {})?;
    Ok(runtime)
  }

  fn create(env: &Env) -> Result<Runtime> {
    let raw = env.raw();
    let global = env.get_global()?;
    let json: Object = global.get_named_property_unchecked("JSON")?;
    let stringify: Unknown = json.get_named_property_unchecked("stringify")?;
    // The flush is queued with `resolved.then(flush)` rather than
    // `queueMicrotask(flush)`: the same microtask queue, in the same order,
    // without the `AsyncResource` Node makes for every `queueMicrotask`
    // call (callgrind, paced: ~1,500 fewer instructions per event;
    // `process.nextTick` costs more still).
    let resolved = js::resolved_promise(raw)?;
    let then = js::get(raw, resolved, c"then")?;
    let set_interval: Unknown = global.get_named_property_unchecked("setInterval")?;
    let clear_interval: Unknown = global.get_named_property_unchecked("clearInterval")?;
    let set_timeout: Unknown = global.get_named_property_unchecked("setTimeout")?;
    let process: Object = global.get_named_property_unchecked("process")?;
    let next_tick: Unknown = process.get_named_property_unchecked("nextTick")?;
    let noop = env.create_function_from_closure::<Unknown, (), _>("onSSEError", |_| Ok(()))?;
    // The flush function finds the runtime through the instance data, so it
    // holds no reference that would keep the runtime alive.
    let flush_all = env.create_function_from_closure::<(), (), _>("flushSSE", |ctx| {
      if let Some(runtime) = ctx.env.get_instance_data::<Rc<Runtime>>()? {
        let runtime = Rc::clone(runtime);
        if let Err(err) = runtime.flush_pending(ctx.env) {
          // Thrown from a promise reaction, it would become a rejected
          // promise; report it as `queueMicrotask` would: uncaught.
          js::throw_uncaught(ctx.env.raw(), err);
        }
      }
      Ok(())
    })?;
    Ok(Runtime {
      stringify: js::reference(raw, stringify.raw())?,
      set_interval: js::reference(raw, set_interval.raw())?,
      clear_interval: js::reference(raw, clear_interval.raw())?,
      set_timeout: js::reference(raw, set_timeout.raw())?,
      noop: js::reference(raw, noop.raw())?,
      next_tick: js::reference(raw, next_tick.raw())?,
      resolved: js::reference(raw, resolved)?,
      then: js::reference(raw, then)?,
      flush_all: js::reference(raw, flush_all.raw())?,
      gone: js::reference(raw, js::compile_function(raw, GONE_SOURCE)?)?,
      write_shared: js::reference(raw, js::compile_function(raw, WRITE_SHARED_SOURCE)?)?,
      pending: RefCell::new(Vec::new()),
      flushers: RefCell::new(Vec::new()),
      scheduled: Cell::new(false),
      generation: Cell::new(0),
      flushing: Cell::new(false),
      next_connection_id: Cell::new(1),
    })
  }

  /// Queues `conn` for the end-of-tick flush (once per tick).
  pub fn enqueue(&self, env: &Env, conn: &Rc<Connection>) -> Result<()> {
    self.pending.borrow_mut().push(Rc::clone(conn));
    self.schedule(env)
  }

  /// Queues a channel's shared write for the end of the tick, before the
  /// connections' own writes.
  pub fn enqueue_flusher(&self, env: &Env, flusher: Rc<dyn TickFlush>) -> Result<()> {
    self.flushers.borrow_mut().push(flusher);
    self.schedule(env)
  }

  fn schedule(&self, env: &Env) -> Result<()> {
    if !self.scheduled.get() {
      let raw = env.raw();
      let resolved = js::deref(raw, self.resolved)?;
      let then = js::deref(raw, self.then)?;
      let flush = js::deref(raw, self.flush_all)?;
      js::call(raw, resolved, then, &[flush])?;
      self.scheduled.set(true);
    }
    Ok(())
  }

  /// `setTimeout(callback, ms).unref()`: runs `callback` once after `ms`,
  /// without keeping the process alive.
  pub fn set_timeout(&self, raw: sys::napi_env, callback: js::Value, ms: u64) -> Result<()> {
    let set_timeout = js::deref(raw, self.set_timeout)?;
    let delay = js::uint32(raw, ms.min(u32::MAX as u64) as u32)?;
    let timer = js::call(raw, js::undefined(raw)?, set_timeout, &[callback, delay])?;
    if js::type_of(raw, timer)? == sys::ValueType::napi_object {
      let unref = js::get(raw, timer, c"unref")?;
      if js::type_of(raw, unref)? == sys::ValueType::napi_function {
        js::call(raw, timer, unref, &[])?;
      }
    }
    Ok(())
  }

  /// `process.nextTick(callback, text)`: runs `callback(text)` in the next
  /// tick, outside the current call.
  pub fn next_tick(&self, raw: sys::napi_env, callback: js::Value, text: &str) -> Result<()> {
    let next_tick = js::deref(raw, self.next_tick)?;
    let text = js::string(raw, text)?;
    js::call(raw, js::undefined(raw)?, next_tick, &[callback, text])?;
    Ok(())
  }

  pub fn next_connection_id(&self) -> u64 {
    let id = self.next_connection_id.get();
    self.next_connection_id.set(id + 1);
    id
  }

  /// How many end-of-tick flushes have started.
  pub fn generation(&self) -> u64 {
    self.generation.get()
  }

  /// Whether the end-of-tick flush is running.
  pub fn is_flushing(&self) -> bool {
    self.flushing.get()
  }

  /// The current flush's generation while an end-of-tick flush runs.
  pub fn flush_generation(&self) -> Option<u64> {
    self.flushing.get().then(|| self.generation.get())
  }

  /// Writes `shared` (one `Buffer`) to every response of the JS array
  /// `list` but those at the positions in `skip`, in one call into JS; then
  /// handles the ones whose write returned `false` (backpressure, the cap,
  /// or a response that is gone) one by one, through their connection,
  /// which `at(position)` finds.
  pub fn write_shared(
    &self,
    env: &Env,
    shared: &SharedBytes,
    list: js::Value,
    skip: &[u32],
    at: impl Fn(u32) -> Option<Rc<Connection>>,
  ) -> Result<()> {
    let raw = env.raw();
    let chunk = shared.buffer(raw, self.flush_generation())?;
    let skip = if skip.is_empty() {
      js::null(raw)?
    } else {
      let positions = js::array(raw, skip.len())?;
      for (k, position) in skip.iter().enumerate() {
        js::set_element(raw, positions, k as u32, js::uint32(raw, *position)?)?;
      }
      positions
    };
    let write_shared = js::deref(raw, self.write_shared)?;
    let slow = js::call(raw, js::undefined(raw)?, write_shared, &[chunk, list, skip])?;
    if js::type_of(raw, slow)? != sys::ValueType::napi_object {
      return Ok(());
    }
    // Found first, handled after: handling one may change the list.
    let mut behind = Vec::new();
    for k in 0..js::array_length(raw, slow)? {
      let Some(position) = js::as_u32(raw, js::element(raw, slow, k)?)? else {
        continue;
      };
      if let Some(conn) = at(position) {
        behind.push((conn, js::element(raw, list, position)?));
      }
    }
    let mut first_error = None;
    for (conn, res) in behind {
      if let Err(err) = conn.wrote(env, &Object::from_raw(raw, res), false) {
        first_error.get_or_insert(err);
      }
    }
    first_error.map_or(Ok(()), Err)
  }

  /// Writes every queued connection's buffer. Runs as a microtask.
  fn flush_pending(&self, env: &Env) -> Result<()> {
    self.scheduled.set(false);
    self.generation.set(self.generation.get() + 1);
    self.flushing.set(true);
    let mut first_error = None;
    // Channels first: a member's own bytes of the tick come after the
    // channel events it took before them (see `Channel`).
    let flushers = std::mem::take(&mut *self.flushers.borrow_mut());
    for flusher in flushers {
      if let Err(err) = flusher.flush_tick(env) {
        first_error.get_or_insert(err);
      }
    }
    let pending = std::mem::take(&mut *self.pending.borrow_mut());
    // Channel members whose bytes for the tick are exactly one shared batch
    // are written together, per batch; the others one by one.
    let mut groups: Vec<SharedWrite> = Vec::new();
    for conn in pending {
      match conn.take_whole_shared(env) {
        Ok(Some((shared, res))) => match groups
          .iter_mut()
          .find(|group| Rc::ptr_eq(&group.0, &shared))
        {
          Some(group) => group.1.push((conn, res)),
          None => groups.push((shared, vec![(conn, res)])),
        },
        Ok(None) => {
          if let Err(err) = conn.flush(env) {
            first_error.get_or_insert(err);
          }
        }
        Err(err) => {
          first_error.get_or_insert(err);
        }
      }
    }
    for (shared, members) in groups {
      let written = js::array(env.raw(), members.len()).and_then(|list| {
        for (i, (_, res)) in members.iter().enumerate() {
          js::set_element(env.raw(), list, i as u32, *res)?;
        }
        self.write_shared(env, &shared, list, &[], |i| {
          members.get(i as usize).map(|(conn, _)| Rc::clone(conn))
        })
      });
      if let Err(err) = written {
        first_error.get_or_insert(err);
      }
    }
    self.flushing.set(false);
    match first_error {
      Some(err) => Err(err),
      None => Ok(()),
    }
  }
}
