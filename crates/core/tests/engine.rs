//! The engine driven as the binding drives it, through a fake sink
//! (`sink`): what each stream is written, in how many writes, and what a
//! browser would make of it.

mod sink;

use std::collections::HashSet;

use native_sse_core::channel::Targets;
use native_sse_core::engine::{ChannelError, FLUSH_AT_BYTES};
use native_sse_core::event_id::ChannelId;
use native_sse_core::heartbeat::BEATS_PER_FIRING;
use native_sse_core::stream::REPLAY_STEP_BYTES;
use native_sse_core::validate::FieldError;
use native_sse_core::{flags, Action, CloseReason, EventError, Key, StreamOptions, Text};
use sink::*;

const MIB: u64 = 1024 * 1024;

fn id(seq: u64) -> ChannelId {
  ChannelId::new(1000, seq)
}

fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
  range.map(|seq| id(seq).to_string()).collect()
}

/// A channel member that has had its opening bytes written.
fn member(d: &mut Driver, channel: Key, uuid: &str) -> Key {
  let key = d.open(uuid, None, quiet(64 * MIB));
  assert!(d.add(channel, key));
  key
}

// ----- one write per stream per flush, the opening bytes -----

#[test]
fn sends_of_one_tick_are_one_write() {
  let mut d = Driver::new();
  let s = d.open("u-1", None, options(MIB));
  let mut expected = welcome("u-1", true);
  for n in 1..=5 {
    let data = format!("{{\"n\":{n}}}");
    let out = d.send(s, "tick", &data);
    assert!(out & flags::ACCEPTED != 0);
    // The welcome already scheduled the flush.
    assert_eq!(out & flags::SCHEDULE, 0);
    expected.extend(framed(n, "tick", &data));
  }
  assert!(d.scheduled);
  d.tick();
  let chunks = d.chunks(s);
  assert_eq!(chunks.len(), 1);
  assert_eq!(chunks[0].bytes, expected);

  // The next tick: one more write, the counter goes on.
  let mut expected = Vec::new();
  for n in 6..=8 {
    let out = d.send(s, "tick", "x");
    assert_eq!(out & flags::SCHEDULE != 0, n == 6);
    expected.extend(framed(n, "tick", "x"));
  }
  d.tick();
  let chunks = d.chunks(s);
  assert_eq!(chunks.len(), 2);
  assert_eq!(chunks[1].bytes, expected);
  // Nothing more to write: no flush scheduled, nothing written by one.
  assert!(!d.scheduled);
  assert!(d.flush().is_empty());
}

#[test]
fn every_stream_gets_its_own_single_write() {
  let mut d = Driver::new();
  let keys: Vec<Key> = (0..4)
    .map(|n| d.open(&format!("u-{n}"), None, quiet(MIB)))
    .collect();
  for round in 0..3 {
    for (n, key) in keys.iter().enumerate() {
      d.send(*key, "e", &format!("{n}-{round}"));
    }
  }
  let written = d.tick();
  assert_eq!(written.len(), 4);
  for (n, key) in keys.iter().enumerate() {
    let expected: Vec<u8> = (0..3)
      .flat_map(|round| framed(round + 1, "e", &format!("{n}-{round}")))
      .collect();
    assert_eq!(d.chunks(*key).len(), 1);
    assert_eq!(d.bytes(*key), expected);
  }
}

#[test]
fn welcome_bytes() {
  let mut d = Driver::new();
  let uuid = "1ceb707b-f57a-4645-a1f6-2c12575fb151";
  let s = d.open(uuid, None, options(MIB));
  d.tick();
  assert_eq!(
    d.text(s),
    "id: 0\nevent: welcome\ndata: {\"uuid\":\"1ceb707b-f57a-4645-a1f6-2c12575fb151\"}\n\n"
  );
  let parsed = d.parsed(s);
  assert_eq!(parsed.last_id, "0");
}

#[test]
fn the_welcome_of_a_resuming_client_has_no_id() {
  let mut d = Driver::new();
  let s = d.open("u-2", Some("1000-7"), options(MIB));
  d.tick();
  assert_eq!(d.text(s), "event: welcome\ndata: {\"uuid\":\"u-2\"}\n\n");
  let parsed = d.parsed(s);
  // The client keeps the position it had.
  assert_eq!(parsed.last_id, "");
  assert_eq!(parsed.blocks.len(), 1);
}

#[test]
fn the_retry_block_comes_first() {
  let mut d = Driver::new();
  let opts = StreamOptions {
    retry_ms: Some(2500),
    ..options(MIB)
  };
  let s = d.open("u-3", None, opts);
  d.send(s, "a", "b");
  d.tick();
  let mut expected = b"retry: 2500\n\n".to_vec();
  expected.extend(welcome("u-3", true));
  expected.extend(framed(1, "a", "b"));
  assert_eq!(d.bytes(s), expected);
  assert_eq!(d.chunks(s).len(), 1);
  assert_eq!(d.parsed(s).retry, Some(2500));

  // Without a welcome, the retry block alone.
  let opts = StreamOptions {
    retry_ms: Some(0),
    welcome: false,
    ..options(MIB)
  };
  let q = d.open("u-4", Some("x"), opts);
  d.tick();
  assert_eq!(d.text(q), "retry: 0\n\n");
}

#[test]
fn the_fetch_form_counts_from_zero_without_a_welcome() {
  use native_sse_core::options::{Form, Options};
  let mut d = Driver::new();
  let given = Options::defaults(Form::Fetch);
  let opts = StreamOptions {
    welcome: given.welcome,
    first_id: given.first_event_id(Form::Fetch),
    ..options(MIB)
  };
  let s = d.open("u-f", None, opts);
  d.send(s, "a", "1");
  d.send(s, "b", "2");
  d.tick();
  let mut expected = framed(0, "a", "1");
  expected.extend(framed(1, "b", "2"));
  assert_eq!(d.bytes(s), expected);

  // With a welcome, the Node form's numbering.
  let welcomed = Options {
    welcome: true,
    ..given
  };
  let opts = StreamOptions {
    welcome: true,
    first_id: welcomed.first_event_id(Form::Fetch),
    ..options(MIB)
  };
  let w = d.open("u-w", None, opts);
  d.send(w, "a", "1");
  d.tick();
  let mut expected = welcome("u-w", true);
  expected.extend(framed(1, "a", "1"));
  assert_eq!(d.bytes(w), expected);
}

