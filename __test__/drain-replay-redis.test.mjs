// A drain while a member's Redis replay is still being read (a client that
// resumes from far back and reads slowly, so that the replay waits for its
// socket before the next page is read): the live events that arrived
// behind the replay must not reach the client after a gap, or its
// Last-Event-ID would skip the pages never read. Real redis-server, a raw
// socket that stops reading, and the client's reconnect to check that it
// ends up with every event once.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, test } from 'node:test'

import { Channel, SSE, drain } from 'native-sse'
import { rawGet, splitEvents, startServer, waitFor } from './helpers.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'
import { readyIoredis } from './redis-clients.mjs'

const WAIT = { timeoutMs: 15000 }
const ENTRIES = 300
const ENTRY_BYTES = 60000

let redisServer
const clients = new Set()

before(async () => {
  redisServer = await startRedis()
})

after(async () => {
  for (const client of clients) client.disconnect()
  await redisServer?.close()
  await killAllRedis()
})

function readyClient() {
  return readyIoredis(redisServer.port, clients, WAIT)
}

/** The ids of a body's events after its welcome, in order. */
function idsOf(body) {
  return splitEvents(body)
    .filter((block) => block.includes('\nevent: ') || block.startsWith('event: '))
    .filter((block) => !block.includes('event: welcome'))
    .map((block) => /^id: (\S+)$/m.exec(block)?.[1])
}

test('drain() during a Redis replay with pages still to read: the client resumes from the last replayed event and gets every event once', async (t) => {
  const stream = `native-sse-drain-replay:${process.pid}`
  const mine = await readyClient()
  const other = await readyClient()
  const here = new Channel({ redis: mine, stream })
  const there = new Channel({ redis: other, stream })
  t.after(() => here.close())
  t.after(() => there.close())
  await waitFor(() => here.lastEventId !== null && there.lastEventId !== null, { what: 'the channels to read the stream', ...WAIT })
  const filler = 'x'.repeat(ENTRY_BYTES)
  const ids = []
  for (let n = 0; n < ENTRIES; n++) ids.push(await there.broadcast({ eventName: 'n', data: `${n} ${filler}` }))
  await waitFor(() => here.lastEventId === ids.at(-1), { what: 'this process to read the entries', ...WAIT })

  let sse
  const srv = await startServer((req, res) => {
    sse = new SSE(req, res, { keepAlive: 0 })
    here.add(sse)
  })
  t.after(() => srv.close())
  // Resumes from the start and stops reading: the replay waits for the socket.
  const socket = net.connect(srv.port, '127.0.0.1')
  t.after(() => socket.destroy())
  const chunks = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.on('error', () => {})
  socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 0-0\r\n\r\n`)
  await waitFor(() => sse !== undefined, { what: 'the stream to open', ...WAIT })
  socket.pause()
  await waitFor(() => sse.bufferedBytes > 0, { what: 'the replay to wait for the socket', ...WAIT })
  // A live event arrives behind the replay.
  const live = await there.broadcast({ eventName: 'n', eventPayload: 'live' })
  await waitFor(() => here.lastEventId === live, { what: 'this process to read the live event', ...WAIT })

  const drained = drain({ windowMs: 0, timeoutMs: 10000 })
  socket.resume()
  assert.deepEqual(await drained, { streams: 1, destroyed: 0 })
  await new Promise((resolve) => (socket.readableEnded ? resolve() : socket.once('end', resolve)))
  const first = idsOf(Buffer.concat(chunks).toString('latin1'))
  assert.ok(first.length < ENTRIES, `the replay was cut by the drain (got ${first.length} of ${ENTRIES})`)
  assert.deepEqual(first, ids.slice(0, first.length), 'the replayed events, in order, and nothing after a gap')

  // The drain window is over (windowMs 0): the client comes back from its
  // last event and gets the rest, the live event included, once.
  const back = rawGet(srv.port, '/', { 'Last-Event-ID': first.at(-1) })
  t.after(() => back.close())
  await back.waitForBody((body) => body.includes(`id: ${live}\n`), { what: 'the rest of the replay and the live event', ...WAIT })
  const rest = idsOf(back.response().body.toString('latin1'))
  assert.deepEqual([...first, ...rest], [...ids, live], 'every event once, in order')
})
