'use strict'
// The JavaScript side of a stream: the response and everything done to it
// (write, end, destroy, listeners), the end-of-tick flush, the heartbeat
// timer, and the hot-path methods of `SSE.prototype`. Every decision (the
// bytes, the cap, replays, what is written when) is the core's: this file
// calls the binding with primitive arguments and carries out its answers.
//
// Re-entrancy: user code runs only between binding calls (a `res.write`
// wrapper, an `onClose` callback, a getter), so a call it makes finds the
// core consistent. While a flush writes its plan, `close()` and engine-made
// ends are deferred until the plan is written, so bytes of the plan are
// never cut off by an end that user code caused in the middle of it.

const binding = require('../binding.js')
const { typeError, wrongType, stringify } = require('./errors.js')
const diagnostics = require('./diagnostics.js')

const [ACCEPTED, SCHEDULE, ACTIONS, FLUSH_NOW, , TIMER] = binding.constants()

/** Where a stream's state hangs on its `SSE` object and its response. */
const kState = Symbol('native-sse.stream')
/** Keys are `slot + generation * 2^24`; the table is indexed by slot. */
const SLOTS = 16777216
const REASONS = ['', 'client', 'server', 'overflow']
/** `afterEnd()`: no stream has a heartbeat any more. */
const DISARMED = 64

/** Stream states by slot. */
const table = []
const resolved = Promise.resolve()
/**
 * Above 0 while the front writes to a response (user code such as a
 * `res.write` wrapper may run inside): ends and immediate writes asked for
 * meanwhile wait until the writes in progress are done, so that no chunk
 * being written is cut off or overtaken.
 */
let writing = 0
/** Ends asked for while writing: [state, chunk, args]. */
let deferred = []
/** Counts flushes: a response is checked for being gone once per tick. */
let tick = 0
let timer = null
/** The stream whose send scheduled the next flush (its write may come alone). */
let scheduledBy = null
/** Handlers for work the core hands out that is not about streams. */
const handlers = { redisReplay: null, drained: null }
/** The per-event binding functions (`send`, `comment`, `flush`), from `init()`. */
let hot = null
function useHot(functions) {
  hot = functions
}

function noop() {}

class StreamState {
  constructor(key, res, sse, uuid, lastEventId) {
    this.key = key
    this.res = res
    this.sse = sse
    this.uuid = uuid
    this.lastEventId = lastEventId
    this.end = null
    this.closed = false
    this.reason = 0
    this.tick = -1
    this.callbacks = null
    this.draining = false
    /** The Fetch form's `Response` (js/fetch.js); null in the Node form. */
    this.response = null
  }
}

/**
 * Called by the Rust constructor of `SSE` once the headers are written
 * (`form` is given by the Fetch form's attachFetch).
 */
function attachStream(sse, res, key, flags, uuid, lastEventId, form = 'node') {
  const st = new StreamState(key, res, sse, uuid, lastEventId)
  sse[kState] = st
  table[key % SLOTS] = st
  // The core's answer is carried out before any code that is not ours runs
  // (a wrapped `res.on`, a `res` that refuses properties): a flush it asked
  // for is never lost. Its actions (an end it decided at once: a stream
  // opened while draining, a cap below the opening bytes) wait in the core
  // until the response is ours, below.
  apply(flags & ~ACTIONS, st)
  try {
    res[kState] = st
    res.on('error', noop)
    res.on('close', onResponseClose)
    // Pending events are written before the response ends, however it is
    // ended (S42Core writes each event at once, so code that ends the
    // response itself expects them delivered).
    st.end = res.end
    res.end = endResponse
  } catch (err) {
    // The constructor fails with this error and lets the core forget the
    // stream; nothing of it stays here.
    announceOpen(st, form)
    finish(st, 2, false)
    throw err
  }
  announceOpen(st, form)
  if (flags & ACTIONS) runActions()
  if (!st.closed) {
    const why = goneReason(res)
    if (why !== 0) gone(st, why)
  }
}

