//! Redis channels driven with an in-memory stream: members that wait for
//! the position, replays read in pages while live entries keep coming,
//! pages that fail, resets.

mod sink;

use native_sse_core::engine::{Entry, REDIS_PAGE_ENTRIES};
use native_sse_core::event_id::ChannelId;
use native_sse_core::history::Resume;
use native_sse_core::redis::ReadCheck;
use native_sse_core::{Action, Key};
use sink::*;

const MS: u64 = 1_700_000_000_000;
const MIB: u64 = 1024 * 1024;

fn rid(seq: u64) -> ChannelId {
  ChannelId::new(MS, seq)
}

fn rids(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
  range.map(|seq| rid(seq).to_string()).collect()
}

fn open(d: &mut Driver, uuid: &str, last: Option<ChannelId>) -> Key {
  let last = last.map(|id| id.to_string());
  d.open(uuid, last.as_deref(), quiet(64 * MIB))
}

/// Publishes an entry and has the reader hand it to the engine.
fn live(d: &mut Driver, channel: Key, data: &str) -> Entry {
  let entry = d.publish(channel, "e", data);
  d.read(channel, &entry);
  entry
}

fn request(channel: Key, stream: Key, from: u64, until: u64, first: bool) -> PageRequest {
  PageRequest {
    channel,
    stream,
    from: rid(from),
    until: rid(until),
    first,
    count: REDIS_PAGE_ENTRIES,
    // A first page checks the reader's position: here, where the replay
    // ends.
    reader: first.then(|| rid(until)),
  }
}

#[test]
fn members_wait_for_the_position_then_join() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  let a = open(&mut d, "a", None);
  let b = open(&mut d, "b", Some(rid(3)));
  let c = d.open("c", Some("nope"), quiet(MIB));
  for key in [a, b, c] {
    assert!(d.add(ch, key));
  }
  d.settle();
  assert!(d.writes.is_empty());
  assert!(d.all_requests.is_empty());
  assert_eq!(d.engine.channel(ch).unwrap().head(), None);

  // Reading starts at the end of the stream.
  let out = d.engine.redis_ready(ch, rid(10));
  d.note(out);
  assert_eq!(d.engine.redis_ready(ch, rid(99)), 0);
  assert_eq!(d.all_requests, [request(ch, b, 3, 10, true)]);
  live(&mut d, ch, "11");
  live(&mut d, ch, "12");
  let f = open(&mut d, "f", None);
  d.add(ch, f);
  d.settle();

  let parsed = d.parsed(a);
  assert_eq!(parsed.blocks[0], Block::Position(rid(10).to_string()));
  assert_eq!(parsed.ids(), rids(10..=12));
  assert_eq!(d.parsed(b).ids(), rids(4..=12));
  assert_eq!(
    d.parsed(b).datas(),
    (4..=12).map(|n| n.to_string()).collect::<Vec<_>>()
  );
  let mut expected = reset(rid(10), "unknown");
  expected.extend(framed_channel(rid(11), "e", "11"));
  expected.extend(framed_channel(rid(12), "e", "12"));
  assert_eq!(d.bytes(c), expected);
  assert_eq!(d.text(f), format!("id: {}\n\n", rid(12)));
  // Entries read twice are skipped, and the head stays.
  for n in [11, 4] {
    let again = d.redis[&ch].entries[n].clone();
    assert_eq!(d.engine.redis_entry(ch, &again), 0);
  }
  assert!(!d.scheduled);
  assert_eq!(d.engine.channel(ch).unwrap().head(), Some(rid(12)));
  let g = open(&mut d, "g", None);
  d.add(ch, g);
  d.settle();
  assert_eq!(d.text(g), format!("id: {}\n\n", rid(12)));
}

#[test]
fn first_page_entries_past_its_head_are_left_to_the_reader() {
  // The window and the entries were not read at the same instant: the
  // entries run past the head the page reports. Those come live.
  let mut d = Driver::new();
  d.redis_auto = false;
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(10)));
  let b = open(&mut d, "b", Some(rid(3)));
  d.add(ch, b);
  let request = d.requests.pop().unwrap();
  let mut page = d.redis[&ch].page(request.from, request.until, true, request.count);
  assert_eq!(page.head(), rid(10));
  live(&mut d, ch, "11");
  live(&mut d, ch, "12");
  page.entries = d.redis[&ch]
    .page(request.from, request.until, true, request.count)
    .entries;
  assert_eq!(page.entries.len(), 10);
  d.answer_with(&request, Some(page));
  d.settle();
  assert_eq!(d.parsed(b).ids(), rids(4..=12));
}