#[test]
fn a_stream_without_opening_bytes_writes_nothing() {
  let mut d = Driver::new();
  let s = d.open("u", None, quiet(MIB));
  assert!(!d.scheduled);
  assert!(d.flush().is_empty());
  assert!(d.bytes(s).is_empty());
}

// ----- order across channels, joining and leaving within a tick -----

#[test]
fn streams_in_two_channels_get_events_in_broadcast_order() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let b = d.channel(local(2000, 100, MIB as usize), 0);
  let s = d.open("s", None, quiet(MIB));
  let t = d.open("t", None, quiet(MIB));
  d.add(a, s);
  d.add(b, s);
  d.add(a, t);
  d.tick();
  assert_eq!(d.text(s), "id: 1000-0\n\nid: 2000-0\n\n");
  d.clear_writes();

  let a1 = d.broadcast(a, "a", "1");
  let b1 = d.broadcast(b, "b", "1");
  d.send(s, "own", "x");
  let a2 = d.broadcast(a, "a", "2");
  d.comment(s, "note");
  let b2 = d.broadcast(b, "b", "2");
  let a3 = d.broadcast(a, "a", "3");
  d.send(s, "own", "y");
  d.tick();

  let mut expected = Vec::new();
  expected.extend(framed_channel(a1, "a", "1"));
  expected.extend(framed_channel(b1, "b", "1"));
  expected.extend(framed(1, "own", "x"));
  expected.extend(framed_channel(a2, "a", "2"));
  expected.extend(b": note\n\n");
  expected.extend(framed_channel(b2, "b", "2"));
  expected.extend(framed_channel(a3, "a", "3"));
  expected.extend(framed(2, "own", "y"));
  assert_eq!(d.chunks(s).len(), 1);
  assert_eq!(d.text(s), String::from_utf8(expected).unwrap());
  let parsed = d.parsed(s);
  assert_eq!(
    parsed.ids(),
    ["1000-1", "2000-1", "1", "1000-2", "2000-2", "1000-3", "2"]
  );
  assert_eq!(parsed.comments, 1);

  let mut expected = Vec::new();
  for (id, data) in [(a1, "1"), (a2, "2"), (a3, "3")] {
    expected.extend(framed_channel(id, "a", data));
  }
  assert_eq!(d.chunks(t).len(), 1);
  assert_eq!(d.bytes(t), expected);
}

#[test]
fn a_member_that_joins_mid_tick_gets_only_later_events() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let m1 = member(&mut d, a, "m1");
  d.settle();
  d.clear_writes();

  let e1 = d.broadcast(a, "e", "1");
  let m2 = d.open("m2", None, quiet(MIB));
  d.add(a, m2);
  let e2 = d.broadcast(a, "e", "2");
  d.tick();

  let mut both = framed_channel(e1, "e", "1");
  both.extend(framed_channel(e2, "e", "2"));
  assert_eq!(d.bytes(m1), both);
  let mut expected = b"id: 1000-1\n\n".to_vec();
  expected.extend(framed_channel(e2, "e", "2"));
  assert_eq!(d.bytes(m2), expected);
  assert_eq!(d.chunks(m2).len(), 1);
  assert_eq!(d.parsed(m2).datas(), ["2"]);
  // Adding again does nothing.
  assert!(d.add(a, m2));
  assert!(!d.scheduled);
}

#[test]
fn a_removed_member_keeps_what_was_broadcast_before_remove() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let m1 = member(&mut d, a, "m1");
  let m2 = member(&mut d, a, "m2");
  d.settle();
  d.clear_writes();

  let e1 = d.broadcast(a, "e", "1");
  assert!(d.remove(a, m2));
  assert!(!d.remove(a, m2));
  let e2 = d.broadcast(a, "e", "2");
  d.tick();
  assert_eq!(d.bytes(m2), framed_channel(e1, "e", "1"));
  let mut both = framed_channel(e1, "e", "1");
  both.extend(framed_channel(e2, "e", "2"));
  assert_eq!(d.bytes(m1), both);
  assert_eq!(d.engine.members(a), vec![m1]);

  d.broadcast(a, "e", "3");
  d.tick();
  assert_eq!(d.chunks(m2).len(), 1);
  assert!(d.engine.is_open(m2));
}

// ----- the shared write -----

#[test]
fn members_whose_pending_is_the_whole_batch_share_one_write() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let members: Vec<Key> = (0..3)
    .map(|n| member(&mut d, a, &format!("m{n}")))
    .collect();
  d.settle();
  d.clear_writes();
  assert!(d.tokens.is_empty());

  let mut expected = Vec::new();
  for n in 0..3 {
    let id = d.broadcast(a, "e", &n.to_string());
    expected.extend(framed_channel(id, "e", &n.to_string()));
  }
  d.tick();
  let tokens: HashSet<Option<u64>> = members
    .iter()
    .map(|key| {
      let chunks = d.chunks(*key);
      assert_eq!(chunks.len(), 1);
      assert_eq!(chunks[0].bytes, expected);
      chunks[0].token
    })
    .collect();
  assert_eq!(tokens.len(), 1, "one batch for everyone");
  assert!(tokens.iter().all(Option::is_some));
  assert_eq!(d.tokens.len(), 1);

  // The next tick is a new batch with a new token.
  d.clear_writes();
  let id = d.broadcast(a, "e", "next");
  d.tick();
  for key in &members {
    let chunks = d.chunks(*key);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].bytes, framed_channel(id, "e", "next"));
    assert!(chunks[0].token.is_some());
  }
  assert_eq!(d.tokens.len(), 2);

  // A member with bytes of its own, or that missed an event, is written
  // its bytes; the others still share the batch.
  d.clear_writes();
  let e1 = d.broadcast(a, "e", "x");
  d.send(members[0], "own", "o");
  let only: HashSet<String> = ["m2".to_owned()].into();
  let e2 = d.broadcast_to(a, "dm", "y", Targets::Uuids(only), true);
  d.tick();
  let mut first = framed_channel(e1, "e", "x");
  first.extend(framed(1, "own", "o"));
  assert_eq!(d.bytes(members[0]), first);
  assert_eq!(d.chunks(members[0])[0].token, None);
  assert_eq!(d.bytes(members[1]), framed_channel(e1, "e", "x"));
  assert_eq!(d.chunks(members[1])[0].token, None);
  let mut whole = framed_channel(e1, "e", "x");
  whole.extend(framed_channel(e2, "dm", "y"));
  assert_eq!(d.bytes(members[2]), whole);
  assert!(d.chunks(members[2])[0].token.is_some());
  assert_eq!(d.tokens.len(), 3);
}

