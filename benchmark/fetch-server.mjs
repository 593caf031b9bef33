// Server of the Fetch-form scenarios: one child process per measured row,
// run by Bun (Bun.serve) or by Node (@hono/node-server's adapter, the
// http.Server that `serve()` makes, with a larger listen backlog), with one
// implementation of fetch-impls.mjs. Every implementation of a row runs on
// the same runtime and adapter.
//   bun  benchmark/fetch-server.mjs <stream|broadcast> <impl> [maxBufferedBytes]
//   node benchmark/fetch-server.mjs <stream|broadcast> <impl> [maxBufferedBytes]
//
// `stream` speaks server.mjs's protocol over IPC (ready, run, sent, stats;
// the measured stream is the first request), `broadcast` speaks
// broadcast-server.mjs's (ready, members, run, credit, sent, stats): see
// there. Differences: the server says { type: 'opened' } once the measured
// stream takes events (Bun.serve completes the response head only with the
// body's first chunk, so a client cannot tell before any event); a burst's
// events are numbered from `first` (0 for the Fetch form, whose native ids
// start at 0); and a burst waits while the
// stream holds more than 1 MiB the runtime has not read, checking every
// millisecond (a Fetch body has no 'drain' event; the same wait for every
// implementation).
import { broadcastDriver } from './broadcast-driver.mjs'
import { fetchImplementations } from './fetch-impls.mjs'
import { makePayload } from './payload.mjs'

const isBun = typeof Bun !== 'undefined'
const [mode, name, maxBufferedArg] = process.argv.slice(2)
const impl = fetchImplementations[name]
if (!impl) throw new Error(`unknown Fetch implementation ${name}`)
if (mode !== 'stream' && mode !== 'broadcast') throw new Error(`unknown mode ${mode}`)
const maxBufferedBytes = maxBufferedArg ? Number(maxBufferedArg) : undefined

const gc = isBun
  ? () => Bun.gc(true)
  : await (async () => {
    const v8 = await import('node:v8')
    const vm = await import('node:vm')
    v8.setFlagsFromString('--expose-gc')
    return vm.runInNewContext('gc')
  })()

const QUEUE_LIMIT = 1024 * 1024
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const maxRss = () => process.resourceUsage().maxRSS * 1024

let handler
let onMessage
if (mode === 'stream') {
  let opened
  const current = new Promise((resolve) => (opened = resolve))
  const streams = []
  handler = impl.stream((s) => {
    streams.push(s)
    if (streams.length === 1) process.send({ type: 'opened' })
    opened(s)
  })
  let runStart = null
  const run = async ({ count, batch, payloadBytes, eventName, first }) => {
    const s = await current
    // About one event's bytes, for the implementations that count chunks.
    const eventBytes = payloadBytes + 30
    runStart = process.cpuUsage()
    const last = first + count - 1
    let seq = first
    while (seq <= last) {
      await nextTurn()
      while (s.queuedBytes(eventBytes) > QUEUE_LIMIT) await sleep(1)
      const end = Math.min(last, seq + batch - 1)
      for (; seq <= end; seq++) s.send(eventName, makePayload(seq, payloadBytes), seq)
    }
    process.send({ type: 'sent' })
  }
  onMessage = (message) => {
    switch (message.type) {
      case 'run':
        run(message).catch(crash)
        break
      case 'stats': {
        const cpu = process.cpuUsage(runStart)
        process.send({ type: 'stats', cpuMicros: cpu.user + cpu.system, cpuUserMicros: cpu.user, maxRssBytes: maxRss() })
        break
      }
      case 'exit':
        for (const s of streams) s.close()
        process.exit(0)
    }
  }
} else {
  const group = impl.group({ maxBufferedBytes })
  handler = group
  onMessage = broadcastDriver({ group, gc })
}

function crash(err) {
  console.error(err)
  process.exit(1)
}

process.on('message', onMessage)

if (isBun) {
  // idleTimeout 0: no cut of a quiet stream while the clients connect.
  const server = Bun.serve({ port: 0, hostname: '127.0.0.1', idleTimeout: 0, fetch: (request) => handler.fetch(request) })
  process.send({ type: 'ready', port: server.port, runtime: `bun ${Bun.version}` })
} else {
  const { createAdaptorServer } = await import('@hono/node-server')
  const server = createAdaptorServer({ fetch: (request) => handler.fetch(request) })
  server.keepAliveTimeout = 0
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
    process.send({ type: 'ready', port: server.address().port, runtime: `node ${process.version}` }))
}
