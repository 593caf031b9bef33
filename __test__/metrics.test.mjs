// Observability (docs/operations.md): metrics() and channel.metrics()
// against what real clients received (body bytes read off raw sockets,
// closes by reason with real aborts, close(), other code ending the
// response and an overflowing client), and the node:diagnostics_channel
// messages. The counters belong to the process, so each test compares a
// snapshot taken before with one taken after.
import assert from 'node:assert/strict'
import dc from 'node:diagnostics_channel'
import { after, before, test } from 'node:test'

import { Channel, metrics, SSE } from 'native-sse'
import { deferred, rawGet, runScript, startServer, waitFor } from './helpers.mjs'

const children = new Set()
after(() => {
  for (const child of children) child.kill('SIGKILL')
})

let srv
/** Streams made by the server, in order; options for the next ones. */
const made = []
let nextOptions = { keepAlive: 0 }
before(async () => {
  srv = await startServer((req, res) => {
    const sse = new SSE(req, res, nextOptions)
    made.push({ sse, res })
    made.waiting?.shift()?.()
  })
})
after(() => srv.close())

/** Opens a raw client; resolves once its first bytes (the welcome) are here. */
async function open(headers = {}, { options = { keepAlive: 0 }, welcome = true } = {}) {
  nextOptions = options
  const arrived = new Promise((resolve) => (made.waiting ??= []).push(resolve))
  const client = rawGet(srv.port, '/', headers)
  await arrived
  const { sse, res } = made[made.length - 1]
  if (welcome) await client.waitForBody((body) => body.endsWith('\n\n'))
  return { client, sse, res }
}

/** Body bytes a raw client has received (the chunked framing removed). */
function bodyBytes(client) {
  return client.response()?.body.length ?? 0
}

/** `after - before`, field by field (nested objects too). */
function delta(before, after) {
  const out = {}
  for (const [name, value] of Object.entries(after)) {
    out[name] = typeof value === 'object' && value !== null ? delta(before[name], value) : value - before[name]
  }
  return out
}

function reasonOf(sse) {
  const seen = deferred()
  sse.onClose(seen.resolve)
  return seen.promise
}

test('metrics() is a plain snapshot with every counter', () => {
  const m = metrics()
  assert.deepEqual(Object.keys(m), ['streams', 'events', 'comments', 'heartbeats', 'bytes', 'replays', 'resets', 'channels'])
  assert.deepEqual(Object.keys(m.streams), ['open', 'opened', 'closed'])
  assert.deepEqual(Object.keys(m.streams.closed), ['client', 'server', 'overflow'])
  assert.deepEqual(Object.keys(m.channels), ['open', 'opened', 'closed'])
  // A snapshot: it does not change behind the caller's back.
  const copy = structuredClone(m)
  new Channel().close()
  assert.deepEqual(m, copy)
  assert.equal(metrics().channels.opened, m.channels.opened + 1)
})

test('bytes are the body bytes the clients received; events and comments count calls', async () => {
  const before = metrics()
  const clients = []
  for (let n = 0; n < 3; n++) clients.push(await open())
  const [a, b, c] = clients
  let expectedEvents = 0
  for (let i = 0; i < 50; i++) {
    assert.equal(a.sse.send({ eventName: 'tick', eventPayload: { i, text: 'é€😀' } }), true)
    expectedEvents++
  }
  assert.equal(b.sse.send({ eventName: 'raw', data: Buffer.from([0xff, 0x00, 0x41]) }), true)
  assert.equal(b.sse.send({ eventName: 'named', eventPayload: 1, id: 'own-id' }), true)
  expectedEvents += 2
  assert.equal(b.sse.comment('two\nlines'), true)
  assert.equal(c.sse.comment(), true)
  // A large event, written at once rather than at the end of the tick.
  assert.equal(c.sse.send({ eventName: 'big', data: 'z'.repeat(300 * 1024) }), true)
  expectedEvents++
  // close(): the pending bytes go out in its last chunk.
  assert.equal(c.sse.send({ eventName: 'last', eventPayload: 'bye' }), true)
  expectedEvents++
  c.sse.close()
  // Calls on a closed stream count nothing.
  assert.equal(c.sse.send({ eventName: 'late', eventPayload: 0 }), false)
  assert.equal(c.sse.comment('late'), false)

  await a.client.waitForBody((body) => body.includes('"i":49'))
  await b.client.waitForBody((body) => body.includes('id: own-id'))
  await waitFor(() => c.client.response()?.complete === true, { what: 'the closed body' })
  const d = delta(before, metrics())
  const received = clients.reduce((sum, { client }) => sum + bodyBytes(client), 0)
  assert.equal(d.bytes, received)
  assert.equal(d.events, expectedEvents)
  assert.equal(d.comments, 2)
  assert.equal(d.heartbeats, 0)
  assert.deepEqual(d.streams, { open: 2, opened: 3, closed: { client: 0, server: 1, overflow: 0 } })
  for (const { client } of clients) client.close()
  await waitFor(() => metrics().streams.open === before.streams.open, { what: 'the streams to close' })
  assert.deepEqual(delta(before, metrics()).streams.closed, { client: 2, server: 1, overflow: 0 })
})

