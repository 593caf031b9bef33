// Side-by-side benchmark of raw res.write, an S42Core-like JS class,
// better-sse and native-sse, on real loopback sockets, with the load client in
// a separate process. `npm run bench` runs the full set; `--quick` runs tiny
// sizes (used by `npm test` to check that it still runs and counts correctly).
//
// The broadcast scenarios (broadcast.mjs) compare native-sse's Channel (by
// default, and with a 10 ms flush window), better-sse's channel and a
// hand-written loop that writes one Buffer to every response, with 1 000 and
// 10 000 clients spread over several client processes, and a member that
// stops reading while 100 MiB of broadcasts go out.
//
// many-streams (many-streams.mjs): 20 000 open streams with a heartbeat
// every second, and the server's event-loop delay, heap and RSS with them.
//
// many-50k (many50k.mjs): 50 000 streams in one server process, native-sse
// next to better-sse: connect rate, heap and RSS per stream and the
// event-loop delay while idle with each library's default heartbeat, then
// broadcasts through each library's channel (one a second, then saturated,
// native-sse with a 10 ms flush window), every delivery checked by the
// clients; over HTTP/1.1 (as many as the limit on open files allows) and
// HTTP/2 (100 connections x 500 streams); and node:cluster with 1 and 2
// workers sharing one Redis stream (many-50k-cluster, a redis-server
// started for each row). `--merge` keeps the other scenarios of an earlier
// results.json (for `--only many-50k-h1,...` runs).
//
// The Fetch-form scenarios (fetch.mjs): native-sse's `new SSE(request)` +
// `getResponse()` next to Hono's `streamSSE` and better-sse's Fetch mode
// (`createResponse`), on the same server: Bun.serve (the server process
// run by Bun) or Node with @hono/node-server. A burst on one stream and a
// broadcast to 1 000 clients (native-sse's Channel, better-sse's channel, a
// loop over Hono's streams) on each: fetch-bun-burst, fetch-bun-broadcast,
// fetch-node-burst, fetch-node-broadcast (`--only` takes these names).
//
// The instruction-count mode (instructions.mjs) counts the server's
// instructions per event in burst and paced with valgrind's callgrind, a
// measure that does not move with the machine's load. It runs after the
// timed rows; --instructions runs only it, --no-instructions leaves it out.
//
//   node benchmark/bench.mjs [--quick] [--rounds N] [--only scenario,...]
//     [--impls name,...] [--out DIR] [--server-node-args "--cpu-prof ..."]
//     [--instructions | --no-instructions] [--instr-jobs J] [--merge]
// --server-node-args passes flags to each server process of the timed rows
// (for profiling; never to the callgrind runs).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { measureBroadcast, measureStalled } from './broadcast.mjs'
import { BROADCAST_IMPLEMENTATION_NAMES } from './broadcast-impls.mjs'
import { renderChart } from './chart.mjs'
import { child as forkChild } from './child.mjs'
import { measureFetchBroadcast, measureFetchStream } from './fetch.mjs'
import { FETCH_IMPLEMENTATION_NAMES } from './fetch-impls.mjs'
import { IMPLEMENTATION_NAMES } from './implementations.mjs'
import { measureInstructions, printInstructions } from './instructions.mjs'
import { measureManyStreams } from './many-streams.mjs'
import { measureCluster, measureMany50k } from './many50k.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const flag = (name) => args.includes(name)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}

const QUICK = flag('--quick')
const ROUNDS_GIVEN = option('--rounds', null)
const ROUNDS = Number(ROUNDS_GIVEN ?? (QUICK ? 1 : 3))
// The two saturated broadcast scenarios, which carry the Channel's targets
// and vary most from run to run on a shared 2-core machine, get 5 rounds by
// default; --rounds sets every scenario's.
const BROADCAST_ROUNDS = Number(ROUNDS_GIVEN ?? (QUICK ? 1 : 5))
const OUT = option('--out', join(here, 'results'))
const ONLY = option('--only', null)?.split(',')
const ONLY_IMPLS = option('--impls', null)?.split(',')
const SERVER_NODE_ARGS = option('--server-node-args', '').split(' ').filter(Boolean)
const MERGE = flag('--merge')
const INSTRUCTIONS_ONLY = flag('--instructions')
const NO_INSTRUCTIONS = flag('--no-instructions')
if (INSTRUCTIONS_ONLY && NO_INSTRUCTIONS) throw new Error('--instructions and --no-instructions exclude each other')
// Callgrind servers run at a time: 1 by default, so that each has a core of
// its own; 2 in quick mode (its counts only need to be there).
const INSTR_JOBS = Number(option('--instr-jobs', QUICK ? 2 : 1))
const ROW_TIMEOUT_MS = 120_000

