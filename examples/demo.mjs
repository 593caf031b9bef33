// Live demo: `npm run demo`, then open the URL it prints (PORT and HOST
// override 3000 and 127.0.0.1). Every visitor is a member of one channel:
//
// - `tick` every second (kept in the channel's history) and `chat` messages
//   typed into any open page, each with its channel id;
// - "Drop my connection" asks the server to end this visitor's stream: the
//   browser reconnects with Last-Event-ID after `retry` (1.5 s) and the
//   channel replays the ticks it missed, which the page marks as replayed
//   (everything between the stream opening and the `joined` event sent
//   right after add(), which comes after the replay); a `reset` arrives only
//   when the missed events are no longer in the history;
// - the server's own counters (metrics()) every second, as a live-only
//   `stats` event;
// - both S42Core forms: `/events` is `new SSE(req, res)`, `/fetch/events`
//   is `new SSE(request)` + `getResponse()`, served on node:http through a
//   few lines that turn the request into a Fetch Request.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { Readable } from 'node:stream'

import { Channel, SSE, metrics } from 'native-sse'

const PORT = Number(process.env.PORT ?? 3000)
const HOST = process.env.HOST ?? '127.0.0.1'
const RETRY_MS = 1500
const page = readFileSync(new URL('./demo.html', import.meta.url), 'utf8')
const room = new Channel({ historyEvents: 300 })
/** Open streams by UUID, for the drop control. */
const streams = new Map()

/** Adds `sse` to the room and tells it where it stands, after any replay. */
function join(sse, form) {
  const uuid = sse.getUUID()
  streams.set(uuid, sse)
  sse.onClose(() => streams.delete(uuid))
  const resumedFrom = sse.lastEventId
  room.add(sse)
  // A channel event to this member only, live-only: it follows the replay
  // and moves the client's position to a channel id.
  room.broadcast({ eventName: 'joined', eventPayload: { uuid, form, resumedFrom } }, { to: [uuid], replay: false })
}

/** The Fetch form on node:http: a Request in, the Response's body piped out. */
function serveFetchForm(req, res) {
  const abort = new AbortController()
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value)
  }
  const request = new Request(`http://${HOST}${req.url}`, { headers, signal: abort.signal })
  const sse = new SSE(request, { retry: RETRY_MS })
  join(sse, 'fetch')
  const response = sse.getResponse()
  res.writeHead(response.status, Object.fromEntries(response.headers))
  res.flushHeaders()
  const body = Readable.fromWeb(response.body)
  body.pipe(res)
  res.on('close', () => {
    abort.abort()
    body.destroy()
  })
}

function readJson(req, limit, done) {
  let text = ''
  req.setEncoding('utf8')
  req.on('data', (chunk) => {
    text += chunk
    if (text.length > limit) req.destroy()
  })
  req.on('end', () => {
    try {
      done(JSON.parse(text))
    } catch {
      done(null)
    }
  })
}

const server = createServer((req, res) => {
  const path = req.url.split('?')[0]
  if (req.method === 'GET' && path === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(page)
  } else if (req.method === 'GET' && path === '/events') {
    join(new SSE(req, res, { retry: RETRY_MS }), 'node')
  } else if (req.method === 'GET' && path === '/fetch/events') {
    serveFetchForm(req, res)
  } else if (req.method === 'POST' && path === '/say') {
    readJson(req, 4096, (message) => {
      if (typeof message?.text !== 'string' || typeof message?.from !== 'string' || message.text === '') {
        res.writeHead(400).end()
        return
      }
      room.broadcast({ eventName: 'chat', eventPayload: { from: message.from.slice(0, 36), text: message.text.slice(0, 200) } })
      res.writeHead(204).end()
    })
  } else if (req.method === 'POST' && path === '/drop') {
    readJson(req, 256, (message) => {
      const sse = typeof message?.uuid === 'string' ? streams.get(message.uuid) : undefined
      if (sse === undefined) {
        res.writeHead(404).end()
        return
      }
      sse.close()
      res.writeHead(204).end()
    })
  } else {
    res.writeHead(404).end()
  }
})

let n = 0
const clock = setInterval(() => {
  room.broadcast({ eventName: 'tick', eventPayload: { n: ++n, time: new Date().toISOString() } })
}, 1000)
clock.unref()

// The server's counters, as rates over the last second.
let last = metrics()
const stats = setInterval(() => {
  const now = metrics()
  const closed = now.streams.closed
  room.broadcast(
    {
      eventName: 'stats',
      eventPayload: {
        open: now.streams.open,
        opened: now.streams.opened,
        closed: closed.client + closed.server + closed.overflow,
        eventsPerSecond: now.events - last.events,
        bytesPerSecond: now.bytes - last.bytes,
        replays: now.replays,
        resets: now.resets,
      },
    },
    { replay: false },
  )
  last = now
}, 1000)
stats.unref()

server.listen(PORT, HOST, () => {
  const { port } = server.address()
  console.log(`native-sse demo listening on http://${HOST}:${port}/`)
})

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    room.close()
    server.closeAllConnections()
    server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 1000).unref()
  })
}
