// Regression tests for known defects (in-process; the Redis ones are in
// defects-redis.test.mjs). Each test states the fixed behaviour. Scenarios
// that can crash or abort the process (a segfault, a Rust panic, a V8 fatal
// error) run in a child process (fixtures/defects/), bounded by a timeout
// and killed at the end, so that a crash is a failed assertion here.
// Real servers on 127.0.0.1, raw sockets where the exact bytes matter,
// bounded waits, and everything closed at the end.
import assert from 'node:assert/strict'
import path from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { Channel, SSE } from 'native-sse'
import { rawGet, runScript, startServer, waitFor } from './helpers.mjs'
import { openStream, parseEvents } from './fixtures/defects/common.mjs'

const FIXTURES = fileURLToPath(new URL('./fixtures/defects/', import.meta.url))
const KiB = 1024
const MiB = 1024 * 1024

const children = new Set()
after(() => {
  for (const child of children) child.kill('SIGKILL')
})

/** Runs fixtures/defects/<name> in a child process (see runScript). */
function runFixture(name, args = [], { nodeArgs = [], timeoutMs = 20000 } = {}) {
  return runScript(path.join(FIXTURES, name), args, { nodeArgs, timeoutMs, children })
}

/** The child exited by itself with code 0 and printed its RESULT line. */
function assertCleanExit(run, what) {
  const how = run.timedOut
    ? 'was killed after the timeout'
    : run.signal !== null
      ? `died of ${run.signal}`
      : `exited with code ${run.code}`
  const detail = `${what}: the child ${how}\nstderr: ${run.stderr.slice(0, 1200)}`
  assert.ok(run.error === null && run.code === 0 && run.signal === null && !run.timedOut, detail)
  assert.notEqual(run.report, null, `${what}: no RESULT line\nstdout: ${run.stdout.slice(0, 500)}`)
}

