'use strict'
// Loads the generated binding (`binding.js`, which finds the addon). Its
// own failure message ("npm has a bug related to optional dependencies")
// sends the user the wrong way, so a failure is explained instead: on Deno
// a missing permission, with the flags that fix it; elsewhere a platform
// with neither a prebuilt binary nor a build from source, in one line.

/**
 * What the loader needs on Deno: its environment switches, the system
 * facts it reads to tell glibc from musl, FFI for the addon. (A package
 * linked from outside node_modules also needs --allow-read; Deno's own
 * error names it.)
 */
const DENO_NEEDS = [
  ['--allow-env', { name: 'env', variable: 'NAPI_RS_NATIVE_LIBRARY_PATH' }],
  ['--allow-sys', { name: 'sys', kind: 'cpus' }],
  ['--allow-ffi', { name: 'ffi' }],
]
const DENO_COMMAND = 'deno run --allow-net --allow-env --allow-sys --allow-ffi app.ts'

function load() {
  try {
    return require('../binding.js')
  } catch (err) {
    throw explain(err)
  }
}

function explain(err) {
  if (typeof Deno !== 'object' || Deno === null || typeof Deno.permissions?.querySync !== 'function') return missingBinary(err)
  const missing = []
  for (const [flag, descriptor] of DENO_NEEDS) {
    let state
    try {
      state = Deno.permissions.querySync(descriptor).state
    } catch {
      state = 'unknown'
    }
    if (state !== 'granted') missing.push(flag)
  }
  // The permission Deno refused, as its error names it.
  const named = /run again with the (--allow-[a-z]+) flag/.exec(String(err?.message ?? ''))
  if (named !== null && !missing.includes(named[1])) missing.push(named[1])
  if (missing.length === 0) return missingBinary(err)
  // Not `cause`: Deno prints the cause chain, and napi-rs's error carries
  // the "npm has a bug" advice this message replaces.
  const explained = new Error(
    `native-sse: Deno must be allowed to load the native addon: run with ${missing.join(' ')} (${DENO_COMMAND})`,
  )
  Object.defineProperty(explained, 'loadError', { value: err, enumerable: false })
  return explained
}

/** The loader found no binary for this platform: one line that says so. */
function missingBinary(err) {
  if (!/Cannot find native binding/.test(String(err?.message ?? ''))) return err
  const explained = new Error(require('./platform.js').missingBinaryMessage())
  // Not `cause`: the loader's error repeats the advice this line replaces.
  Object.defineProperty(explained, 'loadError', { value: err, enumerable: false })
  return explained
}
module.exports = { load }
