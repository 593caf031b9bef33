// Load client of the many-streams scenario, in its own process; bench.mjs
// spreads the streams over several of them (each process has its own limit
// on open files). Driven over IPC:
//   <- { type: 'open', port, connections }   open `connections` streams
//   -> { type: 'opened', open, error }       every response head arrived
//   <- { type: 'mark' }                      start counting from zero
//   <- { type: 'report' }
//   -> { type: 'report', streams, heartbeats, minHeartbeats, silent, closed, error, cpuMicros }
//        since the mark: SSE blocks received (every block ends with a blank
//        line; the streams carry only heartbeats then), the fewest on one
//        stream, streams that got none, streams closed (ever)
//
// Streams are plain `net` sockets sending one HTTP/1.1 GET and reading with
// `onread` into one shared buffer. The bytes are discarded; the only work
// per read is finding the end of the response head once, then counting the
// `\n\n` pairs (chunk framing puts `\r\n` around each chunk, so it adds none).
import net from 'node:net'

const OPEN_BATCH = 200 // connections opened at a time
const readBuffer = Buffer.alloc(64 * 1024)

const streams = []
let closed = 0
let error = null
let cpuStart = null

function onBytes(s, buf) {
  let i = 0
  if (!s.open) {
    s.head += buf.toString('latin1')
    const end = s.head.indexOf('\r\n\r\n')
    if (end === -1) return
    if (!s.head.startsWith('HTTP/1.1 200')) {
      s.onFail(new Error(`response: ${s.head.slice(0, s.head.indexOf('\r\n'))}`))
      s.socket.destroy()
      return
    }
    i = buf.length - (s.head.length - end - 4)
    s.head = ''
    s.open = true
    s.onOpen()
  }
  let last = s.last
  for (; i < buf.length; i++) {
    const c = buf[i]
    if (c === 10 && last === 10) s.blocks++
    last = c
  }
  s.last = last
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = { socket: null, open: false, head: '', last: 0, blocks: 0, onOpen: resolve, onFail: reject }
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      onread: { buffer: readBuffer, callback: (n, buf) => onBytes(s, buf.subarray(0, n)) },
    })
    s.socket = socket
    socket.on('connect', () => socket.write('GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'))
    socket.on('error', (err) => {
      if (!s.open) reject(err)
      else error ??= `socket error: ${err.message}`
    })
    socket.on('close', () => {
      if (!s.open) reject(new Error('closed before the response head'))
      closed++
    })
    streams.push(s)
  })
}

async function open({ port, connections }) {
  try {
    for (let done = 0; done < connections; done += OPEN_BATCH) {
      const n = Math.min(OPEN_BATCH, connections - done)
      await Promise.all(Array.from({ length: n }, () => connect(port)))
    }
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
      for (const s of streams) s.blocks = 0
      cpuStart = process.cpuUsage()
      break
    case 'report': {
      let heartbeats = 0
      let minHeartbeats = Infinity
      let silent = 0
      for (const s of streams) {
        heartbeats += s.blocks
        if (s.blocks < minHeartbeats) minHeartbeats = s.blocks
        if (s.blocks === 0) silent++
      }
      const cpu = process.cpuUsage(cpuStart ?? undefined)
      process.send({ type: 'report', streams: streams.length, heartbeats, minHeartbeats, silent, closed, error, cpuMicros: cpu.user + cpu.system })
      break
    }
    case 'exit':
      for (const s of streams) s.socket.destroy()
      process.exit(0)
  }
})
