//! Framing: turns an event into the exact bytes of the `text/event-stream`
//! format (WHATWG HTML, "Server-sent events").
//!
//! The layout matches the S42Core class byte for byte:
//! `id: <id>\nevent: <name>\ndata: <data>\n\n`. Lines end with LF only, and
//! every complete event ends with a blank line, which is what makes clients
//! dispatch it. Field values are assumed to be validated already (see
//! `validate.rs`); `data` may hold line breaks and is split here.

/// The `id:` field of an event: the value clients report back in
/// `Last-Event-ID` when they reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventId<'a> {
  /// A per-connection counter value, written in decimal.
  Number(u64),
  /// Text given by the caller, already checked to be a single line.
  Text(&'a [u8]),
}

/// One event to frame. Fields that are `None` are left out. Text is UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
  /// The `id:` field: the value clients report back in `Last-Event-ID`.
  pub id: Option<EventId<'a>>,
  /// The `event:` field: the event type clients listen for.
  pub name: Option<&'a [u8]>,
  /// The `data:` text. CR, LF and CRLF each start a new `data:` line.
  pub data: &'a [u8],
}

/// Appends the framed `event` to `out`.
pub fn push_event(out: &mut Vec<u8>, event: &Event<'_>) {
  out.reserve(event_len_hint(event));
  if let Some(id) = event.id {
    push_id(out, id);
  }
  if let Some(name) = event.name {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name);
    out.push(b'\n');
  }
  push_data_lines(out, event.data);
  out.push(b'\n');
}

/// Appends an event with `id` whose name and data text are written straight
/// into `out` by `write_name` and `write_data`, so text copied out of
/// JavaScript is copied once. The bytes are those of [`push_event`]; data
/// that turns out to hold line breaks is split the same way (one fast scan,
/// which finds none in `JSON.stringify` output). When a writer fails, `out`
/// is restored to its length before the call.
pub fn push_event_in_place<E>(
  out: &mut Vec<u8>,
  id: EventId<'_>,
  write_name: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
  write_data: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
  let mark = out.len();
  let result = push_in_place(out, id, write_name, write_data);
  if result.is_err() {
    out.truncate(mark);
  }
  result
}

fn push_in_place<E>(
  out: &mut Vec<u8>,
  id: EventId<'_>,
  write_name: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
  write_data: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
  push_id(out, id);
  out.extend_from_slice(b"event: ");
  write_name(out)?;
  out.extend_from_slice(b"\ndata: ");
  let data_start = out.len();
  write_data(out)?;
  if memchr::memchr2(b'\r', b'\n', &out[data_start..]).is_some() {
    let data = out.split_off(data_start);
    out.truncate(data_start - b"data: ".len());
    push_data_lines(out, &data);
  } else {
    out.push(b'\n');
  }
  out.push(b'\n');
  Ok(())
}

/// Appends a comment block: one `: <line>` per line of `text` (CR, LF and
/// CRLF each start a new comment line, so no text can forge a field), then a
/// blank line. Empty text gives the shortest heartbeat, `:` and a blank line.
/// Clients ignore comments; proxies see traffic.
pub fn push_comment(out: &mut Vec<u8>, text: &[u8]) {
  if text.is_empty() {
    out.extend_from_slice(b":\n\n");
    return;
  }
  for_each_line(text, |line| {
    out.extend_from_slice(b": ");
    out.extend_from_slice(line);
    out.push(b'\n');
  });
  out.push(b'\n');
}

/// Appends `id: <id>` and a blank line: a block that sets the client's
/// last event id (what it sends back as `Last-Event-ID`) without
/// dispatching an event, since it has no data.
pub fn push_position(out: &mut Vec<u8>, id: &[u8]) {
  out.extend_from_slice(b"id: ");
  out.extend_from_slice(id);
  out.extend_from_slice(b"\n\n");
}

/// Appends `retry: <ms>` and a blank line: the reconnection delay clients
/// use after the stream ends.
pub fn push_retry(out: &mut Vec<u8>, ms: u64) {
  out.extend_from_slice(b"retry: ");
  push_decimal(out, ms);
  out.extend_from_slice(b"\n\n");
}