#[test]
fn a_first_page_answered_late_has_no_gap_and_no_duplicate() {
  let mut d = Driver::new();
  d.redis_auto = false;
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(10)));
  let a = open(&mut d, "a", None);
  d.add(ch, a);
  // Entries the reader has not read yet.
  for n in 11..=15 {
    d.publish(ch, "e", &n.to_string());
  }
  let b = open(&mut d, "b", Some(rid(3)));
  d.add(ch, b);
  // Further on than the reader has read.
  let c = open(&mut d, "c", Some(rid(13)));
  d.add(ch, c);
  // Further on than the stream itself.
  let e = open(&mut d, "e", Some(rid(50)));
  d.add(ch, e);
  d.settle();
  assert_eq!(
    d.requests,
    [
      request(ch, b, 3, 10, true),
      request(ch, c, 13, 10, true),
      request(ch, e, 50, 10, true)
    ]
  );
  // The pages are read now (head 15) ...
  let requests = std::mem::take(&mut d.requests);
  let pages: Vec<_> = requests
    .iter()
    .map(|r| d.redis[&ch].page(r.from, r.until, r.first, r.count))
    .collect();
  assert!(pages.iter().all(|page| page.head() == rid(15)));
  // ... but arrive after the reader went on: entries the pages hold too,
  // and newer ones.
  for n in 11..=15 {
    let entry = d.redis[&ch].entries[n - 1].clone();
    d.read(ch, &entry);
  }
  live(&mut d, ch, "16");
  live(&mut d, ch, "17");
  d.settle();
  for (request, page) in requests.iter().zip(pages) {
    d.answer_with(request, Some(page));
  }
  live(&mut d, ch, "18");
  d.settle();

  assert_eq!(d.parsed(a).ids(), rids(10..=18));
  assert_eq!(d.parsed(b).ids(), rids(4..=18));
  assert_eq!(
    d.parsed(b).datas(),
    (4..=18).map(|n| n.to_string()).collect::<Vec<_>>()
  );
  assert_eq!(d.parsed(c).ids(), rids(14..=18));
  let mut expected = reset(rid(15), "unknown");
  for n in 16..=18 {
    expected.extend(framed_channel(rid(n), "e", &n.to_string()));
  }
  assert_eq!(d.bytes(e), expected);
  // Every page was a first page; nothing else was asked for.
  assert!(d.requests.is_empty());
}

#[test]
fn replay_pages_continue_until_the_head() {
  let page = REDIS_PAGE_ENTRIES as u64;
  // Two and a half pages after the client's position.
  let head = 10 + 2 * page + page / 2;
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  let mut expected = Vec::new();
  for n in 1..=head {
    let (to, replay) = match n {
      _ if n % 50 == 0 => (Some("someone"), true),
      _ if n % 77 == 0 => (None, false),
      _ => (None, true),
    };
    d.redis
      .get_mut(&ch)
      .unwrap()
      .add("e", &n.to_string(), to, replay);
    if n > 10 && to.is_none() && replay {
      expected.push(rid(n).to_string());
    }
  }
  // An entry that is not an event of this library.
  d.redis.get_mut(&ch).unwrap().entries[20].data = None;
  expected.retain(|id| *id != rid(21).to_string());
  d.call(|e| e.redis_ready(ch, rid(head)));
  let b = open(&mut d, "b", Some(rid(10)));
  d.add(ch, b);
  d.settle();
  live(&mut d, ch, "live");
  d.settle();
  // The first page starts at the position itself (it holds `page`
  // entries from 10 on); each next one after the newest entry so far.
  assert_eq!(
    d.all_requests,
    [
      request(ch, b, 10, head, true),
      request(ch, b, 10 + page - 1, head, false),
      request(ch, b, 10 + 2 * page - 1, head, false),
    ]
  );
  expected.push(rid(head + 1).to_string());
  assert_eq!(d.parsed(b).ids(), expected);

  // A full page that reaches the head ends the replay.
  let head = 10 + page - 1;
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=head {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(head)));
  let b = open(&mut d, "b", Some(rid(10)));
  d.add(ch, b);
  d.settle();
  assert_eq!(d.all_requests, [request(ch, b, 10, head, true)]);
  assert_eq!(d.parsed(b).ids(), rids(11..=head));
  assert!(d.engine.stream(b).unwrap().replay.is_none());

  // A short page ends it, even when the newest entries up to the head
  // were deleted.
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=20 {
    d.publish(ch, "e", &n.to_string());
  }
  d.redis.get_mut(&ch).unwrap().entries.truncate(18);
  d.call(|e| e.redis_ready(ch, rid(20)));
  let b = open(&mut d, "b", Some(rid(10)));
  d.add(ch, b);
  d.settle();
  assert_eq!(d.all_requests, [request(ch, b, 10, 20, true)]);
  assert_eq!(d.parsed(b).ids(), rids(11..=18));
  assert!(d.engine.stream(b).unwrap().replay.is_none());
}

#[test]
fn a_slow_client_reads_its_pages_as_it_drains() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  let big = "x".repeat(1000);
  for _ in 1..=600 {
    d.publish(ch, "e", &big);
  }
  d.call(|e| e.redis_ready(ch, rid(600)));
  let b = open(&mut d, "b", Some(rid(1)));
  d.slow.insert(b);
  d.add(ch, b);
  let mut rounds = 0;
  while d.engine.stream(b).unwrap().replay.is_some() {
    rounds += 1;
    assert!(rounds < 100);
    let before = d.chunks(b).len();
    d.settle();
    if rounds == 3 {
      live(&mut d, ch, "live");
      d.settle();
    }
    assert!(d.chunks(b).len() - before <= 1, "written while draining");
    d.drain(b);
  }
  d.slow.clear();
  d.drain_all();
  assert!(rounds > 3);
  let mut expected = rids(2..=600);
  expected.push(rid(601).to_string());
  assert_eq!(d.parsed(b).ids(), expected);
}

