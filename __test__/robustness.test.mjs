// What a server can rely on under hostile or careless clients: a client
// that stops reading is cut off at `maxBufferedBytes` instead of growing the
// server's memory; thousands of connections that come and go leave no
// timers, listeners or heap behind; heartbeats never split an event and
// never keep the process alive; and no form of `Last-Event-ID` can make the
// constructor throw or be echoed.
import assert from 'node:assert/strict'
import async_hooks from 'node:async_hooks'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import vm from 'node:vm'

import { SSE } from 'native-sse'
import { parseResponse, rawGet, s42Frame, startServer, waitFor } from './helpers.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const KiB = 1024
const MiB = 1024 * 1024

async function fullGc() {
  // napi finalizers run after the collection; give them turns of the loop.
  for (let i = 0; i < 6; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function memory() {
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, offHeap: m.external + m.arrayBuffers }
}

const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`

// ---------------------------------------------------------------------------
// 1. A client that stops reading
// ---------------------------------------------------------------------------

/**
 * Opens a stream for a raw client that sends its request and then never
 * reads, and has the server try to send `plan` bytes of 1, 16 and 64 KiB
 * events, 8 per turn of the loop, whatever `send()` returns. Samples
 * `bufferedBytes` and the process's memory after every call.
 */
async function runStalledClient(options, plan) {
  const sizes = [1 * KiB, 16 * KiB, 64 * KiB]
  const payloads = sizes.map((n) => ({ pad: 'x'.repeat(n) }))
  const largestEvent = Buffer.byteLength(s42Frame(1e9, 'fill', payloads[2]))

  await fullGc()
  const baseline = memory()
  const peak = { ...baseline }
  const result = {
    baseline,
    peak,
    largestEvent,
    attempted: 0,
    acceptedBytes: 0,
    acceptedEvents: 0,
    maxBuffered: 0,
    firstRefusal: null,
    acceptedAfterRefusal: 0,
    throws: [],
    reasons: [],
  }
  let res
  const finished = new Promise((resolve, reject) => {
    result.start = (req, response) => {
      res = response
      const sse = options === undefined ? new SSE(req, res) : new SSE(req, res, options)
      result.sse = sse
      sse.onClose((reason) => result.reasons.push(reason))
      let i = 0
      const turn = () => {
        try {
          for (let k = 0; k < 8 && result.attempted < plan; k++, i++) {
            const payload = payloads[i % payloads.length]
            const bytes = Buffer.byteLength(s42Frame(i + 1, 'fill', payload))
            result.attempted += bytes
            const accepted = sse.send({ eventName: 'fill', eventPayload: payload })
            if (accepted) {
              if (result.firstRefusal !== null) result.acceptedAfterRefusal++
              result.acceptedBytes += bytes
              result.acceptedEvents++
            } else if (result.firstRefusal === null) {
              result.firstRefusal = { attempted: result.attempted, closed: sse.closed }
            }
            result.maxBuffered = Math.max(result.maxBuffered, sse.bufferedBytes)
            const now = memory()
            for (const key of Object.keys(now)) peak[key] = Math.max(peak[key], now[key])
          }
        } catch (err) {
          result.throws.push(err)
        }
        if (result.attempted < plan && result.throws.length === 0) setImmediate(turn)
        else resolve()
      }
      turn()
    }
    setTimeout(() => reject(new Error('the sender did not finish within 20 s')), 20_000).unref()
  })

  const srv = await startServer((req, response) => result.start(req, response))
  const client = net.connect(srv.port, '127.0.0.1')
  try {
    const received = []
    client.on('error', () => {})
    client.pause() // reads at most one high-water mark, then never again
    client.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
    await finished
    // (Without a cut-off there is nothing to wait for: assertCutOff says so.)
    if (result.firstRefusal === null) return result
    await waitFor(() => result.reasons.length > 0, { what: 'onClose' })
    result.res = { destroyed: res.destroyed, writableEnded: res.writableEnded }
    result.sendAfter = result.sse.send({ eventName: 'after', eventPayload: 1 })
    result.bufferedAfter = result.sse.bufferedBytes
    await fullGc()
    result.afterGc = memory()

    // The client catches up: it gets what the kernel held, then the end.
    client.on('data', (data) => received.push(data))
    const clientClosed = new Promise((resolve) => client.on('close', resolve))
    client.resume()
    await Promise.race([clientClosed, sleep(10_000).then(() => Promise.reject(new Error('client never saw the end')))])
    result.received = Buffer.concat(received)
    await sleep(20)
    return result
  } finally {
    client.destroy()
    await srv.close()
  }
}

function assertCutOff(result, cap, plan) {
  assert.deepEqual(result.throws, [], 'send() never throws')
  assert.notEqual(result.firstRefusal, null, `the stream was never cut off (accepted ${mib(result.acceptedBytes)})`)
  assert.equal(result.firstRefusal.closed, true, 'the first refused send() leaves the stream closed')
  assert.equal(result.acceptedAfterRefusal, 0, 'every send() after the cut-off returned false')
  assert.deepEqual(result.reasons, ['overflow'], 'onClose fired once with reason overflow')
  assert.equal(result.sse.closed, true)
  assert.equal(result.sendAfter, false)
  assert.equal(result.bufferedAfter, 0)
  assert.equal(result.res.destroyed, true, 'the response is destroyed, not ended')
  assert.equal(result.res.writableEnded, false)
  assert.ok(
    result.maxBuffered <= cap + result.largestEvent,
    `bufferedBytes peaked at ${result.maxBuffered}, more than the cap ${cap} + one event ${result.largestEvent}`,
  )
  // What the client finally gets is what left the server before the cut:
  // less than was accepted (the queue was dropped), without a clean end.
  assert.ok(result.received.length < result.acceptedBytes, 'the queued bytes were dropped')
  assert.ok(!result.received.subarray(-5).equals(Buffer.from('0\r\n\r\n')), 'no chunked terminator')

  // Memory stays bounded by the cap (plus what the socket itself holds),
  // far below the `plan` bytes the sender tried to push.
  const growth = Object.fromEntries(Object.keys(result.peak).map((key) => [key, result.peak[key] - result.baseline[key]]))
  const detail = `peak growth: rss ${mib(growth.rss)}, heap ${mib(growth.heapUsed)}, off-heap ${mib(growth.offHeap)}; tried ${mib(plan)}, accepted ${mib(result.acceptedBytes)}`
  assert.ok(result.attempted >= plan, 'the sender went through its whole plan')
  assert.ok(result.acceptedBytes < plan / 2, detail)
  assert.ok(growth.offHeap < 2 * cap + 4 * MiB, detail)
  assert.ok(growth.heapUsed < 24 * MiB, detail)
  assert.ok(growth.rss < 48 * MiB, detail)
  // After the cut-off and a GC the queued bytes are gone.
  const offHeapAfter = result.afterGc.offHeap - result.baseline.offHeap
  assert.ok(offHeapAfter < 1 * MiB, `off-heap memory ${mib(offHeapAfter)} above baseline after the cut-off`)
  return detail
}

test('a client that stops reading is cut off at maxBufferedBytes (1 MiB) with reason overflow', async (t) => {
  const cap = 1 * MiB
  const plan = 128 * MiB
  const result = await runStalledClient({ maxBufferedBytes: cap, keepAlive: 0 }, plan)
  t.diagnostic(assertCutOff(result, cap, plan))
})

test('with default options the cut-off is at 4 MiB', async (t) => {
  const cap = 4 * MiB
  const plan = 128 * MiB
  const result = await runStalledClient(undefined, plan)
  t.diagnostic(assertCutOff(result, cap, plan))
  assert.ok(result.maxBuffered > 1 * MiB, `the default cap is above 1 MiB (peak ${result.maxBuffered})`)
})

// ---------------------------------------------------------------------------
// 2. Many connections that come and go
// ---------------------------------------------------------------------------

/** Counts the heartbeat comments in raw (chunked) response bytes. */
function countBeats(text) {
  return text.split(':\n\n').length - 1
}

/**
 * Connects, sends a GET and resolves with the socket once the welcome and at
 * least `beats` heartbeats have arrived.
 */
function connectUntilBeats(port, beats) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no welcome and ${beats} heartbeats within 10 s`))
    }, 10_000)
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('data', (data) => {
      text += data.toString('latin1')
      if (text.includes('event: welcome') && countBeats(text) >= beats) {
        clearTimeout(timer)
        socket.removeAllListeners('data')
        resolve(socket)
      }
    })
    socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  })
}

