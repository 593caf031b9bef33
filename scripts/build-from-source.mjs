// `prepare`: builds the addon from source in a git clone (`npm install`).
// Without Rust, one line says which platform was looked for and what to
// install, instead of `napi: not found` or a page of cargo errors.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { noRustMessage } = require('../js/platform.js')

const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' })
if (cargo.error || cargo.status !== 0) {
  console.error(noRustMessage())
  process.exit(1)
}
const build = spawnSync('npm', ['run', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' })
process.exit(build.status ?? 1)