#[test]
fn a_page_that_could_not_be_read_ends_the_stream() {
  let mut d = Driver::new();
  d.redis_auto = false;
  let ch = d.redis_channel(MS);
  for n in 1..=5 {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(5)));
  let b = d.open("b", Some(&rid(2).to_string()), options(MIB));
  d.add(ch, b);
  let requests = std::mem::take(&mut d.requests);
  assert_eq!(requests, [request(ch, b, 2, 5, true)]);
  // Not flushed yet: the welcome goes out with the end.
  d.engine.take_actions();
  let out = d.engine.redis_replayed(ch, b, true, None);
  assert!(out & native_sse_core::flags::ACTIONS != 0);
  let actions = d.engine.take_actions();
  assert_eq!(actions, [Action::End(b, welcome("b", false))]);
  assert!(!d.engine.is_open(b));
  assert!(d.engine.members(ch).is_empty());
  live(&mut d, ch, "6");
  d.settle();
  assert!(d.bytes(b).is_empty());

  // Through the driver, after the welcome was written.
  let c = d.open("c", Some(&rid(2).to_string()), options(MIB));
  d.add(ch, c);
  d.settle();
  let requests = std::mem::take(&mut d.requests);
  d.answer_with(&requests[0], None);
  assert_eq!(d.ended, [c]);
  assert_eq!(d.text(c), String::from_utf8(welcome("c", false)).unwrap());

  // A page for a member that left meanwhile is dropped; its stream stays.
  let m = open(&mut d, "m", Some(rid(2)));
  d.add(ch, m);
  let requests = std::mem::take(&mut d.requests);
  assert!(d.remove(ch, m));
  let page = d.redis[&ch].page(rid(2), rid(6), true, REDIS_PAGE_ENTRIES);
  assert_eq!(
    d.engine
      .redis_replayed(ch, m, requests[0].first, Some(page)),
    0
  );
  assert!(d.engine.is_open(m));
  // `remove` cannot ask for a flush; the next call that queues anything
  // does (the engine is not left waiting for one that never comes), and by
  // then the replay is over.
  assert!(!d.scheduled);
  let out = d.send(m, "own", "x");
  assert!(out & native_sse_core::flags::SCHEDULE != 0);
  d.settle();
  assert!(d.engine.stream(m).unwrap().replay.is_none());
  assert_eq!(d.bytes(m), framed(1, "own", "x"));
  assert_eq!(d.all_requests.iter().filter(|r| r.stream == m).count(), 1);
}

#[test]
fn positions_trimmed_away_or_never_reached_get_a_reset() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  d.redis.get_mut(&ch).unwrap().trim(5);
  d.call(|e| e.redis_ready(ch, rid(10)));
  let old = open(&mut d, "old", Some(rid(2)));
  d.add(ch, old);
  // The oldest kept entry: a client at the one before it is told to
  // reload (the window is judged from the first kept entry).
  let edge = open(&mut d, "edge", Some(rid(6)));
  d.add(ch, edge);
  let future = open(&mut d, "future", Some(rid(11)));
  d.add(ch, future);
  let other = open(&mut d, "other", Some(ChannelId::new(MS + 1, 0)));
  d.add(ch, other);
  d.settle();
  live(&mut d, ch, "11");
  d.settle();
  let mut expected = reset(rid(10), "expired");
  expected.extend(framed_channel(rid(11), "e", "11"));
  assert_eq!(d.bytes(old), expected);
  assert_eq!(d.parsed(edge).ids(), rids(7..=11));
  let mut expected = reset(rid(10), "unknown");
  expected.extend(framed_channel(rid(11), "e", "11"));
  assert_eq!(d.bytes(future), expected);
  assert_eq!(d.bytes(other), expected);
}

#[test]
fn targeted_and_live_only_entries() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
  let keys: Vec<Key> = ["u1", "u2", "u3"]
    .iter()
    .map(|uuid| {
      let key = open(&mut d, uuid, None);
      d.add(ch, key);
      key
    })
    .collect();
  d.settle();
  d.clear_writes();
  let redis = d.redis.get_mut(&ch).unwrap();
  let dm = redis.add("dm", "for 1 and 3", Some("u1,u3"), true);
  let clock = redis.add("clock", "now", None, false);
  let mut foreign = redis.add("x", "y", None, true);
  foreign.name = None;
  redis.entries.last_mut().unwrap().name = None;
  let all = redis.add("all", "everyone", None, true);
  for entry in [&dm, &clock, &foreign, &all] {
    d.read(ch, entry);
  }
  d.settle();
  assert_eq!(d.parsed(keys[0]).names(), ["dm", "clock", "all"]);
  assert_eq!(d.parsed(keys[1]).names(), ["clock", "all"]);
  assert_eq!(d.parsed(keys[2]).names(), ["dm", "clock", "all"]);
  // A returning client is replayed neither, but the targeted id is a
  // position.
  let r = open(&mut d, "u1", dm.id);
  d.add(ch, r);
  d.settle();
  assert_eq!(d.parsed(r).ids(), [all.id.unwrap().to_string()]);
}

