// HTTP/2 forbids more than the classic hop-by-hop headers: Node also refuses
// TE (any value but "trailers") and HTTP2-Settings in a response. They are
// dropped from options.headers like Connection, instead of making the
// constructor throw Node's ERR_HTTP2_INVALID_CONNECTION_HEADERS on HTTP/2
// while the same options work on HTTP/1.1.
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { test } from 'node:test'
import { SSE } from 'native-sse'

for (const headers of [{ TE: 'gzip' }, { 'HTTP2-Settings': 'AAMAAABkAAQAAP__' }]) {
  test(`HTTP/2: options.headers ${JSON.stringify(headers)} is dropped like Connection, not thrown on`, async (t) => {
    let error = null
    let sse = null
    const server = http2.createServer((req, res) => {
      try {
        sse = new SSE(req, res, { headers })
        sse.close()
      } catch (err) {
        error = err
        res.stream.close()
      }
    })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = http2.connect(`http://127.0.0.1:${server.address().port}`)
    t.after(() => {
      client.destroy()
      server.close()
    })
    const req = client.request({ ':path': '/' })
    req.on('error', () => {})
    req.resume()
    await new Promise((resolve) => req.on('close', resolve))
    assert.equal(error?.code, undefined, `constructor threw ${error?.code}`)
    assert.notEqual(sse, null)
  })
}
