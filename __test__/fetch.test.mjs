// The Fetch form, `new SSE(request)` + `getResponse()`, with the runtime's
// own Request and Response: the bytes S42Core 3.x writes (no welcome,
// ids from 0), events sent before the body is read, the client leaving by
// signal or by cancelling the body, backpressure and the cap, close(), the
// options and errors, and a channel that mixes Node and Fetch members.
// Runs under `node --test` and `bun test`; the servers of each runtime and
// framework are in runtimes.test.mjs.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { Channel, SSE } from 'native-sse'
import { deferred, rawGet, s42Frame, startServer, UUID_V4, waitFor } from './helpers.mjs'

const URL_BASE = 'http://127.0.0.1/events'
const decoder = new TextDecoder()

const request = (path = '', init = {}) => new Request(URL_BASE + path, init)

/** Reads the body until `predicate(text)` holds (or it ends); bounded. */
async function readUntil(reader, predicate, { timeoutMs = 5000 } = {}) {
  let text = ''
  const deadline = Date.now() + timeoutMs
  while (!predicate(text)) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`timed out reading the body; got ${JSON.stringify(text)}`)
    let timer
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out reading the body; got ${JSON.stringify(text)}`)), left)
    })
    const { value, done } = await Promise.race([reader.read(), timeout]).finally(() => clearTimeout(timer))
    if (done) break
    assert.ok(value instanceof Uint8Array, 'the body streams Uint8Array chunks')
    text += decoder.decode(value, { stream: true })
  }
  return text
}

/** The whole body of a stream that is closed (or about to be). */
async function bodyText(response) {
  return readUntil(response.body.getReader(), () => false)
}

/** S42Core 3.x's event bytes: `id`, `event`, `data: JSON` and a blank line. */
const frame = (id, name, payload) => s42Frame(id, name, payload)

const unhandled = []
const onUncaught = (err) => unhandled.push(err)
before(() => process.on('uncaughtException', onUncaught))
after(() => {
  process.off('uncaughtException', onUncaught)
  assert.deepEqual(unhandled, [], 'no uncaught errors')
})

test('the response: status 200, the event-stream headers, no Connection header', () => {
  const sse = new SSE(request())
  const response = sse.getResponse()
  assert.ok(response instanceof Response)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('content-type'), 'text/event-stream')
  assert.equal(response.headers.get('cache-control'), 'no-cache, no-transform')
  assert.equal(response.headers.get('x-accel-buffering'), 'no')
  assert.equal(response.headers.get('connection'), null, 'the runtime owns the connection')
  assert.equal(sse.getResponse(), response, 'getResponse() returns the same Response each time')
  sse.close()
})

test("S42Core 3.x's bytes: no welcome, ids from 0, events sent before the body is read", async () => {
  const sse = new SSE(request())
  assert.match(sse.getUUID(), UUID_V4)
  assert.equal(sse.send({ eventName: 'a', eventPayload: { n: 1 } }), true)
  assert.equal(sse.send({ eventName: 'b', eventPayload: 'two' }), true)
  sse.send({ eventName: 'c', eventPayload: [3] })
  // The body is read only after a few ticks and a timer.
  await new Promise((resolve) => setTimeout(resolve, 30))
  sse.close()
  assert.equal(
    await bodyText(sse.getResponse()),
    frame(0, 'a', { n: 1 }) + frame(1, 'b', 'two') + frame(2, 'c', [3]),
  )
})

test('welcome: true gives the Node form: welcome with id 0, events from 1', async () => {
  const sse = new SSE(request(), { welcome: true, retry: 2500 })
  sse.send({ eventName: 'a', eventPayload: 1 })
  sse.close()
  assert.equal(
    await bodyText(sse.getResponse()),
    'retry: 2500\n\n' + frame(0, 'welcome', { uuid: sse.getUUID() }) + frame(1, 'a', 1),
  )
})

test('explicit ids, raw data and comments frame as in the Node form', async () => {
  const sse = new SSE(request())
  sse.send({ eventName: 'a', data: 'line 1\nline 2', id: 'x-1' })
  sse.send({ eventName: 'b', eventPayload: null })
  sse.comment('hi')
  sse.send({ eventName: 'c', data: new Uint8Array([0x68, 0xc3, 0xa9]) })
  sse.close()
  assert.equal(
    await bodyText(sse.getResponse()),
    'id: x-1\nevent: a\ndata: line 1\ndata: line 2\n\n' + frame(0, 'b', null) + ': hi\n\n' + 'id: 1\nevent: c\ndata: hé\n\n',
  )
})

test('a large event arrives whole (bytes, not a string)', async () => {
  const sse = new SSE(request())
  const big = 'é'.repeat(100_000)
  sse.send({ eventName: 'big', eventPayload: big })
  sse.close()
  assert.equal(await bodyText(sse.getResponse()), frame(0, 'big', big))
})

test('lastEventId from the Last-Event-ID header, else the lastEventId query parameter', () => {
  const cases = [
    [request('', { headers: { 'Last-Event-ID': 'abc-7' } }), 'abc-7'],
    [request('?lastEventId=q-3'), 'q-3'],
    [request('?lastEventId=q-3', { headers: { 'Last-Event-ID': 'h-1' } }), 'h-1'],
    [request('?lastEventId=' + encodeURIComponent('a b')), null],
    [request('', { headers: { 'Last-Event-ID': 'x'.repeat(129) } }), null],
    [request(), null],
  ]
  for (const [req, expected] of cases) {
    const sse = new SSE(req)
    assert.equal(sse.lastEventId, expected, req.url)
    sse.close()
  }
})

test('options are checked as in the Node form, and a bad one opens nothing', () => {
  for (const [options, pattern] of [
    [{ keepAlive: -1 }, /new SSE\(request, options\): options\.keepAlive must be an integer/],
    [{ welcome: 'yes' }, /options\.welcome must be a boolean/],
    [{ maxBufferedBytes: 0 }, /options\.maxBufferedBytes/],
    ['fast', /options must be an object \(got string\)/],
    [{ headers: { 'X-Bad': 'a\nb' } }, /options\.headers\["X-Bad"\] is not a valid header/],
  ]) {
    assert.throws(
      () => new SSE(request(), options),
      (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_OPTION' && pattern.test(err.message),
      JSON.stringify(options),
    )
  }
  assert.throws(
    () => new SSE(request(), {}, {}),
    (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_ARGUMENT',
  )
})

// Under WASI, napi-rs turned an exception thrown through the constructor's
// call into the front into a plain Error with its message: the bad header
// arrived as GenericFailure instead of TypeError ERR_SSE_INVALID_OPTION.
test('an exception thrown while the constructor sets the stream up reaches the caller as it was thrown', () => {
  assert.throws(
    () => new SSE(request(), { headers: { 'X-Bad': 'a\nb' } }),
    (err) => err instanceof TypeError && err.code === 'ERR_SSE_INVALID_OPTION',
  )
  if (onDeno) return // Deno does not read the signal (see below)
  const thrown = new RangeError('from the signal getter')
  thrown.code = 'MINE'
  assert.throws(
    () =>
      new SSE({
        url: URL_BASE,
        headers: new Headers(),
        get signal() {
          throw thrown
        },
      }),
    (err) => err === thrown,
  )
})

test('user headers go on the response; an array repeats the header', () => {
  const sse = new SSE(request(), { headers: { 'X-Stream': 'prices', 'Set-Cookie': ['a=1', 'b=2'], 'Cache-Control': 'no-store' } })
  const headers = sse.getResponse().headers
  assert.equal(headers.get('x-stream'), 'prices')
  assert.deepEqual(headers.getSetCookie(), ['a=1', 'b=2'])
  assert.equal(headers.get('cache-control'), 'no-store', 'a user header replaces a default')
  sse.close()
})

test('send() checks events as in the Node form and writes nothing for a bad one', async () => {
  const sse = new SSE(request())
  assert.throws(() => sse.send({ eventName: 'a\nb', eventPayload: 1 }), { code: 'ERR_SSE_INVALID_EVENT_NAME' })
  assert.throws(() => sse.send({ eventName: 'a', eventPayload: () => 1 }), { code: 'ERR_SSE_INVALID_PAYLOAD' })
  assert.throws(() => sse.send(null), { code: 'ERR_SSE_INVALID_EVENT' })
  sse.send({ eventName: 'ok', eventPayload: 0 })
  sse.close()
  assert.equal(await bodyText(sse.getResponse()), frame(0, 'ok', 0), 'the counter was not used up')
})

test('getResponse() on a Node-form stream throws ERR_SSE_NOT_FETCH_FORM', async () => {
  const opened = deferred()
  const srv = await startServer((req, res) => opened.resolve(new SSE(req, res)))
  const client = rawGet(srv.port)
  try {
    const sse = await opened.promise
    assert.throws(() => sse.getResponse(), (err) => err instanceof TypeError && err.code === 'ERR_SSE_NOT_FETCH_FORM')
    assert.throws(() => SSE.prototype.getResponse.call({}), { code: 'ERR_SSE_INVALID_ARGUMENT' })
  } finally {
    client.socket.destroy()
    await srv.close()
  }
})

test('close() ends the body after the pending bytes; again does nothing', async () => {
  const sse = new SSE(request())
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  sse.send({ eventName: 'last', eventPayload: 1 })
  sse.close()
  sse.close()
  assert.equal(sse.closed, true)
  assert.equal(sse.send({ eventName: 'late', eventPayload: 2 }), false)
  assert.equal(await bodyText(sse.getResponse()), frame(0, 'last', 1))
  await waitFor(() => reasons.length === 1, { what: 'onClose' })
  assert.deepEqual(reasons, ['server'])
})

test('a cancelled body is the client leaving: onClose("client"), out of its channels', async () => {
  const channel = new Channel()
  const sse = new SSE(request())
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  channel.add(sse)
  assert.equal(channel.size, 1)
  const reader = sse.getResponse().body.getReader()
  await readUntil(reader, (text) => text.length > 0)
  await reader.cancel()
  assert.equal(sse.closed, true, 'noticed at once')
  assert.equal(channel.size, 0)
  assert.equal(sse.bufferedBytes, 0)
  assert.equal(sse.send({ eventName: 'a', eventPayload: 1 }), false)
  await waitFor(() => reasons.length === 1, { what: 'onClose' })
  assert.deepEqual(reasons, ['client'])
})

const onDeno = typeof Deno === 'object'

test("the request's signal aborting is the client leaving, even before the body is read", async () => {
  const controller = new AbortController()
  if (onDeno) {
    // Deno.serve warns when a handler reads request.signal, and cancels the
    // body when the client leaves, so on Deno the signal is not read.
    const sse = new SSE(request('', { signal: controller.signal }))
    controller.abort()
    assert.equal(sse.closed, false, 'on Deno the signal is not read')
    await sse.getResponse().body.cancel()
    assert.equal(sse.closed, true, 'the body cancelled is the client leaving')
    return
  }
  const channel = new Channel()
  const sse = new SSE(request('', { signal: controller.signal }))
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  channel.add(sse)
  sse.send({ eventName: 'a', eventPayload: 1 })
  controller.abort()
  assert.equal(sse.closed, true)
  assert.equal(channel.size, 0)
  await waitFor(() => reasons.length === 1, { what: 'onClose' })
  assert.deepEqual(reasons, ['client'])

  // A signal that aborted before the stream was made.
  const gone = new AbortController()
  gone.abort()
  const late = new SSE(request('', { signal: gone.signal }))
  assert.equal(late.closed, true)
  assert.equal(late.send({ eventName: 'a', eventPayload: 1 }), false)
})

test('unread bytes count toward maxBufferedBytes: a client that stops reading is closed with "overflow"', async () => {
  const cap = 256 * 1024
  const sse = new SSE(request(), { maxBufferedBytes: cap })
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  const payload = 'x'.repeat(1000)
  let sent = 0
  // Nobody reads the body: each tick's events stay in it.
  for (let round = 0; round < 1000 && !sse.closed; round++) {
    for (let i = 0; i < 20; i++) if (sse.send({ eventName: 'tick', eventPayload: payload })) sent++
    await new Promise((resolve) => setImmediate(resolve))
    if (!sse.closed) assert.ok(sse.bufferedBytes <= cap + 21 * 1024, `bufferedBytes ${sse.bufferedBytes} stays near the cap`)
  }
  assert.equal(sse.closed, true, 'closed once the client is a cap behind')
  const framed = frame(999, 'tick', payload).length
  assert.ok((sent + 1) * framed > cap && sent * framed < 2 * cap, `sent ${sent} events of ${framed} bytes before the cut`)
  await waitFor(() => reasons.length === 1, { what: 'onClose' })
  assert.deepEqual(reasons, ['overflow'])
  // The queued bytes are dropped, not delivered late, and the body ends
  // (cleanly: an errored body makes adapters log a stack trace).
  assert.equal(await bodyText(sse.getResponse()), '')
})

test('a slow reader that was cut off got whole events only', async () => {
  const sse = new SSE(request(), { maxBufferedBytes: 64 * 1024 })
  const reader = sse.getResponse().body.getReader()
  const payload = 'w'.repeat(3000)
  for (let i = 0; i < 5; i++) sse.send({ eventName: 'e', eventPayload: payload })
  let text = await readUntil(reader, (t) => t.endsWith('\n\n'))
  for (let round = 0; round < 100 && !sse.closed; round++) {
    for (let i = 0; i < 10; i++) sse.send({ eventName: 'e', eventPayload: payload })
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.equal(sse.closed, true)
  text += await readUntil(reader, () => false)
  assert.ok(text.endsWith('\n\n'), 'the body ends between two events')
  for (const block of text.split('\n\n').filter(Boolean)) assert.match(block, /^id: \d+\nevent: e\ndata: "w{3000}"$/)
})

test('a reader that keeps up is never cut off, whatever it is sent', async () => {
  const sse = new SSE(request(), { maxBufferedBytes: 64 * 1024 })
  const reader = sse.getResponse().body.getReader()
  const payload = 'y'.repeat(4000)
  let received = ''
  for (let round = 0; round < 200; round++) {
    sse.send({ eventName: 'e', eventPayload: payload })
    received += await readUntil(reader, (text) => text.endsWith('\n\n'))
  }
  assert.equal(sse.closed, false)
  assert.equal(received.split('event: e\n').length - 1, 200)
  sse.close()
})

test('heartbeats: a comment every keepAlive ms on an idle body', async () => {
  const sse = new SSE(request(), { keepAlive: 40 })
  const reader = sse.getResponse().body.getReader()
  const text = await readUntil(reader, (t) => t.split(':\n\n').length > 2)
  assert.match(text, /^(:\n\n)+$/)
  sse.close()
})

test('one channel, Node and Fetch members: the same bytes reach both', async () => {
  const channel = new Channel()
  const joined = deferred()
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { welcome: false })
    channel.add(sse)
    joined.resolve(sse)
  })
  const client = rawGet(srv.port)
  try {
    await joined.promise
    const fetchMember = new SSE(request())
    channel.add(fetchMember)
    const reader = fetchMember.getResponse().body.getReader()
    await readUntil(reader, (text) => text.endsWith('\n\n'))
    // A second member of the same form on the Fetch side shares the bytes too.
    const other = new SSE(request())
    channel.add(other)
    const otherReader = other.getResponse().body.getReader()
    await readUntil(otherReader, (text) => text.endsWith('\n\n'))

    const big = 'z'.repeat(70_000)
    const ids = [channel.broadcast({ eventName: 'small', eventPayload: { a: 1 } }), channel.broadcast({ eventName: 'big', eventPayload: big })]
    const expected = `id: ${ids[0]}\nevent: small\ndata: {"a":1}\n\nid: ${ids[1]}\nevent: big\ndata: "${big}"\n\n`
    assert.equal(await readUntil(reader, (text) => text.length >= expected.length), expected)
    assert.equal(await readUntil(otherReader, (text) => text.length >= expected.length), expected)
    const parsed = await client.waitForBody((body) => body.endsWith(expected))
    assert.ok(parsed.body.toString('utf8').endsWith(expected))
    fetchMember.close()
    other.close()
  } finally {
    client.socket.destroy()
    await srv.close()
    channel.close()
  }
})

test('a Fetch member that resumes gets the events after its Last-Event-ID', async () => {
  const channel = new Channel()
  const ids = []
  for (let i = 0; i < 5; i++) ids.push(channel.broadcast({ eventName: 'n', eventPayload: i }))
  const sse = new SSE(request('', { headers: { 'Last-Event-ID': ids[2] } }))
  channel.add(sse)
  channel.broadcast({ eventName: 'n', eventPayload: 5 })
  const text = await readUntil(sse.getResponse().body.getReader(), (t) => t.includes('data: 5\n'))
  assert.deepEqual(
    text.split('\n\n').filter(Boolean).map((block) => block.split('\n').at(-1)),
    ['data: 3', 'data: 4', 'data: 5'],
  )
  sse.close()
  channel.close()
})

test('an onClose callback and a send() from a write are served without corrupting the body', async () => {
  const channel = new Channel()
  const a = new SSE(request())
  const b = new SSE(request())
  channel.add(a)
  channel.add(b)
  // a's close callback sends on b and closes the channel's other work.
  a.onClose(() => b.send({ eventName: 'after', eventPayload: 'a left' }))
  const readerB = b.getResponse().body.getReader()
  await a.getResponse().body.cancel()
  const text = await readUntil(readerB, (t) => t.includes('event: after'))
  assert.ok(text.endsWith('id: 0\nevent: after\ndata: "a left"\n\n'), JSON.stringify(text))
  b.close()
  channel.close()
})

// ----- what a review found: each case failed before its fix -----

test('a constructor that fails on a late step leaves every other stream delivering', async () => {
  const failing = [
    () => new SSE(request(), { welcome: true, headers: { 'X-Bad': 'a\nb' } }),
    () => new SSE(request(), { retry: 1000, headers: { 'X-Bad': 'a\nb' } }),
  ]
  // (Deno does not read the signal.)
  if (!onDeno) {
    failing.push(
      () =>
        new SSE({
          url: URL_BASE,
          headers: new Headers(),
          get signal() {
            throw new Error('signal getter')
          },
        }, { welcome: true }),
    )
  }
  for (const make of failing) {
    assert.throws(make)
    const sse = new SSE(request())
    sse.send({ eventName: 'still', eventPayload: 1 })
    const text = await readUntil(sse.getResponse().body.getReader(), (t) => t.includes('event: still'), { timeoutMs: 2000 })
    assert.equal(text, frame(0, 'still', 1))
    sse.close()
  }
})

/** Collects garbage where the runtime lets a test do so. */
async function collectGarbage() {
  if (typeof Bun === 'object') {
    Bun.gc(true)
    return
  }
  const v8 = await import('node:v8')
  const vm = await import('node:vm')
  v8.setFlagsFromString('--expose-gc')
  vm.runInNewContext('gc')()
}

test('the abort reaches a stream whose Request was dropped and collected', async () => {
  if (onDeno) {
    // Deno: the signal is not read (see above); the body's cancel is what counts.
    const sse = new SSE(request())
    await sse.getResponse().body.cancel()
    assert.equal(sse.closed, true)
    return
  }
  const controller = new AbortController()
  const streams = []
  // The Request itself is not kept, as adapters do not keep it.
  for (let i = 0; i < 50; i++) streams.push(new SSE(request('', { signal: controller.signal })))
  for (let i = 0; i < 3; i++) {
    await collectGarbage()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  controller.abort()
  assert.deepEqual(streams.filter((sse) => !sse.closed).length, 0)
})

test('after the signal aborts, the body ends rather than leave a reader waiting', async () => {
  if (onDeno) return assert.ok(true, 'Deno does not read the signal')
  const controller = new AbortController()
  const sse = new SSE(request('', { signal: controller.signal }))
  const reader = sse.getResponse().body.getReader()
  sse.send({ eventName: 'a', eventPayload: 1 })
  assert.equal(await readUntil(reader, (t) => t.endsWith('\n\n')), frame(0, 'a', 1))
  controller.abort()
  assert.equal(sse.closed, true)
  assert.equal(await readUntil(reader, () => false, { timeoutMs: 2000 }), '', 'the body ended')

  const gone = new AbortController()
  gone.abort()
  const late = new SSE(request('', { signal: gone.signal }))
  assert.equal(await bodyText(late.getResponse()), '')
})

test("the request's headers.get and url are read once, and what was checked is what is used", async () => {
  let reads = 0
  const headers = new Headers({ 'Last-Event-ID': 'h-1' })
  const realGet = headers.get.bind(headers)
  const options = { headers: { 'X-A': ['ok'] } }
  const fake = {
    get url() {
      reads++
      return reads === 1 ? URL_BASE : 42
    },
    headers: {
      get get() {
        // A function the first time only.
        return reads++ < 2 ? (name) => {
          // User code between the check of the options and their use.
          options.headers['X-A'][0] = { toString: () => 'coerced' }
          return realGet(name)
        } : undefined
      },
    },
  }
  const sse = new SSE(fake, options)
  assert.equal(sse.lastEventId, 'h-1')
  assert.equal(sse.getResponse().headers.get('x-a'), 'ok', 'the value that was checked')
  sse.close()
})

test('a Fetch member resumes from a history larger than a small cap', async () => {
  const channel = new Channel()
  const ids = []
  const payload = 'h'.repeat(1000)
  for (let i = 0; i < 300; i++) ids.push(channel.broadcast({ eventName: 'old', eventPayload: payload }))
  const sse = new SSE(request('', { headers: { 'Last-Event-ID': ids[0] } }), { maxBufferedBytes: 32 * 1024 })
  const reasons = []
  sse.onClose((reason) => reasons.push(reason))
  channel.add(sse)
  const reader = sse.getResponse().body.getReader()
  const text = await readUntil(reader, (t) => t.split('event: old\n').length - 1 === 299, { timeoutMs: 10000 })
  assert.equal(text.split('event: old\n').length - 1, 299)
  assert.equal(sse.closed, false)
  assert.deepEqual(reasons, [])
  sse.close()
  channel.close()
})

test('a cap below the high-water mark is kept by a body nobody reads', async () => {
  const sse = new SSE(request(), { maxBufferedBytes: 4096 })
  let most = 0
  for (let i = 0; i < 100 && !sse.closed; i++) {
    sse.send({ eventName: 'e', eventPayload: 'c'.repeat(900) })
    await new Promise((resolve) => setImmediate(resolve))
    most = Math.max(most, sse.bufferedBytes)
  }
  assert.equal(sse.closed, true)
  assert.ok(most <= 4096 + 1000, `bufferedBytes reached ${most}`)
})

test('the opening heartbeat: a first read that finds nothing gets ":" (the runtime can send the head)', async () => {
  const idle = new SSE(request())
  const reader = idle.getResponse().body.getReader()
  assert.equal(await readUntil(reader, (t) => t.length > 0, { timeoutMs: 1000 }), ':\n\n')
  idle.send({ eventName: 'a', eventPayload: 1 })
  assert.equal(await readUntil(reader, (t) => t.length > 0), frame(0, 'a', 1), 'once only')
  idle.close()

  // Events sent with the Response come first, and no comment at all.
  const busy = new SSE(request())
  const early = busy.getResponse().body.getReader()
  const read = readUntil(early, (t) => t.length > 0)
  busy.send({ eventName: 'b', eventPayload: 2 })
  assert.equal(await read, frame(0, 'b', 2))
  await new Promise((resolve) => setTimeout(resolve, 20))
  busy.send({ eventName: 'c', eventPayload: 3 })
  assert.equal(await readUntil(early, (t) => t.length > 0), frame(1, 'c', 3))
  busy.close()

  // keepAlive: 0 is S42Core 3.x's exact body: nothing until an event.
  const quiet = new SSE(request(), { keepAlive: 0 })
  const silent = quiet.getResponse().body.getReader()
  const first = readUntil(silent, (t) => t.length > 0)
  await new Promise((resolve) => setTimeout(resolve, 50))
  quiet.send({ eventName: 'd', eventPayload: 4 })
  assert.equal(await first, frame(0, 'd', 4))
  quiet.close()
})