function lookup(key) {
  const st = table[key % SLOTS]
  return st !== undefined && st.key === key ? st : undefined
}

/** 0 while the response can carry events; 2 ended; 1 destroyed (or its socket). */
function goneReason(res) {
  if (res.writableEnded === true) return 2
  if (res.destroyed === true) return 1
  const socket = res.socket
  if (typeof socket === 'object' && socket !== null && socket.destroyed === true) return 1
  const stream = res.stream
  if (typeof stream === 'object' && stream !== null && stream.destroyed === true) return 1
  return 0
}

/** Checks once per tick whether the response went away; true when it did. */
function checkGone(st) {
  st.tick = tick
  const why = goneReason(st.res)
  if (why === 0) return false
  gone(st, why)
  return true
}

/** The stream ended by itself (the client left, or other code ended it). */
function gone(st, why) {
  binding.streamGone(st.key, why)
  finish(st, why, false)
}

function onResponseClose() {
  const st = this[kState]
  if (st === undefined || st.closed) return
  gone(st, this.writableEnded === true ? 2 : 1)
}

function onDrain() {
  const st = this[kState]
  if (st === undefined) return
  st.draining = false
  if (!st.closed) apply(binding.streamDrained(st.key), st)
}

/**
 * Marks the stream ended for `why` (1 client, 2 server, 3 overflow) and
 * schedules its `onClose` callbacks for the next tick. Keeps the response
 * when an end is still to be written (`keep`). `held`: the bytes an
 * overflowing stream held (for its diagnostics message).
 */
function finish(st, why, keep, held) {
  if (st.closed) return
  st.closed = true
  st.reason = why
  if (table[st.key % SLOTS] === st) table[st.key % SLOTS] = undefined
  if (!keep) st.res = null
  st.sse = null
  // Work the end started (a replay that took the freed slot); and when the
  // last stream with a heartbeat is gone, the timer is not needed.
  const after = binding.afterEnd()
  if (after & DISARMED && timer !== null) {
    clearTimeout(timer)
    timer = null
  }
  if (after & SCHEDULE) resolved.then(flush)
  const callbacks = st.callbacks
  st.callbacks = null
  if (callbacks !== null) {
    for (const callback of callbacks) process.nextTick(callback, REASONS[why])
  }
  announceClose(st, why, held)
}

// ----- diagnostics_channel (js/diagnostics.js) -----

function announceOpen(st, form) {
  if (diagnostics.open.hasSubscribers) {
    diagnostics.publish(diagnostics.open, { uuid: st.uuid, form, lastEventId: st.lastEventId })
  }
}

/** After `finish`: the overflow (with what the stream held), then the close. */
function announceClose(st, why, held) {
  if (why === 3 && diagnostics.overflow.hasSubscribers) {
    diagnostics.publish(diagnostics.overflow, { uuid: st.uuid, bufferedBytes: held ?? null })
  }
  if (diagnostics.close.hasSubscribers) {
    diagnostics.publish(diagnostics.close, { uuid: st.uuid, reason: REASONS[why] })
  }
}

/** Carries out the flags a binding call answered with. */
function apply(flags, st) {
  if (flags & SCHEDULE) {
    scheduledBy = st ?? null
    resolved.then(flush)
  }
  if (flags & ACTIONS) runActions()
  if (flags & FLUSH_NOW && st !== undefined && writing === 0 && !st.closed) writeNow(st)
  if (flags & TIMER) armTimer()
}

/** Reports `err` (from user code) as an uncaught exception, outside our call. */
function uncaught(err) {
  queueMicrotask(() => {
    throw err
  })
}

/** Writes `chunk` to the stream's response; true when it must wait for 'drain'. */
function write(st, chunk) {
  const res = st.res
  if (res === null) return false
  writing++
  try {
    return res.write(chunk) === false
  } catch (err) {
    // A throwing `write` (a wrapper's bug) is an ordinary uncaught
    // exception; the chunk is lost, so the stream ends (the client sees
    // the end and can resume) rather than go on with a hole in it.
    uncaught(err)
    if (!st.closed) closeStream(st, [], false)
    return false
  } finally {
    if (--writing === 0) endDeferred()
  }
}