#[test]
fn closing_the_channel_ends_the_replays_waiting_for_a_page() {
  let mut d = Driver::new();
  d.redis_auto = false;
  let ch = d.redis_channel(MS);
  for n in 1..=5 {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(5)));
  let b = open(&mut d, "b", Some(rid(2)));
  d.add(ch, b);
  d.settle();
  let request = d.requests.pop().unwrap();
  let out = d.call(|e| e.close_channel(ch));
  assert!(out & native_sse_core::flags::SCHEDULE != 0);
  d.settle();
  assert!(d.engine.is_open(b));
  assert!(d.engine.stream(b).unwrap().replay.is_none());
  assert!(d.engine.members(ch).is_empty());
  // The page that comes back later is dropped.
  d.answer(&request);
  d.send(b, "own", "x");
  d.settle();
  assert_eq!(d.bytes(b), framed(1, "own", "x"));
}

#[test]
fn a_stream_in_two_redis_channels_replays_both() {
  // Both joins start before any page is answered (the usual case: both
  // `add`s in one tick, pages read asynchronously), and live entries come
  // on both channels meanwhile.
  let mut d = Driver::new();
  d.redis_auto = false;
  let a = d.redis_channel(MS);
  let b = d.redis_channel(MS);
  for n in 1..=5 {
    d.publish(a, "a", &n.to_string());
    d.publish(b, "b", &n.to_string());
  }
  d.call(|e| e.redis_ready(a, rid(5)));
  d.call(|e| e.redis_ready(b, rid(5)));
  let s = open(&mut d, "s", Some(rid(2)));
  d.add(a, s);
  d.add(b, s);
  let mut rounds = 0;
  loop {
    d.settle();
    if rounds == 0 {
      let entry = d.redis.get_mut(&a).unwrap().add("a", "6", None, true);
      d.read(a, &entry);
      let entry = d.redis.get_mut(&b).unwrap().add("b", "6", None, true);
      d.read(b, &entry);
    }
    rounds += 1;
    assert!(rounds < 20, "the replays do not end");
    let requests = std::mem::take(&mut d.requests);
    if requests.is_empty() {
      break;
    }
    for request in requests.iter().rev() {
      d.answer(request);
    }
  }
  let entry = d.redis.get_mut(&a).unwrap().add("a", "7", None, true);
  d.read(a, &entry);
  let entry = d.redis.get_mut(&b).unwrap().add("b", "7", None, true);
  d.read(b, &entry);
  d.settle();
  for channel in [a, b] {
    let member = d.engine.channel(channel).unwrap().member(s).unwrap();
    assert!(member.joining.is_none());
  }
  let events = d.parsed(s).events();
  for name in ["a", "b"] {
    let datas: Vec<&str> = events
      .iter()
      .filter(|(_, n, _)| n == name)
      .map(|(_, _, data)| data.as_str())
      .collect();
    assert_eq!(datas, ["3", "4", "5", "6", "7"], "channel {name}");
  }
  assert!(d.engine.stream(s).unwrap().replay.is_none());
}

#[test]
fn leaving_the_first_of_two_redis_replays_goes_on_with_the_second() {
  let mut d = Driver::new();
  d.redis_auto = false;
  let a = d.redis_channel(MS);
  let b = d.redis_channel(MS);
  for n in 1..=5 {
    d.publish(a, "a", &n.to_string());
    d.publish(b, "b", &n.to_string());
  }
  d.call(|e| e.redis_ready(a, rid(5)));
  d.call(|e| e.redis_ready(b, rid(5)));
  let s = open(&mut d, "s", Some(rid(2)));
  d.add(a, s);
  d.add(b, s);
  d.settle();
  let pending = std::mem::take(&mut d.requests);
  assert_eq!(pending, [request(a, s, 2, 5, true)]);
  assert!(d.remove(a, s));
  // Its page comes back anyway: dropped.
  d.answer(&pending[0]);
  // `remove` cannot ask for a flush: the next flush, whoever asks for it,
  // goes on with the second channel's replay.
  d.flush();
  d.settle();
  let pending = std::mem::take(&mut d.requests);
  assert_eq!(pending, [request(b, s, 2, 5, true)]);
  d.answer(&pending[0]);
  d.settle();
  assert!(d.requests.is_empty());
  assert!(d.engine.stream(s).unwrap().replay.is_none());
  let events = d.parsed(s).events();
  let names: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
  assert_eq!(names, ["b", "b", "b"]);
}

// ----- streams that are not the one the ids came from -----

/// The reader reads: checks its position against the stream as it is now.
fn check(d: &mut Driver, channel: Key) -> ReadCheck {
  let head = d.engine.channel(channel).unwrap().head().unwrap();
  let fake = &d.redis[&channel];
  let present = fake.entries.iter().any(|entry| entry.id == Some(head));
  let info = fake.info();
  let (out, check) = d.engine.redis_check(channel, present, None, Some(&info));
  d.note(out);
  check
}

