// Browser test of the dispatcher's web console, in headless Chromium driven by
// playwright-core. Started by tests/console.rs, which runs a real chain (key repository,
// update server, dispatcher, simulated devices) and passes:
//   CONSOLE_URL        https://127.0.0.1:PORT/
//   ADMIN_TOKEN_FILE   file holding the admin operator's token
//   VIEWER_TOKEN_FILE  file holding a viewer's token
//   RELEASE_ID         a held release the admin approves
//   HELD_ID            another held release the viewer must not be able to approve
//   DEVICES            number of devices the approved release goes to
//   SCREENSHOT_DIR     where the screenshots go
//   CHROMIUM           browser executable (default /usr/bin/chromium)
// Exit code 0 when every step passed; otherwise 1 with the failed step on stderr (and a
// screenshot failure.png).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = need('CONSOLE_URL');
const adminToken = readFileSync(need('ADMIN_TOKEN_FILE'), 'utf8').trim();
const viewerToken = readFileSync(need('VIEWER_TOKEN_FILE'), 'utf8').trim();
const releaseId = need('RELEASE_ID');
const heldId = need('HELD_ID');
const devices = Number(need('DEVICES'));
const shots = need('SCREENSHOT_DIR');
mkdirSync(shots, { recursive: true });

// Liveness bounds for waiting on the real chain (not performance assertions).
const STEP_MS = 30_000;
const ROLLOUT_MS = 180_000;

