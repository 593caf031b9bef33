//! The `Channel` class: one event, framed once, written to many streams;
//! channel-scoped ids with a bounded history that clients resume from; and,
//! with Redis, the same channel across server processes.
//!
//! This is the napi layer. The rules live in napi-free modules: ids in
//! `event_id`, history and the resume decision in `history`, option
//! defaults in `options`. Bytes shared by many connections are
//! `shared::SharedBytes`; Redis is reached through a small JavaScript
//! transport (`redis.rs`).

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::{sys, Env, ValueType};
use napi_derive::napi;

use crate::connection::{Connection, Membership};
use crate::errors::{self, type_error};
use crate::event::{self, Body};
use crate::event_id::ChannelId;
use crate::frame::{self, Event, EventId};
use crate::history::{History, Resume};
use crate::js;
use crate::open;
use crate::options::{self, ChannelOptions};
use crate::redis::RedisLink;
use crate::runtime::{Runtime, TickFlush};
use crate::shared::SharedBytes;
use crate::sse::SSE;

const BROADCAST: &str = "broadcast(event, options)";
const NEW_CHANNEL: &str = "new Channel(options)";

/// A group of SSE streams that receive the same events.
///
/// `broadcast()` frames an event once and writes the same bytes to every
/// member; events broadcast in one tick reach each member in one write.
/// Every event gets a channel id (`<ms>-<seq>`, the form of Redis stream
/// ids), and recent events are kept, so a client that reconnects with
/// `Last-Event-ID` receives what it missed when it joins again, or a
/// `reset` event when that is no longer known.
///
/// With `{ redis, stream }` the channel is shared by every server process
/// that uses the same stream: broadcasts go through Redis (`XADD`), each
/// process reads the stream (`XREAD BLOCK` on its own connection) and writes
/// to its own members, and the stream entry ids are the event ids.
#[napi(custom_finalize)]
pub struct Channel {
  core: Rc<Core>,
}

pub(crate) struct Core {
  runtime: Rc<Runtime>,
  members: RefCell<Vec<Rc<Member>>>,
  /// Connection id -> position in `members`.
  index: RefCell<HashMap<u64, usize>>,
  /// Members that ended while `members` was borrowed, removed afterwards.
  left: RefCell<Vec<u64>>,
  source: Source,
  /// The bytes broadcast in the current tick (the runtime's flush
  /// generation when they were started), shared by the members.
  batch: RefCell<Option<(u64, Rc<SharedBytes>)>>,
  window: Option<Window>,
  closed: Cell<bool>,
  /// The members' responses, in the order of `members`: the list the
  /// end-of-tick shared write goes through.
  responses: RefCell<Option<ObjectRef<false>>>,
  tick: RefCell<Tick>,
  /// Members that take events one by one across ticks: still waiting for
  /// their replay (Redis), replayed further than the reader has read, or
  /// in more than one channel (events of different channels then keep the
  /// order they were sent in).
  one_by_one: RefCell<Vec<Rc<Member>>>,
}

/// The broadcasts of the current tick (without a flush window). They go to
/// most members in one shared write at the end of the tick, through
/// `responses` in one JS loop, with no work per member before that. A
/// member is *explicit* for the tick when its connection also takes other
/// bytes (its own `send()`, a heartbeat, another channel), when it joined
/// in this tick, when it is still joining, or after a targeted broadcast:
/// it is handed the tick's events so far, in order before those other
/// bytes, and takes the rest one by one.
#[derive(Default)]
struct Tick {
  /// The runtime's flush generation this state belongs to.
  generation: u64,
  /// Whether the end-of-tick write has run (the state is then stale).
  flushed: bool,
  /// The tick's shared bytes, once something was broadcast.
  batch: Option<Rc<SharedBytes>>,
  /// The id of the newest event in `batch`.
  last: ChannelId,
  explicit: HashSet<u64>,
  explicit_members: Vec<Rc<Member>>,
}

enum Source {
  /// Ids are `<epoch>-<n>`; the history is kept here.
  Local {
    epoch: u64,
    history: RefCell<History>,
  },
  /// Ids come from the Redis stream; so does the history.
  Redis(RedisLink),
}

/// A live event that waits for a joining member: its id and framed bytes.
pub(crate) type Waiting = (ChannelId, Vec<u8>);

pub(crate) struct Member {
  conn: Rc<Connection>,
  uuid: String,
  /// The SSE object, passed to `to` predicates.
  sse: RefCell<Option<ObjectRef<false>>>,
  /// The newest channel id this member has (or does not need): live events
  /// up to it are skipped.
  after: Cell<ChannelId>,
  /// While its replay is being fetched (Redis): the live events that
  /// arrived meanwhile, written after the replay.
  joining: RefCell<Option<Vec<Waiting>>>,
}

/// Who an event is for.
pub(crate) enum Targets {
  All,
  /// Members whose UUID is in the list.
  Uuids(HashSet<String>),
  /// Members (by connection id) a predicate chose.
  Connections(HashSet<u64>),
}

impl Targets {
  fn includes(&self, member: &Member) -> bool {
    match self {
      Targets::All => true,
      Targets::Uuids(uuids) => uuids.contains(&member.uuid),
      Targets::Connections(ids) => ids.contains(&member.conn.id),
    }
  }
}

