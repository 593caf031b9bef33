//! `Engine::flush_plan`: the flush grouped the way the binding writes it.
mod sink;

use native_sse_core::channel::Targets;
use native_sse_core::Engine;
use sink::{local, options, prepared, quiet};

#[test]
fn one_stream_with_bytes_is_the_first_chunk_and_nothing_else() {
  let mut engine = Engine::new();
  let (a, _) = engine
    .open_stream("a".into(), None, quiet(1 << 20), 0)
    .unwrap();
  engine
    .flush_plan(|b| Ok::<_, ()>(b.to_vec()), |b| Ok(b.to_vec()))
    .unwrap();
  engine.send(a, &"tick", &"1", None).unwrap();
  let plan = engine
    .flush_plan(|b| Ok::<_, ()>(b.to_vec()), |b| Ok(b.to_vec()))
    .unwrap();
  assert_eq!(
    plan.first,
    Some((a, b"id: 1\nevent: tick\ndata: 1\n\n".to_vec()))
  );
  assert!(plan.single.is_empty() && plan.groups.is_empty());
  assert_eq!(plan.flags, 0);
}

#[test]
fn members_with_the_whole_batch_share_one_value_the_others_get_their_own() {
  let mut engine = Engine::new();
  let channel = engine.open_channel(local(7, 100, 1 << 20), 0).unwrap();
  let mut streams = Vec::new();
  for uuid in ["a", "b", "c"] {
    let (key, _) = engine
      .open_stream(uuid.into(), None, quiet(1 << 20), 0)
      .unwrap();
    engine.add(channel, key).unwrap();
    streams.push(key);
  }
  engine
    .flush_plan(|b| Ok::<_, ()>(b.to_vec()), |b| Ok(b.to_vec()))
    .unwrap();
  engine
    .broadcast(channel, &prepared("news", "1"), Targets::All, true)
    .unwrap();
  // `c` also gets an own event: it cannot take the shared batch as it is.
  engine.send(streams[2], &"own", &"2", None).unwrap();
  let mut batches = 0;
  let plan = engine
    .flush_plan(
      |b| Ok::<_, ()>(b.to_vec()),
      |b| {
        batches += 1;
        Ok(b.to_vec())
      },
    )
    .unwrap();
  assert_eq!(batches, 1, "one value for the batch");
  assert_eq!(plan.groups.len(), 1);
  assert_eq!(plan.groups[0].1, vec![streams[0], streams[1]]);
  assert_eq!(
    plan.groups[0].0,
    b"id: 7-1\nevent: news\ndata: 1\n\n".to_vec()
  );
  let (key, bytes) = plan.first.expect("c's chunk");
  assert_eq!(key, streams[2]);
  assert_eq!(
    bytes,
    b"id: 7-1\nevent: news\ndata: 1\n\nid: 1\nevent: own\ndata: 2\n\n".to_vec()
  );
}

#[test]
fn an_error_making_a_value_is_returned_and_the_bytes_are_taken() {
  let mut engine = Engine::new();
  let (a, _) = engine
    .open_stream("a".into(), None, options(1 << 20), 0)
    .unwrap();
  let failed = engine.flush_plan(|_| Err::<Vec<u8>, _>("no"), |b| Ok(b.to_vec()));
  assert_eq!(failed.err(), Some("no"));
  assert_eq!(engine.queued_bytes(a), 0);
}
