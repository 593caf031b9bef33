// Benchmark load client, in its own process. Driven over IPC by bench.mjs:
//   <- { type: 'stream', port, count, eventName, first }  open one stream, expect `count`
//        events numbered from `first` (1 unless given; 0 for the Fetch form)
//   -> { type: 'connected' }                       response head received
//   -> { type: 'done', received, valid, error }    all expected events arrived (or a mismatch)
//   <- { type: 'idle', port, connections }         open idle streams
//   -> { type: 'idle-open', open }
// Every expected event is checked: its name, its id (1, 2, 3 ..., or from
// `first`) and the sequence number at the start of its JSON data, so lost,
// duplicated or reordered events make the row invalid.
import http from 'node:http'

import { dataPrefix } from './payload.mjs'

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })
const idle = []

function openStream({ port, count, eventName, first = 1 }) {
  let expected = first
  let received = 0
  let error = null
  let pending = ''
  let finished = false
  const finish = () => {
    if (finished) return
    finished = true
    process.send({ type: 'done', received, valid: error === null && received === count, error })
    req.destroy()
  }
  const check = (block) => {
    let id = null
    let event = 'message'
    let data = null
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':')
      if (colon <= 0) continue
      const field = line.slice(0, colon)
      const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1)
      if (field === 'id') id = value
      else if (field === 'event') event = value
      else if (field === 'data') data = data === null ? value : `${data}\n${value}`
    }
    if (data === null || event !== eventName) return // welcome, retry, comments
    if (id !== String(expected) || !data.startsWith(dataPrefix(expected))) {
      error ??= `event ${received + 1}: expected id ${expected}, got id ${id} data ${data.slice(0, 40)}`
    }
    expected++
    received++
  }
  const req = http.get({ host: '127.0.0.1', port, path: '/stream', agent }, (res) => {
    process.send({ type: 'connected' })
    res.setEncoding('utf8')
    res.on('data', (text) => {
      pending += text
      let start = 0
      let end
      while ((end = pending.indexOf('\n\n', start)) !== -1) {
        check(pending.slice(start, end))
        start = end + 2
      }
      pending = pending.slice(start)
      if (received >= count) finish()
    })
    res.on('end', () => {
      error ??= 'stream ended early'
      finish()
    })
  })
  req.on('error', (err) => {
    if (!finished) {
      error ??= err.message
      finish()
    }
  })
}

async function openIdle({ port, connections }) {
  let open = 0
  const batch = 250
  for (let done = 0; done < connections; done += batch) {
    const n = Math.min(batch, connections - done)
    await Promise.all(
      Array.from({ length: n }, () => new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/idle', agent }, (res) => {
          open++
          idle.push(req)
          res.resume()
          resolve()
        })
        req.on('error', reject)
      })),
    )
  }
  process.send({ type: 'idle-open', open })
}

process.on('message', (message) => {
  if (message.type === 'stream') openStream(message)
  else if (message.type === 'idle') openIdle(message).catch((err) => process.send({ type: 'idle-open', open: -1, error: err.message }))
  else if (message.type === 'exit') {
    for (const req of idle) req.destroy()
    process.exit(0)
  }
})
