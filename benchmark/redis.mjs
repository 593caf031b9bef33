// A redis-server for the benchmark's cluster rows: on a free port of
// 127.0.0.1, without persistence (no RDB snapshots, no append-only file:
// the stream only has to live for one row), in a temporary directory.
// `stop()` ends it (SIGTERM, SIGKILL after 3 s) and removes the directory;
// a process that exits without calling it still kills it (the 'exit' hook).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const running = new Set()
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL')
})

async function freePort() {
  const server = net.createServer()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const done = (ok) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), 500)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => done(data.toString('latin1').startsWith('+PONG')))
    socket.on('error', () => done(false))
  })
}

export async function startRedis({ timeoutMs = 10_000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'native-sse-bench-redis-'))
  const port = await freePort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--loglevel', 'warning']
  const proc = spawn(process.env.REDIS_SERVER ?? 'redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  running.add(proc)
  let log = ''
  proc.stderr.on('data', (d) => (log += d))
  const exited = new Promise((resolve) => {
    proc.once('exit', resolve)
    proc.once('error', (err) => {
      log += err.message
      resolve(null)
    })
  }).then(() => running.delete(proc))
  const stop = async () => {
    if (running.has(proc)) {
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + timeoutMs
  while (!(await ping(port))) {
    if (!running.has(proc) || Date.now() > deadline) {
      await stop()
      throw new Error(`redis-server did not start on port ${port}: ${log}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { port, url: `redis://127.0.0.1:${port}`, stop }
}
