// The public types of native-sse: those of the binding, whose declarations
// napi-rs generates into binding.d.ts (`npm run build`), without what only
// the generated loader uses (`__napiBindingTarget`). The runtime exports
// (js/index.js) are the same two classes. A type added to the Rust sources
// or to src/dts-header.d.ts is listed here too (__test__/package.test.mjs
// checks that every export of binding.d.ts but the loader's is).
//
// The import names binding.d.ts itself, not binding.js: Deno's type
// checker reads `./binding.js` as the untyped JavaScript file.
import type * as binding from './binding.d.ts'

export declare const SSE: typeof binding.SSE
export type SSE = binding.SSE
export declare const Channel: typeof binding.Channel
export type Channel = binding.Channel
export type BroadcastOptions = binding.BroadcastOptions
export type ChannelEvent = binding.ChannelEvent
export type ChannelOptions = binding.ChannelOptions
export type ChannelRedisClient = binding.ChannelRedisClient
export type DrainOptions = binding.DrainOptions
export type DrainSummary = binding.DrainSummary
export type SSECloseReason = binding.SSECloseReason
export type SSEOptions = binding.SSEOptions
export type SSERawEvent = binding.SSERawEvent
export type TypeSSEventToSend = binding.TypeSSEventToSend

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
