// The seed document's example server, run unmodified but for its import line.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'

import { EventSource } from 'eventsource'
import { UUID_V4, deferred } from './helpers.mjs'
import { runExample } from './run-example.mjs'

test('the example only changes the import line', () => {
  const source = readFileSync(new URL('../examples/seed-example.mjs', import.meta.url), 'utf8')
  assert.match(source, /^import \{ SSE \} from 'native-sse';$/m)
  assert.match(source, /^server\.listen\(3000, \(\) => \{$/m)
  const typed = readFileSync(new URL('../examples/seed-example.mts', import.meta.url), 'utf8')
  assert.equal(typed, source, 'the TypeScript copy is the same code')
})

test('the seed example serves the welcome, the example event, then closes', { timeout: 30_000 }, async () => {
  const example = await runExample('examples/seed-example.mjs', { nodeArgs: ['--import', './__test__/fixtures/free-port.mjs'] })
  const es = new EventSource(`http://127.0.0.1:${example.port}/events`)
  const welcome = deferred()
  const exampleEvent = deferred()
  const ended = deferred()
  es.addEventListener('welcome', (e) => welcome.resolve(e))
  es.addEventListener('exampleEvent', (e) => exampleEvent.resolve(e))
  es.onerror = () => ended.resolve(Date.now())
  const guard = setTimeout(() => ended.resolve('timeout'), 15_000)
  try {
    const notFound = await fetch(`http://127.0.0.1:${example.port}/other`)
    assert.equal(notFound.status, 404)
    await notFound.arrayBuffer()

    const w = await welcome.promise
    const openedAt = Date.now()
    assert.equal(w.lastEventId, '0')
    assert.match(JSON.parse(w.data).uuid, UUID_V4)
    const e = await exampleEvent.promise
    assert.deepEqual(JSON.parse(e.data), { data: 'Hello, SSE!' })
    assert.equal(e.lastEventId, '1')
    const endedAt = await ended.promise
    assert.notEqual(endedAt, 'timeout', 'the stream ends after about 5 s')
    assert.ok(endedAt - openedAt > 3000, 'closed by the 5 s timer, not earlier')
    assert.match(example.output().stdout, /Server running at/)
  } finally {
    clearTimeout(guard)
    es.close()
    await example.stop()
  }
})
