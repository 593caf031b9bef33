//! A channel shared through a Redis stream: the napi side of
//! `redis-transport.js`, which talks to the ioredis client.
//!
//! Broadcasts are appended to the stream (`XADD ... MAXLEN ~`); the
//! transport reads the stream on its own connection (`XREAD BLOCK`) and hands
//! each entry to [`RedisLink::entry`], which frames it with the entry id and
//! writes it to this process's members. A member that joins with a
//! `Last-Event-ID` gets its replay from `XRANGE`, read together with the
//! stream's window (`XINFO STREAM`) in one `MULTI`; live entries that arrive
//! meanwhile wait in the member and follow the replay.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::{sys, Env};

use crate::channel::{Core, Member, Targets};
use crate::event_id::ChannelId;
use crate::frame::{self, EventId};
use crate::history::{self, Resume};
use crate::js;
use crate::validate;

/// The transport, a function expression compiled for each Redis channel.
const TRANSPORT_SOURCE: &str = include_str!("redis-transport.js");

pub struct RedisLink {
  /// The user's client until the transport takes it.
  redis: RefCell<Option<ObjectRef<false>>>,
  stream: String,
  max_len: u64,
  transport: RefCell<Option<ObjectRef<false>>>,
  /// The id of the newest entry read; `None` until reading has started.
  head: Cell<Option<ChannelId>>,
  /// Members that joined before the stream's position was known.
  waiting: RefCell<Vec<(Rc<Member>, Option<String>)>>,
}

impl RedisLink {
  pub fn new(env: &Env, redis: js::Value, stream: &str, max_len: u64) -> Result<RedisLink> {
    let redis = Object::from_raw(env.raw(), redis);
    Ok(RedisLink {
      redis: RefCell::new(Some(redis.create_ref()?)),
      stream: stream.to_owned(),
      max_len,
      transport: RefCell::new(None),
      head: Cell::new(None),
      waiting: RefCell::new(Vec::new()),
    })
  }

  pub fn head(&self) -> Option<ChannelId> {
    self.head.get()
  }

  /// Creates the transport, which starts reading the stream.
  pub fn start(&self, env: &Env, core: Weak<Core>) -> Result<()> {
    let raw = env.raw();
    let Some(redis) = self.redis.borrow_mut().take() else {
      return Ok(());
    };
    let client = redis.get_value(env)?.raw();
    redis.unref(env)?;

    let mut sink = ptr_object(raw)?;
    let ready_core = core.clone();
    let ready = env.create_function_from_closure::<String, (), _>("redisReady", move |ctx| {
      let head = ctx.first_arg::<String>()?;
      if let Some(core) = ready_core.upgrade() {
        report(ctx.env, core.redis().ready(ctx.env, &core, &head));
      }
      Ok(())
    })?;
    // A channel that was garbage-collected without close() must not keep
    // reading (and the process alive) forever: the transport asks.
    let alive_core = core.clone();
    let alive = env.create_function_from_closure::<(), bool, _>("redisAlive", move |_| {
      Ok(alive_core.upgrade().is_some())
    })?;
    let entry_core = core;
    let event = env.create_function_from_closure::<Unknown, (), _>("redisEntry", move |ctx| {
      if let Some(core) = entry_core.upgrade() {
        let args = [
          ctx.get::<Unknown>(0)?,
          ctx.get(1)?,
          ctx.get(2)?,
          ctx.get(3)?,
        ];
        let raw = ctx.env.raw();
        let fields = [args[0].raw(), args[1].raw(), args[2].raw(), args[3].raw()];
        report(ctx.env, core.redis().entry(ctx.env, &core, raw, fields));
      }
      Ok(())
    })?;
    sink.set_named_property("ready", ready)?;
    sink.set_named_property("event", event)?;
    sink.set_named_property("alive", alive)?;

    let factory = js::compile_function(raw, TRANSPORT_SOURCE)?;
    let stream = js::string(raw, &self.stream)?;
    let max_len = js::string(raw, &self.max_len.to_string())?;
    let transport = js::call(
      raw,
      js::undefined(raw)?,
      factory,
      &[client, stream, max_len, sink.raw()],
    )?;
    *self.transport.borrow_mut() = Some(Object::from_raw(raw, transport).create_ref()?);
    Ok(())
  }

  /// `XADD`s the event; returns the transport's promise of its id.
  pub fn publish(
    &self,
    env: &Env,
    name: &[u8],
    data: js::Value,
    to: &Targets,
    replay: bool,
  ) -> Result<js::Value> {
    let raw = env.raw();
    let transport = self.transport(env)?;
    let publish = js::get(raw, transport, c"publish")?;
    let name = string_from_utf8(raw, name)?;
    let to = match to {
      Targets::Uuids(uuids) => {
        // The entry keeps the UUIDs comma-separated; a string with a comma
        // is no member's UUID, and kept as is it would name others.
        let mut list: Vec<&str> = uuids
          .iter()
          .map(String::as_str)
          .filter(|uuid| !uuid.contains(','))
          .collect();
        list.sort_unstable();
        js::string(raw, &list.join(","))?
      }
      _ => js::null(raw)?,
    };
    let replay = js::boolean(raw, replay)?;
    js::call(raw, transport, publish, &[name, data, to, replay])
  }

