// The benchmark still runs, and every row counts its events correctly
// (quick mode: tiny sizes, no timing assertions); the many-streams rows and
// the instruction-count mode (callgrind, when valgrind is installed) yield
// numbers. The Fetch-form rows run their servers under Bun and under Node
// (@hono/node-server), about 4 s of the quick run.
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const bench = fileURLToPath(new URL('../benchmark/bench.mjs', import.meta.url))

/** Resolves with `value` after `ms`, without keeping the process alive. */
const after = (ms, value) => new Promise((resolve) => setTimeout(() => resolve(value), ms).unref())

let hasValgrind = true
try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' })
} catch {
  hasValgrind = false
}

test('npm run bench -- --quick runs every scenario for every implementation with valid counts', { timeout: 240_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'native-sse-bench-'))
  try {
    const { stdout } = await new Promise((resolve, reject) => {
      execFile(process.execPath, [bench, '--quick', '--out', out], { timeout: 230_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve({ stdout, stderr }))
    })
    const result = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    const streamImpls = ['raw', 's42-js', 'better-sse', 'native-sse']
    const broadcastImpls = ['native-sse', 'native-sse-window10', 'better-sse', 'hand-loop']
    const fetchImpls = ['native-sse', 'hono-streamSSE', 'better-sse-fetch']
    const expected = {
      burst: streamImpls,
      paced: streamImpls,
      'payload-1KiB': streamImpls,
      'payload-64KiB': streamImpls,
      'idle-memory': streamImpls,
      'many-streams': ['raw', 'better-sse', 'native-sse'],
      'broadcast-1k': broadcastImpls,
      'broadcast-10k': broadcastImpls,
      'broadcast-latency': ['native-sse', 'native-sse-window10'],
      stalled: ['native-sse', 'better-sse', 'hand-loop'],
      'many-50k-h1': ['native-sse', 'better-sse'],
      'many-50k-h2': ['native-sse', 'better-sse'],
      'many-50k-cluster': ['1-worker', '2-workers'],
      'fetch-bun-burst': fetchImpls,
      'fetch-bun-broadcast': fetchImpls,
      'fetch-node-burst': fetchImpls,
      'fetch-node-broadcast': fetchImpls,
    }
    assert.deepEqual(result.scenarios.map((s) => s.name), Object.keys(expected))
    for (const scenario of result.scenarios) assert.deepEqual(scenario.impls, expected[scenario.name])
    assert.equal(result.rows.length, Object.values(expected).flat().length)
    for (const row of result.rows) assert.equal(row.valid, true, `${row.scenario}/${row.impl}: ${row.error}`)
    const keys = {
      stream: 'eventsPerSec',
      idle: 'heapBytesPerConn',
      broadcast: 'eventsPerSec',
      stalled: 'rssGrowthMB',
      many: 'eventLoopDelayP99Ms',
      'fetch-stream': 'cpuMicrosPerEvent',
      'fetch-broadcast': 'cpuMicrosPerDelivery',
      many50k: 'deliveriesPerSec',
      'many50k-cluster': 'deliveriesPerSec',
    }
    for (const scenario of result.scenarios) {
      for (const impl of scenario.impls) {
        const entry = result.summary[scenario.name][impl]
        assert.equal(entry.valid, true)
        const key = keys[scenario.kind]
        assert.ok(Number.isFinite(entry[key].median), `${scenario.name}/${impl} ${key}`)
      }
    }
    // Broadcast rows: every client got every event (the clients check ids
    // and order; here the totals).
    for (const row of result.rows) {
      const scenario = result.scenarios.find((s) => s.name === row.scenario)
      if (scenario.kind === 'broadcast' || scenario.kind === 'fetch-broadcast') {
        assert.equal(row.deliveries, scenario.clients * scenario.count, `${row.scenario}/${row.impl}`)
        assert.ok(row.latencyP50Ms > 0 && row.latencyP99Ms >= row.latencyP50Ms, `${row.scenario}/${row.impl} latency`)
      } else if (scenario.kind === 'fetch-stream') {
        // The client checked every event (ids from 0); here the count and the server's runtime.
        assert.equal(row.received, scenario.count, `${row.scenario}/${row.impl}`)
        assert.match(row.runtime, scenario.runtime === 'bun' ? /^bun \d/ : /^node v\d/, `${row.scenario}/${row.impl} runtime`)
        assert.ok(row.eventsPerSec > 0 && row.cpuMicrosPerEvent > 0, `${row.scenario}/${row.impl} numbers`)
      } else if (scenario.kind === 'stalled') {
        assert.equal(row.deliveries, scenario.clients * (scenario.count - scenario.warmup), `${row.scenario}/${row.impl}`)
        assert.equal(row.overflowClosed, scenario.cappedImpls.includes(row.impl), `${row.impl}: stalled member closed for overflow`)
      } else if (scenario.kind === 'many') {
        // Every stream open through the window, each with its heartbeats.
        const what = `${row.scenario}/${row.impl}`
        assert.equal(row.streams, scenario.streams, what)
        assert.ok(row.eventLoopDelayP50Ms > 0 && row.eventLoopDelayP99Ms >= row.eventLoopDelayP50Ms, `${what} delay`)
        assert.ok(row.eventLoopDelayMaxMs >= row.eventLoopDelayP99Ms, `${what} max delay`)
        assert.ok(row.heartbeatsPerStreamPerSec > 0 && row.minHeartbeatsPerStream >= 1, `${what} heartbeats`)
        assert.ok(Number.isFinite(row.heapBytesPerConn) && Number.isFinite(row.rssBytesPerConn), `${what} memory`)
      } else if (scenario.kind === 'many50k' || scenario.kind === 'many50k-cluster') {
        // Every stream held (the quick counts fit any limit on open files),
        // and every broadcast delivered to every one of them (the clients
        // check ids and order; here the totals).
        const what = `${row.scenario}/${row.impl}`
        assert.equal(row.streams, scenario.streams, what)
        assert.equal(row.transport, scenario.transport, what)
        assert.ok(row.connectPerSec > 0 && Number.isFinite(row.heapBytesPerConn), `${what} connect and memory`)
        assert.equal(row.pacedEvents, scenario.pacedEvents, what)
        assert.ok(row.saturatedEvents >= 1, `${what} saturated events`)
        assert.equal(row.deliveries, row.streams * row.saturatedEvents, what)
        assert.ok(row.deliveriesPerSec > 0 && row.pacedLatencyP50Ms > 0, `${what} deliveries/s and latency`)
        if (scenario.kind === 'many50k') {
          assert.ok(row.eventLoopDelayP99Ms >= row.eventLoopDelayP50Ms && row.eventLoopDelayMaxMs >= row.eventLoopDelayP99Ms, `${what} delay`)
          assert.equal(row.keepAliveMs, row.impl === 'native-sse' ? 15_000 : 10_000, `${what} default heartbeat`)
        } else {
          assert.equal(row.workers, row.impl === '1-worker' ? 1 : 2, what)
        }
      }
    }
    assert.match(stdout, /many-streams: native-sse event-loop delay p99/)
    for (const name of ['many-50k-h1', 'many-50k-h2']) {
      const mine = result.targets.filter((t) => t.name.startsWith(`${name}: `))
      assert.equal(mine.length, 3, `${name}: heap, event-loop delay and deliveries/s targets`)
      for (const target of mine) assert.ok(Number.isFinite(target.ratio), target.name)
    }
    assert.match(stdout, /many-50k-h2: saturated deliveries\/s, native-sse flushWindow 10 vs better-sse/)
    // The instruction-count mode: paced, raw and native-sse, under callgrind.
    const { instructions } = result
    assert.deepEqual(instructions.scenarios.map((s) => [s.name, s.impls]), [['paced', ['raw', 'native-sse']]])
    if (!hasValgrind) {
      assert.match(instructions.skipped, /valgrind/)
      t.diagnostic('valgrind is not installed: the instruction-count mode was skipped')
    } else {
      assert.equal(instructions.rows.length, 4)
      for (const row of instructions.rows) assert.ok(row.valid && row.instructions > 0, `callgrind ${row.impl} ${row.events}: ${row.error}`)
      for (const impl of ['raw', 'native-sse']) {
        const entry = instructions.summary.paced[impl]
        assert.equal(entry.valid, true, `${impl}: ${entry.error}`)
        assert.ok(entry.instructionsPerEvent > 0, `${impl} instructions/event`)
        assert.ok(entry.vsRaw > 0, `${impl} ratio to raw`)
      }
      assert.equal(instructions.summary.paced.raw.vsRaw, 1)
      assert.match(stdout, /instructions \(callgrind\)/)
    }
    assert.ok(result.targets.length >= 15)
    assert.match(stdout, /Targets \(native-sse/)
    assert.match(stdout, /flushWindow 10 adds/)
    // The Fetch form's targets: ahead of both others, per runtime and kind.
    for (const name of ['fetch-bun-burst', 'fetch-bun-broadcast', 'fetch-node-burst', 'fetch-node-broadcast']) {
      for (const base of ['hono-streamSSE', 'better-sse-fetch']) {
        const mine = result.targets.filter((t) => t.name.startsWith(`${name}: `) && t.name.endsWith(`native-sse vs ${base}`))
        assert.equal(mine.length, 2, `${name} vs ${base}: events/s and CPU targets`)
        for (const target of mine) assert.ok(Number.isFinite(target.ratio), target.name)
      }
    }
    const chart = readFileSync(join(out, 'chart.svg'), 'utf8')
    assert.match(chart, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    assert.match(chart, /Stalled member/)
    assert.match(chart, /event-loop delay p99/)
    assert.match(chart, /Fetch form/)
    if (hasValgrind) assert.match(chart, /instructions per event/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('the client marks a row invalid when events are missing or out of order', { timeout: 60_000 }, async () => {
  // A server that skips event 3 must be caught by the client's checks.
  const { fork } = await import('node:child_process')
  const http = await import('node:http')
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' })
    for (const seq of [1, 2, 4, 5]) res.write(`id: ${seq}\nevent: tick\ndata: {"i":${seq},"p":""}\n\n`)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = fork(fileURLToPath(new URL('../benchmark/client.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const done = new Promise((resolve) => client.on('message', (m) => m.type === 'done' && resolve(m)))
    client.send({ type: 'stream', port: server.address().port, count: 4, eventName: 'tick' })
    const result = await Promise.race([done, after(10_000, { timeout: true })])
    assert.equal(result.valid, false)
    assert.match(result.error, /expected id 3, got id 4/)
  } finally {
    client.kill()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('the client checks ids from `first` (0 in the Fetch rows): ids counted from 1 are caught', { timeout: 60_000 }, async () => {
  const { fork } = await import('node:child_process')
  const http = await import('node:http')
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' })
    for (const seq of [0, 1, 2]) res.write(`id: ${seq + 1}\nevent: tick\ndata: {"i":${seq},"p":""}\n\n`)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = fork(fileURLToPath(new URL('../benchmark/client.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const done = new Promise((resolve) => client.on('message', (m) => m.type === 'done' && resolve(m)))
    client.send({ type: 'stream', port: server.address().port, count: 3, eventName: 'tick', first: 0 })
    const result = await Promise.race([done, after(10_000, { timeout: true })])
    assert.equal(result.valid, false)
    assert.match(result.error, /expected id 0, got id 1/)
  } finally {
    client.kill()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('the broadcast client marks a row invalid when an event is missing, and reports progress', { timeout: 60_000 }, async () => {
  // Chunked SSE responses that skip event 3 must be caught.
  const { fork } = await import('node:child_process')
  const http = await import('node:http')
  const responses = []
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' })
    res.write('event: welcome\ndata: {}\n\nid: 1700000000000-0\n\n')
    responses.push(res)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = fork(fileURLToPath(new URL('../benchmark/broadcast-client.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const messages = []
    const waitFor = (type) => new Promise((resolve) => {
      const check = () => {
        const m = messages.find((m) => m.type === type)
        if (m) resolve(m)
        else setTimeout(check, 10)
      }
      check()
    })
    client.on('message', (m) => messages.push(m))
    client.send({ type: 'open', port: server.address().port, connections: 2, stalled: 0, count: 4, eventName: 'tick', ackStep: 1 })
    const opened = await Promise.race([waitFor('opened'), after(10_000, { timeout: true })])
    assert.equal(opened.open, 2)
    const send = (seqs) => {
      for (const res of responses) {
        for (const seq of seqs) res.write(`id: 1700000000000-${seq}\nevent: tick\ndata: {"i":${seq},"t":${Date.now()},"p":""}\n\n`)
      }
    }
    send([1, 2])
    // Once both streams have event 2, the client reports it (ackStep 1).
    const progressed = () => new Promise((resolve) => {
      const check = () => (messages.some((m) => m.type === 'progress' && m.upTo === 2) ? resolve(true) : setTimeout(check, 10))
      check()
    })
    assert.equal(await Promise.race([progressed(), after(10_000, false)]), true)
    send([4, 5])
    const result = await Promise.race([waitFor('done'), after(10_000, { timeout: true })])
    assert.equal(result.valid, false)
    assert.match(result.error, /expected id 1700000000000-3, got id 1700000000000-4/)
  } finally {
    client.kill()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('the many-50k client (HTTP/2) marks a row invalid when an event is missing or ids differ between streams', { timeout: 60_000 }, async () => {
  // Two h2c streams; the first skips event 3, and before that the ids must
  // agree: a second run gives stream 2 another id for event 1.
  const { fork } = await import('node:child_process')
  const http2 = await import('node:http2')
  for (const fault of ['skip', 'id']) {
    let n = 0
    const server = http2.createServer((req, res) => {
      const stream = n++
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(': hello\n\n')
      const event = (seq, id = `1700000000000-${seq}`) => res.write(`id: ${id}\nevent: tick\ndata: {"i":${seq},"t":${Date.now()},"p":""}\n\n`)
      setTimeout(() => {
        if (fault === 'skip') for (const seq of [1, 2, 4]) event(seq)
        else event(1, stream === 1 ? '1700000000001-1' : undefined)
      }, 100)
    })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = fork(fileURLToPath(new URL('../benchmark/many50k-client.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    try {
      const messages = []
      client.on('message', (m) => messages.push(m))
      const waitFor = (type) => Promise.race([
        new Promise((resolve) => {
          const check = () => {
            const m = messages.find((m) => m.type === type)
            if (m) resolve(m)
            else setTimeout(check, 10)
          }
          check()
        }),
        after(10_000, { timeout: true }),
      ])
      client.send({ type: 'open', transport: 'h2', port: server.address().port, connections: 1, streamsPerConnection: 2, ackStep: 1, pacedEvents: 1 })
      assert.equal((await waitFor('opened')).open, 2)
      // The whole run would be events 1..4.
      client.send({ type: 'expect', last: 4 })
      const result = await waitFor('done')
      assert.equal(result.valid, false)
      assert.match(result.error, fault === 'skip' ? /expected event 3, got id 1700000000000-4/ : /event 1: id 17000000000\d\d-1 here, 17000000000\d\d-1 on another stream/)
    } finally {
      client.kill()
      await new Promise((resolve) => server.close(resolve))
    }
  }
})
