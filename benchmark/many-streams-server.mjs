// Server of the many-streams scenario (many-streams.mjs): one child process
// per measured row holding thousands of idle SSE streams, each with a
// heartbeat every `keepAlive` ms. Driven over IPC by bench.mjs:
//   -> { type: 'ready', port, fdLimit, fdsOpen }    once listening
//   <- { type: 'streams' } -> { type: 'streams', count }
//   <- { type: 'memory' }  -> { type: 'memory', heapUsed, rss, external, streams }   after GC
//   <- { type: 'measure', ms }
//        event-loop delay over `ms` (monitorEventLoopDelay, resolution 1 ms)
//   -> { type: 'measured', p50Ms, p99Ms, maxMs, meanMs, minMs, samples, utilization, cpuUserMicros, cpuSystemMicros, ms, streams }
//        (utilization: performance.eventLoopUtilization() over the window)
//   <- { type: 'exit' }
//
// Implementations (argv[2]), with argv[3] the heartbeat period in ms:
//   raw:        hand-written: writeHead, and one setInterval per connection
//               writing the comment ':\n\n';
//   better-sse: createSession(req, res, { keepAlive });
//   native-sse: new SSE(req, res, { keepAlive }).
import http from 'node:http'

import { createSession } from 'better-sse'
import { SSE } from 'native-sse'
import { fileDescriptors, measureLoop, memoryAfterGc } from './server-probes.mjs'


const HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' }
const keepAlive = Number(process.argv[3])
if (!(keepAlive > 0)) throw new Error(`bad heartbeat period ${process.argv[3]}`)

// open(req, res) -> Promise<close()>
const implementations = {
  raw: {
    async open(req, res) {
      res.writeHead(200, HEADERS)
      res.flushHeaders()
      const timer = setInterval(() => res.write(':\n\n'), keepAlive)
      res.on('close', () => clearInterval(timer))
      return () => res.end()
    },
  },
  'better-sse': {
    async open(req, res) {
      await createSession(req, res, { keepAlive })
      return () => res.end()
    },
  },
  'native-sse': {
    async open(req, res) {
      const sse = new SSE(req, res, { keepAlive })
      return () => sse.close()
    },
  },
}

const impl = implementations[process.argv[2]]
if (!impl) throw new Error(`unknown many-streams implementation ${process.argv[2]}`)

const streams = new Set() // close functions of the open streams (held, as an application would)

const server = http.createServer(async (req, res) => {
  const close = await impl.open(req, res)
  if (res.destroyed) return
  streams.add(close)
  res.on('close', () => streams.delete(close))
})
server.keepAliveTimeout = 0
server.requestTimeout = 0
server.headersTimeout = 0

/** The soft limit on open files, and the descriptors open now (Linux; null elsewhere). */

server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
  process.send({ type: 'ready', port: server.address().port, ...fileDescriptors() }))


async function measure(ms) {
  process.send({ type: 'measured', ...(await measureLoop(ms)), streams: streams.size })
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
    case 'exit':
      process.exit(0) // the kernel closes the sockets
  }
})