function listenerCounts(emitter) {
  return Object.fromEntries(emitter.eventNames().map((name) => [String(name), emitter.listenerCount(name)]))
}

test('3000 connect/disconnect cycles with heartbeats: onClose once each, no leaked timers, listeners or heap', { timeout: 60_000 }, async (t) => {
  const KEEP_ALIVE = 7 // ms; a value nothing else in this process uses
  const WARM_UP = 300
  const TOTAL = 3000
  const BATCH = 100

  // Every heartbeat timer the library creates, until it is cleared or has
  // fired for the last time. The library keeps one timer for all streams
  // (armed for the earliest heartbeat due), never one per connection.
  // (process.getActiveResourcesInfo() does not list unref'd timers.)
  const liveHeartbeats = new Map()
  let heartbeatsCreated = 0
  let mostAlive = 0
  let firing = -1
  const hook = async_hooks.createHook({
    init(asyncId, type, triggerAsyncId, resource) {
      if (type === 'Timeout' && resource._onTimeout?.name === 'sseHeartbeat') {
        liveHeartbeats.set(asyncId, resource)
        heartbeatsCreated++
        // Destroy hooks come a turn late: count the timers that are still
        // armed (not cleared, not fired), this new one included.
        // The timer whose callback is running (it arms the next) has fired.
        let armed = 0
        for (const [id, timer] of liveHeartbeats) if (timer._destroyed !== true && id !== firing) armed++
        mostAlive = Math.max(mostAlive, armed)
      }
    },
    before(asyncId) {
      if (liveHeartbeats.has(asyncId)) firing = asyncId
    },
    after(asyncId) {
      if (firing === asyncId) firing = -1
    },
    destroy(asyncId) {
      liveHeartbeats.delete(asyncId)
    },
  })
  hook.enable()

  let opened = 0
  let serverCloses = 0
  let registered = 0
  // For every other connection (not the control, n = 0): how often its
  // onClose fired (kept in a typed array, so the test's own bookkeeping
  // does not grow the heap), and any reason other than 'client'.
  const fired = new Uint8Array(1 + WARM_UP + TOTAL)
  let firedTotal = 0
  const wrongReasons = []
  const srv = await startServer((req, res) => {
    const n = opened++
    const sse = new SSE(req, res, { keepAlive: KEEP_ALIVE })
    res.on('close', () => serverCloses++)
    if (n % 2 === 1) {
      registered++
      sse.onClose((reason) => {
        fired[n]++
        firedTotal++
        if (reason !== 'client') wrongReasons.push([n, reason])
      })
    }
  })
  const control = rawGet(srv.port, '/control')
  t.after(async () => {
    hook.disable()
    control.close()
    await srv.close()
  })
  await control.waitForBody((body) => body.includes('event: welcome'))

  async function cycle(count) {
    for (let done = 0; done < count; done += BATCH) {
      // Each connection stays open until it has seen a heartbeat.
      const sockets = await Promise.all(
        Array.from({ length: Math.min(BATCH, count - done) }, () => connectUntilBeats(srv.port, 1)),
      )
      for (const socket of sockets) socket.destroy()
    }
  }

  const processListeners = listenerCounts(process)
  const serverListeners = listenerCounts(srv.server)

  await cycle(WARM_UP)
  await waitFor(() => serverCloses === opened - 1, { timeoutMs: 10_000, what: 'warm-up closes' })
  await fullGc()
  const baseline = process.memoryUsage().heapUsed

  await cycle(TOTAL)
  await waitFor(() => serverCloses === opened - 1, { timeoutMs: 20_000, what: 'server-side closes' })
  assert.equal(opened, 1 + WARM_UP + TOTAL)
  await waitFor(() => firedTotal >= registered, { timeoutMs: 5000, what: 'every onClose' })
  await sleep(50) // a second call would come in the next tick; give it time
  assert.equal(firedTotal, registered, 'no onClose fired twice')
  const notOnce = fired.filter((count, n) => count !== (n % 2 === 1 ? 1 : 0)).length
  assert.equal(notOnce, 0, 'every registered onClose fired exactly once')
  assert.deepEqual(wrongReasons, [], 'every onClose got reason client')
  assert.equal(registered, (WARM_UP + TOTAL) / 2)

  // One heartbeat timer for every stream, never more at once; it runs on
  // for the control stream.
  assert.ok(heartbeatsCreated > 0, 'the hook saw the heartbeat timer')
  assert.equal(mostAlive, 1, 'never more than one heartbeat timer at a time')
  await waitFor(() => liveHeartbeats.size <= 1, { timeoutMs: 5000, what: 'heartbeat timers cleared' })
  assert.equal(liveHeartbeats.size, 1, 'the heartbeat timer runs on for the control stream')
  const beatsBefore = countBeats(control.bytes().toString('latin1'))
  await waitFor(() => countBeats(control.bytes().toString('latin1')) > beatsBefore, { what: 'control heartbeat' })

  assert.deepEqual(listenerCounts(process), processListeners, 'no listeners left on process')
  assert.deepEqual(listenerCounts(srv.server), serverListeners, 'no listeners left on the server')

  await fullGc()
  const growth = process.memoryUsage().heapUsed - baseline
  t.diagnostic(`heap growth over ${TOTAL} connections: ${(growth / KiB).toFixed(0)} KiB`)
  assert.ok(growth < 2 * MiB, `heap grew by ${(growth / KiB).toFixed(0)} KiB over ${TOTAL} connections`)

  // Closing the control stream stops the last heartbeat.
  control.close()
  await waitFor(() => liveHeartbeats.size === 0, { timeoutMs: 5000, what: 'control heartbeat cleared' })
})

