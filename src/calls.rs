//! The functions the JavaScript front calls: each converts its primitive
//! arguments, makes one core call with the engine borrowed, and converts
//! the answer. None of them calls into JavaScript. They are internal (left
//! out of the TypeScript types) and take stream and channel keys as numbers.

use std::collections::HashSet;

use napi::bindgen_prelude::*;
use napi::{sys, Env, ValueType};
use napi_derive::napi;
use native_sse_core::bytes::Chunk;
use native_sse_core::channel::Targets;
use native_sse_core::drain::{DrainOptions, DrainScope};
use native_sse_core::engine::{ChannelError, Entry, Page};
use native_sse_core::event_id::ChannelId;
use native_sse_core::history::Resume;
use native_sse_core::redis::{ReadCheck, StreamInfo};
use native_sse_core::validate::FieldError;
use native_sse_core::{flags, Action, CloseReason, Prepared, Text};

use crate::chunk;
use crate::errors::{self, type_error};
use crate::state::{key, State};
use crate::text::{JsBytes, JsText};

/// An event's data: a string (the JSON text, or text as it is) or bytes.
enum Body {
  Text(JsText),
  Bytes(JsBytes),
}

impl Body {
  fn read(env: &Env, call: &str, value: Unknown) -> Result<Body> {
    if value.get_type()? == ValueType::String {
      return Ok(Body::Text(JsText {
        env: env.raw(),
        value: value.raw(),
      }));
    }
    match JsBytes::new(env.raw(), value.raw()) {
      Some(bytes) => Ok(Body::Bytes(bytes)),
      None => Err(errors::wrong_type(
        env,
        errors::INVALID_DATA,
        &format!("{call}: event.data"),
        "a string, Buffer or Uint8Array",
        value.get_type()?,
      )),
    }
  }

  fn text(&self) -> &dyn Text {
    match self {
      Body::Text(text) => text,
      Body::Bytes(bytes) => bytes,
    }
  }
}

fn string(env: &Env, value: &Unknown) -> JsText {
  JsText {
    env: env.raw(),
    value: value.raw(),
  }
}

fn field_error(env: &Env, code: &str, call: &str, field: &str, rule: FieldError) -> Error {
  type_error(env, code, &format!("{call}: {field} {rule}"))
}

fn channel_error(env: &Env, call: &str, err: ChannelError) -> Error {
  match err {
    ChannelError::Closed | ChannelError::Gone => errors::state_error(
      env,
      errors::CHANNEL_CLOSED,
      &format!("{call}: the channel is closed"),
    ),
  }
}

/// A chunk as the value `res.write` takes.
fn chunk_value(env: &Env, chunk: Chunk<'_>) -> Result<sys::napi_value> {
  match chunk {
    Chunk::Bytes(bytes) => chunk::value(env.raw(), bytes),
    Chunk::Batch(batch) => chunk::buffer(env.raw(), &batch.bytes()),
  }
}

fn unknown<'env>(env: &'env Env, value: sys::napi_value) -> Unknown<'env> {
  // SAFETY: `value` was made in this call's handle scope by Node-API.
  unsafe { Unknown::from_raw_unchecked(env.raw(), value) }
}

// ----- streams -----

/// The response reported its `writableLength` (see `Action::NeedLength`).
#[napi(js_name = "streamLength", skip_typescript)]
pub fn stream_length(env: &Env, stream: f64, len: f64) -> Result<u32> {
  State::get(env)?.with(|engine| engine.length(key(stream), len.max(0.0) as u64))
}

/// A write returned `false`; the response holds `len` bytes.
#[napi(js_name = "streamBackpressure", skip_typescript)]
pub fn stream_backpressure(env: &Env, stream: f64, len: f64) -> Result<u32> {
  State::get(env)?.with(|engine| engine.backpressure(key(stream), len.max(0.0) as u64))
}

/// The response emitted `'drain'`.
#[napi(js_name = "streamDrained", skip_typescript)]
pub fn stream_drained(env: &Env, stream: f64) -> Result<u32> {
  State::get(env)?.with(|engine| engine.drained(key(stream)))
}

/// The stream's pending bytes, to write now; `undefined` when there are none.
#[napi(js_name = "streamWriteNow", skip_typescript)]
pub fn stream_write_now<'env>(env: &'env Env, stream: f64) -> Result<Unknown<'env>> {
  let state = State::get(env)?;
  let written =
    state.with(|engine| engine.write_now(key(stream), |chunk| chunk_value(env, chunk)))?;
  match written {
    Some(value) => Ok(unknown(env, value?)),
    None => ().into_unknown(env),
  }
}

