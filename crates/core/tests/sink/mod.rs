//! A fake sink and driver for the engine, shared by the integration tests:
//! it plays the part of the binding (honours the flags, writes the chunks
//! of `flush`, reports backpressure for slow clients, carries out the
//! actions, answers Redis pages from an in-memory stream) and parses what
//! each stream received with the WHATWG event-stream rules.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use native_sse_core::bytes::Chunk;
use native_sse_core::channel::Targets;
use native_sse_core::engine::{ChannelSource, Entry, Page};
use native_sse_core::event_id::ChannelId;
use native_sse_core::frame::{self, Event, EventId};
use native_sse_core::redis::StreamInfo;
use native_sse_core::{flags, Action, Engine, Key, Prepared, StreamOptions};

// ----- the event-stream parser -----

/// One block the parser finished with a blank line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
  /// A dispatched event.
  Event {
    /// The `id:` field of this block, if it had one.
    own_id: Option<String>,
    /// The last event id buffer when it was dispatched (what the event's
    /// `lastEventId` is).
    last_id: String,
    /// The event type buffer (empty: the event is a `message`).
    name: String,
    data: String,
  },
  /// A block with an `id:` field and no data: not dispatched, but it sets
  /// the last event id.
  Position(String),
}

impl Block {
  pub fn name(&self) -> Option<&str> {
    match self {
      Block::Event { name, .. } => Some(name),
      Block::Position(_) => None,
    }
  }
  pub fn own_id(&self) -> Option<&str> {
    match self {
      Block::Event { own_id, .. } => own_id.as_deref(),
      Block::Position(id) => Some(id),
    }
  }
  pub fn data(&self) -> Option<&str> {
    match self {
      Block::Event { data, .. } => Some(data),
      Block::Position(_) => None,
    }
  }
}

#[derive(Debug, Default, Clone)]
pub struct Parsed {
  pub blocks: Vec<Block>,
  /// The last event id string of the event source at the end.
  pub last_id: String,
  pub retry: Option<u64>,
  /// Comment lines.
  pub comments: usize,
  /// Bytes after the last line break (an incomplete line).
  pub rest: Vec<u8>,
}

impl Parsed {
  /// The dispatched events as (own id, name, data).
  pub fn events(&self) -> Vec<(Option<String>, String, String)> {
    self
      .blocks
      .iter()
      .filter_map(|block| match block {
        Block::Event {
          own_id, name, data, ..
        } => Some((own_id.clone(), name.clone(), data.clone())),
        Block::Position(_) => None,
      })
      .collect()
  }

  /// The names of the dispatched events.
  pub fn names(&self) -> Vec<String> {
    self.events().into_iter().map(|(_, name, _)| name).collect()
  }

  /// The data of the dispatched events.
  pub fn datas(&self) -> Vec<String> {
    self.events().into_iter().map(|(_, _, data)| data).collect()
  }

  /// Dispatched events other than the welcome, as their data.
  pub fn datas_after_welcome(&self) -> Vec<String> {
    self
      .events()
      .into_iter()
      .filter(|(_, name, _)| name != "welcome")
      .map(|(_, _, data)| data)
      .collect()
  }

  /// Every id field, in order (events and positions).
  pub fn ids(&self) -> Vec<String> {
    self
      .blocks
      .iter()
      .filter_map(|block| block.own_id().map(str::to_owned))
      .collect()
  }
}

