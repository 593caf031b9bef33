// A Channel shared through a Redis stream, against a real redis-server
// (started here on a free port, see redis-server.mjs), real HTTP servers in
// this process and in child processes (fixtures/redis-channel-server.mjs),
// raw sockets for exact bytes and the `eventsource` client for a real
// reconnect.
import assert from 'node:assert/strict'
import { fork, spawn } from 'node:child_process'
import http from 'node:http'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { EventSource } from 'eventsource'
import Redis from 'ioredis'

import { Channel, SSE } from 'native-sse'
import { UUID_V4, rawGet, splitEvents, startServer, waitFor } from './helpers.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'
import { CLIENT_KIND, disconnect, isReady, makeClient, protocolVariants, compareIds } from './redis-clients.mjs'

const FIXTURE = fileURLToPath(new URL('./fixtures/redis-channel-server.mjs', import.meta.url))
const STREAM_ID = /^\d+-\d+$/
const WAIT = { timeoutMs: 15000 }

let redisServer
const clients = new Set()
const children = new Set()

before(async () => {
  redisServer = await startRedis()
})

after(async () => {
  for (const client of clients) disconnect(client)
  await Promise.all(
    [...children].map((child) => {
      child.kill('SIGKILL')
      return child.exited
    }),
  )
  await redisServer?.close()
  await killAllRedis()
})

// ---------------------------------------------------------------- helpers

let streams = 0
/** A stream key of its own for each use. */
function streamKey(name) {
  return `native-sse-test:${process.pid}:${name}:${++streams}`
}

/** An ioredis client, disconnected in after() at the latest. */
function redisClient(port = redisServer.port, options = {}) {
  const client = new Redis({ host: '127.0.0.1', port, ...options })
  client.on('error', () => {}) // outages are part of the tests; ioredis reconnects
  clients.add(client)
  return client
}

/** A ready ioredis client, for admin commands. */
async function readyClient(port, options) {
  const client = redisClient(port, options)
  await waitFor(() => client.status === 'ready', { what: 'the Redis client to be ready', ...WAIT })
  return client
}

/** A ready client of the kind under test (CLIENT_KIND), for a channel. */
async function channelClient(port = redisServer.port, options = {}) {
  const client = makeClient(port, { options })
  clients.add(client)
  await waitFor(() => isReady(client), { what: `the ${CLIENT_KIND} client to be ready`, ...WAIT })
  return client
}

/** A channel on `stream`, closed by the test's after hook. */
async function redisChannel(t, redis, stream, options = {}) {
  const channel = new Channel({ redis, stream, ...options })
  t.after(() => channel.close())
  await waitFor(() => channel.lastEventId !== null, { what: 'the channel to read the stream', ...WAIT })
  return channel
}

/** A server whose `/events` opens a stream (no heartbeat) in `channel()`. */
async function channelServer(t, channel) {
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    channel().add(sse)
  })
  t.after(() => srv.close())
  return srv
}

/** A raw client on `/events`, closed by the test's after hook. */
function open(t, port, headers = {}, path = '/events') {
  const client = rawGet(port, path, headers)
  t.after(() => client.close())
  return client
}

function bodyOf(client) {
  return client.response()?.body.toString('utf8') ?? ''
}

function waitForBody(client, predicate, what) {
  return client.waitForBody(predicate, { what, ...WAIT })
}

/** The UUID of the welcome event at the start of `body`. */
function uuidOf(body) {
  const match = /^(?:id: 0\n)?event: welcome\ndata: \{"uuid":"([^"]+)"\}\n\n/.exec(body)
  assert.ok(match, `the body starts with a welcome event: ${JSON.stringify(body.slice(0, 120))}`)
  assert.match(match[1], UUID_V4)
  return match[1]
}

function welcome(uuid, { withId = true } = {}) {
  return `${withId ? 'id: 0\n' : ''}event: welcome\ndata: {"uuid":"${uuid}"}\n\n`
}

function frame(id, name, data) {
  return `id: ${id}\nevent: ${name}\n${data.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`
}

function reset(head, reason) {
  return `id: ${head}\nevent: reset\ndata: {"reason":"${reason}"}\n\n`
}


/** The frames a member gets for the stream's entries after `last`: every entry without `to`. */
async function framesAfter(admin, stream, last) {
  const entries = await admin.xrange(stream, '-', '+')
  let text = ''
  for (const [id, fields] of entries) {
    if (compareIds(id, last) <= 0) continue
    const field = {}
    for (let i = 0; i < fields.length; i += 2) field[fields[i]] = fields[i + 1]
    if (field.to !== undefined) continue
    text += frame(id, field.event, field.data)
  }
  return text
}

