// User code that re-enters a channel from inside broadcast() (a `to`
// predicate, a getter or `toJSON` of the event, a getter of the options) or
// from an `onClose` callback. The rules checked (docs/channels.md,
// "Re-entrant calls"): no crash and no error but ERR_SSE_CHANNEL_CLOSED when
// the channel was closed meanwhile; a call made from inside a broadcast
// takes effect before the broadcast is made (a nested broadcast takes the
// earlier id and goes out first); a member that was removed or ended
// meanwhile gets nothing of the broadcast; every other member's bytes are
// exactly right. Raw sockets for exact bytes; the cases that end streams
// process-wide (drain) or write from inside a flush run in a child process.
import assert from 'node:assert/strict'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { Channel, SSE } from 'native-sse'
import { rawGet, runScript, startServer, waitFor } from './helpers.mjs'

const FIXTURES = fileURLToPath(new URL('./fixtures/reentrancy/', import.meta.url))

const children = new Set()
let srv
let channel = null
const opened = []
before(async () => {
  srv = await startServer((req, res) => {
    const sse = new SSE(req, res, { keepAlive: 0 })
    if (!req.url.includes('nojoin')) channel.add(sse)
    opened.push({ sse, res })
  })
})
after(async () => {
  for (const child of children) child.kill('SIGKILL')
  await srv.close()
})

/** A raw client whose stream is open and has what joining wrote. */
async function join(path = '/') {
  const index = opened.length
  const client = rawGet(srv.port, path)
  await waitFor(() => opened.length > index, { what: 'the server to open the stream' })
  await client.waitForBody((body) => body.endsWith('\n\n'))
  const { sse } = opened[index]
  return {
    client,
    sse,
    body: () => client.response()?.body.toString('utf8') ?? '',
    ended: () => client.response()?.complete === true,
  }
}

const welcome = (sse) => `id: 0\nevent: welcome\ndata: {"uuid":"${sse.getUUID()}"}\n\n`
const position = (id) => `id: ${id}\n\n`
const frame = (id, name, payload) => `id: ${id}\nevent: ${name}\ndata: ${JSON.stringify(payload)}\n\n`
const settle = () => new Promise((resolve) => setTimeout(resolve, 40))

/**
 * Waits until every member's body is `expected[i]` (and its response ended
 * exactly when `ended[i]`), then a little more so that a late or doubled
 * write would show; asserts with the case's name.
 */
async function assertBodies(what, members, expected, ended) {
  await waitFor(() => members.every((m, i) => m.body() === expected[i] && m.ended() === ended[i]), {
    timeoutMs: 2000,
    what,
  }).catch(() => {})
  await settle()
  for (let i = 0; i < members.length; i++) {
    assert.equal(members[i].body(), expected[i], `${what}: the bytes of member ${i}`)
    assert.equal(members[i].ended(), ended[i], `${what}: member ${i} ${ended[i] ? 'has' : 'has not'} seen the end`)
  }
}

function closeAll(members) {
  for (const m of members) m.client.close()
}

// ----- (a) a `to` predicate that re-enters -----

// Each case: three members m0, m1, m2 and a stream `x` outside the channel.
// `before` goes to all; then `outer` with a predicate that chooses m0 and
// m1 (never m2) and, when asked about `at`, does `act`; then `after` to
// all. `gone` is the member that is removed or ended by the act (it gets
// nothing of `outer` or later), `closed` whether it was ended.
const predicateCases = [
  { name: 'channel.remove(other member, not asked yet)', at: 0, gone: 1, act: (m) => channel.remove(m[1].sse) },
  { name: 'channel.remove(other member, already chosen)', at: 1, gone: 0, act: (m) => channel.remove(m[0].sse) },
  { name: 'channel.remove(itself)', at: 1, gone: 1, act: (m) => channel.remove(m[1].sse) },
  { name: 'sse.close() on itself', at: 1, gone: 1, closed: true, act: (m) => m[1].sse.close() },
  { name: 'sse.close() on another member, not asked yet', at: 0, gone: 1, closed: true, act: (m) => m[1].sse.close() },
  { name: 'sse.close() on another member, already chosen', at: 1, gone: 0, closed: true, act: (m) => m[0].sse.close() },
  { name: 'channel.close()', at: 1, closesChannel: true, act: () => channel.close() },
  { name: 'channel.add(a new stream)', at: 0, adds: true, act: (m, x) => assert.equal(channel.add(x.sse), true) },
  { name: 'a nested channel.broadcast()', at: 0, nested: true, act: () => channel.broadcast({ eventName: 'nested', eventPayload: 'n' }) },
  {
    name: 'a nested broadcast whose own predicate closes a member',
    at: 0,
    nested: true,
    gone: 1,
    closed: true,
    act: (m) =>
      channel.broadcast(
        { eventName: 'nested', eventPayload: 'n' },
        {
          to: (sse) => {
            if (sse === m[1].sse) m[1].sse.close()
            return true
          },
        },
      ),
  },
  { name: 'sse.send() on a member', at: 0, direct: true, act: (m) => assert.equal(m[1].sse.send({ eventName: 'direct', eventPayload: 'd' }), true) },
]

