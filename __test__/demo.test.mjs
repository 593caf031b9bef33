// `npm run demo` (examples/demo.mjs and demo.html) in headless Chromium: the
// page connects and shows live events with their ids and the server's
// counters; "Drop my connection" ends the stream on the server and the
// replayed ticks come back marked as replayed, with no reset; the Fetch
// form is reachable from the same page; no console errors throughout.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, test } from 'node:test'

import { launchChromium } from './chromium.mjs'
import { runExample } from './run-example.mjs'

const WAIT_MS = 15_000
let browser
let demo
let page
const problems = []

before(async () => {
  demo = await runExample('examples/demo.mjs', { env: { PORT: '0' }, portPattern: /listening on http:\/\/127\.0\.0\.1:(\d+)\// })
  browser = await launchChromium('demo')
  page = await browser.context.newPage()
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
  await page.goto(`http://127.0.0.1:${demo.port}/`, { timeout: WAIT_MS })
})

after(async () => {
  await page?.close()
  await browser?.close()
  await demo?.stop()
})

const text = (selector) => page.locator(selector).first().textContent()

test('npm run demo starts examples/demo.mjs on port 3000 unless PORT is set', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  assert.equal(pkg.scripts.demo, 'node examples/demo.mjs')
  assert.match(readFileSync(new URL('../examples/demo.mjs', import.meta.url), 'utf8'), /process\.env\.PORT \?\? 3000/)
})

test('the page connects, shows live events with their ids, and the server counters update', { timeout: 40_000 }, async () => {
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'open', null, { timeout: WAIT_MS })
  await page.waitForFunction(() => document.querySelectorAll('#events li.live[data-id]').length >= 2, null, { timeout: WAIT_MS })
  assert.match(await text('#uuid'), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  const ids = await page.$$eval('#events li.live[data-id]', (items) => items.map((li) => li.dataset.id))
  for (const id of ids) assert.match(id, /^\d+-\d+$/, 'channel ids')
  assert.match(await text('#events li.note'), /first visit/)
  // The counters come from metrics() on the server, once a second.
  await page.waitForFunction(() => Number(document.getElementById('stats-open').textContent) >= 1, null, { timeout: WAIT_MS })
  await page.waitForFunction(() => Number(document.getElementById('stats-bps').textContent.replace(/,/g, '')) > 0, null, { timeout: WAIT_MS })
  assert.ok(Number((await text('#stats-eps')).replace(/,/g, '')) >= 1)
})

test('a chat message reaches the page', { timeout: 20_000 }, async () => {
  await page.fill('#text', 'hello <b>all</b>')
  await page.click('#say button')
  await page.waitForFunction(() => [...document.querySelectorAll('#events li .data')].some((d) => d.textContent.endsWith(': hello <b>all</b>')), null, { timeout: WAIT_MS })
})

test('dropping the connection server-side brings the missed ticks back, marked as replayed, and no reset', { timeout: 40_000 }, async () => {
  const before = await page.$$eval('#events li.replayed', (items) => items.length)
  await page.click('#drop')
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'reconnecting', null, { timeout: WAIT_MS })
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'open', null, { timeout: WAIT_MS })
  await page.waitForFunction(() => /^resumed from /.test(document.querySelector('#events li.note').textContent), null, { timeout: WAIT_MS })
  const replayed = await page.$$eval('#events li.replayed', (items) => items.map((li) => ({ id: li.dataset.id, tag: li.querySelector('.tag').textContent })))
  // retry is 1.5 s and a tick goes out every second: at least one was missed.
  assert.ok(replayed.length > before, `replayed rows: ${JSON.stringify(replayed)}`)
  for (const row of replayed) assert.equal(row.tag, 'replayed')
  assert.equal(await page.locator('#events li.reset').count(), 0, 'nothing was really missed')
  // The ids go on without a gap or a repeat: every tick number once, in order.
  const ticks = await page.$$eval('#events li .data', (items) =>
    items.map((d) => d.textContent.match(/^tick (\d+) /)).filter(Boolean).map((m) => Number(m[1])).reverse(),
  )
  for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1] + 1, `ticks ${ticks.join(',')}`)
  // The server counted the replay.
  await page.waitForFunction(() => Number(document.getElementById('stats-replays').textContent) >= 1, null, { timeout: WAIT_MS })
})

test('the Fetch form is reachable from the same page and resumes from the position', { timeout: 40_000 }, async () => {
  const lastId = await text('#last-id')
  await page.check('#form-fetch')
  await page.waitForFunction(() => /\(fetch form\)/.test(document.querySelector('#events li.note').textContent), null, { timeout: WAIT_MS })
  // The position crossed over in the query string (a tick may have moved it since it was read).
  const [, from] = (await text('#events li.note')).match(/^resumed from (\d+-\d+) \(fetch form\)/)
  const seq = (id) => Number(id.split('-')[1])
  assert.ok(seq(from) >= seq(lastId), `${from} >= ${lastId}`)
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'open', null, { timeout: WAIT_MS })
  const firstLive = await page.locator('#events li.live[data-id]').count()
  await page.waitForFunction((n) => document.querySelectorAll('#events li.live[data-id]').length > n, firstLive, { timeout: WAIT_MS })
  assert.equal(await page.locator('#events li.reset').count(), 0)
})

test('the page is responsive and logged no console errors', async () => {
  await page.setViewportSize({ width: 390, height: 800 })
  const width = await page.evaluate(() => document.documentElement.scrollWidth)
  assert.ok(width <= 390, `no horizontal scroll on a phone (${width} px)`)
  assert.deepEqual(problems, [])
})
