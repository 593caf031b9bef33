// The recipes of docs/operations.md (examples/metrics-*.mjs): Prometheus
// through prom-client, scraped as text, and OpenTelemetry through
// @opentelemetry/api with the SDK's MeterProvider and an in-memory
// exporter; each after real streams on real sockets.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { Channel, metrics, SSE } from 'native-sse'
import client from 'prom-client'

import { observeSse } from '../examples/metrics-opentelemetry.mjs'
import { registerSseMetrics } from '../examples/metrics-prometheus.mjs'
import { rawGet, startServer, waitFor } from './helpers.mjs'

let srv
const made = []
const news = new Channel()
before(async () => {
  srv = await startServer((req, res) => {
    made.push(new SSE(req, res, { keepAlive: 0 }))
  })
})
after(() => srv.close())

/**
 * Opens `count` raw clients, all in `news`; sends each one event of its
 * own and broadcasts `broadcasts` events; closes the first stream with
 * close() and the second client's socket. Resolves when everything has
 * arrived and both closes are counted.
 */
async function traffic(count, broadcasts) {
  const start = made.length
  const before = metrics()
  const clients = []
  for (let n = 0; n < count; n++) clients.push(rawGet(srv.port))
  await waitFor(() => made.length === start + count, { what: 'the streams' })
  const streams = made.slice(start)
  for (const [n, sse] of streams.entries()) {
    news.add(sse)
    sse.send({ eventName: 'own', eventPayload: n })
  }
  for (let i = 0; i < broadcasts; i++) news.broadcast({ eventName: 'news', eventPayload: i })
  for (const c of clients) await c.waitForBody((body) => body.includes(`data: ${broadcasts - 1}\n\n`))
  streams[0].close()
  clients[1].close()
  await waitFor(() => metrics().streams.open === before.streams.open + count - 2, { what: 'the closes' })
  await waitFor(() => clients[0].response().complete, { what: 'the closed body' })
  return clients
}

/** `name{labels} value` lines of a Prometheus text exposition. */
function samples(text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

test('Prometheus: prom-client scrapes the counters after real streams', async () => {
  const register = new client.Registry()
  registerSseMetrics(client, { register, channels: { news } })
  const clients = await traffic(4, 3)
  const text = await register.metrics()
  assert.match(text, /# TYPE sse_events_total counter/)
  assert.match(text, /# TYPE sse_streams_open gauge/)
  const s = samples(text)
  const m = metrics()
  const received = clients.reduce((sum, c) => sum + c.response().body.length, 0)
  // This file's process has seen only these streams so far.
  assert.equal(s.get('sse_streams_opened_total'), 4)
  assert.equal(s.get('sse_streams_open'), 2)
  assert.equal(s.get('sse_streams_closed_total{reason="server"}'), 1)
  assert.equal(s.get('sse_streams_closed_total{reason="client"}'), 1)
  assert.equal(s.get('sse_streams_closed_total{reason="overflow"}'), 0)
  assert.equal(s.get('sse_events_total'), 4 + 3 * 4)
  assert.equal(s.get('sse_written_bytes_total'), received)
  assert.equal(s.get('sse_written_bytes_total'), m.bytes)
  assert.equal(s.get('sse_channels_open'), 1)
  assert.equal(s.get('sse_channel_members{channel="news"}'), 2)
  assert.equal(s.get('sse_channel_broadcasts_total{channel="news"}'), 3)
  assert.equal(s.get('sse_channel_deliveries_total{channel="news"}'), 12)
  assert.equal(s.get('sse_channel_bytes_total{channel="news"}'), news.metrics().bytes)

  // A second scrape reports the totals again, not their sum.
  const again = samples(await register.metrics())
  assert.equal(again.get('sse_events_total'), 16)
  for (const c of clients) c.close()
  await waitFor(() => metrics().streams.open === 0, { what: 'every stream to close' })
  const last = samples(await register.metrics())
  assert.equal(last.get('sse_streams_open'), 0)
  assert.equal(last.get('sse_streams_closed_total{reason="client"}'), 3)
})

test('OpenTelemetry: observable instruments read by a MeterProvider', async () => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const provider = new MeterProvider({ readers: [reader] })
  const stop = observeSse(provider.getMeter('native-sse-test'), { channels: { news } })
  try {
    const before = metrics()
    const clients = await traffic(3, 2)
    const { resourceMetrics, errors } = await reader.collect()
    assert.deepEqual(errors, [])
    const points = new Map()
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        for (const point of metric.dataPoints) {
          const attrs = Object.entries(point.attributes).map(([k, v]) => `${k}=${v}`).join(',')
          points.set(attrs === '' ? metric.descriptor.name : `${metric.descriptor.name}{${attrs}}`, point.value)
        }
      }
    }
    const m = metrics()
    const received = clients.reduce((sum, c) => sum + c.response().body.length, 0)
    assert.equal(points.get('sse.streams.opened'), before.streams.opened + 3)
    assert.equal(points.get('sse.streams.open'), m.streams.open)
    assert.equal(points.get('sse.streams.closed{sse.close.reason=server}'), before.streams.closed.server + 1)
    assert.equal(points.get('sse.streams.closed{sse.close.reason=client}'), before.streams.closed.client + 1)
    assert.equal(points.get('sse.events'), before.events + 3 + 2 * 3)
    assert.equal(points.get('sse.written'), before.bytes + received)
    assert.equal(points.get('sse.channel.members{sse.channel=news}'), 1)
    assert.equal(points.get('sse.channel.deliveries{sse.channel=news}'), news.metrics().deliveries)
    for (const c of clients) c.close()
  } finally {
    stop()
    await provider.shutdown()
  }
})
