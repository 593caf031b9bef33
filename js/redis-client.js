'use strict'
// One interface over the two Redis clients a channel accepts, so that
// redis.js speaks raw commands only:
//
// - ioredis (`call`, `status`): commands with `call(...args)`, a MULTI with
//   `multi()` + `call()` + `exec()` (which answers `[[err, reply], ...]`),
//   duplicates that connect by themselves;
// - node-redis v5+ (`sendCommand`, `isReady`, `isOpen`): commands with
//   `sendCommand(args)`, a MULTI with `multi()` + `addCommand()` + `exec()`
//   (which throws a MultiErrorReply carrying `replies` when a command
//   failed), duplicates that need `connect()` and crash the process on an
//   `'error'` event nobody listens to.
//
// Replies stay as the client gives them (RESP2 arrays; RESP3 objects or
// Maps); redis.js reads every shape.

/** 'ioredis' (it has `call`; it also has a `sendCommand` of its own) or 'node-redis'. */
function kindOf(client) {
  return typeof client.call === 'function' ? 'ioredis' : 'node-redis'
}

/**
 * Wraps `client`. `owned` marks a duplicate made here: its errors are
 * handled (the client reconnects; failed commands report them) and
 * `close()` ends it.
 */
function adapt(client, owned = false) {
  const kind = kindOf(client)
  const ioredis = kind === 'ioredis'
  let closed = false
  return {
    kind,
    client,
    /** A raw command, e.g. `['XADD', key, '*', ...]`: a promise of its reply. */
    command(args) {
      if (ioredis) return client.call(...args)
      return client.sendCommand(args.map(String))
    },
    /** A MULTI of raw commands: a promise of `[[err, reply], ...]`. */
    multi(commands) {
      const multi = client.multi()
      if (ioredis) {
        for (const args of commands) multi.call(...args)
        return multi.exec().then((results) => {
          if (!Array.isArray(results)) throw new Error('the transaction was aborted')
          return results
        })
      }
      for (const args of commands) multi.addCommand(args.map(String))
      const pairs = (replies) => replies.map((reply) => (reply instanceof Error ? [reply, null] : [null, reply]))
      return multi.exec().then(pairs, (err) => {
        if (err !== null && typeof err === 'object' && Array.isArray(err.replies)) return pairs(err.replies)
        throw err
      })
    },
    /** Whether commands are answered now (not queued for a reconnect). */
    ready() {
      if (closed) return false
      return ioredis ? client.status === 'ready' : client.isReady === true
    },
    /** The client's own word for its state, for error messages. */
    status() {
      if (ioredis) return String(client.status)
      return client.isReady ? 'ready' : client.isOpen ? 'connecting' : 'closed'
    },
    /** A connection of its own (for blocking reads), connecting already. */
    duplicate() {
      const copy = client.duplicate()
      // Reconnects are the client's job; failed commands say what failed.
      copy.on('error', () => {})
      if (!ioredis) copy.connect().catch(() => {})
      return adapt(copy, true)
    },
    /**
     * The connection broadcasts are sent on. ioredis sends a command again
     * after a reconnect when its reply was lost (autoResendUnfulfilledCommands):
     * an XADD that Redis had run would be added twice. Broadcasts go on a
     * duplicate that does not. node-redis fails such commands instead: its
     * client is used as it is.
     */
    writer() {
      if (!ioredis) return this
      const copy = client.duplicate({ autoResendUnfulfilledCommands: false })
      copy.on('error', () => {})
      return adapt(copy, true)
    },
    /** Ends a duplicate made here (pending commands fail). */
    close() {
      if (!owned || closed) return
      closed = true
      try {
        if (ioredis) client.disconnect()
        else if (typeof client.destroy === 'function') client.destroy()
        else client.disconnect().catch(() => {})
      } catch {
        // Already closed.
      }
    },
  }
}

module.exports = { adapt, kindOf }
