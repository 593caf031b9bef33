// Load client of the many-50k scenarios (many50k.mjs), in its own process;
// the orchestrator spreads the streams over several of them. Speaks
// HTTP/1.1 (one `net` socket per stream, optionally from a given loopback
// source address, so that more than ~28 000 sockets fit in the ephemeral
// port range of one destination) or cleartext HTTP/2 (`http2.connect`,
// `streamsPerConnection` streams on each session). Driven over IPC:
//   <- { type: 'open', transport: 'h1'|'h2', port, connections, streamsPerConnection, localAddress, ackStep, pacedEvents }
//   -> { type: 'opened', open, error }        every response head arrived
//   <- { type: 'mark' }                       heartbeat counts from zero
//   <- { type: 'report' }
//   -> { type: 'report', streams, heartbeats, minHeartbeats, silent, closed, error, cpuMicros }
//   -> { type: 'progress', upTo }             every stream has event `upTo`
//        (sent each time the slowest stream passes the next multiple of `ackStep`)
//   <- { type: 'expect', last }               the broadcasts end at `last`
//   -> { type: 'done', valid, error, received, firstId, lastId, latency, pacedLatency, cpuMicros }
//        every stream has every event 1..last (or a check failed)
//
// Checks, on every stream: the broadcasts (event name `tick`) arrive as
// sequence numbers 1, 2, 3 ... (the `i` at the start of the JSON data),
// each exactly once and in order; each carries an id, the same id for the
// same event on every stream of this process, and ids increase from event
// to event (`<ms>-<n>` ids compared as pairs, plain ids as numbers).
// The orchestrator compares the first and last ids between processes.
// Comments (heartbeats) are counted; the welcome event, `retry:` and a
// native channel's position line (`id:` alone) are not broadcasts.
// Latency: receive time minus the send time `t` in the data (ms on
// performance.timeOrigin's clock, shared by the processes of one machine),
// in histograms of 1 ms buckets, one for events 1..pacedEvents (the paced
// phase) and one for the rest.
import http2 from 'node:http2'
import net from 'node:net'

const OPEN_BATCH = 200 // HTTP/1.1 sockets (or HTTP/2 sessions, see below) opened at a time
const BUCKETS = 120_000 // 1 ms latency buckets: up to 2 minutes
const readBuffer = Buffer.alloc(256 * 1024)
const now = () => performance.timeOrigin + performance.now()

const streams = []
let spec = null
let closed = 0
let error = null
let finished = false
let last = Infinity // the final event, once known
let complete = 0 // streams with every event up to `last`
let ackMark = 0
let behind = 0
let cpuStart = null
const ids = [] // ids[seq]: the id event `seq` carried (the first stream to see it sets it)
const histogram = new Uint32Array(BUCKETS) // the saturated events
const pacedHistogram = new Uint32Array(BUCKETS) // events 1..pacedEvents
const sessions = []

function fail(message) {
  error ??= message
  finish()
}

function finish() {
  if (finished) return
  finished = true
  let received = 0
  for (const s of streams) received += s.received
  const pairs = (h) => {
    const out = []
    for (let i = 0; i < BUCKETS; i++) if (h[i]) out.push(i, h[i])
    return out
  }
  const cpu = process.cpuUsage(cpuStart ?? undefined)
  process.send({
    type: 'done',
    valid: error === null && complete === streams.length,
    error,
    received,
    firstId: ids[1] ?? null,
    lastId: Number.isFinite(last) ? (ids[last] ?? null) : null,
    latency: pairs(histogram),
    pacedLatency: pairs(pacedHistogram),
    cpuMicros: cpu.user + cpu.system,
  })
}

/** -1, 0, 1: `a` before, equal to, after `b` (`<ms>-<n>` or plain numbers). */
function compareIds(a, b) {
  const [am, an = '0'] = a.split('-')
  const [bm, bn = '0'] = b.split('-')
  const d = Number(am) - Number(bm) || Number(an) - Number(bn)
  return Math.sign(d)
}

function setMark() {
  let min = Infinity
  for (const s of streams) if (s.received < min) min = s.received
  // Marks on multiples of ackStep, the same in every client process, so
  // that the slowest stream's progress (and the credit) moves in whole
  // steps.
  ackMark = (Math.floor(min / spec.ackStep) + 1) * spec.ackStep
  behind = 0
  for (const s of streams) if (s.received < ackMark) behind++
  return min
}