function withTimeout(promise, ms, what) {
  let timer
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** A POST with a JSON body; resolves with { status, json }. */
function postJson(port, path, value) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(value)
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text) }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

function track(child) {
  children.add(child)
  let output = ''
  child.stdout?.on('data', (data) => (output += data))
  child.stderr?.on('data', (data) => (output += data))
  child.output = () => output
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  return child
}

/** A server process of the app (fixtures/redis-channel-server.mjs). */
async function startApp(stream, redisPort = redisServer.port) {
  const child = track(fork(FIXTURE, [String(redisPort), stream], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }))
  const port = await withTimeout(
    new Promise((resolve, reject) => {
      child.on('message', (message) => {
        if (message?.type === 'listening') resolve(message.port)
      })
      child.exited.then(({ code }) => reject(new Error(`the app exited (${code}) before listening:\n${child.output()}`)))
    }),
    15000,
    'an app process to listen',
  )
  const app = {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    async broadcast(event, options) {
      const { status, json } = await postJson(port, '/broadcast', { event, options })
      assert.equal(status, 200, `broadcast answered ${status}: ${JSON.stringify(json)}`)
      assert.match(json.id, STREAM_ID)
      return json.id
    },
    post: (event, options) => postJson(port, '/broadcast', { event, options }),
    /** SIGTERM: the app closes its channel, streams, server and client, and exits by itself. */
    async stop() {
      child.kill('SIGTERM')
      const { code, signal } = await withTimeout(child.exited, 15000, 'an app process to exit after SIGTERM')
      assert.equal(signal, null, `the app exited by itself:\n${child.output()}`)
      assert.equal(code, 0, child.output())
    },
  }
  return app
}

async function appReady(app) {
  let lastEventId = null
  const deadline = Date.now() + 15000
  while (lastEventId === null) {
    if (Date.now() > deadline) throw new Error('the app never read the stream position')
    const state = await new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: app.port, path: '/state', agent: false }, (res) => {
          let text = ''
          res.on('data', (chunk) => (text += chunk))
          res.on('end', () => resolve(JSON.parse(text)))
        })
        .on('error', reject)
    })
    lastEventId = state.lastEventId
    if (lastEventId === null) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return lastEventId
}

// ------------------------------------------------------------------ tests

test('a broadcast reaches a member with the stream entry id; a fresh member gets the position', async (t) => {
  const stream = streamKey('basic')
  const admin = await readyClient()
  const seed = await admin.xadd(stream, '*', 'event', 'seed', 'data', '"before"')
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  assert.equal(channel.lastEventId, seed, 'the position is the last entry')
  const srv = await channelServer(t, () => channel)

  const client = open(t, srv.port)
  await waitForBody(client, (body) => body.includes(`id: ${seed}\n\n`), 'the position marker')
  const uuid = uuidOf(bodyOf(client))
  assert.equal(bodyOf(client), welcome(uuid) + `id: ${seed}\n\n`)

  const first = await channel.broadcast({ eventName: 'greet', eventPayload: { n: 1 } })
  assert.match(first, STREAM_ID)
  assert.equal(compareIds(first, seed), 1, 'stream ids increase')
  const second = await channel.broadcast({ eventName: 'text', data: 'a\nb' })
  assert.equal(compareIds(second, first), 1)
  // Bytes are stored as they are and sent as text (UTF-8).
  const third = await channel.broadcast({ eventName: 'bytes', data: Buffer.from('h\u00e9llo \u{1f600}') })
  const expected =
    welcome(uuid) +
    `id: ${seed}\n\n` +
    frame(first, 'greet', '{"n":1}') +
    frame(second, 'text', 'a\nb') +
    frame(third, 'bytes', 'h\u00e9llo \u{1f600}')
  await waitForBody(client, (body) => body.includes(`id: ${third}\n`), 'the events')
  assert.equal(bodyOf(client), expected, 'the ids on the wire are the ids broadcast() resolved to')
  assert.equal(channel.lastEventId, third)

  // The entries are plain stream entries.
  assert.deepEqual(await admin.xrange(stream, '-', '+'), [
    [seed, ['event', 'seed', 'data', '"before"']],
    [first, ['event', 'greet', 'data', '{"n":1}']],
    [second, ['event', 'text', 'data', 'a\nb']],
    [third, ['event', 'bytes', 'data', 'h\u00e9llo \u{1f600}']],
  ])
})

