// The public types of native-sse: those of the binding, whose declarations
// napi-rs generates into binding.d.ts (`npm run build`), without what only
// the generated loader uses (`__napiBindingTarget`). The runtime exports
// (js/index.js) are the same two classes. A type added to the Rust sources
// or to src/dts-header.d.ts is listed here too (__test__/package.test.mjs
// checks that every export of binding.d.ts but the loader's is).

export { SSE, Channel } from './binding.js'
export type {
  BroadcastOptions,
  ChannelEvent,
  ChannelOptions,
  ChannelRedisClient,
  SSECloseReason,
  SSEOptions,
  SSERawEvent,
  TypeSSEventToSend,
} from './binding.js'
