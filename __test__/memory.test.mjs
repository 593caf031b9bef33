// Opening and dropping 10 000 connections leaves nothing behind: the SSE
// instances let go of req/res when the client leaves, and the heap returns to
// its baseline after GC.
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'

import { SSE } from 'native-sse'
import { startServer, waitFor } from './helpers.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

async function fullGc() {
  // napi finalizers run after the collection; give them turns of the loop.
  for (let i = 0; i < 6; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const TOTAL = 10_000
const BATCH = 200

test(`${TOTAL} connections opened and dropped leave the heap at its baseline`, { timeout: 180_000 }, async () => {
  let closedOnServer = 0
  let opened = 0
  const sampled = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res)
    sse.send({ eventName: 'tick', eventPayload: { n: opened } })
    res.on('close', () => closedOnServer++)
    if (opened++ % 100 === 0) sampled.push({ sse: new WeakRef(sse), res: new WeakRef(res), req: new WeakRef(req) })
  })

  async function cycle(count) {
    for (let done = 0; done < count; done += BATCH) {
      const sockets = await Promise.all(
        Array.from({ length: Math.min(BATCH, count - done) }, () => connectAndReadWelcome(srv.port)),
      )
      for (const socket of sockets) socket.destroy()
    }
  }

  // Warm up (JIT, pools, lazy allocations), then take the baseline.
  await cycle(1000)
  await waitFor(() => closedOnServer === opened, { timeoutMs: 30_000, what: 'warm-up closes' })
  await fullGc()
  const baseline = process.memoryUsage().heapUsed
  sampled.length = 0

  await cycle(TOTAL)
  await waitFor(() => closedOnServer === opened, { timeoutMs: 60_000, what: 'server-side closes' })
  assert.equal(opened, 1000 + TOTAL)
  await fullGc()
  const afterwards = process.memoryUsage().heapUsed
  const growth = afterwards - baseline
  await srv.close()

  const alive = sampled.filter((s) => s.res.deref() || s.sse.deref() || s.req.deref()).length
  assert.equal(alive, 0, `${alive} of ${sampled.length} sampled connections still reachable after GC`)
  // A leak of the response alone (socket, parser, buffers) costs several KiB
  // per connection, i.e. tens of MB here.
  assert.ok(growth < 2 * 1024 * 1024, `heap grew by ${(growth / 1024).toFixed(0)} KiB over ${TOTAL} connections`)
})

function connectAndReadWelcome(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let seen = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('no welcome within 10 s'))
    }, 10_000)
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('data', (data) => {
      seen += data.toString('latin1')
      if (seen.includes('event: tick')) {
        clearTimeout(timer)
        socket.removeAllListeners('data')
        resolve(socket)
      }
    })
    socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  })
}

test('channel members that leave are released: no SSE, request or response stays reachable', { timeout: 120_000 }, async () => {
  const { Channel } = await import('native-sse')
  const channel = new Channel({ historyEvents: 10 })
  const sampled = []
  let opened = 0
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    channel.add(sse)
    channel.broadcast({ eventName: 'joined', eventPayload: { n: opened } })
    if (opened++ % 10 === 0) sampled.push({ sse: new WeakRef(sse), res: new WeakRef(res), req: new WeakRef(req) })
  })
  try {
    for (let round = 0; round < 5; round++) {
      const sockets = await Promise.all(
        Array.from({ length: 100 }, () => {
          const socket = net.connect(srv.port, '127.0.0.1')
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
          return new Promise((resolve) => socket.once('data', () => resolve(socket)))
        }),
      )
      await waitFor(() => channel.size === 100, { timeoutMs: 10_000, what: '100 members' })
      for (const socket of sockets) socket.destroy()
      await waitFor(() => channel.size === 0, { timeoutMs: 10_000, what: 'the members to leave' })
    }
    await fullGc()
    const alive = sampled.filter((s) => s.sse.deref() || s.res.deref() || s.req.deref()).length
    assert.equal(sampled.length, 50)
    assert.equal(alive, 0, `${alive} of ${sampled.length} sampled members still reachable`)
  } finally {
    channel.close()
    await srv.close()
  }
})
