// Channel (in-process): broadcast once to many streams, channel ids, the
// bounded history and what a returning client receives, targeting, the
// flush window, and members that end or stall. Real HTTP servers on
// 127.0.0.1, raw sockets for exact bytes, the eventsource client for resume.
import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, test } from 'node:test'

import { EventSource } from 'eventsource'
import { Channel, SSE } from 'native-sse'
import { rawGet, splitEvents, startServer, waitFor } from './helpers.mjs'

const ID = /^\d+-\d+$/

// One server for the file: each request opens an SSE stream and joins the
// channel the test set (query `?nojoin` leaves it out).
let srv
let channel = null
let sseOptions = { keepAlive: 0 }
const opened = []
before(async () => {
  srv = await startServer((req, res) => {
    const sse = new SSE(req, res, sseOptions)
    const joined = req.url.includes('nojoin') ? null : channel.add(sse)
    opened.push({ sse, res, joined })
  })
})
after(() => srv.close())

/** Connects a raw client; resolves once its stream has been opened and what the channel wrote on joining has arrived. */
async function join(headers = {}, path = '/') {
  const index = opened.length
  const client = rawGet(srv.port, path, headers)
  await waitFor(() => opened.length > index, { what: 'the server to open the stream' })
  const { sse, res, joined } = opened[index]
  await client.waitForBody((body) => body.endsWith('\n\n'))
  return { client, sse, res, joined, body: () => client.response()?.body.toString('utf8') ?? '' }
}

function welcome(sse, withId = true) {
  return `${withId ? 'id: 0\n' : ''}event: welcome\ndata: {"uuid":"${sse.getUUID()}"}\n\n`
}

function frame(id, name, payload) {
  return `id: ${id}\nevent: ${name}\ndata: ${JSON.stringify(payload)}\n\n`
}

function nextTick() {
  return new Promise((resolve) => setImmediate(resolve))
}

test('broadcast frames once with a channel id; members get the welcome, the position, then the events', async () => {
  channel = new Channel()
  const head = channel.lastEventId
  assert.match(head, ID)
  assert.equal(head.split('-')[1], '0', 'a new channel stands at <epoch>-0')
  const a = await join()
  const b = await join()
  assert.equal(a.joined, true)
  assert.equal(channel.size, 2)
  for (const m of [a, b]) assert.equal(m.body(), welcome(m.sse) + `id: ${head}\n\n`)

  const id1 = channel.broadcast({ eventName: 'tick', eventPayload: { n: 1 } })
  const id2 = channel.broadcast({ eventName: 'text', data: 'two\nlines' })
  assert.match(id1, ID)
  const [epoch] = head.split('-')
  assert.equal(id1, `${epoch}-1`)
  assert.equal(id2, `${epoch}-2`)
  assert.equal(channel.lastEventId, id2)
  const expected = frame(id1, 'tick', { n: 1 }) + `id: ${id2}\nevent: text\ndata: two\ndata: lines\n\n`
  for (const m of [a, b]) {
    await m.client.waitForBody((body) => body.endsWith(expected))
    assert.equal(m.body(), welcome(m.sse) + `id: ${head}\n\n` + expected)
  }
  a.client.close()
  b.client.close()
  channel.close()
})

