// The documentation: README.md and docs/*.md. Every code block marked
// runnable runs (```js runnable: the script exits 0; ```js runnable=server:
// it prints its URL, serves a page there, and the stream it names with
// `curl -N` answers with events); every relative link points at a file
// that exists; the API reference is what scripts/docs-reference.mjs writes
// from the doc comments.
import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { dirname, join, relative, resolve } from 'node:path'
import { REPO } from './helpers.mjs'
import { reference, OUTPUT } from '../scripts/docs-reference.mjs'

const DOCS = join(REPO, 'docs')
const FILES = [join(REPO, 'README.md'), ...readdirSync(DOCS).filter((f) => f.endsWith('.md')).map((f) => join(DOCS, f))]
// Scripts are written inside the package, so that `import 'native-sse'`
// resolves to this checkout (a package may import itself by name).
const SCRATCH = join(REPO, '.runnable')

/** The fenced code blocks of a Markdown text: [{ info, code, line }]. */
function blocks(text) {
  const found = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^```(\S*)\s*(.*)$/)
    if (!open) continue
    const start = i
    const body = []
    while (++i < lines.length && !/^```\s*$/.test(lines[i])) body.push(lines[i])
    found.push({ info: `${open[1]} ${open[2]}`.trim(), code: body.join('\n') + '\n', line: start + 1 })
  }
  return found
}

function run(file, env) {
  const child = spawn(process.execPath, [file], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((done) => child.on('exit', (code, signal) => done({ code, signal })))
  return { child, exited, output: () => ({ stdout, stderr }) }
}

/** GET `url`; resolves with { status, type, body } once `enough(body)` or the response ends. */
function get(url, enough = () => false, timeoutMs = 5000) {
  return new Promise((resolveGet, reject) => {
    const req = http.get(url, (res) => {
      let body = ''
      const finish = () => {
        clearTimeout(timer)
        req.destroy()
        resolveGet({ status: res.statusCode, type: res.headers['content-type'], body })
      }
      res.setEncoding('utf8')
      res.on('data', (chunk) => {
        body += chunk
        if (enough(body)) finish()
      })
      res.on('end', finish)
    })
    const timer = setTimeout(() => {
      req.destroy()
      reject(new Error(`GET ${url}: no answer in ${timeoutMs} ms`))
    }, timeoutMs)
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

const runnable = FILES.flatMap((file) =>
  blocks(readFileSync(file, 'utf8'))
    .filter((block) => /\brunnable\b/.test(block.info))
    .map((block) => ({ ...block, file })),
)

after(() => rmSync(SCRATCH, { recursive: true, force: true }))

describe('runnable code blocks', () => {
  test('there are some, in the README too', () => {
    assert.ok(runnable.some((block) => block.file.endsWith('README.md')))
  })

  for (const [n, block] of runnable.entries()) {
    const where = `${relative(REPO, block.file)}:${block.line}`
    test(`${where} (${block.info})`, { timeout: 30_000 }, async () => {
      mkdirSync(SCRATCH, { recursive: true })
      const script = join(SCRATCH, `block-${n}.mjs`)
      writeFileSync(script, block.code)
      const proc = run(script, { PORT: '0' })
      try {
        if (/runnable=server/.test(block.info)) {
          const url = await new Promise((found, failed) => {
            const timer = setTimeout(() => failed(new Error(`${where}: printed no URL\n${proc.output().stderr}`)), 15_000)
            const look = () => {
              const match = proc.output().stdout.match(/http:\/\/127\.0\.0\.1:\d+\/\S*/)
              if (match) {
                clearTimeout(timer)
                found(match[0])
              }
            }
            proc.child.stdout.on('data', look)
            proc.exited.then(() => failed(new Error(`${where}: exited\n${proc.output().stderr}`)))
          })
          const page = await get(url)
          assert.equal(page.status, 200)
          assert.match(page.type, /text\/html/)
          assert.match(page.body, /EventSource/)
          const curl = proc.output().stdout.match(/curl -N (\S+)/)
          assert.ok(curl, `${where}: the server prints a curl -N line`)
          // Two whole events: the welcome and the first of the timer's.
          const stream = await get(curl[1], (body) => body.split('\n\n').length > 2)
          assert.equal(stream.status, 200)
          assert.equal(stream.type, 'text/event-stream')
          assert.match(stream.body, /^id: 0\nevent: welcome\ndata: \{"uuid":"[0-9a-f-]{36}"\}\n\n/)
          assert.match(stream.body, /id: 1\nevent: \w+\ndata: .+\n\n/)
        } else {
          const { code } = await Promise.race([
            proc.exited,
            new Promise((_, failed) => setTimeout(() => failed(new Error(`${where}: still running after 20 s`)), 20_000)),
          ])
          assert.equal(code, 0, `${where} exited with ${code}\n${proc.output().stderr}`)
        }
        assert.doesNotMatch(proc.output().stderr, /Error|Warning/, `${where} wrote to stderr`)
      } finally {
        proc.child.kill('SIGKILL')
        await proc.exited
      }
    })
  }
})

test('every relative link of README.md and docs/ points at a file that exists', () => {
  const broken = []
  for (const file of FILES) {
    const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '')
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^(https?:|mailto:|#)/.test(target)) continue
      const path = resolve(dirname(file), target.split('#')[0])
      if (!existsSync(path)) broken.push(`${relative(REPO, file)}: ${target}`)
    }
  }
  assert.deepEqual(broken, [])
})

test('docs/reference/README.md is what scripts/docs-reference.mjs writes from the doc comments', () => {
  assert.equal(readFileSync(OUTPUT, 'utf8'), reference(), 'run: node scripts/docs-reference.mjs')
  // Each public method shows up with its doc comment.
  const text = readFileSync(OUTPUT, 'utf8')
  for (const name of ['getUUID(): string', 'getResponse(): Response', 'onClose(', 'broadcast<', 'add(sse']) {
    assert.ok(text.includes(name), name)
  }
})

test('README.md stays short enough to read in ten minutes', () => {
  const lines = readFileSync(join(REPO, 'README.md'), 'utf8').split('\n').length
  assert.ok(lines <= 350, `${lines} lines`)
})
