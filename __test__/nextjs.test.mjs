// A Next.js App Router route handler in the Fetch form (next 16, react 19):
// __test__/fixtures/next-app, whose app/events/route.js returns
// `new SSE(request).getResponse()`, built with `next build` (Turbopack, the
// default, and webpack) and served by `next start`, each in a temporary
// copy of the app (nothing is built in the repository). The same checks as
// the other runtimes (fixtures/fetch/suite.mjs): raw bytes, the eventsource
// client, Last-Event-ID, a channel, close(), clients that leave; the test
// drives the streams through the app's POST /control route and reads the
// route's onClose reports on the server's stdout.
//
// `next start` needs a port: it is given 3000, which the preload
// fixtures/free-port.mjs turns into a free port on 127.0.0.1 and prints.
// NEXT_TELEMETRY_DISABLED=1 keeps the build off the network.
import assert from 'node:assert/strict'
import { cp, mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { NODE, REPO, runToExit, startFixture } from './fixtures/fetch/harness.mjs'
import { fetchServerSuite } from './fixtures/fetch/suite.mjs'

const APP = join(REPO, '__test__', 'fixtures', 'next-app')
const NEXT = join(REPO, 'node_modules', 'next', 'dist', 'bin', 'next')
const FREE_PORT = join(REPO, '__test__', 'fixtures', 'free-port.mjs')
const BUILD_MS = 150000
/** What native-sse publishes (package.json `files`), as an install copies it. */
const PUBLISHED = ['js', 'binding.js', 'index.d.ts', 'package.json', 'native-sse.linux-x64-gnu.node']

const children = new Set()
const folders = []
after(async () => {
  for (const child of children) child.kill('SIGKILL')
  for (const folder of folders) await rm(folder, { recursive: true, force: true })
})

/** The deepest folder that holds both paths (Turbopack's root for the copy). */
function commonRoot(a, b) {
  const x = a.split(sep)
  const y = b.split(sep)
  let n = 0
  while (n < x.length && n < y.length && x[n] === y[n]) n++
  return x.slice(0, n).join(sep) || sep
}

/**
 * Copies the app to a temporary folder with native-sse installed (a copy of
 * its published files) and next, react and react-dom linked from the
 * repository, and builds it.
 */
async function buildApp(bundlerFlags) {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'native-sse-next-')))
  folders.push(dir)
  await cp(APP, dir, { recursive: true })
  const pkg = join(dir, 'node_modules', 'native-sse')
  await mkdir(pkg, { recursive: true })
  for (const file of PUBLISHED) await cp(join(REPO, file), join(pkg, file), { recursive: true })
  for (const name of ['next', 'react', 'react-dom']) {
    await symlink(join(REPO, 'node_modules', name), join(dir, 'node_modules', name), 'dir')
  }
  const env = { NEXT_TELEMETRY_DISABLED: '1', NATIVE_SSE_TURBOPACK_ROOT: commonRoot(dir, REPO) }
  const started = Date.now()
  const build = await runToExit(NODE, [NEXT, 'build', ...bundlerFlags], { cwd: dir, env, timeoutMs: BUILD_MS, children })
  const output = `${build.stdout}\n${build.stderr}`
  assert.equal(build.timedOut, false, `next build took over ${BUILD_MS} ms:\n${output}`)
  assert.equal(build.code, 0, `next build failed:\n${output}`)
  // Both routes are dynamic (ƒ), not prerendered.
  assert.match(build.stdout, /ƒ \/events/)
  assert.match(build.stdout, /ƒ \/control/)
  return { dir, env, ms: Date.now() - started }
}

/** `next start` on a free port; commands go to the app's POST /control. */
async function startApp({ dir, env }) {
  const fx = await startFixture(NODE, ['--import', FREE_PORT, NEXT, 'start', '-p', '3000', '-H', '127.0.0.1'], {
    cwd: dir,
    env,
    children,
    portLine: /^LISTENING (\d+)$/,
  })
  fx.command = async (command) => {
    const res = await fetch(`${fx.url}/control`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(command),
      signal: AbortSignal.timeout(5000),
    })
    const answer = await res.json()
    if (answer.error !== undefined) throw new Error(`the app failed ${JSON.stringify(command)}: ${answer.error}`)
    return answer.result
  }
  return fx
}

for (const { bundler, flags } of [
  { bundler: 'Turbopack', flags: [] },
  { bundler: 'webpack', flags: ['--webpack'] },
]) {
  describe(`Next.js route handler, built with ${bundler}`, () => {
    let built
    before(async () => {
      built = await buildApp(flags)
    })

    test('the build bundles the route and leaves native-sse to Node (serverExternalPackages)', () => {
      assert.ok(built.ms < BUILD_MS)
    })

    fetchServerSuite(`next start (${bundler})`, () => startApp(built))
  })
}
