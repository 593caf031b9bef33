//! The rules for the third constructor argument, `new SSE(req, res, options)`:
//! defaults and the checks on each value. Napi-free, so `cargo test` covers
//! them; `sse.rs` reads the values out of JavaScript.

/// Heartbeat period when `keepAlive` is not given: under the 60 s read
/// timeout of common proxies (nginx `proxy_read_timeout`), with room for a
/// lost beat.
pub const DEFAULT_KEEP_ALIVE_MS: u64 = 15_000;

/// Slow-client cap when `maxBufferedBytes` is not given: 4 MiB queued for
/// one client (in this library and in `res`) closes its connection. A burst
/// of a few thousand ordinary events fits; a client that stopped reading
/// costs at most this much.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 4 * 1024 * 1024;

/// The longest delay timers take (`setInterval` clamps anything above
/// 2^31 - 1 ms to 1 ms).
pub const MAX_TIMER_MS: u64 = 2_147_483_647;

/// The largest integer a JavaScript number holds exactly.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// Heartbeat period of the Fetch form when `keepAlive` is not given: under
/// Bun.serve's default `idleTimeout` of 10 s, which Bun checks in 4 s steps
/// (so a connection may be cut after 8 s without bytes), with a beat to
/// spare.
pub const DEFAULT_FETCH_KEEP_ALIVE_MS: u64 = 5_000;

/// Which of S42Core's two constructor forms opened a stream. Each keeps the
/// bytes of the S42Core version that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
  /// `new SSE(req, res)`, S42Core 1.x: a welcome event with id 0, then
  /// events from 1.
  Node,
  /// `new SSE(request)` + `getResponse()`, S42Core 2.x/3.x: no welcome,
  /// events from 0.
  Fetch,
}

/// The checked options, with defaults filled in. `headers` stay in
/// JavaScript and are merged there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
  /// Heartbeat period in milliseconds; 0 means no heartbeat.
  pub keep_alive_ms: u64,
  /// The `retry:` value sent before the welcome event, if any.
  pub retry_ms: Option<u64>,
  /// Whether the welcome event is sent.
  pub welcome: bool,
  /// Bytes queued for one client past which its connection is closed.
  pub max_buffered_bytes: u64,
}

impl Default for Options {
  fn default() -> Self {
    Options::defaults(Form::Node)
  }
}

impl Options {
  /// The defaults of `form`: the Fetch form sends no welcome (S42Core 3.x
  /// does not) and beats often enough for Bun.serve's idle timeout.
  pub fn defaults(form: Form) -> Options {
    Options {
      keep_alive_ms: match form {
        Form::Node => DEFAULT_KEEP_ALIVE_MS,
        Form::Fetch => DEFAULT_FETCH_KEEP_ALIVE_MS,
      },
      retry_ms: None,
      welcome: form == Form::Node,
      max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
    }
  }

  /// The id of the first counted event. With a welcome it is 1 (the
  /// welcome is 0) in both forms; without one the Fetch form starts at 0,
  /// as S42Core 3.x does, and the Node form keeps 1, as it always has.
  pub fn first_event_id(&self, form: Form) -> u64 {
    match (form, self.welcome) {
      (Form::Fetch, false) => 0,
      _ => 1,
    }
  }
}

/// Default flush window of a channel: none, each tick's broadcasts are
/// written at the end of that tick.
pub const DEFAULT_FLUSH_WINDOW_MS: u64 = 0;

/// Default `maxLen` of a Redis channel's stream (trimmed approximately).
pub const DEFAULT_STREAM_MAX_LEN: u64 = 10_000;

/// Default `maxInFlight` of a Redis channel: broadcasts sent to Redis and
/// not answered yet; past it `broadcast()` rejects at once.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1000;

/// Default `commandTimeout` of a Redis channel (ms): a broadcast, a replay
/// page or a read that Redis has not answered by then has failed.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 5_000;

/// The checked options of `new Channel(options)`, with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
  /// Events kept for replay (in-process channels).
  pub history_events: u64,
  /// Framed bytes kept for replay (in-process channels).
  pub history_bytes: u64,
  /// Milliseconds broadcasts wait to be written together; 0 for none.
  pub flush_window_ms: u64,
  /// `MAXLEN ~` of the Redis stream.
  pub max_len: u64,
  /// Broadcasts waiting for Redis at most (Redis channels).
  pub max_in_flight: u64,
  /// Milliseconds Redis has to answer a command (Redis channels).
  pub command_timeout_ms: u64,
}