/// Broadcasts wait up to `ms` and are written together.
struct Window {
  ms: u64,
  bytes: RefCell<Rc<SharedBytes>>,
  queue: RefCell<Vec<Queued>>,
  armed: Cell<bool>,
}

struct Queued {
  id: ChannelId,
  start: usize,
  end: usize,
  targets: Targets,
}

#[napi]
impl Channel {
  /// Makes a channel. Options (all optional): `historyEvents` (default
  /// 1000) and `historyBytes` (default 1 MiB) bound the kept events of an
  /// in-process channel; `flushWindow` (ms, default 0) lets broadcasts wait
  /// and go out together; `redis` (an ioredis client), `stream` (the Redis
  /// stream key) and `maxLen` (default 10000, `MAXLEN ~`) share the channel
  /// through Redis.
  ///
  /// Throws a `TypeError` (`ERR_SSE_INVALID_OPTION`) when an option is
  /// invalid.
  #[napi(constructor, ts_args_type = "options?: ChannelOptions")]
  pub fn new(env: &Env, options: Option<Unknown>) -> Result<Self> {
    let given = read_channel_options(env, options)?;
    let runtime = Runtime::get(env)?;
    let options = given.options;
    let window = (options.flush_window_ms > 0).then(|| Window {
      ms: options.flush_window_ms,
      bytes: RefCell::new(Rc::new(SharedBytes::default())),
      queue: RefCell::new(Vec::new()),
      armed: Cell::new(false),
    });
    let redis = match &given.redis {
      Some((redis, stream)) => Some(RedisLink::new(env, *redis, stream, options.max_len)?),
      None => None,
    };
    let responses = Object::from_raw(env.raw(), js::array(env.raw(), 0)?).create_ref()?;
    let core = Rc::new({
      let source = match redis {
        Some(link) => Source::Redis(link),
        None => {
          let epoch = epoch_ms();
          let start = ChannelId::new(epoch, 0);
          Source::Local {
            epoch,
            history: RefCell::new(History::new(
              start,
              options.history_events as usize,
              options.history_bytes as usize,
            )),
          }
        }
      };
      Core {
        runtime,
        members: RefCell::new(Vec::new()),
        index: RefCell::new(HashMap::new()),
        left: RefCell::new(Vec::new()),
        source,
        batch: RefCell::new(None),
        window,
        closed: Cell::new(false),
        responses: RefCell::new(Some(responses)),
        tick: RefCell::new(Tick::default()),
        one_by_one: RefCell::new(Vec::new()),
      }
    });
    if let Source::Redis(link) = &core.source {
      link.start(env, Rc::downgrade(&core))?;
    }
    Ok(Channel { core })
  }

  /// Adds `sse` to the channel and returns `true`; `false` when its stream
  /// has already ended. Adding a member again does nothing.
  ///
  /// When the request of `sse` carried a `Last-Event-ID` (or `lastEventId`
  /// query parameter), the member first receives the channel events after
  /// that id, in order, then live events. When those events are no longer
  /// all known (older than the history, or an id this channel never gave),
  /// it receives a `reset` event instead. A member without one is told the
  /// channel's current position (`id: <id>` and a blank line, which
  /// dispatches no event), so that it resumes from there if it reconnects.
  ///
  /// The member leaves by itself when its stream ends.
  #[napi(ts_args_type = "sse: SSE")]
  pub fn add(&self, env: &Env, sse: Unknown) -> Result<bool> {
    let core = &self.core;
    core.check_open(env, "add(sse)")?;
    let sse_object = expect_sse(env, sse, "add(sse)")?;
    let instance: &SSE = sse_object.1;
    let conn = instance.connection();
    if !conn.is_writable(env)? {
      return Ok(false);
    }
    if core.index.borrow().contains_key(&conn.id) {
      return Ok(true);
    }
    let member = Rc::new(Member {
      conn: Rc::clone(conn),
      uuid: instance.uuid().to_owned(),
      sse: RefCell::new(Some(sse_object.0.create_ref()?)),
      after: Cell::new(ChannelId::ZERO),
      joining: RefCell::new(None),
    });
    let Some(res) = conn.response(env)? else {
      return Ok(false);
    };
    {
      let mut members = core.members.borrow_mut();
      let position = members.len();
      core.index.borrow_mut().insert(conn.id, position);
      members.push(Rc::clone(&member));
      js::set_element(
        env.raw(),
        core.responses_value(env)?,
        position as u32,
        res.raw(),
      )?;
    }
    // What it receives on joining comes from its replay or its position,
    // not from this tick's shared write.
    core.make_explicit(&mut core.tick_mut(), &member);
    let weak: Weak<dyn Membership> = Rc::downgrade(&(Rc::clone(core) as Rc<dyn Membership>));
    conn.join(env, weak);
    let last = instance.last_event_id_text();
    match &core.source {
      Source::Local { epoch, history } => {
        let history = history.borrow();
        let head = history.head();
        let resume = match last.and_then(|text| ChannelId::parse(text.as_bytes())) {
          Some(id) => Some((id, history.resume(id, Some(*epoch)))),
          None if last.is_some() => Some((ChannelId::ZERO, Resume::Unknown)),
          None => None,
        };
        member.after.set(head);
        match resume {
          Some((id, Resume::Replay)) => {
            for frame in history.after(id) {
              if !member.conn.push_bytes(env, frame)? {
                break;
              }
            }
          }
          Some((_, reason)) => core.write_reset(env, &member, head, reason)?,
          None => core.write_position(env, &member, head)?,
        }
      }
      Source::Redis(link) => link.join(env, core, &member, last)?,
    }
    Ok(!member.conn.is_closed())
  }

