// The implementations under comparison, behind one small interface:
//   open(req, res) -> Promise<stream>, stream.send(eventName, payload, seq),
//   stream.close().
// `seq` is the event's sequence number (1, 2, 3 ...); implementations whose id
// is not automatic (better-sse) use it as the event id.
import { createSession } from 'better-sse'
import { SSE } from 'native-sse'

import { S42SSE } from './s42-sse.mjs'

/** An implementation for a class with the S42Core API (`new C(req, res)`,
 * `send({ eventName, eventPayload })`, `close()`). */
function s42Shaped(SSEClass) {
  return {
    async open(req, res) {
      const sse = new SSEClass(req, res)
      return {
        send(eventName, payload) {
          sse.send({ eventName, eventPayload: payload })
        },
        close() {
          sse.close()
        },
      }
    },
  }
}

const HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' }

export const implementations = {
  // Hand-written baseline: one res.write of a template string per event.
  raw: {
    async open(req, res) {
      res.writeHead(200, HEADERS)
      res.flushHeaders()
      res.write(`id: 0\nevent: welcome\ndata: {"uuid":"00000000-0000-4000-8000-000000000000"}\n\n`)
      let id = 1
      return {
        send(eventName, payload) {
          res.write(`id: ${id++}\nevent: ${eventName}\ndata: ${JSON.stringify(payload)}\n\n`)
        },
        close() {
          res.end()
        },
      }
    },
  },

  // A pure-JS class that behaves like the original S42Core class.
  's42-js': s42Shaped(S42SSE),

  // better-sse, the most used Node SSE library, with its session push().
  'better-sse': {
    async open(req, res) {
      const session = await createSession(req, res)
      return {
        send(eventName, payload, seq) {
          session.push(payload, eventName, String(seq))
        },
        close() {
          res.end()
        },
      }
    },
  },

  'native-sse': s42Shaped(SSE),
}

export const IMPLEMENTATION_NAMES = Object.keys(implementations)
