// More ways to send: pre-serialised text or bytes as data, explicit ids and
// comments. Exact bytes on a raw socket, what a real client makes of them,
// and a TypeError that writes nothing for each bad value.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { EventSource } from 'eventsource'
import { SSE } from 'native-sse'
import { deferred, s42Frame, splitEvents, startServer, startStreamServer, waitFor } from './helpers.mjs'

let srv
before(async () => {
  srv = await startStreamServer((req, res) => new SSE(req, res, { keepAlive: 0 }))
})
after(() => srv.close())

/** Sends on a fresh stream; resolves with the body after the welcome. */
async function bodyAfterWelcome(sendAll, { events }) {
  const { client, sse } = await srv.open()
  const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
  sendAll(sse)
  const response = await client.waitForBody((body) => splitEvents(body).length >= events + 1)
  client.close()
  return response.body.toString().slice(welcome.length)
}

test('string data is sent as it is, one data line per line (CR, LF and CRLF)', async () => {
  const body = await bodyAfterWelcome(
    (sse) => {
      assert.equal(sse.send({ eventName: 'text', data: 'plain' }), true)
      assert.equal(sse.send({ eventName: 'lines', data: 'a\nb\r\nc\rd' }), true)
      assert.equal(sse.send({ eventName: 'edges', data: '\ntrailing\n' }), true)
      assert.equal(sse.send({ eventName: 'empty', data: '' }), true)
      assert.equal(sse.send({ eventName: 'json', data: '{"already":"serialised"}' }), true)
      assert.equal(sse.send({ eventName: 'unicode', data: 'é😀\u2028x' }), true)
    },
    { events: 6 },
  )
  assert.equal(
    body,
    'id: 1\nevent: text\ndata: plain\n\n' +
      'id: 2\nevent: lines\ndata: a\ndata: b\ndata: c\ndata: d\n\n' +
      'id: 3\nevent: edges\ndata: \ndata: trailing\ndata: \n\n' +
      'id: 4\nevent: empty\ndata: \n\n' +
      'id: 5\nevent: json\ndata: {"already":"serialised"}\n\n' +
      'id: 6\nevent: unicode\ndata: é😀\u2028x\n\n',
  )
})

// Strings are read the same way on every engine: Node writes a lone
// surrogate as U+FFFD, and the WASI build (emnapi, whose own conversion
// joins it with the next character) is made to do the same.
test('lone surrogates: U+FFFD in data and comments, the characters after them kept; refused in names and ids', async () => {
  const { client, sse } = await srv.open()
  const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
  const refused = [
    [{ eventName: 'up\uD800date', data: 'x' }, 'ERR_SSE_INVALID_EVENT_NAME'],
    [{ eventName: 'a\uDC00b', data: 'x' }, 'ERR_SSE_INVALID_EVENT_NAME'],
    [{ eventName: '\uD83D', data: 'x' }, 'ERR_SSE_INVALID_EVENT_NAME'],
    [{ eventName: 'x', data: 'x', id: 'id\uD800-7' }, 'ERR_SSE_INVALID_EVENT_ID'],
    [{ eventName: 'x', data: 'x', id: '\uDE00\uD83D' }, 'ERR_SSE_INVALID_EVENT_ID'],
  ]
  for (const [event, code] of refused) {
    assert.throws(() => sse.send(event), { name: 'TypeError', code, message: /unpaired surrogate/ }, JSON.stringify(event))
  }
  assert.equal(sse.send({ eventName: 'text', data: 'a\uD800b|\uDC00c|\uDE00\uD83D|d\uD83D' }), true)
  assert.equal(sse.send({ eventName: 'pair😀', data: 'é😀\uFFFD', id: 'id-😀' }), true)
  assert.equal(sse.comment('c\uD800d'), true)
  const expected =
    welcome +
    'id: 1\nevent: text\ndata: a\uFFFDb|\uFFFDc|\uFFFD\uFFFD|d\uFFFD\n\n' +
    'id: id-😀\nevent: pair😀\ndata: é😀\uFFFD\n\n' +
    ': c\uFFFDd\n\n'
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.deepEqual(response.body, Buffer.from(expected))
  client.close()
})