fn push_id(out: &mut Vec<u8>, id: EventId<'_>) {
  out.extend_from_slice(b"id: ");
  match id {
    EventId::Number(n) => push_decimal(out, n),
    EventId::Text(text) => out.extend_from_slice(text),
  }
  out.push(b'\n');
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
  let mut digits = [0u8; 20];
  let mut i = digits.len();
  loop {
    i -= 1;
    digits[i] = b'0' + (n % 10) as u8;
    n /= 10;
    if n == 0 {
      break;
    }
  }
  out.extend_from_slice(&digits[i..]);
}

fn event_len_hint(event: &Event<'_>) -> usize {
  // "id: " + up to 20 digits + "\n", "event: " + name + "\n", "data: " + data + "\n\n".
  let id = match event.id {
    Some(EventId::Number(_)) => 25,
    Some(EventId::Text(text)) => text.len() + 5,
    None => 0,
  };
  let name = event.name.map_or(0, |n| n.len() + 8);
  id + name + event.data.len() + 8
}

/// Writes one `data:` line per line of `data`. CRLF counts as one break, and
/// so do a lone CR and a lone LF. U+2028 and U+2029 are not line breaks in
/// the event-stream format and stay inside their line. Line breaks are found
/// with `memchr`, so long single-line data (JSON) costs one fast scan.
fn push_data_lines(out: &mut Vec<u8>, data: &[u8]) {
  for_each_line(data, |line| {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(line);
    out.push(b'\n');
  });
}

/// Calls `f` with each line of `text`, split at CR, LF and CRLF. A trailing
/// break gives a last, empty line.
fn for_each_line(text: &[u8], mut f: impl FnMut(&[u8])) {
  let mut start = 0;
  while let Some(offset) = memchr::memchr2(b'\r', b'\n', &text[start..]) {
    let at = start + offset;
    f(&text[start..at]);
    start = if text[at] == b'\r' && text.get(at + 1) == Some(&b'\n') {
      at + 2
    } else {
      at + 1
    };
  }
  f(&text[start..]);
}

