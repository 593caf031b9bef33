//! The counters, checked against what the fake sink was handed: every byte
//! written, every stream closed for its reason, every delivery, replay and
//! reset of a channel.

mod sink;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use native_sse_core::channel::Targets;
use native_sse_core::event_id::ChannelId;
use native_sse_core::metrics::{ChannelSnapshot, Snapshot};
use native_sse_core::{CloseReason, Key, StreamOptions};
use sink::*;

const MIB: u64 = 1024 * 1024;
const MS: u64 = 1_700_000_000_000;

fn written(d: &Driver) -> u64 {
  d.writes.iter().map(|w| w.bytes.len() as u64).sum()
}

fn bytes_of(d: &Driver, keys: &[Key]) -> u64 {
  keys.iter().map(|key| d.bytes(*key).len() as u64).sum()
}

fn snapshot(d: &Driver) -> Snapshot {
  d.engine.metrics()
}

fn channel(d: &Driver, key: Key) -> ChannelSnapshot {
  d.engine.channel_metrics(key).expect("a channel")
}

#[test]
fn a_new_engine_counts_nothing() {
  let d = Driver::new();
  assert_eq!(snapshot(&d), Snapshot::default());
  assert_eq!(snapshot(&d).to_array(), [0; 14]);
}

#[test]
fn sends_comments_heartbeats_and_bytes() {
  let mut d = Driver::new();
  let beating = StreamOptions {
    keep_alive_ms: 1000,
    retry_ms: Some(3000),
    ..options(MIB)
  };
  let a = d.open("a", None, beating);
  let b = d.open("b", None, quiet(MIB));
  for n in 0..5 {
    d.send(a, "e", &n.to_string());
  }
  d.send(b, "e", "x");
  d.comment(b, "hello\nworld");
  d.comment(a, "");
  d.settle();
  d.call(|e| e.beat(1000));
  d.settle();
  // A call on a closed stream counts nothing.
  assert!(d.close(b));
  d.send(b, "e", "late");
  d.comment(b, "late");
  d.settle();

  let m = snapshot(&d).counters;
  assert_eq!(m.events, 6);
  assert_eq!(m.comments, 2);
  assert_eq!(m.heartbeats, 1);
  assert_eq!(m.streams_opened, 2);
  assert_eq!(m.closed_server, 1);
  assert_eq!(snapshot(&d).streams_open, 1);
  assert_eq!(m.bytes, written(&d));
  assert!(m.bytes > 0);
}

#[test]
fn bytes_of_immediate_writes_and_last_chunks_count_once() {
  let mut d = Driver::new();
  let s = d.open("s", None, quiet(64 * MIB));
  let big = "x".repeat(200 * 1024);
  d.send(s, "big", &big);
  // Written at once (FLUSH_NOW), as the binding does.
  let now = d
    .engine
    .write_now(s, |chunk| match chunk {
      native_sse_core::bytes::Chunk::Bytes(bytes) => bytes.len(),
      native_sse_core::bytes::Chunk::Batch(batch) => batch.len(),
    })
    .expect("pending bytes");
  d.send(s, "small", "y");
  d.send(s, "small", "z");
  // close() writes what is left in its last chunk.
  assert!(d.close(s));
  let m = snapshot(&d).counters;
  assert_eq!(m.bytes, now as u64 + written(&d));
  assert_eq!(m.events, 3);
}

#[test]
fn closes_count_by_reason() {
  let mut d = Driver::new();
  let keys: Vec<Key> = (0..5)
    .map(|n| d.open(&format!("u{n}"), None, options(MIB)))
    .collect();
  d.settle();
  assert!(d.engine.gone(keys[0], CloseReason::Client));
  assert!(d.engine.gone(keys[1], CloseReason::Server));
  assert!(d.close(keys[2]));
  // Again: nothing more is counted.
  assert!(!d.engine.gone(keys[0], CloseReason::Client));
  assert!(!d.close(keys[2]));

  // An overflowing client: its response reports backpressure and holds
  // everything it is written.
  let slow = keys[3];
  d.slow.insert(slow);
  for _ in 0..40 {
    d.send(slow, "e", &"z".repeat(64 * 1024));
    d.settle();
    if !d.engine.is_open(slow) {
      break;
    }
  }
  assert_eq!(d.destroyed, vec![slow]);
  let held = d.res_len[&slow];
  let reported = d.destroyed_held[0];
  assert!(reported > MIB, "{reported} bytes held");
  assert!(reported >= held);

  let s = snapshot(&d);
  assert_eq!(
    (
      s.counters.closed_client,
      s.counters.closed_server,
      s.counters.closed_overflow
    ),
    (1, 2, 1)
  );
  assert_eq!(s.streams_open, 1);
  assert_eq!(s.counters.streams_opened, 5);
  assert_eq!(s.counters.bytes, written(&d));
}

