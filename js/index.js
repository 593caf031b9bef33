'use strict'
// The public entry of native-sse: the generated binding (`binding.js`,
// which loads the addon) with the hand-written front installed on its
// classes' prototypes. `SSE` and `Channel` are the napi-rs classes
// themselves; their constructors run in Rust.

const binding = require('./load.js').load()
const stream = require('./stream.js')
const fetchForm = require('./fetch.js')
const channel = require('./channel.js')
const { metrics } = require('./metrics.js')
const drainer = require('./drain.js')

stream.install(binding.SSE)
fetchForm.install(binding.SSE)
channel.install(binding.Channel)
stream.useHot(
  binding.init({
    attachStream: stream.attachStream,
    prepareFetch: fetchForm.prepareFetch,
    attachFetch: fetchForm.attachFetch,
    attachChannel: channel.attachChannel,
  }),
)

exports.SSE = binding.SSE
exports.Channel = binding.Channel
exports.metrics = metrics
/** Ends every open stream for a shutdown or a deploy (docs/operations.md, "Graceful drain"). */
exports.drain = function drain(options) {
  return drainer.drain(-1, options)
}
