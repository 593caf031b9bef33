// The framework recipes of docs/runtimes.md, tested on real servers: Express 5,
// Fastify 5 (reply.hijack()), Koa 3 (ctx.respond = false), and Express behind
// the `compression` middleware, with the `eventsource` client and raw sockets.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'

import compression from 'compression'
import { EventSource } from 'eventsource'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import { SSE } from 'native-sse'
import { UUID_V4, rawGet, s42Frame, startServer, waitFor } from './helpers.mjs'

const EVENTS = [
  { eventName: 'tick', eventPayload: { n: 1 } },
  { eventName: 'note', eventPayload: 'second' },
  { eventName: 'tick', eventPayload: [3, { deep: true }] },
]

const unhandled = []
const onUncaught = (err) => unhandled.push(err)
before(() => process.on('uncaughtException', onUncaught))
after(() => process.off('uncaughtException', onUncaught))

/** Collects the streams a server opens, with any 'error' emitted on `res`. */
function streamList() {
  const list = []
  list.add = (sse, req, res) => {
    const stream = { sse, req, res, resErrors: [] }
    res.on('error', (err) => stream.resErrors.push(err))
    list.push(stream)
  }
  return list
}

/** Runs `connect()` and resolves with its client and the stream the server opened for it. */
async function connect(srv, connectClient) {
  const index = srv.streams.length
  const client = connectClient()
  await waitFor(() => srv.streams.length > index, { timeoutMs: 3000, what: 'the server to open a stream' })
  return { client, stream: srv.streams[index] }
}

/** An `eventsource` client that records the named events it receives and its errors. */
function listen(url, names) {
  const es = new EventSource(url)
  const events = []
  let errors = 0
  for (const name of names) {
    es.addEventListener(name, (e) => events.push({ type: e.type, id: e.lastEventId, data: JSON.parse(e.data) }))
  }
  es.onerror = () => errors++
  return {
    es,
    events,
    get errors() {
      return errors
    },
  }
}

// A header set before the handler runs, the way middleware (CORS, request
// ids) sets them; the recipes must keep it.
const MIDDLEWARE_HEADER = 'x-set-by-middleware'

