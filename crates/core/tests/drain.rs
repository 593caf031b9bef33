//! Graceful drain, driven as the binding drives it (`sink`): which streams
//! end, what each one is written last, the spread of the `retry:` values,
//! and what happens to streams that open while the drain is on.

mod sink;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use native_sse_core::drain::{retry_plan, DrainOptions, DrainScope, Rng};
use native_sse_core::engine::ChannelError;
use native_sse_core::{flags, Key, StreamOptions};
use sink::*;

const MIB: u64 = 1024 * 1024;

fn window(window_ms: u64) -> DrainOptions {
  DrainOptions {
    window_ms,
    min_ms: 0,
    timeout_ms: 1000,
  }
}

fn drain(d: &mut Driver, scope: DrainScope, options: DrainOptions, now: u64) -> u32 {
  let (count, out) = d
    .engine
    .drain(scope, &options, now, 0x5eed)
    .expect("an open channel");
  d.note(out);
  count
}

fn open_at(d: &mut Driver, uuid: &str, options: StreamOptions, now: u64) -> Key {
  let (key, out) = d
    .engine
    .open_stream(uuid.to_owned(), None, options, now)
    .expect("room");
  d.note(out);
  key
}

fn add_at(d: &mut Driver, channel: Key, stream: Key, now: u64) -> bool {
  let (added, out) = d
    .engine
    .add_now(channel, stream, now)
    .expect("an open channel");
  d.note(out);
  added
}

/// The `retry:` value a stream was last written.
fn retry_of(d: &Driver, key: Key) -> u64 {
  d.parsed(key).retry.expect("a retry field")
}

#[test]
fn every_stream_ends_with_its_retry_after_what_it_had() {
  let mut d = Driver::new();
  let a = d.open("u-a", None, options(MIB));
  d.tick();
  let b = d.open("u-b", None, options(MIB));
  // Pending, not flushed yet: they go out before the retry.
  d.send(a, "tick", "1");
  d.send(b, "tick", "2");
  assert_eq!(drain(&mut d, DrainScope::All, window(3000), 0), 2);
  assert_eq!(d.engine.stream_count(), 0);
  assert_eq!(d.ended.len(), 2);
  let text_a = d.text(a);
  assert!(text_a.contains("data: 1\n\nretry: "), "{text_a}");
  assert!(text_a.ends_with("\n\n"));
  let last_a = text_a.rsplit("\n\n").nth(1).unwrap();
  assert!(last_a.starts_with("retry: "), "the retry is the last frame");
  let text_b = d.text(b);
  assert_eq!(
    text_b,
    format!(
      "{}id: 1\nevent: tick\ndata: 2\n\nretry: {}\n\n",
      String::from_utf8(welcome("u-b", true)).unwrap(),
      retry_of(&d, b)
    )
  );
  for key in [a, b] {
    assert!(retry_of(&d, key) < 3000);
  }
  // A flush that was scheduled finds nothing left to write.
  d.settle();
  assert_eq!(d.text(a), text_a);
  // Nothing is left open, nothing more is written.
  assert_eq!(d.send(a, "tick", "late"), 0);
}

#[test]
fn a_drain_of_nothing_ends_nothing() {
  let mut d = Driver::new();
  assert_eq!(drain(&mut d, DrainScope::All, window(1000), 0), 0);
  let channel = d.channel(local(1000, 10, MIB as usize), 0);
  assert_eq!(drain(&mut d, DrainScope::Channel(channel), window(0), 0), 0);
  assert!(d.ended.is_empty());
}

#[test]
fn a_channel_drain_ends_its_members_only() {
  let mut d = Driver::new();
  let news = d.channel(local(1000, 10, MIB as usize), 0);
  let other = d.channel(local(2000, 10, MIB as usize), 0);
  let a = d.open("u-a", None, quiet(MIB));
  let b = d.open("u-b", None, quiet(MIB));
  let c = d.open("u-c", None, quiet(MIB));
  assert!(d.add(news, a));
  assert!(d.add(news, b));
  assert!(d.add(other, b));
  assert!(d.add(other, c));
  d.settle();
  d.broadcast(news, "n", "1");
  assert_eq!(drain(&mut d, DrainScope::Channel(news), window(500), 0), 2);
  assert!(!d.engine.is_open(a) && !d.engine.is_open(b));
  assert!(d.engine.is_open(c));
  assert_eq!(d.engine.members(news), Vec::<Key>::new());
  assert_eq!(d.engine.members(other), vec![c], "b left every channel");
  // The broadcast of this tick came before the retry.
  for key in [a, b] {
    let parsed = d.parsed(key);
    assert_eq!(parsed.datas(), vec!["1".to_owned()]);
    assert!(parsed.retry.unwrap() < 500);
  }
  d.broadcast(other, "o", "2");
  d.settle();
  assert_eq!(d.parsed(c).datas(), vec!["2".to_owned()]);
  // A closed channel cannot be drained.
  d.engine.close_channel(other);
  assert_eq!(
    d.engine
      .drain(DrainScope::Channel(other), &window(0), 0, 1)
      .unwrap_err(),
    ChannelError::Closed
  );
}