  /// Starts a member: its position when it has no `Last-Event-ID`, else its
  /// replay (asynchronous); both wait until the stream's position is known.
  pub fn join(
    &self,
    env: &Env,
    core: &Rc<Core>,
    member: &Rc<Member>,
    last: Option<&str>,
  ) -> Result<()> {
    member.start_joining();
    core.note_joining(member);
    let Some(head) = self.head.get() else {
      self
        .waiting
        .borrow_mut()
        .push((Rc::clone(member), last.map(str::to_owned)));
      return Ok(());
    };
    let Some(last) = last else {
      member.set_after(head);
      core.write_position(env, member, head)?;
      return self.finish_join(env, member, head);
    };
    let Some(last_id) = ChannelId::parse(last.as_bytes()) else {
      member.set_after(head);
      core.write_reset(env, member, head, Resume::Unknown)?;
      return self.finish_join(env, member, head);
    };
    // Live events after what the client has queue up until the replay is
    // written. Not after `last_id` itself when that is past what this
    // process has read: an id newer than the stream's head (a made-up one,
    // or one from another stream) would hold back every live event up to
    // it, after the reset too.
    member.set_after(last_id.min(head));
    let raw = env.raw();
    let transport = self.transport(env)?;
    let replay = js::get(raw, transport, c"replay")?;
    let weak = Rc::downgrade(core);
    let joining = Rc::clone(member);
    let done = env.create_function_from_closure::<Unknown, (), _>("redisReplayed", move |ctx| {
      if let Some(core) = weak.upgrade() {
        let raw = ctx.env.raw();
        // Arguments the transport left out are `undefined`, never an error
        // thrown back into its promise chain.
        let args: Vec<js::Value> = (0..4)
          .map(|i| match ctx.get::<Unknown>(i) {
            Ok(value) => Ok(value.raw()),
            Err(_) => js::undefined(raw),
          })
          .collect::<Result<_>>()?;
        let replayed = core
          .redis()
          .replayed(ctx.env, &core, &joining, last_id, raw, &args);
        report(ctx.env, replayed);
      }
      Ok(())
    })?;
    let last = js::string(raw, last)?;
    js::call(raw, transport, replay, &[last, done.raw()])?;
    Ok(())
  }

  /// The replay of a member that last saw `last` arrived: `args` are
  /// `(err, floor, head, flat)`.
  fn replayed(
    &self,
    env: &Env,
    core: &Rc<Core>,
    member: &Rc<Member>,
    last: ChannelId,
    raw: sys::napi_env,
    args: &[js::Value],
  ) -> Result<()> {
    // The member may have left (its stream ended, `remove()`, `close()`)
    // while Redis answered.
    if member.conn().is_closed() || !member.is_joining() || !core.contains(member) {
      member.finish_joining();
      return Ok(());
    }
    if js::type_of(raw, args[0])? != sys::ValueType::napi_null {
      // Redis could not answer: end the stream so the client reconnects
      // and asks again, still with its Last-Event-ID.
      member.finish_joining();
      return member.conn().close(env);
    }
    let floor = read_id(raw, args[1])?.unwrap_or(ChannelId::ZERO);
    let head = read_id(raw, args[2])?.unwrap_or(ChannelId::ZERO);
    match history::resume(last, floor, head, None) {
      Resume::Replay => {
        let flat = args[3];
        let count = js::array_length(raw, flat)?;
        for i in (0..count).step_by(4) {
          let id = read_id(raw, js::element(raw, flat, i)?)?;
          let to = js::element(raw, flat, i + 3)?;
          let Some(id) = id else { continue };
          if id <= last || js::type_of(raw, to)? != sys::ValueType::napi_null {
            continue;
          }
          let name = js::element(raw, flat, i + 1)?;
          let data = js::element(raw, flat, i + 2)?;
          let Some(frame) = frame_entry(raw, id, name, data)? else {
            continue;
          };
          if !member.conn().push_bytes(env, &frame)? {
            return Ok(());
          }
        }
      }
      reason => core.write_reset(env, member, head, reason)?,
    }
    self.finish_join(env, member, head)
  }

  /// Writes the live events that queued up while `member` joined (those
  /// after `upto`, which it has by now) and makes it a live member.
  fn finish_join(&self, env: &Env, member: &Rc<Member>, upto: ChannelId) -> Result<()> {
    let mut after = upto.max(member.after());
    for (id, frame) in member.finish_joining() {
      if id <= upto {
        continue;
      }
      after = after.max(id);
      if !member.conn().push_bytes(env, &frame)? {
        break;
      }
    }
    member.set_after(after);
    Ok(())
  }