impl Default for ChannelOptions {
  fn default() -> Self {
    ChannelOptions {
      history_events: crate::history::DEFAULT_MAX_EVENTS as u64,
      history_bytes: crate::history::DEFAULT_MAX_BYTES as u64,
      flush_window_ms: DEFAULT_FLUSH_WINDOW_MS,
      max_len: DEFAULT_STREAM_MAX_LEN,
      max_in_flight: DEFAULT_MAX_IN_FLIGHT,
      command_timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
    }
  }
}

/// `value` as an integer in `min..=max`, or a description of the rule it
/// breaks (for the `TypeError` message).
pub fn integer_in(value: f64, min: u64, max: u64) -> Result<u64, String> {
  // NaN and the infinities fail the range test; fractions the second one.
  if !(min as f64..=max as f64).contains(&value) || value.fract() != 0.0 {
    return Err(format!("must be an integer from {min} to {max}"));
  }
  Ok(value as u64)
}

/// `maxBufferedBytes`: a positive integer, or `Infinity` for no cap.
pub fn max_buffered_bytes(value: f64) -> Result<u64, String> {
  if value == f64::INFINITY {
    return Ok(u64::MAX);
  }
  integer_in(value, 1, MAX_SAFE_INTEGER)
    .map_err(|_| format!("must be a positive integer or Infinity (at most {MAX_SAFE_INTEGER})"))
}

/// Headers that belong to one HTTP/1 connection, and `HTTP2-Settings`.
/// HTTP/2 forbids them (RFC 9113, 8.2.2): Node warns about `Connection` and
/// throws on the rest, so they are left out of HTTP/2 responses. (`TE` is a
/// request header; in a response it means nothing on either version.)
pub fn is_connection_specific(name: &str) -> bool {
  [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "http2-settings",
  ]
  .iter()
  .any(|forbidden| forbidden.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn integers_in_range_pass() {
    assert_eq!(integer_in(0.0, 0, 10), Ok(0));
    assert_eq!(integer_in(10.0, 0, 10), Ok(10));
    assert_eq!(
      integer_in(2_147_483_647.0, 0, MAX_TIMER_MS),
      Ok(MAX_TIMER_MS)
    );
  }

  #[test]
  fn everything_else_is_refused() {
    for value in [
      -1.0,
      1.5,
      11.0,
      f64::NAN,
      f64::INFINITY,
      f64::NEG_INFINITY,
      -0.5,
    ] {
      assert!(integer_in(value, 0, 10).is_err(), "{value}");
    }
  }

  #[test]
  fn buffer_cap() {
    assert_eq!(max_buffered_bytes(1.0), Ok(1));
    assert_eq!(max_buffered_bytes(f64::INFINITY), Ok(u64::MAX));
    for value in [0.0, -1.0, 0.5, f64::NAN, 1e300] {
      assert!(max_buffered_bytes(value).is_err(), "{value}");
    }
  }

  #[test]
  fn connection_specific_headers() {
    for name in [
      "Connection",
      "keep-alive",
      "Transfer-Encoding",
      "UPGRADE",
      "proxy-connection",
      "TE",
      "HTTP2-Settings",
    ] {
      assert!(is_connection_specific(name), "{name}");
    }
    for name in ["Cache-Control", "X-Accel-Buffering", "content-type", "tea"] {
      assert!(!is_connection_specific(name), "{name}");
    }
  }

  #[test]
  fn defaults() {
    let options = Options::default();
    assert_eq!(options.keep_alive_ms, 15_000);
    assert_eq!(options.max_buffered_bytes, 4 * 1024 * 1024);
    assert!(options.welcome);
    assert_eq!(options.retry_ms, None);
    assert_eq!(options.first_event_id(Form::Node), 1);
  }

  #[test]
  fn fetch_defaults_follow_s42core_3() {
    let options = Options::defaults(Form::Fetch);
    assert!(!options.welcome);
    assert_eq!(options.first_event_id(Form::Fetch), 0);
    assert!(
      options.keep_alive_ms < 8_000,
      "under Bun's shortest idle cut"
    );
    assert_eq!(options.max_buffered_bytes, DEFAULT_MAX_BUFFERED_BYTES);
    let welcomed = Options {
      welcome: true,
      ..options
    };
    assert_eq!(welcomed.first_event_id(Form::Fetch), 1);
    let quiet_node = Options {
      welcome: false,
      ..Options::default()
    };
    assert_eq!(quiet_node.first_event_id(Form::Node), 1);
  }
}