test('a member added, and an event broadcast, before the channel knows the stream position', async (t) => {
  const stream = streamKey('early')
  const redis = await channelClient()
  let channel = null
  let broadcast = null
  let positionWhenAdded
  const srv = await startServer((req, res) => {
    // All in one tick: the channel cannot have read the position yet.
    channel = new Channel({ redis, stream })
    const sse = new SSE(req, res, { keepAlive: 0 })
    positionWhenAdded = channel.lastEventId
    channel.add(sse)
    broadcast = channel.broadcast({ eventName: 'early', eventPayload: 1 })
  })
  t.after(() => srv.close())
  t.after(() => channel?.close())
  const client = open(t, srv.port)
  await waitFor(() => broadcast !== null, { what: 'the request', ...WAIT })
  const id = await broadcast
  assert.equal(positionWhenAdded, null)
  const uuid = await waitForBody(client, (body) => body.includes('event: early'), 'the early event').then(() => uuidOf(bodyOf(client)))
  // The stream did not exist: the member starts at 0-0 and gets the event.
  assert.equal(bodyOf(client), welcome(uuid) + 'id: 0-0\n\n' + frame(id, 'early', '1'))
})

test('two server processes: a client on A gets what B broadcasts; reconnecting to B it gets exactly what it missed (eventsource client)', async (t) => {
  const stream = streamKey('two-apps')
  const [a, b] = await Promise.all([startApp(stream), startApp(stream)])
  await Promise.all([appReady(a), appReady(b)])

  // Requests go to A until A is down, then to B; the reconnect waits for the gate.
  let target = a.url
  const requests = []
  let openGate
  const gate = new Promise((resolve) => (openGate = resolve))
  const fetchVia = async (url, init) => {
    const headers = new Headers(init.headers)
    requests.push({ url: String(url), lastEventId: headers.get('last-event-id') })
    if (requests.length > 1) await gate
    return fetch(String(url).replace(a.url, target), init)
  }
  const es = new EventSource(`${a.url}/events?retry=50`, { fetch: fetchVia })
  t.after(() => es.close())
  const received = []
  const welcomes = []
  es.addEventListener('welcome', (e) => welcomes.push(JSON.parse(e.data).uuid))
  es.addEventListener('tick', (e) => received.push({ id: e.lastEventId, data: e.data }))
  await waitFor(() => welcomes.length === 1, { what: 'the welcome from A', ...WAIT })

  const ids = []
  for (let n = 1; n <= 3; n++) ids.push(await b.broadcast({ eventName: 'tick', eventPayload: { n } }))
  await waitFor(() => received.length === 3, { what: 'three events on A', ...WAIT })
  assert.deepEqual(received, ids.map((id, i) => ({ id, data: JSON.stringify({ n: i + 1 }) })))

  // A goes down; its stream ends and the client reconnects, to B.
  target = b.url
  await a.stop()
  await waitFor(() => requests.length === 2, { what: 'the reconnect', ...WAIT })
  for (let n = 4; n <= 6; n++) ids.push(await b.broadcast({ eventName: 'tick', eventPayload: { n } }))
  openGate()
  await waitFor(() => received.length === 6, { what: 'the missed events', ...WAIT })
  assert.equal(requests[1].lastEventId, ids[2], 'the client resumed from the last id it saw')
  assert.equal(welcomes.length, 2)
  for (let n = 7; n <= 8; n++) ids.push(await b.broadcast({ eventName: 'tick', eventPayload: { n } }))
  await waitFor(() => received.length >= 8, { what: 'live events after the replay', ...WAIT })
  assert.deepEqual(
    received,
    ids.map((id, i) => ({ id, data: JSON.stringify({ n: i + 1 }) })),
    'every event once, in order',
  )
  assert.equal(requests.length, 2)
  es.close()
  await b.stop()
})

