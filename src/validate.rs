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
}
