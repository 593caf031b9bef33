// Redis that fails and lies, against real redis-servers: a stream that is
// deleted, flushed or lost in a restart without persistence (a client's
// Last-Event-ID from the old stream gets a reset); a stream that moves
// backwards under the reader (far-future ids, then deleted); a hung Redis
// (SIGSTOP, CLIENT PAUSE: broadcasts bounded in number and time, replays
// and reads time out, all recovers after SIGCONT); a reader stalled past
// maxLen (an expired reset instead of a silent gap); and the error
// callback, the status getter and the diagnostics channel that make all of
// it visible. Runs with ioredis, and with node-redis through
// redis-failures-node-redis.test.mjs.
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { Channel, SSE } from 'native-sse'
import { rawGet, splitEvents, startServer, waitFor } from './helpers.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'
import { CLIENT_KIND, disconnect, isReady, makeClient, compareIds, readyIoredis } from './redis-clients.mjs'

const FIXTURE = fileURLToPath(new URL('./fixtures/redis-channel-server.mjs', import.meta.url))
const WAIT = { timeoutMs: 15000 }

let shared
const clients = new Set()
const children = new Set()

before(async () => {
  shared = await startRedis()
})

after(async () => {
  for (const client of clients) disconnect(client)
  await Promise.all(
    [...children].map((child) => {
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      return child.exited
    }),
  )
  await shared?.close()
  await killAllRedis()
})

// ---------------------------------------------------------------- helpers

let streams = 0
function streamKey(name) {
  return `native-sse-failures:${process.pid}:${name}:${++streams}`
}

/** A ready ioredis client for admin commands. */
function adminClient(port = shared.port) {
  return readyIoredis(port, clients, WAIT)
}

/** A ready client of the kind under test, for channels. */
async function channelClient(port = shared.port) {
  const client = makeClient(port)
  clients.add(client)
  await waitFor(() => isReady(client), { what: `the ${CLIENT_KIND} client to be ready`, ...WAIT })
  return client
}

async function redisChannel(t, redis, stream, options = {}) {
  const channel = new Channel({ redis, stream, ...options })
  t.after(() => channel.close())
  await waitFor(() => channel.lastEventId !== null, { what: 'the channel to read the stream', ...WAIT })
  return channel
}

async function channelServer(t, channel) {
  const srv = await startServer((req, res) => channel.add(new SSE(req, res, { keepAlive: 0 })))
  t.after(() => srv.close())
  return srv
}

function open(t, port, headers = {}) {
  const client = rawGet(port, '/events', headers)
  t.after(() => client.close())
  return client
}

function bodyOf(client) {
  return client.response()?.body.toString('utf8') ?? ''
}

function waitForBody(client, predicate, what) {
  return client.waitForBody(predicate, { what, ...WAIT })
}

/** The events of a body after its welcome: [{ id, event, data }]. */
function eventsOf(body) {
  return splitEvents(body)
    .map((block) => {
      const event = {}
      for (const line of block.split('\n')) {
        const colon = line.indexOf(': ')
        if (colon > 0) event[line.slice(0, colon)] = line.slice(colon + 2)
      }
      return event
    })
    .filter((event) => event.event !== 'welcome' && event.event !== undefined)
}

/** Broadcasts n1..n2 (payload = n) and resolves with their ids. */
async function broadcastRange(channel, from, to) {
  const ids = []
  for (let n = from; n <= to; n++) ids.push(await channel.broadcast({ eventName: 'n', eventPayload: n }))
  return ids
}

function track(child) {
  children.add(child)
  child.output = ''
  child.stdout?.on('data', (data) => (child.output += data))
  child.stderr?.on('data', (data) => (child.output += data))
  child.exited = new Promise((resolve) => child.once('exit', () => {
    children.delete(child)
    resolve()
  }))
  return child
}