test('replay on Redis: from an id, at the head, from the query string, and resets for unknown ids', async (t) => {
  const stream = streamKey('replay')
  const admin = await readyClient()
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const srv = await channelServer(t, () => channel)
  const ids = []
  for (let n = 1; n <= 5; n++) ids.push(await channel.broadcast({ eventName: 'n', eventPayload: n }))
  // A targeted entry is never replayed.
  const targeted = await channel.broadcast({ eventName: 'secret', eventPayload: 0 }, { to: ['00000000-0000-4000-8000-000000000000'] })
  ids.push(await channel.broadcast({ eventName: 'n', eventPayload: 6 }))
  const head = ids.at(-1)
  await waitFor(() => channel.lastEventId === head, { what: 'the channel to read every entry', ...WAIT })
  const frames = ids.map((id, i) => frame(id, 'n', String(i + 1)))

  // From the second event: 3..6, without the targeted one.
  const fromTwo = open(t, srv.port, { 'Last-Event-ID': ids[1] })
  await waitForBody(fromTwo, (body) => body.includes(`id: ${head}\n`), 'the replay')
  const uuid = uuidOf(bodyOf(fromTwo))
  assert.equal(bodyOf(fromTwo), welcome(uuid, { withId: false }) + frames.slice(2).join(''))
  assert.ok(!bodyOf(fromTwo).includes(targeted))

  // From 0-0 on an untrimmed stream: everything.
  const fromZero = open(t, srv.port, { 'Last-Event-ID': '0-0' })
  await waitForBody(fromZero, (body) => body.includes(`id: ${head}\n`), 'the whole replay')
  assert.equal(bodyOf(fromZero), welcome(uuidOf(bodyOf(fromZero)), { withId: false }) + frames.join(''))

  // The query parameter that polyfills use.
  const fromQuery = open(t, srv.port, {}, `/events?lastEventId=${ids[3]}`)
  await waitForBody(fromQuery, (body) => body.includes(`id: ${head}\n`), 'the replay from the query')
  assert.equal(bodyOf(fromQuery), welcome(uuidOf(bodyOf(fromQuery)), { withId: false }) + frames.slice(4).join(''))

  // Exactly at the head: nothing, then live events.
  const atHead = open(t, srv.port, { 'Last-Event-ID': head })
  await waitForBody(atHead, (body) => body.includes('event: welcome'), 'the welcome')
  await waitFor(() => channel.size === 4, { what: 'four members', ...WAIT })

  // Unknown: newer than the head, the largest id, not stream ids at all.
  const [headMs] = head.split('-')
  const unknown = [
    `${BigInt(headMs) + 1000n}-0`,
    `${headMs}-999999`,
    '18446744073709551615-18446744073709551615',
    'abc',
    '01-1',
    '1-2-3',
    '18446744073709551616-0',
    '-1-0',
  ]
  const unknownClients = unknown.map((value) => [value, open(t, srv.port, { 'Last-Event-ID': value })])
  for (const [value, client] of unknownClients) {
    await waitForBody(client, (body) => body.includes('event: reset'), `the reset for ${value}`)
    assert.equal(bodyOf(client), welcome(uuidOf(bodyOf(client)), { withId: false }) + reset(head, 'unknown'), value)
  }

  // Values the header rules refuse count as no Last-Event-ID at all.
  const refused = ['x'.repeat(10000), '1-2 3', 'é-1', '']
  const refusedClients = refused.map((value) => [value, open(t, srv.port, { 'Last-Event-ID': value })])
  refusedClients.push(['%zz', open(t, srv.port, {}, '/events?lastEventId=%zz')])
  for (const [value, client] of refusedClients) {
    await waitForBody(client, (body) => body.includes(`id: ${head}\n\n`), `the position for ${value.slice(0, 10)}`)
    assert.equal(bodyOf(client), welcome(uuidOf(bodyOf(client))) + `id: ${head}\n\n`, value.slice(0, 10))
  }

  // Everyone, including those that got a reset, then gets live events.
  const live = await channel.broadcast({ eventName: 'n', eventPayload: 7 })
  for (const client of [atHead, fromTwo, ...unknownClients.map(([, c]) => c), ...refusedClients.map(([, c]) => c)]) {
    await waitForBody(client, (body) => body.endsWith(frame(live, 'n', '7')), 'the live event')
  }
  assert.equal(bodyOf(atHead), welcome(uuidOf(bodyOf(atHead)), { withId: false }) + frame(live, 'n', '7'))

  // Trimmed (exactly, by hand) past the second event: resuming from it is expired.
  await admin.xtrim(stream, 'MAXLEN', 3)
  const kept = await admin.xrange(stream, '-', '+')
  assert.equal(kept.length, 3)
  const expired = open(t, srv.port, { 'Last-Event-ID': ids[1] })
  await waitForBody(expired, (body) => body.includes('event: reset'), 'the expired reset')
  assert.equal(bodyOf(expired), welcome(uuidOf(bodyOf(expired)), { withId: false }) + reset(live, 'expired'))
  // From the first kept entry, the rest is still complete.
  const fromKept = open(t, srv.port, { 'Last-Event-ID': kept[0][0] })
  await waitForBody(fromKept, (body) => body.includes(`id: ${live}\n`), 'the replay of the kept entries')
  assert.equal(bodyOf(fromKept), welcome(uuidOf(bodyOf(fromKept)), { withId: false }) + (await framesAfter(admin, stream, kept[0][0])))
})

