//! Property tests: framing survives a browser's parser, and random
//! sequences of channel operations deliver what a model says each member
//! must get.

mod sink;

use std::collections::{HashSet, VecDeque};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use native_sse_core::channel::Targets;
use native_sse_core::event_id::ChannelId;
use native_sse_core::{CloseReason, EventError, Key, Text};
use sink::*;

const MIB: u64 = 1024 * 1024;

/// 256 cases from a fixed seed, so every run checks the same cases, and no
/// regression files are written. `PROPTEST_CASES` and `PROPTEST_RNG_SEED`
/// override both (for a longer hunt).
fn config() -> ProptestConfig {
  let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
  ProptestConfig {
    cases: env("PROPTEST_CASES").map_or(256, |n: u64| n as u32),
    rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0x5eed_55e0)),
    failure_persistence: None,
    ..ProptestConfig::default()
  }
}

// ----- framing -----

fn line_text() -> impl Strategy<Value = String> {
  "[^\r\n\x00]{0,12}"
}

fn data_text() -> impl Strategy<Value = String> {
  prop::collection::vec(
    prop_oneof![
      4 => any::<char>().prop_map(String::from),
      1 => Just("\r".to_owned()),
      1 => Just("\n".to_owned()),
      1 => Just("\r\n".to_owned()),
      1 => Just(" ".to_owned()),
      1 => Just(":".to_owned()),
    ],
    0..24,
  )
  .prop_map(|parts| parts.concat())
}

/// A single-line text with at least one CR, LF or NUL.
fn bad_line_text() -> impl Strategy<Value = String> {
  (
    line_text(),
    prop_oneof![Just("\r"), Just("\n"), Just("\0"), Just("\r\n")],
    line_text(),
  )
    .prop_map(|(a, bad, b)| format!("{a}{bad}{b}"))
}

fn normalised(data: &str) -> String {
  data.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
  #![proptest_config(config())]

  #[test]
  fn framing_round_trips_through_a_parser(
    events in prop::collection::vec(
      (line_text(), prop::option::of(line_text()), data_text()),
      1..5,
    ),
  ) {
    let mut d = Driver::new();
    let s = d.open("s", None, quiet(MIB));
    let mut counter = 0;
    let mut expected = Vec::new();
    for (name, id, data) in &events {
      let id_text: Option<&str> = id.as_deref();
      let id_dyn: Option<&dyn Text> = id_text.as_ref().map(|id| id as &dyn Text);
      let out = d.engine.send(s, &name.as_str(), &data.as_str(), id_dyn).unwrap();
      d.note(out);
      let id = match id {
        Some(id) => id.clone(),
        None => {
          counter += 1;
          counter.to_string()
        }
      };
      expected.push((Some(id), name.clone(), normalised(data)));
    }
    d.tick();
    prop_assert_eq!(d.chunks(s).len(), 1);
    let parsed = d.parsed(s);
    prop_assert_eq!(parsed.events(), expected);
    prop_assert_eq!(parsed.comments, 0);
  }

  #[test]
  fn broadcasts_round_trip_through_a_parser(name in line_text(), data in data_text()) {
    let mut d = Driver::new();
    let a = d.channel(local(7, 10, 1 << 20), 0);
    let s = d.open("s", None, quiet(MIB));
    d.add(a, s);
    let id = d.broadcast(a, &name, &data);
    d.settle();
    let parsed = d.parsed(s);
    prop_assert_eq!(
      parsed.events(),
      vec![(Some(id.to_string()), name.clone(), normalised(&data))]
    );
    // And a replay writes the same bytes.
    let r = d.open("r", Some("7-0"), quiet(MIB));
    d.add(a, r);
    d.settle();
    prop_assert_eq!(d.parsed(r).events(), parsed.events());
  }

  #[test]
  fn names_and_ids_with_line_breaks_or_nul_are_refused(
    bad in bad_line_text(),
    good in line_text(),
    data in data_text(),
  ) {
    let mut d = Driver::new();
    let s = d.open("s", None, quiet(MIB));
    let name_error = d.engine.send(s, &bad.as_str(), &data.as_str(), None);
    prop_assert!(matches!(name_error, Err(EventError::Name(_))), "{:?}", name_error);
    let bad_id: &dyn Text = &bad.as_str();
    let id_error = d.engine.send(s, &good.as_str(), &data.as_str(), Some(bad_id));
    prop_assert!(matches!(id_error, Err(EventError::Id(_))), "{:?}", id_error);
    prop_assert!(native_sse_core::Prepared::new(&bad.as_str(), &data.as_str()).is_err());
    prop_assert_eq!(d.engine.queued_bytes(s), 0);
    prop_assert!(!d.scheduled);
    // The counter did not move.
    let out = d.engine.send(s, &good.as_str(), &"x", None).unwrap();
    d.note(out);
    d.tick();
    prop_assert_eq!(d.bytes(s), framed(1, &good, "x"));
  }
}

