//! A channel's recent events, bounded by count and by bytes, and the rule
//! that decides what a returning client gets: the events after its
//! `Last-Event-ID`, or a reset when they are not all known any more.
//!
//! The history is a window `(floor, head]` of the channel's order: `head` is
//! the id of the newest event, `floor` the id of the newest event that is no
//! longer kept (0-0 while nothing was dropped). A client that last saw `L`
//! missed exactly the kept events after `L` when `floor <= L <= head`.
//! Events meant for some members only are not kept (the UUIDs they were
//! meant for change when clients reconnect) but still move `head`, so their
//! ids stay valid positions.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::event_id::ChannelId;

/// Default number of events a channel keeps.
pub const DEFAULT_MAX_EVENTS: usize = 1000;
/// Default number of framed bytes a channel keeps (1 MiB).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// What a client that last saw some id should receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
  /// The events after the id are all known: send them, then live events.
  Replay,
  /// Events after the id were dropped from the history (or trimmed from the
  /// Redis stream): the client must reload.
  Expired,
  /// The id is not a position of this channel (another channel, an earlier
  /// process, a made-up value, or not yet reached).
  Unknown,
}

impl Resume {
  /// The `reason` in the reset event's data.
  pub fn reason(self) -> &'static str {
    match self {
      Resume::Replay => "replay",
      Resume::Expired => "expired",
      Resume::Unknown => "unknown",
    }
  }
}

/// Where `last` stands in a channel whose kept window is `(floor, head]`.
/// `epoch`, when given, is the `ms` part every id of the channel has (an
/// in-process channel); an id with another `ms` is unknown.
pub fn resume(last: ChannelId, floor: ChannelId, head: ChannelId, epoch: Option<u64>) -> Resume {
  if epoch.is_some_and(|epoch| epoch != last.ms) || last > head {
    Resume::Unknown
  } else if last < floor {
    Resume::Expired
  } else {
    Resume::Replay
  }
}

#[derive(Debug)]
struct Entry {
  id: ChannelId,
  /// Shared with replays in progress, which keep what they still have to
  /// write even when the history has moved on.
  frame: Rc<[u8]>,
}

#[derive(Debug)]
pub struct History {
  entries: VecDeque<Entry>,
  bytes: usize,
  max_events: usize,
  max_bytes: usize,
  floor: ChannelId,
  head: ChannelId,
}

impl History {
  /// An empty history whose first event will come after `start`.
  pub fn new(start: ChannelId, max_events: usize, max_bytes: usize) -> History {
    History {
      entries: VecDeque::new(),
      bytes: 0,
      max_events,
      max_bytes,
      floor: start,
      head: start,
    }
  }

  pub fn head(&self) -> ChannelId {
    self.head
  }

  pub fn floor(&self) -> ChannelId {
    self.floor
  }

  pub fn len(&self) -> usize {
    self.entries.len()
  }

  pub fn is_empty(&self) -> bool {
    self.entries.is_empty()
  }

  /// Framed bytes kept.
  pub fn bytes(&self) -> usize {
    self.bytes
  }

  /// Keeps the framed event `id` (which must come after `head`), dropping
  /// the oldest events past either bound. An event larger than the byte
  /// bound is not kept, and neither is anything before it.
  pub fn push(&mut self, id: ChannelId, frame: &[u8]) {
    debug_assert!(id > self.head);
    self.head = id;
    if self.max_events == 0 || frame.len() > self.max_bytes {
      self.entries.clear();
      self.bytes = 0;
      self.floor = id;
      return;
    }
    self.entries.push_back(Entry {
      id,
      frame: frame.into(),
    });
    self.bytes += frame.len();
    while self.entries.len() > self.max_events || self.bytes > self.max_bytes {
      let Some(old) = self.entries.pop_front() else {
        break;
      };
      self.bytes -= old.frame.len();
      self.floor = old.id;
    }
  }

  /// Moves `head` to `id` without keeping an event (a targeted event).
  pub fn pass(&mut self, id: ChannelId) {
    debug_assert!(id > self.head);
    self.head = id;
  }

  /// Where `last` stands (see [`resume`]).
  pub fn resume(&self, last: ChannelId, epoch: Option<u64>) -> Resume {
    resume(last, self.floor, self.head, epoch)
  }

  /// The kept events after `last`, oldest first, as framed bytes.
  pub fn after(&self, last: ChannelId) -> impl Iterator<Item = &[u8]> {
    let start = self.entries.partition_point(|entry| entry.id <= last);
    self.entries.range(start..).map(|entry| &*entry.frame)
  }

