'use strict'
// Reading an event object: `{ eventName, eventPayload }` or
// `{ eventName, data }` with an optional `id`, by the rules `send()` and
// `broadcast()` share. Properties are read in one fixed order (eventName,
// id, eventPayload, data), each once; `data` comes last, so no user code
// runs between reading it and handing it to the binding, which copies it.

const { wrongType, typeError, stringify } = require('./errors.js')

/**
 * The event's name, id and body (the JSON text, or the data as given),
 * checked for types; the binding checks the field rules as it copies them.
 */
function readEvent(call, event) {
  if (typeof event !== 'object' || event === null) {
    throw wrongType('ERR_SSE_INVALID_EVENT', `${call}: event`, 'an object { eventName, eventPayload }', event)
  }
  const name = event.eventName
  if (typeof name !== 'string') {
    throw wrongType('ERR_SSE_INVALID_EVENT_NAME', `${call}: event.eventName`, 'a string', name)
  }
  const id = event.id
  if (id !== undefined && typeof id !== 'string') {
    throw wrongType('ERR_SSE_INVALID_EVENT_ID', `${call}: event.id`, 'a string', id)
  }
  const payload = event.eventPayload
  const data = event.data
  let body
  if (data === undefined) {
    body = stringify(call, payload)
  } else if (payload !== undefined) {
    throw typeError(
      'ERR_SSE_INVALID_DATA',
      `${call}: give either event.eventPayload (sent as JSON) or event.data (sent as it is), not both`,
    )
  } else {
    body = data
  }
  return { name, id, body }
}

module.exports = { readEvent }