// ----- random operations against a model -----

const CLIENTS: usize = 3;
const CHANNELS: usize = 2;
const EPOCHS: [u64; CHANNELS] = [1000, 2000];
const KEEP: usize = 4;

#[derive(Debug, Clone)]
enum Target {
  All,
  LiveOnly,
  Uuids(u8),
  Streams(u8),
}

#[derive(Debug, Clone)]
enum Op {
  Connect {
    client: usize,
    resume: bool,
  },
  Add {
    client: usize,
    channel: usize,
  },
  Remove {
    client: usize,
    channel: usize,
  },
  Broadcast {
    channel: usize,
    target: Target,
  },
  Send {
    client: usize,
  },
  Close {
    client: usize,
  },
  /// The client goes away: what was not written yet is lost.
  Gone {
    client: usize,
  },
  Slow {
    client: usize,
  },
  Drain {
    client: usize,
  },
  Fire {
    channel: usize,
  },
  Flush,
}

fn op() -> impl Strategy<Value = Op> {
  let client = 0..CLIENTS;
  let channel = 0..CHANNELS;
  prop_oneof![
    4 => (client.clone(), any::<bool>()).prop_map(|(client, resume)| Op::Connect { client, resume }),
    3 => (client.clone(), channel.clone()).prop_map(|(client, channel)| Op::Add { client, channel }),
    1 => (client.clone(), channel.clone()).prop_map(|(client, channel)| Op::Remove { client, channel }),
    8 => (
      channel,
      prop_oneof![
        4 => Just(Target::All),
        1 => Just(Target::LiveOnly),
        1 => (0u8..8).prop_map(Target::Uuids),
        1 => (0u8..8).prop_map(Target::Streams),
      ],
    )
      .prop_map(|(channel, target)| Op::Broadcast { channel, target }),
    1 => client.clone().prop_map(|client| Op::Send { client }),
    1 => client.clone().prop_map(|client| Op::Close { client }),
    1 => client.clone().prop_map(|client| Op::Gone { client }),
    1 => client.clone().prop_map(|client| Op::Slow { client }),
    1 => client.prop_map(|client| Op::Drain { client }),
    2 => (0..CHANNELS).prop_map(|channel| Op::Fire { channel }),
    3 => Just(Op::Flush),
  ]
}

/// What a stream must receive, one item at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
  /// A channel event (`channel` 0 or 1) or an own event (`channel` 2).
  Event {
    channel: usize,
    id: String,
    name: String,
    data: String,
  },
  Reset {
    channel: usize,
    id: String,
    reason: String,
  },
  Position {
    channel: usize,
    id: String,
  },
}

impl Item {
  fn channel(&self) -> usize {
    match self {
      Item::Event { channel, .. }
      | Item::Reset { channel, .. }
      | Item::Position { channel, .. } => *channel,
    }
  }
}

/// Which stream of ours an id belongs to: a channel by its epoch, else an
/// own event.
fn channel_of(id: &str) -> usize {
  match ChannelId::parse(id.as_bytes()) {
    Some(id) => EPOCHS.iter().position(|e| *e == id.ms).expect("an epoch"),
    None => CHANNELS,
  }
}

#[derive(Debug)]
struct ModelChannel {
  key: Key,
  epoch: u64,
  head: u64,
  floor: u64,
  /// Kept events: (seq, data).
  kept: VecDeque<(u64, String)>,
  /// Members, with the head when they joined (what they have or do not
  /// need).
  members: Vec<(usize, u64)>,
  /// A flush window channel: broadcasts wait for `Op::Fire`.
  window: bool,
  /// Broadcasts waiting for the window: (seq, data, targeted streams).
  queued: Vec<(u64, String, Option<HashSet<usize>>)>,
}

#[derive(Debug)]
struct ModelStream {
  key: Key,
  uuid: String,
  last_event_id: Option<String>,
  /// Items, with whether they go out in the global order (everything but
  /// replayed events).
  expected: Vec<(Item, bool)>,
  /// Channels it was added to while resuming (a second add would replay
  /// again).
  resumed_in: HashSet<usize>,
  next_own: u64,
  open: bool,
  /// It went away by itself: it received a prefix of `expected`.
  gone: bool,
}

