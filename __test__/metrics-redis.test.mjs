// channel.metrics() of a Redis channel (docs/operations.md), against a
// real redis-server: broadcasts are the entries the channel read, a member
// that comes back with a Last-Event-ID is a replay, one with an unknown id a
// reset, and the bytes are what the members received on raw sockets.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { Channel, metrics, SSE } from 'native-sse'
import { rawGet, startServer, waitFor } from './helpers.mjs'
import { CLIENT_KIND, disconnect, makeClient } from './redis-clients.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'

const WAIT = { timeoutMs: 15000 }
let redisServer
let redis
let srv
const made = []

before(async () => {
  redisServer = await startRedis()
  // ioredis, or node-redis in metrics-redis-node-redis.test.mjs.
  redis = makeClient(redisServer.port)
  srv = await startServer((req, res) => made.push(new SSE(req, res, { keepAlive: 0 })))
})

after(async () => {
  await srv?.close()
  if (redis) disconnect(redis)
  await redisServer?.close()
  await killAllRedis()
})

/** A raw client and its stream, once the welcome has arrived. */
async function open(headers = {}) {
  const count = made.length
  const client = rawGet(srv.port, '/', headers)
  await waitFor(() => made.length > count, { what: 'the stream' })
  await client.waitForBody((body) => body.endsWith('\n\n'))
  return { client, sse: made[count], welcome: client.response().body.length }
}

test('a Redis channel counts what it read and delivered, its replays and resets', async () => {
  const before = metrics()
  const channel = new Channel({ redis, stream: `native-sse-test:${process.pid}:metrics` })
  try {
    const first = await open()
    channel.add(first.sse)
    // The member joins once the channel has read the stream's position.
    await first.client.waitForBody((body) => /id: \d+-\d+\n\n$/.test(body), WAIT)
    await waitFor(() => channel.redisStatus.state === 'ready', { what: 'the channel to be ready', ...WAIT })
    const ids = []
    for (let i = 0; i < 5; i++) ids.push(await channel.broadcast({ eventName: 'news', eventPayload: i }))
    await first.client.waitForBody((body) => body.includes('data: 4\n\n'), WAIT)

    const back = await open({ 'Last-Event-ID': ids[1] })
    const unknown = await open({ 'Last-Event-ID': 'not-an-id' })
    channel.add(back.sse)
    channel.add(unknown.sse)
    await back.client.waitForBody((body) => body.includes('data: 4\n\n'), WAIT)
    await unknown.client.waitForBody((body) => body.includes('event: reset'), WAIT)
    await channel.broadcast({ eventName: 'news', eventPayload: 'live' })
    const members = [first, back, unknown]
    for (const { client } of members) await client.waitForBody((body) => body.includes('"live"'), WAIT)

    const m = channel.metrics()
    assert.equal(m.members, 3)
    assert.equal(m.broadcasts, 6)
    assert.equal(m.deliveries, 5 + 3)
    assert.equal(m.replays, 1)
    assert.equal(m.resets, 1)
    const received = members.reduce((sum, { client, welcome }) => sum + client.response().body.length - welcome, 0)
    assert.equal(m.bytes, received)
    // The Redis reader's state, as channel.redisStatus gives it.
    assert.equal(m.redis.state, 'ready')
    assert.equal(m.redis.client, CLIENT_KIND)
    assert.equal(m.redis.lastId, channel.lastEventId)
    assert.equal(m.redis.inFlight, 0)
    assert.ok(m.redis.lagMs >= 0)

    const d = metrics()
    assert.equal(d.replays - before.replays, 1)
    assert.equal(d.resets - before.resets, 1)
    assert.equal(d.events - before.events, m.deliveries)
    for (const { client } of members) client.close()
  } finally {
    channel.close()
  }
})