// Sizes: the default run finishes in a few minutes on a 2-core machine.
// Each scenario lists its implementations and the ones its ratios are taken
// against (`bases`).
const STREAM_IMPLS = { impls: IMPLEMENTATION_NAMES, bases: ['raw', 'better-sse'] }
const BROADCAST_IMPLS = { impls: BROADCAST_IMPLEMENTATION_NAMES, bases: ['better-sse', 'hand-loop'] }
const FETCH_IMPLS = { impls: FETCH_IMPLEMENTATION_NAMES, bases: ['hono-streamSSE', 'better-sse-fetch'] }
const MiB = 2 ** 20
// The stalled scenario: 16 KiB events; after a warm-up with the normal
// clients only, 100 MiB of events (6 400) go to the stalled member and the
// normal ones. In quick mode 10 MiB, and native-sse's cap is lowered to
// 256 KiB so that the stalled member still overflows.
const STALLED_EVENT = 16 * 1024
const STALLED_BYTES = QUICK ? 10 * MiB : 100 * MiB
const STALLED_WARMUP = QUICK ? 64 : 640
// `instructions: [N, 4N]`: the event counts of the two callgrind runs of the
// instruction-count mode (instructions.mjs), and `instructionImpls` its
// implementations when not all of them. Under callgrind a server takes
// 10-20 s to start and exit, plus about 1 s per 1 000 paced or 5 000 burst
// events: 16 runs, 6-10 minutes for the default sizes; 4 runs, 2 at a time,
// 30-70 s for --quick's (paced only, two implementations; at such small
// counts the JIT's warm-up dominates the result, which only has to be there).
const ALL_SCENARIOS = [
  { name: 'burst', kind: 'stream', count: QUICK ? 2000 : 200_000, batch: 100, payloadBytes: 50, ...STREAM_IMPLS,
    instructions: QUICK ? undefined : [20_000, 80_000],
    about: 'one client, 100 small (50 B) events per event-loop turn' },
  { name: 'paced', kind: 'stream', count: QUICK ? 300 : 20_000, batch: 1, payloadBytes: 50, ...STREAM_IMPLS,
    instructions: QUICK ? [100, 400] : [5000, 20_000], instructionImpls: QUICK ? ['raw', 'native-sse'] : undefined,
    about: 'one client, one small (50 B) event per event-loop turn' },
  { name: 'payload-1KiB', kind: 'stream', count: QUICK ? 500 : 50_000, batch: 100, payloadBytes: 1024, ...STREAM_IMPLS,
    about: 'one client, 100 medium (1 KiB) events per turn' },
  { name: 'payload-64KiB', kind: 'stream', count: QUICK ? 40 : 2000, batch: 10, payloadBytes: 65536, ...STREAM_IMPLS,
    about: 'one client, 10 large (64 KiB) events per turn' },
  { name: 'idle-memory', kind: 'idle', connections: QUICK ? 200 : 10_000, ...STREAM_IMPLS,
    about: 'open idle connections; heap and RSS per connection after GC' },
  // Many streams with a heartbeat every second (many-streams.mjs): the
  // server's event-loop delay over `seconds`, and heap and RSS per stream.
  // 20 000 streams from 4 client processes: 20-30 s a row with the
  // connecting and GC, 3 rounds; --quick: 500 streams, 3 s.
  { name: 'many-streams', kind: 'many', streams: QUICK ? 500 : 20_000, perProcess: 5000, keepAlive: 1000,
    seconds: QUICK ? 3 : 10, warmupMs: QUICK ? 500 : 2000, impls: ['raw', 'better-sse', 'native-sse'], bases: ['raw'],
    about: 'idle streams, each with a heartbeat every 1000 ms (raw: a setInterval per stream); event-loop delay of the server' },
  // Broadcast: one 100 B event per event-loop turn (setImmediate) to every
  // client; never more than `window` events ahead of the slowest client
  // (credit from the clients' progress reports, every `ackStep` events):
  // at most 256 x ~150 B = 38 KiB queued per client with 1 000 clients, and
  // 64 x 150 B = 10 KiB per client (~100 MB in all) with 10 000.
  // Default sizes: 1 000 clients x 200 events = 200 000 deliveries (~3 s a
  // row); 10 000 x 30 = 300 000 (~5 s, plus ~2 s to connect); 5 rounds
  // each. broadcast-latency: 1 000 x 100 events 40 ms apart (~4.5 s), and
  // stalled (~1.5-4 s): 3 rounds. The timed rows of the default `npm run
  // bench` take about 9 minutes on the 2-core machine (5 without
  // many-streams) and the Fetch-form rows below 2.5 more, the instruction
  // counts 6-10 more; --quick about 1 minute.
  { name: 'broadcast-1k', kind: 'broadcast', clients: QUICK ? 20 : 1000, processes: 2, count: QUICK ? 30 : 200,
    payloadBytes: 100, window: 256, ackStep: 32, ...BROADCAST_IMPLS, rounds: BROADCAST_ROUNDS,
    about: 'clients (2 client processes), one 100 B event per turn to all (saturated: latency is mostly queueing)' },
  { name: 'broadcast-10k', kind: 'broadcast', clients: QUICK ? 60 : 10_000, processes: 4, count: QUICK ? 20 : 30,
    payloadBytes: 100, window: 64, ackStep: 8, ...BROADCAST_IMPLS, rounds: BROADCAST_ROUNDS,
    about: 'clients (4 client processes), one 100 B event per turn to all (saturated: latency is mostly queueing)' },
  // Latency at a load every implementation keeps up with: one event every
  // 40 ms (a broadcast to 1 000 clients takes ~12 ms of server CPU here).
  { name: 'broadcast-latency', kind: 'broadcast', clients: QUICK ? 20 : 1000, processes: 2, count: QUICK ? 10 : 100, pace: 40,
    payloadBytes: 100, window: 256, ackStep: 32, impls: ['native-sse', 'native-sse-window10'], bases: [],
    about: 'clients, one 100 B event every 40 ms (not saturated): send-to-receive latency' },
  { name: 'stalled', kind: 'stalled', clients: 4, payloadBytes: STALLED_EVENT, warmup: STALLED_WARMUP,
    count: STALLED_WARMUP + STALLED_BYTES / STALLED_EVENT, window: 64, ackStep: 16,
    maxBufferedBytes: QUICK ? 256 * 1024 : undefined, capBytes: QUICK ? 256 * 1024 : 4 * MiB,
    impls: ['native-sse', 'better-sse', 'hand-loop'], bases: [], cappedImpls: ['native-sse'],
    about: `one client stops reading while ${STALLED_BYTES / MiB} MiB of 16 KiB broadcasts go to it and to 4 normal clients` },
  // The Fetch form (fetch.mjs), each runtime with its server: a burst as
  // `burst` (200 000 small events, 100 per turn, ids from 0) and a
  // broadcast as broadcast-1k (1 000 clients, 200 events of 100 B, one per
  // turn). 3 rounds, 5 for the Bun broadcast (4 s a row; its events/s
  // swings most: there the server and the two client processes together
  // fill the 2 cores, and the machine's other work shows): about 3 minutes
  // for the four on the 2-core machine (Hono and better-sse on Node take
  // 10-15 s a broadcast row); --quick 2 000 events and 20 clients x 30
  // events, about 4 s.
  // 50 000 streams (many50k.mjs), one round by default (each row takes
  // 1-2 minutes at the full count: connecting, 20 s idle, 5 paced events,
  // 10 s saturated): native-sse (Channel with flushWindow 10) and better-sse
  // (createChannel) side by side. Idle window 20 s, longer than either
  // default heartbeat period (15 s, 10 s), so every stream must have had
  // one. Broadcast flow control as broadcast-10k: never more than 64 events
  // ahead of the slowest stream (50 000 x 64 x ~150 B = 480 MB at most in
  // flight; with 16, native-sse's flushes carry fewer events each and its
  // deliveries/s falls by about 3x here). --quick: 300 (HTTP/1.1) and 200 (HTTP/2: 4 x 50)
  // streams, 1 s idle, 2 events 250 ms apart, 0.5 s saturated.
  ...[
    { name: 'many-50k-h1', kind: 'many50k', transport: 'h1', streams: QUICK ? 300 : 50_000, perProcess: 5000,
      about: 'HTTP/1.1 streams in one process (as many as the limit on open files allows)' },
    { name: 'many-50k-h2', kind: 'many50k', transport: 'h2', streams: QUICK ? 200 : 50_000, streamsPerConnection: QUICK ? 50 : 500, clientProcesses: QUICK ? 2 : 4,
      about: `HTTP/2 (h2c) streams in one process, ${QUICK ? 50 : 500} per connection` },
    { name: 'many-50k-cluster', kind: 'many50k-cluster', transport: 'h2', streams: QUICK ? 200 : 50_000, streamsPerConnection: QUICK ? 50 : 500, clientProcesses: QUICK ? 2 : 4,
      impls: ['1-worker', '2-workers'], bases: ['1-worker'],
      about: 'HTTP/2 streams over node:cluster workers sharing one Redis stream (native-sse Channel with redis, flushWindow 10)' },
  ].map((s) => ({
    impls: ['native-sse', 'better-sse'], bases: ['better-sse'], rounds: ROUNDS_GIVEN ? undefined : 1,
    idleMs: QUICK ? 1000 : 20_000, pacedEvents: QUICK ? 2 : 5, paceMs: QUICK ? 250 : 1000, saturatedMs: QUICK ? 500 : 10_000,
    window: 64, ackStep: 16, burst: 16, ...s,
  })),
  ...['bun', 'node'].flatMap((runtime) => {
    const server = runtime === 'bun' ? 'Bun.serve' : 'Node + @hono/node-server'
    return [
      { name: `fetch-${runtime}-burst`, kind: 'fetch-stream', runtime, count: QUICK ? 2000 : 200_000, batch: 100, payloadBytes: 50, ...FETCH_IMPLS,
        about: `Fetch form on ${server}: one client, 100 small (50 B) events per event-loop turn` },
      { name: `fetch-${runtime}-broadcast`, kind: 'fetch-broadcast', runtime, clients: QUICK ? 20 : 1000, processes: 2, count: QUICK ? 30 : 200,
        payloadBytes: 100, window: 256, ackStep: 32, ...FETCH_IMPLS, rounds: runtime === 'bun' ? BROADCAST_ROUNDS : undefined,
        about: `clients (2 client processes) of a Fetch form on ${server}, one 100 B event per turn to all` },
    ]
  }),
]
  .filter((s) => !ONLY || ONLY.includes(s.name))
