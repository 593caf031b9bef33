// Renders the benchmark's results.json as an SVG bar chart.
//   node benchmark/chart.mjs [results.json] [chart.svg]
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const COLORS = { raw: '#9aa0a6', 's42-js': '#f4b400', 'better-sse': '#4285f4', 'native-sse': '#db4437' }
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')

function panel({ title, groups, impls, value, format, y, width }) {
  const left = 130
  const barH = 12
  const gap = 10
  const plotW = width - left - 90
  const max = Math.max(...groups.flatMap((g) => impls.map((impl) => value(g, impl) ?? 0)), 1e-9)
  let out = `<text x="10" y="${y + 16}" font-weight="bold">${esc(title)}</text>`
  let cy = y + 28
  for (const g of groups) {
    out += `<text x="10" y="${cy + (impls.length * barH) / 2 + 4}">${esc(g.name)}</text>`
    for (const impl of impls) {
      const v = value(g, impl)
      const w = v === undefined ? 0 : Math.max(1, (v / max) * plotW)
      out += `<rect x="${left}" y="${cy}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[impl] ?? '#666'}"/>`
      out += `<text x="${left + w + 4}" y="${cy + barH - 3}" font-size="10">${v === undefined ? 'invalid' : esc(format(v))}</text>`
      cy += barH
    }
    cy += gap
  }
  return { svg: out, height: cy - y }
}

export function renderChart(result) {
  const width = 720
  const impls = Object.keys(COLORS)
  const stream = result.scenarios.filter((s) => s.kind === 'stream')
  const idle = result.scenarios.filter((s) => s.kind === 'idle')
  const metric = (scenario, impl, key) => {
    const e = result.summary[scenario.name]?.[impl]
    return e?.valid ? e[key].median : undefined
  }
  const panels = [
    { title: 'Delivered events/s, relative to raw res.write (higher is better)', groups: stream,
      value: (g, impl) => metric(g, impl, 'eventsPerSec') / metric(g, 'raw', 'eventsPerSec'), format: (v) => `${v.toFixed(2)}x` },
    { title: 'Server CPU time per event, relative to raw (lower is better)', groups: stream,
      value: (g, impl) => metric(g, impl, 'cpuMicrosPerEvent') / metric(g, 'raw', 'cpuMicrosPerEvent'), format: (v) => `${v.toFixed(2)}x` },
    { title: 'Heap per idle connection, bytes (lower is better)', groups: idle,
      value: (g, impl) => metric(g, impl, 'heapBytesPerConn'), format: (v) => `${Math.round(v).toLocaleString('en-US')} B` },
  ]
  let body = ''
  let y = 40
  for (const p of panels) {
    if (!p.groups.length) continue
    const { svg, height } = panel({ ...p, impls, y, width })
    body += svg
    y += height + 10
  }
  let legend = ''
  impls.forEach((impl, i) => {
    legend += `<rect x="${10 + i * 130}" y="${y}" width="10" height="10" fill="${COLORS[impl]}"/><text x="${24 + i * 130}" y="${y + 9}" font-size="11">${impl}</text>`
  })
  y += 24
  const m = result.machine
  const caption = `${m.cores} × ${m.cpu}, Node ${m.node}; medians of ${result.rounds} round(s)${result.quick ? ' (quick mode: sizes too small to mean anything)' : ''}`
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