/** A server process serving `stream` (fixtures/redis-channel-server.mjs); resolves with { child, port }. */
async function serverProcess(redisPort, stream) {
  const child = track(fork(FIXTURE, [String(redisPort), stream], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }))
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server process did not listen:\n${child.output}`)), 15000)
    child.on('message', (message) => {
      if (message?.type === 'listening') {
        clearTimeout(timer)
        resolve(message.port)
      }
    })
  })
  return { child, port }
}

// ------------------------------------------------- 1: stream recreated

for (const how of ['DEL', 'FLUSHALL', 'restart without persistence']) {
  test(`a Last-Event-ID from a stream lost to ${how} gets a reset, not the new stream's entries after it`, async (t) => {
    const own = await startRedis({ persist: how !== 'restart without persistence' })
    t.after(() => own.close())
    const stream = streamKey('recreated')
    const admin = await adminClient(own.port)
    const redis = await channelClient(own.port)
    const channel = await redisChannel(t, redis, stream)
    const errors = []
    channel.onError((err) => errors.push(err))
    const srv = await channelServer(t, channel)
    const live = open(t, srv.port)
    await waitForBody(live, (body) => body.includes('id: 0-0\n\n'), 'the position')
    const before = await broadcastRange(channel, 1, 10)
    await waitForBody(live, (body) => body.includes(`id: ${before[9]}\n`), 'events 1..10')

    if (how === 'DEL') await admin.del(stream)
    else if (how === 'FLUSHALL') await admin.flushall()
    else {
      await own.kill()
      await own.start()
      await waitFor(() => isReady(redis) && admin.status === 'ready', { what: 'the clients to reconnect', ...WAIT })
    }
    // The reader notices the stream is not the one it read (it is missing)
    // and resets its live members; then 11..30 go to the new stream.
    await waitFor(() => errors.some((err) => err.code === 'ERR_SSE_REDIS_STREAM_RESET'), {
      what: 'the reader to report the reset stream',
      ...WAIT,
    })
    const after = await broadcastRange(channel, 11, 30)
    const head = after.at(-1)
    await waitForBody(live, (body) => body.includes(`id: ${head}\n`), 'events 11..30 live')

    // The client that left at 10 comes back.
    const back = open(t, srv.port, { 'Last-Event-ID': before[9] })
    await waitForBody(back, (body) => body.includes('event: reset'), 'the reset')
    const events = eventsOf(bodyOf(back))
    assert.deepEqual(events, [{ id: head, event: 'reset', data: '{"reason":"unknown"}' }], `no event of the new stream after ${before[9]}`)

    // The live member: 1..10, a reset, then exactly what followed it.
    const seen = eventsOf(bodyOf(live))
    assert.deepEqual(seen.slice(0, 10).map((e) => e.id), before)
    assert.equal(seen[10].event, 'reset')
    const rest = seen.slice(11)
    assert.deepEqual(rest.map((e) => e.id), after, 'every broadcast after the reset, once, in order')
    const status = channel.redisStatus
    assert.equal(status.state, 'ready')
    assert.ok(status.resets >= 1)
  })
}