#[test]
fn an_id_from_a_stream_that_was_made_again_gets_a_reset() {
  // Left at 10, the stream was deleted and made again with 30 entries of
  // later ids: today's rule found 10 inside the window and replayed the new
  // stream's entries after it, silently skipping the old 11..
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  let mut again = FakeRedis::new(MS + 1000);
  for n in 1..=30 {
    again.add("e", &format!("new {n}"), None, true);
  }
  d.redis.insert(ch, again);
  let head = ChannelId::new(MS + 1000, 30);
  d.call(|e| e.redis_ready(ch, head));
  let back = open(&mut d, "back", Some(rid(10)));
  d.add(ch, back);
  // 0-0 (nothing seen) and the new stream's own ids replay as usual.
  let zero = open(&mut d, "zero", Some(ChannelId::ZERO));
  d.add(ch, zero);
  let own = open(&mut d, "own", Some(ChannelId::new(MS + 1000, 25)));
  d.add(ch, own);
  d.settle();
  assert_eq!(d.bytes(back), reset(head, "unknown"));
  assert_eq!(d.parsed(zero).ids().len(), 30);
  assert_eq!(d.parsed(own).ids().len(), 5);
}

#[test]
fn the_reader_rebases_on_a_stream_made_again_with_lower_ids() {
  // An entry with a far-future id was read, then the stream was deleted:
  // the new stream's ids are all lower than the reader's position.
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
  let live_member = open(&mut d, "live", None);
  d.add(ch, live_member);
  let far = ChannelId::new(99_999_999_999_999, 0);
  let entry = Entry {
    id: Some(far),
    name: Some("e".into()),
    data: Some("far".into()),
    to: None,
    replay: true,
  };
  d.read(ch, &entry);
  d.redis.get_mut(&ch).unwrap().entries.push(entry);
  d.redis.get_mut(&ch).unwrap().last = far;
  d.redis.get_mut(&ch).unwrap().seq = 1;
  assert_eq!(check(&mut d, ch), ReadCheck::Continue);
  // A member still joining (its first page not answered yet).
  d.redis_auto = false;
  let joining = open(&mut d, "joining", Some(far));
  d.add(ch, joining);
  assert_eq!(d.requests.len(), 1);
  d.settle();
  // The stream is deleted and written again.
  d.redis.insert(ch, FakeRedis::new(MS));
  let first = d.publish(ch, "e", "1");
  let rebased = check(&mut d, ch);
  // Nothing was removed from the new stream: reading starts again at its
  // beginning, so its first entry (the broadcast that made it again)
  // reaches the members after the reset.
  assert_eq!(
    rebased,
    ReadCheck::Reset {
      to: ChannelId::ZERO,
      reason: Resume::Unknown
    }
  );
  assert_eq!(d.engine.channel(ch).unwrap().head(), Some(ChannelId::ZERO));
  // The read's entry is read again after the reset; later entries, lower
  // than `far`, arrive.
  d.read(ch, &first);
  live(&mut d, ch, "2");
  live(&mut d, ch, "3");
  d.settle();
  let parsed = d.parsed(live_member);
  assert_eq!(
    parsed.ids(),
    vec![
      ChannelId::ZERO.to_string(),
      far.to_string(),
      ChannelId::ZERO.to_string(),
      rid(1).to_string(),
      rid(2).to_string(),
      rid(3).to_string()
    ]
  );
  assert_eq!(parsed.names(), ["e", "reset", "e", "e", "e"]);
  // The joining member is ended, to ask again on the new stream.
  assert_eq!(d.ended, [joining]);
  assert!(!d.engine.is_open(joining));
  // A stream gone altogether: back to 0-0, once.
  d.redis.remove(&ch);
  let (out, gone) = d.engine.redis_check(ch, false, None, None);
  d.note(out);
  assert_eq!(
    gone,
    ReadCheck::Reset {
      to: ChannelId::ZERO,
      reason: Resume::Unknown
    }
  );
  assert_eq!(
    d.engine.redis_check(ch, false, None, None),
    (0, ReadCheck::Continue)
  );
  d.settle();
  assert!(d
    .text(live_member)
    .ends_with("id: 0-0\nevent: reset\ndata: {\"reason\":\"unknown\"}\n\n"));
}

