// Instruction-count mode of bench.mjs: the server's instructions per event,
// counted with valgrind's callgrind, next to the CPU time of the timed rows.
// CPU time on a shared 2-core machine moves by 10-20% from run to run; an
// instruction count does not depend on the machine's load, so small
// differences between implementations (and between versions of one) show.
//
//   node benchmark/bench.mjs --instructions        only this mode
//   node benchmark/bench.mjs                       every scenario, then this mode
//   node benchmark/bench.mjs --no-instructions     every scenario, without it
//   node benchmark/bench.mjs --quick               tiny sizes (npm test)
// --only and --impls narrow it as they narrow the timed rows (it covers the
// stream scenarios that give `instructions` sizes: burst and paced);
// --instr-jobs J runs J callgrind servers at a time (default 1, 2 in --quick).
//
// Method. For each of those scenarios and each implementation, the server
// process of the timed rows (server.mjs, with the same Node and the same
// JIT: no --jitless or any other V8 flag, which would change what is being
// compared) runs under
//   valgrind --tool=callgrind --collect-atstart=yes --callgrind-out-file=F
// twice: once sending N events to its one client and once 4N (the
// scenario's `instructions: [N, 4N]`), with the scenario's batching
// (100 events per event-loop turn in burst, 1 in paced). The client
// (client.mjs, not under valgrind) checks every event as in the timed rows;
// a mismatch invalidates the implementation's result. A run's count is the
// `summary:` (or `totals:`) line of its callgrind output file: every
// instruction executed in user space by every thread of the process (the
// main thread, V8's background compiler and GC threads, libuv's pool), in
// JIT-compiled code, V8, Node, libuv, libc and the addon alike; system calls
// count only their user-space side. Then
//   instructions/event = (instr(4N) - instr(N)) / 3N
// which cancels what both runs share: Node's startup, loading the
// implementation, the connection, the welcome event and the exit. Valgrind's
// default --smc-check=all-non-file on x86-64 makes V8's generated code safe
// to run. Callgrind runs Node about 50x slower, single-threaded (threads
// take turns), so timers and the order of threads differ from a native run;
// a configuration's count per event still repeats within 1-3% (raw, paced:
// 32 851, 32 977, 33 734 and 33 370 in four runs).
// Without valgrind on the PATH the mode is skipped, and results.json says so.
//
// results.json: `instructions` = { tool, valgrind, command, method, rows:
// [{ scenario, impl, events, instructions }, ...], summary: { <scenario>:
// { <impl>: { valid, instructionsPerEvent, vsRaw, runs } } } }.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { child } from './child.mjs'

const EVENT_NAME = 'tick'

