'use strict'
// The Redis side of a Redis channel, in JavaScript because the client is
// (ioredis, promise-based). Everything else (framing, ids, members, the
// resume rule, replay paging) is the core's: this file appends broadcasts
// (`XADD ... MAXLEN ~`), reads the stream on its own connection (`XREAD
// BLOCK`) and hands each entry to the binding, and reads the replay pages
// the core asks for (`XINFO STREAM` with the first `XRANGE` in one
// `MULTI`, then `XRANGE` pages).
//
// Replies are read in every shape ioredis gives them: RESP2 or RESP3 with
// the default ("legacy") reply mapping (flat arrays), or RESP3 with
// `replyMapping: "resp3"` (objects or Maps for XREAD and XINFO).

const binding = require('../binding.js')
const streams = require('./stream.js')

const ARM_WINDOW = binding.constants()[4]

function fireWindow(channel) {
  apply(binding.channelWindowFire(channel))
}

/** Carries out the flags a binding call answered with. */
function apply(flags) {
  streams.apply(flags, undefined)
}

function createTransport(redis, stream, maxLen, channel, owner, windowMs = 0) {
  const sink = {
    ready: (head) => apply(binding.redisReady(channel, head)),
    event: (id, name, data, to) => {
      const flags = binding.redisEntry(channel, id, name, data, to)
      apply(flags)
      // With a flush window the entry waits in the channel's queue; the
      // first one of a window arms its timer, as a local broadcast does.
      if (flags & ARM_WINDOW) streams.unref(setTimeout(fireWindow, windowMs, channel))
    },
    // The Channel object was garbage-collected without close().
    alive: () => owner.deref() !== undefined,
  }
  maxLen = String(maxLen)
  // XREAD BLOCK holds a connection, so reading gets its own.
  const reader = redis.duplicate()
  reader.on('error', () => {}) // reconnects are ioredis' job; errors are reported by the commands
  let closed = false
  // The id reading continues after; null until the stream's position is
  // known.
  let lastId = null
  // Broadcasts made before the position is known wait for it (see publish).
  let positioned = []
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

  function closedError() {
    return Object.assign(new Error('broadcast: the channel is closed'), { code: 'ERR_SSE_CHANNEL_CLOSED' })
  }

  function pause(ms) {
    return new Promise((resolve) => streams.unref(setTimeout(resolve, ms)))
  }

  // An entry's fields, [k1, v1, k2, v2, ...], as [name, data, to, replay]
  // (`replay` is false for events broadcast with { replay: false }).
  function fieldsOf(fields) {
    let name = null
    let data = null
    let to = null
    let replay = true
    if (!Array.isArray(fields)) return [name, data, to, replay]
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'event') name = fields[i + 1]
      else if (fields[i] === 'data') data = fields[i + 1]
      else if (fields[i] === 'to') to = fields[i + 1]
      else if (fields[i] === 'replay') replay = String(fields[i + 1]) !== '0'
    }
    return [name, data, to, replay]
  }

  // The entries of an XREAD reply for our one stream: [[id, fields], ...].
  // RESP2 and the legacy mapping give [[key, entries]]; the resp3 mapping
  // gives { key: entries } or a Map.
  function entriesOf(reply) {
    if (reply === null || reply === undefined) return []
    if (Array.isArray(reply)) return reply.length > 0 && Array.isArray(reply[0]) ? reply[0][1] ?? [] : []
    if (reply instanceof Map) return reply.values().next().value ?? []
    if (typeof reply === 'object') return Object.values(reply)[0] ?? []
    return []
  }

  // The stream's position, read on the user's client. Commands on one
  // connection run in order, so every XADD this channel sends afterwards
  // gets a later id and is read by the reader (see publish).
  async function position() {
    const last = await redis.xrevrange(stream, '+', '-', 'COUNT', 1)
    return Array.isArray(last) && last.length > 0 ? last[0][0] : '0-0'
  }

  async function read() {
    while (!closed) {
      if (!sink.alive()) {
        stop()
        break
      }
      try {
        if (lastId === null) {
          let head
          try {
            head = await position()
          } catch (err) {
            // Broadcasts that waited for this attempt fail rather than wait
            // for an outage of unknown length.
            const waiting = positioned
            positioned = []
            for (const { reject } of waiting) reject(closed ? closedError() : unavailable(err))
            throw err
          }
          if (closed) break
          lastId = head
          sink.ready(lastId)
          const waiting = positioned
          positioned = []
          for (const { resolve } of waiting) resolve()
        }
        const reply = await reader.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', stream, lastId)
        if (closed) break
        for (const [id, fields] of entriesOf(reply)) {
          lastId = id
          const [name, data, to] = fieldsOf(fields)
          sink.event(id, name, data, to)
          if (closed) break
        }
      } catch {
        // Redis went away (or the command failed): try again from the last
        // id seen, so nothing is skipped and nothing is read twice.
        if (closed) break
        await pause(RETRY_MS)
      }
    }
  }

  // XINFO STREAM's reply as a plain object, from a flat [k1, v1, ...] array,
  // a Map or an object.
  function infoFields(info) {
    if (Array.isArray(info)) {
      const field = {}
      for (let i = 0; i + 1 < info.length; i += 2) field[info[i]] = info[i + 1]
      return field
    }
    if (info instanceof Map) return Object.fromEntries(info)
    return info
  }

  // XINFO STREAM as { floor, head }: `head` is the last id ever added;
  // `floor` the newest id a client may have seen and still resume from:
  // the first kept entry when entries were trimmed away (conservative: a
  // client that saw the entry just before it is told to reload too), and
  // never below the newest deleted one.
  function window(info) {
    if (info === null) return { floor: '0-0', head: '0-0' }
    const field = infoFields(info)
    const head = String(field['last-generated-id'] ?? '0-0')
    const length = Number(field.length ?? 0)
    // Redis before 7.0 does not say how many entries were ever added: count
    // the stream as trimmed then.
    const added = field['entries-added'] === undefined ? Infinity : Number(field['entries-added'])
    const first = Array.isArray(field['first-entry']) ? String(field['first-entry'][0]) : null
    let floor = '0-0'
    if (added > length) floor = first ?? head
    const deleted = field['max-deleted-entry-id']
    if (deleted !== undefined && compare(String(deleted), floor) > 0) floor = String(deleted)
    return { floor, head }
  }

  function compare(a, b) {
    const [am, as] = a.split('-').map(BigInt)
    const [bm, bs] = b.split('-').map(BigInt)
    if (am !== bm) return am < bm ? -1 : 1
    if (as !== bs) return as < bs ? -1 : 1
    return 0
  }

  function xadd(name, data, to, replay) {
    if (closed) return Promise.reject(closedError())
    if (redis.status !== 'ready') return Promise.reject(unavailable())
    const args = [stream, 'MAXLEN', '~', maxLen, '*', 'event', name, 'data', data]
    if (to !== null) args.push('to', to)
    if (!replay) args.push('replay', '0')
    return redis.xadd(...args).then(
      (id) => String(id),
      (err) => {
        throw unavailable(err)
      },
    )
  }

  function stop() {
    if (closed) return
    closed = true
    const waiting = positioned
    positioned = []
    for (const { reject } of waiting) reject(closedError())
    reader.disconnect()
  }

  read()

  return {
    publish(name, data, uuids, replay) {
      // The entry keeps the UUIDs comma-separated; a string with a comma is
      // no member's UUID, and kept as is it would name others.
      const to = uuids === undefined ? null : uuids.filter((uuid) => !uuid.includes(',')).sort().join(',')
      if (closed) return Promise.reject(closedError())
      if (redis.status !== 'ready') return Promise.reject(unavailable())
      if (lastId !== null) return xadd(name, data, to, replay)
      // The position is being read: an XADD sent now could land before it
      // and never be read. Wait for it, in order.
      return new Promise((resolve, reject) => positioned.push({ resolve, reject })).then(() =>
        xadd(name, data, to, replay),
      )
    },

    // A replay page for `member`: on the first, the stream's window
    // (XINFO STREAM) and the entries from `from` on, atomically; later, the
    // entries from `from` to `until`. `from` itself is included (the core
    // skips it): an exclusive start is an error in Redis for the largest id.
    // Answered in a later task, always.
    page(member, from, until, first, count) {
      const fail = () => apply(binding.redisReplayed(channel, member, first, false, '0-0', '0-0', []))
      if (closed || redis.status !== 'ready') {
        setImmediate(fail)
        return
      }
      const read = first
        ? redis.multi().xinfo('STREAM', stream).xrange(stream, from, '+', 'COUNT', count).exec()
        : redis.xrange(stream, from, until, 'COUNT', count).then((entries) => [[null, null], [null, entries]])
      read
        .then((results) => {
          if (!Array.isArray(results)) throw new Error('the transaction was aborted')
          const [[infoErr, info], [rangeErr, entries]] = results
          const missing = infoErr && /no such key/i.test(infoErr.message)
          if ((infoErr && !missing) || rangeErr) throw infoErr || rangeErr
          const { floor, head } = first ? window(missing ? null : info) : { floor: '0-0', head: '0-0' }
          const flat = []
          for (const [id, fields] of entries ?? []) {
            const [name, data, to, replay] = fieldsOf(fields)
            flat.push(String(id), name, data, to, replay)
          }
          return { floor, head, flat }
        })
        .then(
          ({ floor, head, flat }) => apply(binding.redisReplayed(channel, member, first, true, floor, head, flat)),
          () => fail(),
        )
    },

    close: stop,
  }
}

module.exports = { createTransport }
