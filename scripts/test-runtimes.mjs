#!/usr/bin/env node
// The core tests under every runtime the package supports: Node 20, 22, 24
// and 26 (the official binaries the npm registry ships as
// `node-<os>-<arch>`, fetched once into .cache/node/<version>/), Bun and
// Deno (the `bun` and `deno` devDependencies). The addon is one binary
// built against Node-API, not against one Node's ABI, so the same `.node`
// file serves every one of them: before its tests, each runtime loads the
// package once and reports which addon file it loaded, and the summary
// shows that it is the same file for all.
//
//   node scripts/test-runtimes.mjs              # all of them
//   node scripts/test-runtimes.mjs node22 deno  # some of them
//
// Each run has a time limit (RUNTIME_TIMEOUT_S, 300 s by default; a run
// takes 5 to 15 s). Its output goes to .cache/test-runtimes/<name>.log and
// is printed when it fails. Exits non-zero when any run fails, times out
// or runs no test.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')
const CACHE = join(REPO, '.cache')

/** The Node versions tested: the newest release of each line, pinned. */
const NODE_VERSIONS = ['20.20.2', '22.23.5', '24.22.3', '26.12.1']

/** The core tests: bytes, sending, validation, lifecycle, channel, HTTP/2, the Fetch form. */
const CORE = ['bytes', 'sending', 'validation', 'lifecycle', 'channel', 'http2', 'fetch'].map(
  (name) => `__test__/${name}.test.mjs`,
)

/** What Deno must allow: the addon (ffi, and env/sys for its loader), servers, and child processes (lifecycle). */
const DENO_FLAGS = ['--allow-net', '--allow-env', '--allow-sys', '--allow-ffi', '--allow-read', '--allow-run']

const TIMEOUT_MS = Number(process.env.RUNTIME_TIMEOUT_S || 300) * 1000
const DOWNLOAD_TIMEOUT_MS = 300_000

