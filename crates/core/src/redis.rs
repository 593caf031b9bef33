//! The decisions about a Redis stream that a channel reads: whether a
//! client's `Last-Event-ID` may be replayed from the stream as it is now,
//! and whether the reader can go on from its position or the stream was
//! recreated, moved backwards or trimmed past it.
//!
//! Both are judged from `XINFO STREAM` ([`StreamInfo`], read atomically with
//! the entries they concern) and from whether the entry with the id in
//! question is still in the stream. Trimming (`MAXLEN`) only removes the
//! oldest entries, so an entry that is still there proves that nothing after
//! it was trimmed; an id that is not there (and is not the head) proves
//! nothing, and the conservative answer is a reset.

use crate::event_id::ChannelId;
use crate::history::{self, Resume};

/// What `XINFO STREAM` says about a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
  /// Entries in the stream now (`length`).
  pub length: u64,
  /// Entries ever added (`entries-added`); `None` before Redis 7.
  pub added: Option<u64>,
  /// The oldest entry's id (`first-entry`); `None` when the stream is empty.
  pub first: Option<ChannelId>,
  /// The id of the newest entry ever added (`last-generated-id`).
  pub last_generated: ChannelId,
  /// The newest deleted entry's id (`max-deleted-entry-id`; 0-0 before
  /// Redis 7 or when none was).
  pub max_deleted: ChannelId,
}

impl StreamInfo {
  /// Reads the form the binding passes: `"<length> <added> <first>
  /// <last-generated> <max-deleted>"`, with `?` for a field Redis did not
  /// give. `None` for an empty text (no such key) or anything malformed
  /// (read as a stream that is not there, the conservative answer).
  pub fn parse(text: &str) -> Option<StreamInfo> {
    let mut parts = text.split(' ');
    let length = parts.next()?.parse().ok()?;
    let added = match parts.next()? {
      "?" => None,
      n => Some(n.parse().ok()?),
    };
    let first = match parts.next()? {
      "?" => None,
      id => Some(ChannelId::parse(id.as_bytes())?),
    };
    let last_generated = ChannelId::parse(parts.next()?.as_bytes())?;
    let max_deleted = match parts.next()? {
      "?" => ChannelId::ZERO,
      id => ChannelId::parse(id.as_bytes())?,
    };
    if parts.next().is_some() {
      return None;
    }
    Some(StreamInfo {
      length,
      added,
      first,
      last_generated,
      max_deleted,
    })
  }

  /// Whether entries were ever removed (trimmed or deleted); unknown
  /// (Redis before 7) counts as yes.
  fn removed_any(&self) -> bool {
    self.added.is_none_or(|added| added > self.length) || self.max_deleted > ChannelId::ZERO
  }
}

/// The stream's window for [`history::resume`], `(floor, head)`: `head` is
/// the last id ever added; `floor` the newest id a client may have seen and
/// still resume from: the first kept entry once anything was trimmed
/// (conservative: a client that saw the entry just before it is told to
/// reload too), never below the newest deleted one. A missing stream is
/// `(0-0, 0-0)`.
pub fn window(info: Option<&StreamInfo>) -> (ChannelId, ChannelId) {
  let Some(info) = info else {
    return (ChannelId::ZERO, ChannelId::ZERO);
  };
  let head = info.last_generated;
  let mut floor = ChannelId::ZERO;
  if info.added.is_none_or(|added| added > info.length) {
    floor = info.first.unwrap_or(head);
  }
  (floor.max(info.max_deleted), head)
}

/// Where a client that last saw `last` stands, from the first replay page:
/// the stream's `info` and the id of the first entry at or after `last`
/// (`XRANGE <last> + COUNT n`, read in the same `MULTI`).
///
/// On top of the window rule, the id must be one of this stream's: the
/// entry with that id is still there, or it is the head (nothing came
/// after it), or it is 0-0 on a stream from which nothing was ever removed
/// (the client has nothing, and everything is still there). Anything else
/// is an id of another stream (one that was deleted and made again, a
/// Redis that restarted empty): `Unknown`.
pub fn resume_from(last: ChannelId, info: Option<&StreamInfo>, first: Option<ChannelId>) -> Resume {
  let (floor, head) = window(info);
  let decision = history::resume(last, floor, head, None);
  if decision != Resume::Replay {
    return decision;
  }
  if last == ChannelId::ZERO || last == head || first == Some(last) {
    Resume::Replay
  } else {
    Resume::Unknown
  }
}

