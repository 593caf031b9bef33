// The many-50k scenarios of bench.mjs: 50 000 concurrent streams held by
// one server process (many50k-server.mjs), the load clients in other
// processes (many50k-client.mjs), native-sse next to better-sse in the same
// run. One row per implementation and transport:
//
// 1. Connect: the clients open every stream (HTTP/1.1: 200 sockets at a
//    time per client process; HTTP/2: sessions of `streamsPerConnection`
//    streams each); connect rate = streams / the time from the first
//    connect to the server holding them all.
// 2. Idle, each library's default heartbeat (native-sse 15 s, better-sse
//    10 s): heap and RSS per stream (after GC, minus the server's before
//    any stream), and the event-loop delay p50/p99/max over `idleMs`
//    (monitorEventLoopDelay, 1 ms resolution) with the utilization and CPU.
//    When the window is at least a heartbeat period, every stream must have
//    had a heartbeat in it.
// 3. Paced broadcast: `pacedEvents` events, one every `paceMs` (1 s), to
//    every stream through the library's channel; send-to-receive latency.
// 4. Saturated broadcast: for `saturatedMs`, up to `burst` (16) events per
//    event-loop turn,
//    never more than `window` events ahead of the slowest stream (the
//    clients report progress at every multiple of `ackStep`, this process
//    relays the minimum, rounded down to one, as credit); deliveries/s = streams x events over the time
//    from the first of them to the last delivery. native-sse's channel has
//    a 10 ms flush window (`flushWindow: 10`); better-sse's has no such
//    setting. Why `burst`: with one broadcast per turn, a turn that takes
//    longer than the window (100 HTTP/2 sessions' I/O after a flush to
//    50 000 streams) lets one event into each window, and the row falls
//    into one write per event per stream for good; how many events a turn
//    produces is then the machine's load, not the library's speed.
// Every delivery of 3 and 4 is checked by the clients (each stream gets
// events 1..last exactly once, in order, with the same ids everywhere);
// any miss makes the row invalid.
//
// Open files: 50 000 HTTP/1.1 streams need 50 000 sockets in the server.
// The HTTP/1.1 row starts the server under `sh -c 'ulimit -n <streams +
// 1 000>'`, which raises the limit where the hard limit allows it (or the
// shell may raise it); where it cannot, the row opens as many streams as fit
// under the limit (Node raises its soft limit to the hard one) and says so
// (`streams`, `requestedStreams`, `fdLimit`). The HTTP/2 row needs only
// `streams / streamsPerConnection` sockets (100 x 500), so it runs the full
// count anywhere. HTTP/1.1 clients beyond 25 000 sockets connect from
// 127.0.0.2, 127.0.0.3, ... (one source address per client process), since
// one source address has only ~28 000 ephemeral ports towards one port.
//
// The cluster rows (measureCluster): many50k-cluster.mjs, `node:cluster`
// with 1 or 2 workers sharing one Redis stream (a redis-server started for
// the row, without persistence); steps 1, 3 and 4 (memory summed over the
// workers; no event-loop delay).
import { child } from './child.mjs'
// The test suite's redis-server (no persistence: the stream lives for one row).
import { startRedis } from '../__test__/redis-server.mjs'

const FD_SLACK = 64 // descriptors kept free in the server beyond those it holds when ready
const H1_PER_ADDRESS = 25_000 // client sockets from one source address at most
const DEFAULT_KEEP_ALIVE_MS = { 'native-sse': 15_000, 'better-sse': 10_000 }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function split(total, parts) {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

/** p-th percentile (0..1) of merged [bucket, count, ...] histograms of 1 ms buckets (upper edge). */
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
    if (seen >= rank) return bucket + 1
  }
  return undefined
}

/** The clients of one row: processes, each with its share of the streams. */
function plan(scenario, streams) {
  if (scenario.transport === 'h2') {
    const connections = Math.ceil(streams / scenario.streamsPerConnection)
    if (connections * scenario.streamsPerConnection !== streams) throw new Error('streams must be a multiple of streamsPerConnection')
    return split(connections, Math.min(scenario.clientProcesses, connections))
      .map((n) => ({ connections: n, streams: n * scenario.streamsPerConnection, localAddress: undefined }))
  }
  const processes = Math.ceil(streams / scenario.perProcess)
  const perAddress = Math.max(1, Math.floor(H1_PER_ADDRESS / scenario.perProcess))
  const many = streams > H1_PER_ADDRESS
  return split(streams, processes).map((n, i) => ({
    connections: n,
    streams: n,
    localAddress: many ? `127.0.0.${2 + Math.floor(i / perAddress)}` : undefined,
  }))
}