// ----- the cap -----

#[test]
fn bytes_past_the_cap_close_the_stream() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(1000));
  let big = "x".repeat(2000);
  let out = d.engine.send(s, &"big", &big.as_str(), None).unwrap();
  assert_eq!(out & flags::ACCEPTED, 0);
  assert!(out & flags::ACTIONS != 0);
  // The event (2025 framed bytes) is what it held: it was not accepted.
  assert_eq!(d.engine.take_actions(), vec![Action::Destroy(s, 2025)]);
  assert!(!d.engine.is_open(s));
  assert_eq!(d.engine.send(s, &"a", &"b", None), Ok(0));
  // Nothing is written for it.
  d.flush();
  assert!(d.bytes(s).is_empty());
}

#[test]
fn a_member_past_its_cap_leaves_and_the_others_go_on() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let small = d.open("small", None, quiet(500));
  d.add(a, small);
  let big = member(&mut d, a, "big");
  d.settle();
  d.clear_writes();
  let id = d.broadcast(a, "e", &"y".repeat(600));
  assert_eq!(d.destroyed, vec![small]);
  assert!(!d.engine.is_open(small));
  assert_eq!(d.engine.members(a), vec![big]);
  d.tick();
  assert_eq!(d.bytes(big), framed_channel(id, "e", &"y".repeat(600)));
  assert!(d.bytes(small).is_empty());
}

#[test]
fn with_backpressure_the_length_is_asked_for_first() {
  let mut d = Driver::new();
  d.auto_actions = false;
  let s = d.open("s", None, quiet(10_000));
  d.send(s, "e", &"a".repeat(8000));
  d.tick();
  assert_eq!(d.engine.backpressure(s, 8000), flags::ACCEPTED);

  // 8000 held by the response + ~3000 queued: past the cap, going by the
  // last report.
  let out = d.send(s, "e", &"b".repeat(3000));
  assert!(out & flags::ACCEPTED != 0);
  assert!(out & flags::ACTIONS != 0);
  let out = d.send(s, "e", "c");
  assert!(out & flags::ACCEPTED != 0);
  assert_eq!(d.engine.take_actions(), vec![Action::NeedLength(s)]);
  // The response drained in part: it stays open.
  assert_eq!(d.engine.length(s, 1000), flags::ACCEPTED);
  assert!(d.engine.is_open(s));
  assert!(!d.engine.has_actions());

  let out = d.send(s, "e", &"d".repeat(6000));
  assert!(out & flags::ACTIONS != 0);
  assert_eq!(d.engine.take_actions(), vec![Action::NeedLength(s)]);
  // It did not: closed for overflow.
  assert_eq!(d.engine.length(s, 5000), flags::ACTIONS);
  let actions = d.engine.take_actions();
  assert!(
    matches!(actions[..], [Action::Destroy(k, held)] if k == s && held > 5000 + 6000),
    "{actions:?}"
  );
  assert!(!d.engine.is_open(s));
  d.flush();
  assert_eq!(d.chunks(s).len(), 1);
}

#[test]
fn a_client_that_caught_up_is_not_cut_off() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(10_000));
  d.send(s, "e", &"a".repeat(8000));
  d.tick();
  d.call(|e| e.backpressure(s, 8000));
  d.drain(s);
  let out = d.send(s, "e", &"b".repeat(9000));
  assert!(out & flags::ACCEPTED != 0);
  assert_eq!(out & flags::ACTIONS, 0);
  assert!(!d.engine.has_actions());
  d.tick();
  assert!(d.engine.is_open(s));
  assert!(d.destroyed.is_empty() && d.need_length.is_empty());
  assert_eq!(d.parsed(s).datas(), ["a".repeat(8000), "b".repeat(9000)]);
}

#[test]
fn backpressure_past_the_cap_closes_the_stream() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(1000));
  assert_eq!(d.engine.backpressure(s, 1001), flags::ACTIONS);
  assert_eq!(d.engine.take_actions(), vec![Action::Destroy(s, 1001)]);
  assert!(!d.engine.is_open(s));
}

#[test]
fn a_large_send_asks_for_an_immediate_write() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(64 * MIB));
  let data = "z".repeat(FLUSH_AT_BYTES);
  let out = d.send(s, "big", &data);
  assert!(out & flags::FLUSH_NOW != 0);
  let written = d
    .engine
    .write_now(s, |chunk| match chunk {
      native_sse_core::bytes::Chunk::Bytes(bytes) => bytes.to_vec(),
      native_sse_core::bytes::Chunk::Batch(batch) => batch.bytes().to_vec(),
    })
    .unwrap();
  assert_eq!(written, framed(1, "big", &data));
  assert_eq!(d.engine.queued_bytes(s), 0);
  // The flush scheduled before has nothing left for it.
  d.tick();
  assert!(d.bytes(s).is_empty());
}

// ----- replays -----

/// A channel with `count` events of `size` bytes of data.
fn filled(d: &mut Driver, count: u64, size: usize) -> Key {
  let a = d.channel(local(1000, 1_000_000, 64 * MIB as usize), 0);
  for n in 1..=count {
    let data = format!("{n:08}{}", "r".repeat(size - 8));
    d.broadcast(a, "old", &data);
  }
  d.settle();
  a
}