/** Compares two id lists and names the first difference (no 8000-line diff). */
function assertSameIds(actual, expected, what) {
  if (actual.length === expected.length && actual.every((id, i) => id === expected[i])) return
  let i = 0
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++
  assert.fail(
    `${what}: got ${actual.length} ids, expected ${expected.length}; they differ from position ${i} ` +
      `(got ${JSON.stringify(actual.slice(i, i + 3))}, expected ${JSON.stringify(expected.slice(i, i + 3))})`,
  )
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const bodyOf = (client) => client.response()?.body.toString('latin1') ?? ''

// ---------------------------------------------------------------------------

test('defect 1: a Uint8Array whose buffer user code resizes or transfers after broadcast() read it: every member gets the original bytes', async (t) => {
  // Defect 1 (critical): the bytes are borrowed, not snapshotted, while getters and predicates run.
  const broadcastScenarios = [
    'broadcast:replay:resize', // a getter on options.replay resizes the buffer to 0
    'broadcast:to:resize', // a getter on options.to
    'broadcast:predicate:resize', // a `to` predicate
    'broadcast:replay:transfer', // the buffer transferred away in a getter, then garbage and gc()
    'broadcast:predicate:transfer:plain', // the same from a predicate, over an ordinary ArrayBuffer
  ]
  for (const scenario of broadcastScenarios) {
    await t.test(scenario, async () => {
      const run = await runFixture('mutating-bytes.mjs', [scenario], { nodeArgs: ['--expose-gc'] })
      assertCleanExit(run, scenario)
      const { error, members, replayed } = run.report
      assert.equal(error, null, 'broadcast() succeeded')
      assert.deepEqual(members, ['hello world', 'hello world'], 'every member got the bytes data held when broadcast() read it')
      if (!scenario.includes('predicate')) assert.equal(replayed, 'hello world', 'the history keeps the original bytes')
    })
  }
  await t.test('send:eventName:resize', async () => {
    // send() reads eventName, id, eventPayload, data in that order: a getter on
    // eventName that shrinks the buffer to 4 bytes runs before data is read.
    const run = await runFixture('mutating-bytes.mjs', ['send:eventName:resize'], { nodeArgs: ['--expose-gc'] })
    assertCleanExit(run, 'send:eventName:resize')
    const { error, expected, members, returned } = run.report
    assert.equal(error, null)
    assert.equal(returned, true)
    assert.equal(expected, 'hell', 'data held 4 bytes when send() read it')
    assert.deepEqual(members, ['hell'], 'the event carries what data held when it was read')
  })
})

test('defect 2: a client whose replay is larger than maxBufferedBytes still resumes (in-process channel, 3 reconnects)', async (t) => {
  // Defect 2 (high): the whole replay is pushed at once and the 4 MiB cap closes the client as 'overflow'.
  const channel = new Channel({ historyBytes: 16 * MiB, historyEvents: 100000 })
  t.after(() => channel.close())
  const reasons = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res) // default options: the 4 MiB cap
    sse.onClose((reason) => reasons.push(reason))
    channel.add(sse)
  })
  t.after(() => srv.close())

  // About 8 MiB of history, broadcast with no members.
  const pad = 'x'.repeat(1000)
  const ids = []
  for (let n = 0; n < 8192; n++) ids.push(channel.broadcast({ eventName: 'fill', data: `${n}:${pad}` }))

  for (let round = 1; round <= 3; round++) {
    const client = openStream(srv.port, { headers: { 'Last-Event-ID': ids[0] }, keepData: false })
    t.after(() => client.close())
    const got = () => client.events.filter((event) => event.id !== undefined).map((event) => event.id)
    const replay = ids.slice(1)
    await waitFor(() => client.ended || client.events.length > replay.length, {
      timeoutMs: 20000,
      what: `round ${round}: the replay`,
    }).catch(() => {})
    assert.ok(
      !client.ended,
      `round ${round}: the stream ended after ${got().length} of ${replay.length} replayed events (onClose reasons so far: ${JSON.stringify(reasons)})`,
    )
    // Then a live event.
    const live = channel.broadcast({ eventName: 'live', data: `round ${round}` })
    ids.push(live)
    await waitFor(() => client.ended || got().at(-1) === live, { timeoutMs: 10000, what: `round ${round}: the live event` }).catch(() => {})
    assertSameIds(got(), ids.slice(1), `round ${round}: every event after Last-Event-ID, in order, then the live one`)
    assert.equal(client.events.at(-1).event, 'live')
    client.close()
    await waitFor(() => reasons.length === round, { what: `round ${round}: onClose` })
  }
  assert.deepEqual(reasons, ['client', 'client', 'client'], 'never closed as overflow')
})

/**
 * A raw client whose socket is paused until the server's response holds
 * `holdBytes` (`res.writableLength`), filled by `fill()` once per turn.
 */
async function fillWhilePaused(client, res, fill, holdBytes) {
  client.socket.pause()
  const deadline = Date.now() + 15000
  for (let turn = 0; res.writableLength < holdBytes; turn++) {
    if (turn > 5000 || Date.now() > deadline) assert.fail(`res.writableLength reached only ${res.writableLength} bytes`)
    assert.equal(fill(), true, `fill ${turn} accepted`)
    await nextTurn()
  }
}

/** Follows the end of what a raw client receives. */
function tailOf(client) {
  const state = { text: '' }
  client.socket.on('data', (data) => (state.text = (state.text + data.toString('latin1')).slice(-512)))
  return state
}

