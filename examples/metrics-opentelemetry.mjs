// Recipe: native-sse's counters as OpenTelemetry metrics
// (docs/operations.md): observable instruments with one batch callback,
// which reads metrics() once per collection. Tested by
// __test__/metrics-recipes.test.mjs.
//
//   import { metrics as otel } from '@opentelemetry/api'
//   const stop = observeSse(otel.getMeter('native-sse'), { channels: { news } })
import { metrics } from 'native-sse'

/**
 * Creates the `sse.*` instruments on `meter` and observes them; returns a
 * function that stops observing. `channels` names the channels to report
 * (the `sse.channel` attribute).
 */
export function observeSse(meter, { channels = {} } = {}) {
  const gauge = (name, description) => meter.createObservableUpDownCounter(name, { description })
  const counter = (name, description, unit) => meter.createObservableCounter(name, { description, unit })
  const i = {
    open: gauge('sse.streams.open', 'Event streams open now'),
    opened: counter('sse.streams.opened', 'Event streams opened'),
    closed: counter('sse.streams.closed', 'Event streams closed, by sse.close.reason'),
    events: counter('sse.events', 'Events written to streams (a broadcast counts once per member)'),
    heartbeats: counter('sse.heartbeats', 'Heartbeat comments'),
    bytes: counter('sse.written', 'Body bytes handed to responses', 'By'),
    replays: counter('sse.replays', 'Members that got missed events replayed'),
    resets: counter('sse.resets', 'Members that got a reset event'),
    members: gauge('sse.channel.members', 'Members of a channel'),
    deliveries: counter('sse.channel.deliveries', 'Events a channel queued to members'),
  }
  const observe = (result) => {
    const m = metrics()
    result.observe(i.open, m.streams.open)
    result.observe(i.opened, m.streams.opened)
    for (const [reason, n] of Object.entries(m.streams.closed)) result.observe(i.closed, n, { 'sse.close.reason': reason })
    result.observe(i.events, m.events)
    result.observe(i.heartbeats, m.heartbeats)
    result.observe(i.bytes, m.bytes)
    result.observe(i.replays, m.replays)
    result.observe(i.resets, m.resets)
    for (const [name, channel] of Object.entries(channels)) {
      const c = channel.metrics()
      result.observe(i.members, c.members, { 'sse.channel': name })
      result.observe(i.deliveries, c.deliveries, { 'sse.channel': name })
    }
  }
  const observables = Object.values(i)
  meter.addBatchObservableCallback(observe, observables)
  return () => meter.removeBatchObservableCallback(observe, observables)
}