const RUNTIMES = [
  ...NODE_VERSIONS.map((version) => ({
    name: `node${version.split('.')[0]}`,
    label: `Node ${version}`,
    prepare: () => nodeBinary(version),
    // --test-force-exit: a failed test that leaves a server open must not
    // hold its file (and the run) until the time limit.
    command: (bin) => [bin, ['--test', '--test-reporter=tap', '--test-timeout=120000', '--test-force-exit', ...CORE]],
    counts: (out) => ({ passed: last(out, /^# pass (\d+)$/gm), failed: last(out, /^# fail (\d+)$/gm) + last(out, /^# cancelled (\d+)$/gm) }),
    probe: (bin) => [bin, ['-e', probeScript('require', `process.version + ' (ABI ' + process.versions.modules + ')'`)]],
  })),
  {
    name: 'bun',
    label: 'Bun',
    prepare: () => devTool('bun'),
    command: (bin) => [bin, ['test', '--timeout=30000', ...CORE.map((file) => `./${file}`)]],
    counts: (out) => ({ passed: last(out, /^\s*(\d+) pass$/gm), failed: last(out, /^\s*(\d+) fail$/gm) }),
    probe: (bin) => [bin, ['-e', probeScript('require', `'Bun ' + process.versions.bun`)]],
  },
  {
    name: 'deno',
    label: 'Deno',
    prepare: () => devTool('deno'),
    // --no-check: the runtime's behaviour is tested here, the types by tsc
    // (npm run typecheck). In the repository Deno type-checks the package's
    // own index.d.ts, and fails on its re-export from the untyped
    // binding.js (TS2305).
    command: (bin) => [bin, ['test', '--no-check', ...DENO_FLAGS, ...CORE]],
    counts: (out) => {
      const m = [...out.matchAll(/^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/gm)].at(-1)
      return m ? { passed: Number(m[1]), failed: Number(m[2]) } : { passed: NaN, failed: NaN }
    },
    probe: (bin) => [
      bin,
      [
        'eval',
        `import { createRequire } from 'node:module'\nconst require = createRequire(Deno.cwd() + '/')\n` +
          probeScript('require', `'Deno ' + Deno.version.deno`),
      ],
    ],
  },
]

/** The last number that `re` captures in `text`, or NaN. */
function last(text, re) {
  const m = [...text.matchAll(re)].at(-1)
  return m ? Number(m[1]) : NaN
}

/** node_modules/.bin/<name>, which `npm install` put there. */
function devTool(name) {
  const bin = join(REPO, 'node_modules', '.bin', name)
  if (!existsSync(bin)) throw new Error(`${relative(REPO, bin)} is missing: run npm install`)
  return bin
}

/** .cache/node/<version>/<os>-<arch>/bin/node, fetched from the npm registry when missing. */
function nodeBinary(version) {
  const os = process.platform === 'win32' ? 'win' : process.platform
  const dir = join(CACHE, 'node', version, `${os}-${process.arch}`)
  const bin = join(dir, 'bin', 'node')
  if (existsSync(bin)) return bin
  const pkg = `node-${os}-${process.arch}@${version}`
  mkdirSync(dirname(dir), { recursive: true })
  // Unpacked next to its place and renamed into it: a run that stops half
  // way leaves nothing that looks complete.
  const tmp = mkdtempSync(join(dirname(dir), '.download-'))
  try {
    const t0 = Date.now()
    const pack = spawnSync('npm', ['pack', pkg, '--pack-destination', tmp, '--silent'], {
      cwd: tmp,
      encoding: 'utf8',
      timeout: DOWNLOAD_TIMEOUT_MS,
    })
    if (pack.status !== 0) throw new Error(`npm pack ${pkg} failed: ${(pack.stderr || pack.error?.message || '').trim()}`)
    const tarball = join(tmp, pack.stdout.trim().split('\n').at(-1))
    const untar = spawnSync('tar', ['xzf', tarball, '-C', tmp, 'package/bin/node'], { encoding: 'utf8' })
    if (untar.status !== 0) throw new Error(`unpacking ${pkg} failed: ${untar.stderr.trim()}`)
    rmSync(tarball)
    rmSync(dir, { recursive: true, force: true })
    renameSync(join(tmp, 'package'), dir)
    console.log(`fetched ${pkg} into ${relative(REPO, dir)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
  return bin
}

/** A script that loads native-sse and prints the runtime's version, its Node-API version and the addon files it loaded. */
function probeScript(require, version) {
  return `${require}('native-sse')
console.log(JSON.stringify({ version: ${version}, napi: process.versions.napi,
  addons: Object.keys(${require}.cache).filter((file) => file.endsWith('.node')) }))`
}

/** Which addon file the runtime loads (one, and its hash), with its version and Node-API version. */
function loadedAddon(runtime, bin) {
  const [cmd, args] = runtime.probe(bin)
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } })
  if (r.status !== 0) throw new Error(`${runtime.label} cannot load native-sse:\n${r.stderr || r.error?.message}`)
  const info = JSON.parse(r.stdout.trim().split('\n').at(-1))
  if (info.addons.length !== 1) throw new Error(`expected one addon file, ${runtime.label} loaded ${JSON.stringify(info.addons)}`)
  const file = info.addons[0]
  const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex')
  return { ...info, file, sha256 }
}

/** Runs `cmd` in its own process group with a time limit; resolves with its exit status and output. */
function run(cmd, args, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    running.add(child)
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child)
    }, TIMEOUT_MS)
    child.on('error', (err) => (out += `\n${err.message}\n`))
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      running.delete(child)
      // Whatever the runner left behind in its group goes too.
      killGroup(child)
      resolve({ code, signal, timedOut, out })
    })
  })
}

const running = new Set()
function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // The group is gone already.
  }
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of running) killGroup(child)
    process.exit(130)
  })
}

/** Without colour codes (NO_COLOR is set, but not every runner reads it). */
const ESC = String.fromCharCode(27)
const strip = (text) => text.replace(new RegExp(`${ESC}\\[[0-9;]*[A-Za-z]`, 'g'), '')

async function main() {
  const wanted = process.argv.slice(2)
  const unknown = wanted.filter((name) => !RUNTIMES.some((r) => r.name === name))
  if (unknown.length > 0) {
    console.error(`unknown runtime ${unknown.join(', ')}; known: ${RUNTIMES.map((r) => r.name).join(', ')}`)
    process.exit(2)
  }
  const selected = wanted.length > 0 ? RUNTIMES.filter((r) => wanted.includes(r.name)) : RUNTIMES
  const missing = CORE.filter((file) => !existsSync(join(REPO, file)))
  if (missing.length > 0) {
    console.error(`core test files missing: ${missing.join(', ')}`)
    process.exit(1)
  }
  const logs = join(CACHE, 'test-runtimes')
  mkdirSync(logs, { recursive: true })

  const results = []
  for (const runtime of selected) {
    const t0 = Date.now()
    const result = { runtime, passed: 0, failed: 0, ok: false, note: '' }
    results.push(result)
    let bin
    try {
      bin = runtime.prepare()
      result.addon = loadedAddon(runtime, bin)
    } catch (err) {
      result.note = err.message
      result.seconds = (Date.now() - t0) / 1000
      console.log(`${runtime.label}: not run: ${err.message}`)
      continue
    }
    const env = { ...process.env, NO_COLOR: '1', PATH: `${dirname(bin)}:${process.env.PATH}` }
    delete env.FORCE_COLOR
    delete env.NODE_TEST_CONTEXT // set when this script itself runs under node --test
    const [cmd, args] = runtime.command(bin)
    console.log(`${runtime.label}: ${relative(REPO, cmd) || cmd} ${args.join(' ')}`)
    const r = await run(cmd, args, env)
    const out = strip(r.out)
    const log = join(logs, `${runtime.name}.log`)
    writeFileSync(log, out)
    const { passed, failed } = runtime.counts(out)
    result.passed = Number.isNaN(passed) ? 0 : passed
    result.failed = Number.isNaN(failed) ? 0 : failed
    result.seconds = (Date.now() - t0) / 1000
    if (r.timedOut) result.note = `timed out after ${TIMEOUT_MS / 1000} s`
    else if (Number.isNaN(passed) || Number.isNaN(failed)) result.note = `no test summary in the output (exit ${r.code ?? r.signal})`
    else if (r.code !== 0) result.note = `exit ${r.code ?? r.signal}`
    else if (failed > 0) result.note = `${failed} failed`
    else if (passed === 0) result.note = 'ran no test'
    else result.ok = true
    if (!result.ok) {
      console.log(`----- ${runtime.label}: output (${relative(REPO, log)}) -----`)
      console.log(out.trimEnd())
      console.log(`----- ${runtime.label}: end of output -----`)
    }
  }

  console.log('\nruntime        passed  failed    time  result')
  for (const r of results) {
    const status = r.ok ? 'ok' : `FAILED: ${r.note}`
    console.log(
      `${r.runtime.label.padEnd(13)} ${String(r.passed).padStart(7)} ${String(r.failed).padStart(7)} ${`${r.seconds.toFixed(1)} s`.padStart(7)}  ${status}`,
    )
  }
  const loaded = results.filter((r) => r.addon)
  if (loaded.length > 0) {
    const files = new Set(loaded.map((r) => `${relative(REPO, r.addon.file)} (sha256 ${r.addon.sha256.slice(0, 16)})`))
    console.log(`addon: ${[...files].join(', ')}, loaded by:`)
    for (const r of loaded) console.log(`  ${r.addon.version}, Node-API ${r.addon.napi}`)
    if (files.size > 1) {
      console.log('FAILED: the runtimes loaded different addon files')
      process.exitCode = 1
    }
  }
  const passed = results.reduce((n, r) => n + r.passed, 0)
  const failedRuns = results.filter((r) => !r.ok)
  const failed = results.reduce((n, r) => n + r.failed, 0) + failedRuns.filter((r) => r.failed === 0).length
  if (failedRuns.length > 0) process.exitCode = 1
  console.log(`runtimes: ${passed} passed, ${failed} failed`)
}

await main()
