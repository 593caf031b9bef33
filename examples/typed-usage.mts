// Type-level checks of the public API (run by `npm run typecheck`).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { SSE, type TypeSSEventToSend } from 'native-sse'

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