/// `close()`: the stream's last bytes (`undefined` when none), or `null`
/// when it was closed already.
#[napi(js_name = "streamClose", skip_typescript)]
pub fn stream_close<'env>(env: &'env Env, stream: f64) -> Result<Unknown<'env>> {
  let state = State::get(env)?;
  let closed = state.with(|engine| {
    engine.close(key(stream), |chunk| match chunk {
      Chunk::Bytes([]) => Ok(None),
      chunk => chunk_value(env, chunk).map(Some),
    })
  })?;
  match closed {
    None => Null.into_unknown(env),
    Some(value) => match value? {
      Some(value) => Ok(unknown(env, value)),
      None => ().into_unknown(env),
    },
  }
}

/// The stream ended by itself: `reason` 1 the client left, 2 other code
/// ended the response. Returns whether it was open.
#[napi(js_name = "streamGone", skip_typescript)]
pub fn stream_gone(env: &Env, stream: f64, reason: u32) -> Result<bool> {
  let reason = if reason == 2 {
    CloseReason::Server
  } else {
    CloseReason::Client
  };
  State::get(env)?.with(|engine| engine.gone(key(stream), reason))
}

/// Bytes the stream holds (not counting its response).
#[napi(js_name = "streamQueuedBytes", skip_typescript)]
pub fn stream_queued_bytes(env: &Env, stream: f64) -> Result<f64> {
  State::get(env)?.with(|engine| engine.queued_bytes(key(stream)) as f64)
}

/// The work the front must carry out, flat: `1, stream` destroy (overflow);
/// `2, stream, chunk` end after writing `chunk` (or `undefined`);
/// `3, stream` report the length; `4, channel, stream, from, until, first,
/// count` read a Redis replay page; `5, stream, chunk` end after writing
/// `chunk`, for a drain (watch the response finish).
#[napi(js_name = "takeActions", skip_typescript)]
pub fn take_actions(env: &Env) -> Result<Array<'_>> {
  let state = State::get(env)?;
  let actions = state.with(|engine| engine.take_actions())?;
  let mut out = env.create_array(0)?;
  for action in actions {
    match action {
      Action::Destroy(stream, buffered) => {
        out.insert(1)?;
        out.insert(stream.to_bits() as f64)?;
        out.insert(buffered as f64)?;
      }
      Action::End(stream, bytes) => {
        out.insert(2)?;
        out.insert(stream.to_bits() as f64)?;
        if bytes.is_empty() {
          out.insert(())?;
        } else {
          out.insert(unknown(env, chunk::value(env.raw(), &bytes)?))?;
        }
      }
      Action::NeedLength(stream) => {
        out.insert(3)?;
        out.insert(stream.to_bits() as f64)?;
      }
      Action::Drained(stream, bytes) => {
        out.insert(5)?;
        out.insert(stream.to_bits() as f64)?;
        if bytes.is_empty() {
          out.insert(())?;
        } else {
          out.insert(unknown(env, chunk::value(env.raw(), &bytes)?))?;
        }
      }
      Action::RedisReplay {
        channel,
        stream,
        from,
        until,
        first,
        count,
        reader,
      } => {
        out.insert(4)?;
        out.insert(channel.to_bits() as f64)?;
        out.insert(stream.to_bits() as f64)?;
        out.insert(from.to_string())?;
        out.insert(until.to_string())?;
        out.insert(first)?;
        out.insert(count)?;
        out.insert(reader.map(|id| id.to_string()))?;
      }
    }
  }
  Ok(out)
}

/// The heartbeat timer fired.
#[napi(js_name = "heartbeat", skip_typescript)]
pub fn heartbeat(env: &Env) -> Result<u32> {
  let state = State::get(env)?;
  let now = state.now_ms();
  state.with(|engine| engine.beat(now))
}

/// After a stream ended or left a channel: the flags of work that started
/// (a replay that took a freed slot), plus 64 when no stream has a heartbeat
/// any more (the timer can be cleared).
#[napi(js_name = "afterEnd", skip_typescript)]
pub fn after_end(env: &Env) -> Result<u32> {
  State::get(env)?.with(|engine| {
    let disarmed = if engine.timer_due().is_none() { 64 } else { 0 };
    engine.claim_flush() | disarmed
  })
}

