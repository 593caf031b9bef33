// What the idle-stream servers (many-streams-server.mjs, many50k-server.mjs)
// report about themselves over IPC: their file descriptors, their memory
// after GC, and their event loop's delay over a window.
import { readdirSync, readFileSync } from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import v8 from 'node:v8'
import vm from 'node:vm'

v8.setFlagsFromString('--expose-gc')
/** V8's gc(), without --expose-gc on the command line. */
const gc = vm.runInNewContext('gc')

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The soft limit on open files, and the descriptors open now (Linux; null elsewhere). */
export function fileDescriptors() {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8')
    const soft = /^Max open files\s+(\d+)/m.exec(limits)
    return { fdLimit: soft ? Number(soft[1]) : null, fdsOpen: readdirSync('/proc/self/fd').length }
  } catch {
    return { fdLimit: null, fdsOpen: null }
  }
}

/** Heap, RSS and external memory after four GCs a turn apart. */
export async function memoryAfterGc() {
  for (let i = 0; i < 4; i++) {
    gc()
    await nextTurn()
  }
  const usage = process.memoryUsage()
  return { heapUsed: usage.heapUsed, rss: usage.rss, external: usage.external }
}

/**
 * The event loop over `ms`: delay percentiles (monitorEventLoopDelay, 1 ms
 * resolution), utilization and the process's CPU time.
 */
export async function measureLoop(ms) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  const cpuStart = process.cpuUsage()
  const eluStart = performance.eventLoopUtilization()
  const start = performance.now()
  histogram.enable()
  await sleep(ms)
  histogram.disable()
  const elapsed = performance.now() - start
  const cpu = process.cpuUsage(cpuStart)
  const elu = performance.eventLoopUtilization(eluStart)
  const toMs = (ns) => ns / 1e6
  return {
    p50Ms: toMs(histogram.percentile(50)),
    p99Ms: toMs(histogram.percentile(99)),
    maxMs: toMs(histogram.max),
    meanMs: toMs(histogram.mean),
    minMs: toMs(histogram.min),
    samples: histogram.count,
    utilization: elu.utilization,
    cpuUserMicros: cpu.user,
    cpuSystemMicros: cpu.system,
    cpuMicros: cpu.user + cpu.system,
    ms: elapsed,
  }
}