for (const flushWindow of [0, 5]) {
  const label = flushWindow === 0 ? '' : ` (flushWindow ${flushWindow} ms)`
  test(`a to predicate that re-enters the channel: served or refused cleanly, exact bytes for every member${label}`, async (t) => {
    for (const c of predicateCases) {
      await t.test(c.name, async () => {
        channel = new Channel({ flushWindow })
        const [epoch, zero] = channel.lastEventId.split('-')
        assert.equal(zero, '0')
        const id = (n) => `${epoch}-${n}`
        const m = [await join(), await join(), await join()]
        const x = await join('/nojoin')
        const everyone = [...m, x]
        try {
          channel.broadcast({ eventName: 'before', eventPayload: 'b' })
          const askedClosed = []
          let result
          let thrown = null
          try {
            result = channel.broadcast(
              { eventName: 'outer', eventPayload: 'o' },
              {
                to: (sse) => {
                  if (sse.closed) askedClosed.push(sse.getUUID())
                  if (sse === m[c.at].sse) c.act(m, x)
                  return sse !== m[2].sse
                },
              },
            )
          } catch (err) {
            thrown = err
          }
          assert.deepEqual(askedClosed, [], 'the predicate is never asked about a stream that has ended')

          if (c.closesChannel) {
            // Refused with the documented error; no id used, nothing sent.
            assert.ok(thrown !== null && !(thrown instanceof TypeError), 'broadcast() throws')
            assert.equal(thrown.code, 'ERR_SSE_CHANNEL_CLOSED')
            assert.equal(channel.size, 0)
            assert.equal(channel.lastEventId, id(1), 'no id was used for the refused broadcast')
            const expected = m.map((mi) => welcome(mi.sse) + position(id(0)) + frame(id(1), 'before', 'b'))
            await assertBodies(c.name, everyone, [...expected, welcome(x.sse)], [false, false, false, false])
            return
          }
          assert.equal(thrown, null, `broadcast() does not throw (${thrown?.message})`)
          const outerId = c.nested ? id(3) : id(2)
          assert.equal(result, outerId, 'the outer broadcast takes the id after the nested one')
          const afterId = channel.broadcast({ eventName: 'after', eventPayload: 'a' })
          assert.equal(afterId, c.nested ? id(4) : id(3))

          const expected = []
          const ended = []
          for (let i = 0; i < 3; i++) {
            let body = welcome(m[i].sse) + position(id(0))
            const isGone = i === c.gone
            const direct = c.direct && i === 1 ? frame('1', 'direct', 'd') : ''
            // With a window, the broadcasts wait for it and a direct send
            // does not; a member that left before it fired gets none of
            // them (docs/channels.md, remove()).
            if (flushWindow > 0) body += direct
            if (!(isGone && flushWindow > 0)) body += frame(id(1), 'before', 'b')
            if (!isGone) {
              if (c.nested) body += frame(id(2), 'nested', 'n')
              if (flushWindow === 0) body += direct
              if (i !== 2) body += frame(outerId, 'outer', 'o')
              body += frame(afterId, 'after', 'a')
            }
            expected.push(body)
            ended.push(isGone && c.closed === true)
          }
          // The stream added from inside the predicate: its position, then
          // only what was broadcast after it joined.
          expected.push(c.adds ? welcome(x.sse) + position(id(1)) + frame(afterId, 'after', 'a') : welcome(x.sse))
          ended.push(false)
          await assertBodies(c.name, everyone, expected, ended)
          const members = 3 - (c.gone === undefined ? 0 : 1) + (c.adds ? 1 : 0)
          assert.equal(channel.size, members, 'the channel lists exactly the members left')
        } finally {
          closeAll(everyone)
          channel.close()
        }
      })
    }
  })
}

