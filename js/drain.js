'use strict'
// Graceful drain, `drain(options)` and `channel.drain(options)`: the
// JavaScript side. The core decides (which streams, each one's `retry:`
// value, the draining state for streams that open during the window) and
// ends the streams; this file reads the options, carries out the ends the
// core hands out (js/stream.js, action 5), watches each ended response
// until it has finished, destroys those that have not when the timeout
// passes, and settles the promise.

const binding = require('../binding.js')
const streams = require('./stream.js')
const { wrongType } = require('./errors.js')

const CALL = 'drain(options)'
const NAMES = ['windowMs', 'minMs', 'timeoutMs']

/** The drain whose call is carrying out the core's ends right now. */
let collecting = null
/** The newest drain: streams ended as they open during it join it while it is unsettled. */
let newest = null

/** One drain: the responses it waits for and its promise. */
class Run {
  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs
    this.streams = 0
    this.destroyed = 0
    this.waiting = new Set()
    /** Every end of the call is known (stragglers may still join). */
    this.sealed = false
    this.settled = false
    this.timer = null
    this.resolve = null
    this.promise = new Promise((resolve) => {
      this.resolve = resolve
    })
  }

  seal() {
    this.sealed = true
    if (this.waiting.size === 0) {
      this.settle()
      return
    }
    this.timer = setTimeout(expire, this.timeoutMs, this)
    streams.unref(this.timer)
  }

  settle() {
    if (this.settled) return
    this.settled = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (newest === this) newest = null
    this.resolve({ streams: this.streams, destroyed: this.destroyed })
  }
}

/** The timeout passed: what has not finished is destroyed. */
function expire(run) {
  run.timer = null
  const left = [...run.waiting]
  run.waiting.clear()
  for (const res of left) {
    run.destroyed++
    try {
      res.destroy()
    } catch (err) {
      queueMicrotask(() => {
        throw err
      })
    }
  }
  run.settle()
}

/** Whether a response has nothing left to do (finished, or its connection is gone). */
function finished(res) {
  if (res.writableFinished === true || res.destroyed === true) return true
  const socket = res.socket
  if (typeof socket === 'object' && socket !== null && socket.destroyed === true) return true
  const stream = res.stream
  return typeof stream === 'object' && stream !== null && stream.destroyed === true
}

/**
 * Called (js/stream.js) for each stream the core ended for a drain, before
 * its last bytes and its end are written: the drain waits for `res`.
 */
function watch(res) {
  try {
    follow(res)
  } catch (err) {
    // A response whose getters throw: the drain does not wait for it.
    queueMicrotask(() => {
      throw err
    })
  }
}

function follow(res) {
  let run = collecting
  if (run === null) {
    // Opened (or joined the channel) while draining: the newest drain
    // waits for it too, or, once that has settled, a drain of its own.
    run = newest
    if (run === null || run.settled) {
      run = new Run(lastTimeout)
      run.sealed = true
      run.timer = setTimeout(expire, run.timeoutMs, run)
      streams.unref(run.timer)
    }
  }
  run.streams++
  closeConnectionAfter(res)
  if (typeof res.once !== 'function' || finished(res)) return
  run.waiting.add(res)
  const done = () => {
    if (run.waiting.delete(res) && run.sealed && run.waiting.size === 0) run.settle()
  }
  res.once('finish', done)
  res.once('close', done)
}

/**
 * The connection goes with the response, so that the client's reconnect
 * opens a new connection (which a load balancer can send to another
 * server) instead of coming back on this one: HTTP/1.x closes it, HTTP/2
 * tells the session to go away (GOAWAY: its other streams finish, new
 * requests take a new connection). Right after the response's end is
 * written (a microtask after this call, when the end has been carried
 * out), so that the end of the body and the end of the connection arrive
 * together: a client that saw the body end first could otherwise send its
 * reconnect on the connection before it sees it close. When the end did
 * not happen at once (a wrapper such as a compression middleware ends the
 * response later), once the response has finished. In the Fetch form the
 * runtime owns the connection.
 */
function closeConnectionAfter(res) {
  if (typeof res.once !== 'function') return
  const stream = res.stream
  let close
  if (typeof stream === 'object' && stream !== null) {
    const session = stream.session
    if (typeof session !== 'object' || session === null || typeof session.close !== 'function') return
    close = () => {
      if (!session.closed && !session.destroyed) session.close()
    }
  } else {
    const socket = res.socket
    if (typeof socket !== 'object' || socket === null || typeof socket.end !== 'function') return
    close = () => {
      if (socket.destroyed) return
      if (typeof socket.destroySoon === 'function') socket.destroySoon()
      else socket.end()
    }
  }
  queueMicrotask(() => {
    if (res.writableEnded === true) close()
    else res.once('finish', close)
  })
}

/** The timeout of the newest drain, for streams ended after it settled. */
let lastTimeout = 10000

function readOptions(options) {
  const values = [undefined, undefined, undefined]
  if (options === undefined || options === null) return values
  if (typeof options !== 'object') {
    throw wrongType('ERR_SSE_INVALID_OPTION', `${CALL}: options`, 'an object', options)
  }
  for (let i = 0; i < NAMES.length; i++) {
    const value = options[NAMES[i]]
    if (value !== undefined && typeof value !== 'number') {
      throw wrongType('ERR_SSE_INVALID_OPTION', `${CALL}: options.${NAMES[i]}`, 'a number', value)
    }
    values[i] = value
  }
  return values
}

/**
 * Drains the streams of `channel` (a channel key; -1 for every stream).
 * Throws for bad options before anything is ended.
 */
function drain(channel, options) {
  const [windowMs, minMs, timeoutMs] = readOptions(options)
  const [, flags, timeout] = binding.drain(channel, windowMs, minMs, timeoutMs)
  const run = new Run(timeout)
  lastTimeout = timeout
  newest = run
  const outer = collecting
  collecting = run
  try {
    streams.apply(flags, undefined)
  } finally {
    collecting = outer
    run.seal()
  }
  return run.promise
}

streams.handlers.drained = watch

module.exports = { drain }
