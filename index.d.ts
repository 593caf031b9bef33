// The public types of native-sse. The option and event types are the
// binding's (napi-rs generates binding.d.ts from the Rust sources and
// src/dts-header.d.ts, `npm run build`); the two classes are declared here,
// generic over an event map, because their methods run in the JavaScript
// front (js/) and the generated classes cannot take type parameters.
// Every export of binding.d.ts but the loader's marker (`__napiBindingTarget`)
// is exported here too (__test__/package.test.mjs checks it).
//
// The import names binding.d.ts itself, not binding.js: Deno's type
// checker reads `./binding.js` as the untyped JavaScript file.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type * as binding from './binding.d.ts'

export type ChannelEvent = binding.ChannelEvent
export type ChannelOptions = binding.ChannelOptions
export type ChannelRedisClient = binding.ChannelRedisClient
export type DrainOptions = binding.DrainOptions
export type DrainSummary = binding.DrainSummary
export type ChannelIoredisClient = binding.ChannelIoredisClient
export type ChannelNodeRedisClient = binding.ChannelNodeRedisClient
export type ChannelRedisStatus = binding.ChannelRedisStatus
export type SSECloseReason = binding.SSECloseReason
export type SSEOptions = binding.SSEOptions
export type SSERawEvent = binding.SSERawEvent
export type TypeSSEventToSend = binding.TypeSSEventToSend

/**
 * Any event name with any payload: what `SSE` and `Channel` take when no
 * event map is given.
 */
export interface UntypedEvents {
  [eventName: string]: unknown
}

/** The event names of an event map. */
export type EventName<E> = keyof E & string

/** What `JSON.stringify` cannot turn into JSON text (it returns `undefined` or throws). */
type NotJson = undefined | symbol | bigint | ((...args: never[]) => unknown)

/** Depth steps for {@link HasBigInt}: how deep nested values are checked. */
type Shallower = [never, 0, 1, 2, 3, 4, 5, 6]

/** Whether a `bigint` hides in `P` (a property, an item) down to depth `D`: `JSON.stringify` throws on one. */
type HasBigInt<P, D extends number = 7> = [D] extends [never]
  ? false
  : P extends bigint
    ? true
    : P extends { toJSON(...args: never[]): unknown }
      ? false
      : P extends object
        ? true extends { [K in keyof P]-?: HasBigInt<P[K], Shallower[D]> }[keyof P]
          ? true
          : false
        : false

/**
 * `P` when `JSON.stringify(P)` gives JSON text, `never` otherwise: not
 * `undefined`, a function, a symbol or a `bigint`, no `bigint` inside, and
 * a `toJSON()` (a `Date`) that returns something serialisable. (Functions
 * and symbols inside objects are left out by `JSON.stringify`, so they are
 * allowed there.)
 */
export type JsonSafe<P> = P extends NotJson
  ? never
  : P extends { toJSON(...args: never[]): infer R }
    ? R extends NotJson
      ? never
      : P
    : HasBigInt<P> extends true
      ? never
      : P

/** An event with a payload, as `send()` takes it: `eventName` one of the map's names, `eventPayload` of its type. */
export interface SendEventOf<K extends string, P> {
  /** The event type the client listens for (`addEventListener(eventName, ...)`). No CR, LF or NUL. */
  eventName: K
  /** Sent as `JSON.stringify(eventPayload)`. */
  eventPayload: P & JsonSafe<P>
  /** Sent instead of the next number (which is then not used up). No CR, LF or NUL. */
  id?: string
  data?: undefined
}

/** An event whose data is already serialised, as `send()` takes it (the map does not type `data`). */
export interface SendRawEventOf<K extends string> {
  eventName: K
  /** The text (UTF-8 bytes for a `Buffer`). CR, LF and CRLF each start a new `data:` line. */
  data: string | Uint8Array
  id?: string
  eventPayload?: undefined
}

/** An event with a payload, as `broadcast()` takes it (no `id`: the channel numbers its events). */
export type PayloadEventOf<K extends string, P> = Omit<SendEventOf<K, P>, 'id'> & { id?: undefined }

/** A pre-serialised event, as `broadcast()` takes it. */
export type RawEventOf<K extends string> = Omit<SendRawEventOf<K>, 'id'> & { id?: undefined }

/**
 * What `broadcast()` returns: the id on an in-process channel, a promise of
 * it on a Redis channel, either when the type does not say which.
 */
