'use strict'
// The errors of the JavaScript front: a TypeError with a stable `code` for
// bad input, a plain Error with a code for state (a closed channel). The
// binding builds the ones about field rules (CR, LF, NUL, lone
// surrogates) the same way.

/** What `typeof` would print, with `null` as "null". */
function typeName(value) {
  return value === null ? 'null' : typeof value
}

function typeError(code, message) {
  const err = new TypeError(message)
  err.code = code
  return err
}

function stateError(code, message) {
  const err = new Error(message)
  err.code = code
  return err
}

/** "`subject` must be `expected` (got <typeof>)". */
function wrongType(code, subject, expected, value) {
  return typeError(code, `${subject} must be ${expected} (got ${typeName(value)})`)
}

/**
 * `JSON.stringify(payload)`, or a TypeError (ERR_SSE_INVALID_PAYLOAD) when
 * it throws or has no JSON text to give (undefined, functions, symbols).
 */
function stringify(call, payload) {
  let text
  try {
    text = JSON.stringify(payload)
  } catch (cause) {
    const reason = cause !== null && typeof cause === 'object' ? cause.message : String(cause)
    throw typeError(
      'ERR_SSE_INVALID_PAYLOAD',
      `${call}: event.eventPayload cannot be serialised by JSON.stringify: ${reason}`,
    )
  }
  if (typeof text !== 'string') {
    throw typeError(
      'ERR_SSE_INVALID_PAYLOAD',
      `${call}: event.eventPayload must be serialisable by JSON.stringify, which returned undefined (got ${typeName(payload)})`,
    )
  }
  return text
}

module.exports = { typeName, typeError, stateError, wrongType, stringify }