  /// Removes `sse` from the channel (its stream stays open). Returns
  /// whether it was a member.
  #[napi(ts_args_type = "sse: SSE")]
  pub fn remove(&self, env: &Env, sse: Unknown) -> Result<bool> {
    let sse = expect_sse(env, sse, "remove(sse)")?;
    let conn = sse.1.connection();
    let was_member = self.core.index.borrow().contains_key(&conn.id);
    if was_member {
      self.core.remove_member(env, conn.id);
    }
    Ok(was_member)
  }

  /// Sends `event` (as `send()` takes it, without `id`) to every member, or
  /// to those `options.to` names: an array of UUIDs (`getUUID()`), or a
  /// function called with each member's SSE that returns `true` for those
  /// to send to. The event is framed once, with the next channel id, and
  /// the same bytes go to every member.
  ///
  /// Returns the event's id. On a Redis channel, returns a promise of the id
  /// (the stream entry id), which rejects with `ERR_SSE_REDIS_UNAVAILABLE`
  /// when Redis cannot take the event; a predicate `to` is not allowed there
  /// (it cannot run on other servers).
  ///
  /// Events sent to some members only are not kept in the history (the
  /// UUIDs change when clients reconnect), nor are those broadcast with
  /// `options.replay` `false` (a clock, a presence count: events a client
  /// that comes back does not need); both still take an id.
  ///
  /// Throws a `TypeError`, as `send()` does, when the event is invalid, and
  /// `ERR_SSE_INVALID_OPTION` when `options` is; nothing is sent then.
  /// Throws `ERR_SSE_CHANNEL_CLOSED` after `close()`.
  #[napi(
    ts_args_type = "event: ChannelEvent, options?: BroadcastOptions",
    ts_return_type = "string | Promise<string>"
  )]
  pub fn broadcast<'env>(
    &self,
    env: &'env Env,
    event: Unknown,
    options: Option<Unknown>,
  ) -> Result<Unknown<'env>> {
    let core = &self.core;
    core.check_open(env, BROADCAST)?;
    let raw = env.raw();
    let input = event::read(env, BROADCAST, &core.runtime, event)?;
    if input.id.is_some() {
      return Err(type_error(
        env,
        errors::INVALID_EVENT_ID,
        &format!("{BROADCAST}: event.id cannot be given: the channel numbers its events"),
      ));
    }
    let mut name = Vec::new();
    event::append_name(env, BROADCAST, input.name, &mut name)?;
    let (to, replay) =
      read_broadcast_options(env, core, options, matches!(core.source, Source::Redis(_)))?;
    // User code (`toJSON`, a predicate) may have closed the channel.
    core.check_open(env, BROADCAST)?;
    match &core.source {
      Source::Local { epoch, history } => {
        let id = {
          let head = history.borrow().head();
          ChannelId::new(*epoch, head.seq + 1)
        };
        let mut id_text = Vec::new();
        id.write(&mut id_text);
        let body = &input.body;
        let frame = |out: &mut Vec<u8>| {
          frame::push_event_in_place(
            out,
            EventId::Text(&id_text),
            |out| {
              out.extend_from_slice(&name);
              Ok(())
            },
            |out| body.append(raw, out),
          )
        };
        core.publish(env, id, frame, to, replay)?;
        let text = js::string(raw, &id.to_string())?;
        Ok(unsafe { Unknown::from_raw_unchecked(raw, text) })
      }
      Source::Redis(link) => {
        let data = match input.body {
          Body::Text(text) => text,
          Body::Bytes(bytes) => js::buffer_copy(raw, bytes)?,
        };
        let promise = link.publish(env, &name, data, &to, replay)?;
        Ok(unsafe { Unknown::from_raw_unchecked(raw, promise) })
      }
    }
  }

  /// The number of members.
  #[napi(getter)]
  pub fn size(&self, env: &Env) -> u32 {
    self.core.prune_left(env);
    self.core.members.borrow().len() as u32
  }

  /// The id of the newest event this channel has seen (`<ms>-<seq>`):
  /// where a member that joins now starts. `null` on a Redis channel until
  /// it has read the stream's position.
  #[napi(getter, js_name = "lastEventId")]
  pub fn last_event_id(&self) -> Option<String> {
    self.core.head().map(|id| id.to_string())
  }

  /// Stops the channel: writes broadcasts still waiting for the flush
  /// window, removes every member (their streams stay open) and, with
  /// Redis, stops reading the stream (the client you passed is not closed).
  /// `add()` and `broadcast()` throw `ERR_SSE_CHANNEL_CLOSED` afterwards.
  /// Calling it again does nothing.
  #[napi]
  pub fn close(&self, env: &Env) -> Result<()> {
    self.core.close(env)
  }
}

impl ObjectFinalize for Channel {
  fn finalize(self, env: Env) -> Result<()> {
    self.core.release(&env);
    Ok(())
  }
}

impl Core {
  fn check_open(&self, env: &Env, call: &str) -> Result<()> {
    if self.closed.get() {
      return Err(errors::state_error(
        env,
        errors::CHANNEL_CLOSED,
        &format!("{call}: the channel is closed"),
      ));
    }
    Ok(())
  }

