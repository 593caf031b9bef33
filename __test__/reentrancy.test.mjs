// User code that re-enters the library from inside its own writes (a
// `res.write` or `res.end` wrapper, as APM tools and frameworks install)
// or throws where the library carries out the core's answers. Found by an
// adversarial review of the rebuilt engine; each test fails on the front
// before its fix. The rule they check: the chunk being written gets out
// whole and in order, ends wait until the writes in progress are done, and
// no user code can stop other streams.
import assert from 'node:assert/strict'
import http from 'node:http'
import path from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { SSE } from 'native-sse'
import { rawGet, runScript, splitEvents, startServer, waitFor } from './helpers.mjs'

const FIXTURES = fileURLToPath(new URL('./fixtures/reentrancy/', import.meta.url))
const KiB = 1024

const children = new Set()
after(() => {
  for (const child of children) child.kill('SIGKILL')
})

function runFixture(name, args) {
  return runScript(path.join(FIXTURES, name), args, { children })
}

/** The event names in a raw client's body, in order (heartbeats left out). */
function names(client) {
  const parsed = client.response()
  if (parsed === null) return []
  return splitEvents(parsed.body.toString('utf8'))
    .map((block) => /^event: (.*)$/m.exec(block)?.[1])
    .filter((name) => name !== undefined)
}

/** The `id:` lines of a raw client's body, in order. */
function ids(client) {
  const parsed = client.response()
  if (parsed === null) return []
  return [...parsed.body.toString('utf8').matchAll(/^id: (.*)$/gm)].map((m) => m[1])
}

/**
 * A server whose first stream's `res.write` is wrapped by `wrap(sse, res,
 * original)`; `open(n)` connects `n` raw clients and waits for their welcome.
 */
async function wrappedServer(wrap) {
  const streams = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    if (streams.length === 0) {
      const original = res.write
      res.write = wrap(sse, res, original)
    }
    streams.push({ sse, res })
  })
  const clients = []
  srv.streams = streams
  srv.open = async (n) => {
    for (let i = 0; i < n; i++) {
      const client = rawGet(srv.port, '/')
      clients.push(client)
      await waitFor(() => streams.length === clients.length, { what: 'the stream' })
      await client.waitForBody((body) => body.includes('event: welcome'))
    }
    return clients
  }
  const close = srv.close
  srv.close = async () => {
    for (const client of clients) client.close()
    await close()
  }
  return srv
}

for (const [how, two] of [
  ['close()', false],
  ['close()', true],
  ['res.end()', false],
  ['res.end()', true],
]) {
  const tick = two ? 'a tick with two streams' : 'a tick with one stream'
  test(`${how} inside a res.write wrapper, in ${tick}: the chunk being written arrives, then the end`, async (t) => {
    let armed = false
    const srv = await wrappedServer((sse, res, original) =>
      function (chunk, ...rest) {
        if (armed && String(chunk).includes('event: trigger')) {
          armed = false
          if (how === 'close()') sse.close()
          else res.end()
        }
        return original.call(this, chunk, ...rest)
      },
    )
    t.after(() => srv.close())
    const [first] = await srv.open(two ? 2 : 1)
    armed = true
    srv.streams[0].sse.send({ eventName: 'trigger', eventPayload: 1 })
    if (two) srv.streams[1].sse.send({ eventName: 'other', eventPayload: 2 })
    await waitFor(() => first.response()?.complete === true, { what: 'the end of the stream' })
    assert.deepEqual(names(first), ['welcome', 'trigger'])
    assert.equal(srv.streams[0].sse.closed, true)
  })
}

test('a large send from inside a res.write wrapper comes after the chunk being written', async (t) => {
  const big = 'x'.repeat(200 * KiB)
  for (const [label, outerData, two] of [
    ['one stream in the tick', 'small', false],
    ['two streams in the tick', 'small', true],
    ['the outer event itself above 128 KiB', big, false],
  ]) {
    let armed = false
    const srv = await wrappedServer((sse, res, original) =>
      function (chunk, ...rest) {
        if (armed && String(chunk).includes('event: outer')) {
          armed = false
          sse.send({ eventName: 'inner', data: big })
        }
        return original.call(this, chunk, ...rest)
      },
    )
    try {
      const [first] = await srv.open(two ? 2 : 1)
      armed = true
      srv.streams[0].sse.send({ eventName: 'outer', data: outerData })
      if (two) srv.streams[1].sse.send({ eventName: 'other', eventPayload: 2 })
      await waitFor(() => names(first).includes('inner'), { what: `the inner event (${label})` })
      assert.deepEqual(ids(first), ['0', '1', '2'], label)
      assert.deepEqual(names(first), ['welcome', 'outer', 'inner'], label)
    } finally {
      await srv.close()
    }
  }
})