test('50 streams in a row on one keep-alive socket leave no listeners on the reused socket', async (t) => {
  const STREAMS = 50
  const reasons = []
  const socketListeners = []
  const warnings = []
  const onWarning = (warning) => warnings.push(warning)
  process.on('warning', onWarning)
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 5 })
    const n = reasons.length
    reasons.push([])
    sse.onClose((reason) => reasons[n].push(reason))
    sse.send({ eventName: 'n', eventPayload: n })
    setTimeout(() => {
      sse.close()
      socketListeners.push(listenerCounts(res.socket))
    }, 12)
  })
  const socket = net.connect(srv.port, '127.0.0.1')
  t.after(async () => {
    process.off('warning', onWarning)
    socket.destroy()
    await srv.close()
  })
  let buffered = Buffer.alloc(0)
  socket.on('data', (data) => (buffered = Buffer.concat([buffered, data])))
  for (let i = 0; i < STREAMS; i++) {
    buffered = Buffer.alloc(0)
    socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await waitFor(() => parseResponse(buffered)?.complete, { what: `response ${i}` })
    const body = parseResponse(buffered).body.toString()
    assert.ok(body.includes(s42Frame(1, 'n', i)), `stream ${i} carried its event`)
  }
  await sleep(30)
  assert.equal(socket.destroyed, false, 'the socket was reused, not closed')
  assert.deepEqual(
    reasons,
    Array.from({ length: STREAMS }, () => ['server']),
    'onClose fired once per stream, with reason server',
  )
  assert.equal(socketListeners.length, STREAMS)
  assert.deepEqual(socketListeners.at(-1), socketListeners[1], 'same listeners on the socket after stream 2 and 50')
  assert.deepEqual(warnings, [], 'no MaxListenersExceededWarning or other warning')
})