/** The response holds more than it can take at once: tell the core, wait for 'drain'. */
function slow(st) {
  if (st.closed || st.res === null) return
  const len = st.res.writableLength
  apply(binding.streamBackpressure(st.key, typeof len === 'number' ? len : 0), st)
  if (!st.closed && !st.draining && st.res !== null) {
    st.draining = true
    st.res.once('drain', onDrain)
  }
}

/** The end of the tick: the core's plan, one write per stream. */
function flush() {
  tick++
  const expected = scheduledBy
  scheduledBy = null
  const plan = hot.flush(expected === null ? -1 : expected.key)
  if (!Array.isArray(plan)) {
    // One chunk, for the stream that scheduled the flush.
    if (write(expected, plan)) slow(expected)
    return
  }
  // The flags first: a next flush the core asked for is scheduled before
  // any user code can run (and throw).
  const flags = plan.length % 2 === 1 ? plan[plan.length - 1] : 0
  if (flags & SCHEDULE) resolved.then(flush)
  let behind = null
  writing++
  try {
    const pairs = plan.length - (plan.length % 2)
    for (let i = 0; i < pairs; i += 2) {
      const chunk = plan[i]
      const to = plan[i + 1]
      if (typeof to === 'number') {
        const st = lookup(to) ?? deferredState(to)
        if (st !== undefined && write(st, chunk)) (behind ??= []).push(st)
      } else {
        for (let k = 0; k < to.length; k++) {
          const st = lookup(to[k]) ?? deferredState(to[k])
          if (st !== undefined && write(st, chunk)) (behind ??= []).push(st)
        }
      }
    }
  } finally {
    if (--writing === 0) endDeferred()
    if (flags & ~SCHEDULE) apply(flags & ~SCHEDULE, undefined)
  }
  if (behind !== null) {
    for (const st of behind) {
      try {
        slow(st)
      } catch (err) {
        uncaught(err)
      }
    }
  }
}

/** A stream whose end was deferred during this flush still gets its bytes. */
function deferredState(key) {
  for (let i = 0; i < deferred.length; i += 3) {
    if (deferred[i].key === key) return deferred[i]
  }
  return undefined
}

function endDeferred() {
  // Bounded: each round ends what the one before asked for.
  for (let round = 0; round < 1000 && deferred.length > 0; round++) {
    const ends = deferred
    deferred = []
    for (let i = 0; i < ends.length; i += 3) endNow(ends[i], ends[i + 1], ends[i + 2])
  }
}

/**
 * Writes the last bytes, then ends the response with the caller's
 * arguments. A throwing `write` or `end` (user code) is reported as
 * uncaught and does not stop the other ends.
 */
function endNow(st, chunk, args) {
  const res = st.res
  st.res = null
  if (res === null) return
  writing++
  try {
    if (chunk !== undefined && chunk !== null) {
      try {
        res.write(chunk)
      } catch (err) {
        uncaught(err)
      }
    }
    try {
      st.end.apply(res, args)
    } catch (err) {
      uncaught(err)
    }
  } finally {
    writing--
  }
}

function writeNow(st) {
  const chunk = binding.streamWriteNow(st.key)
  if (chunk !== undefined && write(st, chunk)) slow(st)
}

/**
 * `close()`, or the response ended by other code: last bytes (unless
 * `writeRest` is false), then the end; after the writes in progress.
 */
function closeStream(st, args, writeRest = true) {
  const rest = binding.streamClose(st.key)
  const chunk = writeRest ? rest : undefined
  finish(st, 2, true)
  if (chunk === null) {
    // The core had closed it already; end the response anyway.
    const res = st.res
    st.res = null
    if (res !== null) st.end.apply(res, args)
    return
  }
  if (writing > 0) deferred.push(st, chunk, args)
  else endNow(st, chunk, args)
}

