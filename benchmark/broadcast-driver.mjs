// The broadcast servers' side of the IPC protocol that bench.mjs drives
// (broadcast-server.mjs on node:http, fetch-server.mjs in its broadcast
// mode): `members`, `run` (broadcast events first..count, one per turn or
// one per `pace` ms, never past the credit), `credit`, `stats` (CPU and
// RSS since `run` with `measure`) and `exit`. See broadcast-server.mjs for
// the messages. Runs under Node and Bun.
//
//   process.on('message', broadcastDriver({ group, gc, closes, onExit }))
//
// `group` has broadcast(eventName, payload, seq), size() and close();
// `closes` counts onClose reasons where the implementation reports them;
// `onExit()` closes the server.

const now = () => performance.timeOrigin + performance.now()
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const maxRss = () => process.resourceUsage().maxRSS * 1024

/**
 * How far ahead of the slowest client the server may broadcast: the
 * clients' `credit` messages raise `allowed` (never lower it), and
 * `until(seq)` waits until event `seq` is allowed.
 */
export class Credit {
  allowed = 0
  #waiter = null

  grant(upTo) {
    if (upTo <= this.allowed) return
    this.allowed = upTo
    this.#waiter?.()
    this.#waiter = null
  }

  async until(seq) {
    while (seq > this.allowed) await new Promise((resolve) => (this.#waiter = resolve))
  }
}

export function broadcastDriver({ group, gc, closes = {}, onExit = () => {} }) {
  const credit = new Credit()
  let runStart = null
  let rssBefore = 0
  let rssPeak = 0
  let maxRssBefore = 0
  let sampler = null

  const sampleRss = () => {
    const rss = process.memoryUsage.rss()
    if (rss > rssPeak) rssPeak = rss
  }

  async function run({ first, count, payloadBytes, eventName, upTo, pace, measure }) {
    credit.grant(upTo)
    const pad = 'x'.repeat(Math.max(0, payloadBytes - 40))
    if (measure) {
      for (let i = 0; i < 3; i++) {
        gc()
        await nextTurn()
      }
      rssBefore = process.memoryUsage.rss()
      rssPeak = rssBefore
      maxRssBefore = maxRss()
      sampler = setInterval(sampleRss, 5)
      runStart = process.cpuUsage()
    }
    for (let seq = first; seq <= count; seq++) {
      await (pace ? sleep(pace) : nextTurn())
      await credit.until(seq)
      // `t` is read just before broadcast(), on the clock the clients use.
      group.broadcast(eventName, { i: seq, t: now(), p: pad }, seq)
    }
    process.send({ type: 'sent' })
  }

  return (message) => {
    switch (message.type) {
      case 'members':
        process.send({ type: 'members', count: group.size() })
        break
      case 'run':
        run(message).catch((err) => {
          console.error(err)
          process.exit(1)
        })
        break
      case 'credit':
        credit.grant(message.upTo)
        break
      case 'stats': {
        const cpu = process.cpuUsage(runStart)
        clearInterval(sampler)
        sampleRss()
        // The kernel's peak too, in case sampling every 5 ms missed it (only
        // when it rose during the run: before, it may be the startup's peak).
        const peak = maxRss()
        if (peak > maxRssBefore && peak > rssPeak) rssPeak = peak
        process.send({
          type: 'stats',
          cpuMicros: cpu.user + cpu.system,
          cpuUserMicros: cpu.user,
          rssBefore,
          rssPeak,
          closes,
          members: group.size(),
        })
        break
      }
      case 'exit':
        clearInterval(sampler)
        group.close()
        onExit()
        process.exit(0)
    }
  }
}