#[derive(Debug, Default)]
struct Client {
  stream: Option<usize>,
  connections: usize,
  /// The last event id the client holds (what it would send back).
  last: Option<String>,
  /// Channels its current stream is a member of.
  channels: Vec<usize>,
}

struct Model {
  d: Driver,
  channels: Vec<ModelChannel>,
  streams: Vec<ModelStream>,
  clients: Vec<Client>,
}

impl Model {
  fn new(max_replays: usize) -> Model {
    let mut d = Driver::new();
    d.engine.set_max_replays(max_replays);
    // Channel 1 has a flush window.
    let channels = EPOCHS
      .iter()
      .enumerate()
      .map(|(n, &epoch)| ModelChannel {
        key: d.channel(local(epoch, KEEP, 1 << 20), if n == 1 { 10 } else { 0 }),
        epoch,
        head: 0,
        floor: 0,
        kept: VecDeque::new(),
        members: Vec::new(),
        window: n == 1,
        queued: Vec::new(),
      })
      .collect();
    Model {
      d,
      channels,
      streams: Vec::new(),
      clients: (0..CLIENTS).map(|_| Client::default()).collect(),
    }
  }

  fn id(&self, channel: usize, seq: u64) -> String {
    ChannelId::new(self.channels[channel].epoch, seq).to_string()
  }

  /// The client's stream, if it has one open.
  fn stream_of(&self, client: usize) -> Option<usize> {
    self.clients[client].stream
  }

  fn run(&mut self, op: &Op) {
    match *op {
      Op::Connect { client, resume } => {
        let channels = self.close(client, false);
        let last = if resume {
          self.clients[client].last.clone()
        } else {
          self.clients[client].last = None;
          None
        };
        self.clients[client].connections += 1;
        let uuid = format!("c{client}-{}", self.clients[client].connections);
        let key = self.d.open(&uuid, last.as_deref(), options(u64::MAX));
        self.streams.push(ModelStream {
          key,
          uuid,
          last_event_id: last,
          expected: Vec::new(),
          resumed_in: HashSet::new(),
          next_own: 1,
          open: true,
          gone: false,
        });
        self.clients[client].stream = Some(self.streams.len() - 1);
        for channel in channels {
          self.add(client, channel);
        }
      }
      Op::Add { client, channel } => self.add(client, channel),
      Op::Remove { client, channel } => {
        let Some(s) = self.stream_of(client) else {
          return;
        };
        let was = self.channels[channel].members.iter().any(|(m, _)| *m == s);
        let key = self.streams[s].key;
        assert_eq!(self.d.remove(self.channels[channel].key, key), was);
        self.channels[channel].members.retain(|(m, _)| *m != s);
        self.clients[client].channels.retain(|c| *c != channel);
      }
      Op::Broadcast {
        channel,
        ref target,
      } => self.broadcast(channel, target),
      Op::Send { client } => {
        let Some(s) = self.stream_of(client) else {
          return;
        };
        let stream = &mut self.streams[s];
        let data = format!("own-{}", stream.next_own);
        let item = Item::Event {
          channel: CHANNELS,
          id: stream.next_own.to_string(),
          name: "own".into(),
          data: data.clone(),
        };
        stream.next_own += 1;
        stream.expected.push((item, true));
        let key = stream.key;
        self.d.send(key, "own", &data);
        // Bytes were queued: a flush is scheduled, whatever came before
        // (an engine that claimed a flush it never asked for stalls here).
        assert!(self.d.scheduled, "queued bytes, and no flush scheduled");
      }
      Op::Close { client } => {
        self.close(client, false);
      }
      Op::Gone { client } => {
        self.close(client, true);
      }
      Op::Slow { client } => {
        if let Some(s) = self.stream_of(client) {
          self.d.slow.insert(self.streams[s].key);
        }
      }
      Op::Drain { client } => {
        if let Some(s) = self.stream_of(client) {
          let key = self.streams[s].key;
          self.d.slow.remove(&key);
          self.d.drain(key);
        }
      }
      Op::Fire { channel } => self.fire(channel),
      Op::Flush => {
        self.d.tick();
      }
    }
  }