test('maxLen trims the stream (MAXLEN ~) and a client older than what it holds gets an expired reset', async (t) => {
  const stream = streamKey('trim')
  const admin = await readyClient()
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream, { maxLen: 10 })
  const srv = await channelServer(t, () => channel)
  const ids = await Promise.all(Array.from({ length: 1000 }, (_, n) => channel.broadcast({ eventName: 'n', eventPayload: n })))
  const head = ids.at(-1)
  assert.ok(ids.every((id, i) => i === 0 || compareIds(id, ids[i - 1]) === 1), 'ids in broadcast order')
  const length = await admin.xlen(stream)
  assert.ok(length < 1000 && length >= 10, `the stream was trimmed to about maxLen (length ${length})`)
  await waitFor(() => channel.lastEventId === head, { what: 'the channel to read every entry', ...WAIT })

  const expired = open(t, srv.port, { 'Last-Event-ID': ids[0] })
  await waitForBody(expired, (body) => body.includes('event: reset'), 'the expired reset')
  assert.equal(bodyOf(expired), welcome(uuidOf(bodyOf(expired)), { withId: false }) + reset(head, 'expired'))

  const [[firstKept]] = await admin.xrange(stream, '-', '+', 'COUNT', 1)
  const fromKept = open(t, srv.port, { 'Last-Event-ID': firstKept })
  const expected = await framesAfter(admin, stream, firstKept)
  assert.equal(splitEvents(expected).length, length - 1)
  await waitForBody(fromKept, (body) => body.includes(`id: ${head}\n`), 'the replay of the kept entries')
  assert.equal(bodyOf(fromKept), welcome(uuidOf(bodyOf(fromKept)), { withId: false }) + expected)
})

test('events broadcast while a replay is in flight follow it, once each, in stream order', async (t) => {
  const stream = streamKey('in-flight')
  const admin = await readyClient()
  const other = await readyClient() // another server's connection
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const ids = []
  for (let n = 0; n < 30; n++) ids.push(await channel.broadcast({ eventName: 'old', eventPayload: n }))
  await admin.xadd(stream, '*', 'event', 'secret', 'data', '0', 'to', 'nobody')

  let live = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    // Entries from another connection, likely before the replay's MULTI
    // (then both in the replay and read live), and broadcasts on the
    // channel's own connection, after it (then queued while it joins).
    const round = Number(new URL(req.url, 'http://x').searchParams.get('round'))
    for (let i = 0; i < 3; i++) live.push(other.xadd(stream, '*', 'event', 'other', 'data', `${round}.${i}`))
    channel.add(sse)
    for (let i = 0; i < 3; i++) live.push(channel.broadcast({ eventName: 'live', eventPayload: `${round}.${i}` }))
  })
  t.after(() => srv.close())

  for (const [round, from] of [[1, ids[5]], [2, ids[29]], [3, ids[0]], [4, ids[20]]]) {
    live = []
    const client = open(t, srv.port, { 'Last-Event-ID': from }, `/events?round=${round}`)
    await waitFor(() => live.length === 6, { what: 'the request', ...WAIT })
    const liveIds = await Promise.all(live)
    const newest = liveIds.reduce((a, b) => (compareIds(a, b) >= 0 ? a : b))
    await waitForBody(client, (body) => body.includes(`id: ${newest}\n`), `the newest live event of round ${round}`)
    const expected = await framesAfter(admin, stream, from)
    const body = bodyOf(client)
    const uuid = uuidOf(body)
    const events = splitEvents(body.slice(welcome(uuid, { withId: false }).length))
    assert.equal(new Set(events).size, events.length, `round ${round}: no duplicates`)
    assert.deepEqual(events, splitEvents(expected), `round ${round}: exactly the entries after Last-Event-ID`)
    client.close()
  }
})

