// The Fetch-form scenarios of bench.mjs: native-sse's `new SSE(request)` +
// `getResponse()` next to Hono's `streamSSE` and better-sse's Fetch mode
// (`createResponse`), all three on the same server in a row: Bun.serve
// (the server process run by node_modules/.bin/bun) or Node with
// @hono/node-server. The server is fetch-server.mjs, the implementations
// fetch-impls.mjs; the load clients are the Node processes of the other
// scenarios (client.mjs for a burst, broadcast-client.mjs for a broadcast),
// which check every event.
//
// A burst row is measured as bench.mjs's stream rows are: the client
// connects (the row goes on once the server has the stream open), then the
// server sends `count` events, `batch` per event-loop
// turn; events/s is the count over the time from the start command to the
// last event at the client, server CPU is process.cpuUsage() of the server
// process (every thread of it, in Bun as in Node) over the same span. The
// events are numbered from 0 (native-sse's Fetch form numbers from 0; the
// others are given the same ids).
//
// A broadcast row is broadcast.mjs's row with this server.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { measureBroadcast } from './broadcast.mjs'
import { child } from './child.mjs'

const here = dirname(fileURLToPath(import.meta.url))
/** The Bun of the devDependencies (`bun` on npm). */
export const BUN = join(here, '..', 'node_modules', '.bin', 'bun')

/** How fetch-server.mjs is started for `runtime` ('bun' or 'node'). */
function serverOf(runtime, mode, opts) {
  if (runtime === 'bun') return { script: 'fetch-server.mjs', argv: [mode], execArgv: [], execPath: BUN }
  if (runtime === 'node') return { script: 'fetch-server.mjs', argv: [mode], execArgv: opts.serverNodeArgs }
  throw new Error(`unknown runtime ${runtime}`)
}

export async function measureFetchStream(impl, scenario, opts) {
  const { script, argv, execArgv, execPath } = serverOf(scenario.runtime, 'stream', opts)
  const server = child(script, [...argv, impl], execArgv, opts.timeoutMs, { execPath })
  const client = child('client.mjs', [], [], opts.timeoutMs)
  try {
    const { port, runtime } = await server.next('ready')
    const eventName = 'tick'
    const first = 0
    client.send({ type: 'stream', port, count: scenario.count, eventName, first })
    // The stream is open at the server (better-sse's session connects a
    // turn after the request). Not the client's 'connected': Bun.serve
    // completes the response head with the body's first chunk.
    await server.next('opened')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const start = performance.now()
    server.send({ type: 'run', count: scenario.count, batch: scenario.batch, payloadBytes: scenario.payloadBytes, eventName, first })
    const done = await client.next('done')
    const seconds = (performance.now() - start) / 1000
    server.send({ type: 'stats' })
    const stats = await server.next('stats')
    if (!done.valid) return { valid: false, error: done.error ?? `received ${done.received} of ${scenario.count}` }
    return {
      valid: true,
      runtime,
      received: done.received,
      eventsPerSec: scenario.count / seconds,
      cpuMicrosPerEvent: stats.cpuMicros / scenario.count,
      userCpuMicrosPerEvent: stats.cpuUserMicros / scenario.count,
      maxRssMB: stats.maxRssBytes / 2 ** 20,
    }
  } catch (err) {
    return { valid: false, error: err.message }
  } finally {
    await Promise.all([client.stop(), server.stop()])
  }
}

export async function measureFetchBroadcast(impl, scenario, opts) {
  return measureBroadcast(impl, scenario, { ...opts, server: serverOf(scenario.runtime, 'broadcast', opts) })
}
