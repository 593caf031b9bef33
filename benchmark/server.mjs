// Benchmark server: one child process per measured row, running one
// implementation. Driven over IPC by bench.mjs:
//   -> { type: 'ready', port }                      once listening
//   <- { type: 'run', count, batch, payloadBytes }  send events to the open stream
//   -> { type: 'sent' }                             all events handed over
//   <- { type: 'stats' }  -> { type: 'stats', cpuMicros, maxRssBytes, ... }
//   <- { type: 'memory' } -> { type: 'memory', heapUsed, rss, streams }
import http from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'

import { implementations } from './implementations.mjs'
import { makePayload } from './payload.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const impl = implementations[process.argv[2]]
if (!impl) throw new Error(`unknown implementation ${process.argv[2]}`)

const streams = new Set()
let streamOpened
// { stream, res } of the measured client, once it is open.
const current = new Promise((resolve) => (streamOpened = resolve))
let runStart = null

const server = http.createServer(async (req, res) => {
  const stream = await impl.open(req, res)
  streams.add(stream)
  res.on('close', () => streams.delete(stream))
  if (req.url === '/stream') streamOpened({ stream, res })
})
server.keepAliveTimeout = 0
server.listen(0, '127.0.0.1', () => process.send({ type: 'ready', port: server.address().port }))

function drained(res) {
  if (res.writableLength < 1024 * 1024) return Promise.resolve()
  return new Promise((resolve) => res.once('drain', resolve))
}

async function run({ count, batch, payloadBytes, eventName }) {
  // better-sse opens asynchronously; under valgrind that can take a while.
  const { stream, res } = await current
  runStart = process.cpuUsage()
  let seq = 1
  while (seq <= count) {
    await new Promise((resolve) => setImmediate(resolve))
    await drained(res)
    const end = Math.min(count, seq + batch - 1)
    for (; seq <= end; seq++) stream.send(eventName, makePayload(seq, payloadBytes), seq)
  }
  process.send({ type: 'sent' })
}

process.on('message', async (message) => {
  switch (message.type) {
    case 'run':
      await run(message)
      break
    case 'stats': {
      const cpu = process.cpuUsage(runStart)
      process.send({
        type: 'stats',
        cpuMicros: cpu.user + cpu.system,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
        heapUsed: process.memoryUsage().heapUsed,
      })
      break
    }
    case 'memory': {
      for (let i = 0; i < 4; i++) {
        gc()
        await new Promise((resolve) => setImmediate(resolve))
      }
      const usage = process.memoryUsage()
      process.send({ type: 'memory', heapUsed: usage.heapUsed, rss: usage.rss, external: usage.external, streams: streams.size })
      break
    }
    case 'exit':
      for (const { close } of streams) close()
      process.exit(0)
  }
})
