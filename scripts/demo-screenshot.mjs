// Takes docs/demo.png, the README's screenshot of `npm run demo`: starts the
// demo, opens it in headless Chromium, drops the connection once so the
// replay shows, and captures the page. `node scripts/demo-screenshot.mjs`.
import { fileURLToPath } from 'node:url'

import { launchChromium } from '../__test__/chromium.mjs'
import { runExample } from '../__test__/run-example.mjs'

const OUT = fileURLToPath(new URL('../docs/demo.png', import.meta.url))
const demo = await runExample('examples/demo.mjs', { env: { PORT: '0' }, portPattern: /listening on http:\/\/127\.0\.0\.1:(\d+)\// })
const browser = await launchChromium('screenshot')
try {
  const page = await browser.context.newPage()
  await page.setViewportSize({ width: 1100, height: 640 })
  await page.goto(`http://127.0.0.1:${demo.port}/`)
  await page.waitForFunction(() => document.querySelectorAll('#events li.live').length >= 3, null, { timeout: 15_000 })
  await page.fill('#text', 'hello from another tab')
  await page.click('#say button')
  await page.click('#drop')
  await page.waitForFunction(() => /^resumed from /.test(document.querySelector('#events li.note')?.textContent ?? ''), null, { timeout: 15_000 })
  await page.waitForTimeout(2500)
  await page.screenshot({ path: OUT })
  console.log(`wrote ${OUT}`)
} finally {
  await browser.close()
  await demo.stop()
}
