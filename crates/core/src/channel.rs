//! A channel's state: who its members are and where each one stands, its
//! ids and history (in-process) or what it has read of its Redis stream,
//! the flush window, and the tick's shared batch. The operations that touch
//! both channels and streams live in `engine.rs`.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::bytes::Batch;
use crate::event_id::ChannelId;
use crate::history::History;
use crate::metrics::ChannelCounters;
use crate::slab::Key;

/// Who an event is for.
#[derive(Debug, Clone, Default)]
pub enum Targets {
  /// Every member.
  #[default]
  All,
  /// Members whose UUID is in the set.
  Uuids(HashSet<String>),
  /// The members (streams) a predicate chose.
  Streams(HashSet<Key>),
}

impl Targets {
  pub fn includes(&self, stream: Key, uuid: &str) -> bool {
    match self {
      Targets::All => true,
      Targets::Uuids(uuids) => uuids.contains(uuid),
      Targets::Streams(keys) => keys.contains(&stream),
    }
  }

  pub fn is_all(&self) -> bool {
    matches!(self, Targets::All)
  }

  /// UUIDs from a list separated by `sep` (how they travel from
  /// JavaScript and through Redis).
  pub fn from_uuid_list(list: &str, sep: char) -> Targets {
    Targets::Uuids(
      list
        .split(sep)
        .filter(|uuid| !uuid.is_empty())
        .map(str::to_owned)
        .collect(),
    )
  }
}

/// A live event waiting for a member that is still joining: its id and its
/// bytes in a batch.
#[derive(Debug, Clone)]
pub struct Waiting {
  pub id: ChannelId,
  pub batch: Rc<Batch>,
  pub start: usize,
  pub end: usize,
}

/// One member: a stream and where it stands in the channel's order.
#[derive(Debug)]
pub struct Member {
  pub stream: Key,
  /// The newest channel id this member has or does not need: live events
  /// up to it are skipped (a replay already covered them).
  pub after: ChannelId,
  /// While its join is not decided (Redis: the stream's position or the
  /// first replay page is being read): the live events that came meanwhile.
  pub joining: Option<Vec<Waiting>>,
}

/// Where a channel's events and history come from.
#[derive(Debug)]
pub enum Source {
  /// In this process: ids `<epoch>-<n>`, the history kept here.
  Local { epoch: u64, history: History },
  /// A Redis stream: ids are its entry ids; `head` is the newest entry read
  /// (`None` until reading has started).
  /// `added` is the largest `entries-added` its reader has seen (a
  /// stream made again starts counting anew); `probe`, while the reader has
  /// read nothing (head 0-0), the newest head a first replay page found:
  /// members stand after it, so the reader checks that it is still there.
  Redis {
    head: Option<ChannelId>,
    added: Option<u64>,
    probe: Option<ChannelId>,
  },
}

/// An event waiting for the flush window.
#[derive(Debug)]
pub struct Queued {
  pub id: ChannelId,
  pub start: usize,
  pub end: usize,
  pub targets: Targets,
}

#[derive(Debug)]
pub struct Window {
  pub batch: Rc<Batch>,
  pub queue: Vec<Queued>,
}

#[derive(Debug)]
pub struct Channel {
  pub source: Source,
  pub members: Vec<Member>,
  /// Stream -> position in `members`.
  pub index: HashMap<Key, usize>,
  /// Milliseconds broadcasts wait to go out together (0: the end of the
  /// tick).
  pub window_ms: u64,
  /// Broadcasts waiting for the window, while its timer runs.
  pub window: Option<Window>,
  /// This tick's shared batch and the flush count it belongs to.
  pub tick: Option<(u64, Rc<Batch>)>,
  /// `close()` was called: no more members or broadcasts.
  pub closed: bool,
  /// The JavaScript object is gone; the channel goes once its window has
  /// been written.
  pub dropped: bool,
  pub counters: ChannelCounters,
}

impl Channel {
  pub fn new(source: Source, window_ms: u64) -> Channel {
    Channel {
      source,
      members: Vec::new(),
      index: HashMap::new(),
      window_ms,
      window: None,
      tick: None,
      closed: false,
      dropped: false,
      counters: ChannelCounters::default(),
    }
  }

  /// The id of the newest event this channel has seen.
  pub fn head(&self) -> Option<ChannelId> {
    match &self.source {
      Source::Local { history, .. } => Some(history.head()),
      Source::Redis { head, .. } => *head,
    }
  }

  pub fn member(&self, stream: Key) -> Option<&Member> {
    self.index.get(&stream).map(|&at| &self.members[at])
  }

  pub fn member_mut(&mut self, stream: Key) -> Option<&mut Member> {
    let at = *self.index.get(&stream)?;
    Some(&mut self.members[at])
  }

  pub fn insert(&mut self, member: Member) {
    self.index.insert(member.stream, self.members.len());
    self.members.push(member);
  }

  /// Takes `stream` out (the last member moves into its place: the order
  /// in which members are written to does not matter, the order of the
  /// events each one gets does).
  pub fn take(&mut self, stream: Key) -> Option<Member> {
    let at = self.index.remove(&stream)?;
    let member = self.members.swap_remove(at);
    if let Some(moved) = self.members.get(at) {
      self.index.insert(moved.stream, at);
    }
    Some(member)
  }
}
