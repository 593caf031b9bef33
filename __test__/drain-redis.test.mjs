// A deploy, end to end: 300 `eventsource` clients (in two child processes)
// connect through a TCP proxy (in this process) to server A, a child
// process whose Channel is shared through a real redis-server with server
// B, another child process. This process broadcasts numbered events
// through Redis all along. Then the proxy starts sending new connections
// to B, and A drains (`drain({ windowMs })`), closes its server and exits
// by itself. Every client must come back to B with its Last-Event-ID and
// end up with every event exactly once, in order, and the reconnects must
// be spread over the window.
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import net from 'node:net'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import Redis from 'ioredis'

import { Channel } from 'native-sse'
import { waitFor } from './helpers.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'

const SERVER = fileURLToPath(new URL('./fixtures/drain-server.mjs', import.meta.url))
const CLIENTS = fileURLToPath(new URL('./fixtures/drain-clients.mjs', import.meta.url))
const CLIENT_PROCESSES = 2
const CLIENTS_EACH = 150
const TOTAL = CLIENT_PROCESSES * CLIENTS_EACH
const WINDOW_MS = 3000

let redisServer
const children = new Set()
const redisClients = new Set()

before(async () => {
  redisServer = await startRedis()
})

after(async () => {
  for (const client of redisClients) client.disconnect()
  for (const child of children) child.kill('SIGKILL')
  await redisServer?.close()
  await killAllRedis()
})

/** A child process, killed in after() if it is still running; `exited` resolves with its exit. */
function start(script, args) {
  const child = fork(script, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  children.add(child)
  let output = ''
  child.stdout.on('data', (data) => (output += data))
  child.stderr.on('data', (data) => (output += data))
  child.output = () => output
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  /** Sends `message` and resolves with the first answer of `type` (bounded). */
  child.ask = (message, type, timeoutMs = 10000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.off('message', onMessage)
        reject(new Error(`no ${type} answer within ${timeoutMs} ms:\n${output}`))
      }, timeoutMs)
      const onMessage = (answer) => {
        if (answer?.type !== type) return
        clearTimeout(timer)
        child.off('message', onMessage)
        resolve(answer)
      }
      child.on('message', onMessage)
      if (message !== null) child.send(message)
    })
  return child
}

