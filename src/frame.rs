//! Framing: turns an event into the exact bytes of the `text/event-stream`
//! format (WHATWG HTML, "Server-sent events").
//!
//! The layout matches the S42Core class byte for byte:
//! `id: <id>\nevent: <name>\ndata: <data>\n\n`. Lines end with LF only, and
//! every complete event ends with a blank line, which is what makes clients
//! dispatch it. Field values are assumed to be validated already (see
//! `validate.rs`); `data` may hold line breaks and is split here.

use std::fmt::Write;

/// One event to frame. Fields that are `None` are left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
  /// The `id:` field: the value clients report back in `Last-Event-ID`.
  pub id: Option<u64>,
  /// The `event:` field: the event type clients listen for.
  pub name: Option<&'a str>,
  /// The `data:` text. CR, LF and CRLF each start a new `data:` line.
  pub data: &'a str,
}

/// Appends the framed `event` to `out`.
pub fn push_event(out: &mut String, event: &Event<'_>) {
  out.reserve(event_len_hint(event));
  if let Some(id) = event.id {
    out.push_str("id: ");
    // Writing into a String cannot fail.
    let _ = write!(out, "{id}");
    out.push('\n');
  }
  if let Some(name) = event.name {
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
  }
  push_data_lines(out, event.data);
  out.push('\n');
}

/// Frames `event` into a new String.
pub fn frame_event(event: &Event<'_>) -> String {
  let mut out = String::new();
  push_event(&mut out, event);
  out
}

fn event_len_hint(event: &Event<'_>) -> usize {
  // "id: " + up to 20 digits + "\n", "event: " + name + "\n", "data: " + data + "\n\n".
  let id = if event.id.is_some() { 25 } else { 0 };
  let name = event.name.map_or(0, |n| n.len() + 8);
  id + name + event.data.len() + 8
}

/// Writes one `data:` line per line of `data`. CRLF counts as one break, and
/// so do a lone CR and a lone LF. U+2028 and U+2029 are not line breaks in
/// the event-stream format and stay inside their line.
fn push_data_lines(out: &mut String, data: &str) {
  let bytes = data.as_bytes();
  let mut start = 0;
  let mut i = 0;
  while i < bytes.len() {
    match bytes[i] {
      b'\n' => {
        push_data_line(out, &data[start..i]);
        i += 1;
        start = i;
      }
      b'\r' => {
        push_data_line(out, &data[start..i]);
        i += if bytes.get(i + 1) == Some(&b'\n') {
          2
        } else {
          1
        };
        start = i;
      }
      _ => i += 1,
    }
  }
  push_data_line(out, &data[start..]);
}

fn push_data_line(out: &mut String, line: &str) {
  out.push_str("data: ");
  out.push_str(line);
  out.push('\n');
}

/// The data of the welcome event: `{"uuid":"<uuid>"}`, exactly as
/// `JSON.stringify({ uuid })` writes it.
pub fn welcome_data(uuid: &str) -> String {
  serde_json::json!({ "uuid": uuid }).to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn s42core_layout() {
    let framed = frame_event(&Event {
      id: Some(7),
      name: Some("update"),
      data: r#"{"message":"hi"}"#,
    });
    assert_eq!(
      framed,
      "id: 7\nevent: update\ndata: {\"message\":\"hi\"}\n\n"
    );
  }

  #[test]
  fn welcome_matches_the_original() {
    let uuid = "1ceb707b-f57a-4645-a1f6-2c12575fb151";
    let framed = frame_event(&Event {
      id: Some(0),
      name: Some("welcome"),
      data: &welcome_data(uuid),
    });
    assert_eq!(
      framed,
      "id: 0\nevent: welcome\ndata: {\"uuid\":\"1ceb707b-f57a-4645-a1f6-2c12575fb151\"}\n\n"
    );
  }

  #[test]
  fn empty_name_is_written_as_the_original_does() {
    let framed = frame_event(&Event {
      id: Some(1),
      name: Some(""),
      data: "1",
    });
    assert_eq!(framed, "id: 1\nevent: \ndata: 1\n\n");
  }

  #[test]
  fn data_is_split_on_every_kind_of_line_break() {
    let framed = frame_event(&Event {
      id: None,
      name: None,
      data: "a\nb\r\nc\rd",
    });
    assert_eq!(framed, "data: a\ndata: b\ndata: c\ndata: d\n\n");
  }

  #[test]
  fn trailing_and_empty_lines_survive() {
    assert_eq!(frame_event(&Event::default()), "data: \n\n");
    let framed = frame_event(&Event {
      data: "x\n",
      ..Event::default()
    });
    assert_eq!(framed, "data: x\ndata: \n\n");
    let framed = frame_event(&Event {
      data: "\r\n\r\n",
      ..Event::default()
    });
    assert_eq!(framed, "data: \ndata: \ndata: \n\n");
  }

  #[test]
  fn unicode_line_separators_are_not_breaks() {
    let framed = frame_event(&Event {
      data: "a\u{2028}b\u{2029}c",
      ..Event::default()
    });
    assert_eq!(framed, "data: a\u{2028}b\u{2029}c\n\n");
  }

  #[test]
  fn large_ids() {
    let framed = frame_event(&Event {
      id: Some(u64::MAX),
      name: None,
      data: "",
    });
    assert_eq!(framed, "id: 18446744073709551615\ndata: \n\n");
  }

  #[test]
  fn welcome_data_escapes_like_json_stringify() {
    assert_eq!(welcome_data("a\"b"), r#"{"uuid":"a\"b"}"#);
  }
}