/// Parses an event stream as a browser does (WHATWG HTML, "Parsing an event
/// stream"): lines end at CRLF, CR or LF; `:` starts a comment; a blank line
/// dispatches.
pub fn parse(bytes: &[u8]) -> Parsed {
  let mut parsed = Parsed::default();
  let mut lines = Vec::new();
  let mut start = 0;
  let mut i = 0;
  while i < bytes.len() {
    match bytes[i] {
      b'\n' => {
        lines.push(&bytes[start..i]);
        i += 1;
        start = i;
      }
      b'\r' => {
        lines.push(&bytes[start..i]);
        i += if bytes.get(i + 1) == Some(&b'\n') {
          2
        } else {
          1
        };
        start = i;
      }
      _ => i += 1,
    }
  }
  parsed.rest = bytes[start..].to_vec();
  let mut data = String::new();
  let mut name = String::new();
  let mut id_buffer = String::new();
  let mut own_id: Option<String> = None;
  let mut first = true;
  for line in lines {
    let mut line = String::from_utf8_lossy(line).into_owned();
    if first {
      first = false;
      if let Some(stripped) = line.strip_prefix('\u{FEFF}') {
        line = stripped.to_owned();
      }
    }
    if line.is_empty() {
      parsed.last_id = id_buffer.clone();
      if data.is_empty() {
        if let Some(id) = own_id.take() {
          parsed.blocks.push(Block::Position(id));
        }
        name.clear();
        continue;
      }
      if data.ends_with('\n') {
        data.pop();
      }
      parsed.blocks.push(Block::Event {
        own_id: own_id.take(),
        last_id: id_buffer.clone(),
        name: std::mem::take(&mut name),
        data: std::mem::take(&mut data),
      });
      continue;
    }
    if line.starts_with(':') {
      parsed.comments += 1;
      continue;
    }
    let (field, value) = match line.find(':') {
      Some(at) => {
        let value = &line[at + 1..];
        (&line[..at], value.strip_prefix(' ').unwrap_or(value))
      }
      None => (&line[..], ""),
    };
    match field {
      "event" => name = value.to_owned(),
      "data" => {
        data.push_str(value);
        data.push('\n');
      }
      // An id with NUL is ignored.
      "id" if !value.contains('\0') => {
        id_buffer = value.to_owned();
        own_id = Some(value.to_owned());
      }
      // Only ASCII digits set the reconnection time.
      "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
        parsed.retry = value.parse().ok();
      }
      _ => {}
    }
  }
  parsed
}

// ----- framing helpers -----

/// The bytes `Engine::send` should write for a counter event.
pub fn framed(id: u64, name: &str, data: &str) -> Vec<u8> {
  let mut out = Vec::new();
  frame::push_event(
    &mut out,
    &Event {
      id: Some(EventId::Number(id)),
      name: Some(name.as_bytes()),
      data: data.as_bytes(),
    },
  );
  out
}

/// The bytes of a channel event.
pub fn framed_channel(id: ChannelId, name: &str, data: &str) -> Vec<u8> {
  let text = id.to_string();
  let mut out = Vec::new();
  frame::push_event(
    &mut out,
    &Event {
      id: Some(EventId::Text(text.as_bytes())),
      name: Some(name.as_bytes()),
      data: data.as_bytes(),
    },
  );
  out
}

pub fn welcome(uuid: &str, with_id: bool) -> Vec<u8> {
  let data = frame::welcome_data(uuid);
  let mut out = Vec::new();
  frame::push_event(
    &mut out,
    &Event {
      id: with_id.then_some(EventId::Number(0)),
      name: Some(b"welcome"),
      data: data.as_bytes(),
    },
  );
  out
}

pub fn reset(head: ChannelId, reason: &str) -> Vec<u8> {
  format!("id: {head}\nevent: reset\ndata: {{\"reason\":\"{reason}\"}}\n\n").into_bytes()
}

pub fn prepared(name: &str, data: &str) -> Prepared {
  Prepared::new(&name, &data).expect("a valid name")
}

pub fn options(max_buffered: u64) -> StreamOptions {
  StreamOptions {
    max_buffered,
    keep_alive_ms: 0,
    retry_ms: None,
    welcome: true,
    first_id: 1,
  }
}

pub fn quiet(max_buffered: u64) -> StreamOptions {
  StreamOptions {
    welcome: false,
    ..options(max_buffered)
  }
}

pub fn local(epoch: u64, history_events: usize, history_bytes: usize) -> ChannelSource {
  ChannelSource::Local {
    epoch,
    history_events,
    history_bytes,
  }
}

// ----- the in-memory Redis stream -----

#[derive(Debug, Default, Clone)]
pub struct FakeRedis {
  pub ms: u64,
  pub seq: u64,
  pub entries: Vec<Entry>,
  /// The id of the newest entry trimmed away (0-0 while none was).
  pub floor: ChannelId,
  /// The id of the last entry ever added.
  pub last: ChannelId,
}

impl FakeRedis {
  pub fn new(ms: u64) -> FakeRedis {
    FakeRedis {
      ms,
      ..FakeRedis::default()
    }
  }

  /// `XADD`: a new entry with the next id.
  pub fn add(&mut self, name: &str, data: &str, to: Option<&str>, replay: bool) -> Entry {
    self.seq += 1;
    let id = ChannelId::new(self.ms, self.seq);
    let entry = Entry {
      id: Some(id),
      name: Some(name.to_owned()),
      data: Some(data.to_owned()),
      to: to.map(str::to_owned),
      replay,
    };
    self.entries.push(entry.clone());
    self.last = id;
    entry
  }

