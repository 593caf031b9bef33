//! The `Channel` class: its constructor runs here (options checked, the
//! core's channel made); its methods are installed on the prototype by the
//! JavaScript front (`js/channel.js`).

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;
use native_sse_core::engine::ChannelSource;
use native_sse_core::given::{self as rules, NEW_CHANNEL};
use native_sse_core::options::ChannelOptions;
use native_sse_core::Key;

use crate::errors;
use crate::open;
use crate::state::{call_glue, State};

/// `attachChannel(channel, key, flushWindow, epoch, redis, stream, maxLen,
/// maxInFlight, commandTimeout)`.
type AttachChannelArgs<'env> = FnArgs<(
  Object<'env>,
  f64,
  f64,
  f64,
  Unknown<'env>,
  Unknown<'env>,
  f64,
  f64,
  f64,
)>;

/// A group of SSE streams that receive the same events.
///
/// `broadcast()` frames an event once and writes the same bytes to every
/// member; events broadcast in one tick reach each member in one write.
/// Every event gets a channel id (`<ms>-<seq>`, the form of Redis stream
/// ids), and recent events are kept, so a client that reconnects with
/// `Last-Event-ID` receives what it missed when it joins again, or a
/// `reset` event when that is no longer known.
///
/// With `{ redis, stream }` the channel is shared by every server process
/// that uses the same stream: broadcasts go through Redis (`XADD`), each
/// process reads the stream (`XREAD BLOCK` on its own connection) and writes
/// to its own members, and the stream entry ids are the event ids.
#[napi(custom_finalize)]
pub struct Channel {
  key: Key,
}

#[napi]
impl Channel {
  /// Makes a channel. Options (all optional): `historyEvents` (default
  /// 1000) and `historyBytes` (default 1 MiB) bound the kept events of an
  /// in-process channel; `flushWindow` (ms, default 0) lets broadcasts wait
  /// and go out together; `redis` (an ioredis or node-redis client),
  /// `stream` (the Redis stream key) and `maxLen` (default 10000, `MAXLEN
  /// ~`) share the channel through Redis; `maxInFlight` (default 1000) and
  /// `commandTimeout` (ms, default 5000) bound the broadcasts waiting for
  /// Redis and how long Redis has to answer.
  ///
  /// Throws a `TypeError` when called without `new`, and
  /// `ERR_SSE_INVALID_OPTION` when an option is invalid.
  #[napi(constructor, ts_args_type = "options?: ChannelOptions")]
  pub fn new(env: &Env, this: This, options: Option<Unknown>) -> Result<Self> {
    crate::construct::check_new::<Channel>(env, &this.object, "Channel")?;
    let given = read_channel_options(env, options)?;
    let state = State::get(env)?;
    let options = given.options;
    let epoch = epoch_ms();
    let source = match given.redis {
      Some(_) => ChannelSource::Redis,
      None => ChannelSource::Local {
        epoch,
        history_events: options.history_events as usize,
        history_bytes: options.history_bytes as usize,
      },
    };
    let Some(key) = state.with(|engine| engine.open_channel(source, options.flush_window_ms))?
    else {
      return Err(Error::new(
        Status::GenericFailure,
        "native-sse: too many channels",
      ));
    };
    let attach: Function<AttachChannelArgs, Unknown> = state.glue(env, "attachChannel")?;
    let (redis, stream) = match given.redis {
      Some((redis, stream)) => (redis, env.create_string(&stream)?.to_unknown()),
      None => (().into_unknown(env)?, ().into_unknown(env)?),
    };
    let attached = call_glue(
      env,
      &attach,
      FnArgs::from((
        this.object,
        key.to_bits() as f64,
        options.flush_window_ms as f64,
        epoch as f64,
        redis,
        stream,
        options.max_len as f64,
        options.max_in_flight as f64,
        options.command_timeout_ms as f64,
      )),
    );
    if let Err(err) = attached {
      state.drop_channel(key);
      return Err(err);
    }
    Ok(Channel { key })
  }
}

impl ObjectFinalize for Channel {
  fn finalize(self, env: Env) -> Result<()> {
    // Pure Rust: broadcasts waiting for the flush window still go out when
    // its timer fires; then the core lets go of the channel.
    if let Some(state) = env.get_instance_data::<std::rc::Rc<State>>()? {
      state.drop_channel(self.key);
    }
    Ok(())
  }
}

struct GivenChannelOptions<'env> {
  options: ChannelOptions,
  /// The Redis client and the stream key.
  redis: Option<(Unknown<'env>, String)>,
}

fn read_channel_options<'env>(
  env: &Env,
  value: Option<Unknown<'env>>,
) -> Result<GivenChannelOptions<'env>> {
  let mut given = GivenChannelOptions {
    options: ChannelOptions::default(),
    redis: None,
  };
  let Some(object) = open::options_object(env, value, NEW_CHANNEL)? else {
    return Ok(given);
  };
  for name in rules::CHANNEL_OPTIONS {
    let value = open::read_given(&object.get_named_property(name)?)?;
    rules::set_channel_option(&mut given.options, name, value)
      .map_err(|rule| channel_option_error(env, name, &rule))?;
  }
  let redis: Unknown = object.get_named_property("redis")?;
  let stream: Unknown = object.get_named_property("stream")?;
  match redis.get_type()? {
    ValueType::Undefined | ValueType::Null => {
      if stream.get_type()? != ValueType::Undefined {
        return Err(channel_option_error(
          env,
          "stream",
          "needs options.redis (a stream is read from Redis)",
        ));
      }
    }
    ValueType::Object => {
      // SAFETY: the value's type was checked just before.
      let client = unsafe { redis.cast::<Object>() }?;
      // ioredis sends raw commands with `call`, node-redis with
      // `sendCommand`; both have `duplicate` and `multi`.
      let has = |method: &str| -> Result<bool> {
        let member: Unknown = client.get_named_property(method)?;
        Ok(member.get_type()? == ValueType::Function)
      };
      let missing = if !has("call")? && !has("sendCommand")? {
        Some("redis.call (ioredis) or redis.sendCommand (node-redis)")
      } else if !has("duplicate")? {
        Some("redis.duplicate")
      } else if !has("multi")? {
        Some("redis.multi")
      } else {
        None
      };
      if let Some(method) = missing {
        return Err(channel_option_error(
          env,
          "redis",
          &format!("must be an ioredis or node-redis client: {method} is not a function"),
        ));
      }
      if stream.get_type()? != ValueType::String {
        return Err(channel_option_error(
          env,
          "stream",
          &format!(
            "must be the Redis stream key, a non-empty string (got {})",
            errors::type_name(stream.get_type()?)
          ),
        ));
      }
      // SAFETY: the value's type was checked just before.
      let key = unsafe { stream.cast::<String>() }?;
      if key.is_empty() {
        return Err(channel_option_error(
          env,
          "stream",
          "must be the Redis stream key, a non-empty string (got an empty string)",
        ));
      }
      given.redis = Some((redis, key));
    }
    other => {
      return Err(channel_option_error(
        env,
        "redis",
        &format!(
          "must be an ioredis or node-redis client (got {})",
          errors::type_name(other)
        ),
      ))
    }
  }
  Ok(given)
}

fn channel_option_error(env: &Env, name: &str, rule: &str) -> Error {
  errors::option_error(env, NEW_CHANNEL, name, rule)
}

/// Milliseconds since the Unix epoch: the `ms` part of an in-process
/// channel's ids.
fn epoch_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|elapsed| elapsed.as_millis() as u64)
    .unwrap_or(0)
}
