// A Redis channel with a flush window: entries read back from the stream
// wait in the channel's queue for the window, and the first one of a
// window arms its timer (before the fix they waited until close()). Real
// redis-server (redis-server.mjs), a real HTTP server, raw sockets; ioredis
// here, node-redis in redis-flush-window-node-redis.test.mjs.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { Channel, SSE } from 'native-sse'
import { rawGet, splitEvents, startServer, waitFor } from './helpers.mjs'
import { disconnect, makeClient } from './redis-clients.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'

let redisServer
const clients = []

before(async () => {
  redisServer = await startRedis()
})

after(async () => {
  for (const client of clients) disconnect(client)
  await redisServer?.close()
  await killAllRedis()
})

/** A client of the kind under test (ioredis, or node-redis: see redis-clients.mjs). */
function redisClient() {
  const client = makeClient(redisServer.port)
  clients.push(client)
  return client
}

const ticks = (body) => splitEvents(body).filter((e) => e.includes('event: tick'))

for (const flushWindow of [10, 200]) {
  test(`flushWindow ${flushWindow} on a Redis channel: every entry reaches the members, in order`, { timeout: 30_000 }, async () => {
    const stream = `native-sse-test:${process.pid}:flush-window:${flushWindow}`
    // The members' channel (with the window) and a publisher on the same stream.
    const members = new Channel({ redis: redisClient(), stream, maxLen: 100, flushWindow })
    const publisher = new Channel({ redis: redisClient(), stream, maxLen: 100 })
    const { port, close } = await startServer((req, res) => members.add(new SSE(req, res, { keepAlive: 0 })))
    const readers = [rawGet(port), rawGet(port)]
    try {
      await waitFor(() => members.size === 2, { timeoutMs: 10_000, what: 'two members' })
      // A broadcast on a client that is still connecting is refused
      // (ERR_SSE_REDIS_UNAVAILABLE): wait until the publisher reads too.
      await waitFor(() => publisher.redisStatus.state === 'ready', { timeoutMs: 10_000, what: 'the publisher to be ready' })
      const ids = []
      for (let i = 1; i <= 5; i++) ids.push(await publisher.broadcast({ eventName: 'tick', eventPayload: { i } }))
      for (const reader of readers) {
        const { body } = await reader.waitForBody((text) => ticks(text).length === 5, { timeoutMs: 10_000 })
        const events = ticks(body.toString('utf8'))
        assert.deepEqual(events.map((e) => /^id: (.*)$/m.exec(e)[1]), ids)
        assert.deepEqual(events.map((e) => JSON.parse(/^data: (.*)$/m.exec(e)[1]).i), [1, 2, 3, 4, 5])
      }
      // A later broadcast arms a new window and arrives too.
      const sixth = await publisher.broadcast({ eventName: 'tick', eventPayload: { i: 6 } })
      for (const reader of readers) {
        const { body } = await reader.waitForBody((text) => ticks(text).length === 6, { timeoutMs: 10_000 })
        assert.match(ticks(body.toString('utf8'))[5], new RegExp(`^id: ${sixth}$`, 'm'))
      }
    } finally {
      for (const reader of readers) reader.socket.destroy()
      members.close()
      publisher.close()
      await close()
    }
  })
}