test('the events of one tick reach each member in one write of one shared Buffer', async () => {
  channel = new Channel()
  const members = [await join(), await join(), await join()]
  const writes = members.map(() => [])
  for (const [i, m] of members.entries()) {
    const write = m.res.write
    m.res.write = function (chunk, ...rest) {
      writes[i].push(chunk)
      return write.call(this, chunk, ...rest)
    }
  }
  await nextTick()
  const ids = [1, 2, 3].map((n) => channel.broadcast({ eventName: 'n', eventPayload: n }))
  await nextTick()
  for (const w of writes) assert.equal(w.length, 1, 'one res.write per member for the tick')
  assert.ok(Buffer.isBuffer(writes[0][0]), 'a Buffer')
  assert.equal(writes[1][0], writes[0][0], 'the same Buffer object for every member')
  assert.equal(writes[2][0], writes[0][0])
  assert.equal(writes[0][0].toString(), ids.map((id, i) => frame(id, 'n', i + 1)).join(''))

  // A member that also got its own event in the tick keeps the order.
  members[1].sse.send({ eventName: 'own', eventPayload: 'a' })
  const id4 = channel.broadcast({ eventName: 'n', eventPayload: 4 })
  members[1].sse.send({ eventName: 'own', eventPayload: 'b' })
  await nextTick()
  assert.equal(writes[1].length, 2)
  assert.equal(String(writes[1][1]), frame(1, 'own', 'a') + frame(id4, 'n', 4) + frame(2, 'own', 'b'))
  assert.equal(String(writes[0][1]), frame(id4, 'n', 4))
  for (const m of members) m.client.close()
  channel.close()
})

test('in one tick, whatever else a member gets comes after the broadcasts before it: send, close, remove, channel close', async () => {
  channel = new Channel()
  const [sender, closer, removed, kept] = [await join(), await join(), await join(), await join()]
  await nextTick()
  const before = new Map([sender, closer, removed, kept].map((m) => [m, m.body().length]))
  const b1 = channel.broadcast({ eventName: 'b', eventPayload: 1 })
  sender.sse.send({ eventName: 'own', eventPayload: 'after b1' })
  closer.sse.close()
  channel.remove(removed.sse)
  const b2 = channel.broadcast({ eventName: 'b', eventPayload: 2 })
  channel.close()
  const tail = (m) => m.body().slice(before.get(m))
  await sender.client.waitForBody((body) => body.endsWith(frame(b2, 'b', 2)))
  assert.equal(tail(sender), frame(b1, 'b', 1) + frame(1, 'own', 'after b1') + frame(b2, 'b', 2))
  await closer.client.waitForBody((body, parsed) => parsed.complete)
  assert.equal(tail(closer), frame(b1, 'b', 1), 'close() writes the broadcast before ending')
  await removed.client.waitForBody((body) => body.endsWith(frame(b1, 'b', 1)))
  await kept.client.waitForBody((body) => body.endsWith(frame(b2, 'b', 2)))
  assert.equal(tail(kept), frame(b1, 'b', 1) + frame(b2, 'b', 2), 'channel.close() writes what was broadcast')
  await nextTick()
  assert.equal(tail(removed), frame(b1, 'b', 1), 'a removed member keeps what was broadcast before, nothing after')
  for (const m of [sender, closer, removed, kept]) m.client.close()
})

test('a stream in two channels gets their events in the order they were broadcast', async () => {
  channel = new Channel()
  const other = new Channel()
  const both = await join()
  const only = await join()
  assert.equal(other.add(both.sse), true)
  // The welcome and one position line from each channel.
  await both.client.waitForBody((body) => splitEvents(body).length === 3)
  const start = both.body().length
  const a1 = channel.broadcast({ eventName: 'a', eventPayload: 1 })
  const b1 = other.broadcast({ eventName: 'b', eventPayload: 1 })
  const a2 = channel.broadcast({ eventName: 'a', eventPayload: 2 })
  await nextTick()
  const b2 = other.broadcast({ eventName: 'b', eventPayload: 2 })
  const a3 = channel.broadcast({ eventName: 'a', eventPayload: 3 })
  const expected = frame(a1, 'a', 1) + frame(b1, 'b', 1) + frame(a2, 'a', 2) + frame(b2, 'b', 2) + frame(a3, 'a', 3)
  await both.client.waitForBody((body) => body.length >= start + expected.length)
  assert.equal(both.body().slice(start), expected)
  await only.client.waitForBody((body) => body.endsWith(frame(a3, 'a', 3)))
  assert.ok(!only.body().includes('event: b'))
  // Back in one channel, it takes that channel's shared writes again.
  other.remove(both.sse)
  await nextTick()
  const a4 = channel.broadcast({ eventName: 'a', eventPayload: 4 })
  await both.client.waitForBody((body) => body.endsWith(frame(a4, 'a', 4)))
  other.close()
  for (const m of [both, only]) m.client.close()
  channel.close()
})

