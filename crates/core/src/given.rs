//! Values as the binding found them in JavaScript, and the rules that decide
//! what they mean: the constructor options of `new SSE(...)` and
//! `new Channel(...)`, the user's response headers, the client's resume
//! position, and the text of the errors these rules raise.
//!
//! The binding reads each value once (its type, and a number or boolean
//! when it is one), hands it here and throws what comes back; it decides
//! nothing itself. So every rule and every message is covered by
//! `cargo test`.

use crate::headers::{self, Request};
use crate::options::{self, ChannelOptions, Form, Options};
use crate::validate;

/// The stable `code` of each error the library throws.
pub mod code {
  /// The event name is not a string, or breaks a single-line field rule.
  pub const INVALID_EVENT_NAME: &str = "ERR_SSE_INVALID_EVENT_NAME";
  /// An argument is not what the method takes: the constructor's `req` or
  /// `res`, or the callback of `onClose()`.
  pub const INVALID_ARGUMENT: &str = "ERR_SSE_INVALID_ARGUMENT";
  /// A constructor option has the wrong type or is out of range.
  pub const INVALID_OPTION: &str = "ERR_SSE_INVALID_OPTION";
  /// An explicit event id is not a string, or breaks a single-line field
  /// rule.
  pub const INVALID_EVENT_ID: &str = "ERR_SSE_INVALID_EVENT_ID";
  /// Pre-serialised `data` is neither a string nor bytes, or comes together
  /// with `eventPayload`.
  pub const INVALID_DATA: &str = "ERR_SSE_INVALID_DATA";
  /// `add()` or `broadcast()` on a channel after `close()`.
  pub const CHANNEL_CLOSED: &str = "ERR_SSE_CHANNEL_CLOSED";
}

/// What JavaScript's `typeof` says of a value (with arrays told apart from
/// other objects), as error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
  Undefined,
  Null,
  Boolean,
  Number,
  String,
  Symbol,
  Object,
  Array,
  Function,
  External,
  BigInt,
}

impl Kind {
  /// The name in "(got number)".
  pub fn name(self) -> &'static str {
    match self {
      Kind::Undefined => "undefined",
      Kind::Null => "null",
      Kind::Boolean => "boolean",
      Kind::Number => "number",
      Kind::String => "string",
      Kind::Symbol => "symbol",
      Kind::Object => "object",
      Kind::Array => "array",
      Kind::Function => "function",
      Kind::External => "external",
      Kind::BigInt => "bigint",
    }
  }
}

/// One option's value: absent (`undefined`), a boolean, a number, or
/// something else, of which only the kind matters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Given {
  Absent,
  Bool(bool),
  Number(f64),
  Other(Kind),
}

impl Given {
  fn kind(self) -> Kind {
    match self {
      Given::Absent => Kind::Undefined,
      Given::Bool(_) => Kind::Boolean,
      Given::Number(_) => Kind::Number,
      Given::Other(kind) => kind,
    }
  }
}

/// The call as errors name it.
pub fn call_of(form: Form) -> &'static str {
  match form {
    Form::Node => "new SSE(req, res, options)",
    Form::Fetch => "new SSE(request, options)",
  }
}

/// The call `new Channel()` errors name.
pub const NEW_CHANNEL: &str = "new Channel(options)";

/// "`call`: options.`name` `rule`" (`name` "options" for the options
/// argument itself).
pub fn option_message(call: &str, name: &str, rule: &str) -> String {
  if name == "options" {
    format!("{call}: options {rule}")
  } else {
    format!("{call}: options.{name} {rule}")
  }
}

/// "`subject` must be `expected` (got <kind>)".
pub fn wrong_type_message(subject: &str, expected: &str, got: Kind) -> String {
  format!("{subject} must be {expected} (got {})", got.name())
}