/** `res.end` while the stream is open: pending events go first. */
function endResponse(...args) {
  const st = this[kState]
  if (st !== undefined && st.res === this) {
    // Open: end after the pending events. Closed with the response still
    // held: an end is already on its way (after the writes in progress).
    if (!st.closed) closeStream(st, args)
    return this
  }
  const end = st !== undefined && st.end !== null ? st.end : Object.getPrototypeOf(this).end
  return end.apply(this, args)
}

function runActions() {
  // Each round may make more work (a reported length that overflows);
  // bounded so that a bug can never spin.
  for (let round = 0; round < 1000; round++) {
    const actions = binding.takeActions()
    if (actions.length === 0) return
    for (let i = 0; i < actions.length; ) {
      switch (actions[i]) {
        case 1: {
          const st = lookup(actions[i + 1])
          if (st !== undefined && !st.closed) {
            const res = st.res
            finish(st, 3, false, actions[i + 2])
            if (res !== null) res.destroy()
          }
          i += 3
          break
        }
        case 2: {
          const st = lookup(actions[i + 1])
          if (st !== undefined && !st.closed) {
            finish(st, 2, true)
            if (writing > 0) deferred.push(st, actions[i + 2], [])
            else endNow(st, actions[i + 2], [])
          }
          i += 3
          break
        }
        case 3: {
          const st = lookup(actions[i + 1])
          if (st !== undefined && !st.closed && st.res !== null) {
            const len = st.res.writableLength
            apply(binding.streamLength(st.key, typeof len === 'number' ? len : 0), st)
          }
          i += 2
          break
        }
        case 5: {
          // Ended by a drain: as 2, and the drain watches the response
          // until it has finished.
          const st = lookup(actions[i + 1])
          if (st !== undefined && !st.closed) {
            if (handlers.drained !== null && st.res !== null) handlers.drained(st.res)
            finish(st, 2, true)
            if (writing > 0) deferred.push(st, actions[i + 2], [])
            else endNow(st, actions[i + 2], [])
          }
          i += 3
          break
        }
        case 4:
          if (handlers.redisReplay !== null) handlers.redisReplay(actions.slice(i + 1, i + 8))
          i += 8
          break
        default:
          return
      }
    }
  }
}

function armTimer() {
  const delay = binding.timerDelay()
  if (delay < 0) return
  if (timer !== null) clearTimeout(timer)
  timer = setTimeout(sseHeartbeat, delay)
  unref(timer)
}

/** The heartbeat never keeps a process alive (Deno's timers are numbers). */
function unref(handle) {
  if (typeof handle === 'object' && handle !== null && typeof handle.unref === 'function') handle.unref()
  else if (typeof Deno === 'object' && Deno !== null && typeof Deno.unrefTimer === 'function') Deno.unrefTimer(handle)
}

/** The one heartbeat timer of this environment fired (named for tests and profiles). */
function sseHeartbeat() {
  timer = null
  apply(binding.heartbeat(), undefined)
}

// ----- SSE.prototype -----

function stateOf(self, call) {
  const st = self === null || self === undefined ? undefined : self[kState]
  if (st === undefined) {
    throw typeError('ERR_SSE_INVALID_ARGUMENT', `${call}: this is not an SSE instance (new SSE(req, res) or new SSE(request))`)
  }
  return st
}

/**
 * Sends one event: `id: <n>`, `event: <eventName>`,
 * `data: <JSON.stringify(eventPayload)>` (or `data` as it is) and a blank
 * line. Returns false on a closed stream, before looking at the event.
 */
