// Side-by-side benchmark of raw res.write, an S42Core-like JS class,
// better-sse and native-sse, on real loopback sockets, with the load client in
// a separate process. `npm run bench` runs the full set; `--quick` runs tiny
// sizes (used by `npm test` to check that it still runs and counts correctly).
//
//   node benchmark/bench.mjs [--quick] [--rounds N] [--only scenario,...]
//     [--impls name,...] [--out DIR] [--server-node-args "--cpu-prof ..."]
// --server-node-args passes flags to each server process (for profiling).
import { fork } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { renderChart } from './chart.mjs'
import { IMPLEMENTATION_NAMES } from './implementations.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const flag = (name) => args.includes(name)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}

const QUICK = flag('--quick')
const ROUNDS = Number(option('--rounds', QUICK ? 1 : 3))
const OUT = option('--out', join(here, 'results'))
const ONLY = option('--only', null)?.split(',')
const IMPLS = option('--impls', null)?.split(',') ?? IMPLEMENTATION_NAMES
const SERVER_NODE_ARGS = option('--server-node-args', '').split(' ').filter(Boolean)
const ROW_TIMEOUT_MS = 120_000

// Sizes: the default run finishes in a few minutes on a 2-core machine.
export const SCENARIOS = [
  { name: 'burst', kind: 'stream', count: QUICK ? 2000 : 200_000, batch: 100, payloadBytes: 50,
    about: 'one client, 100 small (50 B) events per event-loop turn' },
  { name: 'paced', kind: 'stream', count: QUICK ? 300 : 20_000, batch: 1, payloadBytes: 50,
    about: 'one client, one small (50 B) event per event-loop turn' },
  { name: 'payload-1KiB', kind: 'stream', count: QUICK ? 500 : 50_000, batch: 100, payloadBytes: 1024,
    about: 'one client, 100 medium (1 KiB) events per turn' },
  { name: 'payload-64KiB', kind: 'stream', count: QUICK ? 40 : 2000, batch: 10, payloadBytes: 65536,
    about: 'one client, 10 large (64 KiB) events per turn' },
  { name: 'idle-memory', kind: 'idle', connections: QUICK ? 200 : 10_000,
    about: 'open idle connections; heap and RSS per connection after GC' },
].filter((s) => !ONLY || ONLY.includes(s.name))