/// Milliseconds until the heartbeat timer should fire; -1 for never.
#[napi(js_name = "timerDelay", skip_typescript)]
pub fn timer_delay(env: &Env) -> Result<f64> {
  let state = State::get(env)?;
  let now = state.now_ms();
  let due = state.with(|engine| engine.timer_due())?;
  Ok(due.map_or(-1.0, |due| due.saturating_sub(now) as f64))
}

// ----- channels -----

const BROADCAST: &str = "broadcast(event, options)";

/// `add(sse)`: -1 when the stream has ended, else the flags.
#[napi(js_name = "channelAdd", skip_typescript)]
pub fn channel_add(env: &Env, channel: f64, stream: f64) -> Result<i64> {
  let state = State::get(env)?;
  let now = state.now_ms();
  let added = state.with(|engine| engine.add_now(key(channel), key(stream), now))?;
  match added {
    Ok((true, out)) => Ok(out as i64),
    Ok((false, _)) => Ok(-1),
    Err(err) => Err(channel_error(env, "add(sse)", err)),
  }
}

#[napi(js_name = "channelRemove", skip_typescript)]
pub fn channel_remove(env: &Env, channel: f64, stream: f64) -> Result<bool> {
  State::get(env)?.with(|engine| engine.remove(key(channel), key(stream)))
}

fn prepare(env: &Env, name: &Unknown, data: Unknown) -> Result<Prepared> {
  let body = Body::read(env, BROADCAST, data)?;
  Prepared::new(&string(env, name), body.text()).map_err(|rule| {
    field_error(
      env,
      errors::INVALID_EVENT_NAME,
      BROADCAST,
      "event.eventName",
      rule,
    )
  })
}

fn targets(to: Option<String>, streams: Option<Vec<f64>>) -> Targets {
  match (to, streams) {
    (_, Some(streams)) => Targets::Streams(streams.into_iter().map(key).collect::<HashSet<_>>()),
    (Some(list), None) => Targets::from_uuid_list(&list, '\n'),
    (None, None) => Targets::All,
  }
}

fn broadcast_result(
  env: &Env,
  result: std::result::Result<(ChannelId, u32), ChannelError>,
) -> Result<f64> {
  match result {
    // The sequence number and the flags in one exact number: seq * 64 + flags.
    Ok((id, out)) => Ok(id.seq as f64 * 64.0 + out as f64),
    Err(err) => Err(channel_error(env, BROADCAST, err)),
  }
}

/// `broadcast(event, { to, replay })` of an in-process channel; `to` is a
/// newline-separated UUID list or `undefined`. Returns `seq * 64 + flags`.
#[napi(js_name = "channelBroadcast", skip_typescript)]
pub fn channel_broadcast(
  env: &Env,
  channel: f64,
  name: Unknown,
  data: Unknown,
  replay: bool,
  to: Option<String>,
) -> Result<f64> {
  let prepared = prepare(env, &name, data)?;
  let result = State::get(env)?
    .with(|engine| engine.broadcast(key(channel), &prepared, targets(to, None), replay))?;
  broadcast_result(env, result)
}

/// Copies and checks an event before user code (a predicate, an option
/// getter) runs; returns its staging key.
#[napi(js_name = "channelStage", skip_typescript)]
pub fn channel_stage(env: &Env, name: Unknown, data: Unknown) -> Result<f64> {
  let prepared = prepare(env, &name, data)?;
  let staged = State::get(env)?.with(|engine| engine.stage(prepared))?;
  staged
    .map(|key| key.to_bits() as f64)
    .ok_or_else(|| Error::new(Status::GenericFailure, "native-sse: too many staged events"))
}

/// Forgets a staged event (the broadcast was abandoned).
#[napi(js_name = "channelUnstage", skip_typescript)]
pub fn channel_unstage(env: &Env, staged: f64) -> Result<()> {
  State::get(env)?.with(|engine| {
    engine.unstage(key(staged));
  })
}

/// Broadcasts a staged event, to `streams` when given (the members a
/// predicate chose), else as `to` says.
#[napi(js_name = "channelBroadcastStaged", skip_typescript)]
pub fn channel_broadcast_staged(
  env: &Env,
  channel: f64,
  staged: f64,
  replay: bool,
  to: Option<String>,
  streams: Option<Vec<f64>>,
) -> Result<f64> {
  let state = State::get(env)?;
  let result = state.with(|engine| {
    let prepared = engine.unstage(key(staged))?;
    Some(engine.broadcast(key(channel), &prepared, targets(to, streams), replay))
  })?;
  match result {
    Some(result) => broadcast_result(env, result),
    None => Err(Error::new(
      Status::GenericFailure,
      "native-sse: the staged event is gone",
    )),
  }
}

