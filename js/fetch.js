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
// Backpressure: the body pulls. A chunk is handed to the stream only when
// the runtime asks for one (`pull()`, which it calls when it can write);
// until then it waits in the sink's own queue, which is the response's
// `writableLength`. A write that fills the queue past HIGH_WATER answers
// false, and a pull that empties it below is the 'drain'. A client that
// stops reading therefore reaches `maxBufferedBytes`; its queue is dropped
// and the body ends (an errored body makes the adapters log a stack trace
// for every slow client, so it ends cleanly, between two events).
//
// The response head: Bun.serve, h3 (srvx), Elysia and Next.js send the head
// only with the first body chunk, so a stream whose first event comes later
// would look unopened (EventSource fires `open` late). When the runtime
// first asks for a chunk and none is queued by the end of that tick (after
// the flush), the body answers with the heartbeat comment `:` (clients
// ignore it), unless heartbeats are off (`keepAlive: 0`, S42Core 3.x's
// exact bytes). Events sent with the Response go out first and carry the
// head themselves.
//
// A client that leaves: the request's `signal` aborts or the runtime
// cancels the body (runtimes differ in which, and when); either is the
// response's 'close'. On Deno the signal is not read: Deno.serve warns
// about its legacy abort semantics when a handler so much as reads it, and
// it cancels the body when the client leaves.

const stream = require('./stream.js')
const counted = require('./metrics.js').front
const { typeError } = require('./errors.js')

/** Bytes the sink holds before a write answers "wait" (a socket's default). */
const HIGH_WATER = 16 * 1024
const encoder = new TextEncoder()
/** The opening heartbeat (`:` and a blank line). */
const OPENING = encoder.encode(':\n\n')
const onDeno = typeof Deno === 'object' && Deno !== null

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
  constructor(request, signal, highWater, greet) {
    this.controller = null
    /** Answer the runtime's first read with OPENING if nothing is queued. */
    this.greet = greet
    /** Bytes were given to the stream (then no opening heartbeat is needed). */
    this.handed = false
    /**
     * The request is kept while the stream is open: undici links a
     * Request's signal to the one it was made with only through a weak
     * reference, so a collected Request would never see the abort.
     */
    this.request = request
    this.signal = signal
    this.highWater = highWater
    this.aborted = false
    /** The `Response`, between prepareFetch() and attachFetch(). */
    this.response = null
    /** Chunks the runtime has not asked for yet, and their bytes. */
    this.queue = []
    this.queued = 0
    /** The runtime asked for a chunk and none was there. */
    this.wanted = false
    this.writableEnded = false
    this.destroyed = false
    this.closeListener = null
    this.drainListener = null
    this.onAbort = null
    /** The body is closed (for a drain waiting on it: 'finish'). */
    this.finished = false
    this.finishListener = null
  }

  get writableFinished() {
    return this.finished
  }

  /** Bytes written that the runtime has not taken. */
  get writableLength() {
    return this.queued
  }

  write(chunk) {
    if (this.controller === null || this.writableEnded || this.destroyed) return true
    const bytes = bytesOf(chunk)
    if (this.wanted) {
      this.wanted = false
      return this.hand(bytes)
    }
    this.queue.push(bytes)
    this.queued += bytes.byteLength
    return this.queued < this.highWater
  }

  /** Gives `bytes` to the stream; false when the runtime closed it. */
  hand(bytes) {
    this.handed = true
    try {
      this.controller.enqueue(bytes)
      return true
    } catch {
      // The runtime closed the body without telling us first: it is gone.
      this.gone()
      return true
    }
  }

  /** The runtime asks for the next chunk. */
  pulled() {
    if (this.controller === null) return
    const first = this.greet
    this.greet = false
    if (this.queue.length === 0) {
      this.wanted = true
      // After this tick's flush: the events sent with the Response come
      // first when there are any.
      if (first) setTimeout(greetLater, 0, this)
      return
    }
    const bytes = this.queue.shift()
    this.queued -= bytes.byteLength
    this.hand(bytes)
    if (this.queue.length === 0 && this.writableEnded) {
      this.closeBody()
      return
    }
    const listener = this.drainListener
    if (listener !== null && this.queued < this.highWater) {
      this.drainListener = null
      listener.call(this)
    }
  }

  /** Ends the body once the runtime has taken what is queued. */
  end() {
    if (this.writableEnded || this.destroyed) return this
    this.writableEnded = true
    if (this.queue.length === 0) this.closeBody()
    return this
  }

  /** The stream was closed for 'overflow': drop the queue, end the body. */
  destroy() {
    if (this.destroyed) return this
    this.destroyed = true
    this.queue = []
    this.queued = 0
    this.closeBody()
    return this
  }

  closeBody() {
    const controller = this.controller
    this.release()
    if (controller !== null) {
      try {
        controller.close()
      } catch {
        // Already closed by the runtime.
      }
    }
    this.finished = true
    const listener = this.finishListener
    this.finishListener = null
    if (listener !== null) listener.call(this)
  }

  on(name, listener) {
    if (name === 'close') this.closeListener = listener
    return this
  }

  once(name, listener) {
    if (name === 'drain') this.drainListener = listener
    else if (name === 'finish') this.finishListener = listener
    return this
  }

  /**
   * The client left: the signal aborted or the body was cancelled. The
   * body ends too (after a cancel it has already), so that a reader still
   * there is not left waiting.
   */
  gone() {
    if (this.destroyed) return
    this.destroyed = true
    this.queue = []
    this.queued = 0
    this.closeBody()
    const listener = this.closeListener
    this.closeListener = null
    if (listener !== null && !this.writableEnded) listener.call(this)
  }

  /** Lets go of the controller and the request's signal. */
  release() {
    this.controller = null
    this.request = null
    this.drainListener = null
    const signal = this.signal
    this.signal = null
    if (signal !== null && this.onAbort !== null) signal.removeEventListener('abort', this.onAbort)
    this.onAbort = null
  }
}