// ---------------------------------------------------------------------------
// 3. Heartbeats
// ---------------------------------------------------------------------------

/**
 * Checks that `body` is exactly `expectedEvents` in order with nothing but
 * heartbeat comments (`:` and a blank line) between them. Returns the
 * number of heartbeats.
 */
function checkHeartbeatsBetweenEvents(body, expectedEvents) {
  const blocks = body.split('\n\n')
  assert.equal(blocks.pop(), '', 'the body ends with a complete block')
  let beats = 0
  let next = 0
  let offset = 0
  for (const block of blocks) {
    if (block === ':') {
      beats++
    } else {
      const expected = expectedEvents[next]
      assert.ok(expected !== undefined, `unexpected block at byte ${offset}: ${JSON.stringify(block.slice(0, 80))}`)
      assert.equal(block + '\n\n', expected, `event ${next} at byte ${offset} is whole and unchanged`)
      next++
    }
    offset += block.length + 2
  }
  assert.equal(next, expectedEvents.length, 'every event arrived')
  return beats
}

test('the checker catches a heartbeat inside an event', () => {
  const events = ['id: 1\nevent: e\ndata: a\ndata: b\n\n']
  assert.equal(checkHeartbeatsBetweenEvents(':\n\nid: 1\nevent: e\ndata: a\ndata: b\n\n:\n\n', events), 2)
  assert.throws(() => checkHeartbeatsBetweenEvents('id: 1\nevent: e\n:\n\ndata: a\ndata: b\n\n', events))
  assert.throws(() => checkHeartbeatsBetweenEvents('id: 1\nevent: e\ndata: a\n:\n\ndata: b\n\n', events))
})

