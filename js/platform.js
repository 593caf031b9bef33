'use strict'
// The name of this machine's platform package (`native-sse-<platform>`),
// as napi-rs names them: linux-x64-gnu, linux-arm64-musl, darwin-arm64,
// win32-x64-msvc, ... And the one line a user gets when there is neither a
// binary for it nor Rust to build one.

function libc() {
  if (process.platform !== 'linux') return null
  try {
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
    if (report?.header?.glibcVersionRuntime) return 'gnu'
    if (Array.isArray(report?.sharedObjects) && report.sharedObjects.some((f) => f.includes('musl'))) return 'musl'
  } catch {
    // Some runtimes refuse the report; glibc is the common case.
  }
  return 'gnu'
}

function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${libc()}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** At run time: no platform package for this machine and no local build. */
function missingBinaryMessage() {
  const name = platformName()
  return (
    `native-sse: no prebuilt binary for ${name} (the optional package native-sse-${name} is not installed) and none ` +
    'was built from source; with Rust installed (https://rustup.rs), installing native-sse from its git repository ' +
    '(npm install github:native-sse/native-sse) builds it'
  )
}

/** `prepare` in a git clone, without cargo. */
function noRustMessage() {
  return (
    `native-sse: building from source for ${platformName()} needs Rust, which is not installed: install it ` +
    '(https://rustup.rs) and run npm install again'
  )
}

module.exports = { platformName, missingBinaryMessage, noRustMessage }