/// What the reader does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
  /// The entries read follow the reader's position without a gap.
  Continue,
  /// They do not (the stream is another one now, or entries after the
  /// position were trimmed before they were read): the members get a reset
  /// with id `to` and reading goes on after `to`; the entries of this read
  /// are dropped.
  Reset { to: ChannelId, reason: Resume },
}

/// Whether the reader, at `last` (its newest entry read, 0-0 before any),
/// can take the entries of a read: `present` is whether the entry `last`
/// was in the stream at the read, `info` the stream's `XINFO STREAM` then
/// (`None`: no such key), `seen_added` the largest `entries-added` seen on
/// earlier reads. `probe`, for a reader that has read nothing yet, is an id
/// a replay found in the stream (members stand after it) and whether it
/// was still there at the read; the replay's page must have been answered
/// before the read was sent (then Redis ran it first).
pub fn check_read(
  last: ChannelId,
  seen_added: Option<u64>,
  present: bool,
  probe: Option<(ChannelId, bool)>,
  info: Option<&StreamInfo>,
) -> ReadCheck {
  let Some(info) = info else {
    // The stream is gone (deleted, flushed, a Redis that restarted empty):
    // reading starts again from the beginning of whatever comes next. A
    // reader that has read nothing has nothing to reset, unless a replay
    // read the stream (conservative: this observation may predate it).
    return if last == ChannelId::ZERO && probe.is_none() {
      ReadCheck::Continue
    } else {
      ReadCheck::Reset {
        to: ChannelId::ZERO,
        reason: Resume::Unknown,
      }
    };
  };
  // A stream made again from which nothing was removed is read from its
  // beginning after the reset, so that its first entries (the broadcast
  // that made it again, from any process) reach the members after the
  // reset; with entries removed from it, after its head.
  let recreated = ReadCheck::Reset {
    to: if info.removed_any() {
      info.last_generated
    } else {
      ChannelId::ZERO
    },
    reason: Resume::Unknown,
  };
  // A stream's ids and its count of added entries only grow: lower ones
  // are another stream's.
  if info.last_generated < last {
    return recreated;
  }
  if let (Some(seen), Some(added)) = (seen_added, info.added) {
    if added < seen {
      return recreated;
    }
  }
  if present || info.last_generated == last {
    // Nothing after `last` can have been trimmed while `last` is kept, and
    // nothing came after the head.
    return ReadCheck::Continue;
  }
  if last == ChannelId::ZERO {
    // Nothing read yet, but a replay read the stream further on (before
    // this read was sent): if that entry is gone, the members that replayed
    // up to it stand in a stream that is no more, or was trimmed past them.
    if let Some((_, false)) = probe {
      let reason = if info.removed_any() {
        Resume::Expired
      } else {
        Resume::Unknown
      };
      return ReadCheck::Reset {
        to: info.last_generated,
        reason,
      };
    }
    // Whatever was removed was after the position.
    return if info.added.is_some_and(|added| added > info.length) {
      ReadCheck::Reset {
        to: info.last_generated,
        reason: Resume::Expired,
      }
    } else {
      ReadCheck::Continue
    };
  }
  if info.first.is_some_and(|first| first < last) {
    // An older entry is still there, so `last` was deleted, not trimmed;
    // what follows it is intact.
    return ReadCheck::Continue;
  }
  // Every entry up to and past `last` is gone, and entries came after it.
  if info.removed_any() {
    ReadCheck::Reset {
      to: info.last_generated,
      reason: Resume::Expired,
    }
  } else {
    // Nothing was ever removed from this stream, yet `last` is not in it:
    // it is another stream.
    recreated
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn id(ms: u64, seq: u64) -> ChannelId {
    ChannelId::new(ms, seq)
  }

  fn info(length: u64, added: u64, first: Option<ChannelId>, last: ChannelId) -> StreamInfo {
    StreamInfo {
      length,
      added: Some(added),
      first,
      last_generated: last,
      max_deleted: ChannelId::ZERO,
    }
  }

  #[test]
  fn parses_the_binding_form() {
    assert_eq!(
      StreamInfo::parse("3 5 10-1 10-5 0-0"),
      Some(info(3, 5, Some(id(10, 1)), id(10, 5)))
    );
    assert_eq!(
      StreamInfo::parse("0 ? ? 0-0 ?"),
      Some(StreamInfo {
        added: None,
        ..StreamInfo::default()
      })
    );
    for bad in [
      "",
      "1 2 3",
      "x 1 ? 1-1 0-0",
      "1 1 ? 1-1 0-0 extra",
      "1 1 ? 01-1 0-0",
    ] {
      assert_eq!(StreamInfo::parse(bad), None, "{bad:?}");
    }
  }

  #[test]
  fn the_window_matches_the_stream() {
    assert_eq!(window(None), (ChannelId::ZERO, ChannelId::ZERO));
    let untrimmed = info(3, 3, Some(id(1, 1)), id(1, 3));
    assert_eq!(window(Some(&untrimmed)), (ChannelId::ZERO, id(1, 3)));
    let trimmed = info(3, 9, Some(id(1, 7)), id(1, 9));
    assert_eq!(window(Some(&trimmed)), (id(1, 7), id(1, 9)));
    let old = StreamInfo {
      added: None,
      ..untrimmed
    };
    assert_eq!(window(Some(&old)), (id(1, 1), id(1, 3)));
    let deleted = StreamInfo {
      max_deleted: id(1, 2),
      ..untrimmed
    };
    assert_eq!(window(Some(&deleted)), (id(1, 2), id(1, 3)));
  }

  #[test]
  fn an_id_of_a_recreated_stream_is_unknown() {
    // Left at 100-10 of a stream that was deleted; the new one has 200-1..20.
    let now = info(20, 20, Some(id(200, 1)), id(200, 20));
    assert_eq!(
      resume_from(id(100, 10), Some(&now), Some(id(200, 1))),
      Resume::Unknown
    );
    // The same id on the stream it came from.
    let same = info(20, 20, Some(id(100, 1)), id(100, 20));
    assert_eq!(
      resume_from(id(100, 10), Some(&same), Some(id(100, 10))),
      Resume::Replay
    );
    // The head itself, and 0-0 on an untrimmed stream, need no entry.
    assert_eq!(resume_from(id(100, 20), Some(&same), None), Resume::Replay);
    assert_eq!(
      resume_from(ChannelId::ZERO, Some(&same), Some(id(100, 1))),
      Resume::Replay
    );
    assert_eq!(resume_from(ChannelId::ZERO, None, None), Resume::Replay);
    // A missing stream knows no other id.
    assert_eq!(resume_from(id(100, 10), None, None), Resume::Unknown);
    // Trimmed past the id: expired, as before.
    let trimmed = info(5, 20, Some(id(100, 16)), id(100, 20));
    assert_eq!(
      resume_from(id(100, 10), Some(&trimmed), Some(id(100, 16))),
      Resume::Expired
    );
  }

  #[test]
  fn the_reader_goes_on_while_its_entry_is_there() {
    let now = info(10, 10, Some(id(1, 1)), id(1, 10));
    assert_eq!(
      check_read(id(1, 4), Some(10), true, None, Some(&now)),
      ReadCheck::Continue
    );
    // At the head, with the entry deleted: nothing came after it.
    assert_eq!(
      check_read(id(1, 10), Some(10), false, None, Some(&now)),
      ReadCheck::Continue
    );
    // Deleted with older entries still there: not trimmed.
    assert_eq!(
      check_read(id(1, 4), Some(10), false, None, Some(&now)),
      ReadCheck::Continue
    );
    // An empty or missing stream at the start.
    assert_eq!(
      check_read(ChannelId::ZERO, None, false, None, None),
      ReadCheck::Continue
    );
    let fresh = info(3, 3, Some(id(1, 1)), id(1, 3));
    assert_eq!(
      check_read(ChannelId::ZERO, None, false, None, Some(&fresh)),
      ReadCheck::Continue
    );
  }

  #[test]
  fn a_stream_that_went_away_or_backwards_resets() {
    let gone = ReadCheck::Reset {
      to: ChannelId::ZERO,
      reason: Resume::Unknown,
    };
    assert_eq!(check_read(id(9, 0), Some(3), true, None, None), gone);
    // Far-future entry read, then the stream was made again.
    let lower = info(1, 1, Some(id(5, 0)), id(5, 0));
    assert_eq!(
      check_read(
        id(99_999_999_999_999, 0),
        Some(2),
        false,
        None,
        Some(&lower)
      ),
      gone
    );
    // Made again with later ids: entries-added went down. Nothing was
    // removed from the new stream: it is read from its beginning, so that
    // its first entries reach the members after the reset.
    let again = info(2, 2, Some(id(20, 0)), id(20, 1));
    assert_eq!(
      check_read(id(10, 0), Some(7), false, None, Some(&again)),
      gone
    );
    // ... but when entries were trimmed from the new stream, after its head.
    let trimmed = info(2, 4, Some(id(20, 2)), id(20, 3));
    assert_eq!(
      check_read(id(10, 0), Some(7), false, None, Some(&trimmed)),
      ReadCheck::Reset {
        to: id(20, 3),
        reason: Resume::Unknown
      }
    );
    // ... or, without a count to compare, nothing was ever removed from it.
    assert_eq!(check_read(id(10, 0), None, false, None, Some(&again)), gone);
  }

  #[test]
  fn a_reader_at_the_start_checks_what_a_replay_read() {
    // A replay read 1-1..1-3; the stream was deleted and made again with
    // later ids before the reader read anything.
    let again = info(5, 5, Some(id(2, 1)), id(2, 5));
    assert_eq!(
      check_read(
        ChannelId::ZERO,
        None,
        false,
        Some((id(1, 3), false)),
        Some(&again)
      ),
      ReadCheck::Reset {
        to: id(2, 5),
        reason: Resume::Unknown
      }
    );
    // Still there: the same stream.
    let same = info(5, 5, Some(id(1, 1)), id(1, 5));
    assert_eq!(
      check_read(
        ChannelId::ZERO,
        None,
        false,
        Some((id(1, 3), true)),
        Some(&same)
      ),
      ReadCheck::Continue
    );
    // Made again with earlier ids.
    let lower = info(2, 2, Some(id(0, 1)), id(0, 2));
    assert_eq!(
      check_read(
        ChannelId::ZERO,
        None,
        false,
        Some((id(1, 3), false)),
        Some(&lower)
      ),
      ReadCheck::Reset {
        to: id(0, 2),
        reason: Resume::Unknown
      }
    );
    // Gone altogether.
    assert_eq!(
      check_read(ChannelId::ZERO, None, false, Some((id(1, 3), false)), None),
      ReadCheck::Reset {
        to: ChannelId::ZERO,
        reason: Resume::Unknown
      }
    );
  }

  #[test]
  fn entries_trimmed_past_the_reader_expire_its_members() {
    // The reader is at 1-100; the stream keeps 1-500..1-600 of 600.
    let trimmed = info(101, 600, Some(id(1, 500)), id(1, 600));
    let expired = ReadCheck::Reset {
      to: id(1, 600),
      reason: Resume::Expired,
    };
    assert_eq!(
      check_read(id(1, 100), Some(150), false, None, Some(&trimmed)),
      expired
    );
    assert_eq!(
      check_read(ChannelId::ZERO, None, false, None, Some(&trimmed)),
      expired
    );
    // Trimmed to nothing.
    let empty = info(0, 600, None, id(1, 600));
    assert_eq!(
      check_read(id(1, 100), Some(150), false, None, Some(&empty)),
      expired
    );
  }
}