const problems = [];
let step = 'start';
const started = Date.now();
const say = (s) => {
  step = s;
  console.log(`[console.mjs +${((Date.now() - started) / 1000).toFixed(1)}s] ${s}`);
};
const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
});
const context = await browser.newContext({
  ignoreHTTPSErrors: true, // the dispatcher's certificate is from its local CA
  viewport: { width: 1280, height: 900 },
  deviceScaleFactor: 1,
});
const page = await context.newPage();
page.setDefaultTimeout(STEP_MS);
page.on('console', (m) => {
  if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

const shot = async (name) => {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  console.log(`  screenshot ${join(shots, `${name}.png`)}`);
};
const go = async (hash) => {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
};
const signIn = async (token, role) => {
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.fill('#token', token);
  await page.click('#signin-button');
  await page.locator('#who', { hasText: `(${role})` }).waitFor();
};

let code = 0;
try {
  say('open the console: security headers and the sign-in form');
  const resp = await page.goto(url);
  check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
  const h = resp.headers();
  check((h['content-security-policy'] || '').includes("script-src 'self'"), `CSP: ${h['content-security-policy']}`);
  check((h['content-security-policy'] || '').includes("frame-ancestors 'none'"), 'CSP frame-ancestors');
  check(h['x-content-type-options'] === 'nosniff', 'nosniff');
  await page.locator('#signin').waitFor({ state: 'visible' });
  await shot('01-sign-in');

  say('a wrong token is refused');
  await page.fill('#token', 'dop_not-a-token');
  await page.click('#signin-button');
  await page.locator('#signin-error', { hasText: 'not accepted' }).waitFor();
  check(await page.evaluate(() => sessionStorage.length === 0), 'a refused token is not kept');

  say('sign in as admin; the overview shows the fleet and the pending approvals');
  await signIn(adminToken, 'admin');
  await page.locator('.page.overview').waitFor();
  await page.locator('.stat', { hasText: 'pending approvals' }).locator('.stat-value', { hasText: '2' }).waitFor();
  const fleet = await page.locator('.stat', { hasText: 'devices' }).first().locator('.stat-value').textContent();
  check(Number(fleet) >= devices, `overview shows ${fleet} devices`);

  say('the approval queue shows the held release with its facts');
  await go('#/queue');
  const card = page.locator(`article.release[data-release="${releaseId}"]`);
  await card.waitFor();
  for (const text of ['acme-fw-2026', 'manufacturer', 'T2', 'CVE-2026-31337', 'high', 'firmware needs approval',
    'weekend-night', 'publisher ✓', 'approval: not yet']) {
    check((await card.textContent()).includes(text), `queue card shows ${text}`);
  }
  check(await page.locator(`article.release[data-release="${heldId}"]`).count() === 1, 'second held release listed');
  await shot('02-approval-queue');

  say('approving without a reason is refused by the form');
  await card.locator('button.approve').click();
  await card.locator('.form-msg', { hasText: 'A reason is required' }).waitFor();
  const stillPending = await page.evaluate(async (id) => {
    const r = await fetch(`/v1/releases/${id}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem('dispatcher-console-token')}` } });
    return (await r.json()).parts.some((p) => p.state.state === 'pending');
  }, releaseId);
  check(stillPending, 'the release is still pending');

  say('approve with a reason, ignoring the weekend window, rollout canary-then-all');
  const reason = 'CVE-2026-31337 fix, change request 4711 (console test)';
  await card.locator('textarea').fill(reason);
  await card.locator('input[type=checkbox]').check();
  await card.locator('select').selectOption('canary-then-all');
  await card.screenshot({ path: join(shots, '02-approve-form.png') });
  await card.locator('button.approve').click();
  await page.waitForURL(/#\/rollouts\/r\d+$/);
  const rollout = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  await page.locator('.flash', { hasText: 'approved' }).waitFor();

  say(`watch rollout ${rollout} reach all ${devices} devices`);
  await page.locator(`#status-${rollout}`, { hasText: 'completed' }).waitFor({ timeout: ROLLOUT_MS });
  const label = await page.locator(`#progress-label-${rollout}`).textContent();
  check(label.startsWith(`${devices} of ${devices} installed`), `progress says "${label}"`);
  await page.locator(`#chart-${rollout}[data-points="${devices}"]`).waitFor();
  check(await page.locator('tr[data-device] .badge', { hasText: 'installed' }).count() === devices, 'every device row installed');
  await shot('03-rollout');

  say('devices: inventory and one device\'s history');
  await go('#/devices');
  await page.locator('#devices tbody tr').first().waitFor();
  const plcs = page.locator('#devices tr[data-device^="plc-"] td.version');
  check(await plcs.count() === devices, `${await plcs.count()} PLC rows`);
  for (const v of await plcs.allTextContents()) check(v === '2.0.0', `PLC version ${v}`);
  await shot('04-devices');
  await page.locator('#devices a', { hasText: 'plc-0000' }).click();
  await page.locator('#history .badge', { hasText: 'installed' }).first().waitFor();
  await shot('05-device-history');

  say('the audit log holds the approval with its reason, and the chain verifies');
  await go('#/audit');
  await page.locator('#chain-status', { hasText: 'intact' }).waitFor();
  await page.selectOption('#audit-action', 'release.approve');
  const row = page.locator('#audit-rows tr[data-action="release.approve"]', { hasText: reason });
  await row.waitFor();
  check((await row.textContent()).includes('admin'), 'approval row names admin');
  check(await page.locator('#audit-rows tr').count() === 1, 'the filter leaves one record');
  await shot('06-audit');

  say('overview after the rollout');
  await go('#/overview');
  await page.locator(`#chart-${rollout}`).waitFor();
  await page.locator('.stat', { hasText: 'pending approvals' }).locator('.stat-value', { hasText: '1' }).waitFor();
  await shot('00-overview');

  say('sign out clears the token');
  await page.click('#signout');
  await page.locator('#signin').waitFor({ state: 'visible' });
  check(await page.evaluate(() => sessionStorage.length === 0), 'sessionStorage empty after sign-out');
  check(await page.locator('#view').evaluate((v) => v.childElementCount === 0), 'no data left on the page');

  say('a viewer sees the held release but cannot approve it');
  await signIn(viewerToken, 'viewer');
  await go('#/queue');
  const held = page.locator(`article.release[data-release="${heldId}"]`);
  await held.waitFor();
  check(await page.locator('button.approve, button.reject').count() === 0, 'no approve/reject buttons for a viewer');
  await held.locator('.role-note').waitFor();
  await shot('07-viewer-queue');
  await go(`#/rollouts/${rollout}`);
  await page.locator(`#status-${rollout}`).waitFor();
  check(await page.locator('button.pause, button.resume, button.abort').count() === 0, 'no rollout controls for a viewer');
  const status = await page.evaluate(async (id) => {
    const r = await fetch(`/v1/releases/${id}/approve`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${sessionStorage.getItem('dispatcher-console-token')}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({ reason: 'a viewer tries', ignore_window: true }),
    });
    return r.status;
  }, heldId);
  check(status === 403, `the API answered ${status} to a viewer's approval`);

  // Every console or page error is a failure: CSP violations (an inline style or script
  // slipped in) show up here. The one expected error is the viewer's 403 above and the
  // refused sign-in (401), which Chromium logs as failed resources.
  const unexpected = problems.filter((p) => !/status of (401|403)/.test(p));
  check(unexpected.length === 0, `browser errors:\n  ${unexpected.join('\n  ')}`);
  say('all steps passed');
} catch (e) {
  code = 1;
  console.error(`FAILED at step "${step}": ${e.message}`);
  if (problems.length) console.error(`browser errors:\n  ${problems.join('\n  ')}`);
  try {
    await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true });
    console.error(`screenshot of the failure: ${join(shots, 'failure.png')}`);
    console.error(`page text:\n${(await page.locator('body').innerText()).slice(0, 4000)}`);
  } catch (_) {
    // the page is gone
  }
} finally {
  await browser.close();
}
process.exit(code);
