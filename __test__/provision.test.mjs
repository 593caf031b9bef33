// scripts/provision.mjs, the first step of `npm test`: silent and quick when
// Chromium and redis-server are where the tests look; where they are not
// and it cannot install them (not root, or no apt-get), exit 1 within
// seconds with one line that names what to install. Run with the places
// the tests look at pointed at an empty folder (CHROMIUM_PATH, and a PATH
// without redis-server or apt-get); the unprivileged case runs as `nobody`
// (setpriv) when the tests run as root. The install itself (root, apt-get)
// is what CI does on a fresh machine; it is not repeated here.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../scripts/provision.mjs', import.meta.url))
const WITHIN_MS = 5000

// A folder anyone can read (the unprivileged run cannot read every
// checkout): the script (it imports only node: modules), an empty bin
// folder to be the PATH, and fakes for the cases that need one.
const dir = mkdtempSync(join(tmpdir(), 'native-sse-provision-'))
chmodSync(dir, 0o755)
const script = join(dir, 'provision.mjs')
copyFileSync(SCRIPT, script)
chmodSync(script, 0o644)
const empty = join(dir, 'empty-bin')
const fakes = join(dir, 'fake-bin')
for (const folder of [empty, fakes]) {
  mkdirSync(folder)
  chmodSync(folder, 0o755)
}
function fake(name, body) {
  const file = join(fakes, name)
  writeFileSync(file, `#!/bin/sh\n${body}\n`)
  chmodSync(file, 0o755)
  return file
}
after(() => rmSync(dir, { recursive: true, force: true }))

const isRoot = process.getuid?.() === 0

/** Runs the script with `env` (as `nobody` when `unprivileged` and root); its status, output lines and time. */
function provision(env, { unprivileged = false, script: file = script } = {}) {
  const [cmd, args] =
    unprivileged && isRoot
      ? ['/usr/bin/setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file]]
      : [process.execPath, [file]]
  const t0 = performance.now()
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 30_000 })
  const ms = performance.now() - t0
  assert.equal(r.error, undefined, `${cmd} ran`)
  const lines = (text) => text.split('\n').filter((line) => line !== '')
  return { status: r.status, stdout: lines(r.stdout), stderr: lines(r.stderr), ms }
}

/** Nothing where the tests look: no Chromium at CHROMIUM_PATH, no redis-server (and no apt-get) on PATH. */
const hidden = () => ({ PATH: empty, CHROMIUM_PATH: join(dir, 'no-chromium'), HOME: dir })

test('with Chromium and redis-server where the tests look, it prints nothing and exits 0 at once', () => {
  // As `npm test` runs it (which is also what made them present here).
  const r = provision(process.env, { script: SCRIPT })
  assert.deepEqual(r.stderr, [])
  assert.deepEqual(r.stdout, [])
  assert.equal(r.status, 0)
  assert.ok(r.ms < WITHIN_MS, `took ${Math.round(r.ms)} ms`)
})

test('not root and both missing: exit 1 within seconds, one line naming both and how to install them', () => {
  const r = provision(hidden(), { unprivileged: true })
  assert.equal(r.status, 1)
  assert.ok(r.ms < WITHIN_MS, `took ${Math.round(r.ms)} ms`)
  assert.deepEqual(r.stdout, [])
  assert.equal(r.stderr.length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  const [line] = r.stderr
  assert.match(line, /chromium \(looked for .*no-chromium\)/)
  assert.match(line, /redis-server \(looked for redis-server on PATH\)/)
  assert.match(line, /apt-get install -y chromium redis-server/)
  assert.match(line, /CHROMIUM_PATH \/ REDIS_SERVER/)
})

test('no apt-get on PATH (root or not): the same one line, nothing installed', () => {
  const r = provision(hidden())
  assert.equal(r.status, 1)
  assert.ok(r.ms < WITHIN_MS, `took ${Math.round(r.ms)} ms`)
  assert.deepEqual(r.stdout, [], 'no "installing" line')
  assert.equal(r.stderr.length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  assert.match(r.stderr[0], /npm test needs chromium .* and redis-server .*: install them/)
})

test('only what is missing is named; a redis-server older than 7.0 is named with its version', () => {
  const chromium = fake('chromium', 'exit 0')
  fake('redis-server', 'echo "Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64 build=0"')
  let r = provision({ ...hidden(), CHROMIUM_PATH: chromium }, { unprivileged: true })
  assert.equal(r.status, 1)
  assert.equal(r.stderr.length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  assert.match(r.stderr[0], /needs redis-server \(looked for redis-server on PATH\): install it \(Debian: sudo apt-get install -y redis-server\), or set REDIS_SERVER to yours$/)
  assert.doesNotMatch(r.stderr[0], /chromium/)

  r = provision({ ...hidden(), PATH: fakes }, { unprivileged: true })
  assert.equal(r.status, 1)
  assert.equal(r.stderr.length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  assert.match(r.stderr[0], /needs chromium \(looked for .*no-chromium\): install it .*apt-get install -y chromium\), or set CHROMIUM_PATH to yours; .*redis-server is Redis 6\.2; the tests need 7\.0 or later$/)

  // REDIS_SERVER names the program, as in redis-server.mjs; both present and recent: exit 0.
  const redis = fake('redis7', 'echo "Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64 build=0"')
  r = provision({ ...hidden(), CHROMIUM_PATH: chromium, REDIS_SERVER: redis }, { unprivileged: true })
  assert.deepEqual(r.stderr, [])
  assert.equal(r.status, 0)
})
