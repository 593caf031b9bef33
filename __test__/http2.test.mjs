// HTTP/2 through Node's compatibility API: cleartext (h2c) and TLS servers,
// an `http2.connect` client, and an HTTP/1.1 client on the same TLS server
// (allowHTTP1). HTTP/2 forbids connection-specific headers: Node drops
// `Connection` with a process warning and throws on `Keep-Alive`,
// `Transfer-Encoding` and `Upgrade`, so the library must leave them all out.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import https from 'node:https'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { UUID_V4, deferred, s42Frame, startServer, waitFor } from './helpers.mjs'

const key = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url))
const cert = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url))

// Every process warning emitted while this file runs; each test asserts
// there are none (the last test shows the listener does catch Node's
// warning about a `Connection` header on HTTP/2). One is left out: the
// ExperimentalWarning Node emits when the WASI build is loaded (its
// `node:wasi` module), which says nothing about streaming over HTTP/2.
const warnings = []
const isWasiLoadWarning = (warning) =>
  warning.name === 'ExperimentalWarning' && /^WASI is an experimental feature/.test(warning.message)
const onWarning = (warning) => {
  if (!isWasiLoadWarning(warning)) warnings.push(warning)
}
before(() => process.on('warning', onWarning))
after(() => process.off('warning', onWarning))

/** Waits a few turns of the loop, so that warnings (emitted on nextTick) land. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20))

function assertNoWarnings() {
  assert.deepEqual(
    warnings.map((w) => `${w.name}: ${w.message}`),
    [],
    'no process warnings while streaming over HTTP/2',
  )
}

// The connection-specific headers a user might pass, in mixed letter case.
const HOP_BY_HOP = {
  Connection: 'keep-alive',
  'keep-alive': 'timeout=5',
  'Transfer-Encoding': 'chunked',
  UPGRADE: 'websocket',
  'Proxy-Connection': 'keep-alive',
}
const FORBIDDEN = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']

/**
 * An HTTP/2 server (`secure`: TLS with allowHTTP1, else h2c) on 127.0.0.1.
 * Each request becomes `new SSE(req, res, options)` and is handed to
 * `opened()`'s waiters as `{ sse, req, res, closeReasons }`.
 */
async function startH2(secure, options) {
  const waiting = []
  const handler = (req, res) => {
    const sse = new SSE(req, res, options)
    const closeReasons = []
    sse.onClose((reason) => closeReasons.push(reason))
    waiting.shift()?.({ sse, req, res, closeReasons })
  }
  const create = secure
    ? (h) => http2.createSecureServer({ key, cert, allowHTTP1: true }, h)
    : (h) => http2.createServer(h)
  const srv = await startServer(handler, { create })
  return {
    port: srv.port,
    origin: `${secure ? 'https' : 'http'}://127.0.0.1:${srv.port}`,
    /** Resolves with the next stream the server opens. */
    opened() {
      return new Promise((resolve) => waiting.push(resolve))
    },
    close: srv.close,
  }
}

/** `startH2` and a `connectH2` client to it, both closed after test `t`. */
async function startH2WithClient(t, secure, options) {
  const srv = await startH2(secure, options)
  const client = connectH2(srv.origin, secure)
  t.after(async () => {
    client.close()
    await srv.close()
  })
  return { srv, client }
}

/** An `http2.connect` session; `get(path)` opens a stream and keeps its bytes. */
function connectH2(origin, secure) {
  const session = http2.connect(origin, secure ? { ca: cert } : {})
  session.on('error', () => {})
  return {
    session,
    get(path = '/events') {
      const stream = session.request({ ':path': path, accept: 'text/event-stream' })
      const received = []
      const state = { headers: null, ended: false, closed: false }
      stream.on('response', (headers) => (state.headers = headers))
      stream.on('data', (chunk) => received.push(chunk))
      stream.on('end', () => (state.ended = true))
      stream.on('close', () => (state.closed = true))
      stream.on('error', () => {})
      return {
        stream,
        state,
        bytes: () => Buffer.concat(received),
        body: () => Buffer.concat(received).toString('utf8'),
      }
    },
    close() {
      session.destroy()
    },
  }
}

