// The many-streams scenario of bench.mjs: one server process
// (many-streams-server.mjs) holding `streams` open SSE streams (20 000 in
// the default run), each sending a heartbeat every `keepAlive` ms (1 000),
// and nothing else. The question is what that costs the rest of the
// server: its event-loop delay (perf_hooks.monitorEventLoopDelay with a
// resolution of 1 ms, over `seconds`), and its heap and RSS per stream.
//
// Implementations: native-sse (`new SSE(req, res, { keepAlive })`),
// better-sse (`createSession(req, res, { keepAlive })`) and raw (one
// `setInterval` per connection writing `:\n\n`, the hand-written baseline).
// The clients are plain sockets in separate load-client processes
// (many-streams-client.mjs, at most `perProcess` streams each) that read and
// discard, counting the blocks (heartbeats) each stream gets.
//
// Row: the server starts; heap and RSS after GC; the clients open the
// streams, 200 at a time per process; once the server holds all of them,
// heap and RSS after GC again (the difference / streams is the per-stream
// cost); `warmupMs` for every heartbeat timer to be running; then the
// clients start counting and the server measures its event-loop delay for
// `seconds`. The row is invalid if a
// stream closed or failed, or got no heartbeat in the window.
//
// Note on the numbers: monitorEventLoopDelay samples with a 1 ms timer and
// records the time between two runs of it, so an idle loop shows about 1 ms
// at p50, and a heartbeat storm that holds the loop for 300 ms shows as one
// sample of 300 ms. Percentiles are over samples, not over time: a loop
// blocked for 900 ms every second yields ~100 samples of ~1 ms and one of
// 900 ms a second, so its p99 sits on the edge and `max` (and the
// event-loop utilization, also reported) tell more. Heartbeat timers start
// when each stream opens, and opening 20 000 streams takes several seconds
// here, so the heartbeats are spread over each second rather than due at
// once.
//
// Open files: Node raises its soft limit on open files to the hard limit
// as it starts, so `ulimit -n` in a shell around it cannot add any; the hard
// limit is the bound (20 000 on the machine of the README's runs). If it is
// below what the streams need (the server holds about 20 descriptors of its
// own, and 16 are kept free), the row opens as many streams as fit and says
// so: `streams`, `requestedStreams` and `fdLimit` in results.json, and a note
// in the printed table (19 962 instead of 20 000 there). The client
// processes hold at most `perProcess` streams each.
import { child } from './child.mjs'

const FD_SLACK = 16 // descriptors kept free in the server beyond those it holds when ready
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function split(total, parts) {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

export async function measureManyStreams(impl, scenario, opts) {
  const requested = scenario.streams
  const server = child('many-streams-server.mjs', [impl, String(scenario.keepAlive)], opts.serverNodeArgs, opts.timeoutMs)
  const clients = []
  try {
    const { port, fdLimit, fdsOpen } = await server.next('ready')
    const fits = fdLimit === null ? Infinity : fdLimit - fdsOpen - FD_SLACK
    const streams = Math.min(requested, fits)
    server.send({ type: 'memory' })
    const before = await server.next('memory')

    const shares = split(streams, Math.ceil(streams / scenario.perProcess))
    for (const share of shares) clients.push(child('many-streams-client.mjs', [], [], opts.timeoutMs))
    clients.forEach((client, i) => client.send({ type: 'open', port, connections: shares[i] }))
    const opened = await Promise.all(clients.map((client) => client.next('opened')))
    for (const [i, o] of opened.entries()) {
      if (o.open !== shares[i]) return { valid: false, error: o.error ?? `client ${i} opened ${o.open} of ${shares[i]}` }
    }
    let held = -1
    for (let i = 0; i < 400 && held !== streams; i++) {
      if (i) await sleep(25)
      server.send({ type: 'streams' })
      ;({ count: held } = await server.next('streams'))
    }
    if (held !== streams) return { valid: false, error: `server holds ${held} of ${streams} streams` }
    server.send({ type: 'memory' })
    const after = await server.next('memory')
    await sleep(scenario.warmupMs)

    for (const client of clients) client.send({ type: 'mark' })
    server.send({ type: 'measure', ms: scenario.seconds * 1000 })
    const measured = await server.next('measured', scenario.seconds * 1000 + opts.timeoutMs)
    for (const client of clients) client.send({ type: 'report' })
    const reports = await Promise.all(clients.map((client) => client.next('report')))
    const failed = reports.find((r) => r.error || r.closed)
    if (failed) return { valid: false, error: failed.error ?? `${failed.closed} stream(s) closed` }
    const silent = reports.reduce((sum, r) => sum + r.silent, 0)
    if (silent) return { valid: false, error: `${silent} stream(s) got no heartbeat in ${scenario.seconds} s` }
    if (measured.streams !== streams) return { valid: false, error: `server holds ${measured.streams} of ${streams} streams after the window` }
    const heartbeats = reports.reduce((sum, r) => sum + r.heartbeats, 0)
    const windowSec = measured.ms / 1000
    return {
      valid: true,
      streams,
      requestedStreams: requested,
      fdLimit,
      clientProcesses: clients.length,
      eventLoopDelayP50Ms: measured.p50Ms,
      eventLoopDelayP99Ms: measured.p99Ms,
      eventLoopDelayMaxMs: measured.maxMs,
      eventLoopDelayMeanMs: measured.meanMs,
      delaySamples: measured.samples,
      eventLoopUtilization: measured.utilization,
      heapBytesPerConn: (after.heapUsed - before.heapUsed) / streams,
      rssBytesPerConn: (after.rss - before.rss) / streams,
      externalBytesPerConn: (after.external - before.external) / streams,
      heartbeatsPerStreamPerSec: heartbeats / streams / windowSec,
      minHeartbeatsPerStream: Math.min(...reports.map((r) => r.minHeartbeats)),
      serverCpuPercent: ((measured.cpuUserMicros + measured.cpuSystemMicros) / 1000 / measured.ms) * 100,
      clientCpuPercent: (reports.reduce((sum, r) => sum + r.cpuMicros, 0) / 1000 / measured.ms) * 100,
      windowSec,
    }
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all([...clients.map((c) => c.stop()), server.stop()])
  }
}
