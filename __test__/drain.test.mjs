// Graceful drain in one process: `drain()` and `channel.drain()` against
// real servers on 127.0.0.1 (HTTP/1.1 with raw sockets and keep-alive
// agents, HTTP/2), Fetch-form streams read in-process, and a client that
// never reads. A drain leaves the process draining until its window is
// over, so every test that drains everything waits for its window before
// the next one opens streams. (The many-client test with Redis and two
// servers is drain-redis.test.mjs.)
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import { after, test } from 'node:test'

import { Channel, SSE, drain } from 'native-sse'
import { deferred, rawGet, s42Frame, startServer, waitFor } from './helpers.mjs'

const unhandled = []
process.on('uncaughtException', (err) => unhandled.push(err))
after(() => assert.deepEqual(unhandled, []))

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const RETRY = /retry: (\d+)\n\n$/

/** With a bound: a promise that must settle within `ms`. */
function within(promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
    }),
  ])
}

/** A server whose streams are kept in `streams` (with their close reasons). */
async function sseServer(options = { keepAlive: 0 }, create) {
  const streams = []
  const opened = []
  const srv = await startServer(
    (req, res) => {
      const sse = new SSE(req, res, options)
      const entry = { sse, res, reason: null }
      sse.onClose((reason) => (entry.reason = reason))
      streams.push(entry)
      opened.shift()?.(entry)
    },
    create === undefined ? {} : { create },
  )
  srv.streams = streams
  /** A raw client and its stream, once the welcome has arrived. */
  srv.open = async (headers = {}) => {
    const made = new Promise((resolve) => opened.push(resolve))
    const client = rawGet(srv.port, '/', headers)
    const entry = await within(made, 5000, 'a stream to open')
    await client.waitForBody((body) => body.endsWith('\n\n'))
    entry.client = client
    return entry
  }
  return srv
}

/** Reads a Fetch body to its end (bounded), as text. */
async function readBody(response, ms = 5000) {
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + ms
  for (;;) {
    const { value, done } = await within(reader.read(), Math.max(1, deadline - Date.now()), 'the body to end')
    if (done) return text
    text += decoder.decode(value, { stream: true })
  }
}

// ------------------------------------------------------------ validation

test('bad options throw a TypeError with a code before anything is ended', async () => {
  const srv = await sseServer()
  const { client, sse } = await srv.open()
  const cases = [
    [5, 'drain(options): options must be an object (got number)'],
    ['fast', 'drain(options): options must be an object (got string)'],
    [{ windowMs: '10' }, 'drain(options): options.windowMs must be a number (got string)'],
    [{ minMs: null }, 'drain(options): options.minMs must be a number (got null)'],
    [{ timeoutMs: 10n }, 'drain(options): options.timeoutMs must be a number (got bigint)'],
    [{ windowMs: -1 }, 'drain(options): options.windowMs must be an integer from 0 to 2147483647'],
    [{ windowMs: Number.NaN }, 'drain(options): options.windowMs must be an integer from 0 to 2147483647'],
    [{ minMs: 0.5 }, 'drain(options): options.minMs must be an integer from 0 to 2147483647'],
    [{ timeoutMs: 2 ** 31 }, 'drain(options): options.timeoutMs must be an integer from 0 to 2147483647'],
    [{ timeoutMs: Infinity }, 'drain(options): options.timeoutMs must be an integer from 0 to 2147483647'],
  ]
  const channel = new Channel()
  for (const [options, message] of cases) {
    for (const call of [() => drain(options), () => channel.drain(options)]) {
      assert.throws(call, (err) => {
        assert.ok(err instanceof TypeError)
        assert.equal(err.code, 'ERR_SSE_INVALID_OPTION')
        assert.equal(err.message, message)
        return true
      })
    }
  }
  assert.throws(() => Channel.prototype.drain.call({}, {}), { name: 'TypeError', code: 'ERR_SSE_INVALID_ARGUMENT' })
  channel.close()
  assert.throws(
    () => channel.drain(),
    (err) => !(err instanceof TypeError) && err.code === 'ERR_SSE_CHANNEL_CLOSED',
  )
  // Nothing was ended: the stream still takes events.
  assert.equal(sse.closed, false)
  assert.equal(sse.send({ eventName: 'still', eventPayload: 1 }), true)
  await client.waitForBody((body) => body.includes('event: still'))
  client.close()
  await waitFor(() => sse.closed, { what: 'the stream to notice its client left' })
  await srv.close()
})