test('defect 4: a client that fell behind and fully caught up is not closed as overflow by a later large send', async (t) => {
  // Defect 4 (high): what Node held at the last refused write is remembered after the client caught up.
  const opened = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0, maxBufferedBytes: 1 * MiB })
    const entry = { sse, res, reasons: [] }
    sse.onClose((reason) => entry.reasons.push(reason))
    opened.push(entry)
  })
  t.after(() => srv.close())
  const pad = 'f'.repeat(16 * KiB)
  const big = 'y'.repeat(700 * KiB)

  await t.test('sse.send', async () => {
    const client = rawGet(srv.port, '/')
    t.after(() => client.close())
    await waitFor(() => opened.length === 1, { what: 'the stream' })
    const { sse, res, reasons } = opened[0]
    await client.waitForBody((body) => body.includes('event: welcome'))
    const tail = tailOf(client)
    await fillWhilePaused(client, res, () => sse.send({ eventName: 'fill', data: pad }), 600 * KiB)
    client.socket.resume()
    await waitFor(() => sse.bufferedBytes === 0, { timeoutMs: 15000, what: 'the client to catch up' })
    assert.equal(sse.closed, false)
    assert.equal(sse.send({ eventName: 'big', data: `${big}<end-of-big>` }), true, 'a 700 KiB send to a client that caught up is accepted')
    await waitFor(() => sse.closed || tail.text.includes('<end-of-big>\n\n'), { timeoutMs: 10000, what: 'the big event' })
    assert.equal(sse.closed, false, 'the stream stays open')
    assert.deepEqual(reasons, [])
  })

  await t.test('channel.broadcast', async () => {
    const channel = new Channel()
    t.after(() => channel.close())
    const client = rawGet(srv.port, '/')
    t.after(() => client.close())
    await waitFor(() => opened.length === 2, { what: 'the stream' })
    const { sse, res, reasons } = opened[1]
    channel.add(sse)
    await client.waitForBody((body) => body.split('\n\n').length > 2)
    const tail = tailOf(client)
    await fillWhilePaused(client, res, () => typeof channel.broadcast({ eventName: 'fill', data: pad }) === 'string', 600 * KiB)
    client.socket.resume()
    await waitFor(() => sse.bufferedBytes === 0, { timeoutMs: 15000, what: 'the member to catch up' })

    channel.broadcast({ eventName: 'big', data: `${big}<end-of-big-1>` })
    await waitFor(() => sse.closed || tail.text.includes('<end-of-big-1>\n\n'), { timeoutMs: 10000, what: 'the big broadcast' })
    assert.equal(sse.closed, false, 'open after a 700 KiB broadcast')
    await waitFor(() => sse.bufferedBytes === 0, { timeoutMs: 15000, what: 'the member to catch up again' })

    // The same, sent to this member only.
    channel.broadcast({ eventName: 'big', data: `${big}<end-of-big-2>` }, { to: [sse.getUUID()] })
    await waitFor(() => sse.closed || tail.text.includes('<end-of-big-2>\n\n'), { timeoutMs: 10000, what: 'the big targeted broadcast' })
    assert.equal(sse.closed, false, 'open after a 700 KiB broadcast to this member')
    assert.equal(channel.size, 1, 'still a member')
    assert.deepEqual(reasons, [])
  })
})

test('defect 5: a res.write wrapper that broadcasts while a replay above 128 KiB is written does not abort the process', async () => {
  // Defect 5 (medium): the history stays borrowed while the replay is written ("RefCell already borrowed" panic).
  const run = await runFixture('replay-write-broadcast.mjs')
  assertCleanExit(run, 'replay-write-broadcast')
  const { expected, received, ended } = run.report
  assert.equal(ended, false)
  assertSameIds(received, expected, 'the replay in order, then the events broadcast from res.write')
})

test('defect 6: sse.close() from a res.write wrapper during the end-of-tick write, members in two channels', async () => {
  // Defect 6 (medium): a Buffer cached from a nested handle scope is handed to other members' res.write.
  const run = await runFixture('close-in-write.mjs')
  assertCleanExit(run, 'close-in-write')
  const { received, notChunks, uncaught } = run.report
  assert.deepEqual(notChunks, [], 'res.write only ever gets Buffers and strings')
  assert.deepEqual(uncaught, [], 'no uncaught exception (ERR_INVALID_ARG_TYPE)')
  assert.deepEqual(
    received.filter((_, i) => i !== 1),
    [true, true, true, true],
    'every member but the closed one received the broadcast',
  )
})

