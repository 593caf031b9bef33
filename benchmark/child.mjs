// A benchmark child process (server or load client) driven over IPC.
import { fork, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Forks `benchmark/<script>`. `next(type)` resolves with the next message of
 * that type (rejects after `timeoutMs` or when the process exits); `on(type,
 * fn)` hands every later message of that type to `fn` instead; `stop()` asks
 * the process to exit and kills it after 3 s (`options.exitGraceMs`).
 *
 * `options.wrap`, a command and its arguments, runs Node under that command
 * (`valgrind --tool=callgrind ...`): the process is started as
 * `<wrap...> node <execArgv...> <script> <argv...>`, with the IPC channel
 * inherited through it.
 *
 * `options.execPath` runs the script with another runtime than this Node
 * (Bun: node_modules/.bin/bun); IPC works the same (JSON messages).
 */
export function child(script, argv = [], execArgv = [], timeoutMs = 120_000, options = {}) {
  const { wrap, execPath, exitGraceMs = 3000 } = options
  const stdio = ['ignore', 'inherit', 'inherit', 'ipc']
  const proc = wrap
    ? spawn(wrap[0], [...wrap.slice(1), process.execPath, ...execArgv, join(here, script), ...argv], { stdio })
    : fork(join(here, script), argv, { execArgv, stdio, ...(execPath ? { execPath } : {}) })
  const queue = []
  const waiters = []
  const handlers = new Map()
  proc.on('message', (m) => {
    const handler = handlers.get(m.type)
    if (handler) return handler(m)
    const i = waiters.findIndex((w) => w.type === m.type)
    if (i === -1) queue.push(m)
    else waiters.splice(i, 1)[0].resolve(m)
  })
  const exited = new Promise((resolve) => {
    proc.on('exit', resolve)
    proc.on('error', (err) => resolve(err.message)) // could not be started
  })
  return {
    pid: proc.pid,
    exited,
    send: (m) => proc.connected && proc.send(m),
    on(type, fn) {
      handlers.set(type, fn)
      const earlier = queue.filter((m) => m.type === type)
      for (const m of earlier) queue.splice(queue.indexOf(m), 1)
      for (const m of earlier) fn(m)
    },
    next(type, wait = timeoutMs) {
      const i = queue.findIndex((m) => m.type === type)
      if (i !== -1) return Promise.resolve(queue.splice(i, 1)[0])
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${script}: no '${type}' within ${wait} ms`)), wait)
        waiters.push({ type, resolve: (m) => (clearTimeout(timer), resolve(m)) })
        exited.then((code) => (clearTimeout(timer), reject(new Error(`${script} exited (${code}) while waiting for '${type}'`))))
      })
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        if (proc.connected) proc.send({ type: 'exit' })
        else proc.kill('SIGKILL')
        const timer = setTimeout(() => proc.kill('SIGKILL'), exitGraceMs)
        await exited
        clearTimeout(timer)
      }
    },
  }
}
