// The third constructor argument: each option's effect on the exact bytes
// and headers, and a TypeError that writes nothing for each bad value.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { rawGet, s42Frame, splitEvents, startServer, waitFor } from './helpers.mjs'

// Each request names the options to use: /?case=<key of CASES>.
const CASES = {
  defaults: undefined,
  retry: { retry: 250 },
  noWelcome: { welcome: false },
  retryNoWelcome: { retry: 0, welcome: false },
  headers: {
    headers: {
      'cache-control': 'no-store',
      'X-Custom': 'yes',
      'Set-Cookie': ['a=1', 'b=2'],
      'X-Number': 7,
    },
  },
  contentType: { headers: { 'Content-Type': 'text/event-stream; charset=utf-8' } },
  heartbeat: { keepAlive: 30 },
  noHeartbeat: { keepAlive: 0 },
}

let srv
const streams = new Map()
before(async () => {
  srv = await startServer((req, res) => {
    const key = new URL(req.url, 'http://x').searchParams.get('case')
    const sse = new SSE(req, res, CASES[key])
    streams.set(key, sse)
  })
})
after(() => srv.close())

async function open(key) {
  const client = rawGet(srv.port, `/?case=${key}`)
  await waitFor(() => streams.has(key), { what: `stream ${key}` })
  const sse = streams.get(key)
  streams.delete(key)
  return { client, sse }
}

test('default options: the S42Core headers plus X-Accel-Buffering, then the welcome event', async () => {
  const { client, sse } = await open('defaults')
  const response = await client.waitForBody((body) => body.endsWith('\n\n'))
  assert.equal(response.status, 200)
  assert.equal(response.headers['content-type'], 'text/event-stream')
  assert.equal(response.headers['cache-control'], 'no-cache, no-transform')
  assert.equal(response.headers['connection'], 'keep-alive')
  assert.equal(response.headers['x-accel-buffering'], 'no')
  assert.equal(response.body.toString(), s42Frame(0, 'welcome', { uuid: sse.getUUID() }))
  client.close()
})

test('retry is sent as its own block before the welcome event', async () => {
  const { client, sse } = await open('retry')
  const expected = 'retry: 250\n\n' + s42Frame(0, 'welcome', { uuid: sse.getUUID() })
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString(), expected)
  client.close()
})

test('welcome: false leaves out the welcome event; ids still start at 1', async () => {
  const { client, sse } = await open('noWelcome')
  assert.equal(sse.send({ eventName: 'first', eventPayload: 1 }), true)
  const response = await client.waitForBody((body) => body.endsWith('\n\n'))
  assert.equal(response.body.toString(), s42Frame(1, 'first', 1))
  assert.match(sse.getUUID(), /^[0-9a-f-]{36}$/)
  client.close()
})

test('retry: 0 is allowed and sent even without a welcome event', async () => {
  const { client, sse } = await open('retryNoWelcome')
  sse.send({ eventName: 'e', eventPayload: null })
  const expected = 'retry: 0\n\n' + s42Frame(1, 'e', null)
  const response = await client.waitForBody((body) => body.length >= expected.length)
  assert.equal(response.body.toString(), expected)
  client.close()
})

test('headers are merged over the defaults, a name in any case replacing the default', async () => {
  const { client } = await open('headers')
  const response = await client.waitForBody((body) => body.endsWith('\n\n'))
  const names = response.rawHeaderNames.map((n) => n.toLowerCase())
  assert.equal(names.filter((n) => n === 'cache-control').length, 1, 'one Cache-Control header')
  assert.equal(response.headers['cache-control'], 'no-store')
  assert.equal(response.headers['x-custom'], 'yes')
  assert.equal(response.headers['x-number'], '7')
  assert.equal(names.filter((n) => n === 'set-cookie').length, 2, 'both cookies')
  assert.equal(response.headers['content-type'], 'text/event-stream')
  assert.equal(response.headers['connection'], 'keep-alive')
  client.close()
})

test('Content-Type can be given with a charset', async () => {
  const { client } = await open('contentType')
  const response = await client.waitForBody((body) => body.endsWith('\n\n'))
  assert.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8')
  assert.equal(response.rawHeaderNames.filter((n) => n.toLowerCase() === 'content-type').length, 1)
  client.close()
})

test('keepAlive sends a heartbeat comment between events', async () => {
  const { client, sse } = await open('heartbeat')
  const welcome = s42Frame(0, 'welcome', { uuid: sse.getUUID() })
  const response = await client.waitForBody((body) => body.split(':\n\n').length >= 3, { timeoutMs: 5000 })
  const body = response.body.toString()
  assert.ok(body.startsWith(welcome + ':\n\n'), JSON.stringify(body))
  assert.equal(body.slice(welcome.length).replaceAll(':\n\n', ''), '', 'nothing but heartbeats after the welcome')
  sse.send({ eventName: 'after', eventPayload: 1 })
  const next = await client.waitForBody((b) => b.includes(s42Frame(1, 'after', 1)))
  for (const block of splitEvents(next.body.toString())) {
    assert.ok(block === ':\n\n' || block.startsWith('id: '), `whole blocks only: ${JSON.stringify(block)}`)
  }
  sse.close()
})