const pickImpls = (impls) => impls.filter((impl) => !ONLY_IMPLS || ONLY_IMPLS.includes(impl))
// The timed rows.
export const SCENARIOS = (INSTRUCTIONS_ONLY ? [] : ALL_SCENARIOS)
  .map((s) => ({ ...s, rounds: s.rounds ?? ROUNDS, impls: pickImpls(s.impls) }))
// The instruction-count mode's scenarios.
const INSTRUCTION_SCENARIOS = (NO_INSTRUCTIONS ? [] : ALL_SCENARIOS)
  .filter((s) => s.instructions)
  .map((s) => ({ ...s, impls: pickImpls(s.instructionImpls ?? s.impls) }))
  .filter((s) => s.impls.length)

// The target of the many-streams scenario: native-sse's event-loop delay at p99.
const MANY_STREAMS_P99_MS = 20

// The target of the stalled scenario: RSS growth at most the cap plus 10 MiB.
const STALLED_SLACK_MB = 10

const child = (script, argv = [], execArgv = []) => forkChild(script, argv, execArgv, ROW_TIMEOUT_MS)

async function measureStream(impl, scenario) {
  const server = child('server.mjs', [impl], SERVER_NODE_ARGS)
  const client = child('client.mjs')
  try {
    const { port } = await server.next('ready')
    const eventName = 'tick'
    client.send({ type: 'stream', port, count: scenario.count, eventName })
    await client.next('connected')
    // Let the server finish opening the stream (better-sse opens asynchronously).
    await new Promise((resolve) => setTimeout(resolve, 50))
    const start = performance.now()
    server.send({ type: 'run', count: scenario.count, batch: scenario.batch, payloadBytes: scenario.payloadBytes, eventName })
    const done = await client.next('done')
    const seconds = (performance.now() - start) / 1000
    server.send({ type: 'stats' })
    const stats = await server.next('stats')
    if (!done.valid) return { valid: false, error: done.error ?? `received ${done.received} of ${scenario.count}` }
    return {
      valid: true,
      eventsPerSec: scenario.count / seconds,
      cpuMicrosPerEvent: stats.cpuMicros / scenario.count,
      maxRssMB: stats.maxRssBytes / 2 ** 20,
    }
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all([client.stop(), server.stop()])
  }
}