test('a member removed while it joins gets nothing from the channel', async (t) => {
  const stream = streamKey('removed')
  const redis = await channelClient()
  const seeded = await (await readyClient()).xadd(stream, '*', 'event', 'n', 'data', '0')
  let channel = null
  const removed = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    if (req.url === '/before-position') {
      // The position is still being read when it leaves.
      channel = new Channel({ redis, stream })
      channel.add(sse)
    } else {
      // Its replay is in flight when it leaves.
      channel.add(sse)
    }
    removed.push(channel.remove(sse))
  })
  t.after(() => srv.close())
  t.after(() => channel?.close())
  const early = open(t, srv.port, {}, '/before-position')
  await waitForBody(early, (body) => body.includes('event: welcome'), 'the welcome')
  await waitFor(() => channel?.lastEventId === seeded, { what: 'the channel to read the position', ...WAIT })
  const replaying = open(t, srv.port, { 'Last-Event-ID': '0-0' }, '/replaying')
  await waitForBody(replaying, (body) => body.includes('event: welcome'), 'the welcome')
  const id = await channel.broadcast({ eventName: 'n', eventPayload: 1 })
  // A member that stayed, to know when the event has been written.
  const witnessSrv = await channelServer(t, () => channel)
  const witness = open(t, witnessSrv.port, { 'Last-Event-ID': seeded })
  await waitForBody(witness, (body) => body.includes(`id: ${id}\n`), 'the event on the witness')
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(bodyOf(early), welcome(uuidOf(bodyOf(early))))
  assert.equal(bodyOf(replaying), welcome(uuidOf(bodyOf(replaying)), { withId: false }))
  assert.equal(channel.size, 1)
  assert.deepEqual(removed, [true, true])
})

test('a Redis restart in the middle of a stream: broadcasts fail during the outage, then every event arrives once, in order', async (t) => {
  const own = await startRedis()
  t.after(() => own.close())
  const stream = streamKey('restart')
  const redis = await channelClient(own.port)
  const channel = await redisChannel(t, redis, stream)
  const srv = await channelServer(t, () => channel)
  const member = open(t, srv.port)
  await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position marker')
  const uuid = uuidOf(bodyOf(member))

  const sent = []
  for (let n = 1; n <= 3; n++) sent.push([await channel.broadcast({ eventName: 'n', eventPayload: n }), n])
  await waitForBody(member, (body) => body.includes(`id: ${sent[2][0]}\n`), 'the events before the outage')

  await own.stop()
  await waitFor(() => !isReady(redis), { what: 'the client to notice the outage', ...WAIT })
  await assert.rejects(channel.broadcast({ eventName: 'n', eventPayload: 'lost' }), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'ERR_SSE_REDIS_UNAVAILABLE')
    return true
  })
  // A client that resumes during the outage cannot get its replay: its
  // stream ends (it will reconnect); one without Last-Event-ID gets the
  // position the channel knows.
  const resuming = open(t, srv.port, { 'Last-Event-ID': sent[0][0] })
  await waitFor(() => resuming.response()?.complete === true, { what: 'the resuming stream to end', ...WAIT })
  assert.equal(bodyOf(resuming), welcome(uuidOf(bodyOf(resuming)), { withId: false }))
  const fresh = open(t, srv.port)
  await waitForBody(fresh, (body) => body.includes(`id: ${sent[2][0]}\n\n`), 'the position during the outage')

  await own.start()
  await waitFor(() => isReady(redis), { what: 'the client to reconnect', ...WAIT })
  for (let n = 4; n <= 6; n++) sent.push([await channel.broadcast({ eventName: 'n', eventPayload: n }), n])
  const last = sent.at(-1)[0]
  await waitForBody(member, (body) => body.includes(`id: ${last}\n`), 'the events after the restart')
  await waitForBody(fresh, (body) => body.includes(`id: ${last}\n`), 'the events after the restart (fresh member)')
  // One more, so that a late duplicate of the others would show up before it.
  sent.push([await channel.broadcast({ eventName: 'n', eventPayload: 7 }), 7])
  await waitForBody(member, (body) => body.includes(`id: ${sent.at(-1)[0]}\n`), 'the last event')

  const frames = sent.map(([id, n]) => frame(id, 'n', String(n))).join('')
  assert.equal(bodyOf(member), welcome(uuid) + 'id: 0-0\n\n' + frames)
  await waitForBody(fresh, (body) => body.includes(`id: ${sent.at(-1)[0]}\n`), 'the last event (fresh member)')
  assert.equal(bodyOf(fresh), welcome(uuidOf(bodyOf(fresh))) + `id: ${sent[2][0]}\n\n` + sent.slice(3).map(([id, n]) => frame(id, 'n', String(n))).join(''))
  // The append-only file kept the entries from before the restart.
  const admin = await readyClient(own.port)
  assert.deepEqual((await admin.xrange(stream, '-', '+')).map(([id]) => id), sent.map(([id]) => id))
})

