'use strict'
// The JavaScript side of a channel: `Channel.prototype`'s methods, its
// flush-window timer and, for a Redis channel, its transport. Events are
// copied into the core (`channelStage`) before any option getter or `to`
// predicate runs, so user code cannot change what is broadcast.

const binding = require('../binding.js')
const { typeError, stateError, wrongType } = require('./errors.js')
const { readEvent } = require('./event.js')
const streams = require('./stream.js')
const { createTransport, status: transportStatus } = require('./redis.js')
const { channelCounters } = require('./metrics.js')
const { drain: drainStreams } = require('./drain.js')

const ARM_WINDOW = binding.constants()[4]
const kChannel = Symbol('native-sse.channel')
const BROADCAST = 'broadcast(event, options)'
/** Redis transports by channel key (for replay pages the core asks for). */
const transports = new Map()

class ChannelState {
  constructor(key, windowMs, epoch) {
    this.key = key
    this.windowMs = windowMs
    this.prefix = `${epoch}-`
    this.transport = null
    this.closed = false
    /** `onError` callbacks. */
    this.errorCallbacks = []
  }
}

// `node:diagnostics_channel` where the runtime has it (Node, Bun, Deno):
// Redis state changes are published on STATE_CHANNEL.
const STATE_CHANNEL = 'native-sse:redis:state'
let stateChannel = null
try {
  stateChannel = require('node:diagnostics_channel').channel(STATE_CHANNEL)
} catch {
  stateChannel = null
}

/** Calls the `onError` callbacks; one that throws is reported as a warning. */
function reportError(cs, err) {
  for (const callback of cs.errorCallbacks) {
    try {
      callback(err)
    } catch (thrown) {
      try {
        process.emitWarning(
          `native-sse: a Channel onError callback threw: ${thrown?.message ?? thrown}`,
          { code: 'ERR_SSE_CALLBACK_THREW', detail: String(thrown?.stack ?? thrown) },
        )
      } catch {
        // No way left to report it; the channel goes on.
      }
    }
  }
}

/** Called by the Rust constructor of `Channel`. */
function attachChannel(channel, key, windowMs, epoch, redis, stream, maxLen, maxInFlight, timeoutMs) {
  const cs = new ChannelState(key, windowMs, epoch)
  channel[kChannel] = cs
  if (redis !== undefined) {
    const owner = new WeakRef(channel)
    const hooks = {
      error: (err) => reportError(cs, err),
      state: (state, previous, error) => {
        if (stateChannel === null || !stateChannel.hasSubscribers) return
        const target = owner.deref()
        if (target === undefined) return
        stateChannel.publish({ channel: target, stream, state, previous, error })
      },
    }
    cs.transport = createTransport(redis, stream, maxLen, key, owner, { maxInFlight, timeoutMs, windowMs }, hooks)
    transports.set(key, cs.transport)
  }
}

streams.handlers.redisReplay = ([channel, stream, from, until, first, count, reader]) => {
  const transport = transports.get(channel)
  if (transport === undefined) {
    streams.apply(binding.redisReplayed(channel, stream, first, false, '', false, []), undefined)
    return
  }
  transport.page(stream, from, until, first, count, reader)
}

function stateOf(self, call) {
  const cs = self === null || self === undefined ? undefined : self[kChannel]
  if (cs === undefined) {
    throw typeError('ERR_SSE_INVALID_ARGUMENT', `${call}: this is not a Channel (new Channel())`)
  }
  return cs
}

function checkOpen(cs, call) {
  if (cs.closed) throw stateError('ERR_SSE_CHANNEL_CLOSED', `${call}: the channel is closed`)
}

function memberState(sse, call) {
  const st = sse !== null && typeof sse === 'object' ? sse[streams.kState] : undefined
  if (st === undefined) {
    throw typeError('ERR_SSE_INVALID_ARGUMENT', `${call}: sse must be an SSE instance (new SSE(req, res))`)
  }
  return st
}

/** Adds `sse`; false when its stream has ended. */
function add(sse) {
  const cs = stateOf(this, 'add(sse)')
  checkOpen(cs, 'add(sse)')
  const st = memberState(sse, 'add(sse)')
  if (st.closed || streams.checkGone(st)) return false
  const flags = binding.channelAdd(cs.key, st.key)
  if (flags < 0) return false
  streams.apply(flags, st)
  return !st.closed
}

function remove(sse) {
  const cs = stateOf(this, 'remove(sse)')
  const st = memberState(sse, 'remove(sse)')
  const removed = binding.channelRemove(cs.key, st.key)
  // A Redis replay that ended lets what waited behind it go out.
  streams.apply(binding.afterEnd() & 63, st)
  return removed
}

/** The broadcast's id from the binding's `seq * 64 + flags`. */
function broadcasted(cs, result) {
  const flags = result % 64
  const seq = (result - flags) / 64
  streams.apply(flags, undefined)
  if (flags & ARM_WINDOW) {
    streams.unref(setTimeout(fireWindow, cs.windowMs, cs.key))
  }
  return cs.prefix + seq
}

function fireWindow(key) {
  streams.apply(binding.channelWindowFire(key), undefined)
}