fn replay_data(n: u64, size: usize) -> String {
  format!("{n:08}{}", "r".repeat(size - 8))
}

#[test]
fn a_replay_larger_than_the_cap_is_written_in_steps() {
  let mut d = Driver::new();
  let size = 4000;
  let count = 2100; // ~8.4 MiB of history
  let a = filled(&mut d, count, size);
  let frame_len = framed_channel(id(1), "old", &replay_data(1, size)).len();
  assert!(count as usize * frame_len > 8 * MIB as usize);

  let watcher = member(&mut d, a, "watcher");
  let s = d.open("s", Some("1000-1"), options(4 * MIB));
  d.slow.insert(s);
  d.add(a, s);
  let mut live = Vec::new();
  let mut rounds = 0;
  loop {
    rounds += 1;
    assert!(rounds < 1000, "the replay does not end");
    let before = d.chunks(s).len();
    d.settle();
    assert!(d.engine.is_open(s), "the replay overflowed");
    if rounds % 7 == 0 {
      let data = format!("live-{rounds}");
      d.broadcast(a, "live", &data);
      live.push(data);
      d.settle();
    }
    // One step per drain: nothing is written while the response is full.
    assert!(d.chunks(s).len() - before <= 1, "written while draining");
    let done = d.engine.stream(s).unwrap().replay.is_none();
    if done && d.engine.queued_bytes(s) == 0 {
      break;
    }
    d.drain(s);
  }
  d.slow.remove(&s);
  d.drain_all();
  // A live event after the replay is plain live.
  d.broadcast(a, "live", "after");
  live.push("after".into());
  d.settle();

  assert!(d.destroyed.is_empty() && d.need_length.is_empty());
  let chunks = d.chunks(s);
  assert!(chunks.len() >= (count as usize * frame_len) / (REPLAY_STEP_BYTES + frame_len));
  let welcome_len = welcome("s", false).len();
  for chunk in &chunks {
    assert!(
      chunk.bytes.len() <= welcome_len + REPLAY_STEP_BYTES + frame_len + 4096,
      "a write of {} bytes",
      chunk.bytes.len()
    );
  }
  let parsed = d.parsed(s);
  let events = parsed.events();
  assert_eq!(events[0].1, "welcome");
  assert_eq!(events[0].0, None);
  let replayed: Vec<_> = events[1..=(count as usize - 1)].to_vec();
  for (n, (own_id, name, data)) in (2..=count).zip(replayed) {
    assert_eq!(own_id.as_deref(), Some(id(n).to_string().as_str()));
    assert_eq!(name, "old");
    assert_eq!(data, replay_data(n, size));
  }
  let after: Vec<String> = events[count as usize..]
    .iter()
    .map(|(_, _, data)| data.clone())
    .collect();
  assert_eq!(after, live);
  // The live events were written to the other member as they came.
  assert_eq!(d.parsed(watcher).datas(), live);
}

#[test]
fn a_replay_fits_a_cap_smaller_than_a_step() {
  let mut d = Driver::new();
  let size = 1000;
  let count = 300; // ~300 KiB of history, a cap of 32 KiB
  let cap = 32 * 1024;
  let a = filled(&mut d, count, size);
  let frame_len = framed_channel(id(1), "old", &replay_data(1, size)).len();
  let s = d.open("s", Some("1000-1"), options(cap));
  d.slow.insert(s);
  d.add(a, s);
  for round in 0.. {
    assert!(round < 10_000, "the replay does not end");
    d.settle();
    assert!(d.engine.is_open(s), "the replay overflowed");
    let done = d.engine.stream(s).unwrap().replay.is_none();
    if done && d.engine.queued_bytes(s) == 0 {
      break;
    }
    d.drain(s);
  }
  assert!(d.destroyed.is_empty());
  let step = d.engine.stream(s).unwrap().replay_step();
  assert_eq!(step, cap as usize / 4);
  let welcome_len = welcome("s", false).len();
  for chunk in d.chunks(s) {
    assert!(
      chunk.bytes.len() <= welcome_len + step + frame_len,
      "a write of {} bytes",
      chunk.bytes.len()
    );
  }
  let events = d.parsed(s).events();
  assert_eq!(
    events.len(),
    count as usize,
    "the welcome and every event after 1"
  );
  for (n, (_, _, data)) in (2..=count).zip(&events[1..]) {
    assert_eq!(data, &replay_data(n, size));
  }
}

#[test]
fn replays_past_the_limit_wait_their_turn() {
  let mut d = Driver::new();
  d.engine.set_max_replays(2);
  let size = 4000;
  let count = 60; // ~240 KiB: several steps each
  let a = filled(&mut d, count, size);
  let streams: Vec<Key> = (0..5)
    .map(|n| {
      let key = d.open(&format!("r{n}"), Some("1000-1"), quiet(64 * MIB));
      d.add(a, key);
      key
    })
    .collect();
  let live = d.broadcast(a, "live", "during");
  d.settle();

  // At most two replays write in any one flush.
  let replay_flushes: Vec<HashSet<usize>> = streams
    .iter()
    .map(|key| d.chunks(*key).iter().map(|w| w.flush).collect())
    .collect();
  let flushes: HashSet<usize> = replay_flushes.iter().flatten().copied().collect();
  for flush in flushes {
    let writing = replay_flushes.iter().filter(|f| f.contains(&flush)).count();
    assert!(writing <= 2, "{writing} replays in flush {flush}");
  }
  // And the ones that waited still finish, in full, then the live event.
  for key in &streams {
    assert!(d.engine.stream(*key).unwrap().replay.is_none());
    let parsed = d.parsed(*key);
    let expected: Vec<String> = ids(2..=count)
      .into_iter()
      .chain([live.to_string()])
      .collect();
    assert_eq!(parsed.ids(), expected);
    assert_eq!(parsed.datas().last().unwrap(), "during");
  }
}