  /// The kept events after `last`, shared (not copied), for a replay.
  pub fn snapshot_after(&self, last: ChannelId) -> VecDeque<Rc<[u8]>> {
    let start = self.entries.partition_point(|entry| entry.id <= last);
    self
      .entries
      .range(start..)
      .map(|entry| Rc::clone(&entry.frame))
      .collect()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn id(seq: u64) -> ChannelId {
    ChannelId::new(7, seq)
  }

  fn frame(seq: u64) -> Vec<u8> {
    format!("id: 7-{seq}\ndata: {seq}\n\n").into_bytes()
  }

  fn filled(max_events: usize, max_bytes: usize, count: u64) -> History {
    let mut history = History::new(id(0), max_events, max_bytes);
    for seq in 1..=count {
      history.push(id(seq), &frame(seq));
    }
    history
  }

  fn seqs_after(history: &History, last: u64) -> Vec<String> {
    history
      .after(id(last))
      .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
      .collect()
  }

  #[test]
  fn replays_exactly_the_missed_window() {
    let history = filled(100, 1 << 20, 10);
    assert_eq!(history.resume(id(4), Some(7)), Resume::Replay);
    let expected: Vec<String> = (5..=10)
      .map(|seq| String::from_utf8(frame(seq)).unwrap())
      .collect();
    assert_eq!(seqs_after(&history, 4), expected);
  }

  #[test]
  fn at_the_head_there_is_nothing_to_replay() {
    let history = filled(100, 1 << 20, 10);
    assert_eq!(history.resume(id(10), Some(7)), Resume::Replay);
    assert_eq!(seqs_after(&history, 10), Vec::<String>::new());
  }

  #[test]
  fn from_the_start_of_an_untrimmed_channel_everything_is_replayed() {
    let history = filled(100, 1 << 20, 3);
    assert_eq!(history.resume(id(0), Some(7)), Resume::Replay);
    assert_eq!(seqs_after(&history, 0).len(), 3);
  }

  #[test]
  fn older_than_the_kept_window_is_expired() {
    let history = filled(5, 1 << 20, 10);
    assert_eq!(history.len(), 5);
    assert_eq!(history.floor(), id(5));
    assert_eq!(history.resume(id(4), Some(7)), Resume::Expired);
    assert_eq!(history.resume(id(5), Some(7)), Resume::Replay);
    assert_eq!(seqs_after(&history, 5).len(), 5);
  }

  #[test]
  fn the_byte_bound_drops_old_events() {
    let one = frame(1).len();
    let history = filled(100, one * 3, 9);
    assert!(history.bytes() <= one * 3);
    assert_eq!(history.len(), 3);
    assert_eq!(history.floor(), id(6));
    assert_eq!(history.resume(id(5), Some(7)), Resume::Expired);
  }

  #[test]
  fn an_event_larger_than_the_bound_empties_the_history() {
    let mut history = filled(100, 64, 3);
    history.push(id(4), &[b'x'; 65]);
    assert!(history.is_empty());
    assert_eq!(history.floor(), id(4));
    assert_eq!(history.resume(id(3), Some(7)), Resume::Expired);
    assert_eq!(history.resume(id(4), Some(7)), Resume::Replay);
  }

  #[test]
  fn without_history_only_the_head_resumes() {
    let history = filled(0, 1 << 20, 3);
    assert_eq!(history.resume(id(3), Some(7)), Resume::Replay);
    assert_eq!(history.resume(id(2), Some(7)), Resume::Expired);
  }

  #[test]
  fn ids_past_the_head_or_of_another_epoch_are_unknown() {
    let history = filled(100, 1 << 20, 3);
    assert_eq!(history.resume(id(4), Some(7)), Resume::Unknown);
    assert_eq!(
      history.resume(ChannelId::new(6, 2), Some(7)),
      Resume::Unknown
    );
    assert_eq!(
      history.resume(ChannelId::new(8, 0), Some(7)),
      Resume::Unknown
    );
  }

  #[test]
  fn targeted_events_move_the_head_but_are_not_kept() {
    let mut history = filled(100, 1 << 20, 2);
    history.pass(id(3));
    history.push(id(4), &frame(4));
    assert_eq!(history.head(), id(4));
    assert_eq!(history.resume(id(3), Some(7)), Resume::Replay);
    assert_eq!(
      seqs_after(&history, 2),
      vec![String::from_utf8(frame(4)).unwrap()]
    );
    assert_eq!(seqs_after(&history, 1).len(), 2);
  }

  #[test]
  fn redis_style_windows_need_no_epoch() {
    let floor = ChannelId::new(100, 0);
    let head = ChannelId::new(200, 3);
    assert_eq!(
      resume(ChannelId::new(150, 9), floor, head, None),
      Resume::Replay
    );
    assert_eq!(
      resume(ChannelId::new(99, 9), floor, head, None),
      Resume::Expired
    );
    assert_eq!(
      resume(ChannelId::new(200, 4), floor, head, None),
      Resume::Unknown
    );
  }
}
