// The Redis clients a channel is tested with. The Redis test files run
// once per client: as themselves with ioredis, and through a wrapper
// (`*-node-redis.test.mjs`) that sets NATIVE_SSE_TEST_REDIS_CLIENT to
// `node-redis` before importing them. Child processes (fixtures) inherit the
// variable and use the same client. Admin commands in the tests (seeding,
// trimming, reading what the stream holds) stay on ioredis: what is under
// test is the channel's client.
import { createClient } from 'redis'
import Redis from 'ioredis'

import { waitFor } from './helpers.mjs'

/** 'ioredis' or 'node-redis'. */
export const CLIENT_KIND = process.env.NATIVE_SSE_TEST_REDIS_CLIENT === 'node-redis' ? 'node-redis' : 'ioredis'

/**
 * A client of `kind` on 127.0.0.1:`port`, connecting (it reconnects after
 * outages; errors are ignored, outages are part of the tests). `options`
 * are the client's own (ioredis: `{ protocol, replyMapping }`; node-redis:
 * `{ RESP }`).
 */
export function makeClient(port, { kind = CLIENT_KIND, options = {} } = {}) {
  if (kind === 'node-redis') {
    const client = createClient({
      socket: { host: '127.0.0.1', port, reconnectStrategy: (retries) => Math.min(50 * (retries + 1), 500) },
      ...options,
    })
    client.on('error', () => {})
    client.connect().catch(() => {})
    return client
  }
  const client = new Redis({ host: '127.0.0.1', port, ...options })
  client.on('error', () => {})
  return client
}

/** Whether the client answers commands now. */
export function isReady(client) {
  return typeof client.call === 'function' ? client.status === 'ready' : client.isReady === true
}

/** Ends the client at once (pending commands fail). */
export function disconnect(client) {
  try {
    if (typeof client.call === 'function') client.disconnect()
    else client.destroy()
  } catch {
    // Already closed.
  }
}

/** Ends the client after its pending commands (QUIT), or at once. */
export async function quit(client) {
  try {
    if (typeof client.call === 'function') await client.quit()
    else await client.close()
  } catch {
    disconnect(client)
  }
}

/** The protocol variants of `kind` for the RESP tests: [label, options]. */
export function protocolVariants(kind = CLIENT_KIND) {
  if (kind === 'node-redis') {
    return [
      ['RESP2', { RESP: 2 }],
      ['RESP3', { RESP: 3 }],
    ]
  }
  return [
    ['RESP2', { protocol: 2 }],
    ['RESP3 with the resp3 reply mapping', { protocol: 3, replyMapping: 'resp3' }],
  ]
}

/** Orders two stream ids (`<ms>-<seq>`) the way Redis does: -1, 0 or 1. */
export function compareIds(a, b) {
  const [am, as] = a.split('-').map(BigInt)
  const [bm, bs] = b.split('-').map(BigInt)
  if (am !== bm) return am < bm ? -1 : 1
  if (as !== bs) return as < bs ? -1 : 1
  return 0
}

/**
 * A ready ioredis client on 127.0.0.1:`port` for the tests' own commands
 * (seeding, trimming, reading the stream), added to `track` (a Set) so that
 * the test's after() disconnects it.
 */
export async function readyIoredis(port, track, { timeoutMs = 15000 } = {}) {
  const client = new Redis({ host: '127.0.0.1', port })
  client.on('error', () => {})
  track.add(client)
  await waitFor(() => client.status === 'ready', { what: 'the Redis client to be ready', timeoutMs })
  return client
}

