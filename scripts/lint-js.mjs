// Checks of the hand-written JavaScript front that ESLint does not make
// (npm run lint runs both): every file parses (node --check), starts in
// strict mode, leaves no console.log or debugger, and the modules form no
// import cycle.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = join(dirname(fileURLToPath(import.meta.url)), '..', 'js')
const files = readdirSync(here).filter((name) => name.endsWith('.js'))
const problems = []
const imports = new Map()
for (const name of files) {
  const path = join(here, name)
  execFileSync(process.execPath, ['--check', path])
  const source = readFileSync(path, 'utf8')
  if (!source.startsWith("'use strict'")) problems.push(`${name}: does not start with 'use strict'`)
  if (/\bconsole\.log\b/.test(source)) problems.push(`${name}: console.log`)
  if (/\bdebugger\b/.test(source)) problems.push(`${name}: debugger statement`)
  const deps = [...source.matchAll(/require\('\.\/([^']+)'\)/g)].map((m) => m[1])
  imports.set(name, deps)
}
function visit(name, stack) {
  if (stack.includes(name)) {
    problems.push(`import cycle: ${[...stack, name].join(' -> ')}`)
    return
  }
  for (const dep of imports.get(name) ?? []) visit(dep, [...stack, name])
}
for (const name of files) visit(name, [])
if (problems.length > 0) {
  console.error(problems.join('\n'))
  process.exit(1)
}
console.error(`js/: ${files.length} files, no problems (${resolve(here)})`)