for (const secure of [false, true]) {
  const kind = secure ? 'h2 over TLS (createSecureServer, allowHTTP1)' : 'h2c (createServer)'

  test(`${kind}: status 200, SSE headers, no connection-specific headers, exact bytes`, async (t) => {
    const { srv, client } = await startH2WithClient(t, secure, { headers: { ...HOP_BY_HOP, 'X-Stream': 'yes' } })

    const opened = srv.opened()
    const res = client.get()
    const { sse, req } = await opened
    assert.equal(req.httpVersionMajor, 2)
    assert.equal(client.session.alpnProtocol, secure ? 'h2' : 'h2c')
    assert.equal(sse.send({ eventName: 'update', eventPayload: { n: 1, text: 'é 😀' } }), true)
    assert.equal(sse.send({ eventName: 'update', eventPayload: [2] }), true)

    const expected =
      s42Frame(0, 'welcome', { uuid: sse.getUUID() }) +
      s42Frame(1, 'update', { n: 1, text: 'é 😀' }) +
      s42Frame(2, 'update', [2])
    await waitFor(() => res.bytes().length >= Buffer.byteLength(expected), { what: 'welcome and two events' })
    assert.match(sse.getUUID(), UUID_V4)
    assert.equal(res.body(), expected)

    const headers = res.state.headers
    assert.equal(headers[':status'], 200)
    assert.equal(headers['content-type'], 'text/event-stream')
    assert.equal(headers['cache-control'], 'no-cache, no-transform')
    assert.equal(headers['x-accel-buffering'], 'no')
    assert.equal(headers['x-stream'], 'yes', 'other user headers still pass')
    assert.equal(headers['content-length'], undefined)
    for (const name of FORBIDDEN) assert.equal(headers[name], undefined, `no ${name} header on HTTP/2`)

    assert.equal(res.state.ended, false, 'the stream stays open')
    await settle()
    assertNoWarnings()
  })

  test(`${kind}: close() on the server ends the client's stream`, async (t) => {
    const { srv, client } = await startH2WithClient(t, secure)

    const opened = srv.opened()
    const res = client.get()
    const { sse, closeReasons } = await opened
    sse.send({ eventName: 'last', eventPayload: 'bye' })
    sse.close()
    assert.equal(sse.closed, true)
    assert.equal(sse.send({ eventName: 'late', eventPayload: 1 }), false)

    await waitFor(() => res.state.ended, { what: 'end of the HTTP/2 stream at the client' })
    assert.equal(res.body(), s42Frame(0, 'welcome', { uuid: sse.getUUID() }) + s42Frame(1, 'last', 'bye'))
    await waitFor(() => closeReasons.length > 0, { what: 'onClose' })
    await settle()
    assert.deepEqual(closeReasons, ['server'])
    assert.equal(res.stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'a clean end, not a reset')
    assert.equal(client.session.destroyed, false, 'only the stream ended, not the session')
    assertNoWarnings()
  })

  test(`${kind}: a client that closes its stream is noticed`, async (t) => {
    const { srv, client } = await startH2WithClient(t, secure, { keepAlive: 10 })

    const opened = srv.opened()
    const res = client.get()
    const { sse, res: serverRes, closeReasons } = await opened
    await waitFor(() => res.body().endsWith('\n\n'), { what: 'welcome' })
    const serverClosed = deferred()
    serverRes.on('close', serverClosed.resolve)

    res.stream.close(http2.constants.NGHTTP2_CANCEL)
    await serverClosed.promise
    await waitFor(() => closeReasons.length > 0, { what: 'onClose' })
    assert.deepEqual(closeReasons, ['client'])
    assert.equal(sse.closed, true)
    assert.equal(sse.send({ eventName: 'gone', eventPayload: {} }), false)
    assert.equal(sse.bufferedBytes, 0)

    // The session outlives the stream: a second stream on it still works,
    // and dropping the whole connection is noticed as well.
    const second = srv.opened()
    const res2 = client.get()
    const next = await second
    const welcome = s42Frame(0, 'welcome', { uuid: next.sse.getUUID() })
    await waitFor(() => res2.body().length >= welcome.length, { what: 'second welcome' })
    assert.ok(res2.body().startsWith(welcome), res2.body())
    assert.match(res2.body().slice(welcome.length), /^(:\n\n)*$/, 'only heartbeats after the welcome')
    client.session.destroy()
    await waitFor(() => next.closeReasons.length > 0, { what: 'onClose after the session dropped' })
    assert.deepEqual(next.closeReasons, ['client'])
    assert.equal(next.sse.send({ eventName: 'gone', eventPayload: {} }), false)

    await settle()
    assert.deepEqual(closeReasons, ['client'], 'onClose fired once')
    assertNoWarnings()
  })
}

