// The lifecycle of issue 4: `closed`, `onClose(reason)`, `bufferedBytes`,
// the slow-client cap, and `lastEventId` read from the request.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { deferred, rawGet, s42Frame, startServer, startStreamServer, waitFor } from './helpers.mjs'

const ROOT = new URL('..', import.meta.url)

let srv
before(async () => {
  srv = await startStreamServer((req, res) => new SSE(req, res, { keepAlive: 0 }))
})
after(() => srv.close())

/** Collects `onClose` calls of `sse`. */
function reasons(sse) {
  const seen = []
  sse.onClose((reason) => seen.push(reason))
  return seen
}

test('close(): closed at once, onClose gets "server" once, in the next tick', async () => {
  const { client, sse } = await srv.open()
  assert.equal(sse.closed, false)
  const seen = reasons(sse)
  sse.close()
  assert.equal(sse.closed, true)
  assert.deepEqual(seen, [], 'not called inside close()')
  await new Promise((resolve) => process.nextTick(resolve))
  await waitFor(() => seen.length > 0, { what: 'onClose' })
  sse.close()
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.deepEqual(seen, ['server'])
  client.close()
})

test('a client that leaves: onClose gets "client", closed turns true', async () => {
  const { client, sse } = await srv.open()
  const seen = reasons(sse)
  client.close()
  await waitFor(() => seen.length > 0, { what: 'onClose' })
  assert.deepEqual(seen, ['client'])
  assert.equal(sse.closed, true)
  assert.equal(sse.send({ eventName: 'late', eventPayload: 1 }), false)
})

test('other code ending the response counts as "server"', async () => {
  const { client, sse, res } = await srv.open()
  const seen = reasons(sse)
  res.end()
  assert.equal(sse.closed, true)
  await waitFor(() => seen.length > 0, { what: 'onClose' })
  assert.deepEqual(seen, ['server'])
  client.close()
})

test('onClose on a closed stream is still called with the reason; several callbacks each once', async () => {
  const { client, sse } = await srv.open()
  const first = reasons(sse)
  const second = reasons(sse)
  sse.close()
  const late = reasons(sse)
  await waitFor(() => first.length && second.length && late.length, { what: 'callbacks' })
  await new Promise((resolve) => setTimeout(resolve, 30))
  assert.deepEqual([first, second, late], [['server'], ['server'], ['server']])
  client.close()
})

test('onClose needs a function', async () => {
  const { client, sse } = await srv.open()
  for (const value of [undefined, null, 'cb', {}]) {
    assert.throws(() => sse.onClose(value), { name: 'TypeError', code: 'ERR_SSE_INVALID_ARGUMENT', message: /callback must be a function/ })
  }
  client.close()
})

