//! Graceful drain, for a shutdown or a deploy: the rules for `drain(options)`
//! and `channel.drain(options)`, the plan of `retry:` values that spreads the
//! clients' reconnects over a window, and the draining state that sends
//! streams opened during the window elsewhere too.
//!
//! A drained stream gets `retry: <ms>` as its last frame and is ended at
//! once; its client waits that long before it reconnects (to another server,
//! once the load balancer has taken this one out). The values of one drain
//! are spread evenly over `[min, min + window)`: the window is cut into as
//! many equal strata as there are streams, each stream gets one stratum (in
//! a random order, so that the order streams were opened in says nothing
//! about when they come back) and a random point inside it. So the
//! reconnects are as uniform as they can be for that many clients, with no
//! two strata crowded, whatever the random numbers.

use std::collections::HashMap;

use crate::options::{integer_in, MAX_TIMER_MS};
use crate::slab::Key;

/// The window when `windowMs` is not given.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;
/// The shortest `retry:` when `minMs` is not given: none, the window starts
/// at the drain.
pub const DEFAULT_MIN_MS: u64 = 0;
/// How long the responses of drained streams may take to finish when
/// `timeoutMs` is not given; then they are destroyed. The streams are ended
/// at once (the window is in the clients' `retry:`, not in the server), so
/// this only bounds a client that does not read what is left.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The checked options of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOptions {
  /// The reconnects are spread over this many milliseconds (0: all at
  /// `min_ms`).
  pub window_ms: u64,
  /// The shortest `retry:` value: the window starts this long after the
  /// drain.
  pub min_ms: u64,
  /// How long the responses may take to finish before they are destroyed.
  pub timeout_ms: u64,
}

impl Default for DrainOptions {
  fn default() -> Self {
    DrainOptions {
      window_ms: DEFAULT_WINDOW_MS,
      min_ms: DEFAULT_MIN_MS,
      timeout_ms: DEFAULT_TIMEOUT_MS,
    }
  }
}

impl DrainOptions {
  /// The options from the numbers given (`None`: not given), or the name of
  /// the first one that breaks its rule and the rule. Each is an integer
  /// from 0 to 2^31 - 1 (what a timer takes).
  pub fn check(
    window_ms: Option<f64>,
    min_ms: Option<f64>,
    timeout_ms: Option<f64>,
  ) -> Result<DrainOptions, (&'static str, String)> {
    let mut options = DrainOptions::default();
    let fields: [(&'static str, Option<f64>, &mut u64); 3] = [
      ("windowMs", window_ms, &mut options.window_ms),
      ("minMs", min_ms, &mut options.min_ms),
      ("timeoutMs", timeout_ms, &mut options.timeout_ms),
    ];
    for (name, given, slot) in fields {
      if let Some(value) = given {
        *slot = integer_in(value, 0, MAX_TIMER_MS).map_err(|rule| (name, rule))?;
      }
    }
    Ok(options)
  }
}

/// A small, fast generator (SplitMix64). The plan needs spread, not
/// secrecy: seeded once per drain by the caller (the binding takes the seed
/// from the operating system's random source), and fixed in tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
  pub fn new(seed: u64) -> Rng {
    Rng(seed)
  }

  pub fn next_u64(&mut self) -> u64 {
    self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = self.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
  }

  /// A number in `0..bound` (0 when `bound` is 0).
  pub fn below(&mut self, bound: u64) -> u64 {
    ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
  }

  /// Puts `items` in a uniformly random order (Fisher-Yates).
  pub fn shuffle<T>(&mut self, items: &mut [T]) {
    for i in (1..items.len()).rev() {
      let j = self.below(i as u64 + 1) as usize;
      items.swap(i, j);
    }
  }
}