#[test]
fn a_broadcast_counts_one_delivery_per_member() {
  let mut d = Driver::new();
  let ch = d.channel(local(1000, 100, MIB as usize), 0);
  let members: Vec<Key> = (0..4)
    .map(|n| {
      let key = d.open(&format!("m{n}"), None, quiet(MIB));
      assert!(d.add(ch, key));
      key
    })
    .collect();
  d.settle();
  for n in 0..3 {
    d.broadcast(ch, "e", &n.to_string());
  }
  let to: std::collections::HashSet<String> = ["m1".to_owned(), "m3".to_owned()].into();
  d.broadcast_to(ch, "e", "some", Targets::Uuids(to), true);
  d.settle();

  let c = channel(&d, ch);
  assert_eq!(c.members, 4);
  assert_eq!(c.counters.broadcasts, 4);
  assert_eq!(c.counters.deliveries, 3 * 4 + 2);
  // The members got nothing but the channel's bytes (positions, events).
  assert_eq!(c.counters.bytes, bytes_of(&d, &members));
  let m = snapshot(&d).counters;
  assert_eq!(m.events, 14);
  assert_eq!(m.bytes, written(&d));
  assert_eq!((m.replays, m.resets), (0, 0));
}

#[test]
fn a_window_counts_when_it_fires() {
  let mut d = Driver::new();
  let ch = d.channel(local(1000, 100, MIB as usize), 10);
  let a = d.open("a", None, quiet(MIB));
  let b = d.open("b", None, quiet(MIB));
  d.add(ch, a);
  d.add(ch, b);
  d.broadcast(ch, "e", "1");
  d.broadcast(ch, "e", "2");
  assert_eq!(channel(&d, ch).counters.deliveries, 0);
  assert_eq!(channel(&d, ch).counters.broadcasts, 2);
  d.call(|e| e.window_fire(ch));
  d.settle();
  let c = channel(&d, ch);
  assert_eq!(c.counters.deliveries, 4);
  assert_eq!(c.counters.bytes, bytes_of(&d, &[a, b]));
}

#[test]
fn replays_and_resets_of_an_in_process_channel() {
  let mut d = Driver::new();
  // A history of 5 events.
  let ch = d.channel(local(1000, 5, MIB as usize), 0);
  let first = d.open("first", None, quiet(MIB));
  d.add(ch, first);
  for n in 1..=10 {
    d.broadcast(ch, "e", &n.to_string());
  }
  d.settle();
  let id = |seq| ChannelId::new(1000, seq).to_string();
  let joined: Vec<Key> = [
    Some(id(8)),                              // replays 9 and 10
    Some(id(10)),                             // up to date: nothing to replay
    Some(id(2)),                              // older than the history: reset
    Some("not-an-id".into()),                 // unknown: reset
    Some(ChannelId::new(999, 3).to_string()), // another epoch: reset
  ]
  .into_iter()
  .enumerate()
  .map(|(n, last)| {
    let key = d.open(&format!("j{n}"), last.as_deref(), quiet(MIB));
    assert!(d.add(ch, key));
    key
  })
  .collect();
  d.settle();
  d.broadcast(ch, "e", "11");
  d.settle();

  let c = channel(&d, ch);
  assert_eq!(c.counters.replays, 1);
  assert_eq!(c.counters.resets, 3);
  assert_eq!(c.counters.broadcasts, 11);
  assert_eq!(c.counters.deliveries, 10 + 6);
  let mut all = joined.clone();
  all.push(first);
  assert_eq!(c.counters.bytes, bytes_of(&d, &all));
  let m = snapshot(&d).counters;
  assert_eq!((m.replays, m.resets), (1, 3));
  assert_eq!(m.events, 16);
  assert_eq!(m.bytes, written(&d));
}

