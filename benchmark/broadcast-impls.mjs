// The broadcast implementations under comparison, behind one small
// interface: create({ maxBufferedBytes, onClose }) -> group, with
// group.open(req, res) (adds the stream to the group), group.broadcast(
// eventName, payload, seq) (one event to every member; seq is its sequence
// number, 1, 2, 3 ...), group.size() and group.close().
import { createChannel, createSession } from 'better-sse'
import { Channel, SSE } from 'native-sse'

const HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' }

/** native-sse: `Channel`, members `new SSE(req, res, { keepAlive: 0 })`. */
function nativeChannel(channelOptions) {
  return {
    create({ maxBufferedBytes, onClose }) {
      const channel = new Channel(channelOptions)
      const sseOptions = { keepAlive: 0 }
      if (maxBufferedBytes !== undefined) sseOptions.maxBufferedBytes = maxBufferedBytes
      return {
        open(req, res) {
          const sse = new SSE(req, res, sseOptions)
          sse.onClose(onClose)
          channel.add(sse)
        },
        broadcast(eventName, payload) {
          channel.broadcast({ eventName, eventPayload: payload })
        },
        size: () => channel.size,
        close: () => channel.close(),
      }
    },
  }
}

export const broadcastImplementations = {
  // Default settings: each tick's broadcasts written at the end of the tick.
  'native-sse': nativeChannel(undefined),

  // Broadcasts wait up to 10 ms and go out together.
  'native-sse-window10': nativeChannel({ flushWindow: 10 }),

  // better-sse 0.16: createChannel(), channel.register(session),
  // channel.broadcast(data, eventName, { eventId }) (which calls
  // session.push() on every session: serialised once per session). Its
  // keep-alive timer is turned off, as native-sse's is here.
  'better-sse': {
    create() {
      const channel = createChannel()
      return {
        open(req, res) {
          createSession(req, res, { keepAlive: null }).then((session) => channel.register(session))
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

  // Hand-written: each event serialised once (JSON.stringify once) into one
  // Buffer, and the same Buffer handed to every response's res.write. No cap
  // on a slow client.
  'hand-loop': {
    create() {
      const members = new Set()
      return {
        open(req, res) {
          res.writeHead(200, HEADERS)
          res.flushHeaders()
          members.add(res)
          res.on('close', () => members.delete(res))
        },
        broadcast(eventName, payload, seq) {
          const bytes = Buffer.from(`id: ${seq}\nevent: ${eventName}\ndata: ${JSON.stringify(payload)}\n\n`)
          for (const res of members) res.write(bytes)
        },
        size: () => members.size,
        close: () => members.clear(),
      }
    },
  },
}

export const BROADCAST_IMPLEMENTATION_NAMES = Object.keys(broadcastImplementations)