  /// The Redis side; only called from the Redis transport's callbacks.
  pub(crate) fn redis(&self) -> &RedisLink {
    match &self.source {
      Source::Redis(link) => link,
      Source::Local { .. } => unreachable!("a Redis callback on an in-process channel"),
    }
  }

  fn head(&self) -> Option<ChannelId> {
    match &self.source {
      Source::Local { history, .. } => Some(history.borrow().head()),
      Source::Redis(link) => link.head(),
    }
  }

  /// Frames the event `id` with `frame` into the shared bytes, keeps it in
  /// the history (in-process, when it is for everyone and `replay`) and
  /// writes it to the members it is for, now or when the flush window ends.
  pub(crate) fn publish<E>(
    self: &Rc<Self>,
    env: &Env,
    id: ChannelId,
    frame: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
    targets: Targets,
    replay: bool,
  ) -> std::result::Result<(), E>
  where
    E: From<Error>,
  {
    let shared = match &self.window {
      Some(window) => Rc::clone(&window.bytes.borrow()),
      None => self.tick_batch(),
    };
    let (start, end) = shared.append(frame)?;
    if let Source::Local { history, .. } = &self.source {
      let mut history = history.borrow_mut();
      match targets {
        Targets::All if replay => history.push(id, &shared.bytes()[start..end]),
        _ => history.pass(id),
      }
    }
    match &self.window {
      Some(window) => {
        window.queue.borrow_mut().push(Queued {
          id,
          start,
          end,
          targets,
        });
        if !window.armed.get() {
          self.arm_window(env, window.ms)?;
          window.armed.set(true);
        }
      }
      None => self.deliver_in_tick(env, &shared, id, start, end, &targets)?,
    }
    Ok(())
  }

