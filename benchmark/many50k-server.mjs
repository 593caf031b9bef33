// Server of the many-50k scenarios (many50k.mjs): one process holding every
// stream, over HTTP/1.1 (node:http) or cleartext HTTP/2 (node:http2's
// compatibility API, which both libraries take as it is). Each stream keeps
// its library's default heartbeat and joins one channel:
//   native-sse: new SSE(req, res) (keepAlive 15 000 ms), new Channel({ flushWindow: 10 });
//   better-sse: createSession(req, res) (keepAlive 10 000 ms), createChannel().
// argv: <impl> <h1|h2>. Driven over IPC:
//   -> { type: 'ready', port, fdLimit, fdsOpen }
//   <- { type: 'streams' } -> { type: 'streams', count }
//   <- { type: 'memory' }  -> { type: 'memory', heapUsed, rss, external, streams }   after GC
//   <- { type: 'measure', ms } -> { type: 'measured', p50Ms, p99Ms, maxMs, ..., streams }
//        event-loop delay (monitorEventLoopDelay, 1 ms resolution) over `ms`
//   <- { type: 'run', first, paceMs, count }        paced: `count` events, one every paceMs
//   <- { type: 'run', first, durationMs, upTo, burst }   saturated: for durationMs,
//        up to `burst` events per event-loop turn, never past event `upTo`
//        (raised by 'credit')
//   <- { type: 'credit', upTo }
//   -> { type: 'sent', last, cpuMicros, ms }        the run is over; `last` its last event
//   <- { type: 'exit' }
// Events: `tick`, data { i: <seq>, t: <send time, ms>, p: "x..." } (~100 B).
import http from 'node:http'
import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'

import { createChannel, createSession } from 'better-sse'
import { Channel, SSE } from 'native-sse'
import { Credit } from './broadcast-driver.mjs'
import { fileDescriptors, measureLoop, memoryAfterGc } from './server-probes.mjs'


const [implName, transport] = process.argv.slice(2)
const FLUSH_WINDOW_MS = 10
const PAD = 'x'.repeat(60)
const now = () => performance.timeOrigin + performance.now()

// { open(req, res) -> Promise<close()>, broadcast(seq), size() }
const implementations = {
  'native-sse'() {
    const channel = new Channel({ flushWindow: FLUSH_WINDOW_MS })
    return {
      async open(req, res) {
        const sse = new SSE(req, res)
        channel.add(sse)
        return () => sse.close()
      },
      broadcast(seq) {
        channel.broadcast({ eventName: 'tick', eventPayload: { i: seq, t: now(), p: PAD } })
      },
    }
  },
  'better-sse'() {
    const channel = createChannel()
    return {
      async open(req, res) {
        const session = await createSession(req, res)
        channel.register(session)
        return () => res.end()
      },
      broadcast(seq) {
        channel.broadcast({ i: seq, t: now(), p: PAD }, 'tick', { eventId: String(seq) })
      },
    }
  },
}
if (!implementations[implName]) throw new Error(`unknown many-50k implementation ${implName}`)
if (transport !== 'h1' && transport !== 'h2') throw new Error(`unknown transport ${transport}`)
const impl = implementations[implName]()

const streams = new Set() // close functions of the open streams

async function handler(req, res) {
  const close = await impl.open(req, res)
  if (res.destroyed || res.closed) return
  streams.add(close)
  res.on('close', () => streams.delete(close))
}

let server
if (transport === 'h2') {
  // One session carries hundreds of streams: no per-session stream limit
  // below what the clients open, and room for their queued bytes.
  server = http2.createServer({ settings: { maxConcurrentStreams: 100_000, initialWindowSize: 1 << 20 }, maxSessionMemory: 256 }, handler)
  server.on('session', (session) => session.on('error', () => {}))
  server.timeout = 0
} else {
  server = http.createServer(handler)
  server.keepAliveTimeout = 0
  server.requestTimeout = 0
  server.headersTimeout = 0
}


server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
  process.send({ type: 'ready', port: server.address().port, ...fileDescriptors() }))

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function measure(ms) {
  process.send({ type: 'measured', ...(await measureLoop(ms)), streams: streams.size })
}

const credit = new Credit()

async function run({ first, paceMs, count, durationMs, upTo, burst = 1 }) {
  credit.grant(upTo)
  const cpuStart = process.cpuUsage()
  const start = performance.now()
  let seq = first - 1
  if (paceMs) {
    for (let i = 0; i < count; i++) {
      await sleep(paceMs)
      impl.broadcast(++seq)
    }
  } else {
    const end = start + durationMs
    while (performance.now() < end) {
      await nextTurn()
      await credit.until(seq + 1)
      // Up to `burst` events a turn, as many as the credit allows.
      for (let n = Math.min(burst, credit.allowed - seq); n > 0; n--) impl.broadcast(++seq)
    }
  }
  const cpu = process.cpuUsage(cpuStart)
  process.send({ type: 'sent', last: seq, cpuMicros: cpu.user + cpu.system, ms: performance.now() - start })
}

process.on('message', async (message) => {
  switch (message.type) {
    case 'streams':
      process.send({ type: 'streams', count: streams.size })
      break
    case 'memory':
      process.send({ type: 'memory', ...(await memoryAfterGc()), streams: streams.size })
      break
    case 'measure':
      measure(message.ms)
      break
    case 'run':
      run(message).catch((err) => {
        console.error(err)
        process.exit(1)
      })
      break
    case 'credit':
      credit.grant(message.upTo)
      break
    case 'exit':
      process.exit(0) // the kernel closes the sockets
  }
})