// The broadcast that made the stream again (sent before this process
// noticed the DEL) is the new stream's first entry: it reached no member,
// because the reset took its id and reading went on after it. The reset is
// now at 0-0 when nothing was removed from the new stream, and reading
// starts again at its beginning.
test('after a DEL, the broadcasts that made the stream again reach the live members after the reset', async (t) => {
  const stream = streamKey('remade')
  const admin = await adminClient()
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const srv = await channelServer(t, channel)
  const live = open(t, srv.port)
  await waitForBody(live, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const old = await channel.broadcast({ eventName: 'n', eventPayload: 'old' })
  await waitForBody(live, (body) => body.includes(`id: ${old}\n`), 'the first event')
  await admin.del(stream)
  const remade = await broadcastRange(channel, 1, 3)
  await waitForBody(live, (body) => body.includes(`id: ${remade[2]}\n`), 'the broadcasts after the DEL')
  const events = eventsOf(bodyOf(live))
  assert.deepEqual(events.map((e) => e.event), ['n', 'reset', 'n', 'n', 'n'], JSON.stringify(events))
  assert.deepEqual(events[1], { id: '0-0', event: 'reset', data: '{"reason":"unknown"}' })
  assert.deepEqual(events.slice(2).map((e) => e.id), remade, 'every broadcast of the new stream, once, in order')
  // A client that comes back from the reset's id gets the new stream from its start.
  const back = open(t, srv.port, { 'Last-Event-ID': '0-0' })
  await waitForBody(back, (body) => body.includes(`id: ${remade[2]}\n`), 'the replay from 0-0')
  assert.deepEqual(eventsOf(bodyOf(back)).map((e) => e.id), remade)
})

// The client passed to the channel was closed by its owner while the
// reader (its own connection) went on reading: redisStatus said 'ready'
// and onError stayed silent while every broadcast and replay failed.
test('a client closed by its owner: redisStatus turns unavailable and onError is told once; broadcasts reject', async (t) => {
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, streamKey('owner-closed'))
  const errors = []
  channel.onError((err) => errors.push(err))
  await waitFor(() => channel.redisStatus.state === 'ready', { what: 'the reader to be ready', ...WAIT })
  disconnect(redis)
  await waitFor(() => channel.redisStatus.state === 'unavailable', { what: 'the state to turn unavailable', ...WAIT })
  await assert.rejects(channel.broadcast({ eventName: 'n', eventPayload: 1 }), { code: 'ERR_SSE_REDIS_UNAVAILABLE' })
  assert.equal(errors.length, 1)
  assert.equal(errors[0].code, 'ERR_SSE_REDIS_UNAVAILABLE')
  assert.match(errors[0].message, /client status/)
  // It stays so (no flapping back to 'ready' while the reader reads on).
  await new Promise((resolve) => setTimeout(resolve, 2500))
  assert.equal(channel.redisStatus.state, 'unavailable')
  assert.equal(errors.length, 1)
})

// --------------------------------------- 2: stream moves backwards

test('a stream that moved backwards (a far-future id, then deleted): later broadcasts still reach every server, after a reset', async (t) => {
  const stream = streamKey('backwards')
  const admin = await adminClient()
  const redisA = await channelClient()
  const redisB = await channelClient()
  const a = await redisChannel(t, redisA, stream)
  const b = await redisChannel(t, redisB, stream)
  const codes = []
  a.onError((err) => codes.push(err.code))
  const srvA = await channelServer(t, a)
  const srvB = await channelServer(t, b)
  const onA = open(t, srvA.port)
  const onB = open(t, srvB.port)
  for (const member of [onA, onB]) await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')

  const far = await admin.xadd(stream, '99999999999999-0', 'event', 'n', 'data', '"far"')
  for (const member of [onA, onB]) await waitForBody(member, (body) => body.includes(`id: ${far}\n`), 'the far-future entry')
  await admin.del(stream)
  await waitFor(() => codes.includes('ERR_SSE_REDIS_STREAM_RESET'), { what: 'the reader to notice', ...WAIT })
  const ids = await broadcastRange(a, 1, 5)
  assert.ok(ids.every((id) => Number(id.split('-')[0]) < 99999999999999), 'the new ids are lower')
  for (const member of [onA, onB]) {
    await waitForBody(member, (body) => body.includes(`id: ${ids[4]}\n`), 'the broadcasts after the stream went backwards')
    const events = eventsOf(bodyOf(member))
    assert.deepEqual(events.map((e) => e.id), [far, '0-0', ...ids])
    assert.deepEqual(events[1], { id: '0-0', event: 'reset', data: '{"reason":"unknown"}' })
  }
  assert.equal(b.redisStatus.lastId, ids[4])
})

