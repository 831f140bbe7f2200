// Screenshots of the review workflow for docs/review.md, taken with headless Chromium.
//
//   npm install playwright-core        (anywhere; not a dependency of hiu)
//   hiu-data review launch NAME --port 5151 &
//   NODE_PATH=$(npm root) node docs/tools/review_screenshots.cjs http://127.0.0.1:5151 docs/images
//
// It dismisses the App's promotion popup, shows the sample tags on the grid, opens the least
// confident image, and tags its labels `rejected` through the App's tag menu: a real review
// action, which `hiu-data review pull` then reads back. Start from a freshly launched App
// (the App session remembers an open sample).
const { chromium } = require('playwright-core');

const [url, outDir] = process.argv.slice(2);
const settle = (page, ms = 2500) => page.waitForTimeout(ms);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('[data-cy="looker"]', { timeout: 60000 });
  await settle(page);
  await page.keyboard.press('Escape'); // a sample left open by an earlier visit (the session keeps it)
  await settle(page, 1000);
  // The App's promotion popup covers part of the grid; it is not always shown.
  await page.getByText('Dismiss', { exact: true }).first().click({ timeout: 5000 }).catch(() => {});
  await page.click('[data-cy="checkbox-tags"]');
  await settle(page);
  await page.screenshot({ path: `${outDir}/review-grid.jpg`, quality: 85 });

  await page.locator('[data-cy="looker"]').first().click();
  await settle(page, 4000);
  await page.screenshot({ path: `${outDir}/review-sample.jpg`, quality: 85 });

  await page.locator('[data-cy="action-tag-sample-labels"]').last().click();
  await settle(page, 1500);
  await page.keyboard.type('rejected');
  await page.mouse.move(600, 500); // away from the tag button, whose tooltip would cover the menu
  await settle(page, 1500);
  await page.screenshot({ path: `${outDir}/review-tag.jpg`, quality: 85 });
  await page.keyboard.press('Enter');
  await settle(page, 1500);
  await page.getByText('Apply', { exact: true }).first().click({ timeout: 5000 }).catch(() => {});
  await settle(page, 3000);
  await browser.close();
})().catch((err) => { console.error(err); process.exit(1); });