test('1000 real connections: every member receives every event exactly once, in order', async () => {
  channel = new Channel()
  const COUNT = 1000
  const EVENTS = 40
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })
  const bodies = []
  const requests = []
  const start = opened.length
  for (let i = 0; i < COUNT; i++) {
    const text = { value: '' }
    bodies.push(text)
    requests.push(
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: srv.port, agent }, (res) => {
          res.setEncoding('utf8')
          res.on('data', (d) => (text.value += d))
          resolve(req)
        })
        req.on('error', reject)
      }),
    )
  }
  const clients = await Promise.all(requests)
  await waitFor(() => channel.size === COUNT, { timeoutMs: 20000, what: `${COUNT} members` })
  const ids = []
  for (let n = 0; n < EVENTS; n++) {
    ids.push(channel.broadcast({ eventName: 'seq', eventPayload: { n } }))
    if (n % 4 === 3) await nextTick()
  }
  const tail = ids.map((id, n) => frame(id, 'seq', { n })).join('')
  await waitFor(() => bodies.every((b) => b.value.endsWith(tail)), { timeoutMs: 30000, what: 'every event at every client' })
  for (const [i, b] of bodies.entries()) {
    const { sse } = opened[start + i]
    const events = splitEvents(b.value)
    assert.equal(events.length, 2 + EVENTS, `client ${i}: welcome, position and ${EVENTS} events, nothing twice`)
    assert.ok(b.value.endsWith(tail))
    assert.ok(b.value.includes(`"uuid":"`))
    assert.ok(sse.getUUID())
  }
  for (const c of clients) c.destroy()
  agent.destroy()
  await waitFor(() => channel.size === 0, { timeoutMs: 10000, what: 'members to leave when their clients go' })
  channel.close()
})

test('a returning client receives exactly the missed events, then live ones', async () => {
  channel = new Channel()
  const first = await join()
  const ids = [1, 2, 3].map((n) => channel.broadcast({ eventName: 'e', eventPayload: n }))
  await first.client.waitForBody((body) => body.endsWith(frame(ids[2], 'e', 3)))
  first.client.close()
  await waitFor(() => channel.size === 0, { what: 'the first member to leave' })
  const missed = [4, 5, 6].map((n) => channel.broadcast({ eventName: 'e', eventPayload: n }))

  const back = await join({ 'Last-Event-ID': ids[2] })
  assert.equal(back.sse.lastEventId, ids[2])
  // Live events right after joining come after the replay.
  const live = channel.broadcast({ eventName: 'e', eventPayload: 7 })
  const expected =
    welcome(back.sse, false) + missed.map((id, i) => frame(id, 'e', i + 4)).join('') + frame(live, 'e', 7)
  await back.client.waitForBody((body) => body.length >= expected.length)
  assert.equal(back.body(), expected, 'no welcome id, no gap, no duplicate')

  // Exactly at the head: nothing to replay.
  const atHead = await join({ 'Last-Event-ID': live })
  assert.equal(atHead.body(), welcome(atHead.sse, false))
  const next = channel.broadcast({ eventName: 'e', eventPayload: 8 })
  await atHead.client.waitForBody((body) => body.endsWith(frame(next, 'e', 8)))
  assert.equal(atHead.body(), welcome(atHead.sse, false) + frame(next, 'e', 8))

  // The lastEventId query parameter works the same way.
  const byQuery = await join({}, `/?lastEventId=${encodeURIComponent(missed[2])}`)
  assert.equal(byQuery.body(), welcome(byQuery.sse, false) + frame(live, 'e', 7) + frame(next, 'e', 8))
  for (const m of [back, atHead, byQuery]) m.client.close()
  channel.close()
})