  /// `XTRIM`: keeps the newest `keep` entries.
  pub fn trim(&mut self, keep: usize) {
    while self.entries.len() > keep {
      let old = self.entries.remove(0);
      self.floor = old.id.unwrap();
    }
  }

  pub fn head(&self) -> ChannelId {
    self.last
  }

  /// `XINFO STREAM`.
  pub fn info(&self) -> StreamInfo {
    StreamInfo {
      length: self.entries.len() as u64,
      added: Some(self.seq),
      first: self.entries.first().and_then(|entry| entry.id),
      last_generated: self.last,
      max_deleted: ChannelId::ZERO,
    }
  }

  /// A page as the binding reads it: with the window and the entries from
  /// `from` on (first), else the entries after `from` up to `until`.
  pub fn page(&self, from: ChannelId, until: ChannelId, first: bool, count: u32) -> Page {
    let entries = self
      .entries
      .iter()
      .filter(|entry| {
        let id = entry.id.unwrap();
        if first {
          id >= from
        } else {
          id > from && id <= until
        }
      })
      .take(count as usize)
      .cloned()
      .collect();
    Page {
      // A stream nothing was ever added to does not exist in Redis.
      info: (self.seq > 0).then(|| self.info()),
      entries,
      reader_present: false,
    }
  }
}

/// A replay page the engine asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
  pub channel: Key,
  pub stream: Key,
  pub from: ChannelId,
  pub until: ChannelId,
  pub first: bool,
  pub count: u32,
  /// On a first page, the reader's position whose entry it also reads.
  pub reader: Option<ChannelId>,
}

// ----- the driver -----

/// One chunk handed to the sink.
#[derive(Debug, Clone)]
pub struct Written {
  pub key: Key,
  pub bytes: Vec<u8>,
  /// `Some(token)` when it was a `Chunk::Batch`.
  pub token: Option<u64>,
  /// Which flush (1, 2, ...), 0 for writes outside a flush.
  pub flush: usize,
}

pub struct Driver {
  pub engine: Engine,
  /// A flush was asked for with `SCHEDULE` and not run yet.
  pub scheduled: bool,
  pub flushes: usize,
  pub writes: Vec<Written>,
  pub tokens: HashSet<u64>,
  /// Streams whose response reports backpressure after every write.
  pub slow: HashSet<Key>,
  /// What each response holds (`writableLength`), as the driver simulates.
  pub res_len: HashMap<Key, u64>,
  pub destroyed: Vec<Key>,
  /// The bytes each destroyed stream held, as its `Destroy` said.
  pub destroyed_held: Vec<u64>,
  pub ended: Vec<Key>,
  pub need_length: Vec<Key>,
  /// Whether actions are carried out after every call (as the binding does).
  pub auto_actions: bool,
  /// In-memory Redis streams, by channel.
  pub redis: HashMap<Key, FakeRedis>,
  /// Answer page requests at once from `redis`; else they wait in
  /// `requests`.
  pub redis_auto: bool,
  pub requests: Vec<PageRequest>,
  /// Every page request, answered or not.
  pub all_requests: Vec<PageRequest>,
  pub windows_armed: usize,
  pub timer_armed: usize,
  pub all_flags: u32,
}

impl Default for Driver {
  fn default() -> Self {
    Driver::new()
  }
}

impl Driver {
  pub fn new() -> Driver {
    Driver {
      engine: Engine::new(),
      scheduled: false,
      flushes: 0,
      writes: Vec::new(),
      tokens: HashSet::new(),
      slow: HashSet::new(),
      res_len: HashMap::new(),
      destroyed: Vec::new(),
      destroyed_held: Vec::new(),
      ended: Vec::new(),
      need_length: Vec::new(),
      auto_actions: true,
      redis: HashMap::new(),
      redis_auto: true,
      requests: Vec::new(),
      all_requests: Vec::new(),
      windows_armed: 0,
      timer_armed: 0,
      all_flags: 0,
    }
  }

  /// Takes note of the flags an engine call answered with, and carries out
  /// the actions (the binding looks at them after every call).
  pub fn note(&mut self, out: u32) -> u32 {
    self.all_flags |= out;
    if out & flags::SCHEDULE != 0 {
      assert!(
        !self.scheduled,
        "SCHEDULE reported while a flush was already scheduled"
      );
      self.scheduled = true;
    }
    if out & flags::ARM_WINDOW != 0 {
      self.windows_armed += 1;
    }
    if out & flags::TIMER != 0 {
      self.timer_armed += 1;
    }
    if self.auto_actions && self.engine.has_actions() {
      self.run_actions();
    }
    out
  }