test('a drain with no streams resolves at once with a summary of nothing', async () => {
  assert.deepEqual(await within(drain({ windowMs: 0 }), 1000, 'an empty drain'), { streams: 0, destroyed: 0 })
  const channel = new Channel()
  assert.deepEqual(await within(channel.drain(), 1000, 'an empty channel drain'), { streams: 0, destroyed: 0 })
  channel.close()
})

// ------------------------------------------------------------- channels

test('channel.drain() ends its members only; streams that join while it drains are ended too', async () => {
  const srv = await sseServer()
  const room = new Channel()
  const lobby = new Channel()
  const a = await srv.open()
  const b = await srv.open()
  const c = await srv.open()
  assert.ok(room.add(a.sse))
  assert.ok(room.add(b.sse))
  assert.ok(lobby.add(b.sse))
  assert.ok(lobby.add(c.sse))
  const windowMs = 600
  room.broadcast({ eventName: 'r', eventPayload: 1 })
  const drained = room.drain({ windowMs })
  assert.equal(room.size, 0)
  assert.equal(lobby.size, 1, 'b left every channel')
  assert.ok(a.sse.closed && b.sse.closed && !c.sse.closed)
  assert.deepEqual(await within(drained, 5000, 'the channel drain'), { streams: 2, destroyed: 0 })
  for (const { client } of [a, b]) {
    const response = await client.waitForBody((_, parsed) => parsed.complete)
    const body = response.body.toString()
    // The broadcast of the tick, then the retry as the last frame.
    assert.match(body, /event: r\ndata: 1\n\nretry: \d+\n\n$/)
    assert.ok(Number(RETRY.exec(body)[1]) < windowMs)
    // The connection is closed after the response.
    await waitFor(() => client.ended, { what: 'the connection to close' })
  }
  await sleep(0)
  assert.equal(a.reason, 'server')
  assert.equal(b.reason, 'server')
  // c goes on, in its channel.
  lobby.broadcast({ eventName: 'l', eventPayload: 2 })
  await c.client.waitForBody((body) => body.includes('event: l\ndata: 2'))
  // A stream that joins the draining room is ended (not added), with a
  // retry inside what is left of the window; one that does not stays.
  const d = await srv.open()
  assert.equal(room.add(d.sse), false)
  assert.equal(d.sse.closed, true)
  const late = (await d.client.waitForBody((_, parsed) => parsed.complete)).body.toString()
  assert.equal(late.slice(0, late.indexOf('retry:')), s42Frame(0, 'welcome', { uuid: d.sse.getUUID() }))
  assert.ok(Number(RETRY.exec(late)[1]) <= windowMs)
  const e = await srv.open()
  assert.equal(e.sse.closed, false)
  // After the window, the room takes members again.
  await sleep(windowMs)
  assert.equal(room.add(e.sse), true)
  assert.equal(room.size, 1)
  for (const { client } of [a, b, c, d, e]) client.close()
  room.close()
  lobby.close()
  await srv.close()
})

// -------------------------------------------------- everything, on the wire

test('drain(): each stream gets its retry as its own last frame, after its pending events, then ends', async () => {
  const srv = await sseServer()
  const clients = []
  for (let i = 0; i < 4; i++) clients.push(await srv.open())
  // Pending, not written yet when drain() is called.
  for (const { sse } of clients) sse.send({ eventName: 'last', eventPayload: { n: 1 } })
  const minMs = 200
  const windowMs = 400
  const summary = await within(drain({ windowMs, minMs }), 5000, 'the drain')
  assert.deepEqual(summary, { streams: 4, destroyed: 0 })
  const values = []
  for (const { client, sse } of clients) {
    const response = await client.waitForBody((_, parsed) => parsed.complete)
    const body = response.body.toString()
    const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
    const match = RETRY.exec(body)
    assert.ok(match, body)
    const retry = Number(match[1])
    assert.equal(body, welcome + s42Frame(1, 'last', { n: 1 }) + `retry: ${retry}\n\n`)
    assert.ok(retry >= minMs && retry < minMs + windowMs, String(retry))
    values.push(retry)
    await waitFor(() => client.ended, { what: 'the connection to close' })
  }
  await sleep(0)
  assert.deepEqual(
    srv.streams.map((s) => s.reason),
    ['server', 'server', 'server', 'server'],
  )
  // The process drains until the window is over: a stream opened now is
  // ended right after its welcome, with a retry inside the window.
  const late = await srv.open()
  const body = (await late.client.waitForBody((_, parsed) => parsed.complete)).body.toString()
  assert.match(body, /^id: 0\nevent: welcome\ndata: .*\n\nretry: \d+\n\n$/)
  assert.ok(Number(RETRY.exec(body)[1]) >= minMs)
  await sleep(minMs + windowMs)
  // Over: streams open as usual again.
  const after = await srv.open()
  await sleep(20)
  assert.equal(after.sse.closed, false)
  after.client.close()
  await srv.close()
})

