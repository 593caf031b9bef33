//! Channel event ids: `<ms>-<seq>`, the form of Redis stream entry ids.
//!
//! Every channel event carries such an id, so a client's `Last-Event-ID` can
//! be placed in the channel's order. An in-process channel writes
//! `<epoch>-<n>` (`epoch` is the time the channel was made, in ms, and `n`
//! counts from 1), so ids from an earlier process never match a new channel;
//! a Redis channel uses the stream entry ids as they are.

use std::fmt;

/// A channel event id. Ordered as Redis orders stream ids: by `ms`, then by
/// `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChannelId {
  pub ms: u64,
  pub seq: u64,
}

impl ChannelId {
  pub const ZERO: ChannelId = ChannelId { ms: 0, seq: 0 };

  pub fn new(ms: u64, seq: u64) -> ChannelId {
    ChannelId { ms, seq }
  }

  /// Reads `<ms>-<seq>` in the canonical form Redis writes: decimal digits,
  /// no sign, no leading zeros (except a lone `0`), each part a `u64`.
  /// Anything else is `None`, so a parsed id always prints back to the same
  /// text.
  pub fn parse(text: &[u8]) -> Option<ChannelId> {
    let dash = memchr::memchr(b'-', text)?;
    let ms = parse_part(&text[..dash])?;
    let seq = parse_part(&text[dash + 1..])?;
    Some(ChannelId { ms, seq })
  }

  /// Appends the id's text to `out`.
  pub fn write(self, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}-{}", self.ms, self.seq);
  }
}

impl fmt::Display for ChannelId {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}-{}", self.ms, self.seq)
  }
}

fn parse_part(digits: &[u8]) -> Option<u64> {
  if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
    return None;
  }
  if digits.len() > 1 && digits[0] == b'0' {
    return None;
  }
  std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn parses_redis_ids() {
    assert_eq!(
      ChannelId::parse(b"1526919030474-55"),
      Some(ChannelId::new(1526919030474, 55))
    );
    assert_eq!(ChannelId::parse(b"0-0"), Some(ChannelId::ZERO));
    assert_eq!(
      ChannelId::parse(b"18446744073709551615-18446744073709551615"),
      Some(ChannelId::new(u64::MAX, u64::MAX))
    );
  }

  #[test]
  fn rejects_everything_else() {
    for text in [
      &b""[..],
      b"-",
      b"12",
      b"12-",
      b"-12",
      b"1-2-3",
      b"01-2",
      b"1-02",
      b"+1-2",
      b"1 -2",
      b"1-2 ",
      b"18446744073709551616-0",
      b"a-b",
      b"0",
    ] {
      assert_eq!(
        ChannelId::parse(text),
        None,
        "{:?}",
        String::from_utf8_lossy(text)
      );
    }
  }

  #[test]
  fn prints_what_it_parsed() {
    for text in ["0-0", "1-1", "1700000000000-12", "5-18446744073709551615"] {
      let id = ChannelId::parse(text.as_bytes()).unwrap();
      assert_eq!(id.to_string(), text);
      let mut out = b"x".to_vec();
      id.write(&mut out);
      assert_eq!(out, format!("x{text}").into_bytes());
    }
  }

  #[test]
  fn orders_like_redis() {
    let mut ids = vec![
      ChannelId::new(2, 0),
      ChannelId::new(1, 10),
      ChannelId::new(1, 9),
      ChannelId::new(10, 0),
    ];
    ids.sort();
    assert_eq!(
      ids,
      vec![
        ChannelId::new(1, 9),
        ChannelId::new(1, 10),
        ChannelId::new(2, 0),
        ChannelId::new(10, 0)
      ]
    );
  }
}