test('keepAlive: 0 sends no heartbeat', async () => {
  const { client, sse } = await open('noHeartbeat')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const response = client.response()
  assert.equal(response.body.toString(), s42Frame(0, 'welcome', { uuid: sse.getUUID() }))
  client.close()
})

const BAD_OPTIONS = [
  ['a string', 'fast', /options must be an object \(got string\)/],
  ['a number', 5, /options must be an object \(got number\)/],
  ['keepAlive negative', { keepAlive: -1 }, /options\.keepAlive must be an integer from 0 to 2147483647/],
  ['keepAlive fractional', { keepAlive: 1.5 }, /options\.keepAlive must be an integer/],
  ['keepAlive too large', { keepAlive: 2 ** 31 }, /options\.keepAlive must be an integer/],
  ['keepAlive a string', { keepAlive: '1000' }, /options\.keepAlive must be a number \(got string\)/],
  ['keepAlive NaN', { keepAlive: NaN }, /options\.keepAlive must be an integer/],
  ['retry negative', { retry: -5 }, /options\.retry must be an integer/],
  ['retry fractional', { retry: 0.5 }, /options\.retry must be an integer/],
  ['retry Infinity', { retry: Infinity }, /options\.retry must be an integer/],
  ['retry a string', { retry: '100' }, /options\.retry must be a number \(got string\)/],
  ['retry null', { retry: null }, /options\.retry must be a number \(got null\)/],
  ['welcome a string', { welcome: 'no' }, /options\.welcome must be a boolean \(got string\)/],
  ['welcome 0', { welcome: 0 }, /options\.welcome must be a boolean \(got number\)/],
  ['maxBufferedBytes 0', { maxBufferedBytes: 0 }, /options\.maxBufferedBytes must be a positive integer or Infinity/],
  ['maxBufferedBytes negative', { maxBufferedBytes: -1 }, /options\.maxBufferedBytes must be a positive integer/],
  ['maxBufferedBytes a string', { maxBufferedBytes: '1mb' }, /options\.maxBufferedBytes must be a number/],
  ['headers an array', { headers: [['a', 'b']] }, /options\.headers must be an object of header names and values \(got array\)/],
  ['headers a string', { headers: 'X-A: 1' }, /options\.headers must be an object .* \(got string\)/],
  ['a header value an object', { headers: { 'X-A': { v: 1 } } }, /options\.headers\["X-A"\] must be a string, a number or an array of strings/],
  ['a header value undefined', { headers: { 'X-A': undefined } }, /options\.headers\["X-A"\]/],
  ['a header array with a number', { headers: { 'X-A': ['a', 1] } }, /options\.headers\["X-A"\]/],
]

test('bad options throw ERR_SSE_INVALID_OPTION before anything is written', async () => {
  const results = []
  const bad = await startServer((req, res) => {
    for (const [label, options, message] of BAD_OPTIONS) {
      try {
        new SSE(req, res, options)
        results.push(`${label}: did not throw`)
      } catch (err) {
        if (!(err instanceof TypeError)) results.push(`${label}: not a TypeError`)
        else if (err.code !== 'ERR_SSE_INVALID_OPTION') results.push(`${label}: code ${err.code}`)
        else if (!message.test(err.message)) results.push(`${label}: message ${err.message}`)
      }
      if (res.headersSent) results.push(`${label}: headers were sent`)
    }
    // The response is untouched: it can still be answered normally.
    res.writeHead(204).end()
  })
  try {
    const client = rawGet(bad.port, '/')
    await waitFor(() => client.response() !== null, { what: 'the 204' })
    assert.equal(client.response().status, 204)
    assert.deepEqual(results, [])
    client.close()
  } finally {
    await bad.close()
  }
})

test('undefined and null options mean the defaults; unknown keys are ignored', async () => {
  const made = []
  const server = await startServer((req, res) => {
    const which = req.url.slice(1)
    const options = { undefined: undefined, null: null, unknown: { colour: 'blue' } }[which]
    made.push(new SSE(req, res, options))
  })
  try {
    for (const which of ['undefined', 'null', 'unknown']) {
      const client = rawGet(server.port, `/${which}`)
      const response = await client.waitForBody((body) => body.endsWith('\n\n'))
      assert.equal(response.headers['x-accel-buffering'], 'no', which)
      assert.equal(response.body.toString(), s42Frame(0, 'welcome', { uuid: made.at(-1).getUUID() }), which)
      client.close()
    }
  } finally {
    await server.close()
  }
})
