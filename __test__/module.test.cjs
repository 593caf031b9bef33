// require('native-sse') works from CommonJS and gives the same class as import.
const assert = require('node:assert/strict')
const http = require('node:http')
const { test } = require('node:test')

const nativeSse = require('native-sse')
const { SSE } = nativeSse

test('require() exposes the SSE class with its methods', () => {
  assert.equal(typeof SSE, 'function')
  for (const method of ['getUUID', 'send', 'close']) assert.equal(typeof SSE.prototype[method], 'function', method)
})

test('import() and require() give the same class', async () => {
  const esm = await import('native-sse')
  assert.equal(esm.SSE, SSE)
})

test('the package exports SSE, Channel, drain and metrics, and nothing of the binding', async () => {
  assert.deepEqual(Object.keys(nativeSse).sort(), ['Channel', 'SSE', 'drain', 'metrics'])
  const esm = await import('native-sse')
  assert.deepEqual(Object.keys(esm).filter((name) => name !== 'default').sort(), ['Channel', 'SSE', 'drain', 'metrics'])
})

test('a stream opened through the required class works end to end', async () => {
  let uuid
  const server = http.createServer((req, res) => {
    const sse = new SSE(req, res)
    uuid = sse.getUUID()
    sse.send({ eventName: 'cjs', eventPayload: { ok: true } })
    sse.close()
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const response = await fetch(`http://127.0.0.1:${server.address().port}/`)
    assert.equal(response.headers.get('content-type'), 'text/event-stream')
    const body = await response.text()
    assert.equal(body, `id: 0\nevent: welcome\ndata: {"uuid":"${uuid}"}\n\nid: 1\nevent: cjs\ndata: {"ok":true}\n\n`)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
})