function onBlock(s, block, at) {
  if (block.charCodeAt(0) === 58 /* ':' */) {
    s.heartbeats++
    return
  }
  let id = null
  let event = 'message'
  let data = null
  let start = 0
  while (start < block.length) {
    let end = block.indexOf('\n', start)
    if (end === -1) end = block.length
    const colon = block.indexOf(':', start)
    if (colon > start && colon < end) {
      const field = block.slice(start, colon)
      const valueStart = block.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1
      const value = block.slice(valueStart, end)
      if (field === 'data') data = data === null ? value : `${data}\n${value}`
      else if (field === 'id') id = value
      else if (field === 'event') event = value
    }
    start = end + 1
  }
  if (data === null || event !== 'tick') return
  const seq = s.received + 1
  const digits = String(seq)
  if (seq > last) return fail(`extra event after ${last}: ${data.slice(0, 40)}`)
  if (!data.startsWith(`{"i":${digits},`)) return fail(`expected event ${seq}, got id ${id} data ${data.slice(0, 40)}`)
  if (id === null) return fail(`event ${seq} has no id`)
  const known = ids[seq]
  if (known === undefined) {
    if (seq > 1 && ids[seq - 1] !== undefined && compareIds(id, ids[seq - 1]) <= 0) return fail(`event ${seq}: id ${id} not after ${ids[seq - 1]}`)
    ids[seq] = id
  } else if (known !== id) {
    return fail(`event ${seq}: id ${id} here, ${known} on another stream`)
  }
  const t = data.indexOf('"t":')
  if (t !== -1) {
    const ms = at - Number.parseFloat(data.slice(t + 4, data.indexOf(',', t)))
    ;(seq <= spec.pacedEvents ? pacedHistogram : histogram)[Math.min(BUCKETS - 1, Math.max(0, Math.floor(ms)))]++
  }
  s.received = seq
  if (seq === ackMark && --behind === 0) process.send({ type: 'progress', upTo: setMark() })
  if (seq === last && ++complete === streams.length) finish()
}

function onText(s, text, at) {
  const pending = s.pending + text
  let start = 0
  let end
  while ((end = pending.indexOf('\n\n', start)) !== -1) {
    onBlock(s, pending.slice(start, end), at)
    if (finished) return
    start = end + 2
  }
  s.pending = start === 0 ? pending : pending.slice(start)
}

function newStream() {
  const s = { received: 0, heartbeats: 0, pending: '', head: '', remaining: 0, skip: 0, sizeLine: '', socket: null }
  streams.push(s)
  return s
}

/** HTTP/1.1: the head, then the chunked framing, taken off the bytes. */
function onH1Bytes(s, buf, opened) {
  if (finished) return
  const at = now()
  if (s.head !== null) {
    s.head += buf.toString('latin1')
    const end = s.head.indexOf('\r\n\r\n')
    if (end === -1) return
    if (!s.head.startsWith('HTTP/1.1 200')) return opened(new Error(`response: ${s.head.slice(0, s.head.indexOf('\r\n'))}`))
    if (!/\r\ntransfer-encoding: chunked\r\n/i.test(s.head.slice(0, end + 2))) return opened(new Error('response is not chunked'))
    buf = Buffer.from(s.head.slice(end + 4), 'latin1')
    s.head = null
    opened(null)
  }
  let body = ''
  let i = 0
  while (i < buf.length) {
    if (s.remaining > 0) {
      const take = Math.min(s.remaining, buf.length - i)
      body += buf.toString('latin1', i, i + take)
      i += take
      s.remaining -= take
      if (s.remaining === 0) s.skip = 2
    } else if (s.skip > 0) {
      i++
      s.skip--
    } else {
      const c = buf[i++]
      if (c === 10) {
        const size = Number.parseInt(s.sizeLine, 16)
        s.sizeLine = ''
        if (!(size > 0)) return fail(size === 0 ? 'stream ended' : 'bad chunk size')
        s.remaining = size
      } else if (c !== 13) {
        s.sizeLine += String.fromCharCode(c)
      }
    }
  }
  if (body) onText(s, body, at)
}