/// A staged event's name and data as strings (for a Redis `XADD`).
#[napi(js_name = "stagedText", skip_typescript)]
pub fn staged_text(env: &Env, staged: f64) -> Result<Vec<String>> {
  let prepared = State::get(env)?.with(|engine| engine.unstage(key(staged)))?;
  let Some(prepared) = prepared else {
    return Err(Error::new(
      Status::GenericFailure,
      "native-sse: the staged event is gone",
    ));
  };
  Ok(vec![
    String::from_utf8_lossy(&prepared.name).into_owned(),
    String::from_utf8_lossy(&prepared.data).into_owned(),
  ])
}

#[napi(js_name = "channelMembers", skip_typescript)]
pub fn channel_members(env: &Env, channel: f64) -> Result<Vec<f64>> {
  State::get(env)?.with(|engine| {
    engine
      .members(key(channel))
      .into_iter()
      .map(|stream| stream.to_bits() as f64)
      .collect()
  })
}

#[napi(js_name = "channelWindowFire", skip_typescript)]
pub fn channel_window_fire(env: &Env, channel: f64) -> Result<u32> {
  State::get(env)?.with(|engine| engine.window_fire(key(channel)))
}

#[napi(js_name = "channelClose", skip_typescript)]
pub fn channel_close(env: &Env, channel: f64) -> Result<u32> {
  State::get(env)?.with(|engine| engine.close_channel(key(channel)))
}

#[napi(js_name = "channelSize", skip_typescript)]
pub fn channel_size(env: &Env, channel: f64) -> Result<u32> {
  State::get(env)?.with(|engine| {
    engine
      .channel(key(channel))
      .map_or(0, |channel| channel.members.len() as u32)
  })
}

#[napi(js_name = "channelHead", skip_typescript)]
pub fn channel_head(env: &Env, channel: f64) -> Result<Option<String>> {
  State::get(env)?.with(|engine| {
    engine
      .channel(key(channel))
      .and_then(|channel| channel.head())
      .map(|id| id.to_string())
  })
}

/// Whether the channel was closed with `close()`.
#[napi(js_name = "channelClosed", skip_typescript)]
pub fn channel_closed(env: &Env, channel: f64) -> Result<bool> {
  State::get(env)?.with(|engine| {
    engine
      .channel(key(channel))
      .is_none_or(|channel| channel.closed)
  })
}

// ----- graceful drain -----

/// `drain(options)` (`channel` -1) or `channel.drain(options)`: the
/// options' numbers (`undefined` when not given) are checked by the core,
/// which ends the streams. Returns `[streams ended, flags, timeoutMs]`.
#[napi(js_name = "drain", skip_typescript)]
pub fn drain(
  env: &Env,
  channel: f64,
  window_ms: Option<f64>,
  min_ms: Option<f64>,
  timeout_ms: Option<f64>,
) -> Result<Vec<f64>> {
  const CALL: &str = "drain(options)";
  let options = DrainOptions::check(window_ms, min_ms, timeout_ms)
    .map_err(|(name, rule)| errors::option_error(env, CALL, name, &rule))?;
  let scope = if channel < 0.0 {
    DrainScope::All
  } else {
    DrainScope::Channel(key(channel))
  };
  let state = State::get(env)?;
  let now = state.now_ms();
  let seed = uuid::Uuid::new_v4().as_u64_pair().0;
  let drained = state.with(|engine| engine.drain(scope, &options, now, seed))?;
  let (streams, out) = drained.map_err(|err| channel_error(env, CALL, err))?;
  Ok(vec![streams as f64, out as f64, options.timeout_ms as f64])
}

// ----- Redis channels -----

/// Reading the stream started at `head`.
#[napi(js_name = "redisReady", skip_typescript)]
pub fn redis_ready(env: &Env, channel: f64, head: String) -> Result<u32> {
  let head = ChannelId::parse(head.as_bytes()).unwrap_or(ChannelId::ZERO);
  State::get(env)?.with(|engine| engine.redis_ready(key(channel), head))
}

fn optional_string(value: &Unknown) -> Result<Option<String>> {
  if value.get_type()? != ValueType::String {
    return Ok(None);
  }
  // SAFETY: the value's type was checked just above.
  Ok(Some(unsafe { value.cast::<String>() }?))
}