const FRAMEWORKS = {
  async express() {
    const streams = streamList()
    const app = express()
    app.use((req, res, next) => {
      res.setHeader(MIDDLEWARE_HEADER, 'express')
      next()
    })
    app.get('/events', (req, res) => {
      const sse = new SSE(req, res)
      streams.add(sse, req, res)
    })
    const srv = await startServer(app)
    return { ...srv, streams }
  },

  async fastify() {
    const streams = streamList()
    // handlerTimeout: Fastify destroys a response still in its handler
    // lifecycle after this long; hijack() takes the stream out of it.
    const app = Fastify({ forceCloseConnections: true, handlerTimeout: 300 })
    app.addHook('onRequest', async (request, reply) => {
      reply.raw.setHeader(MIDDLEWARE_HEADER, 'fastify')
    })
    app.get('/events', (request, reply) => {
      // Headers set on `reply` are written by reply.send() only, which a
      // hijacked reply never calls.
      reply.header('x-set-on-reply', 'lost')
      reply.hijack()
      const sse = new SSE(request.raw, reply.raw)
      streams.add(sse, request.raw, reply.raw)
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address()
    return { port, url: `http://127.0.0.1:${port}`, streams, close: () => app.close() }
  },

  async koa() {
    const streams = streamList()
    const app = new Koa()
    const appErrors = []
    app.on('error', (err) => appErrors.push(err))
    app.use(async (ctx, next) => {
      ctx.set(MIDDLEWARE_HEADER, 'koa')
      await next()
    })
    app.use((ctx) => {
      if (ctx.path !== '/events') return
      ctx.respond = false
      const sse = new SSE(ctx.req, ctx.res)
      streams.add(sse, ctx.req, ctx.res)
    })
    const srv = await startServer(app.callback())
    return { ...srv, streams, appErrors }
  },
}

for (const [name, start] of Object.entries(FRAMEWORKS)) {
  describe(name, () => {
    let srv
    before(async () => {
      srv = await start()
    })
    after(() => srv.close())

    test('headers, welcome and events byte for byte on a raw socket; close() ends the stream', async (t) => {
      const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events'))
      t.after(() => client.close())
      const { sse, res } = stream
      const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
      assert.match(sse.getUUID(), UUID_V4)

      const opened = await client.waitForBody((body) => body.length >= welcome.length, { timeoutMs: 3000 })
      assert.equal(opened.status, 200)
      assert.equal(opened.headers['content-type'], 'text/event-stream')
      assert.equal(opened.headers['cache-control'], 'no-cache, no-transform')
      assert.equal(opened.headers.connection, 'keep-alive')
      assert.equal(opened.headers['transfer-encoding'], 'chunked')
      assert.equal(opened.headers['content-encoding'], undefined)
      assert.equal(opened.headers['content-length'], undefined)
      assert.equal(opened.headers[MIDDLEWARE_HEADER], name, 'a header set by earlier middleware is kept')
      if (name === 'fastify') assert.equal(opened.headers['x-set-on-reply'], undefined)
      assert.equal(opened.body.toString(), welcome)
      assert.equal(opened.complete, false)

      // Two events in one tick, one in a later tick.
      assert.equal(sse.send(EVENTS[0]), true)
      assert.equal(sse.send(EVENTS[1]), true)
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(sse.send(EVENTS[2]), true)
      const expected = welcome + EVENTS.map((e, i) => s42Frame(i + 1, e.eventName, e.eventPayload)).join('')
      await client.waitForBody((body) => body.length >= expected.length, { timeoutMs: 3000 })
      assert.equal(client.response().body.toString(), expected)

      sse.close()
      const ended = await client.waitForBody((_, parsed) => parsed.complete, { timeoutMs: 3000, what: 'the end of the stream' })
      assert.equal(ended.body.toString(), expected, 'nothing was added after the events')
      assert.equal(res.writableEnded, true)
      assert.equal(sse.send(EVENTS[0]), false)
      assert.deepEqual(stream.resErrors, [])
      assert.deepEqual(unhandled, [])
      if (srv.appErrors) assert.deepEqual(srv.appErrors, [])
    })

    test('the eventsource client gets the welcome and the events in order, and sees the server close', async (t) => {
      const { client, stream } = await connect(srv, () => listen(`${srv.url}/events`, ['welcome', 'tick', 'note']))
      t.after(() => client.es.close())
      const { sse } = stream
      await waitFor(() => client.events.length === 1, { timeoutMs: 3000, what: 'the welcome event' })
      assert.deepEqual(client.events[0], { type: 'welcome', id: '0', data: { uuid: sse.getUUID() } })

      for (const event of EVENTS) assert.equal(sse.send(event), true)
      await waitFor(() => client.events.length === EVENTS.length + 1, { timeoutMs: 3000, what: 'the events' })
      assert.deepEqual(
        client.events.slice(1),
        EVENTS.map((e, i) => ({ type: e.eventName, id: String(i + 1), data: e.eventPayload })),
      )
      assert.equal(client.errors, 0)

      sse.close()
      await waitFor(() => client.errors > 0, { timeoutMs: 3000, what: 'the client to see the end of the stream' })
      // The client treats the end as a dropped connection and would reconnect.
      assert.equal(client.es.readyState, EventSource.CONNECTING)
      assert.equal(client.events.length, EVENTS.length + 1)
    })

    test('a client that disconnects is noticed: res "close" fires and send() returns false', async (t) => {
      const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events'))
      t.after(() => client.close())
      const { sse, res } = stream
      await client.waitForBody((body) => body.endsWith('\n\n'), { timeoutMs: 3000 })
      let closed = false
      res.on('close', () => (closed = true))
      assert.equal(sse.send(EVENTS[0]), true)
      client.close()
      await waitFor(() => closed, { timeoutMs: 3000, what: 'res "close" after the client left' })
      assert.equal(sse.send(EVENTS[1]), false)
      assert.doesNotThrow(() => sse.close())
      assert.equal(sse.send(EVENTS[2]), false)
      await new Promise((resolve) => setTimeout(resolve, 20))
      assert.deepEqual(stream.resErrors, [])
      assert.deepEqual(unhandled, [])
      if (srv.appErrors) assert.deepEqual(srv.appErrors, [])
    })

    if (name === 'fastify') {
      test('a hijacked stream outlives the handlerTimeout', async (t) => {
        const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events'))
        t.after(() => client.close())
        const { sse } = stream
        await new Promise((resolve) => setTimeout(resolve, 600)) // twice the handlerTimeout
        assert.equal(sse.send(EVENTS[0]), true, 'the stream is still open')
        const frame = s42Frame(1, EVENTS[0].eventName, EVENTS[0].eventPayload)
        await client.waitForBody((body) => body.endsWith(frame), { timeoutMs: 3000 })
        assert.equal(client.ended, false)
      })
    }
  })
}

/** Makes `res` replace the Cache-Control header it is given, the way an app might. */
function overrideCacheControl(res) {
  const writeHead = res.writeHead
  res.writeHead = function (status, headers) {
    return writeHead.call(this, status, { ...headers, 'Cache-Control': 'no-cache' })
  }
}

/**
 * Sends pings 1..count, each only once the client has the previous one in
 * full; a stream held back anywhere on the way stalls at the first.
 */
async function pingPong(client, send, expected, count = 5) {
  for (let n = 1; n <= count; n++) {
    assert.equal(send({ eventName: 'ping', eventPayload: { n } }), true)
    expected += s42Frame(n, 'ping', { n })
    await client.waitForBody((_, parsed) => bodyText(parsed) === expected, { timeoutMs: 1000, what: `ping ${n}` })
  }
}

/** The text of a response body, gunzipped as far as it has arrived when it is gzip. */
function bodyText(parsed) {
  if (parsed.headers['content-encoding'] !== 'gzip') return parsed.body.toString()
  try {
    return zlib.gunzipSync(parsed.body, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString()
  } catch {
    return '' // not even the gzip header yet
  }
}

describe('express with the compression middleware', () => {
  let srv
  const streams = streamList()
  const byUUID = new Map()
  const pongs = []

  before(async () => {
    const app = express()
    app.use(compression())
    app.get('/big', (req, res) => res.type('text').send('compressible '.repeat(500)))
    app.get('/events', (req, res) => {
      const sse = new SSE(req, res)
      streams.add(sse, req, res)
      byUUID.set(sse.getUUID(), sse)
    })
    // The client answers each ping here; only then does the server send the
    // next one. A stream held back by compression would stall at the first.
    app.get('/pong/:uuid/:n', (req, res) => {
      const n = Number(req.params.n)
      pongs.push(n)
      const sse = byUUID.get(req.params.uuid)
      if (n < 5) sse.send({ eventName: 'ping', eventPayload: { n: n + 1 } })
      else sse.close()
      res.json({ ok: true })
    })
    // Routes whose Cache-Control loses `no-transform` on the way out;
    // compression then compresses the stream.
    app.get('/events-overridden', (req, res) => {
      overrideCacheControl(res)
      const sse = new SSE(req, res)
      streams.add(sse, req, res)
    })
    // ... with the workaround in docs/runtimes.md: res.flush() queued after each write.
    app.get('/events-overridden-flushed', (req, res) => {
      overrideCacheControl(res)
      const sse = new SSE(req, res)
      queueMicrotask(() => res.flush()) // the welcome event
      function send(event) {
        const accepted = sse.send(event)
        queueMicrotask(() => res.flush())
        return accepted
      }
      streams.add({ send, getUUID: () => sse.getUUID() }, req, res)
    })
    srv = { ...(await startServer(app)), streams }
  })
  after(() => srv.close())

  // What browsers offer; the middleware picks br from it.
  const ENCODINGS = { 'Accept-Encoding': 'gzip, deflate, br' }

  test('the middleware compresses other responses for this client', async (t) => {
    const client = rawGet(srv.port, '/big', ENCODINGS)
    t.after(() => client.close())
    const response = await client.waitForBody((_, parsed) => parsed.complete, { timeoutMs: 3000 })
    assert.equal(response.headers['content-encoding'], 'br')
    assert.equal(zlib.brotliDecompressSync(response.body).toString(), 'compressible '.repeat(500))
  })

  test('the stream is not compressed and each event arrives before the next is sent', async (t) => {
    const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events', ENCODINGS))
    t.after(() => client.close())
    const { sse } = stream
    const expected = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
    const opened = await client.waitForBody((body) => body === expected, { timeoutMs: 2000, what: 'the welcome' })
    assert.equal(opened.headers['content-encoding'], undefined)
    assert.equal(opened.headers['content-type'], 'text/event-stream')
    assert.match(opened.headers['cache-control'], /\bno-transform\b/)
    await pingPong(client, (event) => sse.send(event), expected)
    sse.close()
    await client.waitForBody((_, parsed) => parsed.complete, { timeoutMs: 2000, what: 'the end of the stream' })
  })

  test('ping-pong with the eventsource client: the server sends a ping only after the previous pong', async (t) => {
    const pings = []
    pongs.length = 0
    const es = new EventSource(`${srv.url}/events`)
    t.after(() => es.close())
    const fetchErrors = []
    let answered = 0
    let uuid
    let errors = 0
    const pong = (n) => {
      fetch(`${srv.url}/pong/${uuid}/${n}`, { headers: ENCODINGS })
        .then((r) => r.json())
        .catch((err) => fetchErrors.push(err))
        .finally(() => answered++)
    }
    es.addEventListener('welcome', (e) => {
      uuid = JSON.parse(e.data).uuid
      pong(0)
    })
    es.addEventListener('ping', (e) => {
      const { n } = JSON.parse(e.data)
      pings.push({ n, id: e.lastEventId })
      pong(n)
    })
    es.onerror = () => errors++
    await waitFor(() => answered === 6 && errors > 0, { timeoutMs: 3000, what: 'five ping-pong rounds and the end' })
    assert.deepEqual(pings, [1, 2, 3, 4, 5].map((n) => ({ n, id: String(n) })))
    assert.deepEqual(pongs, [0, 1, 2, 3, 4, 5])
    assert.deepEqual(fetchErrors, [])
  })

  test('without no-transform the stream is gzipped and held back until res.flush() after the write', async (t) => {
    const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events-overridden', { 'Accept-Encoding': 'gzip' }))
    t.after(() => client.close())
    const { sse, res } = stream
    const opened = await client.waitForBody(() => true, { timeoutMs: 2000, what: 'the response head' })
    assert.equal(opened.headers['content-encoding'], 'gzip')
    assert.equal(opened.headers['cache-control'], 'no-cache')

    const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(bodyText(client.response()), '', 'the welcome sits in the gzip buffer')

    // send() writes at the end of the tick: a flush in the same tick comes
    // before that write and leaves the event behind.
    assert.equal(sse.send(EVENTS[0]), true)
    res.flush()
    await client.waitForBody((_, parsed) => bodyText(parsed) === welcome, { timeoutMs: 2000, what: 'the flushed welcome' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(bodyText(client.response()), welcome, 'the event is still held back')

    // A flush queued after send() runs after its write.
    assert.equal(sse.send(EVENTS[1]), true)
    queueMicrotask(() => res.flush())
    const expected = welcome + s42Frame(1, EVENTS[0].eventName, EVENTS[0].eventPayload) + s42Frame(2, EVENTS[1].eventName, EVENTS[1].eventPayload)
    await client.waitForBody((_, parsed) => bodyText(parsed) === expected, { timeoutMs: 2000, what: 'the events after res.flush()' })
  })
  test('without no-transform, res.flush() queued after each send() (the helper in docs/runtimes.md) delivers every event', async (t) => {
    const { client, stream } = await connect(srv, () => rawGet(srv.port, '/events-overridden-flushed', { 'Accept-Encoding': 'gzip' }))
    t.after(() => client.close())
    const welcome = s42Frame(0, 'welcome', { uuid: stream.sse.getUUID() })
    const opened = await client.waitForBody((_, parsed) => bodyText(parsed) === welcome, { timeoutMs: 1000, what: 'the welcome' })
    assert.equal(opened.headers['content-encoding'], 'gzip')
    await pingPong(client, stream.sse.send, welcome)
  })

  test('without no-transform, a compression filter that skips the route keeps the stream uncompressed', async (t) => {
    const app = express()
    app.use(compression({ filter: (req, res) => req.path !== '/events' && compression.filter(req, res) }))
    const filtered = { streams: streamList() }
    app.get('/events', (req, res) => {
      overrideCacheControl(res)
      const sse = new SSE(req, res)
      filtered.streams.add(sse, req, res)
    })
    Object.assign(filtered, await startServer(app))
    t.after(() => filtered.close())
    const { client, stream } = await connect(filtered, () => rawGet(filtered.port, '/events', ENCODINGS))
    t.after(() => client.close())
    const { sse } = stream
    const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
    const opened = await client.waitForBody((body) => body === welcome, { timeoutMs: 1000, what: 'the welcome' })
    assert.equal(opened.headers['cache-control'], 'no-cache')
    assert.equal(opened.headers['content-encoding'], undefined)
    await pingPong(client, (event) => sse.send(event), welcome)
  })
})
