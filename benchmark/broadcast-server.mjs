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
// just before broadcast(), on the clock the clients use. The protocol's
// server side is broadcast-driver.mjs, shared with fetch-server.mjs.
import http from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'

import { broadcastDriver } from './broadcast-driver.mjs'
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

process.on(
  'message',
  broadcastDriver({
    group,
    gc,
    closes,
    onExit: () => {
      server.closeAllConnections()
      server.close()
    },
  }),
)