#[test]
fn replays_resets_and_joins_of_a_redis_channel() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=150 {
    d.publish(ch, "e", &n.to_string());
  }
  d.redis.get_mut(&ch).unwrap().trim(120);
  let rid = |seq| ChannelId::new(MS, seq).to_string();
  let opts = quiet(64 * MIB);
  let fresh = d.open("fresh", None, opts);
  let behind = d.open("behind", Some(&rid(40)), opts);
  let trimmed = d.open("trimmed", Some(&rid(3)), opts);
  let unknown = d.open("unknown", Some("x"), opts);
  // Up to date: nothing to replay, no replay counted.
  let current = d.open("current", Some(&rid(150)), opts);
  let members = [fresh, behind, trimmed, unknown, current];
  for key in members {
    assert!(d.add(ch, key));
  }
  // Live entries while the members wait for the position.
  d.settle();
  d.call(|e| e.redis_ready(ch, ChannelId::new(MS, 150)));
  d.settle();
  for n in 151..=153 {
    let entry = d.publish(ch, "e", &n.to_string());
    d.read(ch, &entry);
  }
  d.drain_all();

  let c = channel(&d, ch);
  assert_eq!(c.members, 5);
  assert_eq!(c.counters.broadcasts, 3);
  assert_eq!(c.counters.deliveries, 3 * 5);
  assert_eq!(c.counters.replays, 1);
  assert_eq!(c.counters.resets, 2);
  assert_eq!(c.counters.bytes, bytes_of(&d, &members));
  // The replay went out whole: 110 events after 40.
  assert_eq!(d.parsed(behind).events().len(), 110 + 3);
  assert_eq!(d.parsed(current).events().len(), 3);
  let m = snapshot(&d).counters;
  assert_eq!((m.replays, m.resets, m.events), (1, 2, 15));
  assert_eq!(m.bytes, written(&d));
}

#[test]
fn members_join_and_leave_by_reason() {
  let mut d = Driver::new();
  let ch = d.channel(local(1, 10, 1024), 0);
  let other = d.channel(local(2, 10, 1024), 0);
  let keys: Vec<Key> = (0..6)
    .map(|n| d.open(&format!("m{n}"), None, options(MIB)))
    .collect();
  for &key in &keys {
    assert!(d.add(ch, key));
  }
  // Added again: still one join. In two channels: each counts it.
  assert!(d.add(ch, keys[0]));
  assert!(d.add(other, keys[0]));
  d.settle();
  assert!(d.engine.gone(keys[0], CloseReason::Client));
  assert!(d.close(keys[1]));
  assert!(d.remove(ch, keys[2]));
  assert!(!d.remove(ch, keys[2]));
  // Removed, then closed: it had left already.
  assert!(d.close(keys[2]));
  // An overflowing member.
  d.slow.insert(keys[3]);
  for _ in 0..40 {
    d.broadcast(ch, "e", &"z".repeat(64 * 1024));
    d.settle();
    if !d.engine.is_open(keys[3]) {
      break;
    }
  }
  assert_eq!(d.destroyed, vec![keys[3]]);
  let c = channel(&d, ch).counters;
  assert_eq!(
    (
      c.joined,
      c.left_client,
      c.left_server,
      c.left_overflow,
      c.left_removed
    ),
    (6, 1, 1, 1, 1)
  );
  assert_eq!(channel(&d, ch).members, 2);
  let o = channel(&d, other).counters;
  assert_eq!((o.joined, o.left_client), (1, 1));
  // Closing the channel: its last two members leave with their streams open.
  d.call(|e| e.close_channel(ch));
  assert_eq!(channel(&d, ch).counters.left_removed, 3);
  assert_eq!(channel(&d, ch).members, 0);
  assert!(d.engine.is_open(keys[4]) && d.engine.is_open(keys[5]));
}

#[test]
fn channels_open_and_close() {
  let mut d = Driver::new();
  let a = d.channel(local(1, 10, 1024), 0);
  let b = d.channel(local(2, 10, 1024), 0);
  let c = d.channel(local(3, 10, 1024), 5);
  let s = d.open("s", None, quiet(MIB));
  d.add(c, s);
  d.broadcast(c, "e", "waits for the window");
  assert_eq!(snapshot(&d).to_array()[11..], [3, 3, 0]);
  d.call(|e| e.close_channel(a));
  d.call(|e| e.close_channel(a));
  // Collected after close(): counted once.
  d.engine.drop_channel(a);
  // Collected without close().
  d.engine.drop_channel(b);
  assert_eq!(snapshot(&d).to_array()[11..], [1, 3, 2]);
  // Collected with its window running: it goes when the window fires.
  d.engine.drop_channel(c);
  d.call(|e| e.window_fire(c));
  d.settle();
  assert_eq!(snapshot(&d).to_array()[11..], [0, 3, 3]);
  assert_eq!(d.engine.channel_metrics(c), None);
  assert_eq!(d.parsed(s).events().len(), 1);
}

