// `npm run demo`: the page and its live event stream.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'

import { EventSource } from 'eventsource'
import { UUID_V4, deferred } from './helpers.mjs'
import { runExample } from './run-example.mjs'

test('npm run demo starts examples/demo.mjs on port 3000 unless PORT is set', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  assert.equal(pkg.scripts.demo, 'node examples/demo.mjs')
  const source = readFileSync(new URL('../examples/demo.mjs', import.meta.url), 'utf8')
  assert.match(source, /process\.env\.PORT \?\? 3000/)
})

test('the demo page listens for the real event names and the stream delivers them', { timeout: 30_000 }, async () => {
  const demo = await runExample('examples/demo.mjs', { env: { PORT: '0' }, portPattern: /listening on http:\/\/127\.0\.0\.1:(\d+)\// })
  const base = `http://127.0.0.1:${demo.port}`
  const es = new EventSource(`${base}/events`)
  const welcome = deferred()
  const tick = deferred()
  const chat = deferred()
  es.addEventListener('welcome', (e) => welcome.resolve(JSON.parse(e.data)))
  es.addEventListener('tick', (e) => tick.resolve(JSON.parse(e.data)))
  es.addEventListener('chat', (e) => chat.resolve(JSON.parse(e.data)))
  const guard = setTimeout(() => [welcome, tick, chat].forEach((d) => d.resolve('timeout')), 10_000)
  try {
    const html = await (await fetch(`${base}/`)).text()
    for (const name of ['welcome', 'tick', 'chat']) assert.ok(html.includes(`addEventListener('${name}'`), name)
    assert.ok(!html.includes(`addEventListener('event'`), 'no listener for an event that never arrives')

    const { uuid } = await welcome.promise
    assert.match(uuid, UUID_V4)
    assert.match((await tick.promise).time, /^\d{4}-\d\d-\d\dT/)
    const said = await fetch(`${base}/say`, { method: 'POST', body: JSON.stringify({ from: uuid, text: 'hello <b>all</b>' }) })
    assert.equal(said.status, 204)
    assert.deepEqual(await chat.promise, { from: uuid, text: 'hello <b>all</b>' })
  } finally {
    clearTimeout(guard)
    es.close()
    await demo.stop()
  }
})