  /// Runs one engine call and takes note of its flags.
  pub fn call(&mut self, f: impl FnOnce(&mut Engine) -> u32) -> u32 {
    let out = f(&mut self.engine);
    self.note(out)
  }

  pub fn run_actions(&mut self) {
    for action in self.engine.take_actions() {
      match action {
        Action::Destroy(key, held) => {
          self.destroyed.push(key);
          self.destroyed_held.push(held);
        }
        Action::End(key, bytes) => {
          self.record(key, bytes, None, 0);
          self.ended.push(key);
        }
        Action::Drained(key, bytes) => {
          self.record(key, bytes, None, 0);
          self.ended.push(key);
        }
        Action::NeedLength(key) => {
          self.need_length.push(key);
          let len = self.res_len.get(&key).copied().unwrap_or(0);
          let out = self.engine.length(key, len);
          self.note(out);
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
          let request = PageRequest {
            channel,
            stream,
            from,
            until,
            first,
            count,
            reader,
          };
          self.all_requests.push(request.clone());
          if self.redis_auto {
            self.answer(&request);
          } else {
            self.requests.push(request);
          }
        }
      }
    }
  }

  /// Answers a page request from the in-memory stream as it is now.
  pub fn answer(&mut self, request: &PageRequest) {
    let redis = &self.redis[&request.channel];
    let mut page = redis.page(request.from, request.until, request.first, request.count);
    page.reader_present = request
      .reader
      .is_some_and(|reader| redis.entries.iter().any(|entry| entry.id == Some(reader)));
    self.answer_with(request, Some(page));
  }

  pub fn answer_with(&mut self, request: &PageRequest, page: Option<Page>) {
    let out = self
      .engine
      .redis_replayed(request.channel, request.stream, request.first, page);
    self.note(out);
  }

  fn record(&mut self, key: Key, bytes: Vec<u8>, token: Option<u64>, flush: usize) {
    if let Some(token) = token {
      self.tokens.insert(token);
    }
    self.writes.push(Written {
      key,
      bytes,
      token,
      flush,
    });
  }

  /// Runs `Engine::flush` (whether or not one was scheduled) and writes its
  /// chunks; slow streams then report backpressure.
  pub fn flush(&mut self) -> Vec<Written> {
    self.scheduled = false;
    self.flushes += 1;
    let flush = self.flushes;
    let mut chunks = Vec::new();
    let out = self.engine.flush(|key, chunk| {
      let (bytes, token) = match chunk {
        Chunk::Bytes(bytes) => (bytes.to_vec(), None),
        Chunk::Batch(batch) => (batch.bytes().to_vec(), Some(batch.token)),
      };
      chunks.push(Written {
        key,
        bytes,
        token,
        flush,
      });
    });
    let mut seen = HashSet::new();
    for chunk in &chunks {
      assert!(
        seen.insert(chunk.key),
        "two writes to one stream in a flush"
      );
      assert!(!chunk.bytes.is_empty(), "an empty write");
      self.record(chunk.key, chunk.bytes.clone(), chunk.token, flush);
    }
    self.note(out);
    for chunk in &chunks {
      if self.slow.contains(&chunk.key) && self.engine.is_open(chunk.key) {
        let len = self.res_len.entry(chunk.key).or_insert(0);
        *len += chunk.bytes.len() as u64;
        let len = *len;
        let out = self.engine.backpressure(chunk.key, len);
        self.note(out);
      }
    }
    chunks
  }

  /// Flushes when a flush was scheduled.
  pub fn tick(&mut self) -> Vec<Written> {
    if self.scheduled {
      self.flush()
    } else {
      Vec::new()
    }
  }

  /// Flushes until nothing more is scheduled.
  pub fn settle(&mut self) {
    for _ in 0..100_000 {
      if !self.scheduled {
        return;
      }
      self.flush();
    }
    panic!("the engine keeps scheduling flushes");
  }

  /// The response of a slow stream emitted `'drain'`.
  pub fn drain(&mut self, key: Key) -> u32 {
    self.res_len.insert(key, 0);
    let out = self.engine.drained(key);
    self.note(out)
  }

