// Load client for the broadcast scenarios, in its own process; bench.mjs
// starts several of them for 10 000 connections. Driven over IPC:
//   <- { type: 'open', port, connections, stalled, count, eventName, ackStep }
//        open `connections` streams (plus `stalled` ones that never read)
//   -> { type: 'opened', open, error }           every response head arrived
//   -> { type: 'progress', upTo }                every reading stream has at
//        least `upTo` events (sent each time that passes ackStep more)
//   -> { type: 'done', valid, error, received, prefix, latency, cpuMicros }
//        every reading stream got `count` events (or one failed its checks)
//
// Streams are plain `net` sockets speaking HTTP/1.1 (the response is
// chunked; the chunk framing is taken off here) and reading with `onread`
// into one shared buffer, which costs the client less per read than
// `http.get`, so that more of the machine is left to the server.
//
// Every event is checked: its name, its id (`<prefix><seq>`, seq 1, 2, 3 ...,
// the prefix the same for every stream: '' or a native channel's `<ms>-`)
// and the sequence number at the start of its JSON data ({"i":<seq>,...}),
// so lost, duplicated, reordered or extra events make the row invalid.
// Latency: the data carries the server's send time ("t", ms since
// performance.timeOrigin's epoch, the same clock in every process on one
// machine); receive time minus send time goes into a histogram of 50 µs
// buckets, sent back with 'done'.
import net from 'node:net'

const BUCKET_MS = 0.05
const BUCKETS = 200_000 // up to 10 s; later ones go into the last bucket
const OPEN_BATCH = 200 // connections opened at a time
const readBuffer = Buffer.alloc(256 * 1024)

const streams = [] // reading streams
const stalledSockets = []
let spec = null
let prefix = null
let error = null
let finished = false
let complete = 0 // reading streams that have every event
let cpuStart = null // process.cpuUsage() when the streams were open
let ackMark = 0 // next progress mark
let behind = 0 // reading streams below ackMark
const histogram = new Uint32Array(BUCKETS)

const now = () => performance.timeOrigin + performance.now()

function fail(message) {
  error ??= message
  finish()
}

function finish() {
  if (finished) return
  finished = true
  let received = 0
  for (const s of streams) received += s.received
  const latency = []
  for (let i = 0; i < BUCKETS; i++) if (histogram[i]) latency.push(i, histogram[i])
  const cpu = process.cpuUsage(cpuStart ?? undefined)
  process.send({
    type: 'done',
    valid: error === null && complete === streams.length,
    error,
    received,
    prefix,
    latency,
    cpuMicros: cpu.user + cpu.system,
  })
}

function setMark() {
  let min = Infinity
  for (const s of streams) if (s.received < min) min = s.received
  ackMark = Math.min(spec.count, min + spec.ackStep)
  behind = 0
  for (const s of streams) if (s.received < ackMark) behind++
  return min
}

/** One event block (without its blank line) of stream `s`. */
function onBlock(s, block, at) {
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
  // The welcome event, retry, comments and a native channel's position line
  // (`id: <head>` without data) are not broadcasts.
  if (data === null || event !== spec.eventName) return
  const seq = s.received + 1
  if (seq > spec.count) return fail(`extra event after ${spec.count}: id ${id}`)
  const digits = String(seq)
  if (prefix === null && id !== null && id.endsWith(digits)) {
    prefix = id.slice(0, id.length - digits.length)
    if (prefix !== '' && !/^\d+-$/.test(prefix)) return fail(`unexpected id form ${id}`)
  }
  if (id !== prefix + digits || !data.startsWith(`{"i":${digits},`)) {
    return fail(`event ${seq}: expected id ${prefix ?? ''}${digits}, got id ${id} data ${data.slice(0, 40)}`)
  }
  const t = data.indexOf('"t":')
  if (t !== -1) {
    const latency = at - Number.parseFloat(data.slice(t + 4, data.indexOf(',', t)))
    const bucket = Math.min(BUCKETS - 1, Math.max(0, Math.floor(latency / BUCKET_MS)))
    histogram[bucket]++
  }
  s.received = seq
  if (seq === ackMark) {
    if (--behind === 0) {
      const min = setMark()
      process.send({ type: 'progress', upTo: min })
    }
  }
  if (seq === spec.count && ++complete === streams.length) finish()
}