function connectH1(port, localAddress) {
  return new Promise((resolve, reject) => {
    const s = newStream()
    let open = false
    const opened = (err) => {
      if (err) {
        reject(err)
        socket.destroy()
      } else {
        open = true
        resolve()
      }
    }
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      localAddress,
      onread: { buffer: readBuffer, callback: (n, buf) => onH1Bytes(s, buf.subarray(0, n), opened) },
    })
    s.socket = socket
    socket.on('connect', () => socket.write('GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'))
    socket.on('error', (err) => (open ? (error ??= `socket error: ${err.message}`) : reject(err)))
    socket.on('close', () => {
      if (!open) reject(new Error('closed before the response head'))
      closed++
    })
  })
}

/** HTTP/2: one session with `count` streams; resolves when every head arrived. */
function connectH2(port, count, localAddress) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`, {
      localAddress,
      peerMaxConcurrentStreams: Math.max(100, count),
      maxSessionMemory: 256,
      settings: { initialWindowSize: 1 << 20, maxConcurrentStreams: Math.max(100, count) },
    })
    sessions.push(session)
    let pending = count
    let failed = false
    const bad = (err) => {
      if (!failed) {
        failed = true
        reject(err)
      }
    }
    session.on('error', (err) => (pending > 0 ? bad(err) : (error ??= `session error: ${err.message}`)))
    session.on('close', () => (pending > 0 ? bad(new Error('session closed while opening')) : undefined))
    session.on('connect', () => session.setLocalWindowSize(64 << 20))
    for (let i = 0; i < count; i++) {
      const s = newStream()
      s.head = null
      const req = session.request({ ':path': '/sse', accept: 'text/event-stream' })
      s.socket = req
      let open = false
      req.on('response', (headers) => {
        if (headers[':status'] !== 200) return bad(new Error(`response: ${headers[':status']}`))
        open = true
        if (--pending === 0) resolve()
      })
      req.setEncoding('latin1')
      req.on('data', (text) => finished || onText(s, text, now()))
      req.on('error', (err) => (open ? (error ??= `stream error: ${err.message}`) : bad(err)))
      req.on('close', () => {
        if (!open) bad(new Error('stream closed before the response head'))
        closed++
      })
    }
  })
}

async function open(message) {
  spec = message
  try {
    if (message.transport === 'h2') {
      // Sessions a few at a time, each opening all of its streams at once.
      const batch = Math.max(1, Math.floor(OPEN_BATCH / message.streamsPerConnection))
      for (let done = 0; done < message.connections; done += batch) {
        const n = Math.min(batch, message.connections - done)
        await Promise.all(Array.from({ length: n }, () => connectH2(message.port, message.streamsPerConnection, message.localAddress)))
      }
    } else {
      for (let done = 0; done < message.connections; done += OPEN_BATCH) {
        const n = Math.min(OPEN_BATCH, message.connections - done)
        await Promise.all(Array.from({ length: n }, () => connectH1(message.port, message.localAddress)))
      }
    }
    setMark()
    cpuStart = process.cpuUsage()
    process.send({ type: 'opened', open: streams.length - closed, error })
  } catch (err) {
    process.send({ type: 'opened', open: -1, error: err.message })
  }
}

process.on('message', (message) => {
  switch (message.type) {
    case 'open':
      open(message)
      break
    case 'mark':
      for (const s of streams) s.heartbeats = 0
      break
    case 'report': {
      let heartbeats = 0
      let minHeartbeats = Infinity
      let silent = 0
      for (const s of streams) {
        heartbeats += s.heartbeats
        if (s.heartbeats < minHeartbeats) minHeartbeats = s.heartbeats
        if (s.heartbeats === 0) silent++
      }
      const cpu = process.cpuUsage(cpuStart ?? undefined)
      process.send({ type: 'report', streams: streams.length, heartbeats, minHeartbeats, silent, closed, error, cpuMicros: cpu.user + cpu.system })
      break
    }
    case 'expect':
      last = message.last
      for (const s of streams) {
        if (s.received > last) return fail(`a stream has ${s.received} events, past the last (${last})`)
        if (s.received === last) complete++
      }
      if (error !== null || complete === streams.length) finish()
      break
    case 'exit':
      for (const s of streams) s.socket?.destroy()
      for (const session of sessions) session.destroy()
      process.exit(0)
  }
})
