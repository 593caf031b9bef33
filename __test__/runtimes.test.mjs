// The Fetch form (`new SSE(request)` + `getResponse()`) on real servers in
// their own runtimes: Bun.serve, Deno.serve, Hono on @hono/node-server and on
// Bun, h3 v2 on Node, Elysia on Bun. Each fixture (fixtures/fetch/) runs in
// a child process (node_modules/.bin/bun, node_modules/.bin/deno, or node),
// listens on 127.0.0.1:0 and prints its port; the clients here are raw
// sockets (the exact bytes) and the `eventsource` npm client. The fixture
// reports each stream's onClose on stdout, so a client that leaves is seen
// as the server saw it. The checks every server passes are in
// fixtures/fetch/suite.mjs.
//
// Also here: Bun.serve's 10 s idle timeout against a stream left idle for
// 30 s with default options (it runs alongside the rest), and Deno's
// permission message. Headless Chromium is in fetch-browser.test.mjs,
// Next.js in nextjs.test.mjs.
import assert from 'node:assert/strict'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { rawGet, s42Frame, waitFor } from './helpers.mjs'
import { BUN, DENO, DENO_FLAGS, FIXTURES, NODE, REPO, listen, runToExit, startFixture } from './fixtures/fetch/harness.mjs'
import { HEARTBEAT, WAIT, atLeast, fetchServerSuite } from './fixtures/fetch/suite.mjs'

/** Every child still running; `after` kills what is left. */
const children = new Set()
after(() => {
  for (const child of children) child.kill('SIGKILL')
})

/** EventSource.OPEN */
const EventSourceOpen = 1

const startBun = (script) => () => startFixture(BUN, [join(FIXTURES, script)], { children })
const startNode = (script) => () => startFixture(NODE, [join(FIXTURES, script)], { children })

// ---------------------------------------------------------------- Bun.serve

// Bun.serve closes a connection idle for `idleTimeout` (10 s by default); a
// Fetch-form stream's default heartbeat (every 5 s) keeps it open.
function bunIdleSuite() {
  describe('Bun.serve: a stream idle for 30 s with default options', { concurrency: true }, () => {
    let fx
    before(async () => {
      fx = await startBun('bun-serve.mjs')()
    })
    after(async () => {
      await fx?.stop()
    })

    test('stays open: after 30 s the client is connected, got only heartbeats, and gets the next event', { timeout: 60000 }, async () => {
      const client = rawGet(fx.port, '/events?tag=idle')
      const es = listen(`${fx.url}/events?tag=idle-es`, ['after-idle'])
      try {
        await fx.opened('idle')
        await fx.opened('idle-es')
        await new Promise((resolve) => setTimeout(resolve, 31000))
        assert.equal(client.ended, false, 'the raw connection is still open')
        assert.equal(es.es.readyState, EventSourceOpen, 'the eventsource client is still OPEN')
        assert.equal(es.opens, 1)
        assert.equal(es.errors, 0, 'the eventsource client never lost its connection')
        const state = await fx.command({ cmd: 'state' })
        assert.deepEqual([state.streams.idle, state.streams['idle-es']], [{ closed: false }, { closed: false }])
        const closes = fx.messages.filter((m) => m.type === 'close' && m.tag.startsWith('idle'))
        assert.deepEqual(closes, [], 'no onClose ran')
        // The default keepAlive is 5000 ms: 31 s hold 5 to 7 heartbeats, and nothing else.
        const idle = client.response().body.toString('utf8')
        const beats = idle.length / HEARTBEAT.length
        assert.equal(idle, HEARTBEAT.repeat(beats), `only heartbeats: ${JSON.stringify(idle)}`)
        assert.ok(beats >= 5 && beats <= 7, `${beats} heartbeats in 31 s`)

        const event = { eventName: 'after-idle', eventPayload: { waited: 31 } }
        assert.equal(await fx.command({ cmd: 'send', tag: 'idle', event }), true)
        assert.equal(await fx.command({ cmd: 'send', tag: 'idle-es', event }), true)
        const res = await client.waitForBody((body) => body.includes('event: after-idle'), WAIT)
        // A heartbeat may have come in between; nothing else may.
        const body = res.body.toString('utf8')
        assert.match(body.slice(idle.length), /^(:\n\n)?id: 0\nevent: after-idle\ndata: \{"waited":31\}\n\n$/)
        assert.ok(body.startsWith(idle))
        await waitFor(() => es.events.length === 1, { ...WAIT, what: 'the event after the idle period' })
        assert.deepEqual(es.events, [{ type: 'after-idle', lastEventId: '0', data: '{"waited":31}' }])
      } finally {
        client.close()
        es.es.close()
      }
      assert.equal((await fx.closed('idle')).reason, 'client')
      assert.equal((await fx.closed('idle-es')).reason, 'client')
    })

    // The contrast, so the test above can fail: without heartbeats the same
    // server drops the stream at its idle timeout, and the stream notices.
    test('without heartbeats (keepAlive: 0) Bun.serve drops the same stream at its 10 s idle timeout', { timeout: 60000 }, async () => {
      const client = rawGet(fx.port, '/events?tag=no-heartbeat&keepAlive=0')
      try {
        await fx.opened('no-heartbeat')
        const opened = Date.now()
        await waitFor(() => client.ended, { timeoutMs: 25000, intervalMs: 50, what: 'Bun to close the idle connection' })
        const waited = Date.now() - opened
        assert.ok(waited >= 8000, `closed after ${waited} ms, before the idle timeout`)
        assert.doesNotMatch(client.bytes().toString('latin1'), /id: /)
        assert.equal((await fx.closed('no-heartbeat')).reason, 'client')
      } finally {
        client.close()
      }
    })
  })
}

