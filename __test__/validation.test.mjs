// Bad input: a synchronous TypeError with a stable code, nothing written, the
// id kept for the next event, and the connection still working.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { s42Frame, splitEvents, startStreamServer } from './helpers.mjs'

let srv
before(async () => {
  srv = await startStreamServer((req, res) => new SSE(req, res))
})
after(() => srv.close())

const open = () => srv.open()

const circular = { name: 'loop' }
circular.self = circular

const BAD_NAMES = [
  ['a number', 42, /must be a string \(got number\)/],
  ['undefined', undefined, /must be a string \(got undefined\)/],
  ['null', null, /must be a string \(got null\)/],
  ['an object', { toString: () => 'update' }, /must be a string \(got object\)/],
  ['a String object', new String('update'), /must be a string \(got object\)/],
  ['a lone CR (forges a data line)', 'a\rdata: evil', /carriage return/],
  ['a LF', 'a\ndata: evil', /line feed/],
  ['CRLF', 'a\r\ndata: evil', /carriage return/],
  ['a trailing LF', 'update\n', /line feed/],
  ['NUL', 'up\0date', /NUL/],
  ['a lone high surrogate', 'up\uD800date', /unpaired surrogate/],
  ['a lone low surrogate', '\uDC00', /unpaired surrogate/],
  ['reversed surrogates', '\uDE00\uD83D', /unpaired surrogate/],
]

/**
 * The message carries the runtime's own JSON.stringify error, whose wording
 * is the engine's (V8: "Converting circular structure ...", JavaScriptCore:
 * "JSON.stringify cannot serialize cyclic structures."): its first line,
 * as a RegExp.
 */
function stringifyError(value) {
  try {
    JSON.stringify(value)
  } catch (err) {
    const first = String(err.message).split('\n')[0].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    return new RegExp(`cannot be serialised by JSON\\.stringify: ${first}`)
  }
  throw new Error('JSON.stringify did not throw')
}

const BAD_PAYLOADS = [
  ['a circular object', circular, stringifyError(circular)],
  ['a BigInt', { n: 10n }, stringifyError({ n: 10n })],
  ['undefined', undefined, /must be serialisable by JSON\.stringify, which returned undefined \(got undefined\)/],
  ['a missing payload', Symbol.for('missing'), /must be serialisable by JSON\.stringify, which returned undefined \(got undefined\)/],
  ['a function', () => 1, /must be serialisable by JSON\.stringify, which returned undefined \(got function\)/],
  ['a symbol', Symbol('s'), /must be serialisable by JSON\.stringify, which returned undefined \(got symbol\)/],
  ['a throwing toJSON', { toJSON() { throw new Error('nope') } }, /cannot be serialised by JSON\.stringify: nope/],
  ['a toJSON that returns undefined', { toJSON: () => undefined }, /must be serialisable by JSON\.stringify, which returned undefined \(got object\)/],
]

/** `fn` throws a TypeError with `code` whose message names `field` and matches `message`. */
function assertSendError(fn, { label, code, field, message }) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof TypeError, `${label}: TypeError`)
    assert.equal(err.code, code, label)
    assert.match(err.message, field, label)
    assert.match(err.message, message, label)
    return true
  })
}

test('invalid event names throw ERR_SSE_INVALID_EVENT_NAME and write nothing', async () => {
  const { client, sse } = await open()
  for (const [label, eventName, message] of BAD_NAMES) {
    assertSendError(() => sse.send({ eventName, eventPayload: { x: 1 } }), {
      label,
      code: 'ERR_SSE_INVALID_EVENT_NAME',
      field: /event\.eventName/,
      message,
    })
  }
  // Still working, and the id was not used up by the failures.
  assert.equal(sse.send({ eventName: 'after', eventPayload: { ok: true } }), true)
  const expected = s42Frame(0, 'welcome', { uuid: sse.getUUID() }) + s42Frame(1, 'after', { ok: true })
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString(), expected)
  client.close()
})

test('unserialisable payloads throw ERR_SSE_INVALID_PAYLOAD and write nothing', async () => {
  const { client, sse } = await open()
  for (const [label, payload, message] of BAD_PAYLOADS) {
    const data = payload === Symbol.for('missing') ? { eventName: 'x' } : { eventName: 'x', eventPayload: payload }
    assertSendError(() => sse.send(data), {
      label,
      code: 'ERR_SSE_INVALID_PAYLOAD',
      field: /event\.eventPayload/,
      message,
    })
  }
  assert.equal(sse.send({ eventName: 'after', eventPayload: 'still fine' }), true)
  const expected = s42Frame(0, 'welcome', { uuid: sse.getUUID() }) + s42Frame(1, 'after', 'still fine')
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString(), expected)
  client.close()
})

test('send() with something other than an object throws ERR_SSE_INVALID_EVENT', async () => {
  const { client, sse } = await open()
  for (const value of [undefined, null, 'update', 42, true]) {
    assert.throws(() => sse.send(value), { name: 'TypeError', code: 'ERR_SSE_INVALID_EVENT' })
  }
  assert.throws(() => sse.send(), { name: 'TypeError', code: 'ERR_SSE_INVALID_EVENT', message: /got undefined/ })
  assert.equal(sse.send({ eventName: 'ok', eventPayload: 1 }), true)
  const response = await client.waitForBody((body) => splitEvents(body).length === 2)
  assert.equal(splitEvents(response.body.toString())[1], s42Frame(1, 'ok', 1))
  client.close()
})

test('names that are valid pass through unchanged', async () => {
  const { client, sse } = await open()
  const names = ['update', 'with space', 'dots.and-dashes_', 'événement', '😀', 'a\u2028b', 'tab\there', '\uFFFD', ':colon']
  for (const eventName of names) assert.equal(sse.send({ eventName, eventPayload: eventName }), true)
  const response = await client.waitForBody((body) => splitEvents(body).length === names.length + 1)
  const events = splitEvents(response.body.toString('utf8'))
  names.forEach((name, i) => assert.equal(events[i + 1], s42Frame(i + 1, name, name)))
  client.close()
})

test('an empty name is written as the original writes it (clients see a "message" event)', async () => {
  const { client, sse } = await open()
  assert.equal(sse.send({ eventName: '', eventPayload: { m: 1 } }), true)
  const response = await client.waitForBody((body) => splitEvents(body).length === 2)
  assert.equal(splitEvents(response.body.toString())[1], 'id: 1\nevent: \ndata: {"m":1}\n\n')
  client.close()
})

test('the constructor rejects what is not a request and a response', async () => {
  const { client, res } = await open()
  const cases = [
    [undefined, res, /req must be an object \(got undefined\)/],
    [{}, null, /res must be an object \(got null\)/],
    [{}, 'res', /res must be an object \(got string\)/],
    [{}, {}, /res\.writeHead is not a function/],
    [{}, { writeHead() {}, write() {}, end() {} }, /res\.on is not a function/],
  ]
  for (const [req, response, message] of cases) {
    assert.throws(() => new SSE(req, response), { name: 'TypeError', code: 'ERR_SSE_INVALID_ARGUMENT', message })
  }
  client.close()
})