function child(script, argv = [], execArgv = []) {
  const proc = fork(join(here, script), argv, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const queue = []
  const waiters = []
  proc.on('message', (m) => {
    const i = waiters.findIndex((w) => w.type === m.type)
    if (i === -1) queue.push(m)
    else waiters.splice(i, 1)[0].resolve(m)
  })
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  return {
    send: (m) => proc.send(m),
    next(type, timeoutMs = ROW_TIMEOUT_MS) {
      const i = queue.findIndex((m) => m.type === type)
      if (i !== -1) return Promise.resolve(queue.splice(i, 1)[0])
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${script}: no '${type}' within ${timeoutMs} ms`)), timeoutMs)
        waiters.push({ type, resolve: (m) => (clearTimeout(timer), resolve(m)) })
        exited.then((code) => reject(new Error(`${script} exited (${code}) while waiting for '${type}'`)))
      })
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.send({ type: 'exit' })
        const timer = setTimeout(() => proc.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}

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

const METRICS = {
  stream: [
    { key: 'eventsPerSec', label: 'events/s', better: 'higher', fmt: (v) => Math.round(v).toLocaleString('en-US') },
    { key: 'cpuMicrosPerEvent', label: 'server CPU µs/event', better: 'lower', fmt: (v) => v.toFixed(2) },
    { key: 'maxRssMB', label: 'server peak RSS MB', better: 'lower', fmt: (v) => v.toFixed(0) },
  ],
  idle: [
    { key: 'heapBytesPerConn', label: 'heap B/conn', better: 'lower', fmt: (v) => Math.round(v).toLocaleString('en-US') },
    { key: 'rssBytesPerConn', label: 'RSS B/conn', better: 'lower', fmt: (v) => Math.round(v).toLocaleString('en-US') },
  ],
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function summarise(rows) {
  const summary = {}
  for (const scenario of SCENARIOS) {
    summary[scenario.name] = {}
    for (const impl of IMPLS) {
      const mine = rows.filter((r) => r.scenario === scenario.name && r.impl === impl)
      const valid = mine.every((r) => r.valid) && mine.length > 0
      const entry = { valid, rounds: mine.length, errors: mine.filter((r) => !r.valid).map((r) => r.error) }
      if (valid) {
        for (const metric of METRICS[scenario.kind]) {
          const values = mine.map((r) => r[metric.key])
          entry[metric.key] = { median: median(values), min: Math.min(...values), max: Math.max(...values) }
        }
      }
      summary[scenario.name][impl] = entry
    }
    // Ratios of medians: impl / raw and impl / better-sse.
    for (const impl of IMPLS) {
      const entry = summary[scenario.name][impl]
      if (!entry.valid) continue
      entry.ratios = {}
      for (const metric of METRICS[scenario.kind]) {
        for (const base of ['raw', 'better-sse']) {
          const ref = summary[scenario.name][base]
          if (ref?.valid) entry.ratios[`${metric.key}_vs_${base}`] = entry[metric.key].median / ref[metric.key].median
        }
      }
    }
  }
  return summary
}

function evaluateTargets(summary) {
  const targets = []
  const get = (scenario, impl, key) => summary[scenario]?.[impl]?.valid ? summary[scenario][impl][key].median : undefined
  const add = (name, ratio, ok, goal) => targets.push({ name, ratio, met: ratio !== undefined && ok(ratio), goal })
  const native = 'native-sse'
  if (summary.burst) {
    const r = get('burst', native, 'eventsPerSec') / get('burst', 'raw', 'eventsPerSec')
    add('burst: events/s vs raw', r, (x) => x >= 1.0, '>= 1.0x (aim 1.5x)')
    add('burst: events/s vs s42-js', get('burst', native, 'eventsPerSec') / get('burst', 's42-js', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
  }
  if (summary.paced) {
    const r = get('paced', native, 'cpuMicrosPerEvent') / get('paced', 'raw', 'cpuMicrosPerEvent')
    add('paced: server CPU/event vs raw', r, (x) => x <= 1.2, '<= 1.2x')
  }
  for (const scenario of ['payload-1KiB', 'payload-64KiB']) {
    if (!summary[scenario]) continue
    add(`${scenario}: events/s vs s42-js`, get(scenario, native, 'eventsPerSec') / get(scenario, 's42-js', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
  }
  for (const scenario of SCENARIOS) {
    if (scenario.kind === 'stream') {
      add(`${scenario.name}: events/s vs better-sse`, get(scenario.name, native, 'eventsPerSec') / get(scenario.name, 'better-sse', 'eventsPerSec'), (x) => x > 1, '> 1.0x')
    } else {
      add(`${scenario.name}: heap/conn vs better-sse`, get(scenario.name, native, 'heapBytesPerConn') / get(scenario.name, 'better-sse', 'heapBytesPerConn'), (x) => x <= 1, '<= 1.0x')
    }
  }
  return targets
}

function printSummary(summary) {
  for (const scenario of SCENARIOS) {
    console.log(`\n${scenario.name}: ${scenario.about}`)
    for (const metric of METRICS[scenario.kind]) {
      const cells = IMPLS.map((impl) => {
        const e = summary[scenario.name][impl]
        if (!e.valid) return `${impl}: INVALID (${e.errors[0]})`
        const m = e[metric.key]
        const vsRaw = e.ratios[`${metric.key}_vs_raw`]
        return `${impl} ${metric.fmt(m.median)} [${metric.fmt(m.min)}–${metric.fmt(m.max)}] ${vsRaw?.toFixed(2)}x raw`
      })
      console.log(`  ${metric.label.padEnd(20)} ${cells.join(' | ')}`)
    }
  }
}

async function main() {
  const rows = []
  const started = Date.now()
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order of the implementations from round to round.
    const order = IMPLS.map((_, i) => IMPLS[(i + round) % IMPLS.length])
    for (const scenario of SCENARIOS) {
      for (const impl of order) {
        const result = scenario.kind === 'stream' ? await measureStream(impl, scenario) : await measureIdle(impl, scenario)
        rows.push({ scenario: scenario.name, impl, round, ...result })
        const shown = result.valid ? '' : ` INVALID: ${result.error}`
        process.stdout.write(`round ${round + 1}/${ROUNDS} ${scenario.name.padEnd(14)} ${impl.padEnd(11)}${shown}\n`)
      }
    }
  }
  const summary = summarise(rows)
  const targets = evaluateTargets(summary)
  printSummary(summary)
  console.log('\nTargets (native-sse, ratios of medians from this run):')
  for (const t of targets) {
    const ratio = t.ratio === undefined || Number.isNaN(t.ratio) ? 'n/a' : `${t.ratio.toFixed(2)}x`
    console.log(`  ${t.met ? 'MET    ' : 'NOT MET'} ${t.name}: ${ratio} (target ${t.goal})`)
  }
  const cpus = os.cpus()
  const result = {
    quick: QUICK,
    rounds: ROUNDS,
    date: new Date().toISOString(),
    durationSec: (Date.now() - started) / 1000,
    machine: { cpu: cpus[0]?.model, cores: cpus.length, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), platform: `${os.platform()} ${os.release()}`, node: process.version },
    scenarios: SCENARIOS,
    rows,
    summary,
    targets,
  }
  mkdirSync(OUT, { recursive: true })
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(result, null, 2) + '\n')
  writeFileSync(join(OUT, 'chart.svg'), renderChart(result))
  console.log(`\nwrote ${join(OUT, 'results.json')} and chart.svg (${result.durationSec.toFixed(0)} s)`)
  const invalid = rows.filter((r) => !r.valid)
  if (invalid.length) {
    console.error(`${invalid.length} invalid row(s)`)
    process.exitCode = 1
  }
}

main()