/** valgrind's version string, or null when it cannot be run. */
export function valgrindVersion() {
  try {
    return execFileSync('valgrind', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

/** The total instruction count of a callgrind output file. */
export function callgrindTotal(text) {
  const match = /^summary:\s+(\d+)/m.exec(text) ?? /^totals:\s+(\d+)/m.exec(text)
  if (!match) throw new Error('no summary: or totals: line in the callgrind output')
  return Number(match[1])
}

function valgrindArgs(outFile, logFile) {
  return ['valgrind', '--tool=callgrind', '--collect-atstart=yes', `--callgrind-out-file=${outFile}`, `--log-file=${logFile}`]
}

/** One server run under callgrind: `events` events to one client. */
async function countRun(impl, scenario, events, dir, timeoutMs) {
  const base = join(dir, `${scenario.name}.${impl}.${events}`)
  const outFile = `${base}.callgrind`
  const logFile = `${base}.log`
  const server = child('server.mjs', [impl], [], timeoutMs, { wrap: valgrindArgs(outFile, logFile), exitGraceMs: timeoutMs })
  const client = child('client.mjs', [], [], timeoutMs)
  let error = null
  try {
    const { port } = await server.next('ready')
    client.send({ type: 'stream', port, count: events, eventName: EVENT_NAME })
    await client.next('connected')
    server.send({ type: 'run', count: events, batch: scenario.batch, payloadBytes: scenario.payloadBytes, eventName: EVENT_NAME })
    const done = await client.next('done')
    if (!done.valid) error = done.error ?? `received ${done.received} of ${events}`
    else await server.next('sent')
  } catch (err) {
    error = err.message
  } finally {
    await client.stop()
    await server.stop() // valgrind writes the output file as the process exits
  }
  if (error) return { valid: false, error }
  const code = await server.exited
  try {
    if (code !== 0) throw new Error(`server under valgrind exited with ${code}`)
    return { valid: true, instructions: callgrindTotal(readFileSync(outFile, 'latin1')) }
  } catch (err) {
    let log = ''
    try {
      log = readFileSync(logFile, 'utf8').split('\n').slice(-8).join('\n')
    } catch {}
    return { valid: false, error: `${err.message}${log ? `\n${log}` : ''}` }
  }
}

/** Runs `tasks` (functions returning promises), `jobs` at a time. */
async function pool(tasks, jobs) {
  const results = new Array(tasks.length)
  let next = 0
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++
      results[i] = await tasks[i]()
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, worker))
  return results
}

/**
 * The instruction-count mode for `scenarios` (stream scenarios with
 * `instructions: [small, large]` event counts) and their `impls`. `log`
 * gets a line per finished run. Returns the `instructions` entry of
 * results.json.
 */
export async function measureInstructions(scenarios, { jobs = 1, timeoutMs = 900_000, log = () => {} } = {}) {
  const valgrind = valgrindVersion()
  const result = {
    tool: 'callgrind',
    valgrind,
    command: `${valgrindArgs('<file>', '<file>').join(' ')} node benchmark/server.mjs <impl>`,
    method: 'instructions/event = (instr(large) - instr(small)) / (large - small) events; whole server process, all threads, user space',
    scenarios: scenarios.map(({ name, about, batch, payloadBytes, instructions, impls }) => ({ name, about, batch, payloadBytes, events: instructions, impls })),
    rows: [],
    summary: {},
  }
  if (!scenarios.length) return result
  if (!valgrind) {
    result.skipped = 'valgrind is not installed (or not on the PATH)'
    return result
  }
  const dir = mkdtempSync(join(tmpdir(), 'native-sse-callgrind-'))
  try {
    const tasks = []
    for (const scenario of scenarios) {
      for (const impl of scenario.impls) {
        for (const events of scenario.instructions) {
          tasks.push(async () => {
            const start = performance.now()
            const run = await countRun(impl, scenario, events, dir, timeoutMs)
            const row = { scenario: scenario.name, impl, events, ...run, seconds: (performance.now() - start) / 1000 }
            log(row)
            return row
          })
        }
      }
    }
    result.rows = await pool(tasks, jobs)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  for (const scenario of scenarios) {
    const summary = (result.summary[scenario.name] = {})
    const [small, large] = scenario.instructions
    for (const impl of scenario.impls) {
      const runs = result.rows.filter((r) => r.scenario === scenario.name && r.impl === impl)
      const bad = runs.find((r) => !r.valid)
      const at = (events) => runs.find((r) => r.events === events)?.instructions
      if (bad) {
        summary[impl] = { valid: false, error: bad.error }
        continue
      }
      const perEvent = (at(large) - at(small)) / (large - small)
      summary[impl] = {
        valid: perEvent > 0,
        ...(perEvent > 0 ? {} : { error: 'the larger run did not take more instructions' }),
        instructionsPerEvent: perEvent,
        runs: { [small]: at(small), [large]: at(large) },
      }
    }
    const raw = summary.raw?.valid ? summary.raw.instructionsPerEvent : undefined
    for (const entry of Object.values(summary)) {
      if (entry.valid && raw !== undefined) entry.vsRaw = entry.instructionsPerEvent / raw
    }
  }
  return result
}

/** Prints the mode's table. */
export function printInstructions(result) {
  const { scenarios, summary } = result
  if (!scenarios.length) return
  console.log(`\ninstructions (callgrind): server instructions per event, (instr(4N) - instr(N)) / 3N`)
  if (result.skipped) {
    console.log(`  skipped: ${result.skipped}`)
    return
  }
  for (const scenario of scenarios) {
    const [small, large] = scenario.events
    const cells = scenario.impls.map((impl) => {
      const e = summary[scenario.name][impl]
      if (!e.valid) return `${impl}: INVALID (${e.error})`
      const ratio = e.vsRaw !== undefined && impl !== 'raw' ? ` ${e.vsRaw.toFixed(2)}x raw` : ''
      return `${impl} ${Math.round(e.instructionsPerEvent).toLocaleString('en-US')}${ratio}`
    })
    console.log(`  ${`${scenario.name} (${small}/${large})`.padEnd(23)} ${cells.join(' | ')}`)
  }
}