test('defect 7: remove() or close() of another member from a res.write wrapper during the shared write: the rest still get the event', async (t) => {
  // Defect 7 (low): the shared write loops over the live responses list, which the removal reorders.
  for (const how of ['channel.remove(other)', 'otherSse.close()']) {
    await t.test(how, async (tt) => {
      const channel = new Channel()
      tt.after(() => channel.close())
      const members = []
      const srv = await startServer((req, res) => {
        const sse = new SSE(req, res, { keepAlive: 0 })
        channel.add(sse)
        members.push({ sse, res })
      })
      tt.after(() => srv.close())
      const clients = []
      for (let i = 0; i < 4; i++) {
        const client = rawGet(srv.port, '/')
        clients.push(client)
        tt.after(() => client.close())
        await waitFor(() => members.length === i + 1, { what: 'the stream' })
        await client.waitForBody((body) => body.split('\n\n').length > 2)
      }
      await nextTurn()
      // Member 2, during its write, takes member 0 out.
      let armed = true
      const write = members[2].res.write
      members[2].res.write = function (...args) {
        if (armed) {
          armed = false
          if (how === 'channel.remove(other)') channel.remove(members[0].sse)
          else members[0].sse.close()
        }
        return write.apply(this, args)
      }
      channel.broadcast({ eventName: 'ev', data: 'shared' })
      const got = (i) => bodyOf(clients[i]).includes('data: shared\n')
      await waitFor(() => [1, 2, 3].every(got), { timeoutMs: 2000, what: 'the event at the remaining members' }).catch(() => {})
      assert.deepEqual([1, 2, 3].map(got), [true, true, true], 'members 1, 2 and 3 received the event')
    })
  }
})

test('defect 8: send() and comment() return false when that very call closed the stream for overflow', async (t) => {
  // Defect 8 (low): a call whose hand-over of the tick's broadcasts overflowed still answers true.
  const opened = []
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0, maxBufferedBytes: 1000 })
    const entry = { sse, reasons: [] }
    sse.onClose((reason) => entry.reasons.push(reason))
    opened.push(entry)
  })
  t.after(() => srv.close())
  async function open() {
    const index = opened.length
    const client = rawGet(srv.port, '/')
    t.after(() => client.close())
    await waitFor(() => opened.length > index, { what: 'the stream' })
    await client.waitForBody((body) => body.includes('event: welcome'))
    return opened[index]
  }
  const cases = [
    ['send, one 2000-byte event', (entry) => entry.sse.send({ eventName: 'big', data: 'x'.repeat(2000) })],
    ['comment, 2000 bytes', (entry) => entry.sse.comment('x'.repeat(2000))],
    ['send after a 2000-byte broadcast in the same tick', (entry, channel) => {
      channel.broadcast({ eventName: 'big', data: 'x'.repeat(2000) })
      return entry.sse.send({ eventName: 'small', data: 'small' })
    }],
    ['comment after a 2000-byte broadcast in the same tick', (entry, channel) => {
      channel.broadcast({ eventName: 'big', data: 'x'.repeat(2000) })
      return entry.sse.comment('small')
    }],
  ]
  const outcomes = {}
  for (const [what, act] of cases) {
    const entry = await open()
    let channel = null
    if (act.length > 1) {
      channel = new Channel()
      t.after(() => channel.close())
      channel.add(entry.sse)
    }
    await nextTurn()
    const returned = act(entry, channel)
    const closed = entry.sse.closed
    await waitFor(() => entry.reasons.length > 0, { what: `${what}: onClose` })
    outcomes[what] = `returned ${returned}, closed ${closed}, onClose ${entry.reasons.join(',')}`
  }
  const expected = Object.fromEntries(cases.map(([what]) => [what, 'returned false, closed true, onClose overflow']))
  assert.deepEqual(outcomes, expected)
})

test('defect 9: a channel does not keep the capacity of a 100 MiB burst once it is written', async () => {
  // Defect 9 (low): the reusable tick buffer keeps its largest allocation for good.
  const run = await runFixture('burst-rss.mjs', [], { nodeArgs: ['--expose-gc'] })
  assertCleanExit(run, 'burst-rss')
  const { before, after, complete } = run.report
  assert.equal(complete, true, 'the member received the whole burst')
  const grown = after - before
  assert.ok(grown < 40 * MiB, `RSS is back within 40 MiB of its value before the burst: it is ${(grown / MiB).toFixed(1)} MiB above`)
})