test('h2c: a client that stops reading one stream is cut off with reason overflow; the session lives on', async (t) => {
  const cap = 256 * 1024
  const { srv, client } = await startH2WithClient(t, false, { maxBufferedBytes: cap, keepAlive: 0 })

  const opened = srv.opened()
  const stalled = client.get()
  stalled.stream.pause() // HTTP/2 flow control then stops the server's writes
  const { sse, closeReasons } = await opened
  const payload = { pad: 'x'.repeat(16 * 1024) }
  const plan = 32 * 1024 * 1024
  let attempted = 0
  let maxBuffered = 0
  let accepted = 0
  let refusedAt = null
  while (attempted < plan) {
    for (let k = 0; k < 8 && attempted < plan; k++) {
      attempted += payload.pad.length
      if (sse.send({ eventName: 'fill', eventPayload: payload })) {
        assert.equal(refusedAt, null, 'nothing is accepted after the cut-off')
        accepted += payload.pad.length
      } else {
        refusedAt ??= attempted
      }
      maxBuffered = Math.max(maxBuffered, sse.bufferedBytes)
    }
    if (refusedAt !== null) break
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.notEqual(refusedAt, null, `never cut off (accepted ${accepted} bytes)`)
  assert.ok(maxBuffered <= cap + 17 * 1024, `bufferedBytes peaked at ${maxBuffered}`)
  assert.ok(accepted < plan / 8, `accepted ${accepted} bytes`)
  await waitFor(() => closeReasons.length > 0, { what: 'onClose' })
  assert.deepEqual(closeReasons, ['overflow'])
  assert.equal(sse.closed, true)
  assert.equal(sse.send({ eventName: 'late', eventPayload: 1 }), false)
  stalled.stream.resume() // the client catches up and sees the reset
  await waitFor(() => stalled.state.closed, { what: 'the stalled stream closed at the client' })
  // The response is destroyed (Node resets the stream with code NO_ERROR,
  // which the client reads as an end): the client gets only what flow
  // control let through before the cut, not the queued events.
  assert.ok(stalled.bytes().length < accepted, 'the queued events were dropped')

  // Only that stream was cut off: the same session opens another one.
  const next = srv.opened()
  const res = client.get()
  const { sse: sse2 } = await next
  await waitFor(() => res.body().endsWith('\n\n'), { what: 'welcome on a new stream' })
  assert.equal(res.body(), s42Frame(0, 'welcome', { uuid: sse2.getUUID() }))
  assert.equal(client.session.destroyed, false)
  await settle()
  assertNoWarnings()
})

test('createSecureServer with allowHTTP1: an HTTP/1.1 client gets the stream, with Connection: keep-alive', async (t) => {
  const srv = await startH2(true, { headers: { 'X-Stream': 'yes' } })
  const requests = []
  t.after(async () => {
    for (const request of requests) request.destroy()
    await srv.close()
  })

  const opened = srv.opened()
  const response = deferred()
  // A keep-alive agent, so the request does not ask to close the
  // connection (a request with `Connection: close` gets no keep-alive).
  const agent = new https.Agent({ keepAlive: true, ca: cert })
  t.after(() => agent.destroy())
  const request = https.get(`${srv.origin}/events`, { agent }, response.resolve)
  requests.push(request)
  request.on('error', () => {})
  const { sse, req, closeReasons } = await opened
  const res = await response.promise
  assert.equal(req.httpVersion, '1.1')
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['content-type'], 'text/event-stream')
  assert.equal(res.headers['cache-control'], 'no-cache, no-transform')
  assert.equal(res.headers['x-accel-buffering'], 'no')
  assert.equal(res.headers['x-stream'], 'yes')
  assert.equal(res.headers.connection, 'keep-alive')
  assert.ok(res.rawHeaders.includes('Connection'), 'the header is sent as Connection')

  let body = ''
  res.setEncoding('utf8')
  res.on('data', (chunk) => (body += chunk))
  sse.send({ eventName: 'update', eventPayload: { over: 'http/1.1' } })
  const ended = deferred()
  res.on('end', ended.resolve)
  await waitFor(() => body.includes('event: update'), { what: 'event over HTTP/1.1' })
  sse.close()
  await ended.promise
  assert.equal(body, s42Frame(0, 'welcome', { uuid: sse.getUUID() }) + s42Frame(1, 'update', { over: 'http/1.1' }))
  await waitFor(() => closeReasons.length > 0, { what: 'onClose' })
  assert.deepEqual(closeReasons, ['server'])
  await settle()
  assertNoWarnings()
})