test('ids older than the history get a reset event with the current position', async () => {
  channel = new Channel({ historyEvents: 5 })
  const ids = []
  for (let n = 1; n <= 10; n++) ids.push(channel.broadcast({ eventName: 'e', eventPayload: n }))
  const head = ids[9]

  const old = await join({ 'Last-Event-ID': ids[3] })
  assert.equal(old.body(), welcome(old.sse, false) + `id: ${head}\nevent: reset\ndata: {"reason":"expired"}\n\n`)
  // The oldest id still resumable is the newest one dropped.
  const edge = await join({ 'Last-Event-ID': ids[4] })
  await edge.client.waitForBody((body) => body.endsWith(frame(head, 'e', 10)))
  assert.equal(edge.body(), welcome(edge.sse, false) + ids.slice(5).map((id, i) => frame(id, 'e', i + 6)).join(''))

  // After the reset the client stands at the head and resumes from there.
  const live = channel.broadcast({ eventName: 'e', eventPayload: 11 })
  await old.client.waitForBody((body) => body.endsWith(frame(live, 'e', 11)))
  for (const m of [old, edge]) m.client.close()
  channel.close()
})

test('the byte bound of the history drops old events too', async () => {
  channel = new Channel({ historyBytes: 200 })
  const ids = []
  for (let n = 1; n <= 10; n++) ids.push(channel.broadcast({ eventName: 'e', eventPayload: 'x'.repeat(40) }))
  const old = await join({ 'Last-Event-ID': ids[0] })
  assert.match(old.body(), /event: reset\ndata: \{"reason":"expired"\}\n\n$/)
  const recent = await join({ 'Last-Event-ID': ids[8] })
  await recent.client.waitForBody((body) => body.endsWith(frame(ids[9], 'e', 'x'.repeat(40))))
  for (const m of [old, recent]) m.client.close()
  channel.close()
})

test('unknown and hostile Last-Event-ID values get a reset or count as absent, and crash nothing', async () => {
  channel = new Channel()
  const head = channel.broadcast({ eventName: 'e', eventPayload: 1 })
  const [epoch, seq] = head.split('-')
  const reset = (reason) => `id: ${head}\nevent: reset\ndata: {"reason":"${reason}"}\n\n`
  const unknown = [
    `${Number(epoch) - 1}-0`, // an earlier process's channel
    `${epoch}-${Number(seq) + 1}`, // not reached yet
    `${epoch}-18446744073709551615`,
    '0', // the welcome's id
    'abc',
    `${epoch}-01`,
    '99999999999999999999999-1',
    '"><script>alert(1)</script>',
  ]
  for (const value of unknown) {
    const m = await join({ 'Last-Event-ID': value })
    assert.equal(m.body(), welcome(m.sse, false) + reset('unknown'), `Last-Event-ID ${value}`)
    m.client.close()
  }
  // Values outside the accepted form are treated as absent: a fresh member.
  for (const value of ['x'.repeat(129), 'a b', 'caf\u00e9']) {
    const m = await join({ 'Last-Event-ID': value })
    assert.equal(m.sse.lastEventId, null)
    assert.equal(m.body(), welcome(m.sse) + `id: ${head}\n\n`)
    m.client.close()
  }
  const again = await join({ 'Last-Event-ID': head })
  assert.equal(again.body(), welcome(again.sse, false))
  again.client.close()
  channel.close()
})