#[test]
fn broadcasts_waiting_for_a_flush_window_go_out_before_the_retry() {
  let mut d = Driver::new();
  let windowed = d.channel(local(1000, 10, MIB as usize), 50);
  let a = member_of(&mut d, windowed, "u-a");
  d.broadcast(windowed, "w", "1");
  d.broadcast(windowed, "w", "2");
  assert_eq!(drain(&mut d, DrainScope::All, window(0), 7), 1);
  let parsed = d.parsed(a);
  assert_eq!(parsed.datas(), vec!["1".to_owned(), "2".to_owned()]);
  assert_eq!(parsed.retry, Some(0), "a window of 0: everyone at min");
  // The window's timer fires later and finds nothing.
  let out = d.engine.window_fire(windowed);
  assert_eq!(out & flags::SCHEDULE, 0);
}

fn member_of(d: &mut Driver, channel: Key, uuid: &str) -> Key {
  let key = d.open(uuid, None, quiet(64 * MIB));
  assert!(d.add(channel, key));
  d.settle();
  key
}

#[test]
fn a_replay_in_progress_is_written_whole_before_the_retry() {
  let mut d = Driver::new();
  let channel = d.channel(local(1000, 1000, 64 * MIB as usize), 0);
  let big = "x".repeat(1000);
  for _ in 0..300 {
    d.broadcast(channel, "e", &big);
  }
  d.settle();
  let first = format!("1000-{}", 1);
  let s = d.open("u-r", Some(&first), quiet(64 * MIB));
  assert!(d.add(channel, s));
  // One step of the replay, then the drain in the middle of it.
  d.flush();
  d.send(s, "own", "after");
  assert_eq!(drain(&mut d, DrainScope::All, window(100), 0), 1);
  let parsed = d.parsed(s);
  let names = parsed.names();
  assert_eq!(names.len(), 300, "events 2..=300 and the own event");
  assert_eq!(names.last().map(String::as_str), Some("own"));
  assert!(parsed.retry.is_some());
  assert!(
    d.text(s).ends_with("\n\n")
      && d
        .text(s)
        .rsplit("\n\n")
        .nth(1)
        .unwrap()
        .starts_with("retry: ")
  );
}

#[test]
fn streams_that_open_while_draining_are_sent_elsewhere_until_the_window_ends() {
  let mut d = Driver::new();
  let options = DrainOptions {
    window_ms: 1000,
    min_ms: 200,
    timeout_ms: 0,
  };
  assert_eq!(drain(&mut d, DrainScope::All, options, 5000), 0);
  let late = open_at(&mut d, "u-late", super_options(), 5600);
  assert!(!d.engine.is_open(late));
  let parsed = d.parsed(late);
  assert_eq!(parsed.names(), vec!["welcome".to_owned()]);
  let retry = parsed.retry.unwrap();
  assert!(retry >= 200, "{retry}");
  assert!(5600 + retry <= 6200, "inside the window: {retry}");
  // After the window: a stream opens as usual.
  let after = open_at(&mut d, "u-after", super_options(), 6200);
  assert!(d.engine.is_open(after));
  d.settle();
  assert_eq!(d.parsed(after).retry, None);
}

fn super_options() -> StreamOptions {
  options(MIB)
}

