// A real redis-server for tests: started on a free port on 127.0.0.1 with
// its own temporary directory and an append-only file synced on every write
// (so a restart keeps the streams), stopped and started again on the same
// port and directory. Every process started here is tracked, and
// `killAllRedis()` (call it from an `after()` hook) kills whatever is still
// running, even when a test failed half-way.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server'

const running = new Set()

// The last resort: a test process that exits leaves no redis-server behind.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort() {
  const server = net.createServer()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Sends PING on a fresh connection; resolves true on +PONG, else false. */
export function ping(port, { timeoutMs = 1000 } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const done = (answer) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => {
      text += data.toString('latin1')
      if (text.includes('\r\n')) done(text.startsWith('+PONG'))
    })
    socket.on('error', () => done(false))
    socket.on('close', () => done(false))
  })
}

/**
 * Starts redis-server and resolves once it answers PING. The returned handle
 * has `port`, `dir`, `url`, `stop()` (SIGTERM: Redis shuts down cleanly and
 * syncs the append-only file; waits for the exit), `kill()` (SIGKILL, waits
 * for the exit), `signal(name)` (e.g. SIGSTOP, SIGCONT), `start()` (again,
 * same port and directory) and `close()` (stop, then remove the directory).
 * With `persist: false` there is no append-only file (and no snapshot): a
 * restart starts empty.
 */
export async function startRedis({ startTimeoutMs = 10000, persist = true } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'native-sse-redis-'))
  let child = null
  let port = 0
  let log = ''

  async function launch() {
    log = ''
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--appendonly', persist ? 'yes' : 'no',
      '--appendfsync', 'always',
      '--save', '',
      '--daemonize', 'no',
      '--protected-mode', 'yes',
      '--loglevel', 'warning',
    ]
    const started = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = started
    running.add(started)
    started.exited = new Promise((resolve) => {
      started.once('exit', (code, signal) => {
        running.delete(started)
        resolve({ code, signal })
      })
      started.once('error', (err) => {
        running.delete(started)
        log += `\nspawn failed: ${err.message}`
        resolve({ code: null, signal: null, error: err })
      })
    })
    started.stdout.on('data', (data) => (log += data))
    started.stderr.on('data', (data) => (log += data))
    let gone = false
    started.exited.then(() => (gone = true))
    const deadline = Date.now() + startTimeoutMs
    for (;;) {
      if (gone) throw new Error(`redis-server exited while starting on port ${port}:\n${log}`)
      if (await ping(port, { timeoutMs: 500 })) return
      if (Date.now() > deadline) {
        await stopChild(started)
        throw new Error(`redis-server did not answer PING on port ${port} within ${startTimeoutMs} ms:\n${log}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  // The port is free when chosen but may be taken before Redis binds it:
  // the first start tries a few ports.
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    try {
      await launch()
      break
    } catch (err) {
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true })
        throw err
      }
    }
  }

  const handle = {
    dir,
    get port() {
      return port
    },
    get url() {
      return `redis://127.0.0.1:${port}`
    },
    get running() {
      return child !== null && running.has(child)
    },
    get log() {
      return log
    },
    /** SIGTERM (a clean shutdown that syncs the AOF), then waits for exit. */
    async stop() {
      if (child === null) return
      const stopping = child
      child = null
      await stopChild(stopping)
    },
    /** SIGKILL (nothing is synced), then waits for the exit. */
    async kill() {
      if (child === null) return
      const killed = child
      child = null
      // A stopped process is continued so that it can die now.
      killed.kill('SIGKILL')
      await killed.exited
    },
    /** Sends `name` (SIGSTOP, SIGCONT, ...) to the running server. */
    signal(name) {
      if (child !== null) child.kill(name)
    },
    /** Starts it again on the same port and directory. */
    async start() {
      if (child !== null) throw new Error('redis-server is already running')
      await launch()
    },
    async close() {
      handle.signal('SIGCONT')
      await handle.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return handle
}

/** SIGTERM, then SIGKILL when the process has not exited after 5 s. */
async function stopChild(child, { graceMs = 5000 } = {}) {
  if (!running.has(child)) return child.exited
  child.kill('SIGTERM')
  let timer
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs)
  })
  const result = await Promise.race([child.exited, late])
  clearTimeout(timer)
  if (result === 'late') {
    child.kill('SIGKILL')
    return child.exited
  }
  return result
}

/** Kills every redis-server this module started that is still running. */
export async function killAllRedis() {
  const children = [...running]
  for (const child of children) child.kill('SIGKILL')
  await Promise.all(children.map((child) => child.exited))
}