async function waitForStreams(server, expected, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  let held = -1
  for (;;) {
    server.send({ type: 'streams' })
    ;({ count: held } = await server.next('streams'))
    if (held === expected || Date.now() > deadline) return held
    await sleep(25)
  }
}

/** Resolves with every client's 'done' (or an invalid one as soon as one is). */
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
 * One row against `server` (a child speaking many50k-server.mjs's protocol).
 * `impl` picks the idle heartbeat check; `idle` false skips step 2.
 */
async function runRow(server, impl, scenario, opts, { idle }) {
  const clients = []
  try {
    const ready = await server.next('ready')
    const { port, fdLimit, fdsOpen } = ready
    const requested = scenario.streams
    let streams = requested
    if (scenario.transport === 'h1' && fdLimit !== null) {
      const fits = fdLimit - fdsOpen - FD_SLACK
      if (fits < streams) streams = Math.max(0, fits - (fits % 100))
    }
    server.send({ type: 'memory' })
    const before = await server.next('memory')

    const shares = plan(scenario, streams)
    for (const _ of shares) clients.push(child('many50k-client.mjs', [], [], opts.timeoutMs))
    const connectStart = performance.now()
    clients.forEach((client, i) => client.send({
      type: 'open',
      transport: scenario.transport,
      port,
      connections: shares[i].connections,
      streamsPerConnection: scenario.streamsPerConnection,
      localAddress: shares[i].localAddress,
      ackStep: scenario.ackStep,
      pacedEvents: scenario.pacedEvents,
    }))
    const opened = await Promise.all(clients.map((client) => client.next('opened')))
    for (const [i, o] of opened.entries()) {
      if (o.open !== shares[i].streams) return { valid: false, error: o.error ?? `client ${i} opened ${o.open} of ${shares[i].streams}` }
    }
    const held = await waitForStreams(server, streams, 20_000)
    if (held !== streams) return { valid: false, error: `server holds ${held} of ${streams} streams` }
    const connectSec = (performance.now() - connectStart) / 1000
    server.send({ type: 'memory' })
    const after = await server.next('memory')
    const row = {
      valid: true,
      transport: scenario.transport,
      streams,
      requestedStreams: requested,
      fdLimit,
      clientProcesses: clients.length,
      connectSec,
      connectPerSec: streams / connectSec,
      heapBytesPerConn: (after.heapUsed - before.heapUsed) / streams,
      rssBytesPerConn: (after.rss - before.rss) / streams,
      externalBytesPerConn: (after.external - before.external) / streams,
    }

    if (idle) {
      for (const client of clients) client.send({ type: 'mark' })
      server.send({ type: 'measure', ms: scenario.idleMs })
      const measured = await server.next('measured', scenario.idleMs + opts.timeoutMs)
      for (const client of clients) client.send({ type: 'report' })
      const reports = await Promise.all(clients.map((client) => client.next('report')))
      const failed = reports.find((r) => r.error || r.closed)
      if (failed) return { valid: false, error: failed.error ?? `${failed.closed} stream(s) closed while idle` }
      if (measured.streams !== streams) return { valid: false, error: `server holds ${measured.streams} of ${streams} streams after the idle window` }
      const keepAliveMs = DEFAULT_KEEP_ALIVE_MS[impl]
      const silent = reports.reduce((sum, r) => sum + r.silent, 0)
      if (scenario.idleMs >= keepAliveMs && silent) {
        return { valid: false, error: `${silent} stream(s) got no heartbeat in ${scenario.idleMs} ms (keepAlive ${keepAliveMs})` }
      }
      Object.assign(row, {
        keepAliveMs,
        idleSec: measured.ms / 1000,
        eventLoopDelayP50Ms: measured.p50Ms,
        eventLoopDelayP99Ms: measured.p99Ms,
        eventLoopDelayMaxMs: measured.maxMs,
        eventLoopDelayMeanMs: measured.meanMs,
        delaySamples: measured.samples,
        eventLoopUtilization: measured.utilization,
        idleServerCpuPercent: (measured.cpuMicros / 1000 / measured.ms) * 100,
        heartbeatsPerStream: reports.reduce((sum, r) => sum + r.heartbeats, 0) / streams,
        minHeartbeatsPerStream: Math.min(...reports.map((r) => r.minHeartbeats)),
      })
    }

    // Broadcasts: credit from the clients' progress, in whole `ackStep`s.
    // (Credit that grows one event at a time, as the slowest of several
    // processes changes, would let a flush window gather one event per
    // flush: a harness artifact that cut native-sse's deliveries/s by up to
    // 6x in some rounds.)
    const progress = clients.map(() => 0)
    const credit = () => Math.floor(Math.min(...progress) / scenario.ackStep) * scenario.ackStep + scenario.window
    clients.forEach((client, i) =>
      client.on('progress', ({ upTo }) => {
        progress[i] = upTo
        server.send({ type: 'credit', upTo: credit() })
      }))
    const paced = scenario.pacedEvents
    server.send({ type: 'run', first: 1, paceMs: scenario.paceMs, count: paced, upTo: paced })
    const pacedSent = await server.next('sent', paced * scenario.paceMs + opts.timeoutMs)
    if (pacedSent.last !== paced) return { valid: false, error: `paced: sent ${pacedSent.last} of ${paced}` }

    const start = performance.now()
    server.send({ type: 'run', first: paced + 1, durationMs: scenario.saturatedMs, upTo: credit(), burst: scenario.burst })
    const sent = await server.next('sent', scenario.saturatedMs + opts.timeoutMs)
    for (const client of clients) client.send({ type: 'expect', last: sent.last })
    const dones = await allDone(clients, opts.timeoutMs)
    const seconds = (performance.now() - start) / 1000
    const bad = dones.find((d) => !d.valid)
    if (bad) return { valid: false, error: bad.error ?? `received ${bad.received}` }
    const idPairs = new Set(dones.map((d) => `${d.firstId} ${d.lastId}`))
    if (idPairs.size !== 1) return { valid: false, error: `clients disagree on the ids of events 1 and ${sent.last}: ${[...idPairs].join(' | ')}` }
    const received = dones.reduce((sum, d) => sum + d.received, 0)
    if (received !== streams * sent.last) return { valid: false, error: `received ${received} of ${streams * sent.last}` }
    const events = sent.last - paced
    const deliveries = streams * events
    return Object.assign(row, {
      pacedEvents: paced,
      pacedLatencyP50Ms: percentile(dones.map((d) => d.pacedLatency), 0.5),
      pacedLatencyP99Ms: percentile(dones.map((d) => d.pacedLatency), 0.99),
      pacedLatencyMaxMs: percentile(dones.map((d) => d.pacedLatency), 1),
      saturatedEvents: events,
      deliveries,
      deliveriesPerSec: deliveries / seconds,
      saturatedSec: seconds,
      serverCpuMicrosPerDelivery: sent.cpuMicros === undefined ? undefined : sent.cpuMicros / deliveries,
      latencyP50Ms: percentile(dones.map((d) => d.latency), 0.5),
      latencyP99Ms: percentile(dones.map((d) => d.latency), 0.99),
      clientCpuMicrosPerDelivery: dones.reduce((sum, d) => sum + d.cpuMicros, 0) / (streams * sent.last),
    })
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all(clients.map((c) => c.stop()))
  }
}

/** A many-50k row: one server process, `impl` over `scenario.transport`. */
export async function measureMany50k(impl, scenario, opts) {
  // HTTP/1.1: ask the shell for room for every socket (fails quietly where
  // the hard limit is lower and cannot be raised).
  const wrap = scenario.transport === 'h1'
    ? ['sh', '-c', `ulimit -n ${scenario.streams + 1000} 2>/dev/null; exec "$0" "$@"`]
    : undefined
  const server = child('many50k-server.mjs', [impl, scenario.transport], opts.serverNodeArgs, opts.timeoutMs, { wrap })
  try {
    return await runRow(server, impl, scenario, opts, { idle: true })
  } finally {
    await server.stop()
  }
}

/** A cluster row: `impl` is '1-worker' or '2-workers'. */
export async function measureCluster(impl, scenario, opts) {
  const workers = Number.parseInt(impl, 10)
  if (!(workers >= 1)) throw new Error(`bad cluster row ${impl}`)
  let redis = null
  let server = null
  try {
    redis = await startRedis({ persist: false })
    server = child('many50k-cluster.mjs', [String(workers), redis.url, `bench:many50k:${workers}`, scenario.transport], [], opts.timeoutMs)
    const row = await runRow(server, 'native-sse', scenario, opts, { idle: false })
    return row.valid ? { ...row, workers } : row
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await server?.stop()
    await redis?.close()
  }
}