  /// Drains every slow stream and flushes, until nothing moves.
  pub fn drain_all(&mut self) {
    for _ in 0..100_000 {
      self.settle();
      let keys: Vec<Key> = self
        .res_len
        .iter()
        .filter(|(key, len)| **len > 0 && self.engine.is_open(**key))
        .map(|(key, _)| *key)
        .collect();
      if keys.is_empty() {
        return;
      }
      for key in keys {
        self.drain(key);
      }
    }
    panic!("draining never ends");
  }

  // ----- calls -----

  pub fn open(&mut self, uuid: &str, last: Option<&str>, options: StreamOptions) -> Key {
    let (key, out) = self
      .engine
      .open_stream(uuid.to_owned(), last.map(str::to_owned), options, 0)
      .expect("room for a stream");
    assert!(out & flags::ACCEPTED != 0);
    self.note(out);
    key
  }

  pub fn send(&mut self, key: Key, name: &str, data: &str) -> u32 {
    let out = self.engine.send(key, &name, &data, None).expect("valid");
    self.note(out)
  }

  pub fn comment(&mut self, key: Key, text: &str) -> u32 {
    let out = self.engine.comment(key, &text);
    self.note(out)
  }

  pub fn channel(&mut self, source: ChannelSource, window_ms: u64) -> Key {
    self.engine.open_channel(source, window_ms).expect("room")
  }

  pub fn redis_channel(&mut self, ms: u64) -> Key {
    let key = self.channel(ChannelSource::Redis, 0);
    self.redis.insert(key, FakeRedis::new(ms));
    key
  }

  pub fn add(&mut self, channel: Key, stream: Key) -> bool {
    let (added, out) = self.engine.add(channel, stream).expect("an open channel");
    self.note(out);
    added
  }

  pub fn remove(&mut self, channel: Key, stream: Key) -> bool {
    self.engine.remove(channel, stream)
  }

  pub fn broadcast_to(
    &mut self,
    channel: Key,
    name: &str,
    data: &str,
    targets: Targets,
    replay: bool,
  ) -> ChannelId {
    let (id, out) = self
      .engine
      .broadcast(channel, &prepared(name, data), targets, replay)
      .expect("an open channel");
    self.note(out);
    id
  }

  pub fn broadcast(&mut self, channel: Key, name: &str, data: &str) -> ChannelId {
    self.broadcast_to(channel, name, data, Targets::All, true)
  }

  /// `XADD` to the channel's in-memory stream (not read yet).
  pub fn publish(&mut self, channel: Key, name: &str, data: &str) -> Entry {
    self
      .redis
      .get_mut(&channel)
      .unwrap()
      .add(name, data, None, true)
  }

  /// The reader hands the engine `entry`.
  pub fn read(&mut self, channel: Key, entry: &Entry) -> u32 {
    let out = self.engine.redis_entry(channel, entry);
    self.note(out)
  }

  /// `close()`: the last chunk is written.
  pub fn close(&mut self, key: Key) -> bool {
    let mut bytes = None;
    self.engine.close(key, |chunk| {
      bytes = Some(match chunk {
        Chunk::Bytes(bytes) => bytes.to_vec(),
        Chunk::Batch(batch) => batch.bytes().to_vec(),
      });
    });
    self.note(0);
    match bytes {
      Some(bytes) => {
        if !bytes.is_empty() {
          self.record(key, bytes, None, 0);
        }
        true
      }
      None => false,
    }
  }

  // ----- what was written -----

  pub fn chunks(&self, key: Key) -> Vec<&Written> {
    self.writes.iter().filter(|w| w.key == key).collect()
  }

  pub fn bytes(&self, key: Key) -> Vec<u8> {
    self
      .writes
      .iter()
      .filter(|w| w.key == key)
      .flat_map(|w| w.bytes.iter().copied())
      .collect()
  }

  pub fn text(&self, key: Key) -> String {
    String::from_utf8(self.bytes(key)).expect("UTF-8")
  }

  pub fn parsed(&self, key: Key) -> Parsed {
    let parsed = parse(&self.bytes(key));
    assert!(
      parsed.rest.is_empty(),
      "an incomplete line: {:?}",
      String::from_utf8_lossy(&parsed.rest)
    );
    parsed
  }

  /// The chunks of `key` by flush.
  pub fn per_flush(&self, key: Key) -> BTreeMap<usize, usize> {
    let mut map = BTreeMap::new();
    for write in self.writes.iter().filter(|w| w.key == key) {
      *map.entry(write.flush).or_insert(0) += write.bytes.len();
    }
    map
  }

  /// Forgets what was written so far.
  pub fn clear_writes(&mut self) {
    self.writes.clear();
  }
}
