'use strict'
// The Fetch form, `new SSE(request)` + `getResponse()`: the body is a
// ReadableStream of Uint8Array chunks that the front writes to exactly as
// it writes to a ServerResponse. `BodySink` has the few members of a
// response that stream.js uses (write, end, destroy, writableLength,
// writableEnded, destroyed, on/once for 'close', 'drain', 'error'), so one
// flush serves Node and Fetch members of a channel alike, and every rule of
// the engine (the cap, replays, heartbeats, deferred ends) holds for both.
//
// The body is a default ReadableStream, not a `type: 'bytes'` one: a byte
// stream transfers (detaches) what is enqueued, and one chunk of a
// broadcast goes to many bodies. Chunks are never changed once enqueued.
//
// Backpressure: what the body holds that the runtime has not read counts
// as the response's `writableLength`; a write that fills the body past
// HIGH_WATER answers false, and the body's `pull()` (the runtime read
// enough) is the 'drain'. A client that stops reading therefore reaches
// `maxBufferedBytes` and is closed with 'overflow'.
//
// A client that leaves: the request's `signal` aborts or the runtime
// cancels the body (runtimes differ in which, and when); either is the
// response's 'close'.

const stream = require('./stream.js')
const { typeError } = require('./errors.js')

/** Bytes the body holds before a write answers "wait" (a socket's default). */
const HIGH_WATER = 16 * 1024
const encoder = new TextEncoder()
const sizeOf = (chunk) => chunk.byteLength
/** Why an overflowed body errors (the runtime drops the connection). */
const OVERFLOW = 'native-sse: the client read too slowly (maxBufferedBytes)'

/**
 * The last string chunk and its bytes: a broadcast writes one chunk to
 * many members in a row, and it is encoded once for all of them.
 */
let lastText = null
let lastBytes = null

function bytesOf(chunk) {
  if (typeof chunk !== 'string') return chunk
  if (chunk !== lastText) {
    lastText = chunk
    lastBytes = encoder.encode(chunk)
  }
  return lastBytes
}

class BodySink {
  constructor(signal) {
    this.controller = null
    this.signal = signal
    this.writableEnded = false
    this.destroyed = false
    this.closeListener = null
    this.drainListener = null
    this.onAbort = null
  }

  /** Bytes enqueued that the runtime has not read. */
  get writableLength() {
    const controller = this.controller
    if (controller === null) return 0
    const room = controller.desiredSize
    return room === null || room >= HIGH_WATER ? 0 : HIGH_WATER - room
  }

  write(chunk) {
    const controller = this.controller
    if (controller === null || this.writableEnded || this.destroyed) return true
    try {
      controller.enqueue(bytesOf(chunk))
    } catch {
      // The runtime closed the body without telling us first: it is gone.
      this.gone()
      return true
    }
    const room = controller.desiredSize
    return room === null || room > 0
  }

  end() {
    if (this.writableEnded || this.destroyed) return this
    this.writableEnded = true
    const controller = this.controller
    this.release()
    try {
      controller.close()
    } catch {
      // Already closed by the runtime.
    }
    return this
  }

  /** The stream was closed for 'overflow': drop what the body holds. */
  destroy() {
    if (this.destroyed) return this
    this.destroyed = true
    const controller = this.controller
    this.release()
    try {
      controller.error(new Error(OVERFLOW))
    } catch {
      // Already closed by the runtime.
    }
    return this
  }

  on(name, listener) {
    if (name === 'close') this.closeListener = listener
    return this
  }

  once(name, listener) {
    if (name === 'drain') this.drainListener = listener
    return this
  }

  /** The runtime read what the body held. */
  pulled() {
    const listener = this.drainListener
    if (listener === null) return
    this.drainListener = null
    listener.call(this)
  }

  /** The client left: the signal aborted or the body was cancelled. */
  gone() {
    if (this.destroyed || this.writableEnded) return
    this.destroyed = true
    this.release()
    const listener = this.closeListener
    this.closeListener = null
    if (listener !== null) listener.call(this)
  }

  /** Lets go of the controller and the request's signal. */
  release() {
    this.controller = null
    this.drainListener = null
    const signal = this.signal
    this.signal = null
    if (signal !== null && this.onAbort !== null) signal.removeEventListener('abort', this.onAbort)
    this.onAbort = null
  }
}

/** The user's headers may repeat a name (arrays), as `writeHead` takes them. */
function responseHeaders(given) {
  const headers = new Headers()
  for (const name of Object.keys(given)) {
    const value = given[name]
    try {
      if (Array.isArray(value)) {
        for (const item of value) headers.append(name, item)
      } else {
        headers.set(name, String(value))
      }
    } catch (err) {
      throw typeError(
        'ERR_SSE_INVALID_OPTION',
        `new SSE(request, options): options.headers[${JSON.stringify(name)}] is not a valid header: ${err.message}`,
      )
    }
  }
  return headers
}

/**
 * Called by the Rust constructor of `SSE` for the Fetch form: makes the
 * body and the `Response`, then hands the sink to the same front as a
 * ServerResponse. Anything that throws does so before the stream is
 * registered, and the constructor fails with it.
 */
function attachFetch(sse, request, key, flags, uuid, lastEventId, given) {
  const headers = responseHeaders(given)
  const signal = request.signal
  const sink = new BodySink(isSignal(signal) ? signal : null)
  const body = new ReadableStream(
    {
      start(controller) {
        sink.controller = controller
      },
      pull() {
        sink.pulled()
      },
      cancel() {
        sink.gone()
      },
    },
    { highWaterMark: HIGH_WATER, size: sizeOf },
  )
  const response = new Response(body, { status: 200, headers })
  if (sink.signal !== null) {
    if (sink.signal.aborted) {
      sink.destroyed = true
      sink.release()
    } else {
      sink.onAbort = () => sink.gone()
      sink.signal.addEventListener('abort', sink.onAbort, { once: true })
    }
  }
  stream.attachStream(sse, sink, key, flags, uuid, lastEventId)
  sse[stream.kState].response = response
}

function isSignal(signal) {
  return typeof signal === 'object' && signal !== null && typeof signal.addEventListener === 'function'
}

/** The `Response` of a Fetch-form stream; the same one each time. */
function getResponse() {
  const st = stream.stateOf(this, 'getResponse()')
  if (st.response === null) {
    throw typeError(
      'ERR_SSE_NOT_FETCH_FORM',
      'getResponse(): this stream writes to the response given to new SSE(req, res); getResponse() is for new SSE(request)',
    )
  }
  return st.response
}

function install(SSE) {
  Object.defineProperty(SSE.prototype, 'getResponse', {
    value: getResponse,
    writable: true,
    configurable: true,
    enumerable: false,
  })
}

module.exports = { attachFetch, install }
