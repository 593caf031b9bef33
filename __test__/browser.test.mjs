// A real browser: headless Chromium's own EventSource, driven by
// playwright-core, against a server on 127.0.0.1 that serves the page and the
// stream from the same origin. Needs the Debian package `chromium`
// (`apt-get install -y chromium`); `.ci/run` installs it. CHROMIUM_PATH
// overrides /usr/bin/chromium.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { Channel, SSE } from 'native-sse'
import { launchChromium } from './chromium.mjs'
import { UUID_V4, startServer, waitFor } from './helpers.mjs'

// The browser's reconnection delay, sent as `retry:`. Chromium's own default
// is 3000 ms, so a reconnect well before that shows the field was honoured.
const RETRY_MS = 250
const WAIT_MS = 5000

// The page records every event it gets; it never reconnects by itself.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>native-sse browser test</title>
<script>
  window.log = []
  window.opens = 0
  window.errors = 0
  window.messages = 0
  const es = new EventSource('/events')
  for (const type of ['welcome', 'greeting', 'poem', 'checkpoint', 'resumed']) {
    es.addEventListener(type, (e) => {
      window.log.push({ type: e.type, data: e.data, lastEventId: e.lastEventId, origin: e.origin })
    })
  }
  es.onmessage = () => window.messages++
  es.onopen = () => window.opens++
  es.onerror = () => window.errors++
</script>
`

// A page on a channel: it records channel events and resets.
const CHANNEL_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>native-sse channel test</title>
<script>
  window.log = []
  const es = new EventSource('/channel-events')
  for (const type of ['news', 'reset']) {
    es.addEventListener(type, (e) => window.log.push({ type: e.type, data: e.data, lastEventId: e.lastEventId }))
  }
</script>
`
const channel = new Channel()
// One entry per request to /channel-events, in order.
const members = []

let srv
let browser
let page
// One entry per request to /events, in order.
const streams = []

before(async () => {
  srv = await startServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      res.end(PAGE)
    } else if (req.url === '/channel') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      res.end(CHANNEL_PAGE)
    } else if (req.url === '/channel-events') {
      const sse = new SSE(req, res, { retry: RETRY_MS, keepAlive: 0 })
      channel.add(sse)
      members.push(sse)
    } else if (req.url === '/events') {
      const sse = new SSE(req, res, { retry: RETRY_MS })
      const stream = { sse, accept: req.headers.accept, at: Date.now(), closeReason: null }
      sse.onClose((reason) => (stream.closeReason = reason))
      streams.push(stream)
    } else {
      res.writeHead(404).end()
    }
  })
  browser = await launchChromium('node')
  page = browser.context.pages()[0] ?? (await browser.context.newPage())
})

after(async () => {
  channel.close()
  try {
    await browser?.close()
  } finally {
    await srv?.close()
  }
})

/** Waits until the page has logged `count` events, then returns the log. */
async function pageLog(count) {
  await page.waitForFunction((n) => window.log.length >= n, count, { timeout: WAIT_MS })
  return page.evaluate(() => window.log)
}