test('a to predicate that drains, or re-enters from a res.write wrapper during a flush (child process)', async (t) => {
  for (const scenario of ['drain', 'channel.drain', 'write-wrapper']) {
    await t.test(scenario, async () => {
      const run = await runScript(path.join(FIXTURES, 'predicate-child.mjs'), [scenario], { children })
      assert.ok(run.code === 0 && run.signal === null && !run.timedOut, `the child exited cleanly: ${run.stderr.slice(0, 1500)}`)
      assert.notEqual(run.report, null, `a RESULT line: ${run.stdout.slice(0, 500)}`)
      const r = run.report
      assert.deepEqual(r.uncaught, [], 'no uncaught exception')
      assert.equal(r.thrown, null, 'broadcast() did not throw')
      const head = `${r.epoch}-0`
      const id = (n) => `${r.epoch}-${n}`
      const w = (i) => `id: 0\nevent: welcome\ndata: {"uuid":"${r.uuids[i]}"}\n\n`
      if (scenario === 'write-wrapper') {
        // m0's write wrapper, while `trigger` is being written to it, makes
        // a broadcast whose predicate closes m0 and removes m1: m0 gets the
        // chunk being written whole, then its end; m1 keeps its stream but
        // gets nothing more; m2 gets the inner broadcast.
        assert.equal(r.result, id(2))
        assert.deepEqual(r.bodies, [
          w(0) + position(head) + frame(id(1), 'trigger', 't'),
          w(1) + position(head) + frame(id(1), 'trigger', 't'),
          w(2) + position(head) + frame(id(1), 'trigger', 't') + frame(id(2), 'inner', 'i') + frame(id(3), 'after', 'a'),
          w(3),
        ])
        assert.deepEqual(r.ended, [true, false, false, false])
        assert.equal(r.size, 1)
        return
      }
      // The drain ends the members from inside the predicate: the broadcast
      // is made (an id is used) but reaches no one; each member gets its
      // `retry:` and its end, nothing after.
      assert.equal(r.result, id(1))
      for (let i = 0; i < 3; i++) {
        assert.match(r.bodies[i], /^retry: \d+\n\n$/m, `member ${i} got its retry`)
        assert.equal(r.bodies[i].replace(/retry: \d+\n\n$/, ''), w(i) + position(head), `member ${i}: nothing but the retry after its position`)
      }
      assert.deepEqual(r.ended.slice(0, 3), [true, true, true])
      assert.equal(r.size, 0)
      // The stream outside the channel: drain() ends it too, channel.drain() does not.
      assert.equal(r.ended[3], scenario === 'drain')
    })
  }
})

// ----- (b) onClose callbacks that re-enter (Node form) -----

