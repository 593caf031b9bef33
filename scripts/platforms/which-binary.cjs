'use strict'
// Run by scripts/test-platforms.mjs with each target's Node, environment and
// wrapper, before that target's tests: loads the package as the tests do
// (`require('native-sse')`, the package's own loader) and prints one JSON
// line saying which Node this is, which C library it runs on, what the
// loader sees in /usr/bin/ldd, and which binary file it actually loaded.
const { readFileSync } = require('node:fs')

const before = new Set(Object.keys(require.cache))
const sse = require('native-sse')
// A `.node` addon and the generated WASI loader are modules too: the ones
// that came with this require are what the loader picked.
const loaded = Object.keys(require.cache).filter((file) => !before.has(file) && /\.(node|wasi\.cjs)$/.test(file))

let ldd = null
try {
  ldd = readFileSync('/usr/bin/ldd', 'utf8').includes('musl') ? 'musl' : 'glibc'
} catch {
  // No ldd: the loader falls back to the process report.
}

const header = process.report.getReport().header
console.log(
  JSON.stringify({
    node: process.version,
    arch: process.arch,
    libc: header.glibcVersionRuntime ? `glibc ${header.glibcVersionRuntime}` : 'musl',
    ldd,
    loaded,
    exports: Object.keys(sse).sort(),
  }),
)
