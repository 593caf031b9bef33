//! Heartbeats for every stream of an engine from one timer: a queue of due
//! times, so one JavaScript timer (armed for the earliest) serves any number
//! of streams instead of one `setInterval` each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::slab::Key;

/// At most this many heartbeats are written per timer firing; the rest are
/// taken a millisecond later, so a crowd of streams that all became due at
/// once never blocks the event loop in one go.
pub const BEATS_PER_FIRING: usize = 512;

#[derive(Debug, Default)]
pub struct Heartbeats {
  /// (due time in ms, stream key bits); entries of streams that ended or
  /// were rescheduled are skipped when they come up.
  due: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Heartbeats {
  pub fn schedule(&mut self, key: Key, due_ms: u64) {
    self.due.push(Reverse((due_ms, key.to_bits())));
  }

  /// The earliest due time, if any.
  pub fn next_due(&self) -> Option<u64> {
    self.due.peek().map(|Reverse((due, _))| *due)
  }

  /// Takes the next entry due at `now_ms` or earlier.
  pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, Key)> {
    let Reverse((due, _)) = self.due.peek()?;
    if *due > now_ms {
      return None;
    }
    let Reverse((due, bits)) = self.due.pop()?;
    Key::from_bits(bits).map(|key| (due, key))
  }

  pub fn len(&self) -> usize {
    self.due.len()
  }

  pub fn is_empty(&self) -> bool {
    self.due.is_empty()
  }
}