export type BroadcastResult<Remote extends boolean> = [Remote] extends [true]
  ? Promise<string>
  : [Remote] extends [false]
    ? string
    : string | Promise<string>

/** The second argument of `Channel.broadcast()`. */
export interface BroadcastOptions<E extends object = UntypedEvents> {
  /** Only these members: an array of UUIDs (`sse.getUUID()`), or (in-process channels) a function called with each member that returns `true` for those to send to. */
  to?: readonly string[] | ((sse: SSE<E>) => boolean)
  /** `false`: the event is live-only, not replayed to clients that come back (a clock tick, a presence count). Default `true`. */
  replay?: boolean
}

/** `new Channel()` options for a Redis channel (`redis` and `stream` given). */
export type RedisChannelOptions = ChannelOptions & { redis: ChannelRedisClient; stream: string }

/** `new Channel()` options for an in-process channel (no `redis`). */
export type LocalChannelOptions = ChannelOptions & { redis?: undefined; stream?: undefined }

/**
 * One stream of Server-Sent Events. `new SSE(req, res, options?)` writes to
 * a Node response (S42Core 1.x); `new SSE(request, options?)` takes a Fetch
 * `Request` and gives its `Response` with `getResponse()` (S42Core 2.x/3.x).
 * `E` maps event names to payload types (`new SSE<{ tick: { n: number } }>(...)`);
 * without it any name and any serialisable payload are accepted.
 */
export declare class SSE<E extends object = UntypedEvents> {
  constructor(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
    options?: SSEOptions,
  )
  constructor(request: Request, options?: SSEOptions)
  /**
   * The random (version 4) UUID of this connection, as sent in the welcome
   * event. Lowercase, hyphenated.
   */
  getUUID(): string
  /**
   * The Fetch form's `Response` (`new SSE(request)`): status 200, the
   * event-stream headers, a body of `Uint8Array` chunks. Return it from the
   * handler (Bun.serve, Deno.serve, Hono, h3, Elysia, Next.js). The same
   * `Response` each time. Events sent before the runtime reads the body
   * wait in it.
   *
   * Throws a `TypeError` (`ERR_SSE_NOT_FETCH_FORM`) on a stream made with
   * `new SSE(req, res)`, which writes to `res`.
   */
  getResponse(): Response
  /**
   * The id the client last saw, from the `Last-Event-ID` request header or
   * else a `lastEventId` query parameter of the request URL, when it has the accepted form: 1
   * to 128 visible ASCII characters (`!` to `~`). `null` otherwise: a value
   * of any other form is treated as absent.
   */
  get lastEventId(): string | null
  /**
   * Sends one event: the lines `id: <n>`, `event: <eventName>`,
   * `data: <JSON.stringify(eventPayload)>` and a blank line.
   *
   * With `data` (a string, `Buffer` or `Uint8Array`) instead of
   * `eventPayload`, that text is sent as it is, one `data:` line per line
   * (CR, LF and CRLF each end a line). With `id` (a string), that id is sent
   * instead of the next number, and the counter does not move.
   *
   * The events sent in one tick of the event loop reach `res.write`
   * together, in one call at the end of the tick (a microtask), with the
   * same bytes in the same order. `close()` writes what is pending first.
   *
   * Returns `true` when the event was accepted for the stream, `false` when
   * the stream is closed (by `close()`, because the client left, because it
   * fell more than `maxBufferedBytes` behind, which this event may have
   * done, or because other code ended the response); nothing is written
   * then and nothing is thrown.
   *
   * Throws a `TypeError`, writes nothing and keeps the id for the next event
   * when `event` is not an object (`ERR_SSE_INVALID_EVENT`), when `eventName`
   * is not a string or holds CR, LF, NUL or an unpaired surrogate
   * (`ERR_SSE_INVALID_EVENT_NAME`), when `id` is given and is not such a
   * string (`ERR_SSE_INVALID_EVENT_ID`), when `data` is neither a string nor
   * bytes or comes with an `eventPayload` (`ERR_SSE_INVALID_DATA`), or when
   * `JSON.stringify(eventPayload)` throws or returns `undefined`
   * (`ERR_SSE_INVALID_PAYLOAD`).
   *
   * With an event map (`new SSE<Events>(...)`), `eventName` must be one of
   * its names and `eventPayload` of that name's type.
   */
  send<K extends EventName<E>, P extends E[K]>(event: SendEventOf<K, P> | SendRawEventOf<K>): boolean
  /**
   * Sends a comment: `: <text>` (one comment line per line of `text`) and a
   * blank line. Clients ignore comments; proxies and load balancers see
   * traffic. `comment()` with no text sends the bare heartbeat `:`.
   *
   * Returns `false` when the stream is closed, like `send()`, before
   * looking at `text`. Throws a `TypeError` (`ERR_SSE_INVALID_COMMENT`)
   * when `text` is given and is not a string.
   */
  comment(text?: string): boolean
  /**
   * Ends the response (`res.end()`, or the end of the Fetch form's body)
   * after writing what is pending. Calling it again, or after the client
   * has left, does nothing.
   */
  close(): void
  /**
   * Whether the stream has ended: `close()` was called, the client left,
   * the client fell behind by more than `maxBufferedBytes`, or other code
   * ended the response. `send()` returns `false` from then on.
   */
  get closed(): boolean
  /**
   * Bytes accepted for this client and not yet taken by its socket: events
   * of the current tick plus what Node's response still holds (in the
   * Fetch form: what the body holds that the runtime has not read). 0 once
   * closed.
   */
  get bufferedBytes(): number
  /**
   * Calls `callback(reason)` once when the stream ends, in the tick after
   * it ended: `'client'` (the client left), `'server'` (`close()`, or other
   * code ended the response) or `'overflow'` (the client fell more than
   * `maxBufferedBytes` behind and was disconnected). On a stream that has
   * already ended, `callback` is still called, in the next tick.
   *
   * Throws a `TypeError` (`ERR_SSE_INVALID_ARGUMENT`) when `callback` is not
   * a function.
   */
  onClose(callback: (reason: SSECloseReason) => void): void
}