  /// The state of the current tick, fresh once the runtime's end-of-tick
  /// flush has moved on (members still joining start explicit).
  fn tick_mut(&self) -> RefMut<'_, Tick> {
    let mut tick = self.tick.borrow_mut();
    let generation = self.runtime.generation();
    if tick.flushed || tick.generation != generation {
      *tick = Tick {
        generation,
        ..Tick::default()
      };
      // Members still joining, members whose replay went further than this
      // process has read (Redis: the reader lags behind the replay's
      // snapshot), which skip what they have, and members of several
      // channels take events one by one.
      let head = self.head().unwrap_or(ChannelId::ZERO);
      let mut one_by_one = self.one_by_one.borrow_mut();
      one_by_one.retain(|member| {
        let still =
          member.is_joining() || member.after.get() > head || member.conn.membership_count() > 1;
        still && !member.conn.is_closed() && self.contains(member)
      });
      for member in one_by_one.iter() {
        tick.explicit.insert(member.conn.id);
        tick.explicit_members.push(Rc::clone(member));
      }
    }
    tick
  }

  fn make_explicit(&self, tick: &mut Tick, member: &Rc<Member>) {
    if tick.explicit.insert(member.conn.id) {
      tick.explicit_members.push(Rc::clone(member));
    }
  }

  /// Writes the event `id` (`shared[start..end]`) of a channel without a
  /// flush window: for everyone, it joins the tick's shared write and goes
  /// now only to the explicit members; for some members only, everyone is
  /// handed the tick's events so far and it goes to each one it is for.
  fn deliver_in_tick(
    self: &Rc<Self>,
    env: &Env,
    shared: &Rc<SharedBytes>,
    id: ChannelId,
    start: usize,
    end: usize,
    targets: &Targets,
  ) -> Result<()> {
    let mut schedule = false;
    let explicit = {
      let mut tick = self.tick_mut();
      if !matches!(targets, Targets::All) {
        // Rare: give up the shared write for this tick.
        let implicit: Vec<Rc<Member>> = self
          .members
          .borrow()
          .iter()
          .filter(|member| !tick.explicit.contains(&member.conn.id))
          .cloned()
          .collect();
        let handed = tick.batch.clone().map(|batch| (batch, tick.last));
        for member in &implicit {
          self.make_explicit(&mut tick, member);
        }
        drop(tick);
        if let Some((batch, last)) = handed {
          for member in &implicit {
            self.hand_over(env, member, &batch, start, last)?;
          }
        }
        tick = self.tick_mut();
      }
      if tick.batch.is_none() {
        tick.batch = Some(Rc::clone(shared));
        schedule = true;
      }
      tick.last = id;
      tick.explicit_members.clone()
    };
    if schedule && matches!(targets, Targets::All) {
      let flusher: Rc<dyn TickFlush> = Rc::clone(self) as Rc<dyn TickFlush>;
      self.runtime.enqueue_flusher(env, flusher)?;
    }
    self.deliver_to(env, &explicit, shared, &[(id, start, end, targets)])
  }

  /// Gives `member` the tick's shared bytes up to `upto` (the events up to
  /// `last`), which it would otherwise get at the end of the tick.
  fn hand_over(
    &self,
    env: &Env,
    member: &Rc<Member>,
    batch: &Rc<SharedBytes>,
    upto: usize,
    last: ChannelId,
  ) -> Result<()> {
    if upto == 0 || member.conn.is_closed() || member.is_joining() {
      return Ok(());
    }
    member.after.set(member.after.get().max(last));
    member.conn.push_shared_untouched(env, batch, 0, upto)?;
    Ok(())
  }

  /// The end-of-tick shared write: the tick's bytes to every member that
  /// is not explicit, in one JS loop over `responses`.
  fn write_tick(&self, env: &Env) -> Result<()> {
    let Some((batch, _, explicit)) = self.take_tick() else {
      return Ok(());
    };
    self.prune_left(env);
    if batch.len() == 0 || self.closed.get() {
      return Ok(());
    }
    let skip: Vec<u32> = {
      let index = self.index.borrow();
      explicit
        .iter()
        .filter_map(|id| index.get(id).map(|&position| position as u32))
        .collect()
    };
    if skip.len() >= self.members.borrow().len() {
      return Ok(());
    }
    let responses = self.responses_value(env)?;
    self
      .runtime
      .write_shared(env, &batch, responses, &skip, |position| {
        let members = self.members.borrow();
        members
          .get(position as usize)
          .map(|member| Rc::clone(&member.conn))
      })
  }

  /// Ends the current tick's state: its batch (if something was broadcast),
  /// the id of its newest event and the explicit members.
  fn take_tick(&self) -> Option<(Rc<SharedBytes>, ChannelId, HashSet<u64>)> {
    let mut tick = self.tick.borrow_mut();
    tick.flushed = true;
    tick.explicit_members.clear();
    let explicit = std::mem::take(&mut tick.explicit);
    tick.batch.take().map(|batch| (batch, tick.last, explicit))
  }

  fn responses_value(&self, env: &Env) -> Result<js::Value> {
    match self.responses.borrow().as_ref() {
      Some(responses) => Ok(responses.get_value(env)?.raw()),
      None => Err(Error::new(
        Status::GenericFailure,
        "the channel is released",
      )),
    }
  }

  /// Notes a member whose replay is on its way (Redis): it takes events
  /// one by one.
  pub(crate) fn note_joining(&self, member: &Rc<Member>) {
    self.one_by_one.borrow_mut().push(Rc::clone(member));
    self.make_explicit(&mut self.tick_mut(), member);
  }

  /// The shared bytes of the current tick: a new batch once the end-of-tick
  /// flush has run, the old one emptied when no member still holds it.
  fn tick_batch(&self) -> Rc<SharedBytes> {
    let generation = self.runtime.generation();
    let mut batch = self.batch.borrow_mut();
    if let Some((made_in, shared)) = batch.as_ref() {
      if Rc::strong_count(shared) == 1 {
        shared.clear();
        let shared = Rc::clone(shared);
        *batch = Some((generation, Rc::clone(&shared)));
        return shared;
      }
      if *made_in == generation {
        return Rc::clone(shared);
      }
    }
    let shared = Rc::new(SharedBytes::default());
    *batch = Some((generation, Rc::clone(&shared)));
    shared
  }

  /// Writes the events `(id, start, end, targets)` of `shared` to every
  /// member they are for and has not got them yet, in order.
  fn deliver(
    &self,
    env: &Env,
    shared: &Rc<SharedBytes>,
    events: &[(ChannelId, usize, usize, &Targets)],
  ) -> Result<()> {
    let members = self.members_snapshot();
    self.deliver_to(env, &members, shared, events)
  }

  /// [`Core::deliver`] to `members` only.
  fn deliver_to(
    &self,
    env: &Env,
    members: &[Rc<Member>],
    shared: &Rc<SharedBytes>,
    events: &[(ChannelId, usize, usize, &Targets)],
  ) -> Result<()> {
    let mut first_error = None;
    {
      for member in members.iter() {
        if member.conn.is_closed() {
          continue;
        }
        for &(id, start, end, targets) in events {
          if id <= member.after.get() || !targets.includes(member) {
            continue;
          }
          member.after.set(id);
          if let Some(queue) = member.joining.borrow_mut().as_mut() {
            queue.push((id, shared.bytes()[start..end].to_vec()));
            continue;
          }
          match member.conn.push_shared(env, shared, start, end) {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) => {
              first_error.get_or_insert(err);
              break;
            }
          }
        }
      }
    }
    self.prune_left(env);
    first_error.map_or(Ok(()), Err)
  }

  /// Starts the flush window's timer.
  fn arm_window(self: &Rc<Self>, env: &Env, ms: u64) -> Result<()> {
    let weak = Rc::downgrade(self);
    let fire =
      env.create_function_from_closure::<(), (), _>("flushChannelWindow", move |ctx| match weak
        .upgrade()
      {
        Some(core) => core.flush_window(ctx.env),
        None => Ok(()),
      })?;
    self.runtime.set_timeout(env.raw(), fire.raw(), ms)
  }

  /// Writes the broadcasts that waited for the flush window.
  fn flush_window(&self, env: &Env) -> Result<()> {
    let Some(window) = &self.window else {
      return Ok(());
    };
    window.armed.set(false);
    let queue = std::mem::take(&mut *window.queue.borrow_mut());
    let shared = std::mem::replace(
      &mut *window.bytes.borrow_mut(),
      Rc::new(SharedBytes::default()),
    );
    if queue.is_empty() {
      return Ok(());
    }
    let events: Vec<_> = queue
      .iter()
      .map(|queued| (queued.id, queued.start, queued.end, &queued.targets))
      .collect();
    self.deliver(env, &shared, &events)
  }

  /// Tells a member without `Last-Event-ID` where the channel stands.
  pub(crate) fn write_position(
    &self,
    env: &Env,
    member: &Rc<Member>,
    head: ChannelId,
  ) -> Result<()> {
    let mut text = Vec::new();
    head.write(&mut text);
    member.conn.push(env, |out| {
      frame::push_position(out, &text);
      Ok(())
    })?;
    Ok(())
  }

  /// Tells a member that the events after its `Last-Event-ID` are not all
  /// known: `event: reset` with the channel's position as its id, so that
  /// after reloading it resumes from here.
  pub(crate) fn write_reset(
    &self,
    env: &Env,
    member: &Rc<Member>,
    head: ChannelId,
    reason: Resume,
  ) -> Result<()> {
    let mut id = Vec::new();
    head.write(&mut id);
    let data = format!("{{\"reason\":\"{}\"}}", reason.reason());
    member.conn.push(env, |out| {
      frame::push_event(
        out,
        &Event {
          id: Some(EventId::Text(&id)),
          name: Some(b"reset"),
          data: data.as_bytes(),
        },
      );
      Ok(())
    })?;
    Ok(())
  }

  pub(crate) fn remove_member(&self, env: &Env, conn_id: u64) {
    // A member that leaves while open keeps the events broadcast before.
    if let Some(member) = self.member_of(conn_id) {
      let _ = self.touched(env, &member);
    }
    let Ok(mut members) = self.members.try_borrow_mut() else {
      self.left.borrow_mut().push(conn_id);
      return;
    };
    let mut index = self.index.borrow_mut();
    let Some(position) = index.remove(&conn_id) else {
      return;
    };
    let member = members.swap_remove(position);
    if let Some(moved) = members.get(position) {
      index.insert(moved.conn.id, position);
    }
    let last = members.len();
    drop((members, index));
    if let Ok(responses) = self.responses_value(env) {
      let raw = env.raw();
      let moved = if position < last {
        js::element(raw, responses, last as u32).ok()
      } else {
        None
      };
      if let Some(moved) = moved {
        let _ = js::set_element(raw, responses, position as u32, moved);
      }
      if let Ok(length) = js::uint32(raw, last as u32) {
        let _ = js::set_named(raw, responses, c"length", length);
      }
    }
    {
      let mut tick = self.tick.borrow_mut();
      if tick.explicit.remove(&conn_id) {
        tick
          .explicit_members
          .retain(|other| other.conn.id != conn_id);
      }
    }
    member.conn.leave(self as *const Core as *const ());
    let sse = member.sse.borrow_mut().take();
    if let Some(sse) = sse {
      let _ = sse.unref(env);
    }
  }

  fn prune_left(&self, env: &Env) {
    let left = std::mem::take(&mut *self.left.borrow_mut());
    for conn_id in left {
      self.remove_member(env, conn_id);
    }
  }

  /// Whether `member` is (still) in the channel.
  pub(crate) fn contains(&self, member: &Rc<Member>) -> bool {
    let index = self.index.borrow();
    let members = self.members.borrow();
    index
      .get(&member.conn.id)
      .and_then(|&position| members.get(position))
      .is_some_and(|found| Rc::ptr_eq(found, member))
  }

  pub(crate) fn members_snapshot(&self) -> Vec<Rc<Member>> {
    self.members.borrow().clone()
  }

  fn close(&self, env: &Env) -> Result<()> {
    if self.closed.get() {
      return Ok(());
    }
    let flushed = self.flush_window(env);
    self.hand_over_tick(env);
    self.closed.set(true);
    if let Source::Redis(link) = &self.source {
      link.stop(env)?;
    }
    self.release(env);
    flushed
  }

  /// A member's connection takes other bytes: unless it is explicit for
  /// this tick already, it is handed the tick's events so far and becomes
  /// explicit.
  fn touched(&self, env: &Env, member: &Rc<Member>) -> Result<()> {
    if self.window.is_some() || self.runtime.is_flushing() {
      return Ok(());
    }
    let handed = {
      let mut tick = self.tick_mut();
      if tick.explicit.contains(&member.conn.id) {
        return Ok(());
      }
      self.make_explicit(&mut tick, member);
      tick.batch.clone().map(|batch| (batch, tick.last))
    };
    if let Some((batch, last)) = handed {
      let upto = batch.len();
      self.hand_over(env, member, &batch, upto, last)?;
    }
    Ok(())
  }

  /// Hands this tick's events to every member that would have got them in
  /// the end-of-tick write (the channel is closing).
  fn hand_over_tick(&self, env: &Env) {
    let Some((batch, last, explicit)) = self.take_tick() else {
      return;
    };
    let upto = batch.len();
    for member in self.members_snapshot() {
      if !explicit.contains(&member.conn.id) {
        let _ = self.hand_over(env, &member, &batch, upto, last);
      }
    }
  }

  /// Lets go of every member and its SSE reference.
  fn release(&self, env: &Env) {
    if !self.closed.get() {
      self.hand_over_tick(env);
    }
    self.closed.set(true);
    if let Some(responses) = self.responses.borrow_mut().take() {
      let _ = responses.unref(env);
    }
    *self.tick.borrow_mut() = Tick::default();
    self.one_by_one.borrow_mut().clear();
    let members = std::mem::take(&mut *self.members.borrow_mut());
    self.index.borrow_mut().clear();
    self.left.borrow_mut().clear();
    for member in members {
      member.conn.leave(self as *const Core as *const ());
      let sse = member.sse.borrow_mut().take();
      if let Some(sse) = sse {
        let _ = sse.unref(env);
      }
    }
    if let Source::Redis(link) = &self.source {
      link.release(env);
    }
  }

  /// The member whose connection is `conn_id`, unless the list is busy.
  fn member_of(&self, conn_id: u64) -> Option<Rc<Member>> {
    let index = self.index.borrow();
    let members = self.members.try_borrow().ok()?;
    index
      .get(&conn_id)
      .and_then(|&position| members.get(position).cloned())
  }
}

