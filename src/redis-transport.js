// The Redis side of a Redis channel, in JavaScript because the client is
// (ioredis, promise-based). `src/redis.rs` compiles this function expression
// once per environment (it is embedded in the addon) and calls it for each
// Redis channel; everything else (framing, ids, members, the resume rule)
// stays in Rust. The function receives the user's client, the stream key,
// `maxLen` and a sink of Rust callbacks:
//   sink.ready(head)                  the stream's last id when reading starts
//   sink.event(id, name, data, to)    one stream entry, in stream order
// and returns { publish, replay, close }.
(function createRedisTransport(redis, stream, maxLen, sink) {
  'use strict'
  // XREAD BLOCK holds a connection, so reading gets its own.
  const reader = redis.duplicate()
  reader.on('error', () => {}) // reconnects are ioredis' job; errors are reported by the commands
  let closed = false
  let lastId = null
  const BLOCK_MS = 2000
  const RETRY_MS = 100

  function unavailable(cause) {
    const err = new Error(
      `Redis is unavailable (client status "${redis.status}"): the event was not broadcast`,
      cause === undefined ? undefined : { cause },
    )
    err.code = 'ERR_SSE_REDIS_UNAVAILABLE'
    return err
  }

  function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms).unref())
  }

  // An entry's fields, [k1, v1, k2, v2, ...], as [name, data, to].
  function fieldsOf(fields) {
    let name = null
    let data = null
    let to = null
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'event') name = fields[i + 1]
      else if (fields[i] === 'data') data = fields[i + 1]
      else if (fields[i] === 'to') to = fields[i + 1]
    }
    return [name, data, to]
  }

  async function read() {
    while (!closed) {
      try {
        if (lastId === null) {
          const last = await reader.xrevrange(stream, '+', '-', 'COUNT', 1)
          if (closed) break
          lastId = last.length > 0 ? last[0][0] : '0-0'
          sink.ready(lastId)
        }
        const reply = await reader.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', stream, lastId)
        if (closed) break
        if (reply === null) continue
        for (const [, entries] of reply) {
          for (const [id, fields] of entries) {
            lastId = id
            sink.event(id, ...fieldsOf(fields))
          }
        }
      } catch {
        // Redis went away (or the command failed): try again from the last
        // id seen, so nothing is skipped and nothing is read twice.
        if (closed) break
        await pause(RETRY_MS)
      }
    }
  }

  // XINFO STREAM as { floor, head }: `head` is the last id ever added;
  // `floor` the newest id a client may have seen and still resume from:
  // before the first kept entry when entries were trimmed away, and never
  // below the newest deleted one.
  function window(info) {
    if (info === null) return { floor: '0-0', head: '0-0' }
    const field = {}
    for (let i = 0; i + 1 < info.length; i += 2) field[info[i]] = info[i + 1]
    const head = field['last-generated-id'] ?? '0-0'
    const length = Number(field.length ?? 0)
    const added = field['entries-added'] === undefined ? Infinity : Number(field['entries-added'])
    const first = Array.isArray(field['first-entry']) ? field['first-entry'][0] : null
    let floor = '0-0'
    if (added > length) floor = first ?? head
    const deleted = field['max-deleted-entry-id']
    if (deleted !== undefined && compare(deleted, floor) > 0) floor = deleted
    return { floor, head }
  }

  function compare(a, b) {
    const [am, as] = a.split('-').map(BigInt)
    const [bm, bs] = b.split('-').map(BigInt)
    if (am !== bm) return am < bm ? -1 : 1
    if (as !== bs) return as < bs ? -1 : 1
    return 0
  }

  read()

  return {
    publish(name, data, to) {
      if (closed) return Promise.reject(Object.assign(new Error('broadcast: the channel is closed'), { code: 'ERR_SSE_CHANNEL_CLOSED' }))
      if (redis.status !== 'ready') return Promise.reject(unavailable())
      const args = [stream, 'MAXLEN', '~', maxLen, '*', 'event', name, 'data', data]
      if (to !== null) args.push('to', to)
      return redis.xadd(...args).then(
        (id) => id,
        (err) => {
          throw unavailable(err)
        },
      )
    },

    // The entries after `lastId` and the stream's window, read atomically;
    // `done(err)` or `done(null, floor, head, flat)` with flat
    // [id, name, data, to, ...].
    replay(lastId, done) {
      if (redis.status !== 'ready') {
        done(unavailable())
        return
      }
      redis
        .multi()
        .xinfo('STREAM', stream)
        .xrange(stream, `(${lastId}`, '+')
        .exec()
        .then((results) => {
          const [[infoErr, info], [rangeErr, entries]] = results
          const missing = infoErr && /no such key/i.test(infoErr.message)
          if ((infoErr && !missing) || rangeErr) throw infoErr || rangeErr
          const { floor, head } = window(missing ? null : info)
          const flat = []
          for (const [id, fields] of entries) flat.push(id, ...fieldsOf(fields))
          return { floor, head, flat }
        })
        .then(
          ({ floor, head, flat }) => done(null, floor, head, flat),
          (err) => done(unavailable(err)),
        )
    },

    close() {
      if (closed) return
      closed = true
      reader.disconnect()
    },
  }
})
