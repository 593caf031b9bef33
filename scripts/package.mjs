// `npm run package`: builds the platform packages this Linux x64 machine
// can build (Linux x64/arm64 with glibc 2.17+ and with musl, and WASI) and
// writes into dist/ one tarball per platform and the main tarball, as they
// are published.
//
//   node scripts/package.mjs                       build the five, pack all
//   node scripts/package.mjs --platforms a,b       only these platforms
//   node scripts/package.mjs --artifacts DIR       no build: pack the
//       binaries found in DIR (as the release workflow downloads them from
//       each runner: native-sse.<platform>.node, the WASI files), all eight
//       platforms unless --platforms names some
//
// The glibc builds link with zig against glibc 2.17 (targets
// `<triple>.2.17`), and are checked to reference no newer GLIBC_ symbol
// version; the musl builds link with zig too; WASI builds with plain cargo.
// The tools come from scripts/cross-tools.sh. The platform builds go to
// target/package/ (their own cargo target dir), never to the repository
// root; `npm run build` runs first, for the loader and types of the main
// package, and leaves the root addon as the tests use it. With
// --artifacts, binding.js and binding.d.ts must already be there.
//
// The main package is staged in a temporary folder: the files of
// package.json `files` but binaries, and a package.json without scripts
// (`prepare` builds from source in a git clone; a published package must
// run nothing on install) or devDependencies, whose optionalDependencies
// are the platform packages at the same version. `stageMain()` does this
// alone, without building (__test__/package.test.mjs checks its output).
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const DIST = join(ROOT, 'dist')
const NPM_DIR = join(ROOT, 'npm')
const BUILD_DIR = join(ROOT, 'target', 'package')

/** The highest glibc symbol version a glibc binary may reference. */
export const GLIBC_MAX = '2.17'

/**
 * Every target of package.json `napi.targets`, by its package folder in
 * npm/ (`native-sse-<dir>`). `build`: the triple built here (none: only on
 * its own CI runner); `zig`: linked with zig (`napi build -x`).
 */
export const PLATFORMS = [
  { dir: 'linux-x64-gnu', target: 'x86_64-unknown-linux-gnu', build: 'x86_64-unknown-linux-gnu.2.17', zig: true, elf: 'X86-64', libc: 'gnu' },
  { dir: 'linux-arm64-gnu', target: 'aarch64-unknown-linux-gnu', build: 'aarch64-unknown-linux-gnu.2.17', zig: true, elf: 'AArch64', libc: 'gnu' },
  { dir: 'linux-x64-musl', target: 'x86_64-unknown-linux-musl', build: 'x86_64-unknown-linux-musl', zig: true, elf: 'X86-64', libc: 'musl' },
  { dir: 'linux-arm64-musl', target: 'aarch64-unknown-linux-musl', build: 'aarch64-unknown-linux-musl', zig: true, elf: 'AArch64', libc: 'musl' },
  { dir: 'wasm32-wasi', target: 'wasm32-wasip1-threads', build: 'wasm32-wasip1-threads', zig: false, wasm: true },
  { dir: 'darwin-x64', target: 'x86_64-apple-darwin' },
  { dir: 'darwin-arm64', target: 'aarch64-apple-darwin' },
  { dir: 'win32-x64-msvc', target: 'x86_64-pc-windows-msvc' },
]

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'))
}

export function rootManifest() {
  return readJson(join(ROOT, 'package.json'))
}

/** The package.json of a platform package, at the main package's version. */
export function platformManifest(platform, version = rootManifest().version) {
  return { ...readJson(join(NPM_DIR, platform.dir, 'package.json')), version }
}

/** The published package.json of the main package. */
export function mainManifest(pkg = rootManifest()) {
  const manifest = { ...pkg }
  delete manifest.scripts
  delete manifest.devDependencies
  delete manifest.overrides
  manifest.files = pkg.files.filter((entry) => !entry.includes('*'))
  manifest.optionalDependencies = Object.fromEntries(
    PLATFORMS.map((platform) => [platformManifest(platform, pkg.version).name, pkg.version]),
  )
  return manifest
}

/**
 * Stages the main package in `dest` (made if missing): package.json
 * `files` (but its `*.node` pattern: binaries come from the platform
 * packages), README.md and LICENSE, and `mainManifest()` as package.json.
 * Returns the manifest.
 */
