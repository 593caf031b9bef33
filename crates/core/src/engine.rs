//! The engine: every stream and channel of one JavaScript environment, and
//! every decision about them.
//!
//! It is sans-I/O. It is driven by `&mut self` calls (a stream opened, an
//! event sent, a response that drained, the end of a tick) and answers with
//! what to do: flags (see [`flags`]), the bytes to write (handed to the
//! caller's closure in [`Engine::flush`]) and [`Action`]s (destroy a
//! response, report a length, read a Redis page). It never calls out, so a
//! caller that runs user code (a `res.write` wrapper, a predicate) between
//! two calls always finds it in a consistent state, and a call made from
//! inside that user code is served like any other.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::bytes::{Batch, Chunk};
use crate::channel::{Channel, Member, Queued, Source, Targets, Waiting, Window};
use crate::drain::{DrainOptions, DrainScope, Drains};
use crate::event_id::ChannelId;
use crate::frame::{self, Event, EventId};
use crate::heartbeat::{Heartbeats, BEATS_PER_FIRING};
use crate::history::{History, Resume};
use crate::metrics::{ChannelSnapshot, Counters, Snapshot};
use crate::redis::{self, ReadCheck, StreamInfo};
use crate::slab::{Key, Slab};
use crate::stream::{CloseReason, Replay, Stream};
use crate::validate::{self, FieldError};

/// Bits of the number most calls answer with.
pub mod flags {
  /// The bytes were accepted for the stream.
  pub const ACCEPTED: u32 = 1;
  /// Something is queued and no flush is scheduled yet: schedule one for
  /// the end of the tick ([`super::Engine::flush`]).
  pub const SCHEDULE: u32 = 2;
  /// [`super::Engine::take_actions`] has work.
  pub const ACTIONS: u32 = 4;
  /// The stream's own bytes passed [`super::FLUSH_AT_BYTES`]: write them
  /// now ([`super::Engine::write_now`]) unless a flush is being carried out.
  pub const FLUSH_NOW: u32 = 8;
  /// A channel's flush window must be armed (its timer started).
  pub const ARM_WINDOW: u32 = 16;
  /// The heartbeat timer must be armed for [`super::Engine::timer_due`].
  pub const TIMER: u32 = 32;
}

/// Past this many bytes queued in one tick, a stream's bytes are written at
/// once instead of at the end of the tick, which bounds its buffer.
pub const FLUSH_AT_BYTES: usize = 128 * 1024;

/// A batch allocation larger than this is not kept for the next tick.
pub const KEEP_BATCH_CAPACITY: usize = 256 * 1024;

/// Replays written at the same time; more wait their turn.
pub const DEFAULT_MAX_REPLAYS: usize = 32;

/// Entries read from Redis per replay page.
pub const REDIS_PAGE_ENTRIES: u32 = 100;

/// Work the caller must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
  /// The stream went past its cap and is closed (`'overflow'`): destroy its
  /// response. The number is the bytes it held then (for the overflow's
  /// diagnostics message).
  Destroy(Key, u64),
  /// The stream is closed by the engine (`'server'`): write `bytes`, if
  /// any, then end its response. (A Redis replay that could not be read:
  /// the client reconnects and asks again.)
  End(Key, Vec<u8>),
  /// The stream may be past its cap, going by the last length its response
  /// reported: report its current `writableLength` ([`Engine::length`]).
  NeedLength(Key),
  /// The stream was ended by a drain (`'server'`, see [`Engine::drain`]):
  /// write `bytes` (what it still had, then its `retry:` frame), end its
  /// response, and destroy the response if it has not finished within the
  /// drain's timeout.
  Drained(Key, Vec<u8>),
  /// Read a replay page from the channel's Redis stream: the window
  /// (`XINFO STREAM`) together with the entries from `from` on when
  /// `first`, else the entries after `from` up to `until`. A first page
  /// also reads whether the entry at `reader` (the reader's position) is
  /// there ([`Page::reader_present`]), in the same `MULTI`.
  RedisReplay {
    channel: Key,
    stream: Key,
    from: ChannelId,
    until: ChannelId,
    first: bool,
    count: u32,
    reader: Option<ChannelId>,
  },
}

/// Text from the caller: a JavaScript string in the binding, `str` in tests.
pub trait Text {
  /// Appends the UTF-8 form, each lone surrogate as U+FFFD (what Node's
  /// `napi_get_value_string_utf8` writes; see [`append_utf16`]).
  fn append_utf8(&self, out: &mut Vec<u8>);
  /// Whether the text has no lone surrogates. Only asked when its UTF-8
  /// form holds U+FFFD, which is how a lone surrogate shows there.
  fn is_well_formed(&self) -> bool;
}

impl Text for &str {
  fn append_utf8(&self, out: &mut Vec<u8>) {
    out.extend_from_slice(self.as_bytes());
  }
  fn is_well_formed(&self) -> bool {
    true
  }
}

impl Text for &[u8] {
  fn append_utf8(&self, out: &mut Vec<u8>) {
    out.extend_from_slice(self);
  }
  fn is_well_formed(&self) -> bool {
    true
  }
}

/// Appends the UTF-8 form of UTF-16 code units, each lone surrogate as
/// U+FFFD: byte for byte what Node (V8) writes for the same JavaScript
/// string. The binding reads strings this way where the engine's own UTF-8
/// conversion does not replace lone surrogates (emnapi, under WASI).
pub fn append_utf16(out: &mut Vec<u8>, units: &[u16]) {
  out.reserve(units.len());
  for c in char::decode_utf16(units.iter().copied()) {
    let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
    if c.is_ascii() {
      out.push(c as u8);
    } else {
      let mut buf = [0; 4];
      out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
  }
}

/// UTF-16 code units, as JavaScript strings hold them (tests).
impl Text for &[u16] {
  fn append_utf8(&self, out: &mut Vec<u8>) {
    append_utf16(out, self);
  }
  fn is_well_formed(&self) -> bool {
    validate::check_utf16(self).is_ok()
  }
}

/// Appends `text` to `out` and checks it against the single-line field
/// rules; on failure `out` is as it was.
pub fn append_field(out: &mut Vec<u8>, text: &dyn Text) -> Result<(), FieldError> {
  let start = out.len();
  text.append_utf8(out);
  let written = &out[start..];
  let checked = validate::check_single_line(written).and_then(|()| {
    if validate::may_hide_lone_surrogate(written) && !text.is_well_formed() {
      Err(FieldError::LoneSurrogate)
    } else {
      Ok(())
    }
  });
  if checked.is_err() {
    out.truncate(start);
  }
  checked
}

/// Which field of an event broke a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventError {
  Name(FieldError),
  Id(FieldError),
}

/// Why a channel call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
  /// `close()` was called.
  Closed,
  /// No such channel (released).
  Gone,
}

/// An event checked and copied out of the caller, waiting to be broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
  pub name: Vec<u8>,
  pub data: Vec<u8>,
}

impl Prepared {
  pub fn new(name: &dyn Text, data: &dyn Text) -> Result<Prepared, FieldError> {
    let mut prepared = Prepared::default();
    append_field(&mut prepared.name, name)?;
    data.append_utf8(&mut prepared.data);
    Ok(prepared)
  }

  /// Framed with `id`.
  fn frame(&self, id: ChannelId, out: &mut Vec<u8>) {
    let mut id_text = Vec::with_capacity(24);
    id.write(&mut id_text);
    frame::push_event(
      out,
      &Event {
        id: Some(EventId::Text(&id_text)),
        name: Some(&self.name),
        data: &self.data,
      },
    );
  }
}

/// How a stream opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
  pub max_buffered: u64,
  pub keep_alive_ms: u64,
  pub retry_ms: Option<u64>,
  pub welcome: bool,
  /// The id of the first counted event (see `Options::first_event_id`).
  pub first_id: u64,
}

/// Where a channel's events come from, when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelSource {
  /// In-process, with ids `<epoch>-<n>` and a history of that many events
  /// and bytes.
  Local {
    epoch: u64,
    history_events: usize,
    history_bytes: usize,
  },
  /// A Redis stream.
  Redis,
}

/// One entry of a Redis stream, as the reader or a replay page gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
  pub id: Option<ChannelId>,
  /// `None` when the entry has no `event` or `data` field (not ours).
  pub name: Option<String>,
  pub data: Option<String>,
  /// The UUIDs it is for, comma-separated; `None` for everyone.
  pub to: Option<String>,
  /// `false` for live-only events (`replay 0`).
  pub replay: bool,
}

