// Type tests of the event maps and payload rules (run by `npm run typecheck`,
// part of `npm test`): every line marked @ts-expect-error must fail to
// compile, and everything else must compile.
import { createServer } from 'node:http'
import { Redis } from 'ioredis'
import { Channel, SSE, type ChannelOptions } from 'native-sse'

interface Story {
  title: string
  at: Date
}
// An interface works as an event map (no index signature needed).
interface Events {
  tick: { n: number }
  news: Story
  bye: null
}

createServer((req, res) => {
  const typed = new SSE<Events>(req, res)
  typed.send({ eventName: 'tick', eventPayload: { n: 1 } })
  typed.send({ eventName: 'news', eventPayload: { title: 'hi', at: new Date() } })
  typed.send({ eventName: 'bye', eventPayload: null, id: 'last' })
  typed.send({ eventName: 'tick', data: '{"n":1}' })
  // @ts-expect-error not a name of the map
  typed.send({ eventName: 'tock', eventPayload: { n: 1 } })
  // @ts-expect-error the payload of 'tick' has n: number
  typed.send({ eventName: 'tick', eventPayload: { n: 'one' } })
  // @ts-expect-error the payload of 'news' needs a title
  typed.send({ eventName: 'news', eventPayload: { at: new Date() } })
  // @ts-expect-error a raw event's name is checked too
  typed.send({ eventName: 'other', data: 'x' })

  const untyped = new SSE(req, res)
  untyped.send({ eventName: 'anything', eventPayload: { deep: [1, 'two', { three: true }] } })
  untyped.send({ eventName: 'when', eventPayload: new Date() })
  untyped.send({ eventName: 'optional', eventPayload: { maybe: undefined as string | undefined } })
  untyped.send({ eventName: 'method', eventPayload: { n: 1, f() {} } })
  const opaque: unknown = JSON.parse('1')
  untyped.send({ eventName: 'opaque', eventPayload: opaque })
  // @ts-expect-error JSON.stringify(undefined) is not JSON text
  untyped.send({ eventName: 'x', eventPayload: undefined })
  // @ts-expect-error a function is not serialisable
  untyped.send({ eventName: 'x', eventPayload: () => 1 })
  // @ts-expect-error a symbol is not serialisable
  untyped.send({ eventName: 'x', eventPayload: Symbol('s') })
  // @ts-expect-error JSON.stringify throws on a bigint
  untyped.send({ eventName: 'x', eventPayload: 10n })
  // @ts-expect-error ... and on a bigint inside
  untyped.send({ eventName: 'x', eventPayload: { total: { cents: 10n } } })
  // @ts-expect-error ... and inside an array
  untyped.send({ eventName: 'x', eventPayload: [1, 2n] })
  // @ts-expect-error a payload that may be undefined
  untyped.send({ eventName: 'x', eventPayload: Math.random() > 0.5 ? 1 : undefined })
})

// In-process channels return the id; Redis channels a promise of it.
const local = new Channel<Events>({ historyEvents: 100 })
const id: string = local.broadcast({ eventName: 'tick', eventPayload: { n: 2 } })
void id
local.broadcast({ eventName: 'bye', eventPayload: null }, { replay: false, to: (sse) => sse.getUUID() !== '' })
// @ts-expect-error an in-process broadcast is not a promise
const notPromise: Promise<string> = local.broadcast({ eventName: 'tick', eventPayload: { n: 2 } })
void notPromise
// @ts-expect-error the payload of 'tick'
local.broadcast({ eventName: 'tick', eventPayload: { n: false } })
// @ts-expect-error the channel numbers its events
local.broadcast({ eventName: 'tick', eventPayload: { n: 2 }, id: '1' })

const remote = new Channel<Events>({ redis: new Redis({ lazyConnect: true }), stream: 'sse:news' })
const pending: Promise<string> = remote.broadcast({ eventName: 'news', eventPayload: { title: 't', at: new Date() } })
void pending
// @ts-expect-error a Redis broadcast is a promise
const notString: string = remote.broadcast({ eventName: 'bye', eventPayload: null })
void notString

// Options typed as ChannelOptions: either kind, so either result.
const options: ChannelOptions = { flushWindow: 10 }
const either = new Channel(options)
const result: string | Promise<string> = either.broadcast({ eventName: 'any', eventPayload: 1 })
void result
// @ts-expect-error bigint payloads are refused on channels too
either.broadcast({ eventName: 'any', eventPayload: 1n })

// A typed stream joins an untyped channel and the other way round.
export function handler(request: Request): Response {
  const sse = new SSE<Events>(request)
  new Channel().add(sse)
  local.add(new SSE(request))
  return sse.getResponse()
}

// The classes are values too.
export function isMember(value: unknown): boolean {
  return value instanceof SSE || value instanceof Channel
}

// A generic helper forwards its type parameter: the check cannot be decided
// for an unknown T, so it needs `as unknown` (docs/api.md, Types).
export function notify<T extends object>(sse: SSE, value: T): boolean {
  // @ts-expect-error the payload check is deferred for a type parameter
  sse.send({ eventName: 'e', eventPayload: value })
  return sse.send({ eventName: 'e', eventPayload: value as unknown })
}