test('closes count by reason: a client abort, close(), res.end() and an overflowing client', async () => {
  const before = metrics()
  const leaving = await open()
  const closing = await open()
  const ending = await open()
  const overflowing = await open({}, { options: { keepAlive: 0, maxBufferedBytes: 1000 } })
  const reasons = Promise.all([leaving, closing, ending, overflowing].map(({ sse }) => reasonOf(sse)))

  leaving.client.close()
  closing.sse.close()
  ending.res.end()
  assert.equal(overflowing.sse.send({ eventName: 'a', eventPayload: 'x'.repeat(500) }), true)
  assert.equal(overflowing.sse.send({ eventName: 'b', eventPayload: 'x'.repeat(600) }), false)

  assert.deepEqual(await reasons, ['client', 'server', 'server', 'overflow'])
  await waitFor(() => overflowing.client.ended, { what: 'the overflowing connection to be cut' })
  await waitFor(() => closing.client.response()?.complete && ending.client.response()?.complete, { what: 'the ended bodies' })
  const d = delta(before, metrics())
  assert.deepEqual(d.streams, { open: 0, opened: 4, closed: { client: 1, server: 2, overflow: 1 } })
  // The overflowing client's two events were dropped, never written.
  assert.equal(d.events, 2)
  const received = [leaving, closing, ending, overflowing].reduce((sum, { client }) => sum + bodyBytes(client), 0)
  assert.equal(d.bytes, received)
  for (const { client } of [closing, ending]) client.close()
})

test('heartbeats count, with their bytes', async () => {
  const before = metrics()
  const { client, sse } = await open({}, { options: { keepAlive: 20 } })
  await client.waitForBody((body) => body.split(':\n\n').length > 3, { timeoutMs: 5000 })
  sse.close()
  await waitFor(() => client.response()?.complete === true, { what: 'the end' })
  const d = delta(before, metrics())
  const beats = client.response().body.toString().split(':\n\n').length - 1
  assert.ok(beats >= 3)
  assert.equal(d.heartbeats, beats)
  assert.equal(d.bytes, bodyBytes(client))
  client.close()
})