#[test]
fn a_replay_slot_freed_by_a_stream_that_went_is_not_lost() {
  let mut d = Driver::new();
  d.engine.set_max_replays(1);
  let size = 4000;
  let count = 40;
  let a = filled(&mut d, count, size);
  let first = d.open("first", Some("1000-1"), quiet(64 * MIB));
  d.slow.insert(first);
  d.add(a, first);
  let second = d.open("second", Some("1000-1"), quiet(64 * MIB));
  d.add(a, second);
  d.settle();
  // The first replay paused after a step; the second waits for its slot.
  assert!(d.engine.stream(first).unwrap().replay.is_some());
  assert!(d.bytes(second).is_empty());

  assert!(d.engine.gone(first, CloseReason::Client));
  assert!(!d.engine.is_open(first));
  // Whatever comes next gets the engine flushing again.
  let out = d.broadcast(a, "live", "x");
  let _ = out;
  assert!(
    d.scheduled,
    "no flush was scheduled after the slot was freed"
  );
  d.settle();
  let expected: Vec<String> = ids(2..=count + 1).into_iter().collect();
  assert_eq!(d.parsed(second).ids(), expected);
}

#[test]
fn a_replay_slot_freed_by_an_overflow_starts_the_next_replay() {
  let mut d = Driver::new();
  d.engine.set_max_replays(1);
  let size = 4000;
  let count = 40;
  let a = filled(&mut d, count, size);
  let first = d.open("first", Some("1000-1"), quiet(200_000));
  d.slow.insert(first);
  d.add(a, first);
  let second = d.open("second", Some("1000-1"), quiet(64 * MIB));
  d.add(a, second);
  d.settle();
  assert!(d.bytes(second).is_empty());
  // The first client stops reading: its response reports more than its
  // cap and it is closed, which frees the slot.
  let out = d.engine.backpressure(first, 300_000);
  d.note(out);
  assert_eq!(d.destroyed, vec![first]);
  assert!(d.scheduled, "the next replay was not scheduled");
  d.settle();
  let expected: Vec<String> = ids(2..=count).into_iter().collect();
  assert_eq!(d.parsed(second).ids(), expected);
}

#[test]
fn close_writes_the_rest_of_a_replay_and_what_waited_behind_it() {
  let mut d = Driver::new();
  let size = 4000;
  let count = 50;
  let a = filled(&mut d, count, size);
  let s = d.open("s", Some("1000-1"), quiet(64 * MIB));
  d.slow.insert(s);
  d.add(a, s);
  d.settle();
  let live = d.broadcast(a, "live", "l");
  d.send(s, "own", "o");
  assert!(d.engine.stream(s).unwrap().replay.is_some());
  assert!(d.close(s));
  assert!(!d.engine.is_open(s));
  assert!(!d.close(s));
  let parsed = d.parsed(s);
  let mut expected = ids(2..=count);
  expected.push(live.to_string());
  expected.push("1".into());
  assert_eq!(parsed.ids(), expected);
}

#[test]
fn a_position_valid_in_two_channels_replays_both() {
  // Two channels made in the same millisecond share an epoch, so one
  // Last-Event-ID is a position in both: the second replay follows the
  // first, then what was queued behind them.
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let b = d.channel(local(1000, 100, MIB as usize), 0);
  for n in 1..=5 {
    d.broadcast(a, "a", &n.to_string());
  }
  for n in 1..=3 {
    d.broadcast(b, "b", &n.to_string());
  }
  let s = d.open("s", Some("1000-2"), quiet(MIB));
  d.add(a, s);
  let a6 = d.broadcast(a, "a", "6");
  d.add(b, s);
  let b4 = d.broadcast(b, "b", "4");
  d.settle();
  let parsed = d.parsed(s);
  assert_eq!(
    parsed.events(),
    [
      (Some("1000-3".into()), "a".into(), "3".into()),
      (Some("1000-4".into()), "a".into(), "4".into()),
      (Some("1000-5".into()), "a".into(), "5".into()),
      (Some("1000-3".into()), "b".into(), "3".into()),
      (Some(a6.to_string()), "a".into(), "6".into()),
      (Some(b4.to_string()), "b".into(), "4".into()),
    ]
  );
}

// ----- joining while live events flow, in-process -----

#[test]
fn joining_while_live_events_flow_has_no_gap_and_no_duplicate() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let m = member(&mut d, a, "m");
  for n in 1..=5 {
    d.broadcast(a, "e", &n.to_string());
  }
  d.tick();
  d.broadcast(a, "e", "6");
  let r = d.open("r", Some("1000-3"), options(MIB));
  d.add(a, r);
  let f = d.open("f", None, quiet(MIB));
  d.add(a, f);
  d.broadcast(a, "e", "7");
  d.broadcast(a, "e", "8");
  d.tick();
  d.broadcast(a, "e", "9");
  d.settle();

  let parsed = d.parsed(r);
  assert_eq!(parsed.names()[0], "welcome");
  assert_eq!(parsed.ids(), ids(4..=9));
  assert_eq!(parsed.datas_after_welcome(), ["4", "5", "6", "7", "8", "9"]);
  let parsed = d.parsed(f);
  assert_eq!(parsed.blocks[0], Block::Position("1000-6".into()));
  assert_eq!(parsed.ids(), ids(6..=9));
  assert_eq!(parsed.datas(), ["7", "8", "9"]);
  assert_eq!(d.parsed(m).ids(), ids(0..=9));
  // At the head: nothing to replay and no position block either.
  let h = d.open("h", Some("1000-9"), quiet(MIB));
  d.add(a, h);
  d.broadcast(a, "e", "10");
  d.settle();
  assert_eq!(d.parsed(h).ids(), ids(10..=10));
}

// ----- the flush window -----