test('the eventsource client resumes across reconnects without losing its position', async () => {
  channel = new Channel()
  sseOptions = { keepAlive: 0, retry: 50 }
  const seen = []
  const es = new EventSource(`${srv.url}/`)
  try {
    es.addEventListener('e', (event) => seen.push({ data: event.data, id: event.lastEventId }))
    await waitFor(() => channel.size === 1, { what: 'the client to join' })
    const ids = [1, 2].map((n) => channel.broadcast({ eventName: 'e', eventPayload: n }))
    await waitFor(() => seen.length === 2, { what: 'two events' })

    // The server ends the stream; events broadcast before the client is back
    // are replayed when it reconnects with Last-Event-ID.
    const count = opened.length
    opened[count - 1].sse.close()
    ids.push(channel.broadcast({ eventName: 'e', eventPayload: 3 }))
    await waitFor(() => opened.length === count + 1, { what: 'the reconnect' })
    assert.equal(opened[count].sse.lastEventId, ids[1])
    // Ended again right after the welcome: the welcome carries no id, so the
    // client's position is still the last event it saw.
    await waitFor(() => seen.length === 3, { what: 'the replayed event' })
    opened[count].sse.close()
    ids.push(channel.broadcast({ eventName: 'e', eventPayload: 4 }))
    await waitFor(() => opened.length === count + 2, { what: 'the second reconnect' })
    assert.equal(opened[count + 1].sse.lastEventId, ids[2])
    await waitFor(() => seen.length === 4, { what: 'the fourth event' })
    assert.deepEqual(
      seen,
      ids.map((id, i) => ({ data: String(i + 1), id })),
    )
  } finally {
    es.close()
    sseOptions = { keepAlive: 0 }
    channel.close()
  }
})

test('targeted broadcasts: a UUID list or a predicate; they take ids but are not replayed', async () => {
  channel = new Channel()
  const a = await join()
  const b = await join()
  const base = { a: a.body().length, b: b.body().length }
  const toA = channel.broadcast({ eventName: 'private', eventPayload: 'for a' }, { to: [a.sse.getUUID()] })
  const toB = channel.broadcast({ eventName: 'private', eventPayload: 'for b' }, { to: (sse) => sse === b.sse })
  const all = channel.broadcast({ eventName: 'public', eventPayload: 'all' })
  await a.client.waitForBody((body) => body.endsWith(frame(all, 'public', 'all')))
  await b.client.waitForBody((body) => body.endsWith(frame(all, 'public', 'all')))
  assert.equal(a.body().slice(base.a), frame(toA, 'private', 'for a') + frame(all, 'public', 'all'))
  assert.equal(b.body().slice(base.b), frame(toB, 'private', 'for b') + frame(all, 'public', 'all'))
  const [, s1] = toA.split('-')
  const [, s3] = all.split('-')
  assert.equal(Number(s3), Number(s1) + 2, 'ids keep increasing across targeted events')

  // A client that comes back before the targeted events gets only the public one.
  const back = await join({ 'Last-Event-ID': channel.lastEventId.replace(/-\d+$/, '-0') })
  await back.client.waitForBody((body) => body.endsWith(frame(all, 'public', 'all')))
  assert.equal(back.body(), welcome(back.sse, false) + frame(all, 'public', 'all'))
  // Resuming from a targeted event's id works too.
  const fromTargeted = await join({ 'Last-Event-ID': toB })
  await fromTargeted.client.waitForBody((body) => body.endsWith(frame(all, 'public', 'all')))

  // Nobody matches: the id is still used.
  const none = channel.broadcast({ eventName: 'private', eventPayload: 0 }, { to: [] })
  assert.match(none, ID)
  for (const m of [a, b, back, fromTargeted]) m.client.close()
  channel.close()
})

