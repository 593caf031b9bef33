// Closing, double closing, clients that leave, and the crash the original has.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { SSE } from 'native-sse'
import { deferred, rawGet, s42Frame, startServer, startStreamServer, waitFor } from './helpers.mjs'

let srv
// Under Node, uncaught errors land here and the tests assert there are none.
// `bun test` catches uncaught errors before process listeners see them and
// fails the test that is running (or the run), so these cases still fail there.
const unhandled = []
const onUncaught = (err) => unhandled.push(err)

before(async () => {
  process.on('uncaughtException', onUncaught)
  srv = await startStreamServer((req, res) => new SSE(req, res))
})
after(async () => {
  process.off('uncaughtException', onUncaught)
  await srv.close()
})

const open = () => srv.open()

test('send() after close() returns false, writes nothing and never throws', async () => {
  const { client, sse, res } = await open()
  const errors = []
  res.on('error', (err) => errors.push(err))
  sse.close()
  assert.equal(sse.send({ eventName: 'late', eventPayload: 1 }), false)
  assert.equal(sse.send({ eventName: 'late', eventPayload: 2 }), false)
  const response = await client.waitForBody((_, parsed) => parsed.complete)
  assert.equal(response.body.toString(), s42Frame(0, 'welcome', { uuid: sse.getUUID() }))
  await new Promise((r) => setTimeout(r, 50))
  assert.deepEqual(errors, [])
  assert.deepEqual(unhandled, [])
  client.close()
})

test('close() twice is harmless', async () => {
  const { client, sse, res } = await open()
  let finishes = 0
  res.on('finish', () => finishes++)
  sse.close()
  sse.close()
  await client.waitForBody((_, parsed) => parsed.complete)
  sse.close()
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(finishes, 1)
  assert.deepEqual(unhandled, [])
  client.close()
})

test('a client that leaves is noticed: send() returns false and nothing throws', async () => {
  const { client, sse, res } = await open()
  const closed = deferred()
  res.on('close', closed.resolve)
  client.close()
  await closed.promise
  assert.equal(sse.send({ eventName: 'gone', eventPayload: {} }), false)
  assert.doesNotThrow(() => sse.close())
  assert.equal(sse.send({ eventName: 'gone', eventPayload: {} }), false)
  assert.deepEqual(unhandled, [])
})

test('send() right after the socket is destroyed, before "close" is emitted, returns false', async () => {
  const { client, sse, res } = await open()
  res.socket.destroy()
  assert.equal(sse.send({ eventName: 'gone', eventPayload: {} }), false)
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(sse.send({ eventName: 'gone', eventPayload: {} }), false)
  assert.deepEqual(unhandled, [])
  client.close()
})

test('a response ended by other code makes send() return false without an error', async () => {
  const { client, sse, res } = await open()
  res.end()
  assert.equal(sse.send({ eventName: 'late', eventPayload: {} }), false)
  await client.waitForBody((_, parsed) => parsed.complete)
  await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(unhandled, [])
  client.close()
})

test('a stream whose client left before the constructor ran starts closed', async () => {
  const created = deferred()
  const local = await startServer((req, res) => {
    res.socket.destroy()
    created.resolve(new SSE(req, res))
  })
  const client = rawGet(local.port, '/')
  const sse = await created.promise
  assert.equal(sse.send({ eventName: 'x', eventPayload: 1 }), false)
  client.close()
  await local.close()
})

function runChild(which) {
  const script = fileURLToPath(new URL('./fixtures/send-after-close.mjs', import.meta.url))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, which], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child ${which} timed out`))
    }, 15_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test('the process survives send() after close(); the original class crashes there', async () => {
  const native = await runChild('native')
  assert.equal(native.code, 0, native.stderr)
  assert.match(native.stdout, /send-returned:false/)
  assert.match(native.stdout, /survived/)
  assert.doesNotMatch(native.stderr, /uncaught-error-code:/)

  const original = await runChild('s42')
  assert.notEqual(original.code, 0, 'the S42Core-like class is expected to crash')
  assert.match(original.stderr, /uncaught-error-code:ERR_STREAM_WRITE_AFTER_END\n/)
  assert.doesNotMatch(original.stdout, /survived/)
})

test('the connection is released when the client leaves, with many streams open', async () => {
  const clients = []
  const entries = []
  for (let i = 0; i < 50; i++) {
    const { client, sse, res } = await open()
    clients.push(client)
    entries.push({ sse, res })
  }
  for (const client of clients) client.close()
  await waitFor(() => entries.every(({ res }) => res.destroyed), { what: 'all responses closed' })
  await new Promise((r) => setTimeout(r, 20))
  for (const { sse } of entries) assert.equal(sse.send({ eventName: 'x', eventPayload: 1 }), false)
})