// ----- property: random operations, bytes always match -----

#[derive(Debug, Clone)]
enum Op {
  Open,
  Send(usize, usize),
  Comment(usize),
  Add(usize),
  Remove(usize),
  Broadcast(usize),
  Close(usize),
  Gone(usize),
  Slow(usize),
  Drain,
  Flush,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    2 => Just(Op::Open),
    4 => (0..8usize, 0..3000usize).prop_map(|(s, n)| Op::Send(s, n)),
    1 => (0..8usize).prop_map(Op::Comment),
    2 => (0..8usize).prop_map(Op::Add),
    1 => (0..8usize).prop_map(Op::Remove),
    3 => (0..3000usize).prop_map(Op::Broadcast),
    1 => (0..8usize).prop_map(Op::Close),
    1 => (0..8usize).prop_map(Op::Gone),
    1 => (0..8usize).prop_map(Op::Slow),
    1 => Just(Op::Drain),
    2 => Just(Op::Flush),
  ]
}

proptest! {
  #![proptest_config(ProptestConfig {
    cases: 128,
    rng_seed: RngSeed::Fixed(0x3e7_1c5),
    failure_persistence: None,
    ..ProptestConfig::default()
  })]

  #[test]
  fn counters_match_what_was_written(ops in prop::collection::vec(op(), 1..80)) {
    let mut d = Driver::new();
    let ch = d.channel(local(1000, 8, 4096), 0);
    let mut keys: Vec<Key> = Vec::new();
    let (mut sends, mut comments, mut opened) = (0u64, 0u64, 0u64);
    let (mut server, mut client) = (0u64, 0u64);
    let pick = |keys: &Vec<Key>, n: usize| (!keys.is_empty()).then(|| keys[n % keys.len()]);
    for op in ops {
      match op {
        Op::Open => {
          let options = StreamOptions { max_buffered: 16 * 1024, ..options(0) };
          keys.push(d.open(&format!("u{}", keys.len()), None, options));
          opened += 1;
        }
        Op::Send(s, n) => if let Some(key) = pick(&keys, s) {
          if d.engine.is_open(key) { sends += 1; }
          d.send(key, "e", &"d".repeat(n));
        },
        Op::Comment(s) => if let Some(key) = pick(&keys, s) {
          if d.engine.is_open(key) { comments += 1; }
          d.comment(key, "c");
        },
        Op::Add(s) => if let Some(key) = pick(&keys, s) {
          d.add(ch, key);
        },
        Op::Remove(s) => if let Some(key) = pick(&keys, s) {
          d.remove(ch, key);
        },
        Op::Broadcast(n) => {
          d.broadcast(ch, "b", &"b".repeat(n));
        }
        Op::Close(s) => if let Some(key) = pick(&keys, s) {
          if d.close(key) { server += 1; }
        },
        Op::Gone(s) => if let Some(key) = pick(&keys, s) {
          if d.engine.gone(key, CloseReason::Client) { client += 1; }
        },
        Op::Slow(s) => if let Some(key) = pick(&keys, s) {
          d.slow.insert(key);
        },
        Op::Drain => d.drain_all(),
        Op::Flush => d.settle(),
      }
    }
    d.settle();
    let s = d.engine.metrics();
    let m = s.counters;
    prop_assert_eq!(m.bytes, written(&d));
    prop_assert_eq!(m.streams_opened, opened);
    prop_assert_eq!(m.closed_server, server);
    prop_assert_eq!(m.closed_client, client);
    prop_assert_eq!(m.closed_overflow, d.destroyed.len() as u64);
    prop_assert_eq!(s.streams_open, opened - server - client - d.destroyed.len() as u64);
    prop_assert_eq!(m.comments, comments);
    let c = d.engine.channel_metrics(ch).unwrap();
    prop_assert_eq!(m.events, sends + c.counters.deliveries);
    prop_assert_eq!(c.members, d.engine.members(ch).len() as u64);
  }
}