export function stageMain(dest) {
  const pkg = rootManifest()
  const pattern = pkg.files.find((entry) => entry.includes('*') && entry !== '*.node')
  if (pattern) throw new Error(`package.json files: ${pattern}: only the pattern *.node is expected`)
  const manifest = mainManifest(pkg)
  mkdirSync(dest, { recursive: true })
  for (const entry of [...manifest.files, 'README.md', 'LICENSE']) {
    const from = join(ROOT, entry)
    if (!existsSync(from)) throw new Error(`${entry} (package.json files) is missing: run npm run build`)
    cpSync(from, join(dest, entry), { recursive: true })
  }
  writeFileSync(join(dest, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return manifest
}

/** Stages a platform package in `dest` from the files found in `from`. */
export function stagePlatform(platform, from, dest) {
  const manifest = platformManifest(platform)
  mkdirSync(dest, { recursive: true })
  for (const file of manifest.files) {
    const path = findFile(from, file)
    if (path === null) throw new Error(`${manifest.name}: ${file} is not in ${from}`)
    cpSync(path, join(dest, file))
  }
  cpSync(join(NPM_DIR, platform.dir, 'README.md'), join(dest, 'README.md'))
  writeFileSync(join(dest, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return manifest
}

/** `name` in `dir` or a folder under it (artifacts come one folder each). */
function findFile(dir, name) {
  if (existsSync(join(dir, name))) return join(dir, name)
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue
    const found = findFile(join(dir, entry.name), name)
    if (found !== null) return found
  }
  return null
}

/** `npm pack` of a staged folder: `{ filename, files, ... }` as npm reports it. */
export function npmPack(dir, { dryRun = false, destination } = {}) {
  const args = ['pack', '--json', '--ignore-scripts']
  if (dryRun) args.push('--dry-run')
  if (destination) args.push('--pack-destination', destination)
  const out = execFileSync('npm', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return JSON.parse(out)[0]
}

function run(command, args, options = {}) {
  console.error(`$ ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: ROOT, ...options })
  if (result.error) throw result.error
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`)
}

/** `export PATH="$(bash scripts/cross-tools.sh):$PATH"`. */
function crossToolsEnv() {
  const bin = execFileSync('bash', [join(ROOT, 'scripts', 'cross-tools.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim()
  return { ...process.env, PATH: `${bin}:${process.env.PATH}` }
}

function build(platform, env) {
  const out = join(BUILD_DIR, 'out', platform.dir)
  rmSync(out, { recursive: true, force: true })
  const napi = join(ROOT, 'node_modules', '.bin', 'napi')
  const args = ['build', '--platform', '--release', '--target', platform.build, '--output-dir', out]
  if (platform.zig) args.push('-x')
  // The loader and types come from `npm run build`; these copies are unused.
  args.push('--no-js', '--dts', 'binding.d.ts', '--target-dir', join(BUILD_DIR, 'cargo'))
  run(napi, args, { env })
  return out
}

const versionKey = (v) => v.split('.').map(Number)
function compareVersions(a, b) {
  const [x, y] = [versionKey(a), versionKey(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/**
 * Checks a built Linux binary with readelf: its machine, its C library
 * (libc.so.6 for glibc, none of glibc's for musl) and, for glibc, that no
 * symbol version above GLIBC_MAX is referenced. Returns a summary.
 */
export function checkElf(platform, file) {
  const readelf = (...flags) => execFileSync('readelf', ['-W', ...flags, file], { encoding: 'utf8' })
  const machine = /Machine:\s+(.*)/.exec(readelf('-h'))?.[1] ?? ''
  if (!machine.includes(platform.elf)) throw new Error(`${file}: machine ${machine}, expected ${platform.elf}`)
  const needed = [...readelf('-d').matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const glibc = [...new Set([...readelf('-V').matchAll(/Name: GLIBC_([0-9.]+)/g)].map((m) => m[1]))].sort(
    compareVersions,
  )
  const max = glibc.at(-1) ?? null
  if (platform.libc === 'gnu') {
    if (!needed.includes('libc.so.6')) throw new Error(`${file}: does not link libc.so.6 (${needed.join(', ')})`)
    if (max === null || compareVersions(max, GLIBC_MAX) > 0) {
      throw new Error(`${file}: references GLIBC_${max}, above GLIBC_${GLIBC_MAX}`)
    }
  } else if (!needed.includes('libc.so') || needed.some((lib) => /^lib(c|m|pthread|dl|rt)\.so\.\d/.test(lib)) || max !== null) {
    throw new Error(`${file}: a musl build that needs glibc (${needed.join(', ')}${max ? `, GLIBC_${max}` : ''})`)
  }
  return { machine, needed, glibcMax: max }
}

function checkWasm(file) {
  const magic = readFileSync(file).subarray(0, 4)
  if (!magic.equals(Buffer.from([0, 0x61, 0x73, 0x6d]))) throw new Error(`${file}: not a WebAssembly module`)
}

function parseArgs(argv) {
  const options = { artifacts: null, platforms: null }
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1]
    if (!['--artifacts', '--platforms'].includes(argv[i])) {
      throw new Error(`unknown argument ${argv[i]} (see the head of scripts/package.mjs)`)
    }
    if (value === undefined || value.startsWith('--')) throw new Error(`${argv[i]} needs a value`)
    if (argv[i] === '--artifacts') options.artifacts = value
    else options.platforms = value.split(',')
    i++
  }
  return options
}

function main() {
  const options = parseArgs(process.argv.slice(2))
  const pkg = rootManifest()
  const targets = pkg.napi.targets
  for (const target of targets) {
    if (!PLATFORMS.some((p) => p.target === target)) throw new Error(`napi.targets has ${target}, which PLATFORMS lacks`)
  }
  let platforms = PLATFORMS.filter((p) => targets.includes(p.target))
  if (options.platforms) {
    for (const name of options.platforms) {
      if (!platforms.some((p) => p.dir === name)) throw new Error(`unknown platform ${name}`)
    }
    platforms = platforms.filter((p) => options.platforms.includes(p.dir))
  } else if (!options.artifacts) {
    platforms = platforms.filter((p) => p.build)
  }
  if (!options.artifacts) {
    const cannot = platforms.filter((p) => !p.build).map((p) => p.dir)
    if (cannot.length > 0) throw new Error(`not buildable here (its own CI runner builds it): ${cannot.join(', ')}`)
  }

  // The loader and the types the main package ships (binding.js,
  // binding.d.ts) come from the normal build, from the same sources as the
  // binaries; it also leaves the repository's own addon as the tests use it.
  if (!options.artifacts) run('npm', ['run', 'build'])
  const env = options.artifacts ? null : crossToolsEnv()
  const built = []
  for (const platform of platforms) {
    const from = options.artifacts ?? build(platform, env)
    const { files } = platformManifest(platform)
    const binary = (ext) => findFile(from, files.find((f) => f.endsWith(ext)) ?? '') ?? `${ext} file in ${from}`
    let check = null
    if (platform.elf) check = checkElf(platform, binary('.node'))
    if (platform.wasm) checkWasm(binary('.wasm'))
    built.push({ platform, from, check })
  }

  rmSync(DIST, { recursive: true, force: true })
  mkdirSync(DIST, { recursive: true })
  const stage = mkdtempSync(join(tmpdir(), 'native-sse-package-'))
  const packed = []
  try {
    for (const { platform, from, check } of built) {
      const dir = join(stage, platform.dir)
      stagePlatform(platform, from, dir)
      packed.push({ ...npmPack(dir, { destination: DIST }), check })
    }
    const main = join(stage, 'main')
    const manifest = stageMain(main)
    const result = npmPack(main, { destination: DIST })
    const stray = result.files.filter((f) => /\.(node|wasm)$/.test(f.path))
    if (stray.length > 0) throw new Error(`the main tarball holds ${stray.map((f) => f.path).join(', ')}`)
    if (manifest.scripts) throw new Error('the main package.json has scripts')
    packed.push({ ...result, check: null })
  } finally {
    rmSync(stage, { recursive: true, force: true })
  }

  console.error(`\n${relative(process.cwd(), DIST) || '.'}/:`)
  for (const { filename, check } of packed) {
    const size = statSync(join(DIST, basename(filename))).size
    const note = check?.glibcMax ? `  (needs GLIBC_${check.glibcMax})` : check ? '  (musl)' : ''
    console.error(`  ${basename(filename).padEnd(42)} ${(size / 1024).toFixed(0).padStart(6)} KiB${note}`)
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main()
  } catch (err) {
    console.error(`package: ${err.message}`)
    process.exit(1)
  }
}