// Runs last: Node warns about a `Connection` header on HTTP/2 only once per
// process. This shows that the warning listener above would catch it.
test('control: a hand-written HTTP/2 response with Connection makes Node warn', async (t) => {
  const server = http2.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', Connection: 'keep-alive' })
    res.end('ok')
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = connectH2(`http://127.0.0.1:${server.address().port}`, false)
  t.after(async () => {
    client.close()
    await new Promise((resolve) => server.close(resolve))
  })
  const res = client.get('/')
  await waitFor(() => res.state.ended, { what: 'plain response' })
  await settle()
  assert.equal(res.body(), 'ok')
  assert.ok(
    warnings.some((w) => /connection header/i.test(w.message)),
    `expected Node's connection-header warning, got ${JSON.stringify(warnings.map((w) => w.message))}`,
  )
  warnings.length = 0
})

test('a Channel over HTTP/2: streams of one session share broadcasts, and a returning stream resumes', async (t) => {
  const { Channel } = await import('native-sse')
  const channel = new Channel()
  t.after(() => channel.close())
  const { srv, client } = await startH2WithClient(t, true, { keepAlive: 0 })
  const joined = []
  const next = async (open) => {
    const opened = srv.opened()
    const res = open()
    const { sse } = await opened
    assert.equal(channel.add(sse), true)
    joined.push(sse)
    return res
  }
  const a = await next(() => client.get())
  const b = await next(() => client.get())
  const id1 = channel.broadcast({ eventName: 'news', eventPayload: 1 })
  const id2 = channel.broadcast({ eventName: 'news', eventPayload: 2 })
  const events = `id: ${id1}\nevent: news\ndata: 1\n\nid: ${id2}\nevent: news\ndata: 2\n\n`
  for (const [i, res] of [a, b].entries()) {
    await waitFor(() => res.body().endsWith(events), { what: `stream ${i}` })
    const head = id1.replace(/-\d+$/, '-0')
    assert.equal(res.body(), s42Frame(0, 'welcome', { uuid: joined[i].getUUID() }) + `id: ${head}\n\n` + events)
  }
  // An HTTP/2 stream that comes back with Last-Event-ID gets what it missed.
  const opened = srv.opened()
  const stream = client.session.request({ ':path': '/events', 'last-event-id': id1 })
  const received = []
  stream.on('data', (chunk) => received.push(chunk))
  const { sse } = await opened
  channel.add(sse)
  await waitFor(() => Buffer.concat(received).toString().endsWith(`id: ${id2}\nevent: news\ndata: 2\n\n`), { what: 'the replay' })
  assert.equal(
    Buffer.concat(received).toString(),
    `event: welcome\ndata: {"uuid":"${sse.getUUID()}"}\n\nid: ${id2}\nevent: news\ndata: 2\n\n`,
  )
  stream.close()
  await settle()
  assertNoWarnings()
})