  /// Closes the client's stream (its last bytes are written); returns the
  /// channels it was in.
  fn close(&mut self, client: usize, gone: bool) -> Vec<usize> {
    let Some(s) = self.clients[client].stream.take() else {
      return Vec::new();
    };
    let key = self.streams[s].key;
    if gone {
      assert!(self.d.engine.gone(key, CloseReason::Client));
      self.d.note(0);
    } else {
      assert!(self.d.close(key));
    }
    self.streams[s].open = false;
    self.streams[s].gone = gone;
    for channel in &mut self.channels {
      channel.members.retain(|(m, _)| *m != s);
    }
    let parsed = parse(&self.d.bytes(key));
    assert!(parsed.rest.is_empty());
    if parsed.blocks.iter().any(|block| block.own_id().is_some()) {
      self.clients[client].last = Some(parsed.last_id.clone()).filter(|id| !id.is_empty());
    }
    std::mem::take(&mut self.clients[client].channels)
  }

  fn add(&mut self, client: usize, channel: usize) {
    let Some(s) = self.stream_of(client) else {
      return;
    };
    if self.channels[channel].members.iter().any(|(m, _)| *m == s) {
      assert!(self.d.add(self.channels[channel].key, self.streams[s].key));
      return;
    }
    let last = self.streams[s].last_event_id.clone();
    if last.is_some() && !self.streams[s].resumed_in.insert(channel) {
      // Adding a resuming stream again replays from its Last-Event-ID
      // again, by design; not modelled.
      return;
    }
    assert!(self.d.add(self.channels[channel].key, self.streams[s].key));
    let head = self.channels[channel].head;
    self.channels[channel].members.push((s, head));
    self.clients[client].channels.push(channel);
    let ch = &self.channels[channel];
    let head = self.id(channel, ch.head);
    let items: Vec<(Item, bool)> = match last {
      None => vec![(Item::Position { channel, id: head }, true)],
      Some(last) => {
        let reason = match ChannelId::parse(last.as_bytes()) {
          None => Some("unknown"),
          Some(id) if id.ms != ch.epoch || id.seq > ch.head => Some("unknown"),
          Some(id) if id.seq < ch.floor => Some("expired"),
          Some(_) => None,
        };
        match reason {
          Some(reason) => vec![(
            Item::Reset {
              channel,
              id: head,
              reason: reason.into(),
            },
            true,
          )],
          None => {
            let after = ChannelId::parse(last.as_bytes()).unwrap().seq;
            ch.kept
              .iter()
              .filter(|(seq, _)| *seq > after)
              .map(|(seq, data)| {
                (
                  Item::Event {
                    channel,
                    id: self.id(channel, *seq),
                    name: "e".into(),
                    data: data.clone(),
                  },
                  false,
                )
              })
              .collect()
          }
        }
      }
    };
    self.streams[s].expected.extend(items);
  }

  fn broadcast(&mut self, channel: usize, target: &Target) {
    let mask_clients =
      |mask: u8| -> Vec<usize> { (0..CLIENTS).filter(|c| mask & (1 << c) != 0).collect() };
    let (targets, chosen, replay): (Targets, Option<HashSet<usize>>, bool) = match target {
      Target::All => (Targets::All, None, true),
      Target::LiveOnly => (Targets::All, None, false),
      Target::Uuids(mask) => {
        let streams: HashSet<usize> = mask_clients(*mask)
          .into_iter()
          .filter_map(|c| self.stream_of(c))
          .collect();
        let mut uuids: HashSet<String> = streams
          .iter()
          .map(|s| self.streams[*s].uuid.clone())
          .collect();
        uuids.insert("nobody".into());
        (Targets::Uuids(uuids), Some(streams), true)
      }
      Target::Streams(mask) => {
        let streams: HashSet<usize> = mask_clients(*mask)
          .into_iter()
          .filter_map(|c| self.stream_of(c))
          .collect();
        let keys = streams.iter().map(|s| self.streams[*s].key).collect();
        (Targets::Streams(keys), Some(streams), true)
      }
    };
    let ch = &mut self.channels[channel];
    ch.head += 1;
    let seq = ch.head;
    let data = format!("ch{channel}-{seq}\nline");
    let kept = chosen.is_none() && replay;
    if kept {
      ch.kept.push_back((seq, data.clone()));
      if ch.kept.len() > KEEP {
        ch.floor = ch.kept.pop_front().unwrap().0;
      }
    }
    let key = ch.key;
    let id = self.id(channel, seq);
    let got = self.d.broadcast_to(key, "e", &data, targets, replay);
    assert_eq!(got.to_string(), id);
    if self.channels[channel].window {
      self.channels[channel].queued.push((seq, data, chosen));
    } else {
      self.deliver(channel, seq, &data, chosen.as_ref());
    }
  }