#[test]
fn streams_that_join_a_draining_channel_are_ended_not_added() {
  let mut d = Driver::new();
  let news = d.channel(local(1000, 10, MIB as usize), 0);
  let other = d.channel(local(2000, 10, MIB as usize), 0);
  assert_eq!(
    drain(&mut d, DrainScope::Channel(news), window(1000), 100),
    0
  );
  let s = open_at(&mut d, "u-1", quiet(MIB), 200);
  assert!(
    d.engine.is_open(s),
    "a channel drain does not stop new streams"
  );
  assert!(add_at(&mut d, news, s, 300));
  assert!(!d.engine.is_open(s));
  assert!(d.engine.members(news).is_empty());
  assert!(retry_of(&d, s) <= 800);
  let t = open_at(&mut d, "u-2", quiet(MIB), 300);
  assert!(add_at(&mut d, other, t, 300));
  assert_eq!(d.engine.members(other), vec![t]);
  // After the window, the channel takes members again.
  let u = open_at(&mut d, "u-3", quiet(MIB), 1100);
  assert!(add_at(&mut d, news, u, 1100));
  assert_eq!(d.engine.members(news), vec![u]);
  // An ended stream is not added.
  d.close(t);
  assert!(!add_at(&mut d, news, t, 1200));
}

#[test]
fn a_thousand_streams_get_one_value_per_stratum() {
  let mut d = Driver::new();
  let keys: Vec<Key> = (0..1000)
    .map(|n| d.open(&format!("u-{n}"), None, quiet(MIB)))
    .collect();
  let options = DrainOptions {
    window_ms: 3000,
    min_ms: 1000,
    timeout_ms: 0,
  };
  assert_eq!(drain(&mut d, DrainScope::All, options, 0), 1000);
  let values: Vec<u64> = keys.iter().map(|&key| retry_of(&d, key)).collect();
  assert_stratified(&values, 1000, 3000);
  // Not in the order the streams were opened.
  assert!(values.windows(2).any(|w| w[0] > w[1]));
}

/// Sorted, the k-th of n values lies in the k-th n-th of the window: as
/// uniform as n values can be.
fn assert_stratified(values: &[u64], min: u64, window: u64) {
  let n = values.len() as u64;
  let mut sorted = values.to_vec();
  sorted.sort_unstable();
  for (k, &value) in sorted.iter().enumerate() {
    let k = k as u64;
    assert!(value >= min && value < min + window.max(1), "{value}");
    if window > 0 {
      let offset = value - min;
      assert!(offset >= k * window / n, "{k}: {offset}");
      assert!(offset < ((k + 1) * window).div_ceil(n), "{k}: {offset}");
    }
  }
}

fn config() -> ProptestConfig {
  ProptestConfig {
    cases: 256,
    rng_seed: RngSeed::Fixed(0x5eed_d4a1),
    failure_persistence: None,
    ..ProptestConfig::default()
  }
}

proptest! {
  #![proptest_config(config())]

  /// Every plan: one value per stream, all in [min, min + window), one per
  /// stratum, so its p10..p90 covers about 80% of the window.
  #[test]
  fn plans_are_uniform_over_the_window(
    count in 0usize..2000,
    min in 0u64..100_000,
    window in prop_oneof![Just(0u64), 1u64..50, 50u64..2_147_483_647],
    seed in any::<u64>(),
  ) {
    let plan = retry_plan(count, min, window, &mut Rng::new(seed));
    prop_assert_eq!(plan.len(), count);
    if window == 0 {
      prop_assert!(plan.iter().all(|&v| v == min));
    } else {
      assert_stratified(&plan, min, window);
      if count >= 20 && window >= 1000 {
        let mut sorted = plan.clone();
        sorted.sort_unstable();
        let p10 = sorted[count / 10];
        let p90 = sorted[count * 9 / 10];
        prop_assert!((p90 - p10) as f64 >= 0.7 * window as f64);
      }
    }
  }

  /// Stragglers reconnect within [start + min, end] and never sooner than
  /// `min` after they opened.
  #[test]
  fn stragglers_stay_in_the_window(
    start in 0u64..1_000_000,
    min in 0u64..10_000,
    window in 0u64..100_000,
    late in 0u64..120_000,
    seed in any::<u64>(),
  ) {
    let options = DrainOptions { window_ms: window, min_ms: min, timeout_ms: 0 };
    let schedule = native_sse_core::drain::Schedule::new(start, &options);
    let now = start + late;
    match schedule.straggler_retry(now, &mut Rng::new(seed)) {
      None => prop_assert!(now >= start + min + window),
      Some(retry) => {
        prop_assert!(now < start + min + window);
        prop_assert!(retry >= min);
        prop_assert!(now + retry >= start + min);
        prop_assert!(now + retry <= (start + min + window).max(now + min));
      }
    }
  }
}
