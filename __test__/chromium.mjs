// Headless Chromium for the browser tests: Debian's `chromium` (or
// CHROMIUM_PATH), driven by playwright-core, in a fresh profile. The flags
// keep it off the network this machine does not have (background
// networking, component updates, sync, QUIC).
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { chromium } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/**
 * Starts Chromium with a new profile directory; `close()` stops it and
 * removes the profile. Fails with what to install when there is none.
 */
export async function launchChromium(name) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install the Debian package (apt-get install -y chromium) ` +
        'or set CHROMIUM_PATH; the browser test needs a real Chromium.',
    )
  }
  const profileDir = await mkdtemp(join(tmpdir(), `native-sse-chromium-${name}-`))
  let context
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: 30000,
    })
  } catch (err) {
    await rm(profileDir, { recursive: true, force: true })
    throw err
  }
  return {
    context,
    async close() {
      try {
        await context.close()
      } finally {
        await rm(profileDir, { recursive: true, force: true })
      }
    },
  }
}