#[test]
fn the_flush_window_holds_broadcasts_until_it_fires() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 50);
  let m1 = member(&mut d, a, "m1");
  let m2 = member(&mut d, a, "m2");
  d.settle();
  d.clear_writes();

  let mut expected = Vec::new();
  for n in 0..4 {
    let (id, out) = d
      .engine
      .broadcast(a, &prepared("e", &n.to_string()), Targets::All, true)
      .unwrap();
    d.note(out);
    assert_eq!(out & flags::ARM_WINDOW != 0, n == 0, "broadcast {n}");
    assert_eq!(out & flags::SCHEDULE, 0);
    expected.extend(framed_channel(id, "e", &n.to_string()));
  }
  // A direct send does not wait for the window.
  d.send(m1, "own", "first");
  d.tick();
  assert_eq!(d.bytes(m1), framed(1, "own", "first"));
  assert!(d.bytes(m2).is_empty());
  assert!(!d.scheduled);
  d.clear_writes();

  let out = d.engine.window_fire(a);
  assert!(out & flags::SCHEDULE != 0);
  d.note(out);
  d.tick();
  for key in [m1, m2] {
    let chunks = d.chunks(key);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].bytes, expected);
    assert!(chunks[0].token.is_some());
  }
  // Firing again does nothing; the next broadcast arms a new window.
  assert_eq!(d.engine.window_fire(a), 0);
  let (_, out) = d
    .engine
    .broadcast(a, &prepared("e", "later"), Targets::All, true)
    .unwrap();
  assert!(out & flags::ARM_WINDOW != 0);
  assert_eq!(d.windows_armed, 1);
}

#[test]
fn a_member_that_joins_while_the_window_is_open_gets_each_event_once() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 50);
  let m = member(&mut d, a, "m");
  let e1 = d.broadcast(a, "e", "1");
  d.call(|e| e.window_fire(a));
  d.settle();
  // The window holds 2 and 3 (already in the history) when they join.
  d.broadcast(a, "e", "2");
  d.broadcast(a, "e", "3");
  let resumed = d.open("r", Some(&e1.to_string()), quiet(MIB));
  d.add(a, resumed);
  let fresh = d.open("f", None, quiet(MIB));
  d.add(a, fresh);
  d.broadcast(a, "e", "4");
  d.call(|e| e.window_fire(a));
  d.settle();
  assert_eq!(d.parsed(m).ids(), ids(0..=4));
  // Replayed 2 and 3; from the window only 4.
  assert_eq!(d.parsed(resumed).ids(), ids(2..=4));
  assert_eq!(d.parsed(resumed).datas(), ["2", "3", "4"]);
  // Told the position 3; then 4.
  assert_eq!(d.parsed(fresh).ids(), ids(3..=4));
  assert_eq!(d.parsed(fresh).datas(), ["4"]);
}

#[test]
fn a_channel_dropped_before_its_window_fires_still_writes_it() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 50);
  let m = member(&mut d, a, "m");
  d.settle();
  d.clear_writes();
  let e1 = d.broadcast(a, "e", "1");
  let e2 = d.broadcast(a, "e", "2");
  d.engine.drop_channel(a);
  assert!(d.engine.channel(a).is_some());
  d.tick();
  assert!(d.bytes(m).is_empty());
  let out = d.engine.window_fire(a);
  d.note(out);
  d.tick();
  let mut expected = framed_channel(e1, "e", "1");
  expected.extend(framed_channel(e2, "e", "2"));
  assert_eq!(d.bytes(m), expected);
  // Then it is gone, and its members are members of nothing.
  assert!(d.engine.channel(a).is_none());
  assert!(d.engine.stream(m).unwrap().channels.is_empty());
  assert_eq!(
    d.engine
      .broadcast(a, &prepared("e", "3"), Targets::All, true)
      .map(|(id, _)| id),
    Err(ChannelError::Gone)
  );
  // A channel without a window goes at once.
  let b = d.channel(local(2000, 100, MIB as usize), 0);
  d.engine.drop_channel(b);
  assert!(d.engine.channel(b).is_none());
}

#[test]
fn close_channel_writes_the_window_and_refuses_more() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 50);
  let m = member(&mut d, a, "m");
  d.settle();
  let e1 = d.broadcast(a, "e", "1");
  let out = d.engine.close_channel(a);
  d.note(out);
  d.settle();
  assert_eq!(d.parsed(m).ids(), [id(0).to_string(), e1.to_string()]);
  assert!(d.engine.members(a).is_empty());
  assert!(d.engine.is_open(m));
  assert_eq!(
    d.engine
      .broadcast(a, &prepared("e", "2"), Targets::All, true)
      .map(|(id, _)| id),
    Err(ChannelError::Closed)
  );
  assert_eq!(d.engine.add(a, m), Err(ChannelError::Closed));
}

// ----- targeted and live-only events -----

#[test]
fn targeted_events_reach_only_their_targets() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let s1 = member(&mut d, a, "u1");
  let s2 = member(&mut d, a, "u2");
  let s3 = member(&mut d, a, "u3");
  d.settle();
  d.clear_writes();
  let uuids: HashSet<String> = ["u1".to_owned(), "u3".to_owned(), "nobody".to_owned()].into();
  d.broadcast_to(a, "dm", "to 1 and 3", Targets::Uuids(uuids), true);
  let keys: HashSet<Key> = [s2].into();
  d.broadcast_to(a, "pick", "to 2", Targets::Streams(keys), true);
  d.broadcast(a, "all", "everyone");
  d.broadcast_to(a, "clock", "12:00", Targets::All, false);
  d.settle();
  assert_eq!(d.parsed(s1).names(), ["dm", "all", "clock"]);
  assert_eq!(
    d.parsed(s1).ids(),
    ids(1..=1).into_iter().chain(ids(3..=4)).collect::<Vec<_>>()
  );
  assert_eq!(d.parsed(s2).names(), ["pick", "all", "clock"]);
  assert_eq!(d.parsed(s3).names(), ["dm", "all", "clock"]);
}