/// The `retry:` value of each of `count` streams, in their order: one value
/// in each of `count` equal strata of `[min_ms, min_ms + window_ms)`, the
/// strata dealt out in a random order, each value at a random point of its
/// stratum. With a window of 0 every value is `min_ms`.
pub fn retry_plan(count: usize, min_ms: u64, window_ms: u64, rng: &mut Rng) -> Vec<u64> {
  let mut strata: Vec<u64> = (0..count as u64).collect();
  rng.shuffle(&mut strata);
  let n = count as u128;
  let window = u128::from(window_ms);
  strata
    .into_iter()
    .map(|stratum| {
      // (stratum * window + jitter) / n, with jitter in 0..window: a point
      // of [stratum * window / n, (stratum + 1) * window / n).
      let jitter = u128::from(rng.below(window_ms));
      min_ms + ((u128::from(stratum) * window + jitter) / n) as u64
    })
    .collect()
}

/// When a drain's reconnects are due, in the engine's clock: the draining
/// state lasts until the end of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
  pub start_ms: u64,
  pub min_ms: u64,
  pub window_ms: u64,
}

impl Schedule {
  pub fn new(start_ms: u64, options: &DrainOptions) -> Schedule {
    Schedule {
      start_ms,
      min_ms: options.min_ms,
      window_ms: options.window_ms,
    }
  }

  /// The time of the last planned reconnect: draining until then.
  pub fn end_ms(&self) -> u64 {
    self
      .start_ms
      .saturating_add(self.min_ms)
      .saturating_add(self.window_ms)
  }

  /// The `retry:` value for a stream that opens (or joins the channel) at
  /// `now_ms` while the drain is on: a point of what is left of the window,
  /// so that its reconnect still falls inside it (at least `min_ms` from
  /// now). `None` once the window is over: the stream opens as usual.
  pub fn straggler_retry(&self, now_ms: u64, rng: &mut Rng) -> Option<u64> {
    let end = self.end_ms();
    if now_ms >= end {
      return None;
    }
    let earliest = now_ms
      .saturating_add(self.min_ms)
      .max(self.start_ms.saturating_add(self.min_ms));
    if earliest >= end {
      return Some(self.min_ms);
    }
    let at = earliest + rng.below(end - earliest);
    Some(at - now_ms)
  }
}

/// Which streams a drain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainScope {
  /// Every open stream of the environment (`drain()`).
  All,
  /// The members of one channel (`channel.drain()`).
  Channel(Key),
}

/// The draining state of an environment: the latest drain of everything,
/// the latest drain of each channel, and the generator for stragglers.
#[derive(Debug)]
pub struct Drains {
  pub all: Option<Schedule>,
  pub channels: HashMap<Key, Schedule>,
  pub rng: Rng,
}

impl Default for Drains {
  fn default() -> Self {
    Drains {
      all: None,
      channels: HashMap::new(),
      rng: Rng::new(0),
    }
  }
}

impl Drains {
  /// A drain of `scope` starts at `now_ms`; its plan for `count` streams.
  /// The generator is seeded again (also for the stragglers that follow).
  pub fn start(
    &mut self,
    scope: DrainScope,
    options: &DrainOptions,
    now_ms: u64,
    seed: u64,
    count: usize,
  ) -> Vec<u64> {
    self.rng = Rng::new(seed);
    let schedule = Schedule::new(now_ms, options);
    match scope {
      DrainScope::All => self.all = Some(schedule),
      DrainScope::Channel(key) => {
        self.channels.insert(key, schedule);
      }
    }
    retry_plan(count, options.min_ms, options.window_ms, &mut self.rng)
  }

  /// The `retry:` for a stream that opens at `now_ms`, when everything is
  /// draining; `None` when it opens as usual.
  pub fn on_open(&mut self, now_ms: u64) -> Option<u64> {
    let schedule = self.all?;
    let retry = schedule.straggler_retry(now_ms, &mut self.rng);
    if retry.is_none() {
      self.all = None;
    }
    retry
  }

  /// The `retry:` for a stream that joins `channel` at `now_ms`, when the
  /// channel is draining; `None` when it joins as usual.
  pub fn on_add(&mut self, channel: Key, now_ms: u64) -> Option<u64> {
    let schedule = *self.channels.get(&channel)?;
    let retry = schedule.straggler_retry(now_ms, &mut self.rng);
    if retry.is_none() {
      self.channels.remove(&channel);
    }
    retry
  }

