// Installs the tarballs of `npm run package` (dist/) as a user would, in
// fresh temporary apps, with neither cargo nor rustc on PATH, and checks:
//   1. the main tarball with the linux-x64-gnu one: the addon loads from
//      the platform package (none is in the main package, which has no
//      scripts) and an http server streams the welcome and an event;
//   2. the main tarball alone: the install succeeds, and requiring
//      native-sse throws the one line of js/platform.js;
//   3. the main tarball with the WASI one (`--force`: its cpu is wasm32),
//      under NAPI_RS_FORCE_WASI=error: the WASI build loads, with its
//      runtime dependencies from the registry, and streams the same.
// Exits non-zero on any failure; every step has a time limit. Run after
// `npm run package` (by .ci/run); Linux x64 with glibc only.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const DIST = join(ROOT, 'dist')
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
const require = createRequire(import.meta.url)
const { missingBinaryMessage } = require('../js/platform.js')

const INSTALL_MS = 240_000
const RUN_MS = 60_000
const tarball = (name) => join(DIST, `${name}-${version}.tgz`)
const MAIN = tarball('native-sse')

/** The server and client an app runs: prints one JSON line of what it saw. */
const SERVE = `'use strict'
const http = require('node:http')
const { SSE } = require('native-sse')
let uuid = null
const server = http.createServer((req, res) => {
  const sse = new SSE(req, res)
  uuid = sse.getUUID()
  sse.send({ eventName: 'hello', eventPayload: { from: 'installed' } })
})
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timed out' })); process.exit(1) }, 20000)
server.listen(0, '127.0.0.1', () => {
  http.get({ host: '127.0.0.1', port: server.address().port, path: '/events' }, (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (chunk) => {
      body += chunk
      const expected = 'id: 0\\nevent: welcome\\ndata: {"uuid":"' + uuid + '"}\\n\\nid: 1\\nevent: hello\\ndata: {"from":"installed"}\\n\\n'
      if (body.length < expected.length) return
      clearTimeout(timer)
      const loaded = Object.keys(require.cache).filter((f) => /\\.(node|wasi\\.cjs)$/.test(f))
      console.log(JSON.stringify({ status: res.statusCode, type: res.headers['content-type'], body, expected, loaded }))
      res.destroy()
      server.close()
      process.exit(0)
    })
  })
})
`
const LOAD = `'use strict'
try {
  require('native-sse')
  console.log(JSON.stringify({ loaded: true }))
} catch (err) {
  console.log(JSON.stringify({ message: err.message }))
}
`

/** PATH without the folders that hold cargo or rustc, and an env without Rust's or napi-rs's switches. */
function envWithoutRust(extra = {}) {
  const runnable = (file) => {
    try {
      accessSync(file, constants.X_OK)
      return true
    } catch {
      return false
    }
  }
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir && !['cargo', 'rustc', 'rustup'].some((tool) => runnable(join(dir, tool))))
  const env = { ...process.env, PATH: path.join(delimiter) }
  for (const name of Object.keys(env)) {
    if (/^(CARGO|RUSTUP|RUSTC|NAPI_RS_)/.test(name)) delete env[name]
  }
  return { ...env, ...extra }
}

