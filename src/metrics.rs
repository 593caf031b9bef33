//! The counters as numbers for the front (`js/metrics.js` names them):
//! one call per snapshot, never on the send path.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use crate::state::{key, State};

/// The engine's counters, in the order of `Snapshot::to_array`. Counts stay
/// exact as numbers up to 2^53.
#[napi(js_name = "engineMetrics", skip_typescript)]
pub fn engine_metrics(env: &Env) -> Result<Vec<f64>> {
  let snapshot = State::get(env)?.with(|engine| engine.metrics())?;
  Ok(snapshot.to_array().iter().map(|n| *n as f64).collect())
}

/// A channel's counters (`ChannelSnapshot::to_array`); `null` once it is
/// released.
#[napi(js_name = "channelMetrics", skip_typescript)]
pub fn channel_metrics(env: &Env, channel: f64) -> Result<Option<Vec<f64>>> {
  let snapshot = State::get(env)?.with(|engine| engine.channel_metrics(key(channel)))?;
  Ok(snapshot.map(|snapshot| snapshot.to_array().iter().map(|n| *n as f64).collect()))
}