for (const how of ['sse.close()', 'the client leaving']) {
  test(`an onClose callback (ended by ${how}) that re-enters: sees a consistent state, its calls are served`, async () => {
    channel = new Channel()
    const [epoch] = channel.lastEventId.split('-')
    const id = (n) => `${epoch}-${n}`
    const [a, b, c] = [await join(), await join(), await join()]
    const d = await join('/nojoin')
    const everyone = [a, b, c, d]
    try {
      let seen = null
      const calls = []
      a.sse.onClose((reason) => {
        calls.push(reason)
        seen = {
          reason,
          closed: a.sse.closed,
          send: a.sse.send({ eventName: 'late', eventPayload: 0 }),
          comment: a.sse.comment('late'),
          bufferedBytes: a.sse.bufferedBytes,
          size: channel.size,
          readd: channel.add(a.sse),
        }
        seen.direct = b.sse.send({ eventName: 'direct', eventPayload: 'd' })
        seen.bye = channel.broadcast({ eventName: 'bye', eventPayload: 'y' })
        seen.add = channel.add(d.sse)
        c.sse.close()
        seen.closeAgain = a.sse.close()
        seen.sizeAfter = channel.size
      })
      if (how === 'sse.close()') a.sse.close()
      else a.client.close()
      await waitFor(() => seen !== null, { what: 'the onClose callback' })
      assert.deepEqual(seen, {
        reason: how === 'sse.close()' ? 'server' : 'client',
        closed: true,
        send: false,
        comment: false,
        bufferedBytes: 0,
        size: 2,
        readd: false,
        direct: true,
        bye: id(1),
        add: true,
        closeAgain: undefined,
        sizeAfter: 2,
      })
      const later = channel.broadcast({ eventName: 'later', eventPayload: 'l' })
      assert.equal(later, id(2))
      const expected = [
        null,
        welcome(b.sse) + position(id(0)) + frame('1', 'direct', 'd') + frame(id(1), 'bye', 'y') + frame(id(2), 'later', 'l'),
        welcome(c.sse) + position(id(0)) + frame(id(1), 'bye', 'y'),
        welcome(d.sse) + position(id(1)) + frame(id(2), 'later', 'l'),
      ]
      await assertBodies(`onClose after ${how}`, everyone.slice(1), expected.slice(1), [false, true, false])
      // The closed stream got nothing after its end.
      assert.equal(a.body(), welcome(a.sse) + position(id(0)))
      if (how === 'sse.close()') assert.equal(a.ended(), true)
      assert.deepEqual(calls, [seen.reason], 'the callback ran once')
    } finally {
      closeAll(everyone)
      channel.close()
    }
  })
}

// ----- (c) getters and toJSON of the event, getters of the options -----

test('a getter or toJSON that closes or removes a member, closes the channel or broadcasts, during broadcast()', async (t) => {
  const acts = {
    'closes a member': (m) => m[1].sse.close(),
    'removes a member': (m) => channel.remove(m[1].sse),
    'closes the channel': () => channel.close(),
    'broadcasts': () => channel.broadcast({ eventName: 'nested', eventPayload: 'n' }),
  }
  const shapes = {
    'toJSON of eventPayload': (act) => [{ eventName: 'e', eventPayload: { toJSON: () => (act(), 'v') } }, undefined],
    'a getter of eventName': (act) => [{ get eventName() { act(); return 'e' }, eventPayload: 'v' }, undefined],
    'a getter of data': (act) => [{ eventName: 'e', get data() { act(); return '"v"' } }, undefined],
    'toJSON, with options': (act) => [{ eventName: 'e', eventPayload: { toJSON: () => (act(), 'v') } }, { replay: false }],
    'a getter of options.replay': (act) => [{ eventName: 'e', eventPayload: 'v' }, { get replay() { act(); return true } }],
    'a getter of options.to': (act) => [{ eventName: 'e', eventPayload: 'v' }, { get to() { act(); return undefined } }],
  }
  for (const [shape, make] of Object.entries(shapes)) {
    for (const [actName, act] of Object.entries(acts)) {
      const what = `${shape} ${actName}`
      await t.test(what, async () => {
        channel = new Channel()
        const [epoch] = channel.lastEventId.split('-')
        const id = (n) => `${epoch}-${n}`
        const m = [await join(), await join()]
        try {
          let result
          let thrown = null
          const [event, options] = make(() => act(m))
          try {
            result = channel.broadcast(event, options)
          } catch (err) {
            thrown = err
          }
          const start = (i) => welcome(m[i].sse) + position(id(0))
          if (actName === 'closes the channel') {
            assert.equal(thrown?.code, 'ERR_SSE_CHANNEL_CLOSED', what)
            assert.equal(channel.lastEventId, id(0), 'no id used')
            await assertBodies(what, m, [start(0), start(1)], [false, false])
            return
          }
          assert.equal(thrown, null, `${what}: no error (${thrown?.message})`)
          const nested = actName === 'broadcasts'
          const own = nested ? id(2) : id(1)
          assert.equal(result, own)
          const tail = (nested ? frame(id(1), 'nested', 'n') : '') + frame(own, 'e', 'v')
          if (nested) {
            await assertBodies(what, m, [start(0) + tail, start(1) + tail], [false, false])
          } else {
            // The member was taken out before the event was made: nothing of it.
            await assertBodies(what, m, [start(0) + tail, start(1)], [false, actName === 'closes a member'])
            assert.equal(channel.size, 1)
          }
        } finally {
          closeAll(m)
          channel.close()
        }
      })
    }
  }
})