test('to: [uuid] reaches those members on any server process and is never replayed; a predicate throws on Redis', async (t) => {
  const stream = streamKey('to')
  const [a, b] = await Promise.all([startApp(stream), startApp(stream)])
  await Promise.all([appReady(a), appReady(b)])
  const onA1 = open(t, a.port)
  const onA2 = open(t, a.port)
  const onB = open(t, b.port)
  for (const client of [onA1, onA2, onB]) await waitForBody(client, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const [uuidA1, uuidA2, uuidB] = [onA1, onA2, onB].map((client) => uuidOf(bodyOf(client)))

  const before = await b.broadcast({ eventName: 'all', eventPayload: 0 })
  const secret = await b.broadcast({ eventName: 'secret', eventPayload: 'for A1 and B' }, { to: [uuidA1, uuidB] })
  const nobody = await a.broadcast({ eventName: 'secret', eventPayload: 'for nobody' }, { to: [] })
  const comma = await a.broadcast({ eventName: 'secret', eventPayload: 'comma' }, { to: [`${uuidA1},${uuidA2}`] })
  const marker = await a.broadcast({ eventName: 'all', eventPayload: 1 })
  for (const client of [onA1, onA2, onB]) await waitForBody(client, (body) => body.includes(`id: ${marker}\n`), 'the marker')
  const common = (uuid) => welcome(uuid) + 'id: 0-0\n\n' + frame(before, 'all', '0')
  const secretFrame = frame(secret, 'secret', '"for A1 and B"')
  assert.equal(bodyOf(onA1), common(uuidA1) + secretFrame + frame(marker, 'all', '1'))
  assert.equal(bodyOf(onA2), common(uuidA2) + frame(marker, 'all', '1'))
  assert.equal(bodyOf(onB), common(uuidB) + secretFrame + frame(marker, 'all', '1'))
  assert.ok(![nobody, comma].some((id) => bodyOf(onA1).includes(id) || bodyOf(onA2).includes(id)))

  // A1 comes back (a new UUID) and resumes from before the secret: not replayed.
  onA1.close()
  const back = open(t, b.port, { 'Last-Event-ID': before })
  await waitForBody(back, (body) => body.includes(`id: ${marker}\n`), 'the replay')
  assert.equal(bodyOf(back), welcome(uuidOf(bodyOf(back)), { withId: false }) + frame(marker, 'all', '1'))

  // In this process: a predicate cannot run on other servers.
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const admin = await readyClient()
  const length = await admin.xlen(stream)
  assert.throws(
    () => channel.broadcast({ eventName: 'x', eventPayload: 1 }, { to: () => true }),
    (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_OPTION',
  )
  // So do other wrong `to` values, and the rejection is synchronous.
  assert.throws(() => channel.broadcast({ eventName: 'x', eventPayload: 1 }, { to: [1] }), { code: 'ERR_SSE_INVALID_OPTION' })
  assert.equal(await admin.xlen(stream), length, 'nothing was added')

  // An invalid event throws in the app process too; nothing is sent.
  const invalid = await a.post({ eventName: 'x', eventPayload: 1, id: '5' })
  assert.equal(invalid.status, 400)
  assert.equal(invalid.json.code, 'ERR_SSE_INVALID_EVENT_ID')
  assert.equal(await admin.xlen(stream), length, 'still nothing was added')
  await Promise.all([a.stop(), b.stop()])
})

test('replay: false entries are delivered live on every server and skipped by replays', async (t) => {
  const redis = await channelClient()
  const stream = streamKey('live-only')
  const channel = await redisChannel(t, redis, stream)
  const srv = await channelServer(t, () => channel)
  const live = open(t, srv.port)
  await waitForBody(live, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const kept = await channel.broadcast({ eventName: 'news', eventPayload: 1 })
  const tick = await channel.broadcast({ eventName: 'clock', eventPayload: 't' }, { replay: false })
  const after = await channel.broadcast({ eventName: 'news', eventPayload: 2 })
  const expected = frame(kept, 'news', '1') + frame(tick, 'clock', '"t"') + frame(after, 'news', '2')
  await waitForBody(live, (body) => body.endsWith(expected), 'the live events')

  const back = open(t, srv.port, { 'Last-Event-ID': kept })
  await waitForBody(back, (body) => body.includes(`id: ${after}\n`), 'the replay')
  assert.equal(bodyOf(back), welcome(uuidOf(bodyOf(back)), { withId: false }) + frame(after, 'news', '2'))
  const admin = await readyClient()
  const [[, fields]] = await admin.xrange(stream, tick, tick)
  assert.deepEqual(fields, ['event', 'clock', 'data', '"t"', 'replay', '0'])
})

test('close() stops reading: the process exits by itself; without it, the reader keeps the process alive', async () => {
  const stream = streamKey('exit')
  const run = (mode) => {
    const child = track(spawn(process.execPath, [FIXTURE, String(redisServer.port), stream, mode], { stdio: ['ignore', 'pipe', 'pipe'] }))
    return child
  }
  const closing = run('exit')
  const { code, signal } = await withTimeout(closing.exited, 20000, 'the process to exit after close()')
  assert.equal(signal, null)
  assert.equal(code, 0, closing.output())
  assert.match(closing.output(), /^closed \d+-\d+\n$/)

  // The control: the same without close() does not exit.
  const control = run('no-close')
  await waitFor(() => control.output().includes('closed'), { what: 'the control to quit its client', timeoutMs: 20000 })
  let exited = false
  control.exited.then(() => (exited = true))
  await new Promise((resolve) => setTimeout(resolve, 1000))
  assert.equal(exited, false, 'a channel that is not closed keeps reading')
  control.kill('SIGKILL')
  await control.exited
})

test('a channel collected without close() stops reading, so the process can exit', async () => {
  const stream = streamKey('gc')
  const child = track(spawn(process.execPath, ['--expose-gc', FIXTURE, String(redisServer.port), stream, 'gc'], { stdio: ['ignore', 'pipe', 'pipe'] }))
  const { code, signal } = await withTimeout(child.exited, 20000, 'the process to exit after its channel was collected')
  assert.equal(signal, null)
  assert.equal(code, 0, child.output())
  assert.equal(child.output(), 'dropped collected=true\n')
})

test('after close(), the channel writes nothing more and broadcast() throws', async (t) => {
  const stream = streamKey('closed')
  const admin = await readyClient()
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const srv = await channelServer(t, () => channel)
  const member = open(t, srv.port)
  await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const id = await channel.broadcast({ eventName: 'n', eventPayload: 1 })
  await waitForBody(member, (body) => body.includes(`id: ${id}\n`), 'the event')
  channel.close()
  assert.throws(() => channel.broadcast({ eventName: 'n', eventPayload: 2 }), { code: 'ERR_SSE_CHANNEL_CLOSED' })
  const late = await admin.xadd(stream, '*', 'event', 'n', 'data', '3')
  // Another channel on the stream sees the late entry; the closed one wrote nothing.
  const witness = await redisChannel(t, redis, stream)
  assert.equal(witness.lastEventId, late)
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(bodyOf(member), welcome(uuidOf(bodyOf(member))) + 'id: 0-0\n\n' + frame(id, 'n', '1'))
  assert.ok(isReady(redis), "the user's client stays open")
})

for (const [label, options] of protocolVariants()) {
  test(`a ${CLIENT_KIND} client speaking ${label}: live events, replay and expired resets work`, async (t) => {
    const stream = streamKey(label.replace(/\W+/g, '-'))
    const redis = await channelClient(undefined, options)
    const channel = await redisChannel(t, redis, stream)
    const srv = await channelServer(t, () => channel)
    const member = open(t, srv.port)
    await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')
    const ids = []
    for (let n = 1; n <= 4; n++) ids.push(await channel.broadcast({ eventName: 'n', eventPayload: n }))
    const frames = ids.map((id, i) => frame(id, 'n', String(i + 1)))
    await waitForBody(member, (body) => body.includes(`id: ${ids[3]}\n`), 'the events')
    assert.equal(bodyOf(member), welcome(uuidOf(bodyOf(member))) + 'id: 0-0\n\n' + frames.join(''))

    const resumed = open(t, srv.port, { 'Last-Event-ID': ids[1] })
    await waitForBody(resumed, (body) => body.includes(`id: ${ids[3]}\n`), 'the replay')
    assert.equal(bodyOf(resumed), welcome(uuidOf(bodyOf(resumed)), { withId: false }) + frames.slice(2).join(''))

    await (await readyClient()).xtrim(stream, 'MAXLEN', 1)
    const expired = open(t, srv.port, { 'Last-Event-ID': ids[1] })
    await waitForBody(expired, (body) => body.includes('event: reset'), 'the reset')
    assert.equal(bodyOf(expired), welcome(uuidOf(bodyOf(expired)), { withId: false }) + reset(ids[3], 'expired'))
  })
}