// A client that comes back with an id of the new stream to a process whose
// reader has not read that stream yet was replayed from the new stream, then
// reset when the reader caught up, and got the events a second time (the
// chaos suite saw it in CI). After a far-future id, the reader's XREAD BLOCK
// is not woken by the new stream's lower ids: for up to 2 s it is still on
// the old stream.
test('a client that resumes with an id of a stream made again before this reader read it is asked again, and gets no event twice', async (t) => {
  const stream = streamKey('ahead')
  const admin = await adminClient()
  const redis = await channelClient()
  const channel = await redisChannel(t, redis, stream)
  const codes = []
  channel.onError((err) => codes.push(err.code))
  const srv = await channelServer(t, channel)
  const far = await admin.xadd(stream, '99999999999999-0', 'event', 'n', 'data', '"far"')
  await waitFor(() => channel.lastEventId === far, { what: 'the reader to read the far-future entry', ...WAIT })
  const remake = admin.multi().del(stream)
  for (let n = 1; n <= 5; n++) remake.xadd(stream, '*', 'event', 'n', 'data', String(n))
  const ids = (await remake.exec()).slice(1).map(([, id]) => id)

  // Served by another process in between, it comes back here with ids[1].
  const early = open(t, srv.port, { 'Last-Event-ID': ids[1] })
  const ended = await waitForBody(early, (body, parsed) => parsed.complete, 'the stream to end for a retry')
  assert.deepEqual(codes, [], 'the reader had not read the new stream yet')
  assert.deepEqual(eventsOf(ended.body.toString('utf8')), [], 'nothing after the welcome')

  await waitFor(() => codes.includes('ERR_SSE_REDIS_STREAM_RESET') && channel.lastEventId === ids[4], {
    what: 'the reader to read the new stream',
    ...WAIT,
  })
  const back = open(t, srv.port, { 'Last-Event-ID': ids[1] })
  await waitForBody(back, (body) => body.includes(`id: ${ids[4]}\n`), 'the replay of the new stream')
  assert.deepEqual(eventsOf(bodyOf(back)).map((e) => e.id), ids.slice(2))
})

// ------------------------------------------------------- 3: hung Redis

test('a hung Redis (SIGSTOP): broadcasts bounded in number and time, a replay ends for retry, the reader reconnects; all works after SIGCONT', async (t) => {
  const own = await startRedis()
  t.after(() => own.close())
  const stream = streamKey('hung')
  const redis = await channelClient(own.port)
  const channel = await redisChannel(t, redis, stream, { maxInFlight: 20, commandTimeout: 400 })
  const errors = []
  channel.onError((err) => errors.push(err))
  const states = []
  const onState = (message) => {
    if (message.channel === channel) states.push([message.previous, message.state, message.error?.code ?? null])
  }
  diagnostics.subscribe('native-sse:redis:state', onState)
  t.after(() => diagnostics.unsubscribe('native-sse:redis:state', onState))
  const srv = await channelServer(t, channel)
  const member = open(t, srv.port)
  await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const first = await broadcastRange(channel, 1, 3)
  await waitForBody(member, (body) => body.includes(`id: ${first[2]}\n`), 'the events before')

  own.signal('SIGSTOP')
  t.after(() => own.signal('SIGCONT'))
  assert.ok(isReady(redis), 'the client does not notice a stopped server')
  const outcomes = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) => channel.broadcast({ eventName: 'hung', eventPayload: i })),
  )
  const rejected = outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason)
  assert.equal(rejected.length, 200, 'no broadcast resolved while Redis was stopped')
  assert.ok(rejected.every((err) => err.code === 'ERR_SSE_REDIS_UNAVAILABLE'))
  const overBound = rejected.filter((err) => /maxInFlight/.test(err.message))
  const timedOut = rejected.filter((err) => /commandTimeout/.test(err.message))
  assert.equal(timedOut.length, 20, 'exactly maxInFlight were sent, and each timed out')
  assert.equal(overBound.length, 180, 'the others were refused at once')
  // The slots stay taken until Redis answers: more are refused.
  assert.equal(channel.redisStatus.inFlight, 20)
  await assert.rejects(channel.broadcast({ eventName: 'hung', eventPayload: 'more' }), /maxInFlight/)
  assert.equal(channel.redisStatus.inFlight, 20)

  // A replay cannot be read: the stream ends so the client retries.
  const resuming = open(t, srv.port, { 'Last-Event-ID': first[0] })
  await waitFor(() => resuming.response()?.complete === true, { what: 'the replay to time out and end', ...WAIT })
  assert.deepEqual(eventsOf(bodyOf(resuming)), [])
  // The reader's XREAD BLOCK does not come back: it times out.
  await waitFor(() => channel.redisStatus.state === 'unavailable', { what: 'the state to turn unavailable', ...WAIT })
  assert.ok(errors.some((err) => err.code === 'ERR_SSE_REDIS_UNAVAILABLE'))
  assert.ok(states.some(([, state]) => state === 'unavailable'), 'published on the diagnostics channel')

  own.signal('SIGCONT')
  await waitFor(() => channel.redisStatus.inFlight === 0, { what: 'Redis to answer the commands it held', ...WAIT })
  await waitFor(() => channel.redisStatus.state === 'ready', { what: 'the reader to read again', ...WAIT })
  const later = await broadcastRange(channel, 4, 6)
  await waitForBody(member, (body) => body.includes(`id: ${later[2]}\n`), 'the events after SIGCONT')
  const events = eventsOf(bodyOf(member))
  // Before, then the timed-out XADDs that Redis ran after all (their
  // outcome was unknown to the caller), then after: once each, in order.
  assert.deepEqual(events.slice(0, 3).map((e) => e.id), first)
  assert.deepEqual(events.slice(-3).map((e) => e.id), later)
  const middle = events.slice(3, -3)
  assert.ok(middle.every((e) => e.event === 'hung'), 'only the timed-out broadcasts in between')
  assert.ok(middle.length <= 20)
  assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no duplicates')
  assert.ok(states.some(([previous, state]) => previous === 'unavailable' && state === 'ready'))

  // The resuming client comes back and gets exactly what it missed.
  const back = open(t, srv.port, { 'Last-Event-ID': first[0] })
  await waitForBody(back, (body) => body.includes(`id: ${later[2]}\n`), 'the replay after SIGCONT')
  assert.deepEqual(eventsOf(bodyOf(back)).map((e) => e.id), events.slice(1).map((e) => e.id))
})