#[test]
fn a_replay_that_reads_a_stream_made_again_before_the_reader_does_asks_again() {
  // This process's reader is at 10 of the old stream. Redis restarts empty
  // and the stream is made again with later ids; a client that got new 1..3
  // from another process comes back here with new 3 before this reader has
  // read the new stream. Its replay reads the new stream (new 4, 5); then
  // the reader rebases to 0-0 and reads the new stream from its beginning,
  // and the member got new 4 and 5 a second time after a reset. (Seen in the
  // chaos suite: 25 events twice.) The first page checks the reader's
  // position too: the member is ended, without a byte, to ask again.
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=10 {
    d.publish(ch, "e", &n.to_string());
  }
  d.call(|e| e.redis_ready(ch, rid(10)));
  let old = open(&mut d, "old", None);
  d.add(ch, old);
  let mut again = FakeRedis::new(MS + 1000);
  for n in 1..=5 {
    again.add("e", &format!("new {n}"), None, true);
  }
  d.redis.insert(ch, again);
  let new = |seq| ChannelId::new(MS + 1000, seq);
  let ahead = open(&mut d, "ahead", Some(new(3)));
  d.add(ch, ahead);
  d.settle();
  assert_eq!(
    d.all_requests.last().map(|request| request.reader),
    Some(Some(rid(10)))
  );
  assert_eq!(
    check(&mut d, ch),
    ReadCheck::Reset {
      to: ChannelId::ZERO,
      reason: Resume::Unknown
    }
  );
  for n in 0..5 {
    let entry = d.redis[&ch].entries[n].clone();
    d.read(ch, &entry);
  }
  live(&mut d, ch, "new 6");
  d.settle();
  let ids = d.parsed(ahead).ids();
  let unique: std::collections::HashSet<_> = ids.iter().collect();
  assert_eq!(ids.len(), unique.len(), "no event twice: {ids:?}");
  assert!(d.ended.contains(&ahead));
  assert!(d.bytes(ahead).is_empty());
  // It comes back with the same id: exactly what it had not seen.
  let back = open(&mut d, "back", Some(new(3)));
  d.add(ch, back);
  d.settle();
  assert_eq!(
    d.parsed(back).ids(),
    (4..=6).map(|seq| new(seq).to_string()).collect::<Vec<_>>()
  );
  // The member at the old position got a reset, then the new stream.
  let parsed = d.parsed(old);
  assert_eq!(parsed.names(), ["reset", "e", "e", "e", "e", "e", "e"]);
}

#[test]
fn a_first_page_older_than_the_readers_last_read_is_taken() {
  // The page and the reader's reads go on two connections: the reader may
  // read (and count more entries added) after Redis ran the page. The page
  // is judged against what the reader had seen when it was asked for.
  let mut d = Driver::new();
  d.redis_auto = false;
  let ch = d.redis_channel(MS);
  d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
  for n in 1..=10 {
    live(&mut d, ch, &n.to_string());
  }
  assert_eq!(check(&mut d, ch), ReadCheck::Continue);
  let b = open(&mut d, "b", Some(rid(5)));
  d.add(ch, b);
  let request = d.requests.pop().unwrap();
  assert_eq!(request.reader, Some(rid(10)));
  let mut page = d.redis[&ch].page(request.from, request.until, true, request.count);
  page.reader_present = true;
  live(&mut d, ch, "11");
  live(&mut d, ch, "12");
  assert_eq!(check(&mut d, ch), ReadCheck::Continue);
  d.answer_with(&request, Some(page));
  d.settle();
  assert!(d.ended.is_empty());
  assert_eq!(d.parsed(b).ids(), rids(6..=12));
}

#[test]
fn a_reader_trimmed_past_gives_an_expired_reset_then_goes_on_live() {
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
  let a = open(&mut d, "a", None);
  d.add(ch, a);
  live(&mut d, ch, "1");
  live(&mut d, ch, "2");
  assert_eq!(check(&mut d, ch), ReadCheck::Continue);
  // The reader stalls while 50 entries are added and all but 10 trimmed.
  for n in 3..=52 {
    d.publish(ch, "e", &n.to_string());
  }
  d.redis.get_mut(&ch).unwrap().trim(10);
  assert_eq!(
    check(&mut d, ch),
    ReadCheck::Reset {
      to: rid(52),
      reason: Resume::Expired
    }
  );
  live(&mut d, ch, "53");
  d.settle();
  let mut expected = framed_channel(rid(1), "e", "1");
  expected.extend(framed_channel(rid(2), "e", "2"));
  expected.extend(reset(rid(52), "expired"));
  expected.extend(framed_channel(rid(53), "e", "53"));
  let body = d.bytes(a);
  assert!(
    body.ends_with(&expected),
    "{}",
    String::from_utf8_lossy(&body)
  );
  // A client that comes back from the reset's id replays from there.
  let back = open(&mut d, "back", Some(rid(52)));
  d.add(ch, back);
  d.settle();
  assert_eq!(d.parsed(back).ids(), rids(53..=53));
}

#[test]
fn a_rebase_writes_the_flush_window_first() {
  let mut d = Driver::new();
  let ch = d.channel(native_sse_core::engine::ChannelSource::Redis, 50);
  d.redis.insert(ch, FakeRedis::new(MS));
  d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
  let a = open(&mut d, "a", None);
  d.add(ch, a);
  live(&mut d, ch, "1");
  // Waiting for the window when the stream goes away.
  let (out, gone) = d.engine.redis_check(ch, false, None, None);
  d.note(out);
  assert!(matches!(gone, ReadCheck::Reset { .. }));
  d.settle();
  let mut expected = framed_channel(rid(1), "e", "1");
  expected.extend(reset(ChannelId::ZERO, "unknown"));
  assert!(d.bytes(a).ends_with(&expected));
  // The window's timer fires later and finds nothing.
  let out = d.engine.window_fire(ch);
  assert_eq!(out, 0);
}

// ----- property: exact, or a reset, whatever the stream does -----

mod chaos {
  use super::*;
  use proptest::prelude::*;
  use proptest::test_runner::RngSeed;
  use sink::Block;
  use std::collections::HashMap;

  #[derive(Debug, Clone)]
  enum Op {
    Publish,
    /// XTRIM to this many entries.
    Trim(usize),
    /// DEL, then a new stream with later (or, `backwards`, earlier) ids.
    Recreate {
      backwards: bool,
    },
    /// The reader reads up to this many entries.
    Read(usize),
    /// Member `n` reconnects with the last id its client saw.
    Reconnect(usize),
  }

  fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
      6 => Just(Op::Publish),
      1 => (0usize..4).prop_map(Op::Trim),
      1 => any::<bool>().prop_map(|backwards| Op::Recreate { backwards }),
      4 => (1usize..5).prop_map(Op::Read),
      2 => (0usize..3).prop_map(Op::Reconnect),
    ]
  }

  /// Where a client stands before the next event it gets.
  #[derive(Debug, Clone, Copy)]
  enum Anchor {
    /// After this entry (incarnation, index): the next one must follow it.
    Event(usize, usize),
    /// At an id from a position line or a reset: the next event must be
    /// the first entry after it in its (current or later) incarnation.
    At(ChannelId),
  }

  struct World {
    d: Driver,
    ch: Key,
    /// Every entry ever added, by incarnation: (id, data).
    history: Vec<Vec<(ChannelId, String)>>,
    /// data -> (incarnation, index).
    by_data: HashMap<String, (usize, usize)>,
    /// The members' streams and the anchor each one started from.
    members: Vec<(Key, Anchor)>,
    /// Finished streams, with the anchor they started from.
    done: Vec<(Vec<u8>, Anchor)>,
    count: u64,
  }

  impl World {
    fn read(&mut self, batch: usize) {
      let Some(head) = self.d.engine.channel(self.ch).unwrap().head() else {
        return;
      };
      let fake = &self.d.redis[&self.ch];
      let present = fake.entries.iter().any(|entry| entry.id == Some(head));
      let info = (fake.seq > 0).then(|| fake.info());
      let probe = self.d.engine.redis_probe(self.ch).map(|probe| {
        (
          probe,
          fake.entries.iter().any(|entry| entry.id == Some(probe)),
        )
      });
      let (out, check) = self
        .d
        .engine
        .redis_check(self.ch, present, probe, info.as_ref());
      self.d.note(out);
      if check != ReadCheck::Continue {
        return;
      }
      let next: Vec<Entry> = self.d.redis[&self.ch]
        .entries
        .iter()
        .filter(|entry| entry.id.unwrap() > head)
        .take(batch)
        .cloned()
        .collect();
      for entry in next {
        self.d.read(self.ch, &entry);
      }
    }
  }

  /// Checks one client's stream; returns the problems found.
  fn verify(world: &World, bytes: &[u8], start: Anchor, problems: &mut Vec<String>) {
    let mut anchor = start;
    let mut newest_inc = 0;
    for block in parse(bytes).blocks {
      match block {
        Block::Position(id) => anchor = Anchor::At(ChannelId::parse(id.as_bytes()).unwrap()),
        Block::Event { name, .. } if name == "welcome" => {}
        Block::Event { name, own_id, .. } if name == "reset" => {
          anchor = Anchor::At(ChannelId::parse(own_id.unwrap().as_bytes()).unwrap());
        }
        Block::Event { data, own_id, .. } => {
          let (inc, index) = world.by_data[&data];
          let ok = match anchor {
            // The next entry, or (nothing missed) the first of a later
            // stream after the last of this one, with none in between.
            Anchor::Event(at_inc, at) => {
              (inc == at_inc && index == at + 1)
                || (inc > at_inc
                  && index == 0
                  && at + 1 == world.history[at_inc].len()
                  && world.history[at_inc + 1..inc].iter().all(Vec::is_empty))
            }
            Anchor::At(id) => {
              inc >= newest_inc
                && world.history[inc].iter().position(|(entry, _)| *entry > id) == Some(index)
            }
          };
          if !ok {
            problems.push(format!("{data} ({own_id:?}) after {anchor:?}"));
          }
          newest_inc = newest_inc.max(inc);
          anchor = Anchor::Event(inc, index);
        }
      }
    }
  }

  /// The anchor a client resumes from: its last event, or the id it holds.
  fn resume_anchor(world: &World, bytes: &[u8]) -> (Option<String>, Anchor) {
    let parsed = parse(bytes);
    let last = parsed.last_id.clone();
    if last.is_empty() || last == "0" {
      return (None, Anchor::At(ChannelId::ZERO));
    }
    let id = ChannelId::parse(last.as_bytes()).unwrap();
    let at = match parsed.blocks.iter().rev().find_map(|block| match block {
      Block::Event { name, data, .. } if name == "e" => Some(data.clone()),
      Block::Event { name, .. } if name == "reset" => Some(String::new()),
      Block::Position(_) => Some(String::new()),
      _ => None,
    }) {
      Some(data) if !data.is_empty() => {
        let (inc, index) = world.by_data[&data];
        Anchor::Event(inc, index)
      }
      _ => Anchor::At(id),
    };
    (Some(last), at)
  }

  fn config() -> ProptestConfig {
    ProptestConfig {
      cases: 256,
      rng_seed: RngSeed::Fixed(0x5eed_4ed1),
      failure_persistence: None,
      ..ProptestConfig::default()
    }
  }

  proptest! {
    #![proptest_config(config())]
    #[test]
    fn every_client_is_exact_or_reset(ops in proptest::collection::vec(op(), 1..60)) {
      let mut d = Driver::new();
      let ch = d.redis_channel(MS);
      d.call(|e| e.redis_ready(ch, ChannelId::ZERO));
      let mut world = World {
        d,
        ch,
        history: vec![Vec::new()],
        by_data: HashMap::new(),
        members: Vec::new(),
        done: Vec::new(),
        count: 0,
      };
      for n in 0..3 {
        let key = world.d.open(&format!("m{n}"), None, quiet(64 * MIB));
        world.d.add(ch, key);
        world.members.push((key, Anchor::At(ChannelId::ZERO)));
      }
      let mut incarnation = 0u64;
      for op in ops {
        match op {
          Op::Publish => {
            world.count += 1;
            let data = format!("d{}", world.count);
            let entry = world.d.publish(ch, "e", &data);
            let inc = world.history.len() - 1;
            world.by_data.insert(data.clone(), (inc, world.history[inc].len()));
            world.history[inc].push((entry.id.unwrap(), data));
          }
          Op::Trim(keep) => world.d.redis.get_mut(&ch).unwrap().trim(keep),
          Op::Recreate { backwards } => {
            incarnation += 1;
            let ms = if backwards { MS - 1000 * incarnation } else { MS + 1000 * incarnation };
            world.d.redis.insert(ch, FakeRedis::new(ms));
            world.history.push(Vec::new());
          }
          Op::Read(batch) => world.read(batch),
          Op::Reconnect(n) => {
            let (key, start) = world.members[n];
            world.d.settle();
            let bytes = world.d.bytes(key);
            let (last, anchor) = resume_anchor(&world, &bytes);
            world.d.close(key);
            world.done.push((bytes, start));
            let new = world.d.open(&format!("m{n}"), last.as_deref(), quiet(64 * MIB));
            world.d.add(ch, new);
            world.members[n] = (new, anchor);
          }
        }
        world.d.settle();
      }
      // Ended streams (a reset that met a joining member) end their client:
      // its log so far is checked like the others.
      let mut problems = Vec::new();
      for (bytes, start) in &world.done {
        verify(&world, bytes, *start, &mut problems);
      }
      for &(key, start) in &world.members {
        let bytes = world.d.bytes(key);
        verify(&world, &bytes, start, &mut problems);
      }
      prop_assert!(problems.is_empty(), "{problems:?}");
    }
  }
}

