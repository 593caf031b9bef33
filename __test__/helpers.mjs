// Shared test helpers: real servers on 127.0.0.1:0, raw HTTP/1.1 clients
// that keep the exact bytes, and bounded waits.
import { spawn } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

/** The repository's root. */
export const REPO = fileURLToPath(new URL('..', import.meta.url))

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/**
 * Starts a server on 127.0.0.1 with an OS-chosen port: an HTTP/1.1 server,
 * or whatever `create(handler)` makes (an HTTP/2 server, for instance).
 * `close()` destroys the open connections first.
 */
export async function startServer(handler, { create = http.createServer } = {}) {
  const server = create(handler)
  const sockets = new Set()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Resolves when `predicate()` is true; rejects after `timeoutMs`. */
export async function waitFor(predicate, { timeoutMs = 5000, intervalMs = 5, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** A promise with its resolve function, settled at most once. */
export function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

/**
 * Opens a raw HTTP/1.1 connection and sends a GET. Keeps every byte the
 * server sends; `response()` parses what has arrived so far.
 */
export function rawGet(port, path = '/', headers = {}) {
  const socket = net.connect(port, '127.0.0.1')
  const received = []
  let ended = false
  socket.on('data', (data) => received.push(data))
  socket.on('end', () => (ended = true))
  socket.on('close', () => (ended = true))
  socket.on('error', () => (ended = true))
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Accept: text/event-stream']
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  socket.write(lines.join('\r\n') + '\r\n\r\n')
  const client = {
    socket,
    get ended() {
      return ended
    },
    bytes: () => Buffer.concat(received),
    response: () => parseResponse(Buffer.concat(received)),
    /** Waits until the decoded body satisfies `predicate(bodyText)`. */
    async waitForBody(predicate, options) {
      await waitFor(() => {
        const parsed = client.response()
        return parsed !== null && predicate(parsed.body.toString('utf8'), parsed)
      }, { what: 'response body', ...options })
      return client.response()
    },
    close() {
      socket.destroy()
    },
  }
  return client
}

/**
 * Parses a raw HTTP/1.1 response: status line, headers (lower-cased names),
 * and a chunked body. Returns null until the head has arrived.
 */
export function parseResponse(raw) {
  const headEnd = raw.indexOf('\r\n\r\n')
  if (headEnd === -1) return null
  const [statusLine, ...headerLines] = raw.subarray(0, headEnd).toString('latin1').split('\r\n')
  const status = Number(statusLine.split(' ')[1])
  const headers = {}
  const rawHeaderNames = []
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    rawHeaderNames.push(name)
    headers[name.toLowerCase()] = line.slice(colon + 1).trim()
  }
  const rest = raw.subarray(headEnd + 4)
  let chunks = []
  let complete = false
  if (headers['transfer-encoding'] === 'chunked') {
    ;({ chunks, complete } = decodeChunked(rest))
  } else {
    chunks = rest.length ? [rest] : []
  }
  return { status, statusLine, headers, rawHeaderNames, chunks, complete, body: Buffer.concat(chunks) }
}

/** Decodes as much of a chunked body as has arrived. */
export function decodeChunked(buf) {
  const chunks = []
  let offset = 0
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', offset)
    if (lineEnd === -1) return { chunks, complete: false }
    const size = parseInt(buf.subarray(offset, lineEnd).toString('latin1'), 16)
    if (size === 0) return { chunks, complete: buf.indexOf('\r\n\r\n', lineEnd) === lineEnd }
    const start = lineEnd + 2
    if (buf.length < start + size + 2) return { chunks, complete: false }
    chunks.push(buf.subarray(start, start + size))
    offset = start + size + 2
  }
}

/** The exact bytes S42Core writes for one event. */
export function s42Frame(id, eventName, payload) {
  return `id: ${id}\nevent: ${eventName}\ndata: ${JSON.stringify(payload)}\n\n`
}

/** Splits a body into complete events (each ending with a blank line). */
export function splitEvents(body) {
  const events = body.split('\n\n')
  events.pop()
  return events.map((e) => e + '\n\n')
}

/**
 * A server whose every request opens an SSE stream made by `createSSE(req,
 * res)`. `open()` connects a raw client and resolves, once the welcome has
 * arrived, with `{ client, sse, res }`.
 */
export async function startStreamServer(createSSE) {
  const pending = []
  const srv = await startServer((req, res) => {
    pending.shift()?.({ sse: createSSE(req, res), res })
  })
  srv.open = async () => {
    const created = new Promise((resolve) => pending.push(resolve))
    const client = rawGet(srv.port, '/')
    const { sse, res } = await created
    await client.waitForBody((body) => body.endsWith('\n\n'))
    return { client, sse, res }
  }
  return srv
}

/**
 * Runs `command args` to its end (killed after `timeoutMs`) and resolves
 * with its exit code, signal, output, whether it timed out, and the spawn
 * error if it could not start. `children` (a Set) holds it while it runs,
 * so a test file's `after()` can kill what is left.
 */
export function runToExit(command, args, { cwd = REPO, env, stdin = 'ignore', timeoutMs = 20000, children } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: env === undefined ? process.env : { ...process.env, ...env },
      stdio: [stdin, 'pipe', 'pipe'],
    })
    children?.add(child)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (data) => (stdout += data))
    child.stderr.on('data', (data) => (stderr += data))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    const done = (code, signal, error = null) => {
      clearTimeout(timer)
      children?.delete(child)
      resolve({ code, signal, stdout, stderr, timedOut, error })
    }
    child.once('error', (err) => done(null, null, err))
    child.once('close', (code, signal) => done(code, signal))
  })
}

/**
 * Runs the Node script `script` (cwd: the repository) as runToExit does,
 * with the RESULT line it printed (parsed JSON, or null) as `report`.
 */
export async function runScript(script, args, { nodeArgs = [], timeoutMs = 20000, children } = {}) {
  const result = await runToExit(process.execPath, [...nodeArgs, script, ...args], { timeoutMs, children })
  const line = result.stdout.split('\n').find((l) => l.startsWith('RESULT '))
  return { ...result, report: line === undefined ? null : JSON.parse(line.slice('RESULT '.length)) }
}