test('heartbeats (keepAlive: 50) land only between complete events while events stream', async (t) => {
  let sse
  const srv = await startServer((req, res) => {
    sse = new SSE(req, res, { keepAlive: 50, welcome: false })
  })
  const client = rawGet(srv.port, '/events')
  t.after(async () => {
    client.close()
    await srv.close()
  })
  await waitFor(() => sse !== undefined && client.response() !== null, { what: 'stream open' })

  // Small JSON events, multi-line raw events and, now and then, an event
  // larger than the library's 128 KiB write threshold, several per turn.
  const multiLine = Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n')
  const large = 'L'.repeat(200 * KiB)
  const expected = []
  const beatsSoFar = () => countBeats(client.response()?.body.toString('latin1') ?? '')
  const deadline = Date.now() + 10_000
  let turns = 0
  while ((beatsSoFar() < 5 || turns < 100) && Date.now() < deadline) {
    turns++
    const perTurn = 1 + (turns % 3)
    for (let k = 0; k < perTurn; k++) {
      const id = expected.length + 1
      if (turns % 25 === 0 && k === 0) {
        sse.send({ eventName: 'large', data: large })
        expected.push(`id: ${id}\nevent: large\ndata: ${large}\n\n`)
      } else if (k === 1) {
        sse.send({ eventName: 'lines', data: multiLine })
        expected.push(`id: ${id}\nevent: lines\n${multiLine.split('\n').map((l) => `data: ${l}`).join('\n')}\n\n`)
      } else {
        sse.send({ eventName: 'tick', eventPayload: { id, turns } })
        expected.push(s42Frame(id, 'tick', { id, turns }))
      }
    }
    await sleep(2)
  }
  sse.close()
  const response = await client.waitForBody((_, parsed) => parsed.complete, { timeoutMs: 10_000 })
  const beats = checkHeartbeatsBetweenEvents(response.body.toString('latin1'), expected)
  t.diagnostic(`${expected.length} events, ${beats} heartbeats in ${turns} turns`)
  assert.ok(beats >= 5, `heartbeats arrived while events were sent (${beats})`)
})

test('keepAlive: 0 sends no heartbeat (a keepAlive: 20 stream alongside gets several)', async (t) => {
  const streams = {}
  const srv = await startServer((req, res) => {
    const keepAlive = req.url === '/off' ? 0 : 20
    streams[req.url] = new SSE(req, res, { keepAlive })
  })
  const off = rawGet(srv.port, '/off')
  const on = rawGet(srv.port, '/on')
  t.after(async () => {
    off.close()
    on.close()
    await srv.close()
  })
  await off.waitForBody((body) => body.endsWith('\n\n'))
  await on.waitForBody((body) => body.includes('event: welcome'))
  const started = Date.now()
  await on.waitForBody((body) => countBeats(body) >= 3, { what: 'heartbeats on the keepAlive: 20 stream' })
  await sleep(Math.max(0, 300 - (Date.now() - started)))
  assert.equal(off.response().body.toString(), s42Frame(0, 'welcome', { uuid: streams['/off'].getUUID() }))
  assert.equal(streams['/off'].closed, false)
})