test('defect 10: broadcasts waiting for a flush window are delivered when the channel is collected first', async () => {
  // Defect 10 (low): the window's timer only holds a weak reference; the pending events die with the channel.
  const run = await runFixture('window-gc.mjs', [], { nodeArgs: ['--expose-gc'] })
  assertCleanExit(run, 'window-gc')
  assert.equal(run.report.collected, true, 'the channel was collected before its window fired (else this tests nothing)')
  assert.deepEqual(run.report.data, ['one', 'two'], 'the member received the windowed events')
})

test('defect 11: SSE and Channel called without new throw a TypeError before writing anything', async (t) => {
  // Defect 11 (low): the constructors run without `new` (SSE opens the stream; Channel throws a plain Error).
  const outcomes = {}
  const srv = await startServer((req, res) => {
    const which = req.url.slice(1)
    let threw = null
    try {
      if (which === 'sse') SSE(req, res)
      else SSE.call({}, req, res)
    } catch (err) {
      threw = err
    }
    outcomes[which] = { threw, headersSent: res.headersSent }
    if (res.headersSent) res.end()
    else res.writeHead(204).end()
  })
  t.after(() => srv.close())
  for (const which of ['sse', 'call']) {
    const client = rawGet(srv.port, `/${which}`)
    t.after(() => client.close())
    await waitFor(() => outcomes[which] !== undefined, { what: `the ${which} request` })
  }
  const describe = ({ threw, headersSent }) => {
    const thrown = threw === null ? 'did not throw' : threw instanceof TypeError ? 'TypeError' : `threw ${threw.constructor.name}: ${threw.message}`
    return headersSent === undefined ? thrown : `${thrown}; ${headersSent ? 'headers sent' : 'nothing written'}`
  }
  let channel = null
  let threw = null
  try {
    channel = Channel()
  } catch (err) {
    threw = err
  }
  channel?.close?.()
  assert.deepEqual(
    {
      'SSE(req, res)': describe(outcomes.sse),
      'SSE.call({}, req, res)': describe(outcomes.call),
      'Channel()': describe({ threw }),
    },
    {
      'SSE(req, res)': 'TypeError; nothing written',
      'SSE.call({}, req, res)': 'TypeError; nothing written',
      'Channel()': 'TypeError',
    },
  )
})

test('defect 12: a request with Connection: close does not get Connection: keep-alive', async (t) => {
  // Defect 12 (low): the default header is sent whatever the request asked for.
  const srv = await startServer((req, res) => new SSE(req, res, { keepAlive: 0 }))
  t.after(() => srv.close())
  const client = rawGet(srv.port, '/', { Connection: 'close' })
  t.after(() => client.close())
  const response = await client.waitForBody((body) => body.includes('event: welcome'))
  assert.equal(response.status, 200)
  assert.doesNotMatch(response.headers.connection ?? '', /keep-alive/i, `Connection: ${response.headers.connection}`)
})

test('defect 13: events sent in the tick in which user code calls res.end() are delivered before the end', async (t) => {
  // Defect 13 (low): res.end() runs before the end-of-tick write, which then finds the response ended.
  const srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    const sendAndEnd = () => {
      sse.send({ eventName: 'a', data: 'first' })
      sse.send({ eventName: 'b', data: 'second' })
      res.end()
    }
    if (req.url === '/same-tick') sendAndEnd()
    else setTimeout(sendAndEnd, 20)
  })
  t.after(() => srv.close())
  const outcomes = {}
  for (const path of ['/later-tick', '/same-tick']) {
    const client = rawGet(srv.port, path)
    t.after(() => client.close())
    const response = await client.waitForBody((body, parsed) => parsed.complete, { what: `${path}: the end of the stream` })
    outcomes[path] = parseEvents(response.body.toString('latin1')).map((event) =>
      event.event === 'welcome' ? 'welcome' : `${event.event}:${event.data}`,
    )
  }
  assert.deepEqual(
    outcomes,
    { '/later-tick': ['welcome', 'a:first', 'b:second'], '/same-tick': ['welcome', 'a:first', 'b:second'] },
    'the welcome, a and b, then the end of the stream',
  )
})
