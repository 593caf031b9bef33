// Recipe: native-sse's counters on a Prometheus /metrics endpoint with
// prom-client (docs/operations.md). Each metric reads metrics() (or
// channel.metrics()) when it is scraped: nothing is counted twice and
// nothing runs between scrapes. Tested by __test__/metrics-recipes.test.mjs.
//
//   import client from 'prom-client'
//   registerSseMetrics(client, { channels: { news: newsChannel } })
//   // then serve `await client.register.metrics()` on /metrics
import { metrics } from 'native-sse'

/**
 * Registers the `sse_*` metrics with prom-client (`client`, the module) in
 * `register` (default: its global registry). `channels` names the channels
 * to report, by the value of their `channel` label.
 */
export function registerSseMetrics(client, { register = client.register, prefix = 'sse_', channels = {} } = {}) {
  const registers = [register]
  const gauge = (name, help, read, labelNames = []) =>
    new client.Gauge({
      name: prefix + name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset()
        for (const [labels, value] of read()) this.set(labels, value)
      },
    })
  const counter = (name, help, read, labelNames = []) =>
    new client.Counter({
      name: prefix + name,
      help,
      labelNames,
      registers,
      collect() {
        // A counter can only go up: it is set by resetting and adding.
        this.reset()
        for (const [labels, value] of read()) this.inc(labels, value)
      },
    })
  const one = (pick) => () => [[{}, pick(metrics())]]
  gauge('streams_open', 'Event streams open now', one((m) => m.streams.open))
  counter('streams_opened_total', 'Event streams opened', one((m) => m.streams.opened))
  counter('streams_closed_total', 'Event streams closed, by reason', () => Object.entries(metrics().streams.closed).map(([reason, n]) => [{ reason }, n]), ['reason'])
  counter('events_total', 'Events written to streams (a broadcast counts once per member)', one((m) => m.events))
  counter('comments_total', 'comment() calls', one((m) => m.comments))
  counter('heartbeats_total', 'Heartbeat comments', one((m) => m.heartbeats))
  counter('written_bytes_total', 'Body bytes handed to responses', one((m) => m.bytes))
  counter('replays_total', 'Members that got missed events replayed', one((m) => m.replays))
  counter('resets_total', 'Members that got a reset event', one((m) => m.resets))
  gauge('channels_open', 'Channels open now', one((m) => m.channels.open))

  const perChannel = (pick) => () => Object.entries(channels).map(([channel, c]) => [{ channel }, pick(c.metrics())])
  gauge('channel_members', 'Members of a channel', perChannel((c) => c.members), ['channel'])
  counter('channel_broadcasts_total', 'Events a channel sent out', perChannel((c) => c.broadcasts), ['channel'])
  counter('channel_deliveries_total', 'Events a channel queued to members', perChannel((c) => c.deliveries), ['channel'])
  counter('channel_bytes_total', 'Bytes a channel queued to members', perChannel((c) => c.bytes), ['channel'])
}