function runHeartbeatChild(mode, { waitAfterRelease }) {
  const script = fileURLToPath(new URL('./fixtures/heartbeat-exit.mjs', import.meta.url))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, mode], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let stillRunning = null
    const kill = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child ${mode} never got its heartbeats: ${stdout} ${stderr}`))
    }, 15_000)
    child.stdout.on('data', (d) => {
      stdout += d
      if (stillRunning === null && stdout.includes('released')) {
        stillRunning = setTimeout(() => {
          stillRunning = 'killed'
          child.kill('SIGKILL')
        }, waitAfterRelease)
      }
    })
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code, signal) => {
      clearTimeout(kill)
      const killed = stillRunning === 'killed'
      if (!killed && stillRunning !== null) clearTimeout(stillRunning)
      resolve({ code, signal, stdout, stderr, killed })
    })
  })
}

test('the heartbeat timer does not keep the process alive (control: a ref\'d timer does)', async () => {
  const [unref, control] = await Promise.all([
    runHeartbeatChild('unref', { waitAfterRelease: 10_000 }),
    runHeartbeatChild('ref-heartbeat', { waitAfterRelease: 1500 }),
  ])
  assert.equal(unref.killed, false, `the process exited by itself: ${unref.stdout}${unref.stderr}`)
  assert.equal(unref.code, 0, unref.stderr)
  assert.match(unref.stdout, /released closed=false timer-found=true/)
  assert.match(unref.stdout, /exit code=0 beats=\d+ closed=false/, 'it exited with the stream still open')

  assert.match(control.stdout, /released closed=false timer-found=true/)
  assert.equal(control.killed, true, 'with the heartbeat timer ref\'d, the process stays alive')
})

// ---------------------------------------------------------------------------
// 4. Hostile Last-Event-ID values
// ---------------------------------------------------------------------------

/**
 * A server recording, for each request, what the constructor did with it.
 * `useFakeRequest` lets a test hand the constructor request objects that
 * Node's HTTP parser would never produce.
 */
async function startIdServer() {
  const seen = []
  let fakeRequest = null
  const srv = await startServer((req, res) => {
    const entry = { url: req.url, lastEventId: undefined, error: null }
    seen.push(entry)
    try {
      const sse = new SSE(fakeRequest ?? req, res, { keepAlive: 0 })
      entry.lastEventId = sse.lastEventId
      sse.send({ eventName: 'seen', eventPayload: { ok: true } })
      sse.close()
    } catch (err) {
      entry.error = err
      res.destroy()
    }
  })
  srv.seen = seen
  srv.useFakeRequest = (req) => (fakeRequest = req)
  return srv
}

/** Sends raw request bytes and resolves with the whole raw response. */
function rawRequest(port, target, headerValue) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const received = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('no complete response within 5 s'))
    }, 5000)
    const finish = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(Buffer.concat(received))
    }
    socket.on('data', (data) => {
      received.push(data)
      const parsed = parseResponse(Buffer.concat(received))
      if (parsed && (parsed.complete || parsed.status !== 200)) finish()
    })
    socket.on('close', finish)
    socket.on('error', () => {})
    const parts = [Buffer.from('GET '), Buffer.from(target, 'latin1'), Buffer.from(' HTTP/1.1\r\nHost: 127.0.0.1\r\n')]
    if (headerValue !== undefined) {
      parts.push(Buffer.from('Last-Event-ID: '), Buffer.from(headerValue, 'latin1'), Buffer.from('\r\n'))
    }
    parts.push(Buffer.from('\r\n'))
    socket.write(Buffer.concat(parts))
  })
}

const accepted128 = Array.from({ length: 128 }, (_, i) => String.fromCharCode(0x21 + (i % 94))).join('')
const EVIL = 'EVIL-7f3a' // a marker that must never come back

test('hostile Last-Event-ID headers: null, no throw, never echoed', async (t) => {
  const srv = await startIdServer()
  t.after(() => srv.close())
  const cases = [
    ['8 KiB long', EVIL + 'a'.repeat(8 * KiB)],
    ['129 characters', EVIL + 'a'.repeat(129 - EVIL.length)],
    ['latin1 byte 0xE9', `${EVIL}caf\xE9`],
    ['UTF-8 é (Node reads it as latin1 Ã©)', Buffer.from(`${EVIL}café`, 'utf8').toString('latin1')],
    ['UTF-8 emoji', Buffer.from(`${EVIL}😀`, 'utf8').toString('latin1')],
    ['tab', `${EVIL}\tx`],
    ['inner space', `${EVIL} x`],
    ['empty', ''],
    ['only spaces', '   '],
  ]
  for (const [name, value] of cases) {
    const before = srv.seen.length
    const raw = await rawRequest(srv.port, '/events', value)
    const response = parseResponse(raw)
    assert.equal(response.status, 200, name)
    assert.equal(srv.seen.length, before + 1, `${name}: handler ran`)
    const entry = srv.seen.at(-1)
    assert.equal(entry.error, null, `${name}: the constructor did not throw`)
    assert.equal(entry.lastEventId, null, `${name}: lastEventId is null`)
    if (value.trim() !== '') {
      assert.ok(!raw.includes(Buffer.from(value, 'latin1')), `${name}: the value is not echoed`)
      assert.ok(!raw.includes(Buffer.from(EVIL)), `${name}: the marker is not echoed`)
    }
    assert.ok(response.body.toString().includes('event: seen'), `${name}: the stream works`)
  }
  // Control characters that Node's parser refuses itself (400, no handler).
  for (const [name, value] of [['DEL', `${EVIL}\x7F`], ['NUL', `${EVIL}\0`], ['CR', `${EVIL}\rdata: x`]]) {
    const before = srv.seen.length
    const raw = await rawRequest(srv.port, '/events', value)
    const response = parseResponse(raw)
    if (srv.seen.length === before) {
      assert.equal(response.status, 400, `${name}: refused by Node's parser`)
    } else {
      assert.equal(srv.seen.at(-1).error, null, name)
      assert.equal(srv.seen.at(-1).lastEventId, null, name)
    }
    assert.ok(!raw.includes(Buffer.from(EVIL)), `${name}: not echoed`)
  }
})

