//! The response headers of a stream: the defaults, which of them the
//! user's headers replace, and which names HTTP/2 forbids. The binding
//! only copies the values into the object `writeHead` takes.

use crate::options::is_connection_specific;

/// The request, as far as the headers depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
  /// HTTP/2 (or later): connection-specific headers are forbidden.
  pub http2: bool,
  /// The client asked to close the connection after this response
  /// (`Connection: close`): Node answers `Connection: close` itself.
  pub closes: bool,
}

impl Request {
  /// A Fetch-form stream: the runtime (Bun, Deno, a Node adapter) owns the
  /// connection and may serve HTTP/2, so the connection-specific headers
  /// are left out as on HTTP/2.
  pub fn fetch() -> Request {
    Request {
      http2: true,
      closes: false,
    }
  }
}

/// The defaults to set, given the user's header names: those the user does
/// not replace (a name in any letter case replaces a default).
pub fn defaults(request: Request, user: &[&str]) -> Vec<(&'static str, &'static str)> {
  let mut defaults = vec![
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache, no-transform"),
    // nginx buffers proxied responses unless told not to.
    ("X-Accel-Buffering", "no"),
  ];
  if !request.http2 && !request.closes {
    defaults.push(("Connection", "keep-alive"));
  }
  defaults.retain(|(name, _)| !user.iter().any(|user| user.eq_ignore_ascii_case(name)));
  defaults
}

/// Whether the user's header `name` is sent (HTTP/2 forbids the
/// connection-specific ones, the user's too).
pub fn keeps_user_header(request: Request, name: &str) -> bool {
  !(request.http2 && is_connection_specific(name))
}

/// Whether a `Connection` request header asks to close the connection.
pub fn asks_to_close(connection: &str) -> bool {
  connection
    .split(',')
    .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

#[cfg(test)]
mod tests {
  use super::*;

  const H1: Request = Request {
    http2: false,
    closes: false,
  };

  #[test]
  fn the_defaults_of_s42core_and_ours() {
    let names: Vec<_> = defaults(H1, &[])
      .into_iter()
      .map(|(name, _)| name)
      .collect();
    assert_eq!(
      names,
      [
        "Content-Type",
        "Cache-Control",
        "X-Accel-Buffering",
        "Connection"
      ]
    );
  }

  #[test]
  fn a_user_header_in_any_case_replaces_a_default() {
    let names: Vec<_> = defaults(H1, &["cache-control", "X-Other"])
      .into_iter()
      .map(|(name, _)| name)
      .collect();
    assert_eq!(names, ["Content-Type", "X-Accel-Buffering", "Connection"]);
  }

  #[test]
  fn no_keep_alive_on_http2_or_when_the_client_closes() {
    for request in [
      Request {
        http2: true,
        closes: false,
      },
      Request {
        http2: false,
        closes: true,
      },
    ] {
      assert!(defaults(request, &[])
        .iter()
        .all(|(name, _)| *name != "Connection"));
    }
    let h2 = Request {
      http2: true,
      closes: false,
    };
    assert!(!keeps_user_header(h2, "Keep-Alive"));
    assert!(keeps_user_header(h2, "X-Stream"));
    assert!(keeps_user_header(H1, "Keep-Alive"));
  }

  #[test]
  fn the_fetch_form_leaves_the_connection_to_the_runtime() {
    let names: Vec<_> = defaults(Request::fetch(), &[])
      .into_iter()
      .map(|(name, _)| name)
      .collect();
    assert_eq!(
      names,
      ["Content-Type", "Cache-Control", "X-Accel-Buffering"]
    );
    assert!(!keeps_user_header(Request::fetch(), "Connection"));
  }

  #[test]
  fn connection_close_tokens() {
    assert!(asks_to_close("close"));
    assert!(asks_to_close("Upgrade, Close"));
    assert!(!asks_to_close("keep-alive"));
    assert!(!asks_to_close("closed"));
  }
}