/// A replay page read from Redis.
#[derive(Debug, Clone, Default)]
pub struct Page {
  /// The stream's `XINFO STREAM`, on the first page (`None`: no such key).
  pub info: Option<StreamInfo>,
  pub entries: Vec<Entry>,
  /// On the first page, whether the entry at the reader's position (the
  /// request's `reader`) was in the stream.
  pub reader_present: bool,
}

impl Page {
  /// The last id ever added to the stream (0-0 when it is missing).
  pub fn head(&self) -> ChannelId {
    redis::window(self.info.as_ref()).1
  }
}

#[derive(Debug)]
struct RemoteCursor {
  channel: Key,
  /// The first page (with the stream's window) was asked for.
  started: bool,
  /// The replay continues after this id ...
  after: ChannelId,
  /// ... up to this one.
  until: ChannelId,
  fetching: bool,
  /// Frames of this replay were queued (it is counted as a replay).
  replayed: bool,
  /// The reader's position and the largest `entries-added` it had seen
  /// when the first page was asked for: Redis ran the reads that gave
  /// them before the page, so the page's stream holds that position and
  /// counts at least as many entries, unless it is another stream.
  reader: (ChannelId, Option<u64>),
}

/// One flush, grouped for writing (see [`Engine::flush_plan`]).
#[derive(Debug)]
pub struct Plan<V> {
  /// The only chunk for one stream, while there is one.
  pub first: Option<(Key, V)>,
  /// Chunks for one stream each, when there are several (then `first` is
  /// `None`), in the order the streams were queued.
  pub single: Vec<(Key, V)>,
  /// Values for whole batches, each with the streams that get it.
  pub groups: Vec<(V, Vec<Key>)>,
  pub flags: u32,
}

/// Everything of one environment.
pub struct Engine {
  streams: Slab<Stream>,
  channels: Slab<Channel>,
  /// Streams with bytes for the next flush.
  queue: Vec<Key>,
  scheduled: bool,
  /// Flushes so far: a channel's tick batch belongs to one.
  flushes: u64,
  tokens: u64,
  heartbeats: Heartbeats,
  /// Open streams with a heartbeat: when none is left, the queue is
  /// emptied and the timer disarmed.
  beating: usize,
  /// The time the heartbeat timer is armed for, as reported with
  /// [`flags::TIMER`].
  timer_due: Option<u64>,
  actions: Vec<Action>,
  replays_running: usize,
  replays_waiting: VecDeque<Key>,
  max_replays: usize,
  /// Redis replays, by stream: a cursor for each channel it replays, read
  /// one after the other (the first is the one being read).
  cursors: std::collections::HashMap<Key, VecDeque<RemoteCursor>>,
  staged: Slab<Prepared>,
  counters: Counters,
  /// Drains in progress (see [`Engine::drain`]).
  drains: Drains,
}

impl Default for Engine {
  fn default() -> Self {
    Engine::new()
  }
}

/// Queues a stream that got bytes and checks its cap; the part of
/// `after_push` that needs only the queue, so it can run while a channel is
/// borrowed.
struct Queue<'a> {
  queue: &'a mut Vec<Key>,
  scheduled: &'a mut bool,
  actions: &'a mut Vec<Action>,
}

/// What [`Queue::pushed`] found.
enum Pushed {
  Flags(u32),
  /// Past the cap: close the stream for overflow.
  Overflow,
}

impl Queue<'_> {
  fn pushed(&mut self, key: Key, stream: &mut Stream) -> Pushed {
    let mut out = flags::ACCEPTED;
    if stream.over_cap() {
      if stream.res_queued == 0 {
        return Pushed::Overflow;
      }
      // The response's length may be out of date (it may have drained in
      // part): ask for it before deciding.
      if !self.actions.contains(&Action::NeedLength(key)) {
        self.actions.push(Action::NeedLength(key));
      }
      out |= flags::ACTIONS;
    }
    if !stream.queued {
      stream.queued = true;
      self.queue.push(key);
    }
    // Also when the stream was queued already: a call that could not
    // report [`flags::SCHEDULE`] leaves it queued without a flush.
    if !*self.scheduled {
      *self.scheduled = true;
      out |= flags::SCHEDULE;
    }
    if stream.replay.is_none() && stream.pending.len() >= FLUSH_AT_BYTES {
      out |= flags::FLUSH_NOW;
    }
    Pushed::Flags(out)
  }
}

impl Engine {
  pub fn new() -> Engine {
    Engine {
      streams: Slab::default(),
      channels: Slab::default(),
      queue: Vec::new(),
      scheduled: false,
      flushes: 0,
      tokens: 0,
      heartbeats: Heartbeats::default(),
      beating: 0,
      timer_due: None,
      actions: Vec::new(),
      replays_running: 0,
      replays_waiting: VecDeque::new(),
      max_replays: DEFAULT_MAX_REPLAYS,
      cursors: std::collections::HashMap::new(),
      staged: Slab::default(),
      counters: Counters::default(),
      drains: Drains::default(),
    }
  }

  /// How many replays may be written at once (at least 1).
  pub fn set_max_replays(&mut self, max: usize) {
    self.max_replays = max.max(1);
  }