test('Chromium receives the events, reconnects after the end with Last-Event-ID, and resumes', async () => {
  await page.goto(`${srv.url}/`, { timeout: WAIT_MS })
  await waitFor(() => streams.length === 1, { timeoutMs: WAIT_MS, what: 'the first /events request' })
  const first = streams[0]
  assert.equal(first.accept, 'text/event-stream')
  assert.equal(first.sse.lastEventId, null, 'the first request carries no Last-Event-ID')

  assert.equal(first.sse.send({ eventName: 'greeting', eventPayload: { text: 'hello', n: 1 } }), true)
  assert.equal(first.sse.send({ eventName: 'poem', data: 'line1\nline2\n\u00e9t\u00e9 \u{1f600}' }), true)
  assert.equal(first.sse.send({ eventName: 'greeting', eventPayload: ['a', null, { b: 2 }] }), true)
  assert.equal(first.sse.send({ eventName: 'checkpoint', data: 'saved', id: 'cp-42' }), true)

  const origin = srv.url
  const welcome = { type: 'welcome', data: JSON.stringify({ uuid: first.sse.getUUID() }), lastEventId: '0', origin }
  assert.match(first.sse.getUUID(), UUID_V4)
  assert.deepEqual(await pageLog(5), [
    welcome,
    { type: 'greeting', data: '{"text":"hello","n":1}', lastEventId: '1', origin },
    { type: 'poem', data: 'line1\nline2\n\u00e9t\u00e9 \u{1f600}', lastEventId: '2', origin },
    { type: 'greeting', data: '["a",null,{"b":2}]', lastEventId: '3', origin },
    { type: 'checkpoint', data: 'saved', lastEventId: 'cp-42', origin },
  ])

  // The server ends the stream; the page's EventSource reconnects on its own
  // after `retry` ms and says which event it saw last.
  const closedAt = Date.now()
  first.sse.close()
  assert.equal(first.sse.closed, true)
  await waitFor(() => streams.length === 2, {
    timeoutMs: 2500,
    what: `the reconnect (retry: ${RETRY_MS}; Chromium's default would be 3000 ms)`,
  })
  const second = streams[1]
  const delay = second.at - closedAt
  assert.ok(delay >= RETRY_MS - 50, `reconnected after ${delay} ms, expected at least ~${RETRY_MS} ms`)
  assert.equal(second.sse.lastEventId, 'cp-42', 'Last-Event-ID is the id of the last event the page saw')
  await waitFor(() => first.closeReason !== null, { timeoutMs: WAIT_MS, what: 'onClose of the first stream' })
  assert.equal(first.closeReason, 'server')

  // The second connection: a new welcome that carries no id (the request
  // had a Last-Event-ID, which the welcome must not overwrite), ids from 1
  // again, and what the server resumes with.
  second.sse.send({ eventName: 'resumed', eventPayload: { after: second.sse.lastEventId } })
  second.sse.send({ eventName: 'poem', data: 'again\n\nwith a blank line' })
  assert.notEqual(second.sse.getUUID(), first.sse.getUUID())
  const log = await pageLog(8)
  assert.deepEqual(log.slice(5), [
    { type: 'welcome', data: JSON.stringify({ uuid: second.sse.getUUID() }), lastEventId: 'cp-42', origin },
    { type: 'resumed', data: '{"after":"cp-42"}', lastEventId: '1', origin },
    { type: 'poem', data: 'again\n\nwith a blank line', lastEventId: '2', origin },
  ])

  const counts = await page.evaluate(() => ({ opens: window.opens, errors: window.errors, messages: window.messages }))
  assert.deepEqual(counts, { opens: 2, errors: 1, messages: 0 })
  assert.equal(streams.length, 2, 'no other /events request')
})

test('Chromium on a channel keeps its position across reconnects: the id-only position line, no welcome id, replay', async () => {
  await page.goto(`${srv.url}/channel`, { timeout: WAIT_MS })
  await waitFor(() => members.length === 1 && channel.size === 1, { timeoutMs: WAIT_MS, what: 'the page to join' })
  const start = channel.lastEventId

  // Ended before any channel event: the page's position is the channel's
  // (from the id-only line), not the welcome's 0, so it misses nothing.
  members[0].close()
  const first = channel.broadcast({ eventName: 'news', eventPayload: 1 })
  await waitFor(() => members.length === 2, { timeoutMs: WAIT_MS, what: 'the first reconnect' })
  assert.equal(members[1].lastEventId, start)
  await page.waitForFunction(() => window.log.length >= 1, null, { timeout: WAIT_MS })

  // Ended right after the replay: the welcome of the next stream carries no
  // id, so the page still resumes from the event it saw.
  members[1].close()
  const second = channel.broadcast({ eventName: 'news', eventPayload: 2 })
  await waitFor(() => members.length === 3, { timeoutMs: WAIT_MS, what: 'the second reconnect' })
  assert.equal(members[2].lastEventId, first)
  await page.waitForFunction(() => window.log.length >= 2, null, { timeout: WAIT_MS })
  const live = channel.broadcast({ eventName: 'news', eventPayload: 3 })
  await page.waitForFunction(() => window.log.length >= 3, null, { timeout: WAIT_MS })
  assert.deepEqual(await page.evaluate(() => window.log), [
    { type: 'news', data: '1', lastEventId: first },
    { type: 'news', data: '2', lastEventId: second },
    { type: 'news', data: '3', lastEventId: live },
  ])
})