test('hostile lastEventId query parameters: null, no throw, never echoed', async (t) => {
  const srv = await startIdServer()
  t.after(() => srv.close())
  const q = (value) => `/events?topic=a&lastEventId=${value}`
  const cases = [
    ['8 KiB long', q(EVIL + 'a'.repeat(8 * KiB))],
    ['129 characters', q(EVIL + 'a'.repeat(129 - EVIL.length))],
    ['%E9 (latin1 é)', q(`${EVIL}caf%E9`)],
    ['%C3%A9 (UTF-8 é)', q(`${EVIL}caf%C3%A9`)],
    ['%F0%9F%98%80 (emoji)', q(`${EVIL}%F0%9F%98%80`)],
    ['%0D%0A (CRLF)', q(`${EVIL}%0D%0Adata:%20x`)],
    ['%0A (LF)', q(`${EVIL}%0Ax`)],
    ['%00 (NUL)', q(`${EVIL}%00`)],
    ['%7F (DEL)', q(`${EVIL}%7F`)],
    ['%09 (tab)', q(`${EVIL}%09x`)],
    ['%20 (space)', q(`${EVIL}%20x`)],
    ['+ (form-encoded space)', q(`${EVIL}+x`)],
    ['empty', q('')],
    ['malformed escape %ZZ', q(`${EVIL}%ZZ`)],
    ['truncated escape', q(`${EVIL}%4`)],
  ]
  for (const [name, target] of cases) {
    const before = srv.seen.length
    const raw = await rawRequest(srv.port, target)
    const response = parseResponse(raw)
    assert.equal(response.status, 200, name)
    assert.equal(srv.seen.length, before + 1, `${name}: handler ran`)
    const entry = srv.seen.at(-1)
    assert.equal(entry.error, null, `${name}: the constructor did not throw`)
    assert.equal(entry.lastEventId, null, `${name}: lastEventId is null`)
    assert.ok(!raw.includes(Buffer.from(EVIL)), `${name}: the value is not echoed`)
    assert.ok(response.body.toString().includes('event: seen'), `${name}: the stream works`)
  }
  // Raw bytes Node's parser refuses in the request target.
  for (const [name, target] of [['raw é', q(`${EVIL}caf\xE9`)], ['raw tab', q(`${EVIL}\tx`)], ['raw DEL', q(`${EVIL}\x7F`)]]) {
    const before = srv.seen.length
    const raw = await rawRequest(srv.port, target)
    if (srv.seen.length === before) assert.equal(parseResponse(raw).status, 400, name)
    else assert.equal(srv.seen.at(-1).lastEventId, null, name)
    assert.ok(!raw.includes(Buffer.from(EVIL)), `${name}: not echoed`)
  }
})

