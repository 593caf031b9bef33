// The benchmark still runs, and every row counts its events correctly
// (quick mode: tiny sizes, no timing assertions).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const bench = fileURLToPath(new URL('../benchmark/bench.mjs', import.meta.url))

test('npm run bench -- --quick runs every scenario for every implementation with valid counts', { timeout: 180_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'native-sse-bench-'))
  try {
    const { stdout } = await new Promise((resolve, reject) => {
      execFile(process.execPath, [bench, '--quick', '--out', out], { timeout: 170_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve({ stdout, stderr }))
    })
    const result = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))
    const impls = ['raw', 's42-js', 'better-sse', 'native-sse']
    const scenarios = ['burst', 'paced', 'payload-1KiB', 'payload-64KiB', 'idle-memory']
    assert.deepEqual(result.scenarios.map((s) => s.name), scenarios)
    assert.equal(result.rows.length, impls.length * scenarios.length)
    for (const row of result.rows) assert.equal(row.valid, true, `${row.scenario}/${row.impl}: ${row.error}`)
    for (const scenario of scenarios) {
      for (const impl of impls) {
        const entry = result.summary[scenario][impl]
        assert.equal(entry.valid, true)
        const key = scenario === 'idle-memory' ? 'heapBytesPerConn' : 'eventsPerSec'
        assert.ok(Number.isFinite(entry[key].median), `${scenario}/${impl} ${key}`)
      }
    }
    assert.ok(result.targets.length >= 8)
    assert.match(stdout, /Targets \(native-sse/)
    assert.match(readFileSync(join(out, 'chart.svg'), 'utf8'), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('the client marks a row invalid when events are missing or out of order', { timeout: 60_000 }, async () => {
  // A server that skips event 3 must be caught by the client's checks.
  const { fork } = await import('node:child_process')
  const http = await import('node:http')
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' })
    for (const seq of [1, 2, 4, 5]) res.write(`id: ${seq}\nevent: tick\ndata: {"i":${seq},"p":""}\n\n`)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = fork(fileURLToPath(new URL('../benchmark/client.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const done = new Promise((resolve) => client.on('message', (m) => m.type === 'done' && resolve(m)))
    client.send({ type: 'stream', port: server.address().port, count: 4, eventName: 'tick' })
    const result = await Promise.race([done, new Promise((r) => setTimeout(() => r({ timeout: true }), 10_000))])
    assert.equal(result.valid, false)
    assert.match(result.error, /expected id 3, got id 4/)
  } finally {
    client.kill()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})
