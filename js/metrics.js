'use strict'
// `metrics()`: the counters of this JavaScript environment (the main
// thread, or one worker), read synchronously from the core as one array of
// numbers and named here. The core counts on paths that run anyway; see
// crates/core/src/metrics.rs for what counts.

const binding = require('../binding.js')

/**
 * What the front writes without the core: the Fetch form's opening
 * heartbeat (js/fetch.js), counted as a heartbeat and its bytes.
 */
const front = { heartbeats: 0, bytes: 0 }

function metrics() {
  const m = binding.engineMetrics()
  return {
    streams: { open: m[0], opened: m[1], closed: { client: m[2], server: m[3], overflow: m[4] } },
    events: m[5],
    comments: m[6],
    heartbeats: m[7] + front.heartbeats,
    bytes: m[8] + front.bytes,
    replays: m[9],
    resets: m[10],
    channels: { open: m[11], opened: m[12], closed: m[13] },
  }
}

/** A channel's counters; zeros once the core has let it go. */
function channelCounters(key) {
  const m = binding.channelMetrics(key) ?? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
  return {
    members: m[0],
    broadcasts: m[1],
    deliveries: m[2],
    bytes: m[3],
    replays: m[4],
    resets: m[5],
    joined: m[6],
    left: { client: m[7], server: m[8], overflow: m[9], removed: m[10] },
  }
}

module.exports = { metrics, channelCounters, front }
