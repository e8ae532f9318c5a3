// Browser tests: Debian's Chromium drives the built frontend against the real backend, signed in as the
// seed user andrewbrown through the local Cognito user pool (sign-up and sign-out: signin.e2e.test.js).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { signInThroughUi } from './support/session.js';
import { CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR, progress, startStack, waitFor } from './support/stack.js';

let stack;
let browser;
let page;
const pageErrors = [];

async function openPage(viewport = { width: 1100, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const opened = await context.newPage();
  opened.setDefaultTimeout(15000);
  opened.on('pageerror', (error) => pageErrors.push(error.message));
  return opened;
}

async function articles(target = page) {
  return target.locator('article').allInnerTexts();
}

describe('Cruddur in Chromium', () => {
  before(async () => {
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    stack = await startStack();
    progress(`launching ${CHROMIUM}`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await openPage();
    await signInThroughUi(page, stack.frontendUrl, 'andrewbrown', stack.cognito.password);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (stack) {
      progress('stopping the stack');
      await stack.stop();
    }
  });

  test('home shows the seeded feed, newest first', async () => {
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByText('Cloud is very fun!').waitFor();
    const texts = await articles();
    assert.ok(texts.length >= 5, `expected the 5 seeded cruds, saw ${texts.length}`);
    assert.match(texts[0], /Cloud is very fun!/);
    assert.match(texts.at(-1), /Today is a good day to deploy\./);
    await page.screenshot({ path: path.join(OUTPUT_DIR, 'home.png'), fullPage: true });
    progress(`screenshot: ${path.join(OUTPUT_DIR, 'home.png')}`);
  });

  test('a crud posted through the form comes first, and stays first after a reload', async () => {
    const message = `Posted from Chromium at ${Date.now()}`;
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByText('Cloud is very fun!').waitFor();
    await page.getByLabel('New crud', { exact: true }).fill(message);
    await page.getByLabel('Expires in').selectOption('1-hour');
    const posted = page.waitForResponse((r) => r.url().endsWith('/api/activities') && r.request().method() === 'POST');
    await page.getByRole('button', { name: 'Crud', exact: true }).click();
    assert.equal((await posted).status(), 200);
    await page.locator('article').first().getByText(message).waitFor();
    assert.equal(await page.getByLabel('New crud', { exact: true }).inputValue(), '');

    await page.reload();
    await page.locator('article').first().getByText(message).waitFor();
    assert.match((await articles())[0], /Andrew Brown @andrewbrown/);
  });

  test('a 281-character crud is refused before it is sent', async () => {
    const posts = [];
    const listener = (request) => request.method() === 'POST' && posts.push(request.url());
    page.on('request', listener);
    await page.goto(`${stack.frontendUrl}/`);
    const box = page.getByLabel('New crud', { exact: true });
    const button = page.getByRole('button', { name: 'Crud', exact: true });

    await box.fill('x'.repeat(280));
    await page.getByText('0 characters left').waitFor();
    assert.equal(await button.isEnabled(), true, '280 characters are allowed');

    await box.fill('x'.repeat(281));
    await page.getByText('1 over the 280-character limit').waitFor();
    await page.getByText('Too long: shorten it to 280 characters or fewer.').waitFor();
    assert.equal(await button.isDisabled(), true, 'the Crud button is off at 281 characters');
    await box.press('Control+Enter');
    await box.evaluate((element) => element.form.requestSubmit());
    page.off('request', listener);
    assert.deepEqual(posts.filter((url) => !url.includes('/api/telemetry/')), []);
  });

  test("a user's feed opens from the home feed; an unknown handle is explained", async () => {
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByRole('link', { name: 'Worf @worf' }).first().click();
    await page.waitForURL(`${stack.frontendUrl}/@worf`);
    await page.getByRole('heading', { name: 'Worf @worf' }).waitFor();
    await page.getByText('Today is a good day to deploy.').waitFor();
    const texts = await articles();
    assert.ok(texts.every((text) => text.includes('@worf')), `only Worf's cruds: ${texts}`);

    await page.goto(`${stack.frontendUrl}/@nobody`);
    await page.getByRole('alert').getByText('There is no user @nobody.').waitFor();
  });

  test("a crud's page shows its replies and takes a reply", async () => {
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByRole('link', { name: "Replies to Andrew Brown's crud" }).last().click();
    await page.getByText('This post has no honor!').waitFor();
    const reply = `A reply from Chromium ${Date.now()}`;
    await page.getByLabel('Reply to @andrewbrown', { exact: true }).fill(reply);
    await page.getByRole('button', { name: 'Reply', exact: true }).click();
    await page.getByRole('region', { name: 'Replies' }).getByText(reply).waitFor();
  });

  test('a conversation opens from the message groups and sends a message', async () => {
    await page.goto(`${stack.frontendUrl}/messages`);
    await page.getByRole('link', { name: /Andrew Bayko/ }).click();
    await page.waitForURL(`${stack.frontendUrl}/messages/@bayko`);
    await page.getByText('Have you tried the new X-Ray console?').waitFor();
    const message = `Sent from Chromium at ${Date.now()}`;
    await page.getByLabel('Message @bayko', { exact: true }).fill(message);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.locator('.messages').getByText(message).waitFor();

    await page.reload();
    await page.locator('.messages').getByText(message).waitFor();
    await page.goto(`${stack.frontendUrl}/messages`);
    await page.getByText(message).waitFor();
  });

  test('home is usable at phone width', async () => {
    const phone = await openPage({ width: 375, height: 740 });
    await signInThroughUi(phone, stack.frontendUrl, 'andrewbrown', stack.cognito.password);
    await phone.getByText('Cloud is very fun!').waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at 375px`);
    assert.equal(await phone.getByRole('button', { name: 'Crud', exact: true }).isVisible(), true);
    await phone.screenshot({ path: path.join(OUTPUT_DIR, 'home-phone.png'), fullPage: true });
    await phone.context().close();
  });

  test("the backend's request span is a child of the browser's fetch span, signed in", async () => {
    const traced = await openPage();
    await signInThroughUi(traced, stack.frontendUrl, 'andrewbrown', stack.cognito.password);
    const relay = [];
    const isRelay = (request) => request.url().includes('/api/telemetry/v1/traces');
    traced.on('requestfinished', async (request) => {
      if (isRelay(request)) relay.push(`${request.method()} ${(await request.response())?.status()}`);
    });
    traced.on('requestfailed', (request) => {
      if (isRelay(request)) relay.push(`${request.method()} failed: ${request.failure()?.errorText}`);
    });
    // The page sign-in lands on fetches the feed too: let that finish, or the navigation below cancels
    // it and the waiter catches a request that never gets a response.
    await traced.waitForLoadState('networkidle');
    const homeRequest = traced.waitForRequest((r) => r.url().endsWith('/api/activities/home'));
    const homeResponse = homeRequest.then((request) => request.response()); // this request's, not an earlier one's
    await traced.goto(`${stack.frontendUrl}/`);
    const requestHeaders = await (await homeRequest).allHeaders();
    assert.match(requestHeaders.authorization ?? '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the fetch carries the access token');
    const traceparent = requestHeaders.traceparent;
    assert.match(traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the API fetch carries a sampled traceparent');
    const [, traceId, browserSpanId] = traceparent.split('-');
    // X-Ray-compatible: the first 8 hex digits are the Unix time the browser started the trace.
    const startedAt = parseInt(traceId.slice(0, 8), 16);
    assert.ok(Math.abs(startedAt - Date.now() / 1000) < 60, `trace id ${traceId} is not dated now`);
    const xrayTraceId = `1-${traceId.slice(0, 8)}-${traceId.slice(8)}`;
    const responseHeaders = (await homeResponse).headers();
    await traced.getByText('Cloud is very fun!').waitFor();

    const spans = stack.receiver.spans;
    const serviceOf = (span) => span.resource?.['service.name'];
    const find = () => ({
      browserSpan: spans.find(
        (s) => serviceOf(s) === 'frontend-react-js' && s.trace_id === traceId && s.span_id === browserSpanId,
      ),
      backendSpan: spans.find(
        (s) => serviceOf(s) === 'backend-flask' && s.trace_id === traceId && s.parent_span_id === browserSpanId,
      ),
    });
    try {
      // The browser exports every 2 s; the backend's batch processor every 5 s.
      await waitFor('a browser span and its backend child in the OTLP receiver', () => {
        const pair = find();
        return pair.browserSpan && pair.backendSpan;
      }, { timeoutMs: 30000, intervalMs: 250 });
    } catch (error) {
      const { browserSpan, backendSpan } = find();
      const browserSpans = spans.filter((s) => serviceOf(s) === 'frontend-react-js').length;
      error.message += [
        '',
        `  backend span continuing the browser's traceparent ${traceparent}: ${backendSpan ? backendSpan.name : 'none'}`,
        `  browser span ${browserSpanId} received: ${browserSpan ? 'yes' : 'no'} (${browserSpans} browser spans of ${spans.length})`,
        `  the browser's requests to the relay /api/telemetry/v1/traces: [${relay.join(', ')}]`,
      ].join('\n');
      throw error;
    } finally {
      await traced.context().close();
    }
    const { browserSpan, backendSpan } = find();
    assert.equal(backendSpan.kind, 'SERVER');
    assert.equal(backendSpan.name, 'GET /api/activities/home');
    // ...down to the database: the query that read the feed is in the same trace, under the request.
    const ancestry = (span) => {
      const chain = [];
      for (let s = span; s; s = spans.find((p) => p.trace_id === traceId && p.span_id === s.parent_span_id)) chain.push(s);
      return chain;
    };
    const dbSpan = spans.find((s) => s.trace_id === traceId && s.attributes?.['db.system']);
    assert.ok(dbSpan, `a database span in trace ${traceId}`);
    assert.ok(ancestry(dbSpan).includes(backendSpan), 'the database span descends from the request span');
    // The signed-in reader is named by the token's `sub`; the token itself is in no span.
    const claims = JSON.parse(Buffer.from(requestHeaders.authorization.split('.')[1], 'base64url').toString('utf8'));
    assert.equal(backendSpan.attributes['enduser.id'], claims.sub);
    const token = requestHeaders.authorization.slice('Bearer '.length);
    assert.ok(!JSON.stringify(spans).includes(token.split('.')[2]), 'no span holds the access token');
    assert.equal(browserSpan.kind, 'CLIENT');
    // The relay forwards the browser's resource as it is, and the page load (INTERNAL spans) too.
    assert.deepEqual(browserSpan.resource, { 'service.name': 'frontend-react-js' });
    const isPageLoad = (s) => serviceOf(s) === 'frontend-react-js' && s.name === 'documentLoad' && s.kind === 'INTERNAL';
    await waitFor('the page-load span in the OTLP receiver', () => spans.find(isPageLoad), {
      timeoutMs: 15000,
      intervalMs: 250,
    });
    assert.ok(relay.length > 0 && relay.every((line) => /^POST 2\d\d$|^OPTIONS 2\d\d$/.test(line)), `relay: ${relay}`);

    // The same request in X-Ray: the browser decided "sampled", so the backend's segment is sent, under
    // the browser's trace id (valid for X-Ray: dated now), as a child of the browser's span.
    const segment = await waitFor('the X-Ray segment of the browser-started request', () =>
      stack.xray.documents.find((d) => d.trace_id === xrayTraceId && !d.type),
    );
    assert.equal(segment.id, backendSpan.span_id);
    assert.equal(segment.parent_id, browserSpanId);
    assert.equal(segment.http.response.status, 200);
    assert.equal(segment.user, 'andrewbrown');
    // The response headers carry the decision; the access-log line carries both ids.
    assert.equal(responseHeaders.traceresponse, `00-${traceId}-${backendSpan.span_id}-01`);
    assert.equal(responseHeaders['x-amzn-trace-id'], `Root=${xrayTraceId};Sampled=1`);
    const access = stack.backend.accessLog.filter((r) => r.trace_id === traceId && r.path === '/api/activities/home');
    assert.deepEqual(access.map((r) => [r.status, r.xray_trace_id, r.user]), [[200, xrayTraceId, 'andrewbrown']]);
  });

  test('X-Ray got segments and not one document it would refuse', () => {
    assert.ok(stack.xray.documents.length > 0, 'segments reached the X-Ray listener');
    assert.deepEqual(stack.xray.rejected, []);
  });

  test('no page raised an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