test('a second end inside a res.write wrapper waits for the first: nothing is written after the end', async (t) => {
  for (const moves of [['close', 'end'], ['end', 'end'], ['close', 'send', 'close']]) {
    let armed = false
    const errors = []
    const srv = await wrappedServer((sse, res, original) => {
      res.on('error', (err) => errors.push(err.code))
      return function (chunk, ...rest) {
        if (armed && String(chunk).includes('event: trigger')) {
          armed = false
          for (const move of moves) {
            if (move === 'close') sse.close()
            else if (move === 'end') res.end()
            else sse.send({ eventName: 'late', eventPayload: 0 })
          }
        }
        return original.call(this, chunk, ...rest)
      }
    })
    try {
      const [first] = await srv.open(2)
      armed = true
      srv.streams[0].sse.send({ eventName: 'trigger', eventPayload: 1 })
      srv.streams[1].sse.send({ eventName: 'other', eventPayload: 2 })
      await waitFor(() => first.response()?.complete === true, { what: 'the end of the stream' })
      await new Promise((resolve) => setTimeout(resolve, 20))
      assert.deepEqual(names(first), ['welcome', 'trigger'], moves.join(', '))
      assert.deepEqual(errors, [], `no write after end (${moves.join(', ')})`)
    } finally {
      await srv.close()
    }
  }
})

test('a constructor that fails while the front takes over the response stops no other stream', async (t) => {
  for (const failure of ['res.end cannot be replaced', 'res.on throws']) {
    let healthy = null
    let thrown = null
    const srv = await startServer((req, res) => {
      if (req.url === '/fail') {
        if (failure === 'res.end cannot be replaced') {
          Object.defineProperty(res, 'end', { get: () => http.ServerResponse.prototype.end, configurable: true })
        } else {
          res.on = () => {
            throw new Error('on() threw')
          }
        }
        try {
          new SSE(req, res, { keepAlive: 0 })
        } catch (err) {
          thrown = err
          res.destroy()
        }
        return
      }
      const sse = new SSE(req, res, { keepAlive: 20 })
      if (healthy === null) healthy = sse
    })
    try {
      const a = rawGet(srv.port, '/a')
      await a.waitForBody((body) => body.includes('event: welcome'))
      const failing = rawGet(srv.port, '/fail')
      await waitFor(() => thrown !== null, { what: 'the failing constructor' })
      failing.close()
      healthy.send({ eventName: 'after', eventPayload: 1 })
      await a.waitForBody((body) => body.includes('event: after') && body.split(':\n\n').length > 2)
      const b = rawGet(srv.port, '/b')
      await b.waitForBody((body) => body.includes('event: welcome'))
      assert.match(String(thrown), failure === 'res.on throws' ? /on\(\) threw/ : /end/)
      a.close()
      b.close()
    } finally {
      await srv.close()
    }
  }
})

test('a throwing res.write wrapper is an uncaught exception and ends its stream; the others go on', async () => {
  const { code, report: result, stderr } = await runFixture('throwing-user-code.mjs', ['write'])
  assert.equal(code, 0, stderr)
  assert.deepEqual(result.uncaught, ['write threw'])
  assert.equal(result.closed[0], true, 'the stream whose chunk was lost ends')
  assert.equal(result.ended[0], true, 'its client sees the end')
  assert.deepEqual(result.received[1], ['welcome', 'boom', 'after'])
  assert.deepEqual(result.received[2], ['welcome', 'boom', 'after'])
})

test('a throwing res.end wrapper in a postponed end does not keep the other postponed ends from happening', async () => {
  const { code, report: result, stderr } = await runFixture('throwing-user-code.mjs', ['end'])
  assert.equal(code, 0, stderr)
  assert.deepEqual(result.uncaught, ['end threw'])
  assert.deepEqual(result.ended, [true, false, true])
  assert.deepEqual(result.received[0], ['welcome', 'go'])
  assert.deepEqual(result.received[1], ['welcome', 'go', 'after'])
  assert.deepEqual(result.received[2], ['welcome', 'go'])
})

test('methods called on something that is not an SSE throw a TypeError with a code', () => {
  for (const [what, call] of [
    ['getUUID', () => SSE.prototype.getUUID.call({})],
    ['send', () => SSE.prototype.send.call({}, { eventName: 'a', eventPayload: 1 })],
    ['lastEventId', () => Object.getOwnPropertyDescriptor(SSE.prototype, 'lastEventId').get.call({})],
    ['closed', () => Object.getOwnPropertyDescriptor(SSE.prototype, 'closed').get.call(null)],
  ]) {
    assert.throws(call, (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_ARGUMENT', what)
  }
})