test('CLIENT PAUSE WRITE: broadcasts time out while reads go on; afterwards they go through', async (t) => {
  const own = await startRedis()
  t.after(() => own.close())
  const stream = streamKey('pause')
  const admin = await adminClient(own.port)
  const redis = await channelClient(own.port)
  const channel = await redisChannel(t, redis, stream, { commandTimeout: 300 })
  const srv = await channelServer(t, channel)
  const member = open(t, srv.port)
  await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')
  await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE')
  const paused = await Promise.allSettled([1, 2, 3].map((n) => channel.broadcast({ eventName: 'p', eventPayload: n })))
  assert.deepEqual(paused.map((o) => o.status), ['rejected', 'rejected', 'rejected'])
  assert.ok(paused.every((o) => o.reason.code === 'ERR_SSE_REDIS_UNAVAILABLE' && /commandTimeout/.test(o.reason.message)))
  await admin.call('CLIENT', 'UNPAUSE')
  await waitFor(() => channel.redisStatus.inFlight === 0, { what: 'the paused XADDs to be answered', ...WAIT })
  const id = await channel.broadcast({ eventName: 'p', eventPayload: 4 })
  await waitForBody(member, (body) => body.includes(`id: ${id}\n`), 'the broadcast after the pause')
  const events = eventsOf(bodyOf(member))
  assert.equal(events.at(-1).data, '4')
  assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no duplicates')
})

// -------------------------------------------- 4: reader behind maxLen

test('a server process stalled while the stream was trimmed past its reader gives its members an expired reset, then goes on live', async (t) => {
  const stream = streamKey('stalled')
  const admin = await adminClient()
  const { child, port } = await serverProcess(shared.port, stream)
  const member = open(t, port)
  await waitForBody(member, (body) => body.includes('id: 0-0\n\n'), 'the position')
  const before = []
  for (let n = 1; n <= 5; n++) before.push(await admin.xadd(stream, '*', 'event', 'n', 'data', String(n)))
  await waitForBody(member, (body) => body.includes(`id: ${before[4]}\n`), 'the events before the stall')

  child.kill('SIGSTOP')
  let lastAdded
  try {
    const pipeline = admin.pipeline()
    for (let n = 6; n <= 3005; n++) pipeline.xadd(stream, 'MAXLEN', '~', '100', '*', 'event', 'n', 'data', String(n))
    const results = await pipeline.exec()
    lastAdded = results.at(-1)[1]
    assert.ok((await admin.xlen(stream)) < 1000, 'the stream was trimmed')
  } finally {
    child.kill('SIGCONT')
  }
  const live = await admin.xadd(stream, '*', 'event', 'n', 'data', 'live')
  await waitForBody(member, (body) => body.includes(`id: ${live}\n`), 'the live event after the stall')
  const events = eventsOf(bodyOf(member))
  assert.deepEqual(events.slice(0, 5).map((e) => e.id), before)
  const resetAt = events.findIndex((e) => e.event === 'reset')
  assert.ok(resetAt >= 5, `a reset after the stall: ${JSON.stringify(events.slice(5, 8))}`)
  assert.equal(events[resetAt].data, '{"reason":"expired"}')
  // Nothing between the events before and the reset (no entries read past
  // a gap); after it, exactly the entries after its id.
  assert.equal(resetAt, 5)
  const resetId = events[resetAt].id
  const kept = (await admin.xrange(stream, '-', '+')).map(([id]) => id)
  const expected = kept.filter((id) => compareIds(id, resetId) > 0)
  assert.deepEqual(events.slice(resetAt + 1).map((e) => e.id), expected)
  assert.ok(compareIds(resetId, lastAdded) >= 0, 'the reset is at the head the reader found')
})


