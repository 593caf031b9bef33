// Live demo: `npm run demo`, then open http://127.0.0.1:3000/ (PORT and HOST
// override). The page listens for the real event names: `welcome`, `tick`,
// `chat` and `reset`. Every tab is a member of one channel: messages typed
// into a page are broadcast to every open tab, and a tab that reconnects
// (stop and restart the network in the browser's dev tools) is replayed the
// messages it missed. The clock ticks are live-only (`replay: false`).
import { createServer } from 'node:http'

import { Channel, SSE } from 'native-sse'

const PORT = Number(process.env.PORT ?? 3000)
const HOST = process.env.HOST ?? '127.0.0.1'
const room = new Channel({ historyEvents: 100 })

const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>native-sse demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  #log { list-style: none; padding: 0; font-family: ui-monospace, monospace; font-size: 13px; }
  #log li { border-bottom: 1px solid #eee; padding: 2px 0; }
  .welcome { color: #0a7; } .chat { color: #06c; } .error { color: #c30; }
</style>
<h1>native-sse demo</h1>
<p>Connection: <b id="state">connecting</b>, UUID <code id="uuid">-</code>, clock <code id="clock">-</code></p>
<form id="say"><input id="text" maxlength="200" placeholder="Say something to every open tab" autocomplete="off">
<button>Send</button></form>
<ul id="log"></ul>
<script>
  const log = (cls, text) => {
    const li = document.createElement('li')
    li.className = cls
    li.textContent = new Date().toLocaleTimeString() + '  ' + text
    document.getElementById('log').prepend(li)
  }
  const source = new EventSource('/events')
  source.addEventListener('open', () => (document.getElementById('state').textContent = 'open'))
  source.addEventListener('welcome', (e) => {
    const { uuid } = JSON.parse(e.data)
    document.getElementById('uuid').textContent = uuid
    log('welcome', 'welcome, id ' + e.lastEventId + ': ' + e.data)
  })
  source.addEventListener('tick', (e) => {
    document.getElementById('clock').textContent = JSON.parse(e.data).time
  })
  source.addEventListener('chat', (e) => {
    const { from, text } = JSON.parse(e.data)
    log('chat', from.slice(0, 8) + ': ' + text)
  })
  source.addEventListener('reset', (e) => {
    log('error', 'missed messages that are no longer kept (' + JSON.parse(e.data).reason + ')')
  })
  source.addEventListener('error', () => {
    document.getElementById('state').textContent = source.readyState === 0 ? 'reconnecting' : 'closed'
    log('error', 'connection lost')
  })
  document.getElementById('say').addEventListener('submit', async (e) => {
    e.preventDefault()
    const input = document.getElementById('text')
    if (!input.value) return
    await fetch('/say', { method: 'POST', body: JSON.stringify({ from: document.getElementById('uuid').textContent, text: input.value }) })
    input.value = ''
  })
</script>
</html>
`

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
    res.end(page)
  } else if (req.method === 'GET' && req.url === '/events') {
    room.add(new SSE(req, res, { retry: 1000 }))
  } else if (req.method === 'POST' && req.url === '/say') {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk) => {
      body += chunk
      if (body.length > 4096) req.destroy()
    })
    req.on('end', () => {
      let message
      try {
        message = JSON.parse(body)
      } catch {
        message = null
      }
      if (typeof message?.text !== 'string' || typeof message?.from !== 'string') {
        res.writeHead(400).end()
        return
      }
      room.broadcast({ eventName: 'chat', eventPayload: { from: message.from, text: message.text.slice(0, 200) } })
      res.writeHead(204).end()
    })
  } else {
    res.writeHead(404).end()
  }
})

const clock = setInterval(() => {
  room.broadcast({ eventName: 'tick', eventPayload: { time: new Date().toISOString() } }, { replay: false })
}, 1000)
clock.unref()

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