/** The body text `text` of stream `s`: split into event blocks. */
function onBody(s, text, at) {
  let pending = s.pending + text
  let start = 0
  let end
  while ((end = pending.indexOf('\n\n', start)) !== -1) {
    onBlock(s, pending.slice(start, end), at)
    if (finished) return
    start = end + 2
  }
  s.pending = start === 0 ? pending : pending.slice(start)
}

/** Takes the HTTP head, then the chunked framing, off the bytes of `s`. */
function onBytes(s, buf) {
  if (finished) return
  const at = now()
  let i = 0
  if (s.head !== null) {
    s.head += buf.toString('latin1')
    const endOfHead = s.head.indexOf('\r\n\r\n')
    if (endOfHead === -1) return
    if (!s.head.startsWith('HTTP/1.1 200')) return fail(`response: ${s.head.slice(0, s.head.indexOf('\r\n'))}`)
    if (!/\r\ntransfer-encoding: chunked\r\n/i.test(s.head.slice(0, endOfHead + 2))) return fail('response is not chunked')
    const rest = Buffer.from(s.head.slice(endOfHead + 4), 'latin1')
    s.head = null
    s.onHead()
    buf = rest
  }
  let body = ''
  while (i < buf.length) {
    if (s.remaining > 0) {
      const take = Math.min(s.remaining, buf.length - i)
      body += buf.toString('latin1', i, i + take)
      i += take
      s.remaining -= take
      if (s.remaining === 0) s.skip = 2 // the CRLF after the chunk
    } else if (s.skip > 0) {
      i++
      s.skip--
    } else {
      // Chunk size line: hex digits, then CRLF.
      const c = buf[i++]
      if (c === 10) {
        const size = Number.parseInt(s.sizeLine, 16)
        s.sizeLine = ''
        if (!(size >= 0)) return fail('bad chunk size')
        if (size === 0) return fail('stream ended early')
        s.remaining = size
      } else if (c !== 13) {
        s.sizeLine += String.fromCharCode(c)
      }
    }
  }
  if (body) onBody(s, body, at)
}

function connect(port, reading) {
  return new Promise((resolve, reject) => {
    // Reading streams read into one shared buffer (`onread`): each read is
    // handled, and its bytes copied out, before the next one.
    const s = reading ? { socket: null, received: 0, pending: '', head: '', remaining: 0, skip: 0, sizeLine: '', onHead: null } : null
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      onread: reading ? { buffer: readBuffer, callback: (n, buf) => onBytes(s, buf.subarray(0, n)) } : undefined,
    })
    let opened = false
    socket.on('connect', () => {
      socket.setNoDelay(true)
      socket.write('GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
      if (!reading) {
        // Never reads: Node fills its 16 KiB read buffer, then stops
        // reading the socket; the kernel buffers fill after that.
        socket.pause()
        stalledSockets.push(socket)
        opened = true
        resolve()
      }
    })
    socket.on('error', (err) => {
      if (!opened) reject(err)
      else if (reading) fail(`socket error: ${err.message}`)
    })
    if (!reading) return
    s.socket = socket
    s.onHead = () => {
      opened = true
      resolve()
    }
    streams.push(s)
    socket.on('close', () => {
      if (!opened) reject(new Error('closed before the response head'))
      else if (s.received < spec.count) fail(`stream closed after ${s.received} events`)
    })
  })
}

async function open(message) {
  spec = message
  try {
    for (let done = 0; done < message.connections; done += OPEN_BATCH) {
      const n = Math.min(OPEN_BATCH, message.connections - done)
      await Promise.all(Array.from({ length: n }, () => connect(message.port, true)))
    }
    for (let i = 0; i < message.stalled; i++) await connect(message.port, false)
    setMark()
    cpuStart = process.cpuUsage()
    process.send({ type: 'opened', open: streams.length + stalledSockets.length, error: null })
  } catch (err) {
    process.send({ type: 'opened', open: -1, error: err.message })
  }
}

process.on('message', (message) => {
  if (message.type === 'open') open(message)
  else if (message.type === 'exit') {
    for (const s of streams) s.socket.destroy()
    for (const socket of stalledSockets) socket.destroy()
    process.exit(0)
  }
})
