// Type-level checks of the public API (run by `npm run typecheck`).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import {
  createSecureServer,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from 'node:http2'
import { SSE, type SSECloseReason, type TypeSSEventToSend } from 'native-sse'
import { metrics, type ChannelMetrics, type SSEMetrics } from 'native-sse'

const event: TypeSSEventToSend = { eventName: 'update', eventPayload: { message: 'New update available!' } }

createServer((req: IncomingMessage, res: ServerResponse) => {
  const sse = new SSE(req, res)
  const uuid: string = sse.getUUID()
  const delivered: boolean = sse.send(event)
  sse.send({ eventName: 'welcome-back', eventPayload: [uuid, delivered] })
  const nothing: void = sse.close()
  void nothing

  // @ts-expect-error eventName is required
  sse.send({ eventPayload: 1 })
  // @ts-expect-error eventName must be a string
  sse.send({ eventName: 42, eventPayload: 1 })
  // @ts-expect-error the response is required
  new SSE(req)
  // @ts-expect-error getUUID returns a string
  const wrong: number = sse.getUUID()
  void wrong
})

// HTTP/2 (Node's compatibility API), cleartext and TLS with HTTP/1.1 fallback.
createHttp2Server((req: Http2ServerRequest, res: Http2ServerResponse) => {
  const sse = new SSE(req, res, { keepAlive: 10_000, headers: { 'X-Stream': 'h2' } })
  sse.onClose((reason: SSECloseReason) => void reason)
  const accepted: boolean = sse.send(event)
  void accepted
  // @ts-expect-error an HTTP/2 stream is not a response object
  new SSE(req, res.stream)
})
createSecureServer({ allowHTTP1: true }, (req, res) => {
  new SSE(req, res).close()
})

// Channels, in-process and on Redis (an ioredis client fits ChannelRedisClient).
import { Redis } from 'ioredis'
import { Channel, type ChannelEvent, type ChannelOptions } from 'native-sse'

const options: ChannelOptions = { historyEvents: 500, historyBytes: 1 << 20, flushWindow: 10 }
const channel = new Channel(options)
createServer((req, res) => {
  const sse = new SSE(req, res)
  const joined: boolean = channel.add(sse)
  void joined
  const headline: ChannelEvent = { eventName: 'headline', eventPayload: { title: 'hi' } }
  const id = channel.broadcast(headline, { to: [sse.getUUID()] })
  void id
  channel.broadcast({ eventName: 'raw', data: 'text' }, { to: (member: SSE) => member === sse })
  const size: number = channel.size
  const head: string | null = channel.lastEventId
  void [size, head]
  // @ts-expect-error the channel numbers its events
  channel.broadcast({ eventName: 'x', eventPayload: 1, id: '7' })
  // @ts-expect-error members are SSE instances
  channel.add(res)
})
const shared = new Channel({ redis: new Redis({ lazyConnect: true }), stream: 'sse:news', maxLen: 1000 })
async function publish(): Promise<string> {
  return await shared.broadcast({ eventName: 'headline', eventPayload: 1 })
}
// A node-redis client fits too; errors and the transport's state are visible.
import { createClient } from 'redis'
import type { ChannelRedisStatus } from 'native-sse'
const nodeRedis = createClient({ url: 'redis://127.0.0.1:6379' })
nodeRedis.on('error', () => {})
const viaNodeRedis = new Channel({ redis: nodeRedis, stream: 'sse:news', maxInFlight: 100, commandTimeout: 2000 })
viaNodeRedis.onError((err) => {
  const code: string = err.code
  void code
})
const status: ChannelRedisStatus | null = viaNodeRedis.redisStatus
void status

void publish

// The Fetch form: a Request in, a Response out (Bun.serve, Deno.serve, Hono, h3, Next.js).
export function handler(request: Request): Response {
  const sse = new SSE(request, { keepAlive: 5_000 })
  const accepted: boolean = sse.send({ eventName: 'tick', eventPayload: Date.now() })
  void accepted
  channel.add(sse)
  const response: Response = sse.getResponse()
  const resume: string | null = sse.lastEventId
  void resume
  // @ts-expect-error the Fetch form takes the options second, nothing third
  new SSE(request, {}, {})
  // @ts-expect-error a Request is not a response object
  new SSE(request, request)
  // @ts-expect-error getResponse returns a Response
  const text: string = sse.getResponse()
  void text
  return response
}

// Operations: the counters, as plain numbers.
const counters: SSEMetrics = metrics()
const overflowed: number = counters.streams.closed.overflow + counters.bytes
const perChannel: ChannelMetrics = channel.metrics()
const redisState: ChannelRedisStatus | null = perChannel.redis
void [overflowed, perChannel.deliveries, redisState]
// @ts-expect-error the counters are numbers
const notText: string = counters.events
void notText
// Graceful drain: drain() for every stream, channel.drain() for a channel's.
import { drain, type DrainOptions, type DrainSummary } from 'native-sse'

export async function shutDown(server: ReturnType<typeof createServer>, channel: Channel): Promise<number> {
  const options: DrainOptions = { windowMs: 10_000, minMs: 500, timeoutMs: 5_000 }
  const summary: DrainSummary = await drain(options)
  const room: DrainSummary = await channel.drain({ windowMs: 0 })
  await new Promise<void>((resolve) => server.close(() => resolve()))
  channel.close()
  // @ts-expect-error windowMs is a number of milliseconds
  drain({ windowMs: '10s' })
  // @ts-expect-error the summary counts streams
  const wrong: string = summary.streams
  void wrong
  return summary.streams + summary.destroyed + room.streams
}