test('drain() ends streams of both forms; the Fetch body ends after the retry frame', async () => {
  const srv = await sseServer()
  const node = await srv.open()
  const fetchForm = new SSE(new Request('http://127.0.0.1/events'), { keepAlive: 0 })
  const reasons = []
  fetchForm.onClose((reason) => reasons.push(reason))
  fetchForm.send({ eventName: 'f', eventPayload: 1 })
  const body = readBody(fetchForm.getResponse())
  const windowMs = 300
  const summary = await within(drain({ windowMs }), 5000, 'the drain')
  assert.deepEqual(summary, { streams: 2, destroyed: 0 })
  const text = await body
  assert.match(text, /^id: 0\nevent: f\ndata: 1\n\nretry: \d+\n\n$/)
  assert.ok(Number(RETRY.exec(text)[1]) < windowMs)
  const nodeBody = (await node.client.waitForBody((_, parsed) => parsed.complete)).body.toString()
  assert.match(nodeBody, /retry: \d+\n\n$/)
  await sleep(0)
  assert.deepEqual(reasons, ['server'])
  assert.equal(node.reason, 'server')
  // A Fetch-form stream opened while draining: its body is the retry alone.
  const late = new SSE(new Request('http://127.0.0.1/events'), { keepAlive: 0 })
  assert.equal(late.closed, true)
  assert.match(await readBody(late.getResponse()), /^retry: \d+\n\n$/)
  await sleep(windowMs)
  await srv.close()
})

test('drain() called from a res.write wrapper in the middle of a flush: every stream gets its events, then its retry', async () => {
  const srv = await sseServer()
  const channel = new Channel()
  const members = []
  for (let i = 0; i < 3; i++) members.push(await srv.open())
  for (const { sse } of members) assert.ok(channel.add(sse))
  await sleep(10)
  // The second member's write starts the drain (user code inside our write).
  let drained = null
  const wrapped = members[1].res
  const write = wrapped.write
  wrapped.write = function (...args) {
    const result = write.apply(this, args)
    if (drained === null && String(args[0]).includes('event: b')) drained = drain({ windowMs: 200 })
    return result
  }
  channel.broadcast({ eventName: 'b', eventPayload: 1 })
  channel.broadcast({ eventName: 'b', eventPayload: 2 })
  await waitFor(() => drained !== null, { what: 'the wrapper to drain' })
  assert.deepEqual(await within(drained, 5000, 'the drain'), { streams: 3, destroyed: 0 })
  for (const { client } of members) {
    const body = (await client.waitForBody((_, parsed) => parsed.complete)).body.toString()
    assert.match(body, /event: b\ndata: 1\n\n(id: .*\n)?event: b\ndata: 2\n\nretry: \d+\n\n$/)
  }
  await sleep(200)
  channel.close()
  await srv.close()
})

// ------------------------------------------------- server.close() afterwards

test('after drain(), server.close() completes with keep-alive clients and Connection: close', async () => {
  const srv = await sseServer()
  const agent = new http.Agent({ keepAlive: true })
  const ended = []
  const made = []
  for (let i = 0; i < 5; i++) {
    const done = deferred()
    ended.push(done.promise)
    http
      .get({ host: '127.0.0.1', port: srv.port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', done.resolve)
      })
      .on('error', done.resolve)
  }
  made.push(await srv.open({ Connection: 'close' }))
  await waitFor(() => srv.streams.length === 6, { what: 'six streams' })
  await sleep(50)
  assert.deepEqual(await within(drain({ windowMs: 0 }), 5000, 'the drain'), { streams: 6, destroyed: 0 })
  await within(Promise.all(ended), 5000, 'the keep-alive responses to end')
  // The helper's close() destroys sockets first; this is the plain close.
  await within(new Promise((resolve) => srv.server.close(resolve)), 5000, 'server.close()')
  assert.equal(srv.server.listening, false)
  await waitFor(() => made[0].client.ended, { what: 'the Connection: close socket to end' })
  agent.destroy()
})