#[test]
fn targeted_and_live_only_events_are_not_replayed_but_are_positions() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let s1 = member(&mut d, a, "u1");
  d.settle();
  d.broadcast(a, "all", "1"); // 1000-1
  let uuids: HashSet<String> = ["u1".to_owned()].into();
  let dm = d.broadcast_to(a, "dm", "secret", Targets::Uuids(uuids), true); // 1000-2
  let keys: HashSet<Key> = [s1].into();
  d.broadcast_to(a, "pick", "p", Targets::Streams(keys), true); // 1000-3
  d.broadcast(a, "all", "4"); // 1000-4
  let clock = d.broadcast_to(a, "clock", "c", Targets::All, false); // 1000-5
  d.settle();

  // From before them all: only the events for everyone that were kept.
  let r = d.open("u1", Some("1000-1"), quiet(MIB));
  d.add(a, r);
  // From the targeted event's id: a valid position.
  let r2 = d.open("u1", Some(&dm.to_string()), quiet(MIB));
  d.add(a, r2);
  // From the live-only event's id (the head): nothing missed.
  let r3 = d.open("u1", Some(&clock.to_string()), quiet(MIB));
  d.add(a, r3);
  let next = d.broadcast(a, "all", "6");
  d.settle();
  assert_eq!(d.parsed(r).ids(), ["1000-4".to_owned(), next.to_string()]);
  assert_eq!(d.parsed(r).names(), ["all", "all"]);
  assert_eq!(d.parsed(r2).ids(), ["1000-4".to_owned(), next.to_string()]);
  assert_eq!(d.parsed(r3).ids(), [next.to_string()]);
}

// ----- resets -----

#[test]
fn an_expired_position_gets_a_reset() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 3, MIB as usize), 0);
  for n in 1..=5 {
    d.broadcast(a, "e", &n.to_string());
  }
  // Kept: 3, 4, 5; a client that saw 2 missed only kept events.
  let ok = d.open("ok", Some("1000-2"), quiet(MIB));
  d.add(a, ok);
  let old = d.open("old", Some("1000-1"), options(MIB));
  d.add(a, old);
  let e6 = d.broadcast(a, "e", "6");
  d.settle();
  assert_eq!(d.parsed(ok).ids(), ids(3..=6));
  let mut expected = welcome("old", false);
  expected.extend(b"id: 1000-5\nevent: reset\ndata: {\"reason\":\"expired\"}\n\n");
  expected.extend(framed_channel(e6, "e", "6"));
  assert_eq!(d.text(old), String::from_utf8(expected).unwrap());
}

#[test]
fn an_unknown_position_gets_a_reset() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  for n in 1..=3 {
    d.broadcast(a, "e", &n.to_string());
  }
  for last in ["2000-2", "999-1", "1000-4", "abc", "0", "1000-01", "1000-"] {
    let s = d.open("s", Some(last), quiet(MIB));
    d.add(a, s);
    d.settle();
    assert_eq!(
      d.text(s),
      "id: 1000-3\nevent: reset\ndata: {\"reason\":\"unknown\"}\n\n",
      "{last}"
    );
    assert_eq!(d.bytes(s), reset(id(3), "unknown"));
  }
}

// ----- heartbeats -----

fn open_at(d: &mut Driver, uuid: &str, keep_alive_ms: u64, now: u64) -> Key {
  let opts = StreamOptions {
    keep_alive_ms,
    ..quiet(MIB)
  };
  let (key, out) = d
    .engine
    .open_stream(uuid.to_owned(), None, opts, now)
    .unwrap();
  d.note(out);
  key
}

#[test]
fn heartbeats_go_to_due_streams_only() {
  let mut d = Driver::new();
  let s1 = open_at(&mut d, "s1", 1000, 0);
  assert_eq!(d.engine.timer_due(), Some(1000));
  assert_eq!(d.timer_armed, 1);
  let s2 = open_at(&mut d, "s2", 5000, 0);
  // The timer is armed for earlier already.
  assert_eq!(d.timer_armed, 1);
  let s3 = open_at(&mut d, "s3", 0, 0);
  assert_eq!(d.engine.timer_due(), Some(1000));

  let out = d.engine.beat(999);
  d.note(out);
  assert!(out & flags::TIMER != 0);
  assert_eq!(d.engine.timer_due(), Some(1000));
  assert!(!d.scheduled);

  let out = d.engine.beat(1000);
  d.note(out);
  assert!(out & flags::SCHEDULE != 0 && out & flags::TIMER != 0);
  assert_eq!(d.engine.timer_due(), Some(2000));
  d.tick();
  assert_eq!(d.text(s1), ":\n\n");
  assert!(d.bytes(s2).is_empty() && d.bytes(s3).is_empty());

  // A late firing: the next beat is scheduled from the due time, but never
  // in the past.
  d.call(|e| e.beat(4500));
  d.tick();
  assert_eq!(d.text(s1), ":\n\n:\n\n");
  assert_eq!(d.engine.timer_due(), Some(4501));
  d.call(|e| e.beat(5000));
  d.tick();
  assert_eq!(d.text(s1), ":\n\n:\n\n:\n\n");
  assert_eq!(d.text(s2), ":\n\n");
  assert_eq!(d.parsed(s2).comments, 1);
  assert!(d.parsed(s2).blocks.is_empty());
  assert_eq!(d.engine.timer_due(), Some(5501));

  // A closed stream gets nothing.
  assert!(d.close(s1));
  let before = d.bytes(s1);
  d.call(|e| e.beat(10_000));
  d.tick();
  assert_eq!(d.bytes(s1), before);
  assert_eq!(d.text(s2), ":\n\n:\n\n");
  assert!(d.bytes(s3).is_empty());
  assert_eq!(d.engine.timer_due(), Some(15_000));
  // With no stream left to beat for, there is no time to fire at.
  assert!(d.close(s2));
  assert_eq!(d.engine.timer_due(), None);
  assert_eq!(d.engine.beat(15_000), 0);
  assert!(!d.scheduled);
}