/**
 * The constructor of channels: an in-process channel without `redis`, a
 * Redis channel (shared by every process on the same `stream`) with it.
 * `E` maps event names to payload types, as for `SSE`.
 */
export interface ChannelConstructor {
  new <E extends object = UntypedEvents>(options: RedisChannelOptions): Channel<E, true>
  new <E extends object = UntypedEvents>(options?: LocalChannelOptions): Channel<E, false>
  new <E extends object = UntypedEvents>(options?: ChannelOptions): Channel<E>
  readonly prototype: Channel
}

export declare const Channel: ChannelConstructor

/**
 * One event to many streams. `Remote` is `true` for a Redis channel (its
 * `broadcast()` returns a promise), `false` for an in-process one, and
 * `boolean` when the type does not say.
 */
export interface Channel<E extends object = UntypedEvents, Remote extends boolean = boolean> {
  /**
   * Adds `sse` to the channel and returns `true`; `false` when its stream
   * has already ended. Adding a member again does nothing.
   *
   * When the request of `sse` carried a `Last-Event-ID` (or `lastEventId`
   * query parameter), the member first receives the channel events after
   * that id, in order, then live events. When those events are no longer
   * all known (older than the history, or an id this channel never gave),
   * it receives a `reset` event instead. A member without one is told the
   * channel's current position (`id: <id>` and a blank line, which
   * dispatches no event), so that it resumes from there if it reconnects.
   *
   * The member leaves by itself when its stream ends.
   */
  add(sse: SSE<any>): boolean
  /**
   * Removes `sse` from the channel (its stream stays open). Returns
   * whether it was a member.
   */
  remove(sse: SSE<any>): boolean
  /**
   * Sends `event` (as `send()` takes it, without `id`) to every member, or
   * to those `options.to` names: an array of UUIDs (`getUUID()`), or a
   * function called with each member's SSE that returns `true` for those
   * to send to. The event is framed once, with the next channel id, and
   * the same bytes go to every member.
   *
   * Returns the event's id. On a Redis channel, returns a promise of the id
   * (the stream entry id), which rejects with `ERR_SSE_REDIS_UNAVAILABLE`
   * when Redis cannot take the event; a predicate `to` is not allowed there
   * (it cannot run on other servers).
   *
   * Events sent to some members only are not kept in the history (the
   * UUIDs change when clients reconnect), nor are those broadcast with
   * `options.replay` `false` (a clock, a presence count: events a client
   * that comes back does not need); both still take an id.
   *
   * Throws a `TypeError`, as `send()` does, when the event is invalid, and
   * `ERR_SSE_INVALID_OPTION` when `options` is; nothing is sent then.
   * Throws `ERR_SSE_CHANNEL_CLOSED` after `close()`.
   *
   * With an event map (`new Channel<Events>()`), `eventName` must be one of
   * its names and `eventPayload` of that name's type.
   */
  broadcast<K extends EventName<E>, P extends E[K]>(
    event: PayloadEventOf<K, P> | RawEventOf<K>,
    options?: BroadcastOptions<E>,
  ): BroadcastResult<Remote>
  /** The number of members. */
  get size(): number
  /**
   * The id of the newest event this channel has seen (`<ms>-<seq>`):
   * where a member that joins now starts. `null` on a Redis channel until
   * it has read the stream's position.
   */
  get lastEventId(): string | null
  /**
   * Stops the channel: writes broadcasts still waiting for the flush
   * window, removes every member (their streams stay open) and, with
   * Redis, stops reading the stream (the client you passed is not closed).
   * `add()` and `broadcast()` throw `ERR_SSE_CHANNEL_CLOSED` afterwards.
   * Calling it again does nothing.
   */
  close(): void
  /**
   * This channel's counters, a plain snapshot (docs/operations.md). Also
   * after `close()` (with no members).
   */
  metrics(): ChannelMetrics
  /**
   * Ends the members' streams for a shutdown or a deploy, as `drain()`
   * does for every stream: each gets a `retry: <ms>` frame after what it
   * still has (the values spread over `options.windowMs`), then ends
   * (`onClose('server')`, out of its channels). Until the window is over,
   * a stream added to the channel is ended the same way instead (`add()`
   * returns `false`). Resolves when the responses have finished (those
   * that have not within `options.timeoutMs` are destroyed).
   *
   * Throws `ERR_SSE_INVALID_OPTION` for bad options, and
   * `ERR_SSE_CHANNEL_CLOSED` after `close()`; nothing is ended then.
   */
  drain(options?: DrainOptions): Promise<DrainSummary>
  /**
   * Calls `callback(err)` for the errors of a Redis channel's transport,
   * which otherwise only show as rejected broadcasts: `err.code` is
   * `ERR_SSE_REDIS_UNAVAILABLE` (reading failed or timed out, or a
   * broadcast timed out; reported once per outage, when the state turns
   * `'unavailable'`), `ERR_SSE_REDIS_STREAM_RESET` (the stream was deleted,
   * flushed or made again: members got a `reset`) or
   * `ERR_SSE_REDIS_TRIMMED` (entries were trimmed before this process read
   * them: members got an `expired` reset). A callback that throws is
   * reported with `process.emitWarning`; the channel goes on. Never called
   * on an in-process channel.
   */
  onError(callback: (err: Error & { code: string }) => void): void
  /**
   * The Redis transport's state, as a new plain object each time; `null`
   * on an in-process channel. State changes are also published on the
   * `node:diagnostics_channel` channel `native-sse:redis:state` as
   * `{ channel, stream, state, previous, error }`.
   */
  get redisStatus(): ChannelRedisStatus | null
}

export type SSEMetrics = binding.SSEMetrics
export type ChannelMetrics = binding.ChannelMetrics
/**
 * The counters of this JavaScript environment (docs/operations.md): a
 * plain snapshot, read synchronously.
 */
export declare function metrics(): SSEMetrics

/**
 * Ends every open stream of the process (both forms) for a shutdown or a
 * deploy: each gets a `retry: <ms>` frame after what it still has, the
 * values spread evenly over `options.windowMs` (default 10000) from
 * `options.minMs` (default 0) in a random order, so that the clients
 * reconnect to the other servers over the window rather than all at once;
 * then it ends (`onClose('server')`, out of its channels), and its
 * HTTP/1.x connection is closed (an HTTP/2 session is told to go away).
 * Until the window is over, a stream that opens is ended the same way
 * right after its opening bytes. Resolves when every drained response
 * has finished; those that have not within `options.timeoutMs` (default
 * 10000) are destroyed. Call `server.close()` afterwards.
 *
 * Throws `ERR_SSE_INVALID_OPTION` (a `TypeError`) for bad options, before
 * anything is ended.
 */
export declare function drain(options?: DrainOptions): Promise<DrainSummary>
