// `import { SSE } from 'native-sse'` works from ES modules.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'

import * as namespace from 'native-sse'
import { SSE } from 'native-sse'

test('named import of SSE', () => {
  assert.equal(typeof SSE, 'function')
  assert.equal(namespace.SSE, SSE)
  assert.equal(SSE.name, 'SSE')
})

test('the ESM import and require() share one class', () => {
  const require = createRequire(import.meta.url)
  assert.equal(require('native-sse').SSE, SSE)
})
