// Server of the broadcast scenarios: one child process per measured row,
// running one broadcast implementation (broadcast-impls.mjs). Driven over IPC
// by bench.mjs:
//   -> { type: 'ready', port }                       once listening
//   <- { type: 'members' } -> { type: 'members', count }
//   <- { type: 'run', first, count, payloadBytes, eventName, upTo, pace, measure }
//        broadcast events first..count, one per event-loop turn
//        (setImmediate), or one per `pace` ms (setTimeout) when pace is
//        given; never past event `upTo` (flow control: bench.mjs raises it
//        as clients report). With `measure`, CPU time and RSS are measured
//        from here (after GC).
//   <- { type: 'credit', upTo }                      raises the limit
//   -> { type: 'sent' }                              every event broadcast
//   <- { type: 'stats' } -> { type: 'stats', cpuMicros, cpuUserMicros, rssBefore, rssPeak, closes, members }
//   <- { type: 'exit' }
// Payloads are { i: <seq>, t: <send time, ms>, p: "xxx..." }; `t` is read
// just before broadcast(), on the clock the clients use.
import http from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'

import { broadcastImplementations } from './broadcast-impls.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const impl = broadcastImplementations[process.argv[2]]
if (!impl) throw new Error(`unknown broadcast implementation ${process.argv[2]}`)
const maxBufferedBytes = process.argv[3] ? Number(process.argv[3]) : undefined

const closes = {} // onClose reasons (native-sse only)
const group = impl.create({ maxBufferedBytes, onClose: (reason) => (closes[reason] = (closes[reason] ?? 0) + 1) })

const server = http.createServer((req, res) => group.open(req, res))
server.keepAliveTimeout = 0
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => process.send({ type: 'ready', port: server.address().port }))

let allowed = 0
let creditWaiter = null
let runStart = null
let rssBefore = 0
let rssPeak = 0
let maxRssBefore = 0
let sampler = null

const now = () => performance.timeOrigin + performance.now()
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function sampleRss() {
  const rss = process.memoryUsage.rss()
  if (rss > rssPeak) rssPeak = rss
}

async function run({ first, count, payloadBytes, eventName, upTo, pace, measure }) {
  if (upTo > allowed) allowed = upTo
  const pad = 'x'.repeat(Math.max(0, payloadBytes - 40))
  if (measure) {
    for (let i = 0; i < 3; i++) {
      gc()
      await nextTurn()
    }
    rssBefore = process.memoryUsage.rss()
    rssPeak = rssBefore
    maxRssBefore = process.resourceUsage().maxRSS * 1024
    sampler = setInterval(sampleRss, 5)
    runStart = process.cpuUsage()
  }
  for (let seq = first; seq <= count; seq++) {
    await (pace ? sleep(pace) : nextTurn())
    while (seq > allowed) await new Promise((resolve) => (creditWaiter = resolve))
    group.broadcast(eventName, { i: seq, t: now(), p: pad }, seq)
  }
  process.send({ type: 'sent' })
}

process.on('message', async (message) => {
  switch (message.type) {
    case 'members':
      process.send({ type: 'members', count: group.size() })
      break
    case 'run':
      run(message).catch((err) => {
        console.error(err)
        process.exit(1)
      })
      break
    case 'credit':
      if (message.upTo > allowed) {
        allowed = message.upTo
        creditWaiter?.()
        creditWaiter = null
      }
      break
    case 'stats': {
      const cpu = process.cpuUsage(runStart)
      clearInterval(sampler)
      sampleRss()
      // The kernel's peak too, in case sampling every 5 ms missed it (only
      // when it rose during the run: before, it may be the startup's peak).
      const maxRss = process.resourceUsage().maxRSS * 1024
      if (maxRss > maxRssBefore && maxRss > rssPeak) rssPeak = maxRss
      process.send({
        type: 'stats',
        cpuMicros: cpu.user + cpu.system,
        cpuUserMicros: cpu.user,
        rssBefore,
        rssPeak,
        closes,
        members: group.size(),
      })
      break
    }
    case 'exit':
      clearInterval(sampler)
      group.close()
      server.closeAllConnections()
      server.close()
      process.exit(0)
  }
})
