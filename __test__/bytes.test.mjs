// Byte compatibility with the S42Core SSE class, read off a raw socket.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { UUID_V4, deferred, rawGet, s42Frame, splitEvents, startServer } from './helpers.mjs'

let srv
const connections = new Map() // request path -> { sse, res }

before(async () => {
  srv = await startServer((req, res) => {
    const sse = new SSE(req, res)
    const entry = { sse, res, headersSentAfterConstructor: res.headersSent }
    connections.set(req.url, entry)
    entry.ready?.resolve()
  })
})
after(() => srv.close())

async function open(path) {
  const client = rawGet(srv.port, path)
  await client.waitForBody((body) => body.includes('\n\n'))
  return { client, entry: connections.get(path) }
}

test('status and headers, flushed before any event but the welcome', async () => {
  const { client, entry } = await open('/headers')
  const response = client.response()
  assert.equal(response.status, 200)
  assert.equal(response.headers['content-type'], 'text/event-stream')
  assert.ok(response.rawHeaderNames.includes('Content-Type'))
  assert.match(response.headers['cache-control'], /^no-cache(, no-transform)?$/)
  assert.equal(response.headers.connection, 'keep-alive')
  assert.equal(response.headers['content-length'], undefined)
  assert.equal(response.headers['content-encoding'], undefined)
  assert.equal(entry.headersSentAfterConstructor, true, 'flushHeaders() ran inside the constructor')
  client.close()
})

test('the body starts with the welcome event carrying getUUID()', async () => {
  const { client, entry } = await open('/welcome')
  const uuid = entry.sse.getUUID()
  assert.match(uuid, UUID_V4)
  const body = client.response().body.toString('utf8')
  assert.equal(body, `id: 0\nevent: welcome\ndata: {"uuid":"${uuid}"}\n\n`)
  assert.equal(body, s42Frame(0, 'welcome', { uuid }))
  client.close()
})

test('every connection gets its own v4 UUID', async () => {
  const uuids = new Set()
  for (let i = 0; i < 20; i++) {
    const { client, entry } = await open(`/uuid-${i}`)
    const uuid = entry.sse.getUUID()
    assert.match(uuid, UUID_V4)
    assert.ok(client.response().body.toString().includes(`"uuid":"${uuid}"`))
    uuids.add(uuid)
    client.close()
  }
  assert.equal(uuids.size, 20)
})

test('send() writes id, event and JSON data with ids 1, 2, 3 ...', async () => {
  const { client, entry } = await open('/send')
  const sent = [
    ['update', { message: 'New update available!' }],
    ['exampleEvent', { data: 'Hello, SSE!' }],
    ['update', [1, 2, 3]],
    ['ping', null],
  ]
  for (const [eventName, eventPayload] of sent) {
    assert.equal(entry.sse.send({ eventName, eventPayload }), true)
  }
  let expected = s42Frame(0, 'welcome', { uuid: entry.sse.getUUID() })
  sent.forEach(([name, payload], i) => (expected += s42Frame(i + 1, name, payload)))
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString('utf8'), expected)
  client.close()
})

test('each write to the response holds whole events only', async () => {
  const { client, entry } = await open('/chunks')
  for (let i = 0; i < 50; i++) entry.sse.send({ eventName: 'n', eventPayload: { i, pad: 'x'.repeat(i * 37) } })
  const response = await client.waitForBody((body) => splitEvents(body).length === 51)
  for (const chunk of response.chunks) {
    const text = chunk.toString('utf8')
    assert.ok(text.startsWith('id: '), `chunk starts at an event boundary: ${JSON.stringify(text.slice(0, 20))}`)
    assert.ok(text.endsWith('\n\n'), 'chunk ends with a complete event')
  }
  client.close()
})

test('close() ends the response and the client sees the end of the stream', async () => {
  const { client, entry } = await open('/close')
  const finished = deferred()
  entry.res.on('finish', finished.resolve)
  entry.sse.send({ eventName: 'bye', eventPayload: {} })
  entry.sse.close()
  await finished.promise
  const response = await client.waitForBody((_, parsed) => parsed.complete)
  assert.equal(response.complete, true, 'terminating zero-length chunk received')
  assert.equal(
    response.body.toString('utf8'),
    s42Frame(0, 'welcome', { uuid: entry.sse.getUUID() }) + s42Frame(1, 'bye', {}),
  )
  assert.equal(entry.res.writableEnded, true)
  client.close()
})

test('events sent in one tick reach the socket in one write, in order', async () => {
  let sse
  const opened = deferred()
  const local = await startServer((req, res) => {
    sse = new SSE(req, res)
    for (let i = 1; i <= 10; i++) sse.send({ eventName: 'same-tick', eventPayload: { i } })
    opened.resolve()
  })
  const client = rawGet(local.port, '/')
  await opened.promise
  let response = await client.waitForBody((body) => splitEvents(body).length === 11)
  assert.equal(response.chunks.length, 1, 'welcome and 10 events in one chunk')
  // A later tick: its events form the next chunk.
  await new Promise((resolve) => setImmediate(resolve))
  for (let i = 11; i <= 15; i++) sse.send({ eventName: 'next-tick', eventPayload: { i } })
  response = await client.waitForBody((body) => splitEvents(body).length === 16)
  assert.equal(response.chunks.length, 2)
  let expected = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
  for (let i = 1; i <= 15; i++) expected += s42Frame(i, i <= 10 ? 'same-tick' : 'next-tick', { i })
  assert.equal(response.body.toString(), expected)
  client.close()
  await local.close()
})

test('a large burst in one tick is written in bounded chunks, in order', async () => {
  let sse
  const opened = deferred()
  // The writes the library makes, not the chunks on the wire: from Node 24
  // on, Node joins the writes of one tick into one HTTP chunk.
  const writes = []
  const local = await startServer((req, res) => {
    const write = res.write
    res.write = function (chunk, ...rest) {
      writes.push(chunk.length)
      return write.call(this, chunk, ...rest)
    }
    sse = new SSE(req, res)
    opened.resolve()
  })
  const client = rawGet(local.port, '/')
  await opened.promise
  const big = 'y'.repeat(10_000)
  for (let i = 1; i <= 300; i++) sse.send({ eventName: 'big', eventPayload: { i, big } })
  const response = await client.waitForBody((body) => splitEvents(body).length === 301, { timeoutMs: 10_000 })
  const events = splitEvents(response.body.toString())
  for (let i = 1; i <= 300; i++) assert.equal(events[i], s42Frame(i, 'big', { i, big }))
  assert.ok(writes.length >= 3, `3 MB went out in ${writes.length} writes`)
  for (const length of writes) assert.ok(length <= 256 * 1024, `a write of ${length} bytes`)
  client.close()
  await local.close()
})
