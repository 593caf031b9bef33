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
export type ChannelIoredisClient = binding.ChannelIoredisClient
export type ChannelNodeRedisClient = binding.ChannelNodeRedisClient
export type ChannelRedisStatus = binding.ChannelRedisStatus
export type SSECloseReason = binding.SSECloseReason
export type SSEOptions = binding.SSEOptions
export type SSERawEvent = binding.SSERawEvent
export type TypeSSEventToSend = binding.TypeSSEventToSend