// ---------------------------------------------------------------------- Deno

/**
 * The library as an app installs it (a copy of the published files in the
 * app's node_modules, deno.json `nodeModulesDir: "manual"`), run without
 * the permissions it needs.
 */
function denoPermissionSuite() {
  describe('Deno without the permissions native-sse needs', () => {
    const VARIANTS = [
      { without: ['--allow-sys', '--allow-ffi'], flags: ['--allow-net', '--allow-env'] },
      { without: ['--allow-ffi'], flags: ['--allow-net', '--allow-env', '--allow-sys'] },
      { without: ['--allow-sys'], flags: ['--allow-net', '--allow-env', '--allow-ffi'] },
      { without: ['--allow-env', '--allow-sys', '--allow-ffi'], flags: ['--allow-net'] },
    ]
    let app
    /** What each variant printed, by its missing flags. */
    const results = new Map()
    before(async () => {
      app = await mkdtemp(join(tmpdir(), 'native-sse-deno-app-'))
      const pkg = join(app, 'node_modules', 'native-sse')
      await mkdir(pkg, { recursive: true })
      for (const file of ['js', 'binding.js', 'package.json', 'index.d.ts', 'native-sse.linux-x64-gnu.node']) {
        await cp(join(REPO, file), join(pkg, file), { recursive: true })
      }
      await writeFile(join(app, 'deno.json'), JSON.stringify({ nodeModulesDir: 'manual' }))
      await writeFile(
        join(app, 'package.json'),
        JSON.stringify({ name: 'deno-app', private: true, type: 'module', dependencies: { 'native-sse': '*' } }),
      )
      await cp(join(FIXTURES, 'deno-app.mjs'), join(app, 'main.mjs'))
      await cp(join(FIXTURES, 'app.mjs'), join(app, 'app.mjs'))
      for (const { without, flags } of VARIANTS) {
        const result = await runToExit(DENO, ['run', ...flags, 'main.mjs'], { cwd: app, children })
        results.set(without.join(' '), result)
      }
    })
    after(async () => {
      if (app) await rm(app, { recursive: true, force: true })
    })

    test('with the documented permissions the installed app serves the Fetch form', async () => {
      const fx = await startFixture(DENO, ['run', '--allow-net', '--allow-env', '--allow-sys', '--allow-ffi', 'main.mjs'], {
        cwd: app,
        children,
      })
      try {
        const client = rawGet(fx.port, '/events?tag=installed&early=1')
        try {
          await fx.opened('installed')
          const res = await client.waitForBody(atLeast(s42Frame(0, 'early', { n: 0 })), WAIT)
          assert.equal(res.body.toString('utf8'), s42Frame(0, 'early', { n: 0 }))
        } finally {
          client.close()
        }
        assert.equal((await fx.closed('installed')).reason, 'client')
        assert.equal(fx.stderr, '')
      } finally {
        await fx.stop()
      }
    })

    for (const { without } of VARIANTS) {
      const missing = without.join(' ')
      test(`without ${missing}: the app fails with native-sse's message, naming exactly ${missing}`, () => {
        const { code, stdout, stderr, timedOut } = results.get(missing)
        assert.equal(timedOut, false)
        assert.equal(code, 1)
        assert.doesNotMatch(stdout, /"listening"/)
        const named = /native-sse: Deno must be allowed to load the native addon: run with ([^(]*) \(deno run /.exec(stderr)
        assert.ok(named, `no native-sse message in: ${stderr}`)
        assert.deepEqual(named[1].split(' ').sort(), [...without].sort())
      })
    }

    test('the message does not come with napi-rs\'s "npm has a bug" advice', () => {
      for (const [missing, { stderr }] of results) {
        assert.doesNotMatch(stderr, /npm has a bug/, `without ${missing}`)
      }
    })
  })
}

// -------------------------------------------------------------------- the run

// The idle suite waits 30 s: it runs alongside the others, which run one
// server at a time (subtests inherit `concurrency` from their parent).
describe('the Fetch form on real servers', { concurrency: true }, () => {
  bunIdleSuite()
  describe('one server at a time', { concurrency: false }, () => {
    fetchServerSuite('Bun.serve', startBun('bun-serve.mjs'))
    // Deno.serve prints a warning once a handler reads request.signal
    // (its legacy abort semantics); the stderr check covers it.
    fetchServerSuite('Deno.serve', () => startFixture(DENO, ['run', ...DENO_FLAGS, join(FIXTURES, 'deno-serve.mjs')], { children }))
    denoPermissionSuite()
    fetchServerSuite('Hono on @hono/node-server (Node)', startNode('hono-node.mjs'))
    fetchServerSuite('Hono on Bun.serve', startBun('hono-bun.mjs'))
    // srvx writes the Response's statusText, which is empty.
    fetchServerSuite('h3 v2 serve() (Node)', startNode('h3-node.mjs'), { statusLine: 'HTTP/1.1 200 ' })
    fetchServerSuite('Elysia on Bun', startBun('elysia-bun.mjs'))
  })
})
