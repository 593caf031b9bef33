// Chaos: real redis-servers, three real server processes (each serving a
// Redis channel on 127.0.0.1; fixtures/redis-channel-server.mjs, two with
// ioredis and one with node-redis), and many `eventsource` clients that
// reach them through a small TCP proxy. The proxy routes every new
// connection to a live server process and cuts a random client connection
// now and then, so clients reconnect (with Last-Event-ID) all along. A
// broadcaster posts numbered events to the server processes in turn and
// records what each broadcast() answered.
//
// Scenarios: Redis SIGKILLed with an append-only file (fsync always) and
// restarted, Redis SIGKILLed without persistence and restarted empty,
// SIGSTOP then SIGCONT, FLUSHALL, and a server process SIGKILLed while it
// broadcasts, whose clients resume on another one.
//
// The rule checked for every client: it receives exactly the events, in
// stream order, once each, or a `reset` after which it is exact again from
// the reset's position. "The events" are every event whose broadcast
// resolved, every event any client received and every entry in the stream
// at the end (a broadcast that timed out or whose server died may or may
// not have been added: such an event is expected only if it shows up
// somewhere). An event whose broadcast was refused before it was sent
// (client not ready, maxInFlight) must never show up.
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { EventSource } from 'eventsource'
import Redis from 'ioredis'

import { waitFor } from './helpers.mjs'
import { killAllRedis, startRedis } from './redis-server.mjs'
import { compareIds } from './redis-clients.mjs'

const FIXTURE = fileURLToPath(new URL('./fixtures/redis-channel-server.mjs', import.meta.url))
const SERVERS = 3
const CLIENTS = 12
const KINDS = ['ioredis', 'node-redis', 'ioredis']
const WAIT = { timeoutMs: 20000 }

const children = new Set()
after(async () => {
  await Promise.all(
    [...children].map((child) => {
      child.kill('SIGKILL')
      return child.gone
    }),
  )
  await killAllRedis()
})

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))


// ------------------------------------------------------------ processes

/** Starts server process `index` on `stream`; resolves with { child, port }. */
async function startServerProcess(index, redisPort, stream) {
  const env = {
    ...process.env,
    NATIVE_SSE_TEST_REDIS_CLIENT: KINDS[index % KINDS.length],
    NATIVE_SSE_TEST_CHANNEL_OPTIONS: JSON.stringify({ commandTimeout: 800, maxLen: 100000 }),
  }
  const child = fork(FIXTURE, [String(redisPort), stream], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  children.add(child)
  child.output = ''
  child.stdout.on('data', (data) => (child.output += data))
  child.stderr.on('data', (data) => (child.output += data))
  child.gone = new Promise((resolve) =>
    child.once('exit', () => {
      children.delete(child)
      resolve()
    }),
  )
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server process ${index} did not listen:\n${child.output}`)), 15000)
    child.on('message', (message) => {
      if (message?.type !== 'listening') return
      clearTimeout(timer)
      resolve(message.port)
    })
    child.once('exit', () => reject(new Error(`server process ${index} exited:\n${child.output}`)))
  })
  return { child, port, alive: true }
}

/**
 * A TCP proxy in front of the server processes: each new connection goes to
 * the next live one. `cut()` destroys one random client connection.
 */
async function startProxy(backends) {
  const pairs = new Set()
  let next = 0
  const server = net.createServer((client) => {
    const live = backends.filter((backend) => backend.alive)
    if (live.length === 0) {
      client.destroy()
      return
    }
    const backend = live[next++ % live.length]
    const upstream = net.connect(backend.port, '127.0.0.1')
    const pair = { client, upstream, backend }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    cut() {
      const list = [...pairs]
      if (list.length === 0) return
      const pair = list[Math.floor(Math.random() * list.length)]
      pair.client.destroy()
      pair.upstream.destroy()
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy()
        pair.upstream.destroy()
      }
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

// ------------------------------------------------------------ clients

/** An eventsource client recording what it receives, in order. */
function startClient(port) {
  const log = []
  const source = new EventSource(`http://127.0.0.1:${port}/events?retry=100`)
  source.addEventListener('n', (event) => log.push({ type: 'n', id: event.lastEventId, data: event.data }))
  source.addEventListener('reset', (event) => log.push({ type: 'reset', id: event.lastEventId, data: event.data }))
  let opened = 0
  source.addEventListener('open', () => opened++)
  return {
    log,
    source,
    get opened() {
      return opened
    },
    close: () => source.close(),
  }
}

// ------------------------------------------------------------ broadcaster

/**
 * Posts `{ eventName: 'n', eventPayload: k }` to the live servers in turn,
 * `concurrency` at a time, until `stop()`. Records per k: the id it resolved
 * with, or whether it was refused before it was sent (never in the stream)
 * or its outcome is unknown (timed out, failed after it was sent, or the
 * server died).
 */
function startBroadcaster(backends, { concurrency = 4, gapMs = 3 } = {}) {
  const resolved = new Map()
  const refused = new Set()
  const unknown = new Set()
  let k = 0
  let stopped = false
  let turn = 0
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency * SERVERS })
  async function post(backend, n) {
    const body = JSON.stringify({ event: { eventName: 'n', eventPayload: n } })
    const answer = await new Promise((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port: backend.port, path: '/broadcast', method: 'POST', agent, headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk) => (text += chunk))
          res.on('end', () => resolve({ status: res.statusCode, body: safeJson(text) }))
          res.on('error', () => resolve({ status: 0 }))
        },
      )
      req.setTimeout(10000, () => req.destroy())
      req.on('error', () => resolve({ status: 0 }))
      req.end(body)
    })
    if (answer.status === 200) resolved.set(n, answer.body.id)
    else if (answer.status === 503 && /client status|maxInFlight|the channel is closed/.test(answer.body?.message ?? '')) refused.add(n)
    else if (answer.status === 503 || answer.status === 0) unknown.add(n)
    else throw new Error(`unexpected answer ${answer.status}: ${JSON.stringify(answer.body)}`)
  }
  async function loop() {
    while (!stopped) {
      const live = backends.filter((backend) => backend.alive)
      if (live.length === 0) {
        await pause(10)
        continue
      }
      const n = ++k
      await post(live[turn++ % live.length], n)
      await pause(gapMs)
    }
  }
  const loops = Array.from({ length: concurrency }, loop)
  return {
    resolved,
    refused,
    unknown,
    async stop() {
      stopped = true
      await Promise.all(loops)
    },
    /** One more event, retried until a live server takes it (bounded). */
    async last() {
      const deadline = Date.now() + WAIT.timeoutMs
      while (Date.now() < deadline) {
        const live = backends.find((backend) => backend.alive)
        const n = ++k
        if (live !== undefined) {
          await post(live, n)
          if (resolved.has(n)) return resolved.get(n)
        }
        await pause(100)
      }
      throw new Error('no broadcast resolved after the storm')
    },
    close: () => agent.destroy(),
  }
}

function safeJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

// ------------------------------------------------------------ the check

/**
 * Checks every client's log against the events (see the header). Returns
 * the counts and the first problems found.
 */
function check(clients, broadcaster, finalEntries) {
  // Every event known to have been in the stream: k -> id.
  const events = new Map(broadcaster.resolved)
  for (const client of clients) {
    for (const item of client.log) if (item.type === 'n') events.set(Number(item.data), item.id)
  }
  const final = new Set()
  for (const [id, k] of finalEntries) {
    events.set(k, id)
    final.add(k)
  }
  const order = [...events.entries()].sort((a, b) => compareIds(a[1], b[1]))
  const index = new Map(order.map(([k], i) => [k, i]))
  const counts = { clients: clients.length, events: order.length, exact: 0, resets: 0, gaps: 0, duplicates: 0, phantoms: 0 }
  const problems = []
  for (const [c, client] of clients.entries()) {
    const seen = new Map() // k -> the id it first arrived with
    let at = null // index in `order` of the last event received
    let resetAt = null // the id of a reset received since
    let clean = true
    for (const item of client.log) {
      if (item.type === 'reset') {
        counts.resets++
        resetAt = item.id
        clean = false
        continue
      }
      const k = Number(item.data)
      if (broadcaster.refused.has(k)) {
        counts.phantoms++
        problems.push(`client ${c}: event ${k} was refused before it was sent, yet arrived`)
      }
      if (seen.has(k)) {
        counts.duplicates++
        // The same entry twice, or two entries for one broadcast.
        const how = seen.get(k) === item.id ? 'the same entry' : `first as ${seen.get(k)}`
        problems.push(`client ${c}: event ${k} (${item.id}) twice (${how}); ${around(client.log, item)}`)
        continue
      }
      seen.set(k, item.id)
      const i = index.get(k)
      if (at !== null) {
        let expected = at + 1
        if (resetAt !== null) {
          // Exact again from the reset's position: the first event of the
          // stream as it is now (the final one) after the reset's id.
          expected = order.findIndex(([key, id]) => final.has(key) && compareIds(id, resetAt) > 0)
        }
        if (i < expected) {
          counts.duplicates++
          problems.push(`client ${c}: event ${k} (${item.id}) out of order (expected ${order[expected]?.[0]})`)
        } else if (i > expected) {
          counts.gaps += i - expected
          clean = false
          problems.push(`client ${c}: missed ${i - expected} events before ${k} (${item.id}), from ${order[expected]?.[0]} (${order[expected]?.[1]}); ${around(client.log, item)}`)
        }
      }
      at = i
      resetAt = null
    }
    if (clean) counts.exact++
  }
  return { counts, problems }
}