  /// The broadcast `seq` reaches the members it is for and that joined
  /// before it.
  fn deliver(&mut self, channel: usize, seq: u64, data: &str, chosen: Option<&HashSet<usize>>) {
    let id = self.id(channel, seq);
    for (s, joined_at) in self.channels[channel].members.clone() {
      if joined_at >= seq || chosen.is_some_and(|chosen| !chosen.contains(&s)) {
        continue;
      }
      self.streams[s].expected.push((
        Item::Event {
          channel,
          id: id.clone(),
          name: "e".into(),
          data: data.to_owned(),
        },
        true,
      ));
    }
  }

  /// The channel's window timer fired.
  fn fire(&mut self, channel: usize) {
    for (seq, data, chosen) in std::mem::take(&mut self.channels[channel].queued) {
      self.deliver(channel, seq, &data, chosen.as_ref());
    }
    let key = self.channels[channel].key;
    self.d.call(|e| e.window_fire(key));
  }

  /// Everything written, and every stream's items checked against the
  /// model.
  fn check(mut self) -> Result<(), TestCaseError> {
    for channel in 0..CHANNELS {
      self.fire(channel);
    }
    // A replay that took a slot freed by `close` or `gone` (which cannot
    // ask for a flush) goes on at the next flush anything asks for; the end
    // of the run is one.
    self.d.flush();
    self.d.slow.clear();
    self.d.drain_all();
    prop_assert!(self.d.destroyed.is_empty());
    for stream in &self.streams {
      let parsed = parse(&self.d.bytes(stream.key));
      prop_assert!(parsed.rest.is_empty());
      let mut blocks = parsed.blocks.into_iter();
      match blocks.next() {
        Some(Block::Event { own_id, name, .. }) => {
          prop_assert_eq!(name, "welcome");
          let expected = stream.last_event_id.is_none().then(|| "0".to_owned());
          prop_assert_eq!(own_id, expected);
        }
        None if stream.gone => continue,
        other => prop_assert!(false, "no welcome: {:?}", other),
      }
      let got: Vec<Item> = blocks
        .map(|block| match block {
          Block::Position(id) => Item::Position {
            channel: channel_of(&id),
            id,
          },
          Block::Event {
            own_id, name, data, ..
          } => {
            let id = own_id.expect("every event has an id");
            let channel = channel_of(&id);
            if name == "reset" {
              let reason = data
                .strip_prefix("{\"reason\":\"")
                .and_then(|rest| rest.strip_suffix("\"}"))
                .expect("reset data")
                .to_owned();
              Item::Reset {
                channel,
                id,
                reason,
              }
            } else {
              Item::Event {
                channel,
                id,
                name,
                data,
              }
            }
          }
        })
        .collect();
      // Each channel's items (and the own events) exactly, in order.
      for channel in 0..=CHANNELS {
        let want: Vec<&Item> = stream
          .expected
          .iter()
          .map(|(item, _)| item)
          .filter(|item| item.channel() == channel)
          .collect();
        let have: Vec<&Item> = got
          .iter()
          .filter(|item| item.channel() == channel)
          .collect();
        if stream.gone {
          prop_assert!(
            want.starts_with(&have),
            "stream {} channel {}: {:?} is not a prefix of {:?}",
            stream.uuid,
            channel,
            have,
            want
          );
        } else {
          prop_assert_eq!(have, want, "stream {} channel {}", stream.uuid, channel);
        }
      }
      // Everything but replayed events in the order it happened.
      let mut seen = [0usize; CHANNELS + 1];
      let mut in_order = Vec::new();
      for item in &got {
        let channel = item.channel();
        let of_channel: Vec<&(Item, bool)> = stream
          .expected
          .iter()
          .filter(|(item, _)| item.channel() == channel)
          .collect();
        if of_channel[seen[channel]].1 {
          in_order.push(item);
        }
        seen[channel] += 1;
      }
      let mut want: Vec<&Item> = stream
        .expected
        .iter()
        .filter(|(_, ordered)| *ordered)
        .map(|(item, _)| item)
        .collect();
      if stream.gone {
        want.truncate(in_order.len());
      }
      prop_assert_eq!(in_order, want, "order of stream {}", stream.uuid);
      prop_assert_eq!(self.d.engine.is_open(stream.key), stream.open);
    }
    Ok(())
  }
}

proptest! {
  #![proptest_config(config())]

  #[test]
  fn random_operations_deliver_what_the_model_says(
    max_replays in prop_oneof![2 => Just(1usize), 1 => Just(2), 1 => Just(32)],
    ops in prop::collection::vec(op(), 1..80),
  ) {
    let mut model = Model::new(max_replays);
    for client in 0..CLIENTS {
      model.run(&Op::Connect { client, resume: false });
    }
    for op in &ops {
      model.run(op);
    }
    model.check()?;
  }
}