test('after drain(), an HTTP/2 server closes too: the sessions are told to go away', async () => {
  const srv = await sseServer({ keepAlive: 0 }, (handler) => http2.createServer(handler))
  const session = http2.connect(srv.url)
  session.on('error', () => {})
  let goaway = false
  session.on('goaway', () => (goaway = true))
  const bodies = []
  for (let i = 0; i < 3; i++) {
    const request = session.request({ ':path': '/' })
    const done = deferred()
    let text = ''
    request.setEncoding('utf8')
    request.on('data', (chunk) => (text += chunk))
    request.on('end', () => done.resolve(text))
    request.on('error', () => done.resolve(text))
    bodies.push(done.promise)
  }
  await waitFor(() => srv.streams.length === 3, { what: 'three HTTP/2 streams' })
  await sleep(20)
  assert.deepEqual(await within(drain({ windowMs: 0 }), 5000, 'the drain'), { streams: 3, destroyed: 0 })
  for (const text of await within(Promise.all(bodies), 5000, 'the streams to end')) {
    assert.match(text, /^id: 0\nevent: welcome\ndata: .*\n\nretry: 0\n\n$/)
  }
  await within(new Promise((resolve) => srv.server.close(resolve)), 5000, 'server.close() of HTTP/2')
  assert.equal(goaway, true)
  session.destroy()
})

// ------------------------------------------------------- a client that never reads

test('a Fetch body nobody reads still ends: the drain destroys it after timeoutMs', async () => {
  const sse = new SSE(new Request('http://127.0.0.1/events'), { keepAlive: 0, maxBufferedBytes: 64 * 1024 * 1024 })
  const response = sse.getResponse()
  for (let i = 0; i < 64; i++) sse.send({ eventName: 'fill', data: 'x'.repeat(16 * 1024) })
  await sleep(0)
  assert.ok(sse.bufferedBytes > 512 * 1024, 'the body holds what nobody read')
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  assert.deepEqual(await within(drain({ windowMs: 0, timeoutMs: 100 }), 5000, 'the drain'), { streams: 1, destroyed: 1 })
  assert.deepEqual(reasons, ['server'])
  // What the runtime took before is still there; then the body ends.
  const reader = response.body.getReader()
  for (let i = 0; i < 10; i++) {
    const { done } = await within(reader.read(), 1000, 'the destroyed body to end')
    if (done) return
  }
  assert.fail('the destroyed body did not end')
})


test('a stream whose client never reads still ends: its response is destroyed after timeoutMs', async () => {
  const srv = await sseServer({ keepAlive: 0, maxBufferedBytes: 256 * 1024 * 1024 })
  const stuck = await srv.open()
  stuck.client.socket.pause()
  const reader = await srv.open()
  // Fill the socket and the response until Node holds a few MiB for it.
  const chunk = 'x'.repeat(64 * 1024)
  for (let i = 0; i < 2000 && stuck.sse.bufferedBytes < 4 * 1024 * 1024; i++) {
    stuck.sse.send({ eventName: 'fill', data: chunk })
    if (i % 16 === 15) await sleep(1)
  }
  assert.ok(stuck.sse.bufferedBytes >= 4 * 1024 * 1024, 'the response holds what the client does not read')
  const closed = deferred()
  stuck.res.on('close', closed.resolve)
  const summary = await within(drain({ windowMs: 0, timeoutMs: 300 }), 5000, 'the drain')
  assert.deepEqual(summary, { streams: 2, destroyed: 1 })
  await within(closed.promise, 5000, 'the stuck response to close')
  assert.equal(stuck.res.destroyed, true, 'it was destroyed')
  await sleep(0)
  assert.equal(stuck.reason, 'server', 'onClose reported the drain when the stream ended')
  assert.equal(reader.reason, 'server')
  await within(new Promise((resolve) => srv.server.close(resolve)), 5000, 'server.close()')
  stuck.client.close()
  reader.client.close()
})
