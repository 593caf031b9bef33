// Real clients: the WHATWG-compliant `eventsource` client, and the streaming
// `eventsource-parser` fed the captured body whole and one byte at a time.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { EventSource } from 'eventsource'
import { createParser } from 'eventsource-parser'
import { SSE } from 'native-sse'
import { UUID_V4, deferred, rawGet, startServer, waitFor } from './helpers.mjs'

const EVENTS = [
  { eventName: 'update', eventPayload: { message: 'New update available!' } },
  { eventName: 'exampleEvent', eventPayload: { data: 'Hello, SSE!' } },
  { eventName: 'update', eventPayload: { text: 'multi\nline\r\ntext', ls: '\u2028', emoji: '😀' } },
  { eventName: 'list', eventPayload: [1, 'two', null, { three: 3 }] },
  { eventName: 'update', eventPayload: 'plain string' },
]

let srv
const streams = []

before(async () => {
  srv = await startServer((req, res) => {
    const sse = new SSE(req, res)
    streams.push(sse)
    // Let the client attach its listeners before the events arrive.
    setTimeout(() => {
      for (const event of EVENTS) sse.send(event)
      if (req.url === '/and-close') sse.close()
    }, 20)
  })
})
after(() => srv.close())

test('the eventsource client receives the welcome with the UUID and each event parsed', async () => {
  const es = new EventSource(`${srv.url}/events`)
  const received = []
  const welcome = deferred()
  const done = deferred()
  es.addEventListener('welcome', (e) => welcome.resolve(e))
  for (const name of new Set(EVENTS.map((e) => e.eventName))) {
    es.addEventListener(name, (e) => {
      received.push({ type: e.type, id: e.lastEventId, payload: JSON.parse(e.data) })
      if (received.length === EVENTS.length) done.resolve()
    })
  }
  let onmessage = 0
  es.onmessage = () => onmessage++
  const timer = setTimeout(() => done.resolve('timeout'), 5000)
  try {
    const w = await welcome.promise
    assert.equal(w.lastEventId, '0')
    const { uuid } = JSON.parse(w.data)
    assert.match(uuid, UUID_V4)
    assert.ok(streams.some((s) => s.getUUID() === uuid), 'welcome UUID equals getUUID() of a server stream')
    assert.notEqual(await done.promise, 'timeout')
    assert.deepEqual(
      received,
      EVENTS.map((e, i) => ({ type: e.eventName, id: String(i + 1), payload: e.eventPayload })),
    )
    assert.equal(onmessage, 0, 'named events are not delivered as "message"')
  } finally {
    clearTimeout(timer)
    es.close()
  }
})

function parseAll(feedChunks) {
  const events = []
  const parser = createParser({ onEvent: (e) => events.push({ id: e.id, event: e.event, data: e.data }) })
  for (const chunk of feedChunks) parser.feed(chunk)
  return events
}

test('eventsource-parser gives identical events from the whole body and byte by byte', async () => {
  const client = rawGet(srv.port, '/and-close')
  const response = await client.waitForBody((_, parsed) => parsed.complete)
  client.close()
  const body = response.body.toString('utf8')
  const whole = parseAll([body])
  // One byte at a time, decoding UTF-8 as a stream so multi-byte characters
  // are split across feeds the way the network splits them.
  const decoder = new TextDecoder()
  const bytes = [...response.body].map((b) => decoder.decode(Uint8Array.of(b), { stream: true }))
  const byByte = parseAll(bytes)
  assert.deepEqual(byByte, whole)
  assert.equal(whole.length, EVENTS.length + 1)
  assert.equal(whole[0].event, 'welcome')
  assert.equal(whole[0].id, '0')
  assert.match(JSON.parse(whole[0].data).uuid, UUID_V4)
  EVENTS.forEach((e, i) => {
    assert.deepEqual(whole[i + 1], { id: String(i + 1), event: e.eventName, data: JSON.stringify(e.eventPayload) })
  })
})

test('the eventsource client sees the stream end when the server closes it', async () => {
  const es = new EventSource(`${srv.url}/and-close`)
  let count = 0
  const errored = deferred()
  for (const name of new Set(EVENTS.map((e) => e.eventName))) es.addEventListener(name, () => count++)
  es.onerror = () => errored.resolve()
  const timer = setTimeout(() => errored.resolve('timeout'), 5000)
  try {
    await errored.promise
    await waitFor(() => count >= EVENTS.length, { timeoutMs: 2000, what: 'events before the end' })
    assert.equal(count, EVENTS.length)
    // After the end of the stream the client reconnects by itself.
    assert.equal(es.readyState, EventSource.CONNECTING)
  } finally {
    clearTimeout(timer)
    es.close()
  }
})
