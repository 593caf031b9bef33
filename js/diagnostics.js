'use strict'
// node:diagnostics_channel messages about streams, the convention of
// undici and node:http: one named channel per kind of message, published
// only while someone subscribes (`hasSubscribers`), so that with no
// subscriber a stream pays one property read per open and close.
//
// Every name this package publishes on (docs/operations.md):
//   native-sse:stream:open      { uuid, form: 'node' | 'fetch', lastEventId }
//   native-sse:stream:close     { uuid, reason: 'client' | 'server' | 'overflow' }
//   native-sse:stream:overflow  { uuid, bufferedBytes }
//   native-sse:redis:state      a Redis channel's reader state (js/redis.js)
//
// Messages are published synchronously, after the stream's state is
// settled, so a subscriber finds it consistent (a subscriber runs like a
// `res.write` wrapper would). A subscriber that throws does not stop the
// others or the stream: diagnostics_channel catches the error and reports
// it as an uncaught exception on the next tick (Node, Bun and Deno alike),
// as any throwing event listener would be.

const NAMES = Object.freeze({
  streamOpen: 'native-sse:stream:open',
  streamClose: 'native-sse:stream:close',
  streamOverflow: 'native-sse:stream:overflow',
  redisState: 'native-sse:redis:state',
})

/** A channel that never has subscribers, where the module is missing. */
const silent = { hasSubscribers: false, publish() {} }

function channels() {
  let dc
  try {
    dc = require('node:diagnostics_channel')
  } catch {
    return { open: silent, close: silent, overflow: silent }
  }
  return {
    open: dc.channel(NAMES.streamOpen),
    close: dc.channel(NAMES.streamClose),
    overflow: dc.channel(NAMES.streamOverflow),
  }
}

const { open, close, overflow } = channels()

/** Publishes, never letting a subscriber's error into our call. */
function publish(channel, message) {
  try {
    channel.publish(message)
  } catch (err) {
    // diagnostics_channel reports a subscriber's error itself; a runtime
    // whose publish throws instead gets the same treatment.
    queueMicrotask(() => {
      throw err
    })
  }
}

module.exports = { NAMES, open, close, overflow, publish }
