// The packages as they are published, without building them: the main
// package that scripts/package.mjs stages (what `npm pack --dry-run`
// reports of it, and its package.json), the platform packages in npm/, and
// the public types. `npm run package` builds and packs them for real;
// scripts/test-install.mjs installs those tarballs.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { npmPack, PLATFORMS, readJson, ROOT, rootManifest, stageMain } from '../scripts/package.mjs'

const pkg = rootManifest()
const { noRustMessage, platformName } = createRequire(import.meta.url)('../js/platform.js')

describe('the main package as published', () => {
  let dir
  let manifest
  let files
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'native-sse-stage-'))
    manifest = stageMain(dir)
    files = npmPack(dir, { dryRun: true }).files.map((f) => f.path)
  })
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  test('holds the front, the loader, the types, README and LICENSE, and nothing else', () => {
    const js = readdirSync(join(ROOT, 'js')).map((name) => `js/${name}`)
    const expected = ['LICENSE', 'README.md', 'binding.d.ts', 'binding.js', 'index.d.ts', 'package.json', ...js]
    assert.deepEqual([...files].sort(), expected.sort())
  })

  test('no binary, test, fixture, source or build output', () => {
    const banned = /\.(node|wasm|so|dylib|dll|exe|tgz)$|^(__test__|src|crates|benchmark|examples|scripts|npm|target|dist|node_modules)\//
    assert.deepEqual(
      files.filter((f) => banned.test(f)),
      [],
    )
  })

  test('its package.json runs nothing on install and has no devDependencies', () => {
    assert.equal(manifest.scripts, undefined)
    assert.equal(manifest.devDependencies, undefined)
    const staged = readJson(join(dir, 'package.json'))
    assert.deepEqual(staged, manifest)
    assert.ok(!staged.files.some((entry) => entry.includes('*')), `files: ${staged.files}`)
  })

  test('the platform packages are its optionalDependencies, at its version', () => {
    const expected = Object.fromEntries(PLATFORMS.map((p) => [`native-sse-${p.dir}`, pkg.version]))
    assert.deepEqual(manifest.optionalDependencies, expected)
  })

  test('main, types and exports name files it holds', () => {
    for (const path of [manifest.main, manifest.types, manifest.exports['.'].types, manifest.exports['.'].default]) {
      assert.ok(files.includes(path.replace(/^\.\//, '')), path)
    }
  })
})

describe('the platform packages (npm/)', () => {
  const targets = pkg.napi.targets
  test('one per napi target', () => {
    assert.deepEqual(PLATFORMS.map((p) => p.target).sort(), [...targets].sort())
    assert.deepEqual(readdirSync(join(ROOT, 'npm')).sort(), PLATFORMS.map((p) => p.dir).sort())
  })

  for (const platform of PLATFORMS) {
    test(`native-sse-${platform.dir}`, () => {
      const manifest = readJson(join(ROOT, 'npm', platform.dir, 'package.json'))
      assert.equal(manifest.name, `native-sse-${platform.dir}`)
      assert.equal(manifest.version, pkg.version, 'npm/ is at the version of package.json (npx napi version)')
      assert.equal(manifest.scripts, undefined)
      const [os, cpu, libc] = platform.dir.split('-')
      if (platform.dir === 'wasm32-wasi') {
        assert.deepEqual(manifest.cpu, ['wasm32'])
        assert.equal(manifest.main, 'native-sse.wasi.cjs')
        assert.ok(manifest.files.includes('native-sse.wasm32-wasi.wasm'))
        assert.ok(manifest.files.includes('wasi-worker.mjs'))
        assert.ok(manifest.dependencies['@napi-rs/wasm-runtime'])
      } else {
        assert.deepEqual(manifest.os, [os])
        assert.deepEqual(manifest.cpu, [cpu])
        if (os === 'linux') assert.deepEqual(manifest.libc, [libc === 'gnu' ? 'glibc' : 'musl'])
        else assert.equal(manifest.libc, undefined)
        assert.equal(manifest.main, `native-sse.${platform.dir}.node`)
        assert.deepEqual(manifest.files, [manifest.main])
      }
    })
  }

  test('the generated loader looks for each of them', () => {
    const loader = readFileSync(join(ROOT, 'binding.js'), 'utf8')
    for (const platform of PLATFORMS) {
      assert.ok(loader.includes(`require('native-sse-${platform.dir}')`), platform.dir)
    }
  })
})

describe('the public types', () => {
  const exportNames = (source) =>
    [...source.matchAll(/^export (?:declare )?(?:interface|type|class|const|function|enum) (\w+)/gm)].map((m) => m[1])
  const index = readFileSync(join(ROOT, 'index.d.ts'), 'utf8')
  const binding = readFileSync(join(ROOT, 'binding.d.ts'), 'utf8')

  test('index.d.ts exports every declaration of binding.d.ts but the loader marker', () => {
    const generated = [...new Set(exportNames(binding))].filter((name) => name !== '__napiBindingTarget')
    assert.ok(generated.includes('SSE') && generated.includes('Channel'))
    const exported = new Set(exportNames(index))
    assert.deepEqual(generated.filter((name) => !exported.has(name)), [])
  })

  test('the classes are generic over an event map', () => {
    assert.match(index, /^export declare class SSE<E extends object = UntypedEvents>/m)
    assert.match(index, /^export interface Channel<E extends object = UntypedEvents, Remote extends boolean = boolean>/m)
  })

  test('@types/node, which the types import, is declared', () => {
    assert.match(index, /from 'node:http'/)
    assert.ok(pkg.peerDependencies['@types/node'], 'a peer dependency')
  })

  test('no __napiBindingTarget in the public types', () => {
    const code = index.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
    assert.ok(!code.includes('__napiBindingTarget'))
    assert.doesNotMatch(code, /export \*/)
  })
})

test("the repository's package.json still builds from source in a git clone", () => {
  assert.match(pkg.scripts.prepare, /build-from-source/)
  assert.ok(pkg.files.includes('*.node'), 'a git dependency packs the binary its prepare built')
})

test('npm publish from the repository root is refused (the tarballs in dist/ are what gets published)', () => {
  const run = spawnSync('npm', ['publish', '--dry-run'], { cwd: ROOT, encoding: 'utf8', timeout: 60000 })
  assert.notEqual(run.status, 0)
  assert.match(run.stderr, /native-sse: publish the tarballs npm run package writes into dist\//)
})

test('without Rust, the git install stops with one line naming the platform and what to install', () => {
  // PATH holds only this Node: no cargo, no npm.
  const bin = mkdtempSync(join(tmpdir(), 'native-sse-no-rust-'))
  try {
    symlinkSync(process.execPath, join(bin, 'node'))
    const run = spawnSync(join(bin, 'node'), [join(ROOT, 'scripts', 'build-from-source.mjs')], {
      cwd: ROOT,
      env: { PATH: bin, HOME: bin },
      encoding: 'utf8',
      timeout: 30000,
    })
    assert.equal(run.status, 1, run.stderr)
    assert.equal(run.stdout, '')
    const lines = run.stderr.trim().split('\n')
    assert.equal(lines.length, 1, run.stderr)
    assert.equal(lines[0], noRustMessage())
    assert.match(lines[0], new RegExp(`for ${platformName()} needs Rust.*https://rustup\\.rs`))
  } finally {
    rmSync(bin, { recursive: true, force: true })
  }
})