impl Membership for Core {
  fn member_closed(&self, env: &Env, conn: &Connection) {
    self.remove_member(env, conn.id);
  }

  fn member_shared(&self, env: &Env, conn: &Rc<Connection>) {
    let member = self.member_of(conn.id);
    if let Some(member) = member {
      {
        let mut one_by_one = self.one_by_one.borrow_mut();
        if !one_by_one.iter().any(|other| Rc::ptr_eq(other, &member)) {
          one_by_one.push(Rc::clone(&member));
        }
      }
      if let Err(err) = self.touched(env, &member) {
        js::throw_uncaught(env.raw(), err);
      }
    }
  }

  fn member_touched(&self, env: &Env, conn: &Rc<Connection>) {
    let member = self.member_of(conn.id);
    if let Some(member) = member {
      if let Err(err) = self.touched(env, &member) {
        js::throw_uncaught(env.raw(), err);
      }
    }
  }
}

impl TickFlush for Core {
  fn flush_tick(&self, env: &Env) -> Result<()> {
    self.write_tick(env)
  }
}

impl Member {
  pub(crate) fn conn(&self) -> &Rc<Connection> {
    &self.conn
  }

  pub(crate) fn after(&self) -> ChannelId {
    self.after.get()
  }

  pub(crate) fn set_after(&self, id: ChannelId) {
    self.after.set(id);
  }