test('channel.metrics(): members, broadcasts, deliveries, bytes, replays, resets, joins and leaves as the members received them', async () => {
  const before = metrics()
  const channel = new Channel({ historyEvents: 5 })
  const members = []
  for (let n = 0; n < 3; n++) members.push(await open())
  const welcomes = members.map(({ client }) => bodyBytes(client))
  for (const { sse } of members) assert.equal(channel.add(sse), true)
  const ids = []
  for (let i = 0; i < 8; i++) ids.push(channel.broadcast({ eventName: 'news', eventPayload: { i } }))
  const chosen = members[1].sse.getUUID()
  channel.broadcast({ eventName: 'one', eventPayload: 'only b' }, { to: [chosen] })
  channel.broadcast({ eventName: 'pick', eventPayload: 'a and c' }, { to: (sse) => sse.getUUID() !== chosen })

  // Joining with Last-Event-ID: a replay (id in the history), a reset (too
  // old for it) and a reset (not an id of this channel).
  const replaying = await open({ 'Last-Event-ID': ids[5] })
  const tooOld = await open({ 'Last-Event-ID': ids[0] })
  const unknown = await open({ 'Last-Event-ID': 'nope' })
  const joiners = [replaying, tooOld, unknown]
  const joinerWelcomes = joiners.map(({ client }) => bodyBytes(client))
  for (const { sse } of joiners) assert.equal(channel.add(sse), true)

  await replaying.client.waitForBody((body) => body.includes('"i":7'))
  await tooOld.client.waitForBody((body) => body.includes('event: reset'))
  await unknown.client.waitForBody((body) => body.includes('event: reset'))
  await members[2].client.waitForBody((body) => body.includes('a and c'))

  const m = channel.metrics()
  assert.deepEqual(Object.keys(m), ['members', 'broadcasts', 'deliveries', 'bytes', 'replays', 'resets', 'joined', 'left', 'redis'])
  assert.equal(m.members, 6)
  assert.equal(m.joined, 6)
  assert.deepEqual(m.left, { client: 0, server: 0, overflow: 0, removed: 0 })
  assert.equal(m.broadcasts, 10)
  assert.equal(m.deliveries, 8 * 3 + 1 + 2)
  assert.equal(m.replays, 1)
  assert.equal(m.resets, 2)
  assert.equal(m.redis, null)
  const channelBytes = [...members, ...joiners].reduce((sum, { client }, n) => sum + bodyBytes(client) - [...welcomes, ...joinerWelcomes][n], 0)
  assert.equal(m.bytes, channelBytes)

  const d = delta(before, metrics())
  assert.equal(d.events, m.deliveries)
  assert.equal(d.replays, 1)
  assert.equal(d.resets, 2)
  assert.equal(d.channels.open, 1)
  const received = [...members, ...joiners].reduce((sum, { client }) => sum + bodyBytes(client), 0)
  assert.equal(d.bytes, received)

  // Members leave: the client goes, the server closes, remove(), close().
  const gone = new Promise((resolve) => members[1].sse.onClose(resolve))
  members[1].client.close()
  assert.equal(await gone, 'client')
  members[2].sse.close()
  channel.remove(members[0].sse)
  assert.equal(channel.metrics().members, 3)
  assert.deepEqual(channel.metrics().left, { client: 1, server: 1, overflow: 0, removed: 1 })
  channel.close()
  assert.equal(channel.metrics().members, 0)
  assert.deepEqual(channel.metrics().left, { client: 1, server: 1, overflow: 0, removed: 4 })
  assert.equal(channel.metrics().joined, 6)
  assert.equal(channel.metrics().broadcasts, 10)
  assert.equal(delta(before, metrics()).channels.open, 0)
  for (const { client } of [...members, ...joiners]) client.close()
  await waitFor(() => metrics().streams.open === before.streams.open, { what: 'the streams to close' })
  assert.throws(() => Channel.prototype.metrics.call({}), { name: 'TypeError', code: 'ERR_SSE_INVALID_ARGUMENT' })
})

test('a Fetch-form member counts like a Node one, its opening heartbeat included', async () => {
  const before = metrics()
  const sse = new SSE(new Request('http://127.0.0.1/events'), { keepAlive: 60_000 })
  const reader = sse.getResponse().body.getReader()
  let received = 0
  const read = async () => {
    const { value } = await reader.read()
    received += value.byteLength
    return new TextDecoder().decode(value)
  }
  // Nothing was sent: the runtime's first read gets the opening heartbeat.
  assert.equal(await read(), ':\n\n')
  sse.send({ eventName: 'e', eventPayload: 1 })
  assert.match(await read(), /event: e/)
  sse.close()
  const d = delta(before, metrics())
  assert.equal(d.heartbeats, 1)
  assert.equal(d.events, 1)
  assert.equal(d.bytes, received)
  assert.deepEqual(d.streams, { open: 0, opened: 1, closed: { client: 0, server: 1, overflow: 0 } })
  await reader.cancel()
})

// ----- node:diagnostics_channel -----