/// The rule the options argument itself breaks, if any: it may be absent,
/// `undefined`, `null` or an object (`Ok(true)` when there are options to
/// read).
pub fn options_argument(kind: Kind) -> Result<bool, String> {
  match kind {
    Kind::Undefined | Kind::Null => Ok(false),
    Kind::Object | Kind::Array => Ok(true),
    other => Err(format!("must be an object (got {})", other.name())),
  }
}

fn number_rule(value: Given) -> Result<Option<f64>, String> {
  match value {
    Given::Absent => Ok(None),
    Given::Number(number) => Ok(Some(number)),
    other => Err(format!("must be a number (got {})", other.kind().name())),
  }
}

/// The scalar options of `new SSE()`, in the order they are read (getters
/// on the options object see this order).
pub const STREAM_OPTIONS: [&str; 4] = ["keepAlive", "retry", "maxBufferedBytes", "welcome"];

/// Sets the option `name` (one of [`STREAM_OPTIONS`]) from `value`, or says
/// which rule it breaks.
pub fn set_stream_option(options: &mut Options, name: &str, value: Given) -> Result<(), String> {
  if name == "welcome" {
    return match value {
      Given::Absent => Ok(()),
      Given::Bool(welcome) => {
        options.welcome = welcome;
        Ok(())
      }
      other => Err(format!("must be a boolean (got {})", other.kind().name())),
    };
  }
  let Some(number) = number_rule(value)? else {
    return Ok(());
  };
  match name {
    "keepAlive" => options.keep_alive_ms = options::integer_in(number, 0, options::MAX_TIMER_MS)?,
    "retry" => {
      options.retry_ms = Some(options::integer_in(number, 0, options::MAX_SAFE_INTEGER)?);
    }
    "maxBufferedBytes" => options.max_buffered_bytes = options::max_buffered_bytes(number)?,
    _ => return Err("is not an option".to_owned()),
  }
  Ok(())
}

/// The numeric options of `new Channel()`, in the order they are read.
pub const CHANNEL_OPTIONS: [&str; 6] = [
  "historyEvents",
  "historyBytes",
  "flushWindow",
  "maxLen",
  "maxInFlight",
  "commandTimeout",
];

/// Sets the channel option `name` (one of [`CHANNEL_OPTIONS`]) from
/// `value`, or says which rule it breaks.
pub fn set_channel_option(
  options: &mut ChannelOptions,
  name: &str,
  value: Given,
) -> Result<(), String> {
  let Some(number) = number_rule(value)? else {
    return Ok(());
  };
  let (slot, min, max) = match name {
    "historyEvents" => (&mut options.history_events, 0, 1 << 24),
    "historyBytes" => (&mut options.history_bytes, 0, options::MAX_SAFE_INTEGER),
    "flushWindow" => (&mut options.flush_window_ms, 0, options::MAX_TIMER_MS),
    "maxLen" => (&mut options.max_len, 1, options::MAX_SAFE_INTEGER),
    "maxInFlight" => (&mut options.max_in_flight, 1, 1 << 24),
    "commandTimeout" => (&mut options.command_timeout_ms, 1, options::MAX_TIMER_MS),
    _ => return Err("is not an option".to_owned()),
  };
  *slot = options::integer_in(number, min, max)?;
  Ok(())
}

/// The `headers` option: absent, or an object of names and values (not an
/// array); the rule it breaks otherwise.
pub fn headers_option(kind: Kind) -> Result<bool, String> {
  match kind {
    Kind::Undefined => Ok(false),
    Kind::Object => Ok(true),
    other => Err(format!(
      "must be an object of header names and values (got {})",
      other.name()
    )),
  }
}

/// The rule a header value breaks, named `headers["<name>"]` in the message.
pub const HEADER_VALUE_RULE: &str = "must be a string, a number or an array of strings";

/// The option name of the user header `name`, as errors print it.
pub fn header_option_name(name: &str) -> String {
  format!("headers[{name:?}]")
}

/// A header value as `writeHead` and `Headers` take it.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
  Text(String),
  Number(f64),
  /// The header repeated, once per item.
  List(Vec<String>),
}

