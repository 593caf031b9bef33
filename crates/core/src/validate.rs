//! Validation of the text that goes into single-line SSE fields.
//!
//! The `event:`, `id:` and comment lines of an event stream end at the first
//! CR, LF or CRLF (WHATWG HTML, "Server-sent events", "Parsing an event
//! stream"). A field value that contains a line break therefore ends its line
//! early and lets the rest forge new fields: `"a\rdata: evil"` is an event name
//! followed by a forged `data:` line. NUL makes clients ignore an `id:`.
//! Everything here is napi-free so that it can be unit-tested with `cargo test`.

use std::fmt;

/// Why a value may not be written into a single-line SSE field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
  /// The value contains a carriage return (U+000D).
  CarriageReturn,
  /// The value contains a line feed (U+000A).
  LineFeed,
  /// The value contains NUL (U+0000).
  Nul,
  /// The value is not well-formed UTF-16: it holds an unpaired surrogate,
  /// which would reach the wire as U+FFFD instead of what the caller sent.
  LoneSurrogate,
}

impl FieldError {
  /// A short description of the rule that was broken, for error messages.
  pub fn rule(self) -> &'static str {
    match self {
      FieldError::CarriageReturn => "must not contain a carriage return (\\r)",
      FieldError::LineFeed => "must not contain a line feed (\\n)",
      FieldError::Nul => "must not contain NUL (\\0)",
      FieldError::LoneSurrogate => "must be well-formed UTF-16 (it contains an unpaired surrogate)",
    }
  }
}

impl fmt::Display for FieldError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.rule())
  }
}

/// Checks that `value` can be written as the value of one SSE field line.
///
/// `value` is the UTF-8 form of a JavaScript string. A lone surrogate in the
/// original string shows up here as U+FFFD, so this function cannot see it;
/// callers that start from JavaScript also run [`check_utf16`] when
/// [`may_hide_lone_surrogate`] says so.
pub fn check_single_line(value: &[u8]) -> Result<(), FieldError> {
  for &byte in value {
    match byte {
      b'\r' => return Err(FieldError::CarriageReturn),
      b'\n' => return Err(FieldError::LineFeed),
      0 => return Err(FieldError::Nul),
      _ => {}
    }
  }
  Ok(())
}

/// The UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER.
const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();

/// Whether the UTF-8 text obtained from a JavaScript string may stand for a
/// lone surrogate: engines convert unpaired surrogates to U+FFFD, so only
/// text that contains U+FFFD needs the (slower) UTF-16 check.
pub fn may_hide_lone_surrogate(value: &[u8]) -> bool {
  value
    .windows(REPLACEMENT_UTF8.len())
    .any(|w| w == REPLACEMENT_UTF8)
}

/// Checks that a UTF-16 string is well formed: every high surrogate is
/// followed by a low surrogate and every low surrogate follows a high one.
pub fn check_utf16(units: &[u16]) -> Result<(), FieldError> {
  let mut i = 0;
  while i < units.len() {
    let unit = units[i];
    if (0xD800..=0xDBFF).contains(&unit) {
      match units.get(i + 1) {
        Some(next) if (0xDC00..=0xDFFF).contains(next) => i += 2,
        _ => return Err(FieldError::LoneSurrogate),
      }
    } else if (0xDC00..=0xDFFF).contains(&unit) {
      return Err(FieldError::LoneSurrogate);
    } else {
      i += 1;
    }
  }
  Ok(())
}

/// The longest `Last-Event-ID` accepted, in bytes. Counter ids, UUIDs and
/// Redis stream ids (at most 41 characters) fit with room to spare.
pub const MAX_LAST_EVENT_ID_LEN: usize = 128;

/// The resume position a client sent, when it has the accepted form: 1 to
/// [`MAX_LAST_EVENT_ID_LEN`] visible ASCII characters (`!` to `~`, so no
/// spaces, control characters or anything outside ASCII). Anything else is
/// `None`: treated as absent, never echoed back.
///
/// `value` is the header as Node decodes it (latin1) or the decoded query
/// parameter, as UTF-8 bytes.
pub fn last_event_id(value: &[u8]) -> Option<&str> {
  if value.is_empty() || value.len() > MAX_LAST_EVENT_ID_LEN {
    return None;
  }
  if !value.iter().all(|byte| (0x21..=0x7E).contains(byte)) {
    return None;
  }
  std::str::from_utf8(value).ok()
}

/// The `lastEventId` query parameter of a request target such as
/// `/events?topic=a&lastEventId=42`, percent-decoded and checked with
/// [`last_event_id`] (`+` decodes to a space, as in form encoding, so it is
/// refused). The first `lastEventId` parameter counts; a malformed escape or
/// a value of the wrong form gives `None`.
pub fn query_last_event_id(target: &[u8]) -> Option<String> {
  let query_start = memchr::memchr(b'?', target)? + 1;
  let query = &target[query_start..];
  let query = match memchr::memchr(b'#', query) {
    Some(end) => &query[..end],
    None => query,
  };
  let value = query
    .split(|&byte| byte == b'&')
    .find_map(|pair| pair.strip_prefix(b"lastEventId="))?;
  // Each accepted character takes at most three bytes escaped.
  if value.len() > 3 * MAX_LAST_EVENT_ID_LEN {
    return None;
  }
  let decoded = percent_decode(value)?;
  last_event_id(&decoded).map(str::to_owned)
}

fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
  let mut out = Vec::with_capacity(text.len());
  let mut i = 0;
  while i < text.len() {
    if text[i] == b'%' {
      let hex = text.get(i + 1..i + 3)?;
      let hex = std::str::from_utf8(hex).ok()?;
      out.push(u8::from_str_radix(hex, 16).ok()?);
      i += 3;
    } else {
      // Form encoding (what `URLSearchParams` writes) turns spaces into `+`.
      out.push(if text[i] == b'+' { b' ' } else { text[i] });
      i += 1;
    }
  }
  Some(out)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn plain_names_pass() {
    for name in [
      "update",
      "",
      "a b",
      "événement",
      "😀",
      "tab\there",
      "\u{2028}",
    ] {
      assert_eq!(check_single_line(name.as_bytes()), Ok(()), "{name:?}");
    }
  }

  #[test]
  fn each_line_break_is_caught() {
    assert_eq!(
      check_single_line(b"a\rdata: evil"),
      Err(FieldError::CarriageReturn)
    );
    assert_eq!(check_single_line(b"a\ndata: x"), Err(FieldError::LineFeed));
    assert_eq!(
      check_single_line(b"a\r\ndata: x"),
      Err(FieldError::CarriageReturn)
    );
    assert_eq!(check_single_line(b"\n"), Err(FieldError::LineFeed));
    assert_eq!(check_single_line(b"a\0b"), Err(FieldError::Nul));
  }

  #[test]
  fn replacement_character_is_flagged_for_the_utf16_check() {
    assert!(may_hide_lone_surrogate("x\u{FFFD}".as_bytes()));
    assert!(!may_hide_lone_surrogate(b"plain"));
    assert!(!may_hide_lone_surrogate("😀é".as_bytes()));
  }

  #[test]
  fn utf16_pairs_and_lone_halves() {
    let ok: Vec<u16> = "a😀b".encode_utf16().collect();
    assert_eq!(check_utf16(&ok), Ok(()));
    assert_eq!(check_utf16(&[0x61, 0xD83D]), Err(FieldError::LoneSurrogate));
    assert_eq!(check_utf16(&[0xDE00, 0x61]), Err(FieldError::LoneSurrogate));
    assert_eq!(
      check_utf16(&[0xD83D, 0x61, 0xDE00]),
      Err(FieldError::LoneSurrogate)
    );
    assert_eq!(check_utf16(&[0xFFFD]), Ok(()));
    assert_eq!(check_utf16(&[]), Ok(()));
  }

  #[test]
  fn last_event_id_accepts_the_documented_form() {
    for id in [
      "0",
      "42",
      "1526919030474-55",
      "abc_DEF.~!",
      &"9".repeat(128),
    ] {
      assert_eq!(last_event_id(id.as_bytes()), Some(id), "{id:?}");
    }
  }

  #[test]
  fn last_event_id_rejects_everything_else() {
    let too_long = "1".repeat(129);
    for id in [
      "",
      " ",
      "4 2",
      "42\r\ndata: x",
      "a\0b",
      "\t1",
      "é",
      "\u{7f}",
      too_long.as_str(),
    ] {
      assert_eq!(last_event_id(id.as_bytes()), None, "{id:?}");
    }
    assert_eq!(last_event_id(&[0xE9]), None);
  }

  #[test]
  fn query_parameter() {
    let q = |target: &str| query_last_event_id(target.as_bytes());
    assert_eq!(q("/events?lastEventId=42").as_deref(), Some("42"));
    assert_eq!(q("/e?topic=a&lastEventId=7-1&x=y").as_deref(), Some("7-1"));
    assert_eq!(q("/e?lastEventId=a%2Db#frag").as_deref(), Some("a-b"));
    assert_eq!(q("/e?lastEventId=1&lastEventId=2").as_deref(), Some("1"));
    assert_eq!(q("/events"), None);
    assert_eq!(q("/e?xlastEventId=1"), None);
    assert_eq!(q("/e?lastEventId="), None);
    assert_eq!(q("/e?lastEventId=%0D%0Adata"), None);
    assert_eq!(q("/e?lastEventId=%ZZ"), None);
    assert_eq!(q("/e?lastEventId=%4"), None);
    assert_eq!(q("/e?lastEventId=a+b"), None);
    assert_eq!(q("/e?lastEventId=%C3%A9"), None);
    assert_eq!(q(&format!("/e?lastEventId={}", "%41".repeat(200))), None);
  }
}
