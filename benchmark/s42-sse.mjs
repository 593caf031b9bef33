// A pure-JS class that behaves like the original S42Core SSE class, as the
// seed document and the wire contract describe it. Used as the `s42-js`
// baseline in the benchmark and, in tests, to show what the original does.
import { randomUUID } from 'node:crypto'

export class S42SSE {
  #res
  #uuid
  #id = 0

  constructor(req, res) {
    this.#res = res
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' })
    res.flushHeaders()
    this.#uuid = randomUUID()
    this.send({ eventName: 'welcome', eventPayload: { uuid: this.#uuid } })
  }

  getUUID() {
    return this.#uuid
  }

  send({ eventName, eventPayload }) {
    this.#res.write(`id: ${this.#id++}\nevent: ${eventName}\ndata: ${JSON.stringify(eventPayload)}\n\n`)
  }

  close() {
    this.#res.end()
  }
}
