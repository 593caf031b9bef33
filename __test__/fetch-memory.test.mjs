// Fetch-form streams that end hold nothing: whether the client leaves (the
// body is cancelled, or the request's signal aborts) or the server closes
// them, in a channel or not, their SSE, Request and Response objects are
// collected, the process counts no open stream, and the heap returns to its
// baseline after GC.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'

import { Channel, metrics, SSE } from 'native-sse'
import { waitFor } from './helpers.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

async function fullGc() {
  // Finalizers run after the collection; give them turns of the loop.
  for (let i = 0; i < 6; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const TOTAL = 6000
const BATCH = 200
const ENDS = ['cancel', 'abort', 'close']

/** Opens one stream, reads its first event, then ends it the way `end` says. */
async function cycleOne(n, channel, sampled) {
  const controller = new AbortController()
  const request = new Request('http://127.0.0.1/events', { signal: controller.signal })
  const sse = new SSE(request, { keepAlive: 0 })
  if (channel !== null) channel.add(sse)
  sse.send({ eventName: 'tick', eventPayload: { n } })
  const response = sse.getResponse()
  const closed = new Promise((resolve) => sse.onClose(resolve))
  const reader = response.body.getReader()
  const first = await reader.read()
  assert.equal(first.done, false)
  const end = ENDS[n % ENDS.length]
  if (end === 'cancel') await reader.cancel()
  else if (end === 'abort') controller.abort()
  else {
    sse.close()
    while (!(await reader.read()).done);
  }
  if (n % 100 === 0) sampled.push({ sse: new WeakRef(sse), request: new WeakRef(request), response: new WeakRef(response) })
  return closed
}

async function cycle(from, count, channel, sampled, reasons) {
  for (let done = 0; done < count; done += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, count - done) }, (_, i) => cycleOne(from + done + i, (from + done + i) % 2 === 0 ? channel : null, sampled))
    for (const reason of await Promise.all(batch)) reasons[reason] = (reasons[reason] ?? 0) + 1
  }
}

test(`${TOTAL} Fetch-form streams opened and ended leave nothing behind`, { timeout: 180_000 }, async () => {
  const channel = new Channel({ historyEvents: 10 })
  const sampled = []
  const reasons = {}
  const openAtStart = metrics().streams.open
  // Warm up (JIT, pools, lazy allocations), then take the baseline.
  await cycle(0, 1200, channel, [], {})
  await fullGc()
  const baseline = process.memoryUsage().heapUsed

  await cycle(1200, TOTAL, channel, sampled, reasons)
  await waitFor(() => metrics().streams.open === openAtStart, { what: 'every stream to be counted closed', timeoutMs: 10_000 })
  assert.equal(channel.size, 0, 'no member left in the channel')
  assert.deepEqual(reasons, { client: (TOTAL * 2) / 3, server: TOTAL / 3 })
  await fullGc()
  const growth = process.memoryUsage().heapUsed - baseline
  const alive = sampled.filter((s) => s.sse.deref() || s.request.deref() || s.response.deref()).length
  assert.equal(alive, 0, `${alive} of ${sampled.length} sampled streams still reachable after GC`)
  // A stream kept alive (its sink, body controller, Response and Request)
  // costs several KiB: tens of MB here.
  assert.ok(growth < 2 * 1024 * 1024, `heap grew by ${(growth / 1024).toFixed(0)} KiB over ${TOTAL} streams`)
  channel.close()
})