test('an exception in an onClose callback is an ordinary uncaught exception, after the stream is closed', async () => {
  // In a child process: node:test turns uncaught exceptions into failures.
  const script = `
    import http from 'node:http'
    import { SSE } from 'native-sse'
    process.on('uncaughtException', (err) => { console.log('uncaught:' + err.message); process.exit(0) })
    const server = http.createServer((req, res) => {
      const sse = new SSE(req, res)
      sse.onClose(() => { throw new Error('from the callback') })
      sse.close()
      console.log('closed:' + sse.closed)
    })
    server.listen(0, '127.0.0.1', () => http.get('http://127.0.0.1:' + server.address().port, (r) => r.resume()))
    setTimeout(() => { console.log('no exception'); process.exit(1) }, 5000).unref()
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const code = await new Promise((resolve) => child.on('close', resolve))
  assert.equal(out, 'closed:true\nuncaught:from the callback\n')
  assert.equal(code, 0)
})

test('bufferedBytes counts the events of this tick, then what res holds; 0 once closed', async () => {
  const { client, sse } = await srv.open()
  await waitFor(() => sse.bufferedBytes === 0, { what: 'the welcome to be taken' })
  sse.send({ eventName: 'a', eventPayload: 1 })
  sse.send({ eventName: 'b', eventPayload: 'two' })
  assert.equal(sse.bufferedBytes, Buffer.byteLength(s42Frame(1, 'a', 1) + s42Frame(2, 'b', 'two')))
  await waitFor(() => sse.bufferedBytes === 0, { what: 'the events to be taken' })
  sse.close()
  assert.equal(sse.bufferedBytes, 0)
  client.close()
})

test('an event that takes a client past maxBufferedBytes closes it with reason "overflow"', async () => {
  const made = deferred()
  const server = await startServer((req, res) => made.resolve(new SSE(req, res, { keepAlive: 0, maxBufferedBytes: 1000 })))
  const client = rawGet(server.port, '/')
  try {
    const sse = await made.promise
    const seen = reasons(sse)
    await client.waitForBody((body) => body.endsWith('\n\n'))
    assert.equal(sse.send({ eventName: 'small', eventPayload: 'x'.repeat(500) }), true)
    assert.equal(sse.send({ eventName: 'big', eventPayload: 'x'.repeat(600) }), false)
    assert.equal(sse.closed, true)
    assert.equal(sse.bufferedBytes, 0)
    await waitFor(() => seen.length > 0, { what: 'onClose' })
    assert.deepEqual(seen, ['overflow'])
    await waitFor(() => client.ended, { what: 'the connection to be cut' })
    // Destroyed, not ended: the queued events were dropped, not delivered.
    const body = client.response().body.toString()
    assert.ok(!body.includes('event: small') && !body.includes('event: big'), body)
    assert.equal(client.response().complete, false)
  } finally {
    client.close()
    await server.close()
  }
})

test('maxBufferedBytes: Infinity never overflows', async () => {
  const made = deferred()
  const server = await startServer((req, res) => made.resolve(new SSE(req, res, { keepAlive: 0, maxBufferedBytes: Infinity })))
  const client = rawGet(server.port, '/')
  try {
    const sse = await made.promise
    await client.waitForBody((body) => body.endsWith('\n\n'))
    const big = 'y'.repeat(5 * 1024 * 1024)
    assert.equal(sse.send({ eventName: 'big', data: big }), true)
    await client.waitForBody((body) => body.endsWith(big + '\n\n'), { timeoutMs: 20_000 })
    assert.equal(sse.closed, false)
  } finally {
    client.close()
    await server.close()
  }
})

test('lastEventId comes from the Last-Event-ID header, else the lastEventId query parameter', async () => {
  const seen = []
  const server = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    seen.push(sse.lastEventId)
    sse.close()
  })
  try {
    const cases = [
      ['/', {}, null],
      ['/', { 'Last-Event-ID': '42' }, '42'],
      ['/?lastEventId=1526919030474-55', {}, '1526919030474-55'],
      ['/?lastEventId=from-query', { 'Last-Event-ID': 'from-header' }, 'from-header'],
      ['/?lastEventId=from-query', { 'Last-Event-ID': 'bad value' }, 'from-query'],
      ['/?lastEventId=a%20b', {}, null],
      ['/', { 'Last-Event-ID': '\u00e9t\u00e9' }, null],
    ]
    for (const [path, headers, expected] of cases) {
      const client = rawGet(server.port, path, headers)
      await waitFor(() => client.response()?.complete, { what: `response for ${path}` })
      assert.equal(seen.at(-1), expected, `${path} ${JSON.stringify(headers)}`)
      assert.ok(!client.bytes().toString('latin1').includes('from-'), 'never echoed')
      client.close()
    }
  } finally {
    await server.close()
  }
})

test('a client that connects and leaves before the stream is set up: closed from the start', async () => {
  const made = deferred()
  const server = await startServer((req, res) => {
    req.socket.destroy()
    const sse = new SSE(req, res, { keepAlive: 10 })
    made.resolve({ sse, seen: reasons(sse) })
  })
  const socket = net.connect(server.port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  try {
    const { sse, seen } = await made.promise
    assert.equal(sse.closed, true)
    assert.equal(sse.send({ eventName: 'x', eventPayload: 1 }), false)
    await waitFor(() => seen.length > 0, { what: 'onClose' })
    assert.deepEqual(seen, ['client'])
  } finally {
    socket.destroy()
    await server.close()
  }
})