  /// Marks the member as waiting for its replay; live events queue up.
  pub(crate) fn start_joining(&self) {
    *self.joining.borrow_mut() = Some(Vec::new());
  }

  /// Ends the wait: the live events that queued up, oldest first.
  pub(crate) fn finish_joining(&self) -> Vec<Waiting> {
    self.joining.borrow_mut().take().unwrap_or_default()
  }

  pub(crate) fn is_joining(&self) -> bool {
    self.joining.borrow().is_some()
  }
}

/// `sse`, which must be an SSE instance: its object and the Rust value.
fn expect_sse<'env>(
  env: &'env Env,
  sse: Unknown<'env>,
  call: &str,
) -> Result<(Object<'env>, &'env SSE)> {
  let not_sse = || {
    type_error(
      env,
      errors::INVALID_ARGUMENT,
      &format!("{call}: sse must be an SSE instance (new SSE(req, res))"),
    )
  };
  if sse.get_type()? != ValueType::Object {
    return Err(not_sse());
  }
  let instance = unsafe { ClassInstance::<SSE>::from_napi_value(env.raw(), sse.raw()) };
  match instance {
    Ok(instance) => {
      let object = instance.as_object(env);
      let inner: &SSE = unsafe { &*(&*instance as *const SSE) };
      Ok((object, inner))
    }
    Err(_) => {
      // The failed unwrap may have left nothing pending; either way the
      // TypeError below is what the caller sees.
      clear_pending(env);
      Err(not_sse())
    }
  }
}

fn clear_pending(env: &Env) {
  let mut pending = false;
  unsafe { sys::napi_is_exception_pending(env.raw(), &mut pending) };
  if pending {
    let mut ignored = std::ptr::null_mut();
    unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &mut ignored) };
  }
}

/// `options.to` of `broadcast()`.
/// The `options` of `broadcast()`: who the event is for (`to`) and whether
/// it is kept for replay (`replay`, default `true`).
fn read_broadcast_options(
  env: &Env,
  core: &Rc<Core>,
  options: Option<Unknown>,
  redis: bool,
) -> Result<(Targets, bool)> {
  let Some(options) = options else {
    return Ok((Targets::All, true));
  };
  match options.get_type()? {
    ValueType::Undefined | ValueType::Null => return Ok((Targets::All, true)),
    ValueType::Object => {}
    other => {
      return Err(errors::wrong_type(
        env,
        errors::INVALID_OPTION,
        &format!("{BROADCAST}: options"),
        "an object",
        other,
      ))
    }
  }
  let raw = env.raw();
  let replay = js::get(raw, options.raw(), c"replay")?;
  let replay = match ValueType::from(js::type_of(raw, replay)?) {
    ValueType::Undefined => true,
    ValueType::Boolean => js::as_bool(raw, replay)? == Some(true),
    other => {
      return Err(errors::wrong_type(
        env,
        errors::INVALID_OPTION,
        &format!("{BROADCAST}: options.replay"),
        "a boolean",
        other,
      ))
    }
  };
  let to = js::get(raw, options.raw(), c"to")?;
  let to = unsafe { Unknown::from_raw_unchecked(raw, to) };
  Ok((read_to(env, core, to, redis)?, replay))
}

