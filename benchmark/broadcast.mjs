// The broadcast scenarios of bench.mjs: one server process
// (broadcast-server.mjs) and several load-client processes
// (broadcast-client.mjs) per measured row.
//
// Flow control, the same for every implementation: the server broadcasts
// one event per event-loop turn but never more than `window` events ahead
// of the slowest reading client. Clients report their progress every
// `ackStep` events; this process relays the minimum to the server as
// credit. That keeps each client's backlog (and a native-sse member's
// buffer, capped at 4 MiB) bounded whatever the relative speed of server and
// clients, without the server scanning its responses.
import { child } from './child.mjs'

const EVENT_NAME = 'tick'
const BUCKET_MS = 0.05 // broadcast-client.mjs's latency histogram

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function split(total, parts) {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

/** p-th percentile (0..1) of merged [bucket, count, ...] histograms, in ms (bucket upper edge). */
function percentile(histograms, p) {
  const counts = new Map()
  let total = 0
  for (const h of histograms) {
    for (let i = 0; i < h.length; i += 2) {
      counts.set(h[i], (counts.get(h[i]) ?? 0) + h[i + 1])
      total += h[i + 1]
    }
  }
  if (total === 0) return undefined
  const rank = Math.ceil(p * total)
  let seen = 0
  for (const bucket of [...counts.keys()].sort((a, b) => a - b)) {
    seen += counts.get(bucket)
    if (seen >= rank) return (bucket + 1) * BUCKET_MS
  }
  return undefined
}

/** Waits until the server holds `expected` members (better-sse adds them a turn later). */
async function waitForMembers(server, expected) {
  let count = -1
  for (let i = 0; i < 400; i++) {
    server.send({ type: 'members' })
    ;({ count } = await server.next('members'))
    if (count === expected) return null
    await sleep(25)
  }
  return `server holds ${count} of ${expected} members`
}

/** Resolves with every client's 'done', or as soon as one is invalid. */
function allDone(clients, timeoutMs) {
  return new Promise((resolve) => {
    const results = []
    let left = clients.length
    clients.forEach((client, i) => {
      client.next('done', timeoutMs).then(
        (done) => {
          results[i] = done
          if (!done.valid || --left === 0) resolve(results)
        },
        (err) => {
          results[i] = { valid: false, error: err.message }
          resolve(results)
        },
      )
    })
  })
}

/**
 * One row: `readers` reading streams spread over `processes` client
 * processes, `count` broadcasts of `payloadBytes` JSON. With `warmup`, the
 * first `warmup` events go out before the measured part (and before the
 * `stalled` streams, which never read, join from a client process of their
 * own). Returns the raw measurements of the measured part.
 */
async function runRow(impl, spec, opts) {
  const { readers, processes, count, payloadBytes, window, ackStep, pace, maxBufferedBytes } = spec
  const stalled = spec.stalled ?? 0
  const warmup = spec.warmup ?? 0
  if (warmup % ackStep !== 0) throw new Error('warmup must be a multiple of ackStep')
  // `opts.server`: another server speaking broadcast-server.mjs's protocol
  // (the Fetch-form rows: fetch-server.mjs, maybe under Bun).
  const { script = 'broadcast-server.mjs', argv = [], execArgv = opts.serverNodeArgs, execPath } = opts.server ?? {}
  const serverArgs = [...argv, impl]
  if (maxBufferedBytes !== undefined) serverArgs.push(String(maxBufferedBytes))
  const server = child(script, serverArgs, execArgv, opts.timeoutMs, { execPath })
  const clients = Array.from({ length: processes }, () => child('broadcast-client.mjs', [], [], opts.timeoutMs))
  const stalledClient = stalled ? child('broadcast-client.mjs', [], [], opts.timeoutMs) : null
  try {
    const { port } = await server.next('ready')
    const shares = split(readers, processes)
    clients.forEach((client, i) =>
      client.send({ type: 'open', port, connections: shares[i], stalled: 0, count, eventName: EVENT_NAME, ackStep }))
    const opened = await Promise.all(clients.map((client) => client.next('opened')))
    for (const [i, o] of opened.entries()) {
      if (o.open !== shares[i]) return { valid: false, error: o.error ?? `client ${i} opened ${o.open} of ${shares[i]}` }
    }
    let missing = await waitForMembers(server, readers)
    if (missing) return { valid: false, error: missing }

    // Credit: the slowest client's progress plus `window` events.
    const progress = clients.map(() => 0)
    let progressed = null // resolves when every client has `warmup` events
    clients.forEach((client, i) =>
      client.on('progress', ({ upTo }) => {
        progress[i] = upTo
        const min = Math.min(...progress)
        server.send({ type: 'credit', upTo: min + window })
        if (min >= warmup) progressed?.()
      }))
    const run = (first, last, measure) =>
      server.send({ type: 'run', first, count: last, payloadBytes, eventName: EVENT_NAME, upTo: Math.min(...progress) + window, pace, measure })

    if (warmup) {
      const warmedUp = new Promise((resolve) => (progressed = resolve))
      run(1, warmup, false)
      await warmedUp
      await server.next('sent')
      progressed = null
    }
    if (stalled) {
      stalledClient.send({ type: 'open', port, connections: 0, stalled, count, eventName: EVENT_NAME, ackStep })
      const o = await stalledClient.next('opened')
      if (o.open !== stalled) return { valid: false, error: o.error ?? `opened ${o.open} of ${stalled} stalled streams` }
      missing = await waitForMembers(server, readers + stalled)
      if (missing) return { valid: false, error: missing }
    }

    const start = performance.now()
    run(warmup + 1, count, true)
    const dones = await allDone(clients, opts.timeoutMs)
    const seconds = (performance.now() - start) / 1000
    const bad = dones.find((d) => !d.valid)
    if (bad) return { valid: false, error: bad.error ?? `received ${bad.received}` }
    await server.next('sent')
    server.send({ type: 'stats' })
    const stats = await server.next('stats')
    const prefixes = new Set(dones.map((d) => d.prefix))
    if (prefixes.size !== 1) return { valid: false, error: `id prefixes differ between clients: ${[...prefixes].join(', ')}` }
    const received = dones.reduce((sum, d) => sum + d.received, 0)
    if (received !== readers * count) return { valid: false, error: `received ${received} of ${readers * count}` }
    const deliveries = readers * (count - warmup)
    const clientCpuMicros = dones.reduce((sum, d) => sum + d.cpuMicros, 0)
    const latency = dones.map((d) => d.latency)
    return { valid: true, seconds, deliveries, stats, clientCpuMicros, latencyP50Ms: percentile(latency, 0.5), latencyP99Ms: percentile(latency, 0.99) }
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all([...clients.map((c) => c.stop()), stalledClient?.stop(), server.stop()])
  }
}

/** The broadcast scenario: `clients` clients, every one gets every event. */
export async function measureBroadcast(impl, scenario, opts) {
  const row = await runRow(impl, { ...scenario, readers: scenario.clients }, opts)
  if (!row.valid) return row
  return {
    valid: true,
    deliveries: row.deliveries,
    eventsPerSec: row.deliveries / row.seconds,
    broadcastsPerSec: scenario.count / row.seconds,
    cpuMicrosPerDelivery: row.stats.cpuMicros / row.deliveries,
    userCpuMicrosPerDelivery: row.stats.cpuUserMicros / row.deliveries,
    clientCpuMicrosPerDelivery: row.clientCpuMicros / row.deliveries,
    latencyP50Ms: row.latencyP50Ms,
    latencyP99Ms: row.latencyP99Ms,
    rssGrowthMB: (row.stats.rssPeak - row.stats.rssBefore) / 2 ** 20,
  }
}

/**
 * The stalled-member scenario: one client stops reading while
 * `count` x `payloadBytes` go to it and to `clients` normal clients. The
 * normal clients must get everything; for native-sse the stalled member must
 * be closed with reason 'overflow'. RSS growth is the server's peak RSS
 * during the run minus its RSS before (after GC, with every client
 * connected).
 */
export async function measureStalled(impl, scenario, opts) {
  const row = await runRow(impl, { ...scenario, readers: scenario.clients, stalled: 1, processes: 1 }, opts)
  if (!row.valid) return row
  const closes = row.stats.closes
  const capped = scenario.cappedImpls.includes(impl)
  const overflowClosed = closes.overflow === 1
  if (capped && !overflowClosed) {
    return { valid: false, error: `the stalled member was not closed with 'overflow' (closes: ${JSON.stringify(closes)})` }
  }
  if (capped && row.stats.members !== scenario.clients) {
    return { valid: false, error: `${row.stats.members} members left, expected ${scenario.clients}` }
  }
  return {
    valid: true,
    deliveries: row.deliveries,
    rssGrowthMB: (row.stats.rssPeak - row.stats.rssBefore) / 2 ** 20,
    overflowClosed,
    eventsPerSec: row.deliveries / row.seconds,
    seconds: row.seconds,
  }
}