/** `options.to` as a newline-separated UUID list (in-process), or as the members a predicate chose. */
function readTargets(cs, to) {
  if (to === undefined) return { list: undefined, chosen: undefined }
  if (typeof to === 'function') {
    if (cs.transport !== null) {
      throw typeError(
        'ERR_SSE_INVALID_OPTION',
        `${BROADCAST}: options.to cannot be a function on a Redis channel (it would have to run on every server): give an array of UUIDs`,
      )
    }
    const chosen = []
    for (const key of binding.channelMembers(cs.key)) {
      const st = streams.lookup(key)
      if (st === undefined || st.closed || st.sse === null) continue
      if (to(st.sse) === true) chosen.push(key)
    }
    return { list: undefined, chosen }
  }
  if (Array.isArray(to)) {
    const uuids = []
    for (let i = 0; i < to.length; i++) {
      const uuid = to[i]
      if (typeof uuid !== 'string') {
        throw wrongType('ERR_SSE_INVALID_OPTION', `${BROADCAST}: options.to[${i}]`, 'a UUID string', uuid)
      }
      uuids.push(uuid)
    }
    return { list: uuids, chosen: undefined }
  }
  throw wrongType(
    'ERR_SSE_INVALID_OPTION',
    `${BROADCAST}: options.to`,
    'an array of UUIDs or a function (sse) => boolean',
    to,
  )
}

/**
 * Sends `event` to every member (or those `options.to` names) with the
 * next channel id; returns the id (a promise of it on a Redis channel).
 */
function broadcast(event, options) {
  const cs = stateOf(this, BROADCAST)
  checkOpen(cs, BROADCAST)
  const { name, id, body } = readEvent(BROADCAST, event)
  if (id !== undefined) {
    throw typeError('ERR_SSE_INVALID_EVENT_ID', `${BROADCAST}: event.id cannot be given: the channel numbers its events`)
  }
  // `toJSON` is user code and may have closed the channel.
  checkOpen(cs, BROADCAST)
  if ((options === undefined || options === null) && cs.transport === null) {
    return broadcasted(cs, binding.channelBroadcast(cs.key, name, body, true, undefined))
  }
  // Copied and checked now: what follows may run user code.
  let staged = binding.channelStage(name, body)
  try {
    let replay = true
    let targets = { list: undefined, chosen: undefined }
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') {
        throw wrongType('ERR_SSE_INVALID_OPTION', `${BROADCAST}: options`, 'an object', options)
      }
      const given = options.replay
      if (given !== undefined && typeof given !== 'boolean') {
        throw wrongType('ERR_SSE_INVALID_OPTION', `${BROADCAST}: options.replay`, 'a boolean', given)
      }
      replay = given !== false
      targets = readTargets(cs, options.to)
    }
    checkOpen(cs, BROADCAST)
    const key = staged
    staged = undefined
    if (cs.transport !== null) {
      const [text, data] = binding.stagedText(key)
      return cs.transport.publish(text, data, targets.list, replay)
    }
    const list = targets.list === undefined ? undefined : targets.list.filter((u) => !u.includes('\n')).join('\n')
    return broadcasted(cs, binding.channelBroadcastStaged(cs.key, key, replay, list, targets.chosen))
  } finally {
    if (staged !== undefined) binding.channelUnstage(staged)
  }
}

function size() {
  return binding.channelSize(stateOf(this, 'size').key)
}

/**
 * Calls `callback(err)` for every error of the channel's Redis transport
 * (an outage, a timeout, a stream that was made again or trimmed past the
 * reader); `err.code` says which. Nothing is reported on an in-process
 * channel.
 */
function onError(callback) {
  const cs = stateOf(this, 'onError(callback)')
  if (typeof callback !== 'function') {
    throw wrongType('ERR_SSE_INVALID_ARGUMENT', 'onError(callback): callback', 'a function', callback)
  }
  cs.errorCallbacks.push(callback)
}

/** The Redis transport's state, a fresh plain object (null in-process). */
function redisStatus() {
  const cs = stateOf(this, 'redisStatus')
  return cs.transport === null ? null : transportStatus(cs.transport)
}

function lastEventId() {
  return binding.channelHead(stateOf(this, 'lastEventId').key)
}

/** Writes waiting broadcasts, lets every member go (streams stay open), stops Redis. */
function close() {
  const cs = stateOf(this, 'close()')
  if (cs.closed) return
  cs.closed = true
  streams.apply(binding.channelClose(cs.key), undefined)
  if (cs.transport !== null) {
    cs.transport.close()
    transports.delete(cs.key)
  }
}

/**
 * The channel's counters (js/metrics.js), with its Redis reader's state
 * (as `redisStatus`, null for an in-process channel).
 */
function metrics() {
  const cs = stateOf(this, 'metrics()')
  const counters = channelCounters(cs.key)
  counters.redis = cs.transport === null ? null : transportStatus(cs.transport)
  return counters
}

/** Ends the members' streams for a shutdown or a deploy (js/drain.js). */
function drain(options) {
  const cs = stateOf(this, 'drain(options)')
  checkOpen(cs, 'drain(options)')
  return drainStreams(cs.key, options)
}

function install(Channel) {
  const methods = { add, remove, broadcast, close, metrics, drain, onError }
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(Channel.prototype, name, { value, writable: true, configurable: true, enumerable: false })
  }
  Object.defineProperty(Channel.prototype, 'size', { get: size, configurable: true, enumerable: false })
  Object.defineProperty(Channel.prototype, 'lastEventId', { get: lastEventId, configurable: true, enumerable: false })
  Object.defineProperty(Channel.prototype, 'redisStatus', { get: redisStatus, configurable: true, enumerable: false })
}

module.exports = { attachChannel, install, transports, STATE_CHANNEL }