/// `options.to` of `broadcast()`.
fn read_to(env: &Env, core: &Rc<Core>, to: Unknown, redis: bool) -> Result<Targets> {
  let raw = env.raw();
  match to.get_type()? {
    ValueType::Undefined => Ok(Targets::All),
    ValueType::Function if redis => Err(type_error(
      env,
      errors::INVALID_OPTION,
      &format!("{BROADCAST}: options.to cannot be a function on a Redis channel (it would have to run on every server): give an array of UUIDs"),
    )),
    ValueType::Function => {
      let mut chosen = HashSet::new();
      for member in core.members_snapshot() {
        if member.conn.is_closed() {
          continue;
        }
        let Some(sse) = member.sse.borrow().as_ref().map(|sse| sse.get_value(env)).transpose()? else {
          continue;
        };
        let answer = js::call(raw, js::undefined(raw)?, to.raw(), &[sse.raw()])?;
        if js::as_bool(raw, answer)? == Some(true) {
          chosen.insert(member.conn.id);
        }
      }
      Ok(Targets::Connections(chosen))
    }
    ValueType::Object if to.is_array()? => {
      let array = unsafe { to.cast::<Object>() }?;
      let count = array.get_array_length()?;
      let mut uuids = HashSet::with_capacity(count as usize);
      for i in 0..count {
        let uuid: Unknown = array.get_element(i)?;
        if uuid.get_type()? != ValueType::String {
          return Err(errors::wrong_type(
            env,
            errors::INVALID_OPTION,
            &format!("{BROADCAST}: options.to[{i}]"),
            "a UUID string",
            uuid.get_type()?,
          ));
        }
        uuids.insert(unsafe { uuid.cast::<String>() }?);
      }
      Ok(Targets::Uuids(uuids))
    }
    other => Err(errors::wrong_type(
      env,
      errors::INVALID_OPTION,
      &format!("{BROADCAST}: options.to"),
      "an array of UUIDs or a function (sse) => boolean",
      other,
    )),
  }
}

struct GivenChannelOptions<'env> {
  options: ChannelOptions,
  /// The Redis client and the stream key.
  redis: Option<(js::Value, String)>,
  _env: std::marker::PhantomData<&'env ()>,
}

fn read_channel_options<'env>(
  env: &Env,
  value: Option<Unknown<'env>>,
) -> Result<GivenChannelOptions<'env>> {
  let mut given = GivenChannelOptions {
    options: ChannelOptions::default(),
    redis: None,
    _env: std::marker::PhantomData,
  };
  let Some(object) = open::options_object(env, value, NEW_CHANNEL)? else {
    return Ok(given);
  };
  let options = &mut given.options;
  let rules: [(&str, &mut u64, u64, u64); 4] = [
    ("historyEvents", &mut options.history_events, 0, 1 << 24),
    (
      "historyBytes",
      &mut options.history_bytes,
      0,
      options::MAX_SAFE_INTEGER,
    ),
    (
      "flushWindow",
      &mut options.flush_window_ms,
      0,
      options::MAX_TIMER_MS,
    ),
    ("maxLen", &mut options.max_len, 1, options::MAX_SAFE_INTEGER),
  ];
  for (name, slot, min, max) in rules {
    let value: Unknown = object.get_named_property(name)?;
    match value.get_type()? {
      ValueType::Undefined => {}
      ValueType::Number => {
        let number = unsafe { value.cast::<f64>() }?;
        *slot = options::integer_in(number, min, max)
          .map_err(|rule| channel_option_error(env, name, &rule))?;
      }
      other => {
        return Err(channel_option_error(
          env,
          name,
          &format!("must be a number (got {})", errors::type_name(other)),
        ))
      }
    }
  }
  let redis: Unknown = object.get_named_property("redis")?;
  let stream: Unknown = object.get_named_property("stream")?;
  match redis.get_type()? {
    ValueType::Undefined | ValueType::Null => {
      if stream.get_type()? != ValueType::Undefined {
        return Err(channel_option_error(
          env,
          "stream",
          "needs options.redis (a stream is read from Redis)",
        ));
      }
    }
    ValueType::Object => {
      let client = unsafe { redis.cast::<Object>() }?;
      for method in ["xadd", "xread", "duplicate", "multi"] {
        let member: Unknown = client.get_named_property(method)?;
        if member.get_type()? != ValueType::Function {
          return Err(channel_option_error(
            env,
            "redis",
            &format!("must be an ioredis client: redis.{method} is not a function"),
          ));
        }
      }
      if stream.get_type()? != ValueType::String {
        return Err(channel_option_error(
          env,
          "stream",
          &format!(
            "must be the Redis stream key, a non-empty string (got {})",
            errors::type_name(stream.get_type()?)
          ),
        ));
      }
      let key = unsafe { stream.cast::<String>() }?;
      if key.is_empty() {
        return Err(channel_option_error(
          env,
          "stream",
          "must be the Redis stream key, a non-empty string (got an empty string)",
        ));
      }
      given.redis = Some((redis.raw(), key));
    }
    other => {
      return Err(channel_option_error(
        env,
        "redis",
        &format!(
          "must be an ioredis client (got {})",
          errors::type_name(other)
        ),
      ))
    }
  }
  Ok(given)
}

fn channel_option_error(env: &Env, name: &str, rule: &str) -> Error {
  errors::option_error(env, NEW_CHANNEL, name, rule)
}

/// Milliseconds since the Unix epoch: the `ms` part of an in-process
/// channel's ids.
fn epoch_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|elapsed| elapsed.as_millis() as u64)
    .unwrap_or(0)
}
