//! Counters: what the engine did since it started, kept as plain integer
//! increments on paths that run anyway (no clock, no allocation, no call
//! out), and read as a snapshot.
//!
//! What counts, once each:
//! - `events`: events queued to a stream by `send()` (with its own or the
//!   next id), and channel deliveries (one per member a broadcast or Redis
//!   entry went to). Not the welcome, positions, resets or replayed events
//!   (replays and resets have counters of their own; their bytes are in
//!   `bytes`).
//! - `comments`: `comment()` calls; `heartbeats`: heartbeat comments.
//! - `bytes`: bytes the engine handed to the caller to write to a response
//!   (a socket, or a Fetch body): every flush, immediate write and last
//!   chunk of `close()` or of an engine-made end. Not the HTTP head.
//! - `replays` / `resets`: a member that got missed events replayed / a
//!   `reset` event instead (history too short, unknown id).

use crate::stream::CloseReason;

/// The counters of one engine (one JavaScript environment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
  pub streams_opened: u64,
  pub closed_client: u64,
  pub closed_server: u64,
  pub closed_overflow: u64,
  pub events: u64,
  pub comments: u64,
  pub heartbeats: u64,
  pub bytes: u64,
  pub replays: u64,
  pub resets: u64,
  pub channels_opened: u64,
  /// Channels closed by `close()` or collected without it.
  pub channels_closed: u64,
}

impl Counters {
  pub fn closed(&mut self, reason: CloseReason) {
    match reason {
      CloseReason::Client => self.closed_client += 1,
      CloseReason::Server => self.closed_server += 1,
      CloseReason::Overflow => self.closed_overflow += 1,
    }
  }
}

/// The counters of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounters {
  /// Events framed for the members: `broadcast()` calls of an in-process
  /// channel, entries read from the stream of a Redis channel (whichever
  /// process added them).
  pub broadcasts: u64,
  /// Events queued to members: one per member an event went to.
  pub deliveries: u64,
  /// Bytes queued to members: deliveries, replayed events, resets and the
  /// position a new member gets.
  pub bytes: u64,
  pub replays: u64,
  pub resets: u64,
  /// Streams that joined (`add()` of a stream not yet a member).
  pub joined: u64,
  /// Members that left because their stream closed, by reason, and those
  /// that left with their stream open (`remove()`, or the channel closed).
  pub left_client: u64,
  pub left_server: u64,
  pub left_overflow: u64,
  pub left_removed: u64,
}

impl ChannelCounters {
  /// A member's stream closed for `reason`.
  pub fn member_closed(&mut self, reason: CloseReason) {
    match reason {
      CloseReason::Client => self.left_client += 1,
      CloseReason::Server => self.left_server += 1,
      CloseReason::Overflow => self.left_overflow += 1,
    }
  }
}

/// The engine's counters with its gauges, as `metrics()` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
  pub counters: Counters,
  /// Streams open now.
  pub streams_open: u64,
}

impl Snapshot {
  /// The numbers in the order the binding hands them to JavaScript.
  pub fn to_array(&self) -> [u64; 14] {
    let c = &self.counters;
    [
      self.streams_open,
      c.streams_opened,
      c.closed_client,
      c.closed_server,
      c.closed_overflow,
      c.events,
      c.comments,
      c.heartbeats,
      c.bytes,
      c.replays,
      c.resets,
      c.channels_opened.saturating_sub(c.channels_closed),
      c.channels_opened,
      c.channels_closed,
    ]
  }
}

/// A channel's counters with its gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSnapshot {
  pub counters: ChannelCounters,
  pub members: u64,
}

impl ChannelSnapshot {
  /// The numbers in the order the binding hands them to JavaScript.
  pub fn to_array(&self) -> [u64; 11] {
    let c = &self.counters;
    [
      self.members,
      c.broadcasts,
      c.deliveries,
      c.bytes,
      c.replays,
      c.resets,
      c.joined,
      c.left_client,
      c.left_server,
      c.left_overflow,
      c.left_removed,
    ]
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn closes_count_by_reason() {
    let mut c = Counters::default();
    c.closed(CloseReason::Client);
    c.closed(CloseReason::Server);
    c.closed(CloseReason::Server);
    c.closed(CloseReason::Overflow);
    assert_eq!(
      (c.closed_client, c.closed_server, c.closed_overflow),
      (1, 2, 1)
    );
  }

  #[test]
  fn arrays_keep_their_order() {
    let snapshot = Snapshot {
      counters: Counters {
        streams_opened: 2,
        closed_client: 3,
        closed_server: 4,
        closed_overflow: 5,
        events: 6,
        comments: 7,
        heartbeats: 8,
        bytes: 9,
        replays: 10,
        resets: 11,
        channels_opened: 13,
        channels_closed: 1,
      },
      streams_open: 1,
    };
    assert_eq!(
      snapshot.to_array(),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 1]
    );
    let channel = ChannelSnapshot {
      counters: ChannelCounters {
        broadcasts: 2,
        deliveries: 3,
        bytes: 4,
        replays: 5,
        resets: 6,
        joined: 7,
        left_client: 8,
        left_server: 9,
        left_overflow: 10,
        left_removed: 11,
      },
      members: 1,
    };
    assert_eq!(channel.to_array(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  }
}