/// The response headers: the defaults, then the user's over them (a user
/// header replaces a default of the same name in any letter case). On
/// HTTP/2 the connection-specific headers are left out, the user's too.
pub fn response_headers(
  request: Request,
  user: &[(String, HeaderValue)],
) -> Vec<(&str, HeaderValue)> {
  let names: Vec<&str> = user.iter().map(|(name, _)| name.as_str()).collect();
  let mut out: Vec<(&str, HeaderValue)> = headers::defaults(request, &names)
    .into_iter()
    .map(|(name, value)| (name, HeaderValue::Text(value.to_owned())))
    .collect();
  out.extend(
    user
      .iter()
      .filter(|(name, _)| headers::keeps_user_header(request, name))
      .map(|(name, value)| (name.as_str(), value.clone())),
  );
  out
}

/// The client's resume position: the `Last-Event-ID` header when it has the
/// accepted form, else the `lastEventId` query parameter of the request
/// target (or URL) when that has it. Each is `None` when it was missing or
/// too long to be read.
pub fn resume_position(header: Option<&str>, target: Option<&str>) -> Option<String> {
  if let Some(id) = header.and_then(|value| validate::last_event_id(value.as_bytes())) {
    return Some(id.to_owned());
  }
  validate::query_last_event_id(target?.as_bytes())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stream_options_take_numbers_and_a_boolean() {
    let mut options = Options::defaults(Form::Node);
    set_stream_option(&mut options, "keepAlive", Given::Number(0.0)).unwrap();
    set_stream_option(&mut options, "retry", Given::Number(2500.0)).unwrap();
    set_stream_option(
      &mut options,
      "maxBufferedBytes",
      Given::Number(f64::INFINITY),
    )
    .unwrap();
    set_stream_option(&mut options, "welcome", Given::Bool(false)).unwrap();
    assert_eq!(options.keep_alive_ms, 0);
    assert_eq!(options.retry_ms, Some(2500));
    assert_eq!(options.max_buffered_bytes, u64::MAX);
    assert!(!options.welcome);
  }

  #[test]
  fn absent_options_keep_the_defaults_of_the_form() {
    for form in [Form::Node, Form::Fetch] {
      let mut options = Options::defaults(form);
      for name in STREAM_OPTIONS {
        set_stream_option(&mut options, name, Given::Absent).unwrap();
      }
      assert_eq!(options, Options::defaults(form));
    }
  }

  #[test]
  fn wrong_kinds_and_ranges_name_the_rule() {
    let mut options = Options::default();
    let rule = set_stream_option(&mut options, "keepAlive", Given::Other(Kind::String));
    assert_eq!(rule, Err("must be a number (got string)".to_owned()));
    let rule = set_stream_option(&mut options, "welcome", Given::Number(1.0));
    assert_eq!(rule, Err("must be a boolean (got number)".to_owned()));
    let rule = set_stream_option(&mut options, "keepAlive", Given::Number(-1.0));
    assert_eq!(
      rule,
      Err("must be an integer from 0 to 2147483647".to_owned())
    );
    let rule = set_stream_option(&mut options, "retry", Given::Number(0.5));
    assert!(rule.unwrap_err().starts_with("must be an integer"));
    let rule = set_stream_option(&mut options, "maxBufferedBytes", Given::Number(0.0));
    assert!(rule.unwrap_err().contains("positive integer or Infinity"));
    let rule = set_stream_option(&mut options, "nope", Given::Number(1.0));
    assert_eq!(rule, Err("is not an option".to_owned()));
    assert_eq!(options, Options::default(), "nothing changed on a refusal");
  }

  #[test]
  fn channel_options_have_their_ranges() {
    let mut options = ChannelOptions::default();
    set_channel_option(&mut options, "flushWindow", Given::Number(10.0)).unwrap();
    set_channel_option(&mut options, "maxLen", Given::Number(5.0)).unwrap();
    assert_eq!((options.flush_window_ms, options.max_len), (10, 5));
    assert!(set_channel_option(&mut options, "maxLen", Given::Number(0.0)).is_err());
    let too_many = Given::Number(f64::from(1u32 << 25));
    assert!(set_channel_option(&mut options, "historyEvents", too_many).is_err());
    let rule = set_channel_option(&mut options, "historyBytes", Given::Other(Kind::Null));
    assert_eq!(rule, Err("must be a number (got null)".to_owned()));
    assert!(set_channel_option(&mut options, "historyBytes", Given::Absent).is_ok());
    set_channel_option(&mut options, "maxInFlight", Given::Number(10.0)).unwrap();
    set_channel_option(&mut options, "commandTimeout", Given::Number(250.0)).unwrap();
    assert_eq!(
      (options.max_in_flight, options.command_timeout_ms),
      (10, 250)
    );
    assert!(set_channel_option(&mut options, "maxInFlight", Given::Number(0.0)).is_err());
    assert!(set_channel_option(&mut options, "commandTimeout", Given::Number(0.0)).is_err());
  }

  #[test]
  fn the_options_argument_and_headers_option() {
    assert_eq!(options_argument(Kind::Undefined), Ok(false));
    assert_eq!(options_argument(Kind::Null), Ok(false));
    assert_eq!(options_argument(Kind::Object), Ok(true));
    assert_eq!(
      options_argument(Kind::Number),
      Err("must be an object (got number)".to_owned())
    );
    assert_eq!(headers_option(Kind::Object), Ok(true));
    assert_eq!(headers_option(Kind::Undefined), Ok(false));
    assert!(headers_option(Kind::Array)
      .unwrap_err()
      .ends_with("(got array)"));
  }

  #[test]
  fn messages() {
    assert_eq!(
      option_message(
        "new SSE(req, res, options)",
        "retry",
        "must be a number (got string)"
      ),
      "new SSE(req, res, options): options.retry must be a number (got string)"
    );
    assert_eq!(
      option_message(NEW_CHANNEL, "options", "must be an object (got number)"),
      "new Channel(options): options must be an object (got number)"
    );
    assert_eq!(
      wrong_type_message("req", "an object", Kind::Undefined),
      "req must be an object (got undefined)"
    );
    assert_eq!(header_option_name("X-A"), "headers[\"X-A\"]");
    assert_eq!(call_of(Form::Fetch), "new SSE(request, options)");
  }

  #[test]
  fn user_headers_replace_defaults_in_any_case_and_http2_drops_connection_headers() {
    let user = vec![
      (
        "cache-control".to_owned(),
        HeaderValue::Text("no-store".to_owned()),
      ),
      ("Keep-Alive".to_owned(), HeaderValue::Number(5.0)),
      (
        "Set-Cookie".to_owned(),
        HeaderValue::List(vec!["a=1".to_owned(), "b=2".to_owned()]),
      ),
    ];
    let h1 = Request {
      http2: false,
      closes: false,
    };
    let names: Vec<&str> = response_headers(h1, &user)
      .into_iter()
      .map(|(n, _)| n)
      .collect();
    assert_eq!(
      names,
      [
        "Content-Type",
        "X-Accel-Buffering",
        "Connection",
        "cache-control",
        "Keep-Alive",
        "Set-Cookie"
      ]
    );
    let h2 = response_headers(Request::fetch(), &user);
    assert!(h2
      .iter()
      .all(|(name, _)| *name != "Keep-Alive" && *name != "Connection"));
    assert_eq!(h2.last().unwrap().1, user[2].1);
  }

  #[test]
  fn the_header_comes_before_the_query() {
    assert_eq!(
      resume_position(Some("41"), Some("/e?lastEventId=7")),
      Some("41".to_owned())
    );
    assert_eq!(
      resume_position(Some("has space"), Some("/e?lastEventId=7")),
      Some("7".to_owned())
    );
    assert_eq!(resume_position(None, Some("/e?x=1")), None);
    assert_eq!(resume_position(None, None), None);
  }
}