  /// Reading started at `head`: members that were waiting join now.
  fn ready(&self, env: &Env, core: &Rc<Core>, head: &str) -> Result<()> {
    let head = ChannelId::parse(head.as_bytes()).unwrap_or(ChannelId::ZERO);
    if self.head.get().is_none() {
      self.head.set(Some(head));
    }
    let mut first_error = None;
    for (member, last) in std::mem::take(&mut *self.waiting.borrow_mut()) {
      // Skip those that left (or were removed) while the position was read.
      if member.conn().is_closed() || !core.contains(&member) {
        member.finish_joining();
        continue;
      }
      if let Err(err) = self.join(env, core, &member, last.as_deref()) {
        first_error.get_or_insert(err);
      }
    }
    first_error.map_or(Ok(()), Err)
  }

  /// One stream entry, read in order: framed with its id and written to the
  /// members it is for. Entries that are not events of a native-sse
  /// channel (no `event`/`data` field, or a name that breaks the field
  /// rules) are skipped.
  fn entry(
    &self,
    env: &Env,
    core: &Rc<Core>,
    raw: sys::napi_env,
    fields: [js::Value; 4],
  ) -> Result<()> {
    let Some(id) = read_id(raw, fields[0])? else {
      return Ok(());
    };
    if self.head.get().is_some_and(|head| id <= head) {
      return Ok(());
    }
    self.head.set(Some(id));
    let Some(frame) = frame_entry(raw, id, fields[1], fields[2])? else {
      return Ok(());
    };
    let targets = if js::type_of(raw, fields[3])? == sys::ValueType::napi_string {
      let mut list = Vec::new();
      js::append_utf8(raw, fields[3], &mut list)?;
      let uuids: HashSet<String> = String::from_utf8_lossy(&list)
        .split(',')
        .map(str::to_owned)
        .collect();
      Targets::Uuids(uuids)
    } else {
      Targets::All
    };
    core.publish(
      env,
      id,
      |out: &mut Vec<u8>| -> Result<()> {
        out.extend_from_slice(&frame);
        Ok(())
      },
      targets,
      // The stream is the history of a Redis channel; nothing is kept here.
      true,
    )
  }

  pub fn stop(&self, env: &Env) -> Result<()> {
    let raw = env.raw();
    if let Ok(transport) = self.transport(env) {
      let close = js::get(raw, transport, c"close")?;
      js::call(raw, transport, close, &[])?;
    }
    Ok(())
  }

  pub fn release(&self, env: &Env) {
    if let Some(transport) = self.transport.borrow_mut().take() {
      let _ = transport.unref(env);
    }
    if let Some(redis) = self.redis.borrow_mut().take() {
      let _ = redis.unref(env);
    }
    self.waiting.borrow_mut().clear();
  }

  fn transport(&self, env: &Env) -> Result<js::Value> {
    match self.transport.borrow().as_ref() {
      Some(transport) => Ok(transport.get_value(env)?.raw()),
      None => Err(Error::new(
        Status::GenericFailure,
        "the Redis transport is not running",
      )),
    }
  }
}

/// The framed event of a stream entry, or `None` when the entry is not one
/// this library can send (no name or data, or a name with a line break).
fn frame_entry(
  raw: sys::napi_env,
  id: ChannelId,
  name: js::Value,
  data: js::Value,
) -> Result<Option<Vec<u8>>> {
  if js::type_of(raw, name)? != sys::ValueType::napi_string
    || js::type_of(raw, data)? != sys::ValueType::napi_string
  {
    return Ok(None);
  }
  let mut name_text = Vec::new();
  js::append_utf8(raw, name, &mut name_text)?;
  if validate::check_single_line(&name_text).is_err() {
    return Ok(None);
  }
  let mut data_text = Vec::new();
  js::append_utf8(raw, data, &mut data_text)?;
  let mut id_text = Vec::new();
  id.write(&mut id_text);
  let mut out = Vec::with_capacity(id_text.len() + name_text.len() + data_text.len() + 24);
  frame::push_event(
    &mut out,
    &frame::Event {
      id: Some(EventId::Text(&id_text)),
      name: Some(&name_text),
      data: &data_text,
    },
  );
  Ok(Some(out))
}

/// A stream id given as a JS string, `None` when it is not one.
fn read_id(raw: sys::napi_env, value: js::Value) -> Result<Option<ChannelId>> {
  if js::type_of(raw, value)? != sys::ValueType::napi_string {
    return Ok(None);
  }
  let mut text = Vec::new();
  js::append_utf8(raw, value, &mut text)?;
  Ok(ChannelId::parse(&text))
}

fn string_from_utf8(raw: sys::napi_env, bytes: &[u8]) -> Result<js::Value> {
  js::string(raw, std::str::from_utf8(bytes).unwrap_or_default())
}

fn ptr_object(raw: sys::napi_env) -> Result<Object<'static>> {
  let mut object = std::ptr::null_mut();
  napi::check_status!(unsafe { sys::napi_create_object(raw, &mut object) })?;
  Ok(Object::from_raw(raw, object))
}

/// An error inside a callback from the transport would reject one of its
/// promises, where nobody looks: report it as uncaught instead.
fn report(env: &Env, result: Result<()>) {
  if let Err(err) = result {
    js::throw_uncaught(env.raw(), err);
  }
}