test('Buffer and Uint8Array data are sent byte for byte, split the same way', async () => {
  const body = await bodyAfterWelcome(
    (sse) => {
      assert.equal(sse.send({ eventName: 'buf', data: Buffer.from('one\r\ntwo') }), true)
      assert.equal(sse.send({ eventName: 'u8', data: new TextEncoder().encode('ü\nv') }), true)
      const big = new Uint8Array(Buffer.from('xxhello worldxx'))
      assert.equal(sse.send({ eventName: 'view', data: big.subarray(2, 13) }), true)
      assert.equal(sse.send({ eventName: 'none', data: Buffer.alloc(0) }), true)
    },
    { events: 4 },
  )
  assert.equal(
    body,
    'id: 1\nevent: buf\ndata: one\ndata: two\n\n' +
      'id: 2\nevent: u8\ndata: ü\ndata: v\n\n' +
      'id: 3\nevent: view\ndata: hello world\n\n' +
      'id: 4\nevent: none\ndata: \n\n',
  )
})

test('an explicit id is sent instead of the next number, which is not used up', async () => {
  const body = await bodyAfterWelcome(
    (sse) => {
      sse.send({ eventName: 'a', eventPayload: 1 })
      sse.send({ eventName: 'b', eventPayload: 2, id: '1526919030474-0' })
      sse.send({ eventName: 'c', data: 'x', id: 'custom' })
      sse.send({ eventName: 'd', eventPayload: 4 })
      sse.send({ eventName: 'e', eventPayload: 5, id: '' })
    },
    { events: 5 },
  )
  assert.equal(
    body,
    s42Frame(1, 'a', 1) +
      'id: 1526919030474-0\nevent: b\ndata: 2\n\n' +
      'id: custom\nevent: c\ndata: x\n\n' +
      s42Frame(2, 'd', 4) +
      'id: \nevent: e\ndata: 5\n\n',
  )
})

test('comment() sends comment lines that cannot forge fields', async () => {
  const body = await bodyAfterWelcome(
    (sse) => {
      assert.equal(sse.comment(), true)
      assert.equal(sse.comment('hello'), true)
      assert.equal(sse.comment('a\rdata: evil\r\nb'), true)
      sse.send({ eventName: 'after', eventPayload: 1 })
    },
    { events: 4 },
  )
  assert.equal(body, ':\n\n: hello\n\n: a\n: data: evil\n: b\n\n' + s42Frame(1, 'after', 1))
})

test('a real client gets multi-line data joined back, and explicit ids as lastEventId', async () => {
  const opened = deferred()
  const server = await startServer((req, res) => opened.resolve(new SSE(req, res, { keepAlive: 0 })))
  const es = new EventSource(`${server.url}/`)
  try {
    const got = []
    for (const name of ['multi', 'bytes', 'named']) es.addEventListener(name, (e) => got.push([name, e.data, e.lastEventId]))
    const sse = await opened.promise
    await new Promise((resolve) => es.addEventListener('welcome', resolve, { once: true }))
    sse.send({ eventName: 'multi', data: 'line1\nline2\r\nline3' })
    sse.send({ eventName: 'bytes', data: Buffer.from('{"a":1}') })
    sse.send({ eventName: 'named', eventPayload: { b: 2 }, id: 'stream-7' })
    await waitFor(() => got.length === 3, { what: 'three events' })
    assert.deepEqual(got, [
      ['multi', 'line1\nline2\nline3', '1'],
      ['bytes', '{"a":1}', '2'],
      ['named', '{"b":2}', 'stream-7'],
    ])
  } finally {
    es.close()
    await server.close()
  }
})