/** What a client's log held around `item`, for a failure message. */
function around(log, item) {
  const at = log.indexOf(item)
  return log
    .slice(Math.max(0, at - 6), at + 2)
    .map((entry) => (entry.type === 'reset' ? `reset@${entry.id}` : `${entry.data}@${entry.id}`))
    .join(' ')
}

// ------------------------------------------------------------ scenarios

async function scenario(t, name, { persist = true, disrupt }) {
  const redisServer = await startRedis({ persist })
  t.after(() => redisServer.close())
  const admin = new Redis({ host: '127.0.0.1', port: redisServer.port })
  admin.on('error', () => {})
  t.after(() => admin.disconnect())
  const stream = `native-sse-chaos:${process.pid}:${name.replace(/\W+/g, '-')}`
  const backends = await Promise.all(Array.from({ length: SERVERS }, (_, i) => startServerProcess(i, redisServer.port, stream)))
  t.after(async () => {
    for (const backend of backends) backend.child.kill('SIGKILL')
    await Promise.all(backends.map((backend) => backend.child.gone))
  })
  for (const backend of backends) {
    backend.child.once('exit', () => {
      backend.alive = false
    })
  }
  const proxy = await startProxy(backends)
  t.after(() => proxy.close())
  const clients = Array.from({ length: CLIENTS }, () => startClient(proxy.port))
  t.after(() => {
    for (const client of clients) client.close()
  })
  await waitFor(() => clients.every((client) => client.opened > 0), { what: 'every client to connect', ...WAIT })

  const broadcaster = startBroadcaster(backends)
  let cutting = true
  const cutter = (async () => {
    while (cutting) {
      await pause(150)
      if (cutting) proxy.cut()
    }
  })()
  await pause(800)
  await disrupt({ redisServer, admin, backends })
  await pause(1200)
  cutting = false
  await cutter
  await broadcaster.stop()
  assert.ok(broadcaster.resolved.size > 0, 'broadcasts resolved')

  // Every client catches up with a last event broadcast after the storm.
  const lastId = await broadcaster.last()
  broadcaster.close()
  await waitFor(() => clients.every((client) => client.log.some((item) => item.id === lastId)), {
    what: `every client to receive ${lastId}`,
    ...WAIT,
  }).catch((err) => {
    const behind = clients.map((client, c) => [c, client.log.at(-1)]).filter(([, item]) => item?.id !== lastId)
    throw new Error(`${err.message}; behind: ${JSON.stringify(behind.slice(0, 4))}`)
  })
  const entries = (await admin.xrange(stream, '-', '+')).map(([id, fields]) => [id, Number(fields[fields.indexOf('data') + 1])])
  const { counts, problems } = check(clients, broadcaster, entries)
  counts.refused = broadcaster.refused.size
  counts.unknown = broadcaster.unknown.size
  console.log(`chaos ${name}: ${JSON.stringify(counts)}`)
  assert.deepEqual(problems.slice(0, 10), [], `${name}: no gaps, duplicates or phantoms`)
  assert.equal(counts.gaps, 0)
  assert.equal(counts.duplicates, 0)
  assert.equal(counts.phantoms, 0)
  assert.ok(counts.events > 50, 'events did arrive')
  assert.ok(clients.every((client) => client.log.filter((item) => item.type === 'n').length > 0), 'every client received events')
  return counts
}

test('chaos: Redis SIGKILLed with an append-only file (fsync always), then restarted', async (t) => {
  await scenario(t, 'SIGKILL with AOF', {
    persist: true,
    disrupt: async ({ redisServer }) => {
      await redisServer.kill()
      await pause(400)
      await redisServer.start()
    },
  })
})

test('chaos: Redis SIGKILLed without persistence, restarted empty', async (t) => {
  const counts = await scenario(t, 'SIGKILL without persistence', {
    persist: false,
    disrupt: async ({ redisServer }) => {
      await redisServer.kill()
      await pause(400)
      await redisServer.start()
    },
  })
  assert.ok(counts.resets > 0, 'the lost stream was reported with resets')
})

test('chaos: Redis SIGSTOPped, then SIGCONTinued', async (t) => {
  await scenario(t, 'SIGSTOP then SIGCONT', {
    disrupt: async ({ redisServer }) => {
      redisServer.signal('SIGSTOP')
      await pause(1500)
      redisServer.signal('SIGCONT')
    },
  })
})

test('chaos: FLUSHALL', async (t) => {
  const counts = await scenario(t, 'FLUSHALL', {
    disrupt: async ({ admin }) => {
      await admin.flushall()
    },
  })
  assert.ok(counts.resets > 0, 'the flushed stream was reported with resets')
})

test('chaos: a server process SIGKILLed while it broadcasts; its clients resume on another', async (t) => {
  await scenario(t, 'server process SIGKILL', {
    disrupt: async ({ backends }) => {
      backends[0].alive = false
      backends[0].child.kill('SIGKILL')
      await backends[0].child.gone
    },
  })
})
