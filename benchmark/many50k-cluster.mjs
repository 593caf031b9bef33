// The cluster server of the many-50k-cluster scenario (many50k.mjs):
// `node:cluster` with W workers (argv: <workers> <redisUrl> <stream> <h1|h2>),
// all listening on one port (the primary hands each new connection to a
// worker in turn). Each worker holds its share of the streams
// (`new SSE(req, res)`, default heartbeat) in one Redis-backed channel:
// `new Channel({ redis, stream, maxLen, flushWindow: 10 })` with its own
// ioredis client, all on the same Redis stream. The primary broadcasts
// through a channel of its own on that stream (no members): each event is
// one XADD, and every worker reads it back (XREAD BLOCK) and writes it to
// its members.
//
// The primary speaks many50k-server.mjs's IPC protocol to the orchestrator:
// ready, streams (the sum over the workers), memory (the sum, after GC in
// each), run/credit/sent (broadcasts from the primary), exit. `sent` also
// waits for every XADD to be acknowledged.
import cluster from 'node:cluster'
import http from 'node:http'
import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import v8 from 'node:v8'
import vm from 'node:vm'

import Redis from 'ioredis'
import { Channel, SSE } from 'native-sse'

import { Credit } from './broadcast-driver.mjs'

const [workersArg, redisUrl, streamKey, transport] = process.argv.slice(2)
const MAX_LEN = 10_000
const FLUSH_WINDOW_MS = 10
const PAD = 'x'.repeat(60)
const now = () => performance.timeOrigin + performance.now()
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

if (cluster.isPrimary) await primary()
else await worker()

async function worker() {
  const redis = new Redis(redisUrl, { lazyConnect: false })
  const channel = new Channel({ redis, stream: streamKey, maxLen: MAX_LEN, flushWindow: FLUSH_WINDOW_MS })
  let streams = 0
  const handler = (req, res) => {
    const sse = new SSE(req, res)
    if (!channel.add(sse)) return
    streams++
    sse.onClose(() => streams--)
  }
  const server = transport === 'h2'
    ? http2.createServer({ settings: { maxConcurrentStreams: 100_000, initialWindowSize: 1 << 20 }, maxSessionMemory: 256 }, handler)
    : http.createServer(handler)
  if (transport === 'h2') server.on('session', (session) => session.on('error', () => {}))
  else server.keepAliveTimeout = 0
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
  process.on('message', async (message) => {
    if (message.type === 'streams') process.send({ type: 'streams', count: streams })
    else if (message.type === 'memory') {
      for (let i = 0; i < 4; i++) {
        gc()
        await nextTurn()
      }
      const usage = process.memoryUsage()
      process.send({ type: 'memory', heapUsed: usage.heapUsed, rss: usage.rss, external: usage.external })
    } else if (message.type === 'exit') {
      channel.close()
      redis.disconnect()
      process.exit(0)
    }
  })
}

async function primary() {
  const count = Number(workersArg)
  const workers = []
  let port = null
  const listening = []
  for (let i = 0; i < count; i++) {
    const w = cluster.fork()
    workers.push(w)
    listening.push(new Promise((resolve, reject) => {
      w.once('listening', (address) => resolve(address.port))
      w.once('exit', (code) => reject(new Error(`worker exited (${code}) before listening`)))
    }))
  }
  cluster.on('exit', (w, code, signal) => {
    if (!exiting) {
      console.error(`cluster worker ${w.process.pid} exited (${code ?? signal})`)
      process.exit(1)
    }
  })
  let exiting = false
  const ports = await Promise.all(listening)
  port = ports[0]
  if (ports.some((p) => p !== port)) throw new Error(`workers listen on different ports: ${ports.join(', ')}`)

  // One question to every worker, the answers together.
  const ask = (type) => Promise.all(workers.map((w) => new Promise((resolve) => {
    const on = (m) => {
      if (m.type !== type) return
      w.off('message', on)
      resolve(m)
    }
    w.on('message', on)
    w.send({ type })
  })))

  const redis = new Redis(redisUrl)
  const channel = new Channel({ redis, stream: streamKey, maxLen: MAX_LEN })
  const credit = new Credit()
  let failed = null
  const pending = new Set()

  const broadcast = (seq) => {
    const p = channel.broadcast({ eventName: 'tick', eventPayload: { i: seq, t: now(), p: PAD } })
    pending.add(p)
    p.then(() => pending.delete(p), (err) => {
      pending.delete(p)
      failed ??= err
    })
  }

  async function run({ first, paceMs, count: events, durationMs, upTo, burst = 1 }) {
    credit.grant(upTo)
    const start = performance.now()
    let seq = first - 1
    if (paceMs) {
      for (let i = 0; i < events; i++) {
        await sleep(paceMs)
        broadcast(++seq)
      }
    } else {
      const end = start + durationMs
      while (performance.now() < end) {
        await nextTurn()
        await credit.until(seq + 1)
        for (let n = Math.min(burst, credit.allowed - seq); n > 0; n--) broadcast(++seq)
      }
    }
    await Promise.allSettled([...pending])
    if (failed) throw failed
    process.send({ type: 'sent', last: seq, ms: performance.now() - start })
  }

  process.on('message', async (message) => {
    switch (message.type) {
      case 'streams': {
        const answers = await ask('streams')
        process.send({ type: 'streams', count: answers.reduce((sum, a) => sum + a.count, 0), perWorker: answers.map((a) => a.count) })
        break
      }
      case 'memory': {
        const answers = await ask('memory')
        const sum = (key) => answers.reduce((total, a) => total + a[key], 0)
        process.send({ type: 'memory', heapUsed: sum('heapUsed'), rss: sum('rss'), external: sum('external') })
        break
      }
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
        exiting = true
        for (const w of workers) w.send({ type: 'exit' })
        await Promise.race([
          Promise.all(workers.map((w) => new Promise((resolve) => (w.isDead() ? resolve() : w.once('exit', resolve))))),
          sleep(2000),
        ])
        for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL')
        channel.close()
        redis.disconnect()
        process.exit(0)
    }
  })
  // If the orchestrator goes away, take the workers along.
  process.on('disconnect', () => {
    exiting = true
    for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL')
    process.exit(1)
  })
  process.send({ type: 'ready', port, fdLimit: null, fdsOpen: null })
}