// ------------------------------------------------- 5: options, callback

test('maxInFlight and commandTimeout are checked; onError takes a function; redisStatus is null in-process; a throwing onError callback is a warning', async (t) => {
  const redis = await channelClient()
  for (const [options, name] of [
    [{ maxInFlight: 0 }, 'maxInFlight'],
    [{ maxInFlight: 1.5 }, 'maxInFlight'],
    [{ maxInFlight: '10' }, 'maxInFlight'],
    [{ commandTimeout: 0 }, 'commandTimeout'],
    [{ commandTimeout: Infinity }, 'commandTimeout'],
    [{ commandTimeout: null }, 'commandTimeout'],
  ]) {
    assert.throws(() => new Channel({ redis, stream: 's', ...options }), (err) => {
      assert.ok(err instanceof TypeError)
      assert.equal(err.code, 'ERR_SSE_INVALID_OPTION')
      assert.match(err.message, new RegExp(`options.${name}`))
      return true
    })
  }
  assert.throws(() => new Channel({ redis: { call() {} }, stream: 's' }), (err) => {
    assert.equal(err.code, 'ERR_SSE_INVALID_OPTION')
    assert.match(err.message, /ioredis or node-redis client: redis.duplicate is not a function/)
    return true
  })
  const local = new Channel()
  t.after(() => local.close())
  assert.equal(local.redisStatus, null)
  assert.throws(() => local.onError('nope'), { code: 'ERR_SSE_INVALID_ARGUMENT' })

  const stream = streamKey('callback')
  const channel = await redisChannel(t, redis, stream)
  const status = channel.redisStatus
  assert.deepEqual(Object.keys(status).sort(), ['client', 'head', 'inFlight', 'lagMs', 'lastError', 'lastId', 'resets', 'state', 'stream'])
  assert.equal(status.client, CLIENT_KIND)
  assert.equal(status.stream, stream)
  assert.equal(status.inFlight, 0)
  assert.notEqual(channel.redisStatus, channel.redisStatus, 'a new object each time')
  const warnings = []
  const onWarning = (warning) => warnings.push(warning)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const seen = []
  channel.onError(() => {
    throw new Error('user code')
  })
  channel.onError((err) => seen.push(err.code))
  const admin = await adminClient()
  const one = await channel.broadcast({ eventName: 'n', eventPayload: 1 })
  await waitFor(() => channel.redisStatus.lastId === one, { what: 'the reader to read it', ...WAIT })
  await admin.del(stream)
  await waitFor(() => seen.length > 0 && warnings.length > 0, { what: 'the error and the warning', ...WAIT })
  assert.equal(seen[0], 'ERR_SSE_REDIS_STREAM_RESET')
  assert.equal(warnings[0].code, 'ERR_SSE_CALLBACK_THREW')
  // The channel goes on.
  const id = await channel.broadcast({ eventName: 'n', eventPayload: 2 })
  await waitFor(() => channel.redisStatus.lastId === id, { what: 'the reader to read on', ...WAIT })
  channel.close()
  assert.equal(channel.redisStatus.state, 'closed')
})