const BAD = [
  ['an id that is a number', { eventName: 'x', eventPayload: 1, id: 5 }, 'ERR_SSE_INVALID_EVENT_ID', /event\.id must be a string \(got number\)/],
  ['an id that is null', { eventName: 'x', eventPayload: 1, id: null }, 'ERR_SSE_INVALID_EVENT_ID', /got null/],
  ['an id with LF', { eventName: 'x', eventPayload: 1, id: '1\ndata: evil' }, 'ERR_SSE_INVALID_EVENT_ID', /line feed/],
  ['an id with a lone CR', { eventName: 'x', eventPayload: 1, id: '1\rdata: evil' }, 'ERR_SSE_INVALID_EVENT_ID', /carriage return/],
  ['an id with NUL', { eventName: 'x', eventPayload: 1, id: 'a\0' }, 'ERR_SSE_INVALID_EVENT_ID', /NUL/],
  ['an id with a lone surrogate', { eventName: 'x', eventPayload: 1, id: '\uD800' }, 'ERR_SSE_INVALID_EVENT_ID', /unpaired surrogate/],
  ['data and eventPayload together', { eventName: 'x', eventPayload: 1, data: '1' }, 'ERR_SSE_INVALID_DATA', /either event\.eventPayload .* or event\.data/],
  ['data that is a number', { eventName: 'x', data: 42 }, 'ERR_SSE_INVALID_DATA', /event\.data must be a string, Buffer or Uint8Array \(got number\)/],
  ['data that is an object', { eventName: 'x', data: { a: 1 } }, 'ERR_SSE_INVALID_DATA', /got object/],
  ['data that is an ArrayBuffer', { eventName: 'x', data: new ArrayBuffer(4) }, 'ERR_SSE_INVALID_DATA', /got object/],
  ['data that is a Uint16Array', { eventName: 'x', data: new Uint16Array(2) }, 'ERR_SSE_INVALID_DATA', /got object/],
  ['data that is null', { eventName: 'x', data: null }, 'ERR_SSE_INVALID_DATA', /got null/],
  ['data with a bad name', { eventName: 'x\n', data: 'ok' }, 'ERR_SSE_INVALID_EVENT_NAME', /line feed/],
]

test('bad ids and bad data throw a TypeError, write nothing and keep the id', async () => {
  const { client, sse } = await srv.open()
  for (const [label, event, code, message] of BAD) {
    assert.throws(() => sse.send(event), (err) => {
      assert.ok(err instanceof TypeError, label)
      assert.equal(err.code, code, label)
      assert.match(err.message, message, label)
      return true
    })
  }
  assert.throws(() => sse.comment(42), { name: 'TypeError', code: 'ERR_SSE_INVALID_COMMENT', message: /got number/ })
  assert.throws(() => sse.comment({ text: 'x' }), { name: 'TypeError', code: 'ERR_SSE_INVALID_COMMENT', message: /got object/ })
  assert.equal(sse.send({ eventName: 'after', eventPayload: 'fine' }), true)
  const expected = s42Frame(0, 'welcome', { uuid: sse.getUUID() }) + s42Frame(1, 'after', 'fine')
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString(), expected)
  client.close()
})

test('a toJSON that closes the stream makes send() return false and write nothing', async () => {
  const { client, sse } = await srv.open()
  const payload = { toJSON: () => (sse.close(), 'late') }
  assert.equal(sse.send({ eventName: 'x', eventPayload: payload }), false)
  await waitFor(() => client.response()?.complete, { what: 'the end of the stream' })
  assert.equal(client.response().body.toString(), s42Frame(0, 'welcome', { uuid: sse.getUUID() }))
})

test('comment() and send() with data return false on a closed stream, without throwing', async () => {
  const { client, sse } = await srv.open()
  sse.close()
  assert.equal(sse.comment('late'), false)
  assert.equal(sse.send({ eventName: 'x', data: 'late' }), false)
  assert.equal(sse.send({ eventName: 'x', data: 42 }), false)
  assert.equal(sse.comment(42), false)
  client.close()
})