function send(event) {
  // The rules of event.js's readEvent, inline: the hot path allocates no
  // result object (broadcast() uses readEvent).
  const st = stateOf(this, 'send(event)')
  if (st.closed) return false
  if (st.tick !== tick && checkGone(st)) return false
  if (typeof event !== 'object' || event === null) {
    throw wrongType('ERR_SSE_INVALID_EVENT', 'send(event): event', 'an object { eventName, eventPayload }', event)
  }
  const name = event.eventName
  if (typeof name !== 'string') {
    throw wrongType('ERR_SSE_INVALID_EVENT_NAME', 'send(event): event.eventName', 'a string', name)
  }
  const id = event.id
  if (id !== undefined && typeof id !== 'string') {
    throw wrongType('ERR_SSE_INVALID_EVENT_ID', 'send(event): event.id', 'a string', id)
  }
  const payload = event.eventPayload
  const data = event.data
  let body
  if (data === undefined) {
    body = stringify('send(event)', payload)
    // `toJSON` is user code and may have closed the stream.
    if (st.closed) return false
  } else if (payload !== undefined) {
    throw typeError(
      'ERR_SSE_INVALID_DATA',
      'send(event): give either event.eventPayload (sent as JSON) or event.data (sent as it is), not both',
    )
  } else {
    body = data
  }
  const flags = id === undefined ? hot.send(st.key, name, body) : hot.send(st.key, name, body, id)
  if (flags === (ACCEPTED | SCHEDULE)) {
    scheduledBy = st
    resolved.then(flush)
    return true
  }
  if (flags !== ACCEPTED) apply(flags, st)
  return (flags & ACCEPTED) !== 0 && !st.closed
}

/** Sends a comment (`: <text>` per line); `:` alone without text. */
function comment(text) {
  const st = stateOf(this, 'comment(text)')
  if (st.closed) return false
  if (st.tick !== tick && checkGone(st)) return false
  if (text !== undefined && typeof text !== 'string') {
    throw wrongType('ERR_SSE_INVALID_COMMENT', 'comment(text): text', 'a string', text)
  }
  const flags = text === undefined ? hot.comment(st.key) : hot.comment(st.key, text)
  apply(flags, st)
  return (flags & ACCEPTED) !== 0 && !st.closed
}

/** Writes what is pending, then ends the response. Again: nothing. */
function close() {
  const st = stateOf(this, 'close()')
  if (st.closed) return
  if (checkGone(st)) return
  closeStream(st, [])
}

function onClose(callback) {
  const st = stateOf(this, 'onClose(callback)')
  if (typeof callback !== 'function') {
    throw wrongType('ERR_SSE_INVALID_ARGUMENT', 'onClose(callback): callback', 'a function', callback)
  }
  // A client that just left is noticed here rather than a tick later.
  if (!st.closed) checkGone(st)
  if (st.closed) {
    process.nextTick(callback, REASONS[st.reason])
    return
  }
  ;(st.callbacks ??= []).push(callback)
}

function closed() {
  const st = stateOf(this, 'closed')
  if (!st.closed) checkGone(st)
  return st.closed
}

function bufferedBytes() {
  const st = stateOf(this, 'bufferedBytes')
  if (!st.closed) checkGone(st)
  if (st.closed || st.res === null) return 0
  const held = st.res.writableLength
  return binding.streamQueuedBytes(st.key) + (typeof held === 'number' ? held : 0)
}

/** The connection's UUID, as the welcome event carried it. */
function getUUID() {
  return stateOf(this, 'getUUID()').uuid
}

/** Where the client left off (the accepted `Last-Event-ID`), or null. */
function lastEventId() {
  return stateOf(this, 'lastEventId').lastEventId
}

function install(SSE) {
  const methods = { getUUID, send, comment, close, onClose }
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(SSE.prototype, name, { value, writable: true, configurable: true, enumerable: false })
  }
  Object.defineProperty(SSE.prototype, 'closed', { get: closed, configurable: true, enumerable: false })
  Object.defineProperty(SSE.prototype, 'bufferedBytes', { get: bufferedBytes, configurable: true, enumerable: false })
  Object.defineProperty(SSE.prototype, 'lastEventId', { get: lastEventId, configurable: true, enumerable: false })
}

module.exports = { attachStream, install, useHot, apply, lookup, checkGone, stateOf, handlers, kState, unref }
