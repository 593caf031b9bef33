'use strict'
// The Redis side of a Redis channel, in JavaScript because the client is
// (ioredis or node-redis, promise-based; see redis-client.js). Everything
// else (framing, ids, members, the resume rule, replay paging, whether a
// read follows the reader's position or the stream was made again or
// trimmed past it) is the core's: this file appends broadcasts (`XADD ...
// MAXLEN ~`), reads the stream on its own connection and hands each entry
// to the binding, and reads the replay pages the core asks for (`XINFO
// STREAM` with the first `XRANGE` and the reader's entry in one `MULTI`,
// then `XRANGE` pages).
//
// The reader reads in a `MULTI` of `XRANGE <last> <last>` (is the entry at
// its position still there), `XINFO STREAM` and a non-blocking `XREAD`, so
// the core judges the entries with the stream as it was when they were
// read; when there was nothing to read it waits with `XREAD BLOCK` (whose
// entries it does not take: the next `MULTI` reads them).
//
// Every command is bounded in time (`commandTimeout`) and broadcasts in
// number (`maxInFlight`): a Redis that hangs (SIGSTOP, `CLIENT PAUSE`)
// leaves the client "ready" and would otherwise queue every command.
//
// Replies are read in every shape the clients give them: RESP2 or RESP3
// with ioredis' default ("legacy") reply mapping (flat arrays), RESP3 with
// `replyMapping: "resp3"` or node-redis' RESP3 (objects or Maps for XREAD
// and XINFO).

const binding = require('../binding.js')
const streams = require('./stream.js')
const { adapt } = require('./redis-client.js')

const BLOCK_MS = 2000
const RETRY_MS = 100
const READ_COUNT = 1000

const ARM_WINDOW = binding.constants()[4]

function fireWindow(channel) {
  apply(binding.channelWindowFire(channel))
}

/** Carries out the flags a binding call answered with. */
function apply(flags) {
  streams.apply(flags, undefined)
}

function codeError(code, message, cause) {
  const err = new Error(message, cause === undefined ? undefined : { cause })
  err.code = code
  return err
}

class TimeoutError extends Error {}

/**
 * `promise`, or a rejection with a TimeoutError after `ms`. The promise
 * keeps its handlers (a late failure is not an unhandled rejection).
 */
function timed(promise, ms, what) {
  let timer
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`Redis did not answer ${what} within ${ms} ms`)), ms)
    streams.unref(timer)
  })
  promise.catch(() => {})
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
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
    const key = String(fields[i])
    if (key === 'event') name = String(fields[i + 1])
    else if (key === 'data') data = String(fields[i + 1])
    else if (key === 'to') to = String(fields[i + 1])
    else if (key === 'replay') replay = String(fields[i + 1]) !== '0'
  }
  return [name, data, to, replay]
}

// The entries of an XREAD reply for our one stream: [[id, fields], ...].
// RESP2 gives [[key, entries]]; RESP3 a map, which ioredis' legacy mapping
// flattens to [key, entries] and the other mappings give as { key: entries }
// or a Map.
function entriesOf(reply) {
  if (reply === null || reply === undefined) return []
  if (Array.isArray(reply)) {
    if (reply.length === 0) return []
    if (Array.isArray(reply[0])) return reply[0][1] ?? []
    return Array.isArray(reply[1]) ? reply[1] : []
  }
  if (reply instanceof Map) return reply.values().next().value ?? []
  if (typeof reply === 'object') return Object.values(reply)[0] ?? []
  return []
}

// XINFO STREAM's reply as a plain object, from a flat [k1, v1, ...] array,
// a Map or an object.
function infoFields(info) {
  if (Array.isArray(info)) {
    const field = {}
    for (let i = 0; i + 1 < info.length; i += 2) field[String(info[i])] = info[i + 1]
    return field
  }
  if (info instanceof Map) return Object.fromEntries(info)
  return info ?? {}
}

