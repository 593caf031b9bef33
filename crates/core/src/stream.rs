//! One event stream's state: its id counter, the bytes waiting for its next
//! write, a replay being written in steps, the slow-client cap, and why it
//! ended.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::bytes::{Batch, Pending};
use crate::slab::Key;

/// Why a stream ended, as `onClose()` callbacks receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
  /// The client went away (or the response was destroyed).
  Client,
  /// The server ended it: `close()`, or other code ending the response.
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

  /// The number the binding hands to JavaScript (1, 2, 3).
  pub fn code(self) -> u32 {
    match self {
      CloseReason::Client => 1,
      CloseReason::Server => 2,
      CloseReason::Overflow => 3,
    }
  }
}

/// At most this many replay bytes are queued for one write (or a quarter
/// of the stream's cap, when that is less); the rest follows when the
/// socket has taken them.
pub const REPLAY_STEP_BYTES: usize = 64 * 1024;

/// Events a client missed, written in steps that follow the socket, before
/// anything queued after it (`held`).
#[derive(Debug, Default)]
pub struct Replay {
  /// Framed events still to write, oldest first.
  pub frames: VecDeque<Rc<[u8]>>,
  /// More frames are coming from elsewhere (a Redis page being read).
  pub more: bool,
  /// Whether this replay holds one of the engine's replay slots.
  pub running: bool,
}

/// The state of one stream.
#[derive(Debug)]
pub struct Stream {
  pub uuid: String,
  /// The resume position the client sent, in its accepted form.
  pub last_event_id: Option<String>,
  /// The id of the next counter event (the welcome is 0).
  pub next_id: u64,
  pub max_buffered: u64,
  /// Bytes for the next write.
  pub pending: Pending,
  /// A replay in progress: its frames go out before `held`.
  pub replay: Option<Replay>,
  /// Bytes queued while a replay is in progress.
  pub held: Pending,
  /// Bytes the response held after its last write that did not fit (Node's
  /// `writableLength`); 0 once it drained.
  pub res_queued: u64,
  /// The response asked the writer to wait for `'drain'`.
  pub draining: bool,
  /// In the engine's queue for the next flush.
  pub queued: bool,
  /// Channels this stream is a member of, in the order it joined them.
  pub channels: Vec<Key>,
  /// Heartbeat period in ms (0: none) and when the next one is due.
  pub keep_alive_ms: u64,
  pub next_beat_ms: u64,
}

impl Stream {
  pub fn new(uuid: String, last_event_id: Option<String>, max_buffered: u64) -> Stream {
    Stream {
      uuid,
      last_event_id,
      next_id: 1,
      max_buffered,
      pending: Pending::default(),
      replay: None,
      held: Pending::default(),
      res_queued: 0,
      draining: false,
      queued: false,
      channels: Vec::new(),
      keep_alive_ms: 0,
      next_beat_ms: 0,
    }
  }

  /// Where new bytes go: behind a replay in progress, else the next write.
  pub fn tail(&mut self) -> &mut Pending {
    if self.replay.is_some() {
      &mut self.held
    } else {
      &mut self.pending
    }
  }

  /// Bytes counted against the cap: what waits here plus what the
  /// response held at its last report. Replay frames not queued yet are
  /// not counted: they are the channel's, not a copy for this client.
  pub fn buffered(&self) -> u64 {
    (self.pending.len() + self.held.len()) as u64 + self.res_queued
  }

  pub fn over_cap(&self) -> bool {
    self.buffered() > self.max_buffered
  }

  /// Moves the next step of the replay into `pending`; when the replay is
  /// done, what was held behind it. Returns whether the replay finished
  /// (its slot, if it had one, is free again).
  pub fn refill(&mut self) -> bool {
    let step = self.replay_step();
    let Some(replay) = self.replay.as_mut() else {
      return false;
    };
    if !replay.running {
      return false;
    }
    let mut queued = self.pending.len();
    while queued < step {
      let Some(frame) = replay.frames.pop_front() else {
        break;
      };
      queued += frame.len();
      self
        .pending
        .push_own(|out| {
          out.extend_from_slice(&frame);
          Ok::<(), ()>(())
        })
        .ok();
    }
    if replay.frames.is_empty() && !replay.more {
      self.replay = None;
      let mut held = std::mem::take(&mut self.held);
      self.pending.append(&mut held);
      return true;
    }
    false
  }

  /// The replay bytes for one write: [`REPLAY_STEP_BYTES`], or a quarter
  /// of a smaller cap, so that a step waiting in the response (which may
  /// already hold up to its high-water mark) leaves the stream under its
  /// cap. A frame larger than the step still goes out whole.
  pub fn replay_step(&self) -> usize {
    let quarter = usize::try_from(self.max_buffered / 4).unwrap_or(usize::MAX);
    REPLAY_STEP_BYTES.min(quarter).max(1)
  }

  /// Whether the replay waits for frames that are not here yet.
  pub fn replay_starved(&self) -> bool {
    self
      .replay
      .as_ref()
      .is_some_and(|replay| replay.running && replay.frames.is_empty() && replay.more)
  }

  /// Bytes of a batch range, behind whatever is queued.
  pub fn push_shared(&mut self, batch: &Rc<Batch>, start: usize, end: usize) {
    self.tail().push_shared(batch, start, end);
  }

  /// Drops every queued byte (the stream ended).
  pub fn release(&mut self) {
    self.pending.release();
    self.held.release();
    self.replay = None;
  }
}