/** Subscribes to the stream channels; `stop()` unsubscribes. */
function listen() {
  const seen = []
  const names = ['native-sse:stream:open', 'native-sse:stream:close', 'native-sse:stream:overflow']
  const handlers = names.map((name) => {
    const handler = (message, channelName) => seen.push({ name: channelName, message })
    dc.subscribe(name, handler)
    return [name, handler]
  })
  return {
    seen,
    of: (uuid) => seen.filter(({ message }) => message.uuid === uuid).map(({ name, message }) => [name.slice('native-sse:stream:'.length), message]),
    stop: () => {
      for (const [name, handler] of handlers) dc.unsubscribe(name, handler)
    },
  }
}

test('diagnostics_channel: open, close with the reason, overflow with the bytes held', async () => {
  const subscriber = listen()
  try {
    const resumed = await open({ 'Last-Event-ID': '7' })
    const leaving = await open()
    const overflowing = await open({}, { options: { keepAlive: 0, maxBufferedBytes: 1000 } })
    const reasons = Promise.all([resumed, leaving, overflowing].map(({ sse }) => reasonOf(sse)))
    resumed.sse.close()
    leaving.client.close()
    overflowing.sse.send({ eventName: 'a', eventPayload: 'x'.repeat(500) })
    overflowing.sse.send({ eventName: 'b', eventPayload: 'x'.repeat(600) })
    assert.deepEqual(await reasons, ['server', 'client', 'overflow'])

    assert.deepEqual(subscriber.of(resumed.sse.getUUID()), [
      ['open', { uuid: resumed.sse.getUUID(), form: 'node', lastEventId: '7' }],
      ['close', { uuid: resumed.sse.getUUID(), reason: 'server' }],
    ])
    assert.deepEqual(subscriber.of(leaving.sse.getUUID()), [
      ['open', { uuid: leaving.sse.getUUID(), form: 'node', lastEventId: null }],
      ['close', { uuid: leaving.sse.getUUID(), reason: 'client' }],
    ])
    const uuid = overflowing.sse.getUUID()
    const events = subscriber.of(uuid)
    assert.deepEqual(events.map(([kind]) => kind), ['open', 'overflow', 'close'])
    const { bufferedBytes } = events[1][1]
    // Both events were queued when the cap was passed: their frames, more
    // than the cap.
    const frames = ['a', 'b'].map((name, i) => `id: ${i + 1}\nevent: ${name}\ndata: "${'x'.repeat([500, 600][i])}"\n\n`)
    assert.equal(bufferedBytes, Buffer.byteLength(frames.join('')))
    assert.ok(bufferedBytes > 1000)
    assert.deepEqual(events[2][1], { uuid, reason: 'overflow' })

    const sse = new SSE(new Request('http://127.0.0.1/x'))
    sse.close()
    assert.deepEqual(subscriber.of(sse.getUUID()), [
      ['open', { uuid: sse.getUUID(), form: 'fetch', lastEventId: null }],
      ['close', { uuid: sse.getUUID(), reason: 'server' }],
    ])
    for (const { client } of [resumed, overflowing]) client.close()
  } finally {
    subscriber.stop()
  }
  // Unsubscribed: nothing is published any more.
  const count = subscriber.seen.length
  const { client, sse } = await open()
  sse.close()
  client.close()
  assert.equal(dc.channel('native-sse:stream:open').hasSubscribers, false)
  assert.equal(subscriber.seen.length, count)
})

test('diagnostics_channel: a subscriber that throws is an uncaught exception; the stream and other subscribers go on', async () => {
  const { code, report, stderr } = await runScript('__test__/fixtures/diagnostics-throw.mjs', [], { children, timeoutMs: 30_000 })
  assert.equal(code, 0, stderr)
  assert.ok(report !== null, stderr)
  // One uncaught error per message the throwing subscriber got: open, close.
  assert.deepEqual(report.uncaught, ['open', 'close'])
  // The other subscriber got both messages; the client every event.
  assert.deepEqual(report.seen, ['open', 'close'])
  assert.equal(report.events, 20)
  assert.equal(report.complete, true)
  assert.equal(report.reason, 'server')
})