// XINFO STREAM in the form the core reads (`StreamInfo::parse`): "" for no
// such key, else "<length> <added> <first> <last-generated> <max-deleted>"
// with "?" for what Redis did not give (entries-added and
// max-deleted-entry-id are Redis 7's).
function infoText(info) {
  if (info === null) return ''
  const field = infoFields(info)
  const known = (value) => (value === undefined || value === null ? '?' : String(value))
  const first = Array.isArray(field['first-entry']) ? String(field['first-entry'][0]) : '?'
  return [
    known(field.length ?? 0),
    known(field['entries-added']),
    first,
    String(field['last-generated-id'] ?? '0-0'),
    known(field['max-deleted-entry-id']),
  ].join(' ')
}

function missingKey(err) {
  return err !== null && err !== undefined && /no such key/i.test(String(err.message))
}

function msOf(id) {
  const dash = typeof id === 'string' ? id.indexOf('-') : -1
  return dash > 0 ? Number(id.slice(0, dash)) : 0
}

function createTransport(client, stream, maxLen, channel, owner, limits, hooks) {
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
  const redis = adapt(client)
  const maxInFlight = limits.maxInFlight
  const timeoutMs = limits.timeoutMs
  const windowMs = limits.windowMs ?? 0
  maxLen = String(maxLen)
  // The connection broadcasts (and the position they follow) are sent on,
  // and the reader's own (XREAD BLOCK holds it).
  const writer = redis.writer()
  let reader = redis.duplicate()
  let closed = false
  // The id reading continues after; null until the stream's position is
  // known.
  let lastId = null
  // Broadcasts made before the position is known wait for it (see publish).
  let positioned = []
  // Broadcasts sent to Redis and not answered yet (timed out or not).
  let inFlight = 0
  const status = {
    state: 'connecting',
    stream,
    client: redis.kind,
    lastId: null,
    head: null,
    lagMs: 0,
    inFlight: 0,
    resets: 0,
    lastError: null,
  }

  function setState(state, error) {
    if (error !== undefined) status.lastError = error
    if (status.state === state) return
    const previous = status.state
    status.state = state
    hooks.state(state, previous, error ?? null)
  }

  function failed(err) {
    status.lastError = err
    if (status.state !== 'unavailable') {
      setState('unavailable', err)
      hooks.error(err)
    }
  }

  function unavailable(why, cause) {
    return codeError(
      'ERR_SSE_REDIS_UNAVAILABLE',
      `Redis is unavailable (${why}): the event was not broadcast`,
      cause,
    )
  }

  function closedError() {
    return codeError('ERR_SSE_CHANNEL_CLOSED', 'broadcast: the channel is closed')
  }

  function readError(cause) {
    const what = cause instanceof TimeoutError ? cause.message : `reading the stream failed: ${cause?.message ?? cause}`
    return codeError('ERR_SSE_REDIS_UNAVAILABLE', `Redis is unavailable (${what}); reading again`, cause)
  }

  function pause(ms) {
    return new Promise((resolve) => streams.unref(setTimeout(resolve, ms)))
  }

  // The stream's position, read on the writer. Commands on one connection
  // run in order, so every XADD this channel sends afterwards gets a later
  // id and is read by the reader (see publish).
  async function position() {
    const last = await timed(writer.command(['XREVRANGE', stream, '+', '-', 'COUNT', '1']), timeoutMs, 'XREVRANGE')
    return Array.isArray(last) && last.length > 0 ? String(last[0][0]) : '0-0'
  }

  // One read: the entries after `lastId`, judged by the core with the
  // stream as it was at the read. Answers how many entries were taken.
  async function readOnce() {
    // Before anything was read, the entry a replay found further on is
    // checked too (asked for before the read is sent: see the core).
    const probe = binding.redisProbe(channel)
    const commands = [
      ['XRANGE', stream, lastId, lastId],
      ['XINFO', 'STREAM', stream],
      ['XREAD', 'COUNT', String(READ_COUNT), 'STREAMS', stream, lastId],
    ]
    if (probe !== null) commands.push(['XRANGE', stream, probe, probe])
    const results = await timed(reader.multi(commands), timeoutMs, 'the reader')
    if (closed) return 0
    const [[rangeErr, range], [infoErr, info], [readErr, reply], [probeErr, probed] = [null, null]] = results
    const missing = missingKey(infoErr)
    if (rangeErr || readErr || probeErr || (infoErr && !missing)) throw rangeErr || readErr || probeErr || infoErr
    const present = Array.isArray(range) && range.length > 0
    const found = Array.isArray(probed) && probed.length > 0
    const [flags, outcome] = binding.redisCheck(channel, present, probe, found, infoText(missing ? null : info))
    apply(flags)
    const field = missing ? {} : infoFields(info)
    const head = String(field['last-generated-id'] ?? '0-0')
    if (outcome !== 0) {
      const was = lastId
      lastId = binding.channelHead(channel) ?? '0-0'
      status.lastId = lastId
      status.head = head
      status.lagMs = 0
      status.resets++
      const err =
        outcome === 2
          ? codeError(
              'ERR_SSE_REDIS_TRIMMED',
              `entries of stream "${stream}" after ${was} were trimmed (maxLen) before this process read them: its members got a reset (expired) and reading goes on after ${lastId}`,
            )
          : codeError(
              'ERR_SSE_REDIS_STREAM_RESET',
              `stream "${stream}" is not the one this process read up to ${was} (deleted, flushed or made again): its members got a reset and reading goes on after ${lastId}`,
            )
      status.lastError = err
      hooks.error(err)
      return 0
    }
    const entries = entriesOf(reply)
    for (const [id, fields] of entries) {
      lastId = String(id)
      const [name, data, to] = fieldsOf(fields)
      sink.event(lastId, name, data, to)
      if (closed) break
    }
    status.lastId = lastId
    status.head = head
    status.lagMs = Math.max(0, msOf(head) - msOf(lastId))
    return entries.length
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
            for (const { reject } of waiting) reject(closed ? closedError() : unavailable(`client status "${redis.status()}"`, err))
            throw err
          }
          if (closed) break
          lastId = head
          status.lastId = head
          sink.ready(lastId)
          const waiting = positioned
          positioned = []
          for (const { resolve } of waiting) resolve()
        }
        const taken = await readOnce()
        if (closed) break
        // Reading works; broadcasts and replays need the client passed in
        // too (its owner may have closed it while the reader reads on).
        if (redis.ready()) setState('ready')
        else failed(codeError('ERR_SSE_REDIS_UNAVAILABLE', `Redis is unavailable (client status "${redis.status()}"): broadcasts and replays fail until the client is ready again; reading goes on`))
        if (taken < READ_COUNT) {
          // Wait for what comes next; the next read takes it.
          await timed(
            reader.command(['XREAD', 'COUNT', '1', 'BLOCK', String(BLOCK_MS), 'STREAMS', stream, lastId]),
            BLOCK_MS + timeoutMs,
            'the reader (XREAD BLOCK)',
          )
        }
      } catch (err) {
        // Redis went away, hangs or the command failed: try again from the
        // last id seen, so nothing is skipped and nothing is read twice. A
        // connection that hangs is replaced.
        if (closed) break
        failed(readError(err))
        if (err instanceof TimeoutError) {
          reader.close()
          reader = redis.duplicate()
        }
        await pause(RETRY_MS)
      }
    }
  }

  function xadd(name, data, to, replay) {
    if (closed) return Promise.reject(closedError())
    if (!redis.ready()) return Promise.reject(unavailable(`client status "${redis.status()}"`))
    if (inFlight >= maxInFlight) {
      return Promise.reject(
        unavailable(`${inFlight} broadcasts are waiting for Redis to answer, the maxInFlight bound`),
      )
    }
    const args = ['XADD', stream, 'MAXLEN', '~', maxLen, '*', 'event', name, 'data', data]
    if (to !== null) args.push('to', to)
    if (!replay) args.push('replay', '0')
    const sent = writer.command(args)
    inFlight++
    status.inFlight = inFlight
    // The slot is held until Redis answers (or the connection drops), not
    // until the timeout: the client still holds the command until then.
    const settle = () => {
      inFlight--
      status.inFlight = inFlight
    }
    sent.then(settle, settle)
    return timed(sent, timeoutMs, 'XADD').then(
      (id) => String(id),
      (err) => {
        if (err instanceof TimeoutError) {
          const timeout = codeError(
            'ERR_SSE_REDIS_UNAVAILABLE',
            `Redis did not answer within ${timeoutMs} ms, the commandTimeout bound: the event may still be broadcast if Redis runs the command later`,
            err,
          )
          failed(timeout)
          throw timeout
        }
        throw unavailable(`the XADD failed: ${err?.message ?? err}`, err)
      },
    )
  }

  function stop() {
    if (closed) return
    closed = true
    const waiting = positioned
    positioned = []
    for (const { reject } of waiting) reject(closedError())
    reader.close()
    if (writer !== redis) writer.close()
    setState('closed')
  }

  read()

  return {
    publish(name, data, uuids, replay) {
      // The entry keeps the UUIDs comma-separated; a string with a comma is
      // no member's UUID, and kept as is it would name others.
      const to = uuids === undefined ? null : uuids.filter((uuid) => !uuid.includes(',')).sort().join(',')
      if (closed) return Promise.reject(closedError())
      if (!redis.ready()) return Promise.reject(unavailable(`client status "${redis.status()}"`))
      if (lastId !== null) return xadd(name, data, to, replay)
      // The position is being read: an XADD sent now could land before it
      // and never be read. Wait for it, in order.
      return new Promise((resolve, reject) => positioned.push({ resolve, reject })).then(() =>
        xadd(name, data, to, replay),
      )
    },

    // A replay page for `member`: on the first, the stream's XINFO STREAM,
    // the entries from `from` on and whether the entry at the reader's
    // position `reader` is there, atomically (the core checks that the
    // page reads the stream the reader reads); later, the entries from
    // `from` to `until`. `from` itself is included (the core skips it, and
    // checks on the first page that it is still there): an exclusive start
    // is an error in Redis for the largest id. Answered in a later task,
    // always, within the timeout.
    page(member, from, until, first, count, reader) {
      let answered = false
      const answer = (ok, info, readerPresent, flat) => {
        if (answered) return
        answered = true
        apply(binding.redisReplayed(channel, member, first, ok, info, readerPresent, flat))
      }
      const fail = () => answer(false, '', false, [])
      if (closed || !redis.ready()) {
        setImmediate(fail)
        return
      }
      const read = first
        ? redis.multi([
            ['XINFO', 'STREAM', stream],
            ['XRANGE', stream, from, '+', 'COUNT', String(count)],
            ['XRANGE', stream, reader, reader],
          ])
        : redis
            .command(['XRANGE', stream, from, until, 'COUNT', String(count)])
            .then((entries) => [[null, null], [null, entries], [null, null]])
      timed(read, timeoutMs, 'a replay page')
        .then((results) => {
          const [[infoErr, info], [rangeErr, entries], [readerErr, atReader]] = results
          const missing = missingKey(infoErr)
          if ((infoErr && !missing) || rangeErr || readerErr) throw infoErr || rangeErr || readerErr
          const flat = []
          for (const [id, fields] of entries ?? []) {
            const [name, data, to, replay] = fieldsOf(fields)
            flat.push(String(id), name, data, to, replay)
          }
          const readerPresent = Array.isArray(atReader) && atReader.length > 0
          return { info: first && !missing ? infoText(info) : '', readerPresent, flat }
        })
        .then(
          ({ info, readerPresent, flat }) => answer(true, info, readerPresent, flat),
          (err) => {
            if (err instanceof TimeoutError) failed(readError(err))
            fail()
          },
        )
    },

    status() {
      return { ...status }
    },

    close: stop,
  }
}

/** A transport's state (what `channel.redisStatus` returns). */
function status(transport) {
  return transport.status()
}

module.exports = { createTransport, status }
