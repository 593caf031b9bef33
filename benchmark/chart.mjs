// Renders the benchmark's results.json as an SVG bar chart.
//   node benchmark/chart.mjs [results.json] [chart.svg]
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const COLORS = {
  raw: '#9aa0a6',
  's42-js': '#f4b400',
  'hand-loop': '#5f6368',
  'better-sse': '#4285f4',
  'native-sse': '#db4437',
  'native-sse-window10': '#8c1d13',
  'hono-streamSSE': '#ff8a00',
  'better-sse-fetch': '#8ab4f8',
}
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')

// Bars longer than `clip` (when given) are cut there and marked with '»'.
function panel({ title, groups, impls, value, format, y, width, clip }) {
  const left = 130
  const barH = 12
  const gap = 10
  const plotW = width - left - 90
  const longest = Math.max(...groups.flatMap((g) => impls(g).map((impl) => value(g, impl) ?? 0)).filter(Number.isFinite), 1e-9)
  const max = clip ? Math.min(clip, longest) : longest
  let out = `<text x="10" y="${y + 16}" font-weight="bold">${esc(title)}</text>`
  let cy = y + 28
  for (const g of groups) {
    out += `<text x="10" y="${cy + (impls(g).length * barH) / 2 + 4}">${esc(g.name)}</text>`
    for (const impl of impls(g)) {
      const v = value(g, impl)
      const ok = v !== undefined && Number.isFinite(v)
      const w = ok ? Math.max(1, (Math.min(v, max) / max) * plotW) : 0
      const label = ok ? `${esc(format(v))}${v > max ? ' »' : ''}` : 'invalid'
      out += `<rect x="${left}" y="${cy}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[impl] ?? '#666'}"/>`
      out += `<text x="${left + w + 4}" y="${cy + barH - 3}" font-size="10">${label}</text>`
      cy += barH
    }
    cy += gap
  }
  return { svg: out, height: cy - y }
}

export function renderChart(result) {
  const width = 720
  const of = (kind) => result.scenarios.filter((s) => s.kind === kind)
  const implsOf = (scenario) => scenario.impls ?? Object.keys(result.summary[scenario.name] ?? {})
  const metric = (scenario, impl, key) => {
    const e = result.summary[scenario.name]?.[impl]
    return e?.valid ? e[key]?.median : undefined
  }
  const relative = (base, key) => (g, impl) => metric(g, impl, key) / metric(g, base, key)
  const x = (v) => `${v.toFixed(2)}x`
  const saturated = of('broadcast').filter((s) => s.impls.includes('hand-loop'))
  // The instruction-count mode (absent from older results.json files).
  const counted = result.instructions?.summary ?? {}
  const instructionGroups = (result.instructions?.scenarios ?? []).filter((s) => counted[s.name])
  // The Fetch-form rows (absent from older results.json files).
  const fetchRows = [...of('fetch-stream'), ...of('fetch-broadcast')]
  const fetchCpu = (g) => (g.kind === 'fetch-stream' ? 'cpuMicrosPerEvent' : 'cpuMicrosPerDelivery')
  const many = of('many')
  const latency = of('broadcast').filter((s) => s.name === 'broadcast-latency')
  const panels = [
    { title: 'Delivered events/s, relative to raw res.write (higher is better)', groups: of('stream'),
      value: relative('raw', 'eventsPerSec'), format: x },
    { title: 'Server CPU time per event, relative to raw (lower is better)', groups: of('stream'),
      value: relative('raw', 'cpuMicrosPerEvent'), format: x },
    { title: 'Server instructions per event (callgrind), relative to raw (lower is better)', groups: instructionGroups,
      value: (g, impl) => counted[g.name][impl]?.vsRaw, format: x },
    { title: 'Heap per idle connection, bytes (lower is better)', groups: of('idle'),
      value: (g, impl) => metric(g, impl, 'heapBytesPerConn'), format: (v) => `${Math.round(v).toLocaleString('en-US')} B` },
    { title: 'Broadcast: delivered events/s, relative to hand-loop (higher is better; » cut at 2x)', groups: saturated,
      value: relative('hand-loop', 'eventsPerSec'), format: x, clip: 2 },
    { title: 'Broadcast: server CPU time per delivery, relative to hand-loop (lower is better)', groups: saturated,
      value: relative('hand-loop', 'cpuMicrosPerDelivery'), format: x },
    { title: 'Broadcast every 40 ms to 1 000 clients: latency p50, ms (lower is better)', groups: latency,
      value: (g, impl) => metric(g, impl, 'latencyP50Ms'), format: (v) => `${v.toFixed(1)} ms` },
    { title: 'Broadcast every 40 ms to 1 000 clients: latency p99, ms (lower is better)', groups: latency,
      value: (g, impl) => metric(g, impl, 'latencyP99Ms'), format: (v) => `${v.toFixed(1)} ms` },
    { title: 'Fetch form (same server per row): delivered events/s, relative to hono-streamSSE (higher is better)', groups: fetchRows,
      value: relative('hono-streamSSE', 'eventsPerSec'), format: x },
    { title: 'Fetch form: server CPU time per event / delivery, relative to hono-streamSSE (lower is better)', groups: fetchRows,
      value: (g, impl) => metric(g, impl, fetchCpu(g)) / metric(g, 'hono-streamSSE', fetchCpu(g)), format: x },
    { title: 'Stalled member: server RSS growth, MiB (lower is better)', groups: of('stalled'),
      value: (g, impl) => metric(g, impl, 'rssGrowthMB'), format: (v) => `${v.toFixed(1)} MiB` },
    { title: `${many.map((s) => s.streams.toLocaleString('en-US')).join(', ')} streams, heartbeat every ${many[0]?.keepAlive} ms: event-loop delay p99, ms (lower is better)`,
      groups: many, value: (g, impl) => metric(g, impl, 'eventLoopDelayP99Ms'), format: (v) => `${v.toFixed(1)} ms` },
  ]
  let body = ''
  let y = 40
  const shown = new Set()
  for (const p of panels) {
    if (!p.groups.length) continue
    for (const g of p.groups) for (const impl of implsOf(g)) shown.add(impl)
    const { svg, height } = panel({ ...p, impls: implsOf, y, width })
    body += svg
    y += height + 10
  }
  let legend = ''
  const legendImpls = Object.keys(COLORS).filter((impl) => shown.has(impl))
  legendImpls.forEach((impl, i) => {
    const lx = 10 + (i % 4) * 170
    const ly = y + Math.floor(i / 4) * 16
    legend += `<rect x="${lx}" y="${ly}" width="10" height="10" fill="${COLORS[impl]}"/><text x="${lx + 14}" y="${ly + 9}" font-size="11">${impl === 'native-sse-window10' ? 'native-sse (flushWindow 10)' : impl}</text>`
  })
  y += Math.ceil(legendImpls.length / 4) * 16 + 8
  const m = result.machine
  const rounds = [...new Set(result.scenarios.map((s) => s.rounds ?? result.rounds))].sort((a, b) => a - b)
  const caption = `${m.cores} × ${m.cpu}, Node ${m.node}; medians of ${rounds.join(' or ')} round(s)${result.quick ? ' (quick mode: sizes too small to mean anything)' : ''}`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">native-sse benchmark</text>
<text x="10" y="34" font-size="10" fill="#555">${esc(caption)}</text>
${body}${legend}
</svg>
`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const input = process.argv[2] ?? new URL('./results/results.json', import.meta.url)
  const output = process.argv[3] ?? new URL('./results/chart.svg', import.meta.url)
  writeFileSync(output, renderChart(JSON.parse(readFileSync(input, 'utf8'))))
}