test('replay: false events are live-only: delivered now, never replayed, and their ids are positions', async () => {
  channel = new Channel()
  const a = await join()
  const kept = channel.broadcast({ eventName: 'news', eventPayload: 1 })
  const tick = channel.broadcast({ eventName: 'clock', eventPayload: 't' }, { replay: false })
  const after = channel.broadcast({ eventName: 'news', eventPayload: 2 })
  const live = frame(kept, 'news', 1) + frame(tick, 'clock', 't') + frame(after, 'news', 2)
  await a.client.waitForBody((body) => body.endsWith(live))
  const back = await join({ 'Last-Event-ID': kept })
  assert.equal(back.body(), welcome(back.sse, false) + frame(after, 'news', 2), 'the clock tick is not replayed')
  const fromTick = await join({ 'Last-Event-ID': tick })
  assert.equal(fromTick.body(), welcome(fromTick.sse, false) + frame(after, 'news', 2))
  assert.throws(
    () => channel.broadcast({ eventName: 'x', eventPayload: 1 }, { replay: 'no' }),
    (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_OPTION',
  )
  for (const m of [a, back, fromTick]) m.client.close()
  channel.close()
})

test('bad input: a TypeError with a stable code, nothing written, no id used', async () => {
  channel = new Channel()
  const m = await join()
  const before = channel.lastEventId
  const cases = [
    [() => channel.broadcast('nope'), 'ERR_SSE_INVALID_EVENT'],
    [() => channel.broadcast({ eventPayload: 1 }), 'ERR_SSE_INVALID_EVENT_NAME'],
    [() => channel.broadcast({ eventName: 'a\nb', eventPayload: 1 }), 'ERR_SSE_INVALID_EVENT_NAME'],
    [() => channel.broadcast({ eventName: 'a\uD800b', eventPayload: 1 }), 'ERR_SSE_INVALID_EVENT_NAME'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: 1n }), 'ERR_SSE_INVALID_PAYLOAD'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: undefined }), 'ERR_SSE_INVALID_PAYLOAD'],
    [() => channel.broadcast({ eventName: 'e', data: 5 }), 'ERR_SSE_INVALID_DATA'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: 1, id: 'x' }), 'ERR_SSE_INVALID_EVENT_ID'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: 1 }, 5), 'ERR_SSE_INVALID_OPTION'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: 1 }, { to: 'uuid' }), 'ERR_SSE_INVALID_OPTION'],
    [() => channel.broadcast({ eventName: 'e', eventPayload: 1 }, { to: [1] }), 'ERR_SSE_INVALID_OPTION'],
    [() => channel.add({}), 'ERR_SSE_INVALID_ARGUMENT'],
    [() => channel.add(null), 'ERR_SSE_INVALID_ARGUMENT'],
    [() => channel.remove('x'), 'ERR_SSE_INVALID_ARGUMENT'],
    [() => new Channel(1), 'ERR_SSE_INVALID_OPTION'],
    [() => new Channel({ historyEvents: -1 }), 'ERR_SSE_INVALID_OPTION'],
    [() => new Channel({ historyBytes: 1.5 }), 'ERR_SSE_INVALID_OPTION'],
    [() => new Channel({ flushWindow: '10' }), 'ERR_SSE_INVALID_OPTION'],
    [() => new Channel({ stream: 's' }), 'ERR_SSE_INVALID_OPTION'],
    [() => new Channel({ redis: {}, stream: 's' }), 'ERR_SSE_INVALID_OPTION'],
  ]
  for (const [call, code] of cases) {
    assert.throws(call, (err) => err instanceof TypeError && err.code === code, `${call}`)
  }
  // A throwing predicate: its error, and nothing sent.
  assert.throws(
    () => channel.broadcast({ eventName: 'e', eventPayload: 1 }, { to: () => { throw new Error('boom') } }),
    /boom/,
  )
  assert.equal(channel.lastEventId, before, 'no id was used')
  await nextTick()
  const id = channel.broadcast({ eventName: 'ok', eventPayload: 1 })
  await m.client.waitForBody((body) => body.endsWith(frame(id, 'ok', 1)))
  assert.equal(m.body(), welcome(m.sse) + `id: ${before}\n\n` + frame(id, 'ok', 1))
  m.client.close()

  channel.close()
  channel.close()
  for (const call of [() => channel.broadcast({ eventName: 'e', eventPayload: 1 }), () => channel.add(m.sse)]) {
    assert.throws(call, (err) => !(err instanceof TypeError) && err.code === 'ERR_SSE_CHANNEL_CLOSED')
  }
})

test('membership: leaving on close, remove(), adding twice, adding an ended stream', async () => {
  channel = new Channel()
  const a = await join()
  const b = await join()
  assert.equal(channel.add(a.sse), true, 'adding again is harmless')
  assert.equal(channel.size, 2)
  assert.equal(channel.remove(b.sse), true)
  assert.equal(channel.remove(b.sse), false)
  assert.equal(channel.size, 1)
  const id = channel.broadcast({ eventName: 'e', eventPayload: 1 })
  await a.client.waitForBody((body) => body.endsWith(frame(id, 'e', 1)))
  await nextTick()
  assert.ok(!b.body().includes(id), 'a removed member gets nothing')
  assert.equal(b.sse.closed, false, 'and its stream stays open')

  a.sse.close()
  assert.equal(channel.size, 0, 'close() leaves at once')
  b.client.close()
  await waitFor(() => b.sse.closed)
  assert.equal(channel.add(b.sse), false, 'an ended stream does not join')
  assert.equal(channel.size, 0)
  channel.close()
})