/** The runtime's first read is still waiting: the opening heartbeat. */
function greetLater(sink) {
  if (sink.handed || !sink.wanted || sink.controller === null || sink.writableEnded || sink.destroyed) return
  sink.wanted = false
  counted.heartbeats++
  counted.bytes += OPENING.byteLength
  sink.hand(OPENING)
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
 * Called by the Rust constructor of `SSE` for the Fetch form, before the
 * engine opens the stream: everything that can throw or run user code
 * (the `Headers` of the user's values, the request's `signal` getter)
 * happens here, so that a failure leaves nothing open. Returns the sink,
 * with the body and the `Response` made.
 */
function prepareFetch(request, given, cap, greet) {
  const headers = responseHeaders(given)
  const signal = onDeno ? null : request.signal
  const sink = new BodySink(request, isSignal(signal) ? signal : null, highWaterFor(cap), greet)
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
    // The stream itself holds nothing ahead of the runtime's reads.
    { highWaterMark: 0 },
  )
  sink.response = new Response(body, { status: 200, headers })
  if (sink.signal !== null && sink.signal.aborted) sink.aborted = true
  return sink
}

/**
 * Called by the Rust constructor once the engine opened the stream: hands
 * the sink to the same front as a ServerResponse (our own code only).
 */
function attachFetch(sse, sink, key, flags, uuid, lastEventId) {
  const response = sink.response
  sink.response = null
  stream.attachStream(sse, sink, key, flags, uuid, lastEventId, 'fetch')
  sse[stream.kState].response = response
  if (sink.aborted) {
    sink.gone()
  } else if (sink.signal !== null) {
    sink.onAbort = () => sink.gone()
    try {
      sink.signal.addEventListener('abort', sink.onAbort, { once: true })
    } catch (err) {
      // A request's own signal never throws here; a stand-in's may. The
      // stream is open already, so it goes on without the signal (the body
      // being cancelled still ends it) and the error is reported.
      sink.onAbort = null
      queueMicrotask(() => {
        throw err
      })
    }
  }
}

/**
 * Bytes the sink holds before a write answers "wait": a socket's 16 KiB,
 * or a quarter of a smaller cap, so that the engine hears of a client that
 * does not read before it is a cap behind (and a replay's steps fit).
 */
function highWaterFor(cap) {
  return Math.max(1, Math.min(HIGH_WATER, Math.floor(cap / 4)))
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

module.exports = { prepareFetch, attachFetch, install }
