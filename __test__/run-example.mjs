// Starts an example in a child process and waits for the port it listens on.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/**
 * Runs `node [...nodeArgs] <example>` from the repository root and resolves
 * with `{ port, child, output(), stop() }` once the child reports its port
 * on stdout (a line matching `portPattern`).
 */
export function runExample(example, { nodeArgs = [], env = {}, portPattern = /LISTENING (\d+)/, timeoutMs = 15_000 } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, example], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(async () => {
      await stop()
      reject(new Error(`${example} did not report a port in ${timeoutMs} ms\n${stdout}\n${stderr}`))
    }, timeoutMs)
    const onData = () => {
      const match = stdout.match(portPattern)
      if (!match) return
      clearTimeout(timer)
      child.stdout.off('data', onData)
      resolve({ port: Number(match[1]), child, exited, output: () => ({ stdout, stderr }), stop })
    }
    child.stdout.on('data', onData)
    exited.then(({ code }) => {
      clearTimeout(timer)
      reject(new Error(`${example} exited with ${code} before listening\n${stdout}\n${stderr}`))
    })
  })
}