  /// After bytes were added to `key`: queues it, checks its cap.
  fn after_push(&mut self, key: Key) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    let mut queue = Queue {
      queue: &mut self.queue,
      scheduled: &mut self.scheduled,
      actions: &mut self.actions,
    };
    match queue.pushed(key, stream) {
      Pushed::Flags(out) => out,
      Pushed::Overflow => self.overflow(key),
    }
  }

  // ----- streams -----

  /// Opens a stream: the `retry:` block and the welcome event are queued
  /// (the welcome without an `id:` line when the client resumes, so that
  /// it keeps its position), and its heartbeat is scheduled. `None` when
  /// the engine holds as many streams as it can.
  pub fn open_stream(
    &mut self,
    uuid: String,
    last_event_id: Option<String>,
    options: StreamOptions,
    now_ms: u64,
  ) -> Option<(Key, u32)> {
    let resuming = last_event_id.is_some();
    let mut stream = Stream::new(uuid, last_event_id, options.max_buffered);
    stream.keep_alive_ms = options.keep_alive_ms;
    stream.next_id = options.first_id;
    let mut opening = Vec::new();
    if let Some(ms) = options.retry_ms {
      frame::push_retry(&mut opening, ms);
    }
    if options.welcome {
      let data = frame::welcome_data(&stream.uuid);
      frame::push_event(
        &mut opening,
        &Event {
          id: (!resuming).then_some(EventId::Number(0)),
          name: Some(b"welcome"),
          data: data.as_bytes(),
        },
      );
    }
    let key = self.streams.insert(stream)?;
    self.counters.streams_opened += 1;
    let mut out = 0;
    if options.keep_alive_ms > 0 {
      let due = now_ms.saturating_add(options.keep_alive_ms);
      if let Some(stream) = self.streams.get_mut(key) {
        stream.next_beat_ms = due;
      }
      self.heartbeats.schedule(key, due);
      self.beating += 1;
      out |= self.want_timer();
    }
    if !opening.is_empty() {
      out |= self.push_own_bytes(key, &opening);
    }
    if let Some(retry) = self.drains.on_open(now_ms) {
      // Everything is draining: the stream is sent elsewhere right after
      // its opening bytes.
      out |= self.drain_stream(key, retry);
    }
    Some((key, out | flags::ACCEPTED))
  }

  pub fn is_open(&self, key: Key) -> bool {
    self.streams.contains(key)
  }

  pub fn stream(&self, key: Key) -> Option<&Stream> {
    self.streams.get(key)
  }

  pub fn stream_count(&self) -> usize {
    self.streams.len()
  }

  fn push_own_bytes(&mut self, key: Key, bytes: &[u8]) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    let _ = stream.tail().push_own(|out| {
      out.extend_from_slice(bytes);
      Ok::<(), ()>(())
    });
    self.after_push(key)
  }

  /// Sends one event: `id: <id or the next number>`, `event: <name>`, the
  /// data lines. The counter moves only without an explicit id. `Ok(0)` on a
  /// closed stream; an error (nothing queued, the counter kept) when the
  /// name or id breaks a field rule.
  pub fn send(
    &mut self,
    key: Key,
    name: &dyn Text,
    data: &dyn Text,
    id: Option<&dyn Text>,
  ) -> Result<u32, EventError> {
    let Some(stream) = self.streams.get_mut(key) else {
      return Ok(0);
    };
    let mut id_text = Vec::new();
    if let Some(id) = id {
      append_field(&mut id_text, id).map_err(EventError::Id)?;
    }
    let event_id = match id {
      Some(_) => EventId::Text(&id_text),
      None => EventId::Number(stream.next_id),
    };
    stream.tail().push_own(|out| {
      frame::push_event_in_place(
        out,
        event_id,
        |out| append_field(out, name).map_err(EventError::Name),
        |out| {
          data.append_utf8(out);
          Ok(())
        },
      )
    })?;
    if id.is_none() {
      stream.next_id += 1;
    }
    self.counters.events += 1;
    Ok(self.after_push(key))
  }

  /// Sends a comment (`: <line>` per line, then a blank line); `0` on a
  /// closed stream.
  pub fn comment(&mut self, key: Key, text: &dyn Text) -> u32 {
    if self.streams.contains(key) {
      self.counters.comments += 1;
    }
    self.push_comment(key, text)
  }

  fn push_comment(&mut self, key: Key, text: &dyn Text) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    let mut line = Vec::new();
    text.append_utf8(&mut line);
    let _ = stream.tail().push_own(|out| {
      frame::push_comment(out, &line);
      Ok::<(), ()>(())
    });
    self.after_push(key)
  }

  /// Bytes this stream holds (not counting what its response holds).
  pub fn queued_bytes(&self, key: Key) -> u64 {
    self.streams.get(key).map_or(0, |stream| {
      (stream.pending.len() + stream.held.len()) as u64
    })
  }

  /// The response reported `len` bytes queued (Node's `writableLength`),
  /// as [`Action::NeedLength`] asked: past the cap, the stream is closed
  /// for overflow.
  pub fn length(&mut self, key: Key, len: u64) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    stream.res_queued = len;
    if stream.over_cap() {
      return self.overflow(key);
    }
    flags::ACCEPTED
  }

  /// A write to the response returned `false` and it now holds `len`
  /// bytes: the stream waits for `'drain'` (replays pause); past the cap it
  /// is closed for overflow.
  pub fn backpressure(&mut self, key: Key, len: u64) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    stream.res_queued = len;
    stream.draining = true;
    if stream.over_cap() {
      return self.overflow(key);
    }
    flags::ACCEPTED
  }

  /// The response emitted `'drain'`: it holds nothing any more; a paused
  /// replay goes on.
  pub fn drained(&mut self, key: Key) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    stream.res_queued = 0;
    stream.draining = false;
    if stream.replay.is_some() {
      return self.requeue(key);
    }
    0
  }

  /// Puts `key` in the queue for the next flush even when it has nothing
  /// pending (a replay that goes on).
  fn requeue(&mut self, key: Key) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    if !stream.queued {
      stream.queued = true;
      self.queue.push(key);
    }
    if !self.scheduled {
      self.scheduled = true;
      return flags::SCHEDULE;
    }
    0
  }

  /// Writes the stream's pending bytes now (see [`flags::FLUSH_NOW`]).
  pub fn write_now<R>(&mut self, key: Key, write: impl FnOnce(Chunk<'_>) -> R) -> Option<R> {
    let stream = self.streams.get_mut(key)?;
    if stream.pending.is_empty() || stream.replay.is_some() {
      return None;
    }
    self.counters.bytes += stream.pending.len() as u64;
    Some(stream.pending.take(write))
  }

  /// Ends the stream (`close()`): hands what it still has, pending bytes,
  /// the rest of a replay, and what waited behind it, to `write` as one
  /// chunk, and forgets it. `None` when it was already closed.
  ///
  /// A Redis replay whose pages are not all read yet ends with the events
  /// it has: what waited behind it (live events after the replay's end)
  /// would follow a gap and move the client's `Last-Event-ID` past the
  /// events it never got, so it is left out; the client resumes from the
  /// last replayed event and gets the rest, those live events included.
  pub fn close<R>(&mut self, key: Key, write: impl FnOnce(Chunk<'_>) -> R) -> Option<R> {
    let (result, out) = self.close_and_report(key, &[], write)?;
    self.unreported(out);
    Some(result)
  }

  /// [`Engine::close`], with the flags of the replays that took its slot.
  /// `last` goes after everything (a drain's `retry:` frame).
  fn close_and_report<R>(
    &mut self,
    key: Key,
    last: &[u8],
    write: impl FnOnce(Chunk<'_>) -> R,
  ) -> Option<(R, u32)> {
    let mut out = 0;
    let stream = self.streams.get_mut(key)?;
    if let Some(replay) = stream.replay.take() {
      let mut rest = std::mem::take(&mut stream.held);
      for frame in replay.frames {
        let _ = stream.pending.push_own(|out| {
          out.extend_from_slice(&frame);
          Ok::<(), ()>(())
        });
      }
      // With Redis pages still to read, what waited behind the replay
      // would come after a gap (see `close`): left out.
      if !replay.more {
        stream.pending.append(&mut rest);
      }
      if replay.running {
        out |= self.replay_slot_freed();
      }
    }
    let stream = self.streams.get_mut(key)?;
    if !last.is_empty() {
      let _ = stream.pending.push_own(|out| {
        out.extend_from_slice(last);
        Ok::<(), ()>(())
      });
    }
    self.counters.bytes += stream.pending.len() as u64;
    let result = stream.pending.take(write);
    out |= self.close_stream(key, CloseReason::Server).unwrap_or(0);
    Some((result, out))
  }

  /// The stream ended by itself (`reason`: the client left, or other code
  /// ended the response): its bytes are dropped. Returns whether it was
  /// still open.
  pub fn gone(&mut self, key: Key, reason: CloseReason) -> bool {
    let Some(out) = self.close_stream(key, reason) else {
      return false;
    };
    self.unreported(out);
    true
  }

  /// Closes the stream for overflow: [`flags::ACTIONS`] (its `Destroy`) and
  /// the flags of a replay that took its slot.
  fn overflow(&mut self, key: Key) -> u32 {
    let buffered = self.streams.get(key).map_or(0, Stream::buffered);
    match self.close_stream(key, CloseReason::Overflow) {
      Some(out) => {
        self.actions.push(Action::Destroy(key, buffered));
        out | flags::ACTIONS
      }
      None => 0,
    }
  }

  /// What a call that cannot answer with flags (it returns something
  /// else) does with the flags of the work it started: a flush it would
  /// have asked for is not claimed, so the streams stay queued and the
  /// next call that queues anything asks for the flush. (Claiming it
  /// unreported would leave `scheduled` set with no flush coming, and every
  /// later call would take a flush for granted.) Actions need nothing: the
  /// caller looks at them after every call.
  /// Claims the end-of-tick flush when streams are queued and none is
  /// scheduled (after a call that could not report it: `gone`, `close`,
  /// `remove`): [`flags::SCHEDULE`] or 0.
  pub fn claim_flush(&mut self) -> u32 {
    if !self.queue.is_empty() && !self.scheduled {
      self.scheduled = true;
      return flags::SCHEDULE;
    }
    0
  }

  fn unreported(&mut self, out: u32) {
    if out & flags::SCHEDULE != 0 {
      self.scheduled = false;
    }
  }

  /// Forgets the stream: out of its channels, its bytes and heartbeat gone.
  /// Returns the flags of a waiting replay that took its slot.
  fn close_stream(&mut self, key: Key, reason: CloseReason) -> Option<u32> {
    let mut stream = self.streams.remove(key)?;
    self.counters.closed(reason);
    if stream.keep_alive_ms > 0 {
      self.beating = self.beating.saturating_sub(1);
      if self.beating == 0 {
        // Nothing left to beat for: the timer need not fire for entries of
        // streams that are gone (see `timer_due`).
        self.heartbeats = Heartbeats::default();
        self.timer_due = None;
      }
    }
    for channel in std::mem::take(&mut stream.channels) {
      if let Some(channel) = self.channels.get_mut(channel) {
        if channel.take(key).is_some() {
          channel.counters.member_closed(reason);
        }
      }
    }
    self.cursors.remove(&key);
    self.replays_waiting.retain(|waiting| *waiting != key);
    let mut out = 0;
    if stream.replay.as_ref().is_some_and(|replay| replay.running) {
      out = self.replay_slot_freed();
    }
    stream.release();
    Some(out)
  }

  /// End of the tick: every queued stream's bytes, one chunk per stream, to
  /// `write`. Replays take their next step here.
  pub fn flush(&mut self, mut write: impl FnMut(Key, Chunk<'_>)) -> u32 {
    self.scheduled = false;
    self.flushes += 1;
    let mut queue = std::mem::take(&mut self.queue);
    let mut again = Vec::new();
    let mut finished = 0;
    for &key in &queue {
      let Some(stream) = self.streams.get_mut(key) else {
        continue;
      };
      stream.queued = false;
      if !stream.draining && stream.refill() {
        finished += 1;
      }
      if !stream.pending.is_empty() {
        self.counters.bytes += stream.pending.len() as u64;
        stream.pending.take(|chunk| write(key, chunk));
      }
      if let Some(replay) = &stream.replay {
        if replay.running && !replay.frames.is_empty() && !stream.draining {
          again.push(key);
        }
      }
    }
    queue.clear();
    self.queue = queue;
    let mut out = 0;
    for _ in 0..finished {
      // The replays that take the slots are queued for the next flush.
      out |= self.replay_slot_freed();
    }
    for key in again {
      out |= self.requeue(key);
    }
    out |= self.fetch_pages();
    if !self.actions.is_empty() {
      out |= flags::ACTIONS;
    }
    out
  }

  /// [`Engine::flush`], grouped for writing: `bytes` makes the caller's
  /// value (a JS string or `Buffer`) for one stream's chunk, `batch` one
  /// value for a whole batch, shared by every stream whose bytes are
  /// exactly that batch. The first value made by `bytes` stays apart from
  /// the rest (`first`): most flushes write one stream, and then nothing is
  /// allocated. The first error stops the making of values; the flush
  /// itself is done (the bytes are taken) either way.
  pub fn flush_plan<V, E>(
    &mut self,
    mut bytes: impl FnMut(&[u8]) -> Result<V, E>,
    mut batch: impl FnMut(&[u8]) -> Result<V, E>,
  ) -> Result<Plan<V>, E> {
    let mut plan = Plan {
      first: None,
      single: Vec::new(),
      groups: Vec::new(),
      flags: 0,
    };
    let mut tokens: Vec<u64> = Vec::new();
    // Members of one batch come one after the other.
    let mut last: Option<usize> = None;
    let mut failed = None;
    plan.flags = self.flush(|key, chunk| {
      if failed.is_some() {
        return;
      }
      let made = match chunk {
        Chunk::Batch(shared) => {
          let found = match last {
            Some(at) if tokens[at] == shared.token => Some(at),
            _ => tokens.iter().position(|token| *token == shared.token),
          };
          if let Some(at) = found {
            plan.groups[at].1.push(key);
            last = Some(at);
            return;
          }
          batch(&shared.bytes()).map(|value| {
            tokens.push(shared.token);
            last = Some(plan.groups.len());
            plan.groups.push((value, vec![key]));
          })
        }
        Chunk::Bytes(chunk) => bytes(chunk).map(|value| {
          if plan.first.is_none() && plan.single.is_empty() {
            plan.first = Some((key, value));
          } else {
            plan.single.extend(plan.first.take());
            plan.single.push((key, value));
          }
        }),
      };
      if let Err(err) = made {
        failed = Some(err);
      }
    });
    match failed {
      Some(err) => Err(err),
      None => Ok(plan),
    }
  }

  /// Takes the work the caller must carry out.
  pub fn take_actions(&mut self) -> Vec<Action> {
    std::mem::take(&mut self.actions)
  }

  pub fn has_actions(&self) -> bool {
    !self.actions.is_empty()
  }

  // ----- heartbeats -----

  /// Reports [`flags::TIMER`] when the heartbeat timer must be armed for an
  /// earlier time than it is.
  fn want_timer(&mut self) -> u32 {
    match self.heartbeats.next_due() {
      Some(due) if self.timer_due.is_none_or(|armed| due < armed) => {
        self.timer_due = Some(due);
        flags::TIMER
      }
      _ => 0,
    }
  }

  /// When the heartbeat timer should fire, once [`flags::TIMER`] said so;
  /// `None` once no stream has a heartbeat (the timer can be cleared).
  pub fn timer_due(&self) -> Option<u64> {
    self.timer_due
  }

  /// The heartbeat timer fired: a heartbeat comment for each stream that
  /// is due (at most [`BEATS_PER_FIRING`]; the rest a millisecond later).
  pub fn beat(&mut self, now_ms: u64) -> u32 {
    self.timer_due = None;
    let mut out = 0;
    let mut beaten = 0;
    while beaten < BEATS_PER_FIRING {
      let Some((due, key)) = self.heartbeats.pop_due(now_ms) else {
        break;
      };
      let Some(stream) = self.streams.get_mut(key) else {
        continue;
      };
      if stream.keep_alive_ms == 0 || stream.next_beat_ms != due {
        continue;
      }
      let next = due.saturating_add(stream.keep_alive_ms).max(now_ms + 1);
      stream.next_beat_ms = next;
      self.heartbeats.schedule(key, next);
      beaten += 1;
      self.counters.heartbeats += 1;
      out |= self.push_comment(key, &"");
    }
    if beaten == BEATS_PER_FIRING && self.heartbeats.next_due().is_some_and(|due| due <= now_ms) {
      self.timer_due = Some(now_ms + 1);
      return out | flags::TIMER;
    }
    out | self.want_timer()
  }

  // ----- replays -----

  /// Gives `key`'s replay a slot, or queues it for one.
  fn start_replay(&mut self, key: Key) -> u32 {
    if self.replays_running >= self.max_replays {
      self.replays_waiting.push_back(key);
      return 0;
    }
    self.run_replay(key)
  }

  fn run_replay(&mut self, key: Key) -> u32 {
    let Some(stream) = self.streams.get_mut(key) else {
      return 0;
    };
    let Some(replay) = stream.replay.as_mut() else {
      return 0;
    };
    replay.running = true;
    self.replays_running += 1;
    if self.cursors.contains_key(&key) {
      return self.fetch_pages();
    }
    self.requeue(key)
  }

  /// A replay slot is free: waiting replays take it. Returns what they
  /// ask for (a flush; a page is an action).
  fn replay_slot_freed(&mut self) -> u32 {
    self.replays_running = self.replays_running.saturating_sub(1);
    let mut out = 0;
    while self.replays_running < self.max_replays {
      let Some(next) = self.replays_waiting.pop_front() else {
        break;
      };
      if self.streams.contains(next) {
        out |= self.run_replay(next);
      }
    }
    out
  }

  /// Replays that have run out of frames and have more to read from Redis
  /// ask for their next page.
  fn fetch_pages(&mut self) -> u32 {
    let mut out = 0;
    for (&stream_key, cursors) in self.cursors.iter_mut() {
      let Some(cursor) = cursors.front_mut() else {
        continue;
      };
      if cursor.fetching {
        continue;
      }
      let Some(stream) = self.streams.get(stream_key) else {
        continue;
      };
      if !stream.replay_starved() {
        continue;
      }
      cursor.fetching = true;
      let first = !cursor.started;
      cursor.started = true;
      let reader = if first {
        cursor.reader = match self.channels.get(cursor.channel).map(|c| &c.source) {
          Some(Source::Redis {
            head: Some(head),
            added,
            ..
          }) => (*head, *added),
          _ => (ChannelId::ZERO, None),
        };
        Some(cursor.reader.0)
      } else {
        None
      };
      self.actions.push(Action::RedisReplay {
        channel: cursor.channel,
        stream: stream_key,
        from: cursor.after,
        until: cursor.until,
        first,
        count: REDIS_PAGE_ENTRIES,
        reader,
      });
      out |= flags::ACTIONS;
    }
    out
  }

  // ----- channels -----

  pub fn open_channel(&mut self, source: ChannelSource, window_ms: u64) -> Option<Key> {
    let source = match source {
      ChannelSource::Local {
        epoch,
        history_events,
        history_bytes,
      } => Source::Local {
        epoch,
        history: History::new(ChannelId::new(epoch, 0), history_events, history_bytes),
      },
      ChannelSource::Redis => Source::Redis {
        head: None,
        added: None,
        probe: None,
      },
    };
    let key = self.channels.insert(Channel::new(source, window_ms))?;
    self.counters.channels_opened += 1;
    Some(key)
  }

  pub fn channel(&self, key: Key) -> Option<&Channel> {
    self.channels.get(key)
  }

  /// The members' streams, in order (for a `to` predicate).
  pub fn members(&self, channel: Key) -> Vec<Key> {
    self
      .channels
      .get(channel)
      .map(|channel| channel.members.iter().map(|m| m.stream).collect())
      .unwrap_or_default()
  }

  /// Adds `stream` to `channel`: what it receives first follows from its
  /// `Last-Event-ID` (see [`crate::history::resume`]). `Ok((false, _))` when the
  /// stream has ended; adding a member again does nothing.
  pub fn add(&mut self, channel_key: Key, stream_key: Key) -> Result<(bool, u32), ChannelError> {
    let channel = open_channel(&mut self.channels, channel_key)?;
    if channel.index.contains_key(&stream_key) {
      return Ok((true, 0));
    }
    let Some(stream) = self.streams.get_mut(stream_key) else {
      return Ok((false, 0));
    };
    stream.channels.push(channel_key);
    channel.counters.joined += 1;
    let last = stream.last_event_id.clone();
    let mut member = Member {
      stream: stream_key,
      after: ChannelId::ZERO,
      joining: None,
    };
    match &channel.source {
      Source::Local { epoch, history } => {
        let head = history.head();
        member.after = head;
        let decision = last
          .as_ref()
          .map(|text| match ChannelId::parse(text.as_bytes()) {
            Some(id) => (id, history.resume(id, Some(*epoch))),
            None => (ChannelId::ZERO, Resume::Unknown),
          });
        let frames = match decision {
          Some((id, Resume::Replay)) => Some(history.snapshot_after(id)),
          _ => None,
        };
        channel.insert(member);
        match (decision, frames) {
          (None, _) => Ok((true, self.push_position(channel_key, stream_key, head))),
          (Some(_), Some(frames)) if frames.is_empty() => Ok((true, 0)),
          (Some(_), Some(frames)) => {
            let bytes = frames.iter().map(|frame| frame.len()).sum::<usize>();
            self.count_replay(channel_key, bytes);
            Ok((true, self.begin_replay(stream_key, frames, false)))
          }
          (Some((_, reason)), None) => {
            Ok((true, self.push_reset(channel_key, stream_key, head, reason)))
          }
        }
      }
      Source::Redis { head, .. } => {
        let head = *head;
        member.joining = Some(Vec::new());
        member.after = head.unwrap_or(ChannelId::ZERO);
        channel.insert(member);
        match head {
          None => Ok((true, 0)),
          Some(head) => Ok((true, self.join_redis(channel_key, stream_key, head))),
        }
      }
    }
  }

  /// Starts a replay of `frames` on `stream` (bytes queued afterwards wait
  /// behind it); `more` when more frames are to come from Redis.
  fn begin_replay(&mut self, stream_key: Key, frames: VecDeque<Rc<[u8]>>, more: bool) -> u32 {
    let Some(stream) = self.streams.get_mut(stream_key) else {
      return 0;
    };
    match stream.replay.as_mut() {
      Some(replay) => {
        // A second channel's replay follows the first one's.
        replay.frames.extend(frames);
        replay.more |= more;
        0
      }
      None => {
        stream.replay = Some(Replay {
          frames,
          more,
          running: false,
        });
        self.start_replay(stream_key)
      }
    }
  }

  fn push_position(&mut self, channel_key: Key, stream: Key, head: ChannelId) -> u32 {
    let mut id = Vec::new();
    head.write(&mut id);
    let mut out = Vec::new();
    frame::push_position(&mut out, &id);
    if let Some(channel) = self.channels.get_mut(channel_key) {
      channel.counters.bytes += out.len() as u64;
    }
    self.push_own_bytes(stream, &out)
  }

  fn reset_frame(head: ChannelId, reason: Resume) -> Vec<u8> {
    let mut id = Vec::new();
    head.write(&mut id);
    let data = format!("{{\"reason\":\"{}\"}}", reason.reason());
    let mut out = Vec::new();
    frame::push_event(
      &mut out,
      &Event {
        id: Some(EventId::Text(&id)),
        name: Some(b"reset"),
        data: data.as_bytes(),
      },
    );
    out
  }

  fn push_reset(&mut self, channel_key: Key, stream: Key, head: ChannelId, reason: Resume) -> u32 {
    let frame = Self::reset_frame(head, reason);
    self.count_reset(channel_key, frame.len());
    self.push_own_bytes(stream, &frame)
  }

  /// A member got a `reset` of `bytes` bytes from `channel_key`.
  fn count_reset(&mut self, channel_key: Key, bytes: usize) {
    self.counters.resets += 1;
    if let Some(channel) = self.channels.get_mut(channel_key) {
      channel.counters.resets += 1;
      channel.counters.bytes += bytes as u64;
    }
  }

  /// A member's replay from `channel_key` started with `bytes` bytes (a
  /// Redis replay's pages add theirs as they come).
  fn count_replay(&mut self, channel_key: Key, bytes: usize) {
    self.counters.replays += 1;
    if let Some(channel) = self.channels.get_mut(channel_key) {
      channel.counters.replays += 1;
      channel.counters.bytes += bytes as u64;
    }
  }

  // ----- metrics -----

  /// The engine's counters and gauges.
  pub fn metrics(&self) -> Snapshot {
    Snapshot {
      counters: self.counters,
      streams_open: self.streams.len() as u64,
    }
  }

  /// A channel's counters and member count; `None` once it is released.
  pub fn channel_metrics(&self, channel_key: Key) -> Option<ChannelSnapshot> {
    let channel = self.channels.get(channel_key)?;
    Some(ChannelSnapshot {
      counters: channel.counters,
      members: channel.members.len() as u64,
    })
  }

  /// Takes `stream` out of `channel` (its stream stays open). Returns
  /// whether it was a member.
  pub fn remove(&mut self, channel_key: Key, stream_key: Key) -> bool {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return false;
    };
    if channel.take(stream_key).is_none() {
      return false;
    }
    channel.counters.left_removed += 1;
    if let Some(stream) = self.streams.get_mut(stream_key) {
      stream.channels.retain(|key| *key != channel_key);
    }
    if self.replays_from(stream_key, channel_key) {
      let out = self.end_remote_replay(stream_key, channel_key);
      self.unreported(out);
    }
    true
  }

  /// The cursor of the Redis replay being read for `stream`.
  fn cursor_mut(&mut self, stream: Key) -> Option<&mut RemoteCursor> {
    self.cursors.get_mut(&stream)?.front_mut()
  }

  /// Whether `stream` replays `channel` from Redis (now or next).
  fn replays_from(&self, stream: Key, channel: Key) -> bool {
    self
      .cursors
      .get(&stream)
      .is_some_and(|cursors| cursors.iter().any(|cursor| cursor.channel == channel))
  }

  /// Drops `stream`'s cursor of `channel`; returns whether the cursor of
  /// another channel is left (the replay has more to come).
  fn drop_cursor(&mut self, stream: Key, channel: Key) -> bool {
    let Some(cursors) = self.cursors.get_mut(&stream) else {
      return false;
    };
    cursors.retain(|cursor| cursor.channel != channel);
    if cursors.is_empty() {
      self.cursors.remove(&stream);
      return false;
    }
    true
  }

  /// A Redis replay whose member left the channel stops; what waited behind
  /// it goes out (after the replay of another channel, if one is left).
  fn end_remote_replay(&mut self, stream_key: Key, channel_key: Key) -> u32 {
    let more = self.drop_cursor(stream_key, channel_key);
    let Some(stream) = self.streams.get_mut(stream_key) else {
      return 0;
    };
    if let Some(replay) = stream.replay.as_mut() {
      replay.more = more;
    }
    self.requeue(stream_key)
  }

  /// Keeps a prepared event until [`Engine::broadcast_staged`] or
  /// [`Engine::unstage`] (a predicate runs in between).
  pub fn stage(&mut self, prepared: Prepared) -> Option<Key> {
    self.staged.insert(prepared)
  }

  pub fn unstage(&mut self, key: Key) -> Option<Prepared> {
    self.staged.remove(key)
  }

  /// Broadcasts an in-process channel's event: the next id, framed once,
  /// kept in the history unless it is targeted or not for `replay`, and
  /// delivered now (to the tick's shared batch) or when the flush window
  /// ends.
  pub fn broadcast(
    &mut self,
    channel_key: Key,
    prepared: &Prepared,
    targets: Targets,
    replay: bool,
  ) -> Result<(ChannelId, u32), ChannelError> {
    let flushes = self.flushes;
    let token = self.tokens + 1;
    let channel = open_channel(&mut self.channels, channel_key)?;
    let Source::Local { epoch, history } = &mut channel.source else {
      return Err(ChannelError::Gone);
    };
    let id = ChannelId::new(*epoch, history.head().seq + 1);
    channel.counters.broadcasts += 1;
    let mut framed = Vec::with_capacity(prepared.name.len() + prepared.data.len() + 48);
    prepared.frame(id, &mut framed);
    if targets.is_all() && replay {
      history.push(id, &framed);
    } else {
      history.pass(id);
    }
    let (batch, armed) = Self::batch_for(channel, flushes, token);
    self.tokens = token;
    let (start, end) = batch.append(&framed);
    Ok((
      id,
      self.deliver_or_queue(channel_key, id, &batch, start, end, targets, armed),
    ))
  }

  /// The batch a broadcast is framed into: the window's, or this tick's
  /// (a new one once a flush has passed, reusing the old allocation when no
  /// stream holds it and it is small). The flag says the window is new.
  fn batch_for(channel: &mut Channel, flushes: u64, token: u64) -> (Rc<Batch>, bool) {
    if channel.window_ms > 0 {
      if let Some(window) = &channel.window {
        return (Rc::clone(&window.batch), false);
      }
      let batch = Rc::new(Batch::new(token));
      channel.window = Some(Window {
        batch: Rc::clone(&batch),
        queue: Vec::new(),
      });
      return (batch, true);
    }
    if let Some((made_in, batch)) = &channel.tick {
      if *made_in == flushes {
        return (Rc::clone(batch), false);
      }
    }
    let batch = match channel.tick.take() {
      Some((_, mut batch)) => match Rc::get_mut(&mut batch) {
        Some(reusable) => {
          reusable.reset(token, KEEP_BATCH_CAPACITY);
          batch
        }
        None => Rc::new(Batch::new(token)),
      },
      None => Rc::new(Batch::new(token)),
    };
    channel.tick = Some((flushes, Rc::clone(&batch)));
    (batch, false)
  }

  #[allow(clippy::too_many_arguments)]
  fn deliver_or_queue(
    &mut self,
    channel_key: Key,
    id: ChannelId,
    batch: &Rc<Batch>,
    start: usize,
    end: usize,
    targets: Targets,
    armed: bool,
  ) -> u32 {
    if let Some(channel) = self.channels.get_mut(channel_key) {
      if let Some(window) = channel.window.as_mut() {
        window.queue.push(Queued {
          id,
          start,
          end,
          targets,
        });
        return if armed { flags::ARM_WINDOW } else { 0 };
      }
    }
    self.deliver(channel_key, id, batch, start, end, &targets)
  }

  /// Writes the event `id` (`batch[start..end]`) to every member it is for
  /// and has not got it.
  fn deliver(
    &mut self,
    channel_key: Key,
    id: ChannelId,
    batch: &Rc<Batch>,
    start: usize,
    end: usize,
    targets: &Targets,
  ) -> u32 {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    let mut queue = Queue {
      queue: &mut self.queue,
      scheduled: &mut self.scheduled,
      actions: &mut self.actions,
    };
    let mut out = 0;
    let mut over = Vec::new();
    let mut delivered = 0;
    for member in channel.members.iter_mut() {
      let Some(stream) = self.streams.get_mut(member.stream) else {
        continue;
      };
      if id <= member.after || !targets.includes(member.stream, &stream.uuid) {
        continue;
      }
      member.after = id;
      if let Some(waiting) = member.joining.as_mut() {
        waiting.push(Waiting {
          id,
          batch: Rc::clone(batch),
          start,
          end,
        });
        continue;
      }
      stream.push_shared(batch, start, end);
      delivered += 1;
      match queue.pushed(member.stream, stream) {
        Pushed::Flags(flags) => out |= flags & !flags::ACCEPTED,
        Pushed::Overflow => over.push(member.stream),
      }
    }
    channel.counters.deliveries += delivered;
    channel.counters.bytes += delivered * (end - start) as u64;
    self.counters.events += delivered;
    for key in over {
      out |= self.overflow(key);
    }
    out & !flags::FLUSH_NOW
  }

  /// The flush window ended: its broadcasts go to the members, in order.
  pub fn window_fire(&mut self, channel_key: Key) -> u32 {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    let Some(window) = channel.window.take() else {
      return 0;
    };
    let mut out = 0;
    for queued in &window.queue {
      out |= self.deliver(
        channel_key,
        queued.id,
        &window.batch,
        queued.start,
        queued.end,
        &queued.targets,
      );
    }
    if self
      .channels
      .get(channel_key)
      .is_some_and(|channel| channel.dropped)
    {
      out |= self.release_channel(channel_key);
    }
    out
  }

  /// `close()`: broadcasts waiting for the window go out now, every member
  /// leaves (its stream stays open), and nothing more is accepted.
  pub fn close_channel(&mut self, channel_key: Key) -> u32 {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    if channel.closed {
      return 0;
    }
    let out = self.window_fire(channel_key);
    if let Some(channel) = self.channels.get_mut(channel_key) {
      if !channel.closed {
        self.counters.channels_closed += 1;
      }
      channel.closed = true;
    }
    out | self.detach_members(channel_key)
  }

  fn detach_members(&mut self, channel_key: Key) -> u32 {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    let mut out = 0;
    let members = std::mem::take(&mut channel.members);
    channel.index.clear();
    channel.counters.left_removed += members.len() as u64;
    for member in members {
      if let Some(stream) = self.streams.get_mut(member.stream) {
        stream.channels.retain(|key| *key != channel_key);
      }
      if self.replays_from(member.stream, channel_key) {
        out |= self.end_remote_replay(member.stream, channel_key);
      }
    }
    out
  }

  /// The channel's JavaScript object was collected: it goes, once
  /// broadcasts waiting for its window have been written.
  pub fn drop_channel(&mut self, channel_key: Key) {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return;
    };
    channel.dropped = true;
    if channel.window.is_none() {
      let out = self.release_channel(channel_key);
      self.unreported(out);
    }
  }

  fn release_channel(&mut self, channel_key: Key) -> u32 {
    let out = self.detach_members(channel_key);
    if self
      .channels
      .remove(channel_key)
      .is_some_and(|channel| !channel.closed)
    {
      self.counters.channels_closed += 1;
    }
    self.drains.forget(channel_key);
    out
  }

  // ----- Redis channels -----

  /// Reading the stream started at `head`: members waiting for the
  /// position join now. Later calls do nothing.
  pub fn redis_ready(&mut self, channel_key: Key, head: ChannelId) -> u32 {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    let Source::Redis { head: known, .. } = &mut channel.source else {
      return 0;
    };
    if known.is_some() {
      return 0;
    }
    *known = Some(head);
    let waiting: Vec<Key> = channel
      .members
      .iter_mut()
      .filter(|member| member.joining.is_some())
      .map(|member| {
        member.after = head;
        member.stream
      })
      .collect();
    let mut out = 0;
    for stream in waiting {
      out |= self.join_redis(channel_key, stream, head);
    }
    out
  }

  /// Starts a member of a Redis channel whose head is known: its position
  /// when it has no `Last-Event-ID`, a reset for one that is not an id,
  /// else a replay whose first page is read from Redis.
  fn join_redis(&mut self, channel_key: Key, stream_key: Key, head: ChannelId) -> u32 {
    let Some(last) = self
      .streams
      .get(stream_key)
      .map(|stream| stream.last_event_id.clone())
    else {
      return 0;
    };
    match last
      .as_deref()
      .map(|text| ChannelId::parse(text.as_bytes()))
    {
      None => {
        let out = self.push_position(channel_key, stream_key, head);
        out | self.finish_join(channel_key, stream_key, head)
      }
      Some(None) => {
        let out = self.push_reset(channel_key, stream_key, head, Resume::Unknown);
        out | self.finish_join(channel_key, stream_key, head)
      }
      Some(Some(last)) => {
        // Live events after what the client has wait in the member until
        // the first page decides; not after `last` itself when that is
        // past what this process has read (a made-up id would hold back
        // every live event up to it).
        if let Some(member) = self
          .channels
          .get_mut(channel_key)
          .and_then(|channel| channel.member_mut(stream_key))
        {
          member.after = last.min(head);
        }
        // Behind the replay of another channel, if one is being read.
        self
          .cursors
          .entry(stream_key)
          .or_default()
          .push_back(RemoteCursor {
            channel: channel_key,
            started: false,
            after: last,
            until: head,
            fetching: false,
            replayed: false,
            reader: (ChannelId::ZERO, None),
          });
        let out = self.begin_replay(stream_key, VecDeque::new(), true);
        // A replay that got a slot at once asks for its first page now.
        out | self.fetch_pages()
      }
    }
  }

  /// The live events that waited while `stream` joined, those after `upto`
  /// (which it has by now), are queued; it is a live member from here on.
  fn finish_join(&mut self, channel_key: Key, stream_key: Key, upto: ChannelId) -> u32 {
    let Some(member) = self
      .channels
      .get_mut(channel_key)
      .and_then(|channel| channel.member_mut(stream_key))
    else {
      return 0;
    };
    let waiting = member.joining.take().unwrap_or_default();
    let mut after = upto.max(member.after);
    let Some(stream) = self.streams.get_mut(stream_key) else {
      return 0;
    };
    let (mut pushed, mut bytes) = (0, 0);
    for event in waiting {
      if event.id <= upto {
        continue;
      }
      after = after.max(event.id);
      stream.push_shared(&event.batch, event.start, event.end);
      pushed += 1;
      bytes += (event.end - event.start) as u64;
    }
    member.after = after;
    self.counters.events += pushed;
    if let Some(channel) = self.channels.get_mut(channel_key) {
      channel.counters.deliveries += pushed;
      channel.counters.bytes += bytes;
    }
    if pushed > 0 {
      self.after_push(stream_key)
    } else {
      0
    }
  }

  /// A replay page arrived (or, with `None`, could not be read).
  pub fn redis_replayed(
    &mut self,
    channel_key: Key,
    stream_key: Key,
    first: bool,
    page: Option<Page>,
  ) -> u32 {
    let Some(cursor) = self.cursor_mut(stream_key) else {
      return 0;
    };
    if cursor.channel != channel_key {
      return 0;
    }
    cursor.fetching = false;
    let (last, until) = (cursor.after, cursor.until);
    let member_here = self
      .channels
      .get(channel_key)
      .and_then(|channel| channel.member(stream_key))
      .is_some();
    if !member_here {
      return self.end_remote_replay(stream_key, channel_key);
    }
    let Some(page) = page else {
      // Redis could not answer: end the stream so the client reconnects
      // and asks again, still with its Last-Event-ID.
      self.cursors.remove(&stream_key);
      return self.end_for_retry(stream_key);
    };
    let mut out = 0;
    if first && self.read_elsewhere(stream_key, &page) {
      // The page read another stream than the reader reads (one made
      // again, or trimmed past the reader): the reader resets its members
      // when it reads that stream, and a member that replayed from it
      // would get a reset it does not need and then its events again. It
      // is ended, without a byte, and asks again (by then the reader is
      // on that stream).
      self.cursors.remove(&stream_key);
      return self.end_for_retry(stream_key);
    }
    if first {
      // The first entry at or after `last`: `last` itself when it is still
      // in the stream.
      let at = page.entries.iter().find_map(|entry| entry.id);
      let decision = redis::resume_from(last, page.info.as_ref(), at);
      let head = page.head();
      self.note_page_head(channel_key, head);
      if let Some(cursor) = self.cursor_mut(stream_key) {
        cursor.until = head;
      }
      if decision != Resume::Replay {
        let more = self.drop_cursor(stream_key, channel_key);
        let reset = Self::reset_frame(head, decision);
        self.count_reset(channel_key, reset.len());
        if let Some(replay) = self
          .streams
          .get_mut(stream_key)
          .and_then(|stream| stream.replay.as_mut())
        {
          replay.frames.push_back(reset.into());
          replay.more = more;
        }
        out |= self.finish_join(channel_key, stream_key, head);
        return out | self.requeue(stream_key);
      }
      out |= self.finish_join(channel_key, stream_key, head);
      return out | self.take_page(channel_key, stream_key, last, head, page.entries);
    }
    out | self.take_page(channel_key, stream_key, last, until, page.entries)
  }

  /// Whether a first page shows a stream on which the reader's position
  /// (when the page was asked for) does not hold: the reader will reset
  /// on it ([`redis::check_read`], with what the reader had seen then; a
  /// later read of the reader may have run after the page in Redis).
  fn read_elsewhere(&self, stream_key: Key, page: &Page) -> bool {
    let Some(cursor) = self.cursors.get(&stream_key).and_then(|c| c.front()) else {
      return false;
    };
    let (position, added) = cursor.reader;
    let check = redis::check_read(
      position,
      added,
      page.reader_present,
      None,
      page.info.as_ref(),
    );
    matches!(check, ReadCheck::Reset { .. })
  }

  /// Frames a page's entries after `last` and up to `until` into the
  /// stream's replay; the replay ends when a page comes back short.
  fn take_page(
    &mut self,
    channel_key: Key,
    stream_key: Key,
    last: ChannelId,
    until: ChannelId,
    entries: Vec<Entry>,
  ) -> u32 {
    let full = entries.len() as u32 >= REDIS_PAGE_ENTRIES;
    let mut newest = last;
    let mut frames = VecDeque::new();
    let mut replayed = 0;
    for entry in &entries {
      let Some(id) = entry.id else { continue };
      newest = newest.max(id);
      if id <= last || id > until || entry.to.is_some() || !entry.replay {
        continue;
      }
      if let Some(frame) = frame_entry(id, entry) {
        replayed += frame.len() as u64;
        frames.push_back(Rc::from(frame));
      }
    }
    // A replay counts once it has an event (a client that was up to date,
    // or missed only live-only events, got none).
    let counted = !frames.is_empty()
      && self
        .cursor_mut(stream_key)
        .is_some_and(|cursor| !std::mem::replace(&mut cursor.replayed, true));
    if counted {
      self.count_replay(channel_key, 0);
    }
    if let Some(channel) = self.channels.get_mut(channel_key) {
      channel.counters.bytes += replayed;
    }
    let done = !full || newest >= until;
    // Done with this channel, the replay may go on with another's.
    let more = if done {
      self.drop_cursor(stream_key, channel_key)
    } else {
      if let Some(cursor) = self.cursor_mut(stream_key) {
        cursor.after = newest;
      }
      true
    };
    if let Some(replay) = self
      .streams
      .get_mut(stream_key)
      .and_then(|stream| stream.replay.as_mut())
    {
      replay.frames.extend(frames);
      replay.more = more;
    }
    self.requeue(stream_key)
  }

  fn end_for_retry(&mut self, stream_key: Key) -> u32 {
    let mut bytes = Vec::new();
    let closed = self.close_and_report(stream_key, &[], |chunk| match chunk {
      Chunk::Bytes(b) => bytes.extend_from_slice(b),
      Chunk::Batch(batch) => bytes.extend_from_slice(&batch.bytes()),
    });
    if let Some(((), out)) = closed {
      self.actions.push(Action::End(stream_key, bytes));
      return out | flags::ACTIONS;
    }
    0
  }

  /// One entry read from the stream, in order: framed with its id and
  /// written to the members it is for. Entries that are not events of a
  /// native-sse channel, or that were read already, are skipped.
  pub fn redis_entry(&mut self, channel_key: Key, entry: &Entry) -> u32 {
    let flushes = self.flushes;
    let token = self.tokens + 1;
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return 0;
    };
    if channel.closed {
      return 0;
    }
    let Source::Redis { head, probe, .. } = &mut channel.source else {
      return 0;
    };
    let Some(id) = entry.id else {
      return 0;
    };
    if head.is_some_and(|head| id <= head) {
      return 0;
    }
    *head = Some(id);
    // The reader's own position is checked from here on.
    *probe = None;
    let Some(framed) = frame_entry(id, entry) else {
      return 0;
    };
    channel.counters.broadcasts += 1;
    let targets = match &entry.to {
      Some(list) => Targets::from_uuid_list(list, ','),
      None => Targets::All,
    };
    let (batch, armed) = Self::batch_for(channel, flushes, token);
    self.tokens = token;
    let (start, end) = batch.append(&framed);
    self.deliver_or_queue(channel_key, id, &batch, start, end, targets, armed)
  }
  // ----- graceful drain -----

  /// Ends every stream of `scope` for a shutdown or a deploy: broadcasts
  /// waiting for a flush window go out first, then each stream gets a
  /// `retry:` frame after what it still has (the values spread over the
  /// window, see [`crate::drain::retry_plan`]) and is closed (`'server'`,
  /// out of its channels), each as an [`Action::Drained`]. `seed` seeds the
  /// spread. Until the window is over, streams that open (`All`) or join
  /// the channel are ended the same way right after their opening bytes,
  /// with a `retry:` inside what is left of the window. Returns how many
  /// streams were ended, and the flags.
  pub fn drain(
    &mut self,
    scope: DrainScope,
    options: &DrainOptions,
    now_ms: u64,
    seed: u64,
  ) -> Result<(u32, u32), ChannelError> {
    let mut out = 0;
    let streams: Vec<Key> = match scope {
      DrainScope::All => {
        let windows: Vec<Key> = self
          .channels
          .keys()
          .filter(|&key| self.channels.get(key).is_some_and(|c| c.window.is_some()))
          .collect();
        for channel in windows {
          out |= self.window_fire(channel);
        }
        self.streams.keys().collect()
      }
      DrainScope::Channel(channel_key) => {
        open_channel(&mut self.channels, channel_key)?;
        out |= self.window_fire(channel_key);
        self.members(channel_key)
      }
    };
    let plan = self
      .drains
      .start(scope, options, now_ms, seed, streams.len());
    let mut ended = 0;
    for (key, retry) in streams.into_iter().zip(plan) {
      let drained = self.drain_stream(key, retry);
      if drained != 0 {
        ended += 1;
      }
      out |= drained;
    }
    Ok((ended, out))
  }

  /// [`Engine::add`] at `now_ms`: a stream that joins a draining channel is
  /// ended instead (it is not made a member), with a `retry:` inside what
  /// is left of the window.
  pub fn add_now(
    &mut self,
    channel_key: Key,
    stream_key: Key,
    now_ms: u64,
  ) -> Result<(bool, u32), ChannelError> {
    open_channel(&mut self.channels, channel_key)?;
    if !self.streams.contains(stream_key) {
      return Ok((false, 0));
    }
    if let Some(retry) = self.drains.on_add(channel_key, now_ms) {
      return Ok((true, self.drain_stream(stream_key, retry)));
    }
    self.add(channel_key, stream_key)
  }

  /// Ends one stream for a drain: `retry: <ms>` behind everything it
  /// has, all of it in one [`Action::Drained`]. 0 when it is not open.
  fn drain_stream(&mut self, key: Key, retry_ms: u64) -> u32 {
    let mut retry = Vec::with_capacity(24);
    frame::push_retry(&mut retry, retry_ms);
    // After everything, a replay in progress included (close takes the
    // replay, then what waited behind it).
    let mut bytes = Vec::new();
    let closed = self.close_and_report(key, &retry, |chunk| match chunk {
      Chunk::Bytes(b) => bytes.extend_from_slice(b),
      Chunk::Batch(batch) => bytes.extend_from_slice(&batch.bytes()),
    });
    match closed {
      Some(((), out)) => {
        self.actions.push(Action::Drained(key, bytes));
        out | flags::ACTIONS
      }
      None => 0,
    }
  }

  /// A first page found the stream at `head`: while the reader has read
  /// nothing, it checks that entry (see [`redis::check_read`]).
  fn note_page_head(&mut self, channel_key: Key, page_head: ChannelId) {
    let Some(Source::Redis { head, probe, .. }) = self
      .channels
      .get_mut(channel_key)
      .map(|channel| &mut channel.source)
    else {
      return;
    };
    // The first one is kept: a later page may have read a stream made
    // again, in which the first is missing.
    if *head == Some(ChannelId::ZERO) && page_head > ChannelId::ZERO && probe.is_none() {
      *probe = Some(page_head);
    }
  }

  /// The id the reader should check besides its own position (see
  /// [`Engine::redis_check`]), if any.
  pub fn redis_probe(&self, channel_key: Key) -> Option<ChannelId> {
    match &self.channels.get(channel_key)?.source {
      Source::Redis { probe, .. } => *probe,
      Source::Local { .. } => None,
    }
  }

  /// The reader read the stream: `present` says whether the entry at its
  /// position (the channel's head) was still there, `info` is the stream's
  /// `XINFO STREAM` at the same instant (`None`: no such key). Decides
  /// whether the entries of that read may be taken (see
  /// [`redis::check_read`]); when not, every member gets a reset and the
  /// head moves to where reading goes on (lower than before when the stream
  /// was made again), and the read's entries must be dropped: read again
  /// after the new head ([`crate::channel::Channel::head`]).
  ///
  /// `probe` is the id [`Engine::redis_probe`] gave before the read was
  /// sent, checked in the same read, and whether it was there.
  pub fn redis_check(
    &mut self,
    channel_key: Key,
    present: bool,
    probe: Option<(ChannelId, bool)>,
    info: Option<&StreamInfo>,
  ) -> (u32, ReadCheck) {
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return (0, ReadCheck::Continue);
    };
    let Source::Redis {
      head,
      added,
      probe: known,
    } = &mut channel.source
    else {
      return (0, ReadCheck::Continue);
    };
    let Some(last) = *head else {
      return (0, ReadCheck::Continue);
    };
    let check = redis::check_read(last, *added, present, probe, info);
    let now = info.and_then(|info| info.added);
    match check {
      ReadCheck::Continue => {
        *added = (*added).max(now);
        (0, check)
      }
      ReadCheck::Reset { to, reason } => {
        *added = now;
        *known = None;
        (self.redis_rebase(channel_key, to, reason), check)
      }
    }
  }

  /// The stream is not the one the members' positions are in any more:
  /// broadcasts waiting for the flush window go out first (they were read
  /// before), then every live member gets a reset with id `to`, and every
  /// member still joining or replaying from Redis is ended so that its
  /// client asks again (its replay would read the new stream). From here
  /// on the channel takes the ids after `to`.
  fn redis_rebase(&mut self, channel_key: Key, to: ChannelId, reason: Resume) -> u32 {
    let mut out = self.window_fire(channel_key);
    let Some(channel) = self.channels.get_mut(channel_key) else {
      return out;
    };
    if let Source::Redis { head, .. } = &mut channel.source {
      *head = Some(to);
    }
    let mut live = Vec::new();
    let mut retry = Vec::new();
    for member in channel.members.iter_mut() {
      let replaying = member.joining.is_some()
        || self
          .cursors
          .get(&member.stream)
          .is_some_and(|cursors| cursors.iter().any(|cursor| cursor.channel == channel_key));
      if replaying {
        retry.push(member.stream);
      } else {
        member.after = to;
        live.push(member.stream);
      }
    }
    for stream in live {
      out |= self.push_reset(channel_key, stream, to, reason);
    }
    for stream in retry {
      self.cursors.remove(&stream);
      out |= self.end_for_retry(stream);
    }
    out
  }
}

fn open_channel(channels: &mut Slab<Channel>, key: Key) -> Result<&mut Channel, ChannelError> {
  match channels.get_mut(key) {
    Some(channel) if channel.closed => Err(ChannelError::Closed),
    Some(channel) => Ok(channel),
    None => Err(ChannelError::Gone),
  }
}

/// The framed event of a stream entry, or `None` when it is not one this
/// library can send (no name or data, or a name that breaks a field rule).
fn frame_entry(id: ChannelId, entry: &Entry) -> Option<Vec<u8>> {
  let (name, data) = (entry.name.as_deref()?, entry.data.as_deref()?);
  validate::check_single_line(name.as_bytes()).ok()?;
  let prepared = Prepared {
    name: name.as_bytes().to_vec(),
    data: data.as_bytes().to_vec(),
  };
  let mut out = Vec::with_capacity(name.len() + data.len() + 48);
  prepared.frame(id, &mut out);
  Some(out)
}