  /// The channel is gone: its draining state goes with it.
  pub fn forget(&mut self, channel: Key) {
    self.channels.remove(&channel);
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn options_default_and_check() {
    assert_eq!(
      DrainOptions::check(None, None, None),
      Ok(DrainOptions::default())
    );
    assert_eq!(
      DrainOptions::check(Some(0.0), Some(500.0), Some(0.0)),
      Ok(DrainOptions {
        window_ms: 0,
        min_ms: 500,
        timeout_ms: 0
      })
    );
    for (window, min, timeout, name) in [
      (Some(-1.0), None, None, "windowMs"),
      (Some(1.5), None, None, "windowMs"),
      (None, Some(f64::NAN), None, "minMs"),
      (None, None, Some(f64::INFINITY), "timeoutMs"),
      (None, None, Some(2_147_483_648.0), "timeoutMs"),
    ] {
      let err = DrainOptions::check(window, min, timeout).unwrap_err();
      assert_eq!(err.0, name);
      assert_eq!(err.1, "must be an integer from 0 to 2147483647");
    }
  }

  #[test]
  fn the_generator_is_deterministic_and_bounded() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    for _ in 0..100 {
      assert_eq!(a.next_u64(), b.next_u64());
    }
    assert_eq!(a.below(0), 0);
    for bound in [1, 2, 3, 1000, u64::MAX] {
      for _ in 0..100 {
        assert!(a.below(bound) < bound);
      }
    }
    let mut items: Vec<u32> = (0..50).collect();
    a.shuffle(&mut items);
    let mut sorted = items.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_ne!(items, sorted, "50 items stay in order with chance 1/50!");
  }

  #[test]
  fn a_window_of_zero_sends_everyone_at_min() {
    let plan = retry_plan(5, 250, 0, &mut Rng::new(1));
    assert_eq!(plan, vec![250; 5]);
    assert!(retry_plan(0, 0, 1000, &mut Rng::new(1)).is_empty());
  }

  #[test]
  fn one_stream_gets_a_point_of_the_whole_window() {
    for seed in 0..100 {
      let plan = retry_plan(1, 100, 1000, &mut Rng::new(seed));
      assert!((100..1100).contains(&plan[0]), "{plan:?}");
    }
  }

  #[test]
  fn stragglers_reconnect_inside_what_is_left_of_the_window() {
    let schedule = Schedule::new(
      1000,
      &DrainOptions {
        window_ms: 3000,
        min_ms: 500,
        timeout_ms: 0,
      },
    );
    assert_eq!(schedule.end_ms(), 4500);
    let mut rng = Rng::new(3);
    for now in [1000, 1200, 2000, 3999, 4499] {
      for _ in 0..50 {
        let retry = schedule.straggler_retry(now, &mut rng).unwrap();
        let at = now + retry;
        assert!(retry >= 500, "{now}: {retry}");
        assert!(at >= 1500 && at <= 4500.max(now + 500), "{now}: {retry}");
      }
    }
    assert_eq!(schedule.straggler_retry(4500, &mut rng), None);
    // Late in the window, min still holds.
    assert_eq!(schedule.straggler_retry(4400, &mut rng), Some(500));
  }

  #[test]
  fn draining_ends_with_the_window() {
    let mut drains = Drains::default();
    let options = DrainOptions {
      window_ms: 100,
      ..DrainOptions::default()
    };
    assert_eq!(drains.on_open(0), None);
    let plan = drains.start(DrainScope::All, &options, 10, 42, 3);
    assert_eq!(plan.len(), 3);
    assert!(drains.on_open(50).is_some_and(|retry| retry < 60));
    assert_eq!(drains.on_open(110), None);
    assert_eq!(drains.all, None);
    let channel = Key {
      slot: 1,
      generation: 1,
    };
    drains.start(DrainScope::Channel(channel), &options, 200, 1, 0);
    assert!(drains.on_add(channel, 250).is_some());
    assert_eq!(
      drains.on_open(250),
      None,
      "a channel drain is not everyone's"
    );
    drains.forget(channel);
    assert_eq!(drains.on_add(channel, 260), None);
  }
}
