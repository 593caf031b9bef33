// The data line is exactly what JSON.stringify returns, for a table of payloads.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { SSE } from 'native-sse'
import { rawGet, splitEvents, startServer } from './helpers.mjs'

class Money {
  constructor(cents) {
    this.cents = cents
  }
  toJSON() {
    return `${(this.cents / 100).toFixed(2)} EUR`
  }
}

const keyOrder = {}
keyOrder.z = 1
keyOrder.a = 2
keyOrder[10] = 'ten'
keyOrder[2] = 'two'
keyOrder.m = 3

const PAYLOADS = {
  'flat object': { message: 'New update available!' },
  'nested objects': { a: { b: { c: { d: [1, { e: 'f' }] } } } },
  arrays: [1, 'two', [3, [4]], { five: 5 }, []],
  'strings with quotes and backslashes': { q: 'she said "hi" \\o/ \'ok\'' },
  'strings with newlines': { text: 'line 1\nline 2\r\nline 3\rline 4' },
  'U+2028 and U+2029': { ls: 'a\u2028b\u2029c' },
  emoji: { e: '😀🎉 👩‍👩‍👧', flag: '🇪🇺' },
  'control characters': { c: '\u0000\u0001\u001f\t\b\f' },
  numbers: { int: 42, neg: -7, float: 3.14159, exp: 1e21, tiny: 5e-7, nan: NaN, inf: Infinity, negZero: -0 },
  'null payload': null,
  'null inside': { n: null },
  booleans: { t: true, f: false },
  'true payload': true,
  'number payload': 12.5,
  'string payload': 'just a string',
  'empty string payload': '',
  Date: new Date(Date.UTC(2024, 1, 29, 12, 30, 0, 123)),
  'Date inside': { at: new Date(0) },
  'toJSON object': new Money(1999),
  'toJSON inside': { price: new Money(5) },
  'undefined properties': { keep: 1, drop: undefined, fn() {}, sym: Symbol('s') },
  'undefined in arrays': [undefined, () => 1, Symbol('x')],
  'key order': keyOrder,
  'empty object': {},
  'boxed values': { s: new String('boxed'), n: new Number(3), b: new Boolean(false) },
  'Map and Set': { m: new Map([[1, 2]]), s: new Set([1]) },
  'lone surrogate in data': { s: 'a\uD800b' },
  'long string': { big: 'x'.repeat(100_000) },
  'class instance': new (class Point {
    constructor() {
      this.x = 1
      this.y = 2
    }
  })(),
  'getter': {
    get computed() {
      return 'value'
    },
  },
}

let srv
let sse
let client

before(async () => {
  let ready
  const created = new Promise((r) => (ready = r))
  srv = await startServer((req, res) => {
    sse = new SSE(req, res)
    ready()
  })
  client = rawGet(srv.port, '/')
  await created
})
after(async () => {
  client.close()
  await srv.close()
})

test('data is JSON.stringify(eventPayload) for every payload in the table', async () => {
  const entries = Object.entries(PAYLOADS)
  for (const [, payload] of entries) assert.equal(sse.send({ eventName: 'p', eventPayload: payload }), true)
  const response = await client.waitForBody((body) => splitEvents(body).length === entries.length + 1)
  const events = splitEvents(response.body.toString('utf8'))
  entries.forEach(([label, payload], i) => {
    const expected = `id: ${i + 1}\nevent: p\ndata: ${JSON.stringify(payload)}\n\n`
    assert.equal(events[i + 1], expected, label)
  })
})