async function measureIdle(impl, scenario) {
  const server = child('server.mjs', [impl], SERVER_NODE_ARGS)
  const client = child('client.mjs')
  try {
    const { port } = await server.next('ready')
    server.send({ type: 'memory' })
    const before = await server.next('memory')
    client.send({ type: 'idle', port, connections: scenario.connections })
    const { open, error } = await client.next('idle-open')
    if (open !== scenario.connections) return { valid: false, error: error ?? `opened ${open} of ${scenario.connections}` }
    let after
    for (let i = 0; i < 100; i++) {
      server.send({ type: 'memory' })
      after = await server.next('memory')
      if (after.streams === scenario.connections) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    if (after.streams !== scenario.connections) return { valid: false, error: `server holds ${after.streams} streams` }
    return {
      valid: true,
      heapBytesPerConn: (after.heapUsed - before.heapUsed) / scenario.connections,
      rssBytesPerConn: (after.rss - before.rss) / scenario.connections,
      externalBytesPerConn: (after.external - before.external) / scenario.connections,
    }
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all([client.stop(), server.stop()])
  }
}

const int = (v) => Math.round(v).toLocaleString('en-US')
const METRICS = {
  stream: [
    { key: 'eventsPerSec', label: 'events/s', better: 'higher', fmt: int },
    { key: 'cpuMicrosPerEvent', label: 'server CPU µs/event', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'maxRssMB', label: 'server peak RSS MB', better: 'lower', fmt: (v) => v.toFixed(0) },
  ],
  'fetch-stream': [
    { key: 'eventsPerSec', label: 'events/s', better: 'higher', fmt: int },
    { key: 'cpuMicrosPerEvent', label: 'server CPU µs/event', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'userCpuMicrosPerEvent', label: '  of which user space', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'maxRssMB', label: 'server peak RSS MB', better: 'lower', fmt: (v) => v.toFixed(0) },
  ],
  idle: [
    { key: 'heapBytesPerConn', label: 'heap B/conn', better: 'lower', fmt: int },
    { key: 'rssBytesPerConn', label: 'RSS B/conn', better: 'lower', fmt: int },
  ],
  broadcast: [
    { key: 'eventsPerSec', label: 'delivered events/s', better: 'higher', fmt: int },
    { key: 'cpuMicrosPerDelivery', label: 'server CPU µs/delivery', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'userCpuMicrosPerDelivery', label: '  of which user space', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'latencyP50Ms', label: 'latency p50 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'latencyP99Ms', label: 'latency p99 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'clientCpuMicrosPerDelivery', label: 'client CPU µs/delivery', better: 'lower', fmt: (v) => v.toFixed(2) },
  ],
  stalled: [
    { key: 'rssGrowthMB', label: 'server RSS growth MB', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'eventsPerSec', label: 'delivered events/s', better: 'higher', fmt: int },
  ],
  many: [
    { key: 'eventLoopDelayP50Ms', label: 'event-loop delay p50 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'eventLoopDelayP99Ms', label: 'event-loop delay p99 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'eventLoopDelayMaxMs', label: 'event-loop delay max ms', better: 'lower', fmt: (v) => v.toFixed(1) },
    { key: 'heapBytesPerConn', label: 'heap B/stream', better: 'lower', fmt: int },
    { key: 'rssBytesPerConn', label: 'RSS B/stream', better: 'lower', fmt: int },
    { key: 'eventLoopUtilization', label: 'event-loop utilization', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'serverCpuPercent', label: 'server CPU %', better: 'lower', fmt: (v) => v.toFixed(0) },
    { key: 'heartbeatsPerStreamPerSec', label: 'heartbeats/stream/s', better: 'higher', fmt: (v) => v.toFixed(2) },
  ],
}

METRICS['fetch-broadcast'] = METRICS.broadcast
METRICS.many50k = [
  { key: 'connectPerSec', label: 'connect streams/s', better: 'higher', fmt: int },
  { key: 'heapBytesPerConn', label: 'heap B/stream', better: 'lower', fmt: int },
  { key: 'rssBytesPerConn', label: 'RSS B/stream', better: 'lower', fmt: int },
  { key: 'eventLoopDelayP50Ms', label: 'idle loop delay p50 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
  { key: 'eventLoopDelayP99Ms', label: 'idle loop delay p99 ms', better: 'lower', fmt: (v) => v.toFixed(1) },
  { key: 'eventLoopDelayMaxMs', label: 'idle loop delay max ms', better: 'lower', fmt: (v) => v.toFixed(1) },
  { key: 'idleServerCpuPercent', label: 'idle server CPU %', better: 'lower', fmt: (v) => v.toFixed(1) },
  { key: 'heartbeatsPerStream', label: 'heartbeats/stream', better: 'higher', fmt: (v) => v.toFixed(2) },
  { key: 'pacedLatencyP50Ms', label: '1/s latency p50 ms', better: 'lower', fmt: (v) => v.toFixed(0) },
  { key: 'pacedLatencyMaxMs', label: '1/s latency max ms', better: 'lower', fmt: (v) => v.toFixed(0) },
  { key: 'deliveriesPerSec', label: 'saturated deliveries/s', better: 'higher', fmt: int },
  { key: 'serverCpuMicrosPerDelivery', label: 'server CPU µs/delivery', better: 'lower', fmt: (v) => v.toFixed(2) },
  { key: 'latencyP99Ms', label: 'saturated latency p99 ms', better: 'lower', fmt: (v) => v.toFixed(0) },
]
METRICS['many50k-cluster'] = [
  { key: 'connectPerSec', label: 'connect streams/s', better: 'higher', fmt: int },
  { key: 'heapBytesPerConn', label: 'heap B/stream (sum)', better: 'lower', fmt: int },
  { key: 'rssBytesPerConn', label: 'RSS B/stream (sum)', better: 'lower', fmt: int },
  { key: 'pacedLatencyP50Ms', label: '1/s latency p50 ms', better: 'lower', fmt: (v) => v.toFixed(0) },
  { key: 'pacedLatencyMaxMs', label: '1/s latency max ms', better: 'lower', fmt: (v) => v.toFixed(0) },
  { key: 'deliveriesPerSec', label: 'saturated deliveries/s', better: 'higher', fmt: int },
  { key: 'latencyP99Ms', label: 'saturated latency p99 ms', better: 'lower', fmt: (v) => v.toFixed(0) },
]

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function summarise(rows) {
  const summary = {}
  for (const scenario of SCENARIOS) {
    summary[scenario.name] = {}
    for (const impl of scenario.impls) {
      const mine = rows.filter((r) => r.scenario === scenario.name && r.impl === impl)
      const valid = mine.every((r) => r.valid) && mine.length > 0
      const entry = { valid, rounds: mine.length, errors: mine.filter((r) => !r.valid).map((r) => r.error) }
      // The stream count where the row may open fewer than asked (the limit on open files).
      if (valid && mine[0].streams !== undefined) entry.streams = Math.min(...mine.map((r) => r.streams))
      if (valid) {
        for (const metric of METRICS[scenario.kind]) {
          const values = mine.map((r) => r[metric.key])
          entry[metric.key] = { median: median(values), min: Math.min(...values), max: Math.max(...values) }
        }
      }
      summary[scenario.name][impl] = entry
    }
    // Ratios of medians: impl / base, for each of the scenario's bases.
    for (const impl of scenario.impls) {
      const entry = summary[scenario.name][impl]
      if (!entry.valid) continue
      entry.ratios = {}
      for (const metric of METRICS[scenario.kind]) {
        for (const base of scenario.bases) {
          const ref = summary[scenario.name][base]
          if (ref?.valid) entry.ratios[`${metric.key}_vs_${base}`] = entry[metric.key].median / ref[metric.key].median
        }
      }
    }
  }
  return summary
}

// The targets of the engine issue (#10) where they are stated; the rest
// are the earlier issues' comparisons, kept as checks.
function evaluateTargets(summary, instructions) {
  const targets = []
  const get = (scenario, impl, key) => summary[scenario]?.[impl]?.valid ? summary[scenario][impl][key].median : undefined
  const add = (name, ratio, ok, goal) => targets.push({ name, ratio, met: ratio !== undefined && ok(ratio), goal })
  const native = 'native-sse'
  if (summary.burst) {
    const r = get('burst', native, 'eventsPerSec') / get('burst', 'raw', 'eventsPerSec')
    add('burst: events/s vs raw', r, (x) => x >= 1.8, '>= 1.8x')
    add('burst: events/s vs s42-js', get('burst', native, 'eventsPerSec') / get('burst', 's42-js', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
  }
  if (summary.paced) {
    const r = get('paced', native, 'cpuMicrosPerEvent') / get('paced', 'raw', 'cpuMicrosPerEvent')
    add('paced: server CPU/event vs raw', r, (x) => x <= 1.15, '<= 1.15x')
  }
  const pacedInstructions = instructions?.summary?.paced?.[native]
  if (pacedInstructions?.valid) {
    add('paced: server instructions/event vs raw (callgrind)', pacedInstructions.vsRaw, (x) => x <= 1.12, '<= 1.12x')
  }
  for (const scenario of ['payload-1KiB', 'payload-64KiB']) {
    if (!summary[scenario]) continue
    add(`${scenario}: events/s vs s42-js`, get(scenario, native, 'eventsPerSec') / get(scenario, 's42-js', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
  }
  for (const scenario of SCENARIOS) {
    if (scenario.kind === 'stream') {
      add(`${scenario.name}: events/s vs better-sse`, get(scenario.name, native, 'eventsPerSec') / get(scenario.name, 'better-sse', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
    } else if (scenario.kind === 'idle') {
      add(`${scenario.name}: heap/conn vs better-sse`, get(scenario.name, native, 'heapBytesPerConn') / get(scenario.name, 'better-sse', 'heapBytesPerConn'), (x) => x <= 0.5, '<= 0.5x')
    }
  }
  for (const scenario of SCENARIOS.filter((s) => s.kind === 'broadcast' && s.bases.length)) {
    const events = (impl) => get(scenario.name, impl, 'eventsPerSec')
    add(`${scenario.name}: events/s, native-sse vs better-sse`, events(native) / events('better-sse'), (x) => x >= 1.3, '>= 1.3x')
    add(`${scenario.name}: events/s, native-sse vs hand-loop`, events(native) / events('hand-loop'), (x) => x >= 1.0, '>= 1.0x')
    add(`${scenario.name}: events/s, native-sse flushWindow 10 vs better-sse`, events('native-sse-window10') / events('better-sse'), (x) => x >= 3, '>= 3x')
  }
  // The Fetch form ahead of both others on the same server, for each
  // runtime and kind: more events/s and less server CPU per event.
  for (const scenario of SCENARIOS.filter((s) => s.kind === 'fetch-stream' || s.kind === 'fetch-broadcast')) {
    const cpuKey = scenario.kind === 'fetch-stream' ? 'cpuMicrosPerEvent' : 'cpuMicrosPerDelivery'
    const cpuLabel = scenario.kind === 'fetch-stream' ? 'server CPU/event' : 'server CPU/delivery'
    for (const base of scenario.bases) {
      add(`${scenario.name}: events/s, native-sse vs ${base}`,
        get(scenario.name, native, 'eventsPerSec') / get(scenario.name, base, 'eventsPerSec'), (x) => x > 1, '> 1.0x')
      add(`${scenario.name}: ${cpuLabel}, native-sse vs ${base}`,
        get(scenario.name, native, cpuKey) / get(scenario.name, base, cpuKey), (x) => x < 1, '< 1.0x')
    }
  }
  const stalled = SCENARIOS.find((s) => s.kind === 'stalled')
  if (stalled) {
    const limitMB = stalled.capBytes / 2 ** 20 + STALLED_SLACK_MB
    const growth = get(stalled.name, native, 'rssGrowthMB')
    const target = {
      name: `${stalled.name}: native-sse RSS growth / (cap + ${STALLED_SLACK_MB} MiB = ${limitMB.toFixed(2)} MiB)`,
      ratio: growth === undefined ? undefined : growth / limitMB,
      goal: '<= 1.0x',
      growthMB: growth,
      limitMB,
    }
    target.met = target.ratio !== undefined && target.ratio <= 1
    targets.push(target)
  }
  // The 50 000-stream issue (#13): per transport, native-sse against
  // better-sse at the same count in the same run.
  for (const scenario of SCENARIOS.filter((s) => s.kind === 'many50k')) {
    const value = (impl, key) => get(scenario.name, impl, key)
    const streams = summary[scenario.name]?.[native]?.valid ? summary[scenario.name][native].streams : undefined
    const count = (streams ?? scenario.streams).toLocaleString('en-US')
    add(`${scenario.name}: heap/stream, native-sse vs better-sse (${count} streams)`,
      value(native, 'heapBytesPerConn') / value('better-sse', 'heapBytesPerConn'), (x) => x <= 0.5, '<= 0.5x')
    const p99 = value(native, 'eventLoopDelayP99Ms')
    const target = {
      name: `${scenario.name}: native-sse idle event-loop delay p99 / ${MANY_STREAMS_P99_MS} ms (${count} streams, default keepAlive)`,
      ratio: p99 === undefined ? undefined : p99 / MANY_STREAMS_P99_MS,
      goal: '< 1.0x',
      valueMs: p99,
    }
    target.met = target.ratio !== undefined && target.ratio < 1
    targets.push(target)
    add(`${scenario.name}: saturated deliveries/s, native-sse flushWindow 10 vs better-sse`,
      value(native, 'deliveriesPerSec') / value('better-sse', 'deliveriesPerSec'), (x) => x >= 20, '>= 20x')
  }
  const many = SCENARIOS.find((s) => s.kind === 'many')
  if (many) {
    const p99 = get(many.name, native, 'eventLoopDelayP99Ms')
    const target = {
      name: `${many.name}: native-sse event-loop delay p99 / ${MANY_STREAMS_P99_MS} ms (${many.streams.toLocaleString('en-US')} streams, keepAlive ${many.keepAlive})`,
      ratio: p99 === undefined ? undefined : p99 / MANY_STREAMS_P99_MS,
      goal: '< 1.0x',
      valueMs: p99,
    }
    target.met = target.ratio !== undefined && target.ratio < 1
    targets.push(target)
  }
  return targets
}

function printSummary(summary, rows) {
  for (const scenario of SCENARIOS) {
    let size = scenario.about
    if (scenario.kind === 'broadcast' || scenario.kind === 'fetch-broadcast') size = `${scenario.clients.toLocaleString('en-US')} ${scenario.about}, ${scenario.count} events`
    if (scenario.kind === 'fetch-stream') size = `${scenario.about}, ${scenario.count.toLocaleString('en-US')} events`
    if (scenario.kind === 'many') size = `${scenario.streams.toLocaleString('en-US')} ${scenario.about}, over ${scenario.seconds} s`
    if (scenario.kind === 'many50k' || scenario.kind === 'many50k-cluster') {
      size = `${scenario.streams.toLocaleString('en-US')} ${scenario.about}; idle ${scenario.idleMs / 1000} s, ${scenario.pacedEvents} events ${scenario.paceMs} ms apart, then saturated for ${scenario.saturatedMs / 1000} s`
      if (scenario.kind === 'many50k-cluster') size = size.replace(/; idle [^,]*,/, ';')
      const fewer = rows.filter((r) => r.scenario === scenario.name && r.valid && r.streams !== r.requestedStreams)
      if (fewer.length) {
        console.log(`\n  NOTE (${scenario.name}): ${fewer[0].streams.toLocaleString('en-US')} streams instead of ${scenario.streams.toLocaleString('en-US')}: the server's limit on open files is ${fewer[0].fdLimit} and could not be raised`)
      }
    }
    console.log(`\n${scenario.name}: ${size}; ${scenario.rounds} round(s)`)
    if (scenario.kind === 'many') {
      const fewer = rows.filter((r) => r.scenario === scenario.name && r.valid && r.streams !== r.requestedStreams)
      if (fewer.length) {
        const counts = [...new Set(fewer.map((r) => r.streams))].join(', ')
        console.log(`  NOTE: ${counts} streams opened instead of ${scenario.streams}: the server's limit on open files is ${fewer[0].fdLimit} (ulimit -Hn; Node raises the soft limit to it)`)
      }
    }
    for (const metric of METRICS[scenario.kind]) {
      const cells = scenario.impls.map((impl) => {
        const e = summary[scenario.name][impl]
        if (!e.valid) return `${impl}: INVALID (${e.errors[0]})`
        const m = e[metric.key]
        const ratios = scenario.bases
          .filter((base) => base !== impl && e.ratios[`${metric.key}_vs_${base}`] !== undefined)
          .map((base) => `${e.ratios[`${metric.key}_vs_${base}`].toFixed(2)}x ${base}`)
        return `${impl} ${metric.fmt(m.median)} [${metric.fmt(m.min)}–${metric.fmt(m.max)}]${ratios.length ? ` ${ratios.join(' ')}` : ''}`
      })
      console.log(`  ${metric.label.padEnd(23)} ${cells.join(' | ')}`)
    }
    const mine = summary[scenario.name]
    if (scenario.pace && mine['native-sse']?.valid && mine['native-sse-window10']?.valid) {
      const added = (key) => (mine['native-sse-window10'][key].median - mine['native-sse'][key].median).toFixed(1)
      console.log(`  flushWindow 10 adds ${added('latencyP50Ms')} ms of latency at p50, ${added('latencyP99Ms')} ms at p99 (medians)`)
    }
  }
}

async function measure(impl, scenario) {
  const opts = { serverNodeArgs: SERVER_NODE_ARGS, timeoutMs: ROW_TIMEOUT_MS }
  switch (scenario.kind) {
    case 'stream':
      return measureStream(impl, scenario)
    case 'idle':
      return measureIdle(impl, scenario)
    case 'broadcast':
      return measureBroadcast(impl, scenario, opts)
    case 'stalled':
      return measureStalled(impl, scenario, opts)
    case 'many':
      return measureManyStreams(impl, scenario, opts)
    case 'many50k':
      return measureMany50k(impl, scenario, opts)
    case 'many50k-cluster':
      return measureCluster(impl, scenario, opts)
    case 'fetch-stream':
      return measureFetchStream(impl, scenario, opts)
    case 'fetch-broadcast':
      return measureFetchBroadcast(impl, scenario, opts)
  }
}

/**
 * --merge: the scenarios of this run replace those of the same name in the
 * earlier results.json at `path`, whose other scenarios, rows, summaries,
 * targets and instruction counts stay (this run's date and duration go
 * under `merged`).
 */
function mergeInto(path, result) {
  if (!existsSync(path)) return result
  const earlier = JSON.parse(readFileSync(path, 'utf8'))
  const names = new Set(result.scenarios.map((s) => s.name))
  const mine = (name) => names.has(name) || [...names].some((n) => name.startsWith(`${n}: `))
  return {
    ...earlier,
    scenarios: [...earlier.scenarios.filter((s) => !names.has(s.name)), ...result.scenarios],
    rows: [...earlier.rows.filter((r) => !names.has(r.scenario)), ...result.rows],
    summary: { ...earlier.summary, ...result.summary },
    targets: [...earlier.targets.filter((t) => !mine(t.name)), ...result.targets],
    instructions: result.instructions.rows?.length ? result.instructions : earlier.instructions,
    merged: [...(earlier.merged ?? []), { date: result.date, durationSec: result.durationSec, quick: result.quick, scenarios: [...names] }],
  }
}

async function main() {
  const rows = []
  const started = Date.now()
  const totalRounds = Math.max(...SCENARIOS.map((s) => s.rounds))
  for (let round = 0; round < totalRounds; round++) {
    for (const scenario of SCENARIOS.filter((s) => round < s.rounds)) {
      // Alternate the order of the implementations from round to round.
      const impls = scenario.impls
      const order = impls.map((_, i) => impls[(i + round) % impls.length])
      for (const impl of order) {
        const rowStart = performance.now()
        const result = await measure(impl, scenario)
        rows.push({ scenario: scenario.name, impl, round, ...result })
        const shown = result.valid ? '' : ` INVALID: ${result.error}`
        const took = ((performance.now() - rowStart) / 1000).toFixed(1)
        process.stdout.write(`round ${round + 1}/${scenario.rounds} ${scenario.name.padEnd(20)} ${impl.padEnd(19)} ${took.padStart(5)} s${shown}\n`)
      }
    }
  }
  const instructions = await measureInstructions(INSTRUCTION_SCENARIOS, {
    jobs: INSTR_JOBS,
    log(row) {
      const shown = row.valid ? `${row.instructions.toLocaleString('en-US')} instructions` : `INVALID: ${row.error}`
      process.stdout.write(`callgrind ${row.scenario.padEnd(7)} ${row.impl.padEnd(11)} ${String(row.events).padStart(6)} events ${row.seconds.toFixed(1).padStart(5)} s ${shown}\n`)
    },
  })
  const summary = summarise(rows)
  const targets = evaluateTargets(summary, instructions)
  printSummary(summary, rows)
  printInstructions(instructions)
  if (targets.length) console.log('\nTargets (native-sse, ratios of medians from this run):')
  for (const t of targets) {
    const ratio = t.ratio === undefined || Number.isNaN(t.ratio) ? 'n/a' : `${t.ratio.toFixed(2)}x`
    let extra = t.growthMB !== undefined ? ` (${t.growthMB.toFixed(1)} MiB)` : ''
    if (t.valueMs !== undefined) extra = ` (${t.valueMs.toFixed(1)} ms)`
    console.log(`  ${t.met ? 'MET    ' : 'NOT MET'} ${t.name}: ${ratio}${extra} (target ${t.goal})`)
  }
  const cpus = os.cpus()
  let result = {
    quick: QUICK,
    rounds: ROUNDS,
    date: new Date().toISOString(),
    durationSec: (Date.now() - started) / 1000,
    machine: { cpu: cpus[0]?.model, cores: cpus.length, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), platform: `${os.platform()} ${os.release()}`, node: process.version },
    scenarios: SCENARIOS,
    rows,
    summary,
    targets,
    // The instruction-count mode (instructions.mjs): instructions per event
    // and the ratio to raw in instructions.summary.<scenario>.<impl>.
    instructions,
  }
  mkdirSync(OUT, { recursive: true })
  if (MERGE) result = mergeInto(join(OUT, 'results.json'), result)
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(result, null, 2) + '\n')
  writeFileSync(join(OUT, 'chart.svg'), renderChart(result))
  console.log(`\nwrote ${join(OUT, 'results.json')} and chart.svg (${result.durationSec.toFixed(0)} s)`)
  const invalid = rows.filter((r) => !r.valid)
  if (invalid.length) {
    console.error(`${invalid.length} invalid row(s)`)
    process.exitCode = 1
  }
  const invalidCounts = Object.values(instructions.summary).flatMap((s) => Object.values(s)).filter((e) => !e.valid)
  if (invalidCounts.length) {
    console.error(`${invalidCounts.length} invalid instruction count(s)`)
    process.exitCode = 1
  }
}

main()
