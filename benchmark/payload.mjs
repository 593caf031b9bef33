// Event payloads of a given JSON size: { i: <sequence number>, p: "xxx..." }.
const padding = new Map()

/** A payload whose JSON text is about `bytes` long and carries `seq`. */
export function makePayload(seq, bytes) {
  let pad = padding.get(bytes)
  if (pad === undefined) {
    pad = 'x'.repeat(Math.max(0, bytes - 20))
    padding.set(bytes, pad)
  }
  return { i: seq, p: pad }
}

/** The start of the data line for `seq`, which the client checks. */
export function dataPrefix(seq) {
  return `{"i":${seq},`
}