test('accepted Last-Event-ID forms come through; the header wins over the query', async (t) => {
  const srv = await startIdServer()
  t.after(() => srv.close())
  const cases = [
    ['header 42', '/events', '42', '42'],
    ['header redis stream id', '/events', '1526919030474-55', '1526919030474-55'],
    ['header, exactly 128 visible characters', '/events', accepted128, accepted128],
    ['header with surrounding spaces (HTTP trims them)', '/events', '  42  ', '42'],
    ['query 42', '/events?lastEventId=42', undefined, '42'],
    ['query redis stream id', '/events?x=1&lastEventId=1526919030474-55#frag', undefined, '1526919030474-55'],
    ['query, 128 characters percent-encoded', `/events?lastEventId=${encodeURIComponent(accepted128)}`, undefined, accepted128],
    ['query, the first parameter counts', '/events?lastEventId=1&lastEventId=2', undefined, '1'],
    ['header and query: the header wins', '/events?lastEventId=9', '7', '7'],
    ['invalid header is absent: the query counts', '/events?lastEventId=9', 'a b', '9'],
    ['neither', '/events', undefined, null],
  ]
  for (const [name, target, header, expected] of cases) {
    const raw = await rawRequest(srv.port, target, header)
    assert.equal(parseResponse(raw).status, 200, name)
    const entry = srv.seen.at(-1)
    assert.equal(entry.error, null, name)
    assert.equal(entry.lastEventId, expected, name)
    if (expected !== null && expected.length > 8) {
      assert.ok(!raw.includes(Buffer.from(expected)), `${name}: the id is not echoed`)
    }
  }
})

test('request objects Node would never produce: the constructor does not throw, lastEventId is null', async (t) => {
  const srv = await startIdServer()
  t.after(() => srv.close())
  const fake = (headers, url = '/events') => ({ headers, url, httpVersionMajor: 1, httpVersionMinor: 1 })
  const cases = [
    ['NUL in the header', fake({ 'last-event-id': `${EVIL}\0` })],
    ['CR LF in the header', fake({ 'last-event-id': `${EVIL}\r\ndata: x` })],
    ['DEL in the header', fake({ 'last-event-id': `${EVIL}\x7F` })],
    ['lone surrogate in the header', fake({ 'last-event-id': `${EVIL}\uD800` })],
    ['1 MiB header', fake({ 'last-event-id': EVIL + 'a'.repeat(MiB) })],
    ['1 MiB query', fake({}, `/events?lastEventId=${EVIL}${'a'.repeat(MiB)}`)],
    ['header is an array', fake({ 'last-event-id': ['1', '2'] })],
    ['header is a number', fake({ 'last-event-id': 42 })],
    ['no headers object', { url: '/events?lastEventId=%00' }],
    ['url is not a string', fake({}, 42)],
  ]
  for (const [name, req] of cases) {
    srv.useFakeRequest(req)
    const raw = await rawRequest(srv.port, '/events')
    const entry = srv.seen.at(-1)
    assert.equal(entry.error, null, `${name}: the constructor did not throw`)
    assert.equal(entry.lastEventId, null, `${name}: lastEventId is null`)
    assert.equal(parseResponse(raw).status, 200, name)
    assert.ok(!raw.includes(Buffer.from(EVIL)), `${name}: not echoed`)
  }
  srv.useFakeRequest(fake({ 'last-event-id': '1526919030474-55' }))
  await rawRequest(srv.port, '/events')
  assert.equal(srv.seen.at(-1).lastEventId, '1526919030474-55', 'a fake request with a good id still works')
})