async function startServerProcess(stream) {
  const child = start(SERVER, [String(redisServer.port), stream])
  const { port } = await child.ask(null, 'listening', 15000)
  child.port = port
  // Until the channel has read the stream's position, members wait.
  const deadline = Date.now() + 15000
  for (;;) {
    const state = await child.ask({ type: 'state' }, 'state')
    if (state.lastEventId !== null) break
    if (Date.now() > deadline) throw new Error('the server never read the stream position')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return child
}

/** A TCP proxy on 127.0.0.1: new connections go to `target()`'s port. */
async function startProxy(target) {
  const sockets = new Set()
  const counts = new Map()
  const server = net.createServer((client) => {
    const port = target()
    counts.set(port, (counts.get(port) ?? 0) + 1)
    const upstream = net.connect(port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      // As load balancers do: small writes (an event, the end) go at once.
      socket.setNoDelay(true)
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        sockets.delete(socket)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    counts,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** The child's exit, or null when it is still running after 15 s. */
function exitOf(child) {
  let timer
  return Promise.race([
    child.exited.finally(() => clearTimeout(timer)),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), 15000)
    }),
  ])
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

test(`${TOTAL} eventsource clients move from a draining server to another with every event once`, { timeout: 60000 }, async (t) => {
  const stream = `native-sse-test:${process.pid}:drain`
  const a = await startServerProcess(stream)
  const b = await startServerProcess(stream)
  let drained = false
  const proxy = await startProxy(() => (drained ? b.port : a.port))
  t.after(() => proxy.close())

  // The broadcaster: a channel of this process, with no members.
  const redis = new Redis({ host: '127.0.0.1', port: redisServer.port })
  redis.on('error', () => {})
  redisClients.add(redis)
  const broadcaster = new Channel({ redis, stream })
  t.after(() => broadcaster.close())
  // Ready: it read the stream and its client is connected (a broadcast on a
  // client still connecting is refused).
  await waitFor(() => broadcaster.redisStatus.state === 'ready', { timeoutMs: 15000, what: 'the broadcaster to be ready' })

  const url = `http://127.0.0.1:${proxy.port}/events`
  const groups = []
  for (let i = 0; i < CLIENT_PROCESSES; i++) {
    const group = start(CLIENTS, [url, String(CLIENTS_EACH)])
    await group.ask(null, 'ready', 15000)
    groups.push(group)
  }
  const progress = async () => {
    const answers = await Promise.all(groups.map((group) => group.ask({ type: 'progress' }, 'progress')))
    return {
      open: answers.reduce((sum, answer) => sum + answer.open, 0),
      fewest: Math.min(...answers.map((answer) => answer.fewest)),
    }
  }
  const deadline = (ms) => Date.now() + ms
  let until = deadline(20000)
  for (let p = await progress(); p.open < TOTAL; p = await progress()) {
    if (Date.now() > until) throw new Error(`only ${p.open} of ${TOTAL} clients opened`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.equal((await a.ask({ type: 'state' }, 'state')).size, TOTAL)

  // Numbered events through Redis, one after the other, until told to stop.
  let sent = 0
  let broadcasting = true
  const broadcasts = (async () => {
    while (broadcasting) {
      await broadcaster.broadcast({ eventName: 'tick', eventPayload: ++sent })
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()

  // Every client has events (so a Last-Event-ID) before the drain.
  until = deadline(20000)
  for (let p = await progress(); p.fewest < 3; p = await progress()) {
    if (Date.now() > until) throw new Error('the clients did not get the first events')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }

  // Nobody has reached B yet.
  const before = await b.ask({ type: 'state' }, 'state')
  assert.equal(before.fresh + before.resumed, 0)

  // The deploy: new connections go to B, A drains and goes away.
  drained = true
  const asked = Date.now()
  const drainReport = await a.ask({ type: 'drain', windowMs: WINDOW_MS }, 'drained', 15000)
  assert.deepEqual(drainReport.summary, { streams: TOTAL, destroyed: 0 })
  assert.ok(drainReport.at >= asked)
  const aClosed = await a.ask(null, 'server-closed', 15000).catch((err) => {
    throw new Error(`server.close() did not complete on A: ${err.message}`)
  })
  const exit = await exitOf(a)
  assert.notEqual(exit, null, `A did not exit by itself:\n${a.output()}`)
  assert.deepEqual(exit, { code: 0, signal: null }, a.output())

  // Everyone comes back to B.
  until = deadline(WINDOW_MS + 15000)
  for (let state = await b.ask({ type: 'state' }, 'state'); state.size < TOTAL; state = await b.ask({ type: 'state' }, 'state')) {
    if (Date.now() > until) throw new Error(`only ${state.size} of ${TOTAL} clients came back to B`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
  broadcasting = false
  await broadcasts
  const last = sent
  until = deadline(15000)
  for (let p = await progress(); p.fewest < last; p = await progress()) {
    if (Date.now() > until) throw new Error(`a client has ${p.fewest} of ${last} events`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const bState = await b.ask({ type: 'state' }, 'state')
  assert.equal(bState.resumed, TOTAL, 'every request to B carried a Last-Event-ID')
  assert.equal(bState.fresh, 0)

  const results = (await Promise.all(groups.map((group) => group.ask({ type: 'finish' }, 'result')))).flatMap(
    (answer) => answer.clients,
  )
  assert.equal(results.length, TOTAL)
  const expected = Array.from({ length: last }, (_, i) => i + 1)
  const delays = []
  let failedAttempts = 0
  for (const [i, client] of results.entries()) {
    assert.equal(client.resets, 0, `client ${i} got a reset`)
    assert.deepEqual(client.ticks, expected, `client ${i}: every event once, in order`)
    const [first, ...again] = client.requests
    assert.equal(first.lastEventId, null)
    assert.ok(first.at < drainReport.at, `client ${i} first connected before the drain`)
    assert.ok(again.length >= 1, `client ${i} reconnected`)
    for (const request of again) {
      assert.ok(request.had !== null, `client ${i} had events before the drain`)
      assert.equal(request.lastEventId, request.had, `client ${i} resumed from its last event`)
    }
    // A reconnect sent on the client's old connection in the instant
    // before it saw that connection close fails before any server reads
    // it ("other side closed"); the client tries again after its retry
    // delay. Servers see one request per client each (checked below).
    const failures = client.errors.filter((e) => e.message !== null && e.message.includes('fetch failed'))
    assert.equal(again.length - 1, failures.length, `client ${i}: every extra attempt is one that failed to connect`)
    failedAttempts += failures.length
    // When the client tried to reconnect: its retry delay after the drain.
    delays.push(again[0].at - drainReport.at)
  }
  // Each server's handler saw each client once: A fresh, B resumed.
  assert.deepEqual(aClosed.requests, { fresh: TOTAL, resumed: 0 })
  assert.equal(proxy.counts.get(a.port), TOTAL)
  assert.ok(proxy.counts.get(b.port) >= TOTAL)

  delays.sort((x, y) => x - y)
  const spread = {
    min: delays[0],
    p10: percentile(delays, 0.1),
    p50: percentile(delays, 0.5),
    p90: percentile(delays, 0.9),
    max: delays[delays.length - 1],
  }
  const line =
    `reconnects after drain({ windowMs: ${WINDOW_MS} }), ms: ${JSON.stringify(spread)}; ` +
    `${last} events; ${failedAttempts} reconnects sent on a closing connection and tried again`
  t.diagnostic(line)
  assert.ok(spread.min >= 0, 'no client reconnected before the drain')
  assert.ok(spread.p90 - spread.p10 >= 0.5 * WINDOW_MS, `the reconnects cover most of the window: ${line}`)
  assert.ok(spread.p50 >= 0.25 * WINDOW_MS && spread.p50 <= WINDOW_MS, `spread over the window, not bunched at one end: ${line}`)

  await b.ask({ type: 'close' }, 'server-closed', 15000)
  assert.deepEqual(await exitOf(b), { code: 0, signal: null }, b.output())
  for (const group of groups) assert.deepEqual(await exitOf(group), { code: 0, signal: null }, group.output())
})
