// The Fetch-form implementations under comparison (fetch-server.mjs runs
// them on Bun.serve or on Node through @hono/node-server): each answers a
// Fetch `Request` with a `Response` whose body is the event stream.
//
//   stream(onOpen) -> { fetch(request) }: one stream per request; `onOpen(s)`
//     once it takes events, with s.send(eventName, payload, seq),
//     s.queuedBytes() (what it holds that the runtime has not read, about)
//     and s.close().
//   group() -> { fetch(request), broadcast(eventName, payload, seq), size(),
//     close() }: every request joins the group; broadcast() sends one event
//     to every member.
//
// Every implementation sends the same event name and the same JSON text
// (`JSON.stringify(payload)`), with the ids as each library writes them:
// native-sse numbers its events itself (0, 1, 2 ... in the Fetch form; a
// channel's `<epoch>-<n>`), the others are given `String(seq)`, the same
// numbers. The framings differ a little: native-sse and Hono write
// `field: value` lines (Hono puts `id:` after `data:`), better-sse
// `field:value` (3 bytes fewer per event) and a `retry:2000` block first.
import { createChannel, createResponse } from 'better-sse'
import { Hono } from 'hono'
import { streamSSE } from 'hono/streaming'
import { Channel, SSE } from 'native-sse'

/**
 * Chunks a TransformStream's writer holds (better-sse and Hono write each
 * event as one chunk into a TransformStream; its writable side counts
 * chunks, high-water mark 1).
 */
const queuedChunks = (writer) => {
  const room = writer.desiredSize
  return room === null ? 0 : Math.max(0, 1 - room)
}

/**
 * A Hono app whose every GET is `streamSSE`; `opened(stream)` for each.
 * The stream starts with a comment (`:` and a blank line), as native-sse's
 * channel starts a member with its position line and better-sse with a
 * `retry:` block: Bun.serve completes the response head only with the
 * body's first chunk, and a client waits for the head.
 */
function honoApp(opened) {
  const app = new Hono()
  app.get('*', (c) =>
    streamSSE(c, async (stream) => {
      stream.write(':\n\n')
      // The stream stays open until the client leaves or close().
      await new Promise((resolve) => {
        stream.onAbort(resolve)
        opened(stream, resolve)
      })
    }))
  return app
}

export const fetchImplementations = {
  // native-sse's Fetch form: `new SSE(request)`, `sse.getResponse()`; a
  // broadcast goes through a native-sse `Channel`.
  'native-sse': {
    stream(onOpen) {
      return {
        fetch(request) {
          const sse = new SSE(request)
          onOpen({
            send(eventName, payload) {
              sse.send({ eventName, eventPayload: payload })
            },
            queuedBytes: () => sse.bufferedBytes,
            close: () => sse.close(),
          })
          return sse.getResponse()
        },
      }
    },
    group({ maxBufferedBytes } = {}) {
      const channel = new Channel()
      const options = { keepAlive: 0 }
      if (maxBufferedBytes !== undefined) options.maxBufferedBytes = maxBufferedBytes
      return {
        fetch(request) {
          const sse = new SSE(request, options)
          channel.add(sse)
          return sse.getResponse()
        },
        broadcast(eventName, payload) {
          channel.broadcast({ eventName, eventPayload: payload })
        },
        size: () => channel.size,
        close: () => channel.close(),
      }
    },
  },

  // Hono's streamSSE (hono/streaming) in a Hono app: `stream.writeSSE({
  // event, data, id })` per event. Its writes are not awaited one by one
  // (a burst goes out 100 per turn, as for the others; each writeSSE's
  // promise resolves once the runtime has taken the chunk); the broadcast
  // is the loop a Hono app would write over its open streams, the JSON
  // text made once per broadcast.
  'hono-streamSSE': {
    stream(onOpen) {
      const app = honoApp((stream, done) => {
        onOpen({
          send(eventName, payload, seq) {
            stream.writeSSE({ event: eventName, data: JSON.stringify(payload), id: String(seq) })
          },
          queuedBytes: (eventBytes) => queuedChunks(stream.writer) * eventBytes,
          close() {
            stream.close()
            done()
          },
        })
      })
      return { fetch: (request) => app.fetch(request) }
    },
    group() {
      const members = new Set()
      const app = honoApp((stream) => {
        members.add(stream)
        stream.onAbort(() => members.delete(stream))
      })
      return {
        fetch: (request) => app.fetch(request),
        broadcast(eventName, payload, seq) {
          const message = { event: eventName, data: JSON.stringify(payload), id: String(seq) }
          for (const stream of members) stream.writeSSE(message)
        },
        size: () => members.size,
        close() {
          for (const stream of members) stream.close()
          members.clear()
        },
      }
    },
  },

  // better-sse 0.16's Fetch mode: `createResponse(request, options,
  // (session) => ...)` and `session.push(data, eventName, id)`; a broadcast
  // goes through `createChannel()` (`register`, `broadcast(data, name,
  // { eventId })`). Keep-alive off in the broadcast, as native-sse's.
  'better-sse-fetch': {
    stream(onOpen) {
      return {
        fetch(request) {
          return createResponse(request, (session) => {
            onOpen({
              send(eventName, payload, seq) {
                session.push(payload, eventName, String(seq))
              },
              queuedBytes: (eventBytes) => queuedChunks(session.connection.writer) * eventBytes,
              close: () => session.connection.cleanup(),
            })
          })
        },
      }
    },
    group() {
      const channel = createChannel()
      return {
        fetch(request) {
          return createResponse(request, { keepAlive: null }, (session) => channel.register(session))
        },
        broadcast(eventName, payload, seq) {
          channel.broadcast(payload, eventName, { eventId: String(seq) })
        },
        size: () => channel.sessionCount,
        close() {
          for (const session of channel.activeSessions) channel.deregister(session)
        },
      }
    },
  },
}

export const FETCH_IMPLEMENTATION_NAMES = Object.keys(fetchImplementations)
