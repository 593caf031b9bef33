#!/usr/bin/env node
// The first step of `npm test`: what the tests need from the system, beside
// the npm packages, is there. Two programs, looked for exactly where the
// tests look:
//   - Chromium at CHROMIUM_PATH, else /usr/bin/chromium (browser.test.mjs,
//     fetch-browser.test.mjs: the browser's own EventSource);
//   - redis-server 7.0 or later as REDIS_SERVER, else `redis-server` on
//     PATH (redis-server.mjs starts its own servers on free ports).
// When both are there it prints nothing and exits 0 (a few milliseconds
// after Node starts). When one is missing at its default place, root with
// apt-get installs the Debian package (`chromium`, `redis-server`), as CI
// does on a fresh machine; anyone else gets one line saying what to
// install, and exit 1.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, isAbsolute, join } from 'node:path'

/** Redis 7.0 or later: earlier ones do not report how many entries a stream ever had, which the `expired` tests check. */
const REDIS_MIN_MAJOR = 7

/** Where the tests look, and the Debian package that puts it there. */
function requirements() {
  return [
    { name: 'chromium', pkg: 'chromium', env: 'CHROMIUM_PATH', program: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
    { name: 'redis-server', pkg: 'redis-server', env: 'REDIS_SERVER', program: process.env.REDIS_SERVER ?? 'redis-server', check: redisVersion },
  ]
}

function executable(file) {
  try {
    accessSync(file, constants.X_OK)
    return statSync(file).isFile()
  } catch {
    return false
  }
}

/** `program` as spawn() finds it: a path, or the first match on PATH; null when there is none. */
function which(program) {
  if (program.includes('/')) return executable(program) ? program : null
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue
    const file = join(dir, program)
    if (executable(file)) return file
  }
  return null
}

/** Null when redis-server is recent enough, else what is wrong with it. */
function redisVersion(file) {
  const r = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  const m = /\bv=(\d+)\.(\d+)/.exec(r.stdout ?? '')
  if (m === null) return `${file} --version did not say its version`
  if (Number(m[1]) < REDIS_MIN_MAJOR) return `${file} is Redis ${m[1]}.${m[2]}; the tests need ${REDIS_MIN_MAJOR}.0 or later`
  return null
}

/** What is missing or unusable: [{ req, problem, installable }]. */
function survey() {
  const found = []
  for (const req of requirements()) {
    const file = which(req.program)
    if (file === null) {
      // A path of one's own (CHROMIUM_PATH, REDIS_SERVER) is not where the
      // Debian package installs: installing would not make it appear.
      found.push({ req, problem: 'missing', installable: process.env[req.env] === undefined || process.env[req.env] === '' })
      continue
    }
    const problem = req.check?.(file) ?? null
    if (problem !== null) found.push({ req, problem, installable: false })
  }
  return found
}

/** The one line for what cannot be installed here. */
function advice(problems) {
  const missing = problems.filter((p) => p.problem === 'missing')
  const parts = []
  if (missing.length > 0) {
    const looked = (req) =>
      req.program.includes('/') ? `looked for ${req.program}` : `looked for ${req.program} on PATH`
    const names = missing.map((p) => `${p.req.name} (${looked(p.req)})`).join(' and ')
    const pkgs = missing.map((p) => p.req.pkg).join(' ')
    const envs = missing.map((p) => p.req.env).join(' / ')
    parts.push(`npm test needs ${names}: install ${missing.length > 1 ? 'them' : 'it'} (Debian: sudo apt-get install -y ${pkgs}), or set ${envs} to yours`)
  }
  for (const p of problems.filter((p) => p.problem !== 'missing')) parts.push(p.problem)
  return parts.join('; ')
}

function main() {
  let problems = survey()
  if (problems.length === 0) return 0
  const installable = problems.filter((p) => p.installable)
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  const aptGet = which('apt-get')
  if (installable.length === 0 || !isRoot || aptGet === null) {
    console.error(`provision: ${advice(problems)}`)
    return 1
  }
  const pkgs = installable.map((p) => p.req.pkg)
  console.log(`provision: installing the Debian packages ${pkgs.join(' ')} (apt-get, as root)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  for (const args of [['update', '-q'], ['install', '-y', '-q', ...pkgs]]) {
    const r = spawnSync(aptGet, args, { stdio: ['ignore', 'inherit', 'inherit'], env, timeout: 1_200_000 })
    if (r.status !== 0) {
      console.error(`provision: apt-get ${args[0]} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}): ${advice(problems)}`)
      return 1
    }
  }
  problems = survey()
  if (problems.length > 0) {
    console.error(`provision: after apt-get install: ${advice(problems)}`)
    return 1
  }
  return 0
}

process.exitCode = main()