#[test]
fn heartbeats_are_capped_per_firing() {
  let mut d = Driver::new();
  let count = BEATS_PER_FIRING + 88;
  let keys: Vec<Key> = (0..count)
    .map(|n| open_at(&mut d, &format!("s{n}"), 1000, 0))
    .collect();
  let out = d.engine.beat(1000);
  d.note(out);
  assert!(out & flags::TIMER != 0);
  assert_eq!(d.engine.timer_due(), Some(1001));
  d.tick();
  let beaten = keys.iter().filter(|k| !d.bytes(**k).is_empty()).count();
  assert_eq!(beaten, BEATS_PER_FIRING);

  let out = d.engine.beat(1001);
  d.note(out);
  assert!(out & flags::TIMER != 0);
  assert_eq!(d.engine.timer_due(), Some(2000));
  d.tick();
  for key in &keys {
    assert_eq!(d.text(*key), ":\n\n");
  }
  // Everyone was rescheduled a period on.
  d.call(|e| e.beat(1999));
  d.tick();
  for key in &keys {
    assert_eq!(d.text(*key), ":\n\n");
  }
}

// ----- stale keys -----

#[test]
fn calls_with_a_closed_stream_do_nothing() {
  let mut d = Driver::new();
  let a = d.channel(local(1000, 100, MIB as usize), 0);
  let s = member(&mut d, a, "s");
  d.settle();
  assert!(d.close(s));
  // A new stream takes the slot, with another generation.
  let other = member(&mut d, a, "other");
  assert_eq!(other.slot, s.slot);
  d.settle();
  let queued = d.engine.queued_bytes(other);

  assert_eq!(d.engine.send(s, &"a", &"b", None), Ok(0));
  assert_eq!(d.engine.send(s, &"a\r", &"b", None), Ok(0));
  assert_eq!(d.engine.comment(s, &"c"), 0);
  assert_eq!(d.engine.length(s, 5), 0);
  assert_eq!(d.engine.backpressure(s, u64::MAX), 0);
  assert_eq!(d.engine.drained(s), 0);
  assert_eq!(d.engine.queued_bytes(s), 0);
  assert!(d.engine.write_now(s, |_| ()).is_none());
  assert!(d.engine.close(s, |_| ()).is_none());
  assert!(!d.engine.gone(s, CloseReason::Client));
  assert_eq!(d.engine.add(a, s), Ok((false, 0)));
  assert!(!d.engine.remove(a, s));
  assert_eq!(d.engine.redis_replayed(a, s, true, None), 0);
  assert!(!d.engine.is_open(s));
  assert!(d.engine.stream(s).is_none());
  assert!(!d.engine.has_actions());
  assert!(!d.scheduled);

  assert_eq!(d.engine.queued_bytes(other), queued);
  assert!(d.engine.is_open(other));
  assert_eq!(d.engine.members(a), vec![other]);
  assert_eq!(d.engine.stream_count(), 1);
}

// ----- field rules -----

#[test]
fn names_and_ids_that_break_a_rule_are_refused() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(MIB));
  for (name, err) in [
    ("a\rdata: evil", FieldError::CarriageReturn),
    ("a\nb", FieldError::LineFeed),
    ("a\0b", FieldError::Nul),
  ] {
    assert_eq!(
      d.engine.send(s, &name, &"x", None),
      Err(EventError::Name(err))
    );
    let id: &dyn Text = &name;
    assert_eq!(
      d.engine.send(s, &"ok", &"x", Some(id)),
      Err(EventError::Id(err))
    );
  }
  assert_eq!(d.engine.queued_bytes(s), 0);
  assert!(!d.scheduled);
  let lone: &[u16] = &[0x61, 0xD800];
  assert_eq!(
    d.engine.send(s, &lone, &"x", None),
    Err(EventError::Name(FieldError::LoneSurrogate))
  );
  // A lone surrogate anywhere in a name is refused, whatever follows it.
  let lones: [&[u16]; 4] = [
    &[0xD800, 0x62],
    &[0xDC00],
    &[0xDE00, 0xD83D],
    &[0x61, 0xD83D, 0x61],
  ];
  for lone in lones {
    assert_eq!(
      d.engine.send(s, &lone, &"x", None),
      Err(EventError::Name(FieldError::LoneSurrogate))
    );
  }
  let paired: Vec<u16> = "a😀".encode_utf16().collect();
  let paired: &[u16] = &paired;
  let out = d.engine.send(s, &paired, &"x", None).unwrap();
  assert!(out & flags::ACCEPTED != 0);
  assert!(d.engine.queued_bytes(s) > 0);
  d.note(out);
  d.tick();
  // Nothing of the refused events, and the counter did not move.
  assert_eq!(d.bytes(s), framed(1, "a😀", "x"));
  let explicit: &dyn Text = &"my-id";
  d.call(|e| e.send(s, &"n", &"d", Some(explicit)).unwrap());
  d.send(s, "n", "d");
  d.tick();
  assert_eq!(d.parsed(s).ids(), ["1", "my-id", "2"]);
}

/// UTF-16 to UTF-8 as Node writes it: each lone surrogate is one U+FFFD and
/// the unit after it is kept (the binding reads strings this way under
/// WASI, where emnapi's own conversion swallows that unit).
#[test]
fn utf16_is_read_as_node_writes_it() {
  let utf8 = |units: &[u16]| {
    let mut out = b"head:".to_vec();
    native_sse_core::engine::append_utf16(&mut out, units);
    String::from_utf8(out).expect("valid UTF-8")
  };
  let units: Vec<u16> = "plain é € 😀".encode_utf16().collect();
  assert_eq!(utf8(&units), "head:plain é € 😀");
  assert_eq!(utf8(&[]), "head:");
  assert_eq!(utf8(&[0x61, 0xD800, 0x62]), "head:a\u{FFFD}b");
  assert_eq!(utf8(&[0xDC00, 0x63]), "head:\u{FFFD}c");
  assert_eq!(utf8(&[0xDE00, 0xD83D]), "head:\u{FFFD}\u{FFFD}");
  assert_eq!(utf8(&[0x64, 0xD83D]), "head:d\u{FFFD}");
  assert_eq!(utf8(&[0xD83D, 0xDE00, 0xD83D]), "head:😀\u{FFFD}");
  assert_eq!(utf8(&[0xFFFD]), "head:\u{FFFD}");
}