const failures = []
function check(ok, what, detail = '') {
  console.error(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `\n     ${detail}` : ''}`)
  if (!ok) failures.push(what)
  return ok
}

function sh(command, args, options) {
  const result = spawnSync(command, args, { encoding: 'utf8', killSignal: 'SIGKILL', ...options })
  if (result.error?.code === 'ETIMEDOUT') result.timedOut = true
  return result
}

function freshApp(label) {
  const dir = mkdtempSync(join(tmpdir(), `native-sse-install-${label}-`))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `app-${label}`, private: true, version: '1.0.0' }))
  writeFileSync(join(dir, 'serve.cjs'), SERVE)
  writeFileSync(join(dir, 'load.cjs'), LOAD)
  return dir
}

function install(dir, tarballs, flags = []) {
  const result = sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...flags, ...tarballs], {
    cwd: dir,
    env: envWithoutRust(),
    timeout: INSTALL_MS,
  })
  return check(
    result.status === 0,
    `npm install ${flags.join(' ')} ${tarballs.map((t) => t.slice(DIST.length + 1)).join(' ')}`.replace(/\s+/g, ' '),
    result.timedOut ? `timed out after ${INSTALL_MS} ms` : (result.stderr || result.stdout).trim(),
  )
}

/** Runs `script` in the app; its JSON line, or null (reported). */
function runApp(dir, script, env = {}) {
  const result = sh(process.execPath, [script], { cwd: dir, env: envWithoutRust(env), timeout: RUN_MS })
  const line = result.stdout.trim().split('\n').at(-1)
  try {
    return JSON.parse(line)
  } catch {
    check(false, `node ${script}`, result.timedOut ? `timed out after ${RUN_MS} ms` : `${result.stdout}${result.stderr}`.trim())
    return null
  }
}

function checkServed(result, label, addonPattern) {
  if (result === null) return
  if (result.error) return check(false, `${label}: serves events`, result.error)
  check(result.status === 200 && result.type === 'text/event-stream', `${label}: 200 text/event-stream`, JSON.stringify(result))
  check(result.body === result.expected, `${label}: the welcome and one event, byte for byte`, JSON.stringify(result.body))
  check(
    result.loaded.length === 1 && addonPattern.test(result.loaded[0]),
    `${label}: the addon loaded is ${addonPattern}`,
    JSON.stringify(result.loaded),
  )
}

/** The installed main package: no binary, no scripts, the platform packages as optional dependencies. */
function checkInstalledMain(dir) {
  const pkg = join(dir, 'node_modules', 'native-sse')
  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'))
  const binaries = readdirSync(pkg, { recursive: true }).filter((f) => /\.(node|wasm)$/.test(f))
  check(binaries.length === 0, 'the main package holds no binary', binaries.join(', '))
  check(manifest.scripts === undefined, 'the main package has no scripts', JSON.stringify(manifest.scripts))
  check(
    manifest.optionalDependencies?.[`native-sse-linux-x64-gnu`] === version,
    `the main package has optionalDependencies at ${version}`,
    JSON.stringify(manifest.optionalDependencies),
  )
}

function main() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.error('test-install: Linux x64 only (it installs the linux-x64-gnu package)')
    process.exit(1)
  }
  const needed = [MAIN, tarball('native-sse-linux-x64-gnu'), tarball('native-sse-wasm32-wasi')]
  const missing = needed.filter((file) => !existsSync(file))
  if (missing.length > 0) {
    console.error(`test-install: missing ${missing.join(', ')}: run npm run package first`)
    process.exit(1)
  }
  const noRust = sh('sh', ['-c', 'command -v cargo || command -v rustc'], { env: envWithoutRust() })
  check(noRust.status !== 0 && noRust.stdout.trim() === '', 'neither cargo nor rustc on the apps\' PATH', noRust.stdout)

  const apps = []
  try {
    // 1. Main package with the matching platform package.
    const native = freshApp('gnu')
    apps.push(native)
    if (install(native, [MAIN, tarball('native-sse-linux-x64-gnu')])) {
      checkInstalledMain(native)
      checkServed(
        runApp(native, 'serve.cjs'),
        'linux-x64-gnu',
        /node_modules\/native-sse-linux-x64-gnu\/native-sse\.linux-x64-gnu\.node$/,
      )
    }

    // 2. Main package alone: no binary anywhere, no Rust.
    const bare = freshApp('bare')
    apps.push(bare)
    if (install(bare, [MAIN])) {
      const result = runApp(bare, 'load.cjs')
      if (result !== null) {
        const expected = missingBinaryMessage()
        check(
          result.message === expected && expected.startsWith('native-sse: no prebuilt binary for linux-x64-gnu') && !expected.includes('\n'),
          'without a platform package or Rust: the one-line error of js/platform.js',
          JSON.stringify(result),
        )
      }
    }

    // 3. Main package with the WASI package (its cpu is wasm32: --force).
    const wasi = freshApp('wasi')
    apps.push(wasi)
    if (install(wasi, [MAIN, tarball('native-sse-wasm32-wasi')], ['--force'])) {
      checkServed(
        runApp(wasi, 'serve.cjs', { NAPI_RS_FORCE_WASI: 'error', NODE_NO_WARNINGS: '1' }),
        'wasm32-wasi',
        /node_modules\/native-sse-wasm32-wasi\/native-sse\.wasi\.cjs$/,
      )
    }
  } finally {
    for (const dir of apps) rmSync(dir, { recursive: true, force: true })
  }

  if (failures.length > 0) {
    console.error(`test-install: ${failures.length} failed`)
    process.exit(1)
  }
  console.error('test-install: all passed')
}

main()