/// The data of the welcome event: `{"uuid":"<uuid>"}`, exactly as
/// `JSON.stringify({ uuid })` writes it.
pub fn welcome_data(uuid: &str) -> String {
  serde_json::json!({ "uuid": uuid }).to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
  }

  fn frame_event(event: &Event<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    push_event(&mut out, event);
    out
  }

  fn write(text: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> Result<(), &'static str> + '_ {
    move |out| {
      out.extend_from_slice(text);
      Ok(())
    }
  }

  fn in_place(id: u64, name: &[u8], data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = b"before".to_vec();
    push_event_in_place(&mut out, EventId::Number(id), write(name), write(data))?;
    Ok(out.split_off(6))
  }

  #[test]
  fn in_place_writes_the_same_bytes() {
    for (id, name, data) in [
      (1u64, &b"update"[..], &br#"{"a":1}"#[..]),
      (0, b"", b""),
      (42, b"x", b"multi\nline\r\ntext\rend"),
      (7, b"y", b"trailing\n"),
    ] {
      let expected = frame_event(&Event {
        id: Some(EventId::Number(id)),
        name: Some(name),
        data,
      });
      assert_eq!(in_place(id, name, data), Ok(expected));
    }
  }

  #[test]
  fn in_place_failure_leaves_the_buffer_as_it_was() {
    let mut out = b"earlier event\n\n".to_vec();
    let failed_name = push_event_in_place(
      &mut out,
      EventId::Number(3),
      |o| {
        o.extend_from_slice(b"bad\rname");
        Err("name")
      },
      |_| Ok(()),
    );
    assert_eq!(failed_name, Err("name"));
    let failed_data = push_event_in_place(&mut out, EventId::Number(3), write(b"ok"), |o| {
      o.extend_from_slice(b"partial");
      Err("data")
    });
    assert_eq!(failed_data, Err("data"));
    assert_eq!(out, b"earlier event\n\n");
  }

  #[test]
  fn s42core_layout() {
    let framed = text(frame_event(&Event {
      id: Some(EventId::Number(7)),
      name: Some(b"update"),
      data: br#"{"message":"hi"}"#,
    }));
    assert_eq!(
      framed,
      "id: 7\nevent: update\ndata: {\"message\":\"hi\"}\n\n"
    );
  }

  #[test]
  fn welcome_matches_the_original() {
    let uuid = "1ceb707b-f57a-4645-a1f6-2c12575fb151";
    let framed = text(frame_event(&Event {
      id: Some(EventId::Number(0)),
      name: Some(b"welcome"),
      data: welcome_data(uuid).as_bytes(),
    }));
    assert_eq!(
      framed,
      "id: 0\nevent: welcome\ndata: {\"uuid\":\"1ceb707b-f57a-4645-a1f6-2c12575fb151\"}\n\n"
    );
  }

  #[test]
  fn empty_name_is_written_as_the_original_does() {
    let framed = text(frame_event(&Event {
      id: Some(EventId::Number(1)),
      name: Some(b""),
      data: b"1",
    }));
    assert_eq!(framed, "id: 1\nevent: \ndata: 1\n\n");
  }

  #[test]
  fn data_is_split_on_every_kind_of_line_break() {
    let framed = text(frame_event(&Event {
      id: None,
      name: None,
      data: b"a\nb\r\nc\rd",
    }));
    assert_eq!(framed, "data: a\ndata: b\ndata: c\ndata: d\n\n");
  }

  #[test]
  fn trailing_and_empty_lines_survive() {
    assert_eq!(text(frame_event(&Event::default())), "data: \n\n");
    let framed = text(frame_event(&Event {
      data: b"x\n",
      ..Event::default()
    }));
    assert_eq!(framed, "data: x\ndata: \n\n");
    let framed = text(frame_event(&Event {
      data: b"\r\n\r\n",
      ..Event::default()
    }));
    assert_eq!(framed, "data: \ndata: \ndata: \n\n");
  }

  #[test]
  fn unicode_line_separators_are_not_breaks() {
    let framed = text(frame_event(&Event {
      data: "a\u{2028}b\u{2029}c".as_bytes(),
      ..Event::default()
    }));
    assert_eq!(framed, "data: a\u{2028}b\u{2029}c\n\n");
  }

  #[test]
  fn large_ids() {
    let framed = text(frame_event(&Event {
      id: Some(EventId::Number(u64::MAX)),
      name: None,
      data: b"",
    }));
    assert_eq!(framed, "id: 18446744073709551615\ndata: \n\n");
  }

  #[test]
  fn small_ids() {
    for (id, expected) in [
      (0, "id: 0\n"),
      (9, "id: 9\n"),
      (10, "id: 10\n"),
      (1234567, "id: 1234567\n"),
    ] {
      let framed = text(frame_event(&Event {
        id: Some(EventId::Number(id)),
        ..Event::default()
      }));
      assert_eq!(framed, format!("{expected}data: \n\n"));
    }
  }

  #[test]
  fn welcome_data_escapes_like_json_stringify() {
    assert_eq!(welcome_data("a\"b"), r#"{"uuid":"a\"b"}"#);
  }

  #[test]
  fn text_ids_are_written_as_given() {
    let framed = text(frame_event(&Event {
      id: Some(EventId::Text(b"1526919030474-55")),
      name: Some(b"tick"),
      data: b"{}",
    }));
    assert_eq!(framed, "id: 1526919030474-55\nevent: tick\ndata: {}\n\n");
    let mut out = Vec::new();
    push_event_in_place(&mut out, EventId::Text(b""), write(b"n"), write(b"d")).unwrap();
    assert_eq!(text(out), "id: \nevent: n\ndata: d\n\n");
  }

  #[test]
  fn comments_cannot_forge_fields() {
    let mut out = Vec::new();
    push_comment(&mut out, b"");
    assert_eq!(text(out), ":\n\n");
    let mut out = Vec::new();
    push_comment(&mut out, b"hello");
    assert_eq!(text(out), ": hello\n\n");
    let mut out = Vec::new();
    push_comment(&mut out, b"a\rdata: evil\r\nb\n");
    assert_eq!(text(out), ": a\n: data: evil\n: b\n: \n\n");
  }

  #[test]
  fn position_block_has_no_data() {
    let mut out = Vec::new();
    push_position(&mut out, b"1700000000000-4");
    assert_eq!(text(out), "id: 1700000000000-4\n\n");
  }

  #[test]
  fn retry_block() {
    let mut out = Vec::new();
    push_retry(&mut out, 2500);
    assert_eq!(text(out), "retry: 2500\n\n");
  }
}
