// Headless Chromium's own EventSource against the Fetch form, on Bun.serve
// (run by Bun) and on Hono with @hono/node-server (run by Node): the server
// in its child process serves the page and the stream from one origin
// (fixtures/fetch/app.mjs PAGE); the page records what it receives. Driven
// by playwright-core (chromium.mjs); needs the
// Debian package `chromium` (CHROMIUM_PATH overrides /usr/bin/chromium).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { launchChromium } from './chromium.mjs'
import { BUN, FIXTURES, NODE, startFixture } from './fixtures/fetch/harness.mjs'

const WAIT_MS = 5000

const children = new Set()
let browser

before(async () => {
  browser = await launchChromium('fetch')
})

after(async () => {
  for (const child of children) child.kill('SIGKILL')
  await browser?.close()
})

for (const { name, command, script } of [
  { name: 'Bun.serve', command: BUN, script: 'bun-serve.mjs' },
  { name: 'Hono on @hono/node-server', command: NODE, script: 'hono-node.mjs' },
]) {
  describe(`Chromium and the Fetch form on ${name}`, () => {
    let fx
    let page
    before(async () => {
      fx = await startFixture(command, [join(FIXTURES, script)], { children })
      page = await browser.context.newPage()
    })
    after(async () => {
      await page?.close()
      await fx?.stop()
    })

    /** Waits until the page has logged `count` events, then returns the log. */
    async function pageLog(count) {
      await page.waitForFunction((n) => window.log.length >= n, count, { timeout: WAIT_MS })
      return page.evaluate(() => window.log)
    }

    test('gets the events from id 0, reconnects after close() with Last-Event-ID, and leaving is onClose("client")', async () => {
      await page.goto(`${fx.url}/`, { timeout: WAIT_MS })
      const first = await fx.opened('browser')
      assert.equal(first.lastEventId, null)
      assert.equal(first.accept, 'text/event-stream', "the browser's own EventSource request")
      assert.deepEqual(first.early, [true])

      assert.equal(
        await fx.command({ cmd: 'send', tag: 'browser', event: { eventName: 'greeting', eventPayload: { text: 'hello', n: 1 } } }),
        true,
      )
      assert.equal(
        await fx.command({ cmd: 'send', tag: 'browser', event: { eventName: 'poem', data: 'line1\nline2\n\u00e9t\u00e9 \u{1f600}' } }),
        true,
      )
      assert.deepEqual(await pageLog(3), [
        { type: 'early', data: '{"n":0}', lastEventId: '0' },
        { type: 'greeting', data: '{"text":"hello","n":1}', lastEventId: '1' },
        { type: 'poem', data: 'line1\nline2\n\u00e9t\u00e9 \u{1f600}', lastEventId: '2' },
      ])

      // The server ends the body; the page reconnects after `retry: 250`
      // with the id it saw last, which the new stream reads.
      const from = fx.messages.length
      await fx.command({ cmd: 'close', tag: 'browser' })
      const ended = await fx.waitMessage((m) => m.type === 'close' && m.tag === 'browser', { from })
      assert.equal(ended.reason, 'server')
      const second = await fx.waitMessage((m) => m.type === 'open' && m.tag === 'browser', { from, what: 'the reconnect' })
      assert.equal(second.lastEventId, '2', 'Last-Event-ID is the id of the last event the page saw')
      const log = await pageLog(4)
      assert.deepEqual(log[3], { type: 'early', data: '{"n":0}', lastEventId: '0' }, 'a new stream counts from 0 again')
      assert.deepEqual(await page.evaluate(() => ({ opens: window.opens, errors: window.errors })), { opens: 2, errors: 1 })

      // The page goes away: its connection closes, the server notices.
      const before = fx.messages.length
      await page.goto('about:blank', { timeout: WAIT_MS })
      const left = await fx.waitMessage((m) => m.type === 'close' && m.tag === 'browser', { from: before })
      assert.equal(left.reason, 'client')
      assert.equal(fx.messages.filter((m) => m.type === 'open').length, 2, 'no other /events request')
      assert.equal(fx.stderr, '')
    })
  })
}