test('a member that stops reading is closed by its cap; the others get everything', async () => {
  channel = new Channel()
  sseOptions = { keepAlive: 0, maxBufferedBytes: 256 * 1024 }
  try {
    const stalled = await join()
    const others = [await join(), await join()]
    const reasons = []
    stalled.sse.onClose((reason) => reasons.push(reason))
    stalled.client.socket.pause()
    // Loopback socket buffers take several MiB before the cap is reached.
    const payload = 'x'.repeat(64 * 1024)
    const ids = []
    for (let n = 0; n < 1000 && !stalled.sse.closed; n++) {
      ids.push(channel.broadcast({ eventName: 'big', eventPayload: { n, payload } }))
      // A timer turn, not setImmediate: Deno completes socket writes over
      // more than one turn, and the readers' buffers would fill up too.
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    assert.equal(stalled.sse.closed, true, 'the stalled member was cut off')
    await waitFor(() => reasons.length === 1)
    assert.deepEqual(reasons, ['overflow'])
    assert.equal(channel.size, 2)
    const more = channel.broadcast({ eventName: 'big', eventPayload: { n: -1, payload } })
    ids.push(more)
    for (const m of others) {
      await m.client.waitForBody((body) => body.endsWith(frame(more, 'big', { n: -1, payload })), { timeoutMs: 10000 })
      assert.equal(splitEvents(m.body()).length, 2 + ids.length)
    }
    for (const m of [stalled, ...others]) m.client.close()
  } finally {
    sseOptions = { keepAlive: 0 }
    channel.close()
  }
})

test('flush window: broadcasts of several ticks go out in one write; joining mid-window loses nothing', async () => {
  channel = new Channel({ flushWindow: 1500 })
  const a = await join()
  const writes = []
  const write = a.res.write
  a.res.write = function (chunk, ...rest) {
    writes.push(String(chunk))
    return write.call(this, chunk, ...rest)
  }
  const ids = []
  ids.push(channel.broadcast({ eventName: 'w', eventPayload: 1 }))
  await nextTick()
  ids.push(channel.broadcast({ eventName: 'w', eventPayload: 2 }))
  // Joins in the middle of the window, after event 2: it resumes from event 1.
  const b = await join({ 'Last-Event-ID': ids[0] })
  ids.push(channel.broadcast({ eventName: 'w', eventPayload: 3 }))
  const expected = ids.map((id, i) => frame(id, 'w', i + 1)).join('')
  await a.client.waitForBody((body) => body.endsWith(expected), { timeoutMs: 3000 })
  assert.deepEqual(writes, [expected], 'one write for the window')
  await b.client.waitForBody((body) => body.endsWith(frame(ids[2], 'w', 3)), { timeoutMs: 3000 })
  assert.equal(b.body(), welcome(b.sse, false) + frame(ids[1], 'w', 2) + frame(ids[2], 'w', 3))

  // close() writes what is still waiting.
  const last = channel.broadcast({ eventName: 'w', eventPayload: 4 })
  channel.close()
  await a.client.waitForBody((body) => body.endsWith(frame(last, 'w', 4)))
  for (const m of [a, b]) m.client.close()
})

test('a stream that is not in the channel is not touched', async () => {
  channel = new Channel()
  const outside = await join({}, '/?nojoin')
  assert.equal(outside.joined, null)
  channel.broadcast({ eventName: 'e', eventPayload: 1 })
  await nextTick()
  await nextTick()
  assert.equal(outside.body(), welcome(outside.sse))
  outside.client.close()
  channel.close()
})