/// A member replaying two and a half pages whose first page has been
/// written, with a live entry that arrived behind the replay.
fn mid_replay() -> (Driver, Key, Key, ChannelId, String) {
  let page = REDIS_PAGE_ENTRIES as u64;
  let head = 10 + 2 * page + page / 2;
  let mut d = Driver::new();
  let ch = d.redis_channel(MS);
  for n in 1..=head {
    d.redis
      .get_mut(&ch)
      .unwrap()
      .add("e", &n.to_string(), None, true);
  }
  d.call(|e| e.redis_ready(ch, rid(head)));
  d.redis_auto = false;
  let b = open(&mut d, "b", Some(rid(10)));
  d.add(ch, b);
  let first = d.requests.remove(0);
  d.answer(&first);
  d.settle();
  let live_entry = live(&mut d, ch, "live");
  d.settle();
  // The second page is asked for and not answered yet.
  assert_eq!(d.requests.len(), 1);
  let welcome = d.text(b);
  (d, ch, b, live_entry.id.unwrap(), welcome)
}

#[test]
fn a_stream_closed_with_replay_pages_still_to_read_ends_without_what_waited_behind_them() {
  // The live entry would follow a gap: the client would come back with its
  // id and never get the pages not read yet.
  let page = REDIS_PAGE_ENTRIES as u64;
  for how in ["close", "drain", "page failed"] {
    let (mut d, ch, b, live_id, _) = mid_replay();
    match how {
      "close" => assert!(d.close(b)),
      "drain" => {
        let options = native_sse_core::drain::DrainOptions {
          window_ms: 0,
          min_ms: 0,
          timeout_ms: 1000,
        };
        let (count, out) = d
          .engine
          .drain(native_sse_core::drain::DrainScope::All, &options, 0, 1)
          .expect("draining");
        d.note(out);
        assert_eq!(count, 1);
      }
      _ => {
        let request = d.requests.remove(0);
        d.answer_with(&request, None);
      }
    }
    d.settle();
    assert!(!d.engine.is_open(b), "{how}");
    let parsed = d.parsed(b);
    let ids = parsed.ids();
    assert!(!ids.contains(&live_id.to_string()), "{how}: {ids:?}");
    // The replayed events, in order, from 11 on, and nothing after the gap.
    let replayed: Vec<String> = ids.iter().filter(|id| id.contains('-')).cloned().collect();
    assert!(!replayed.is_empty(), "{how}");
    let expected: Vec<String> = (11..11 + replayed.len() as u64)
      .map(|n| rid(n).to_string())
      .collect();
    assert_eq!(replayed, expected, "{how}");
    assert!(replayed.len() as u64 <= page, "{how}");
    if how == "drain" {
      assert!(d.text(b).ends_with("retry: 0\n\n"), "{how}");
    }
    let _ = ch;
  }
}