fn read_entry(
  id: &Unknown,
  name: &Unknown,
  data: &Unknown,
  to: &Unknown,
  replay: bool,
) -> Result<Entry> {
  Ok(Entry {
    id: optional_string(id)?.and_then(|id| ChannelId::parse(id.as_bytes())),
    name: optional_string(name)?,
    data: optional_string(data)?,
    to: optional_string(to)?,
    replay,
  })
}

/// One entry read from the stream, in order.
#[napi(js_name = "redisEntry", skip_typescript)]
pub fn redis_entry(
  env: &Env,
  channel: f64,
  id: Unknown,
  name: Unknown,
  data: Unknown,
  to: Unknown,
) -> Result<u32> {
  let entry = read_entry(&id, &name, &data, &to, true)?;
  State::get(env)?.with(|engine| engine.redis_entry(key(channel), &entry))
}

/// A replay page: `ok` false when Redis could not answer; else the stream's
/// `XINFO STREAM` (first page; see `StreamInfo::parse`, "" for no such key),
/// whether the entry at the reader's position the request named was there
/// (first page), and `flat` = `[id, name, data, to, replay, ...]`.
#[napi(js_name = "redisReplayed", skip_typescript)]
#[allow(clippy::too_many_arguments)]
pub fn redis_replayed(
  env: &Env,
  channel: f64,
  stream: f64,
  first: bool,
  ok: bool,
  info: String,
  reader_present: bool,
  flat: Array,
) -> Result<u32> {
  let page = if ok {
    let mut entries = Vec::with_capacity(flat.len() as usize / 5);
    let mut i = 0;
    while i + 4 < flat.len() {
      let field = |at: u32| -> Result<Unknown> {
        flat
          .get::<Unknown>(at)?
          .map_or_else(|| ().into_unknown(env), Ok)
      };
      let replay = field(i + 4)?.get_type()? != ValueType::Boolean || {
        // SAFETY: the value's type was checked just before.
        unsafe { field(i + 4)?.cast::<bool>() }?
      };
      entries.push(read_entry(
        &field(i)?,
        &field(i + 1)?,
        &field(i + 2)?,
        &field(i + 3)?,
        replay,
      )?);
      i += 5;
    }
    Some(Page {
      info: StreamInfo::parse(&info),
      entries,
      reader_present,
    })
  } else {
    None
  };
  State::get(env)?.with(|engine| engine.redis_replayed(key(channel), key(stream), first, page))
}

/// The reader read: whether the entry at its position was still there and
/// the stream's `XINFO STREAM` ("" for no such key). Answers `[flags,
/// outcome]`: outcome 0 when the read's entries may be taken, else the
/// members were reset (1: another stream, 2: trimmed past) and reading goes
/// on after the channel's new head.
/// `probe` is the id `redisProbe` gave and `probed` whether it was there.
#[napi(js_name = "redisCheck", skip_typescript)]
pub fn redis_check(
  env: &Env,
  channel: f64,
  present: bool,
  probe: Option<String>,
  probed: bool,
  info: String,
) -> Result<Vec<u32>> {
  let info = StreamInfo::parse(&info);
  let probe = probe
    .and_then(|id| ChannelId::parse(id.as_bytes()))
    .map(|id| (id, probed));
  State::get(env)?.with(|engine| {
    let (out, check) = engine.redis_check(key(channel), present, probe, info.as_ref());
    let outcome = match check {
      ReadCheck::Continue => 0,
      ReadCheck::Reset {
        reason: Resume::Expired,
        ..
      } => 2,
      ReadCheck::Reset { .. } => 1,
    };
    vec![out, outcome]
  })
}

/// The id the reader checks besides its position (a replay's head while
/// the reader has read nothing), or null.
#[napi(js_name = "redisProbe", skip_typescript)]
pub fn redis_probe(env: &Env, channel: f64) -> Result<Option<String>> {
  State::get(env)?.with(|engine| engine.redis_probe(key(channel)).map(|id| id.to_string()))
}

/// Whether `flags` asks for anything (kept here so the numbers live in one
/// place: the front reads them through `constants()`).
#[napi(js_name = "constants", skip_typescript)]
pub fn constants() -> Vec<u32> {
  vec![
    flags::ACCEPTED,
    flags::SCHEDULE,
    flags::ACTIONS,
    flags::FLUSH_NOW,
    flags::ARM_WINDOW,
    flags::TIMER,
  ]
}
