// Sign-in in Chromium: a new person signs up, confirms with a code, signs in, posts, finds the post under
// their name, and signs out; a visitor reads the feed but is offered sign-in instead of the composer,
// messages and notifications. The user pool is the local one from bin/local-cognito (moto's server).
//
// Where moto is more lenient than Cognito, and what these tests therefore do not show:
// - moto accepts any confirmation code (ConfirmSignUp never checks it) and sends no email, so the code
//   typed here is made up; Cognito emails a code and refuses any other (CodeMismatchException).
// - moto does not implement RevokeToken, so sign-out here proves only that the browser forgets the
//   tokens; against Cognito, Amplify also revokes the refresh token.
// - moto signs every pool's tokens with one key pair; Cognito has keys per pool.
// - moto has no GetTokensFromRefreshToken, the call Amplify refreshes with, so no refresh happens here
//   (its tokens last an hour); src/auth.test.jsx checks the refresh against a Cognito stand-in.
// What moto checks as Cognito does, and these tests rely on: the password against the pool's policy at
// sign-up and against the account at sign-in (USER_PASSWORD_AUTH), an unconfirmed account cannot sign
// in, a taken username is refused, and the access token's claims (iss, client_id, token_use, username).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { signInThroughUi } from './support/session.js';
import { CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR, progress, startStack } from './support/stack.js';

let stack;
let browser;
const pageErrors = [];
// Meets Cognito's default password policy (8+ characters, upper and lower case, a digit, a symbol).
const PASSWORD = 'Crud-e2e-Pass-9';
const USERNAME = `e2e${Date.now().toString(36)}`;

async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  return page;
}

/** The access token's claims (its payload, not checked here: the backend verifies it). */
function claimsOf(authorization) {
  const [, token] = authorization.split(' ');
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

describe('Sign-in in Chromium', () => {
  before(async () => {
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    stack = await startStack();
    progress(`launching ${CHROMIUM}`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (stack) {
      progress('stopping the stack');
      await stack.stop();
    }
  });

  test('a visitor reads the feed and is offered sign-in for the rest', async () => {
    const page = await openPage();
    const apiCalls = [];
    page.on('request', (request) => {
      if (request.url().startsWith(stack.backend.url) && !request.url().includes('/api/telemetry/')) {
        apiCalls.push({ path: new URL(request.url()).pathname, authorization: request.headers().authorization });
      }
    });
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByText('Cloud is very fun!').waitFor();
    await page.getByText(/Sign in or create an account to post a crud/).waitFor();
    assert.equal(await page.getByLabel('New crud', { exact: true }).count(), 0, 'no composer while signed out');
    const nav = page.getByRole('navigation', { name: 'Main' });
    assert.deepEqual(await nav.getByRole('link').allInnerTexts(), ['Home', 'Search']);

    await page.goto(`${stack.frontendUrl}/messages`);
    await page.getByText(/Sign in or create an account to read and send messages/).waitFor();
    await page.goto(`${stack.frontendUrl}/notifications`);
    await page.getByText(/Sign in or create an account to see your notifications/).waitFor();
    assert.deepEqual(
      apiCalls.filter((call) => call.path !== '/api/activities/home'),
      [],
      'signed out, the app asks the backend for nothing but the feed',
    );
    assert.ok(apiCalls.every((call) => call.authorization === undefined), 'no Authorization while signed out');

    // The backend agrees: without a token, posting is refused.
    const refused = await fetch(`${stack.backend.url}/api/activities`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ message: 'anonymous', ttl: '1-hour' }),
    });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual((await refused.json()).errors, ['sign_in_required']);
    await page.context().close();
  });

  test('a new person signs up, confirms, signs in, posts under their name, and signs out', async () => {
    const page = await openPage();
    const toCognito = [];
    page.on('request', (request) => {
      if (request.url().startsWith(stack.cognito.endpoint)) toCognito.push(request.headers());
    });
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByRole('link', { name: 'Sign up' }).click();
    await page.waitForURL(`${stack.frontendUrl}/signup`);
    await page.getByLabel('Name', { exact: true }).fill('Ezri Dax');
    await page.getByLabel('Email', { exact: true }).fill(`${USERNAME}@cruddur.invalid`);
    await page.getByLabel('Username', { exact: true }).fill(USERNAME);
    await page.getByLabel('Password', { exact: true }).fill('short');
    await page.getByRole('button', { name: 'Sign up', exact: true }).click();
    await page.getByRole('alert').getByText(/That password is too weak/).waitFor();
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign up', exact: true }).click();

    await page.waitForURL(/\/confirm\?/);
    // Not confirmed yet: signing in leads back to the code.
    await page.goto(`${stack.frontendUrl}/signin`);
    await page.getByLabel('Username', { exact: true }).fill(USERNAME);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(/\/confirm\?/);
    assert.equal(await page.getByLabel('Username', { exact: true }).inputValue(), USERNAME);
    await page.getByLabel('Confirmation code', { exact: true }).fill('123456'); // moto takes any code: see the top of this file
    await page.getByRole('button', { name: 'Confirm', exact: true }).click();

    await page.waitForURL(/\/signin\?/);
    await page.getByText('Your account is confirmed: sign in with your password.').waitFor();
    assert.equal(await page.getByLabel('Username', { exact: true }).inputValue(), USERNAME);
    await page.getByLabel('Password', { exact: true }).fill(`${PASSWORD}x`);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('alert').getByText('Incorrect username or password.').waitFor();
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(`${stack.frontendUrl}/`);
    await page.locator('.session').getByText(`@${USERNAME}`).waitFor();

    const message = `My first crud, from Chromium at ${Date.now()}`;
    await page.getByLabel('New crud', { exact: true }).fill(message);
    const posted = page.waitForResponse((r) => r.url().endsWith('/api/activities') && r.request().method() === 'POST');
    await page.getByRole('button', { name: 'Crud', exact: true }).click();
    const response = await posted;
    assert.equal(response.status(), 200);
    const claims = claimsOf((await response.request().allHeaders()).authorization);
    assert.equal(claims.username, USERNAME);
    assert.equal(claims.token_use, 'access');
    assert.equal(claims.client_id, stack.cognito.client_id);
    const created = await response.json();
    assert.equal(created.handle, USERNAME, 'the post is under the signed-in user, whatever the body says');
    await page.locator('article').first().getByText(message).waitFor();
    assert.match((await page.locator('article').first().innerText()), new RegExp(`@${USERNAME}`));

    await page.locator('article').first().getByRole('link', { name: new RegExp(`@${USERNAME}`) }).click();
    await page.waitForURL(`${stack.frontendUrl}/@${USERNAME}`);
    await page.getByRole('heading', { name: new RegExp(`@${USERNAME}`) }).waitFor();
    await page.locator('article').getByText(message).waitFor();
    const mine = await page.locator('article').allInnerTexts();
    assert.equal(mine.length, 1, `one crud by @${USERNAME}: ${mine}`);
    assert.match(mine[0], new RegExp(message));

    // Messages need the user, and show once signed in.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Messages' }).click();
    await page.getByLabel('Message a handle').waitFor();

    await page.getByRole('link', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByText('You are signed out.').waitFor();
    await page.goto(`${stack.frontendUrl}/`);
    await page.getByText(message).waitFor();
    assert.equal(await page.getByLabel('New crud', { exact: true }).count(), 0, 'no composer after signing out');
    const stored = await page.evaluate(() => Object.keys(localStorage).filter((key) => key.includes('Token')));
    assert.deepEqual(stored, [], 'no token left in the browser');
    // The trace context goes to our backend only, never to Cognito.
    assert.ok(toCognito.length >= 4, `sign-up, confirm and sign-in went to Cognito: ${toCognito.length}`);
    assert.ok(toCognito.every((headers) => !('traceparent' in headers)), 'no traceparent sent to Cognito');
    await page.context().close();
  });

  test('a taken username is refused at sign-up', async () => {
    const page = await openPage();
    await page.goto(`${stack.frontendUrl}/signup`);
    await page.getByLabel('Name', { exact: true }).fill('Not Andrew');
    await page.getByLabel('Email', { exact: true }).fill('someone@cruddur.invalid');
    await page.getByLabel('Username', { exact: true }).fill('andrewbrown');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign up', exact: true }).click();
    await page.getByRole('alert').getByText('That username is taken: choose another.').waitFor();
    await page.context().close();
  });

  test('a seed user signs in with the development password and comes back to the page asked for', async () => {
    const page = await openPage();
    await page.goto(`${stack.frontendUrl}/messages/@bayko`);
    await page.locator('.signin-prompt').getByRole('link', { name: 'Sign in' }).click();
    await page.waitForURL(/\/signin\?next=/);
    await page.getByLabel('Username', { exact: true }).fill('andrewbrown');
    await page.getByLabel('Password', { exact: true }).fill(stack.cognito.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(`${stack.frontendUrl}/messages/@bayko`);
    await page.getByText('Have you tried the new X-Ray console?').waitFor();
    await page.context().close();
  });

  test('signing in again in a new tab of the same browser is not needed', async () => {
    const page = await openPage();
    await signInThroughUi(page, stack.frontendUrl, 'worf', stack.cognito.password);
    const second = await page.context().newPage();
    await second.goto(`${stack.frontendUrl}/notifications`);
    await second.locator('.session').getByText('@worf').waitFor();
    await second.getByRole('heading', { name: 'Notifications' }).waitFor();
    assert.equal(await second.getByText(/Sign in or create an account/).count(), 0);
    await page.context().close();
  });

  test('no page raised an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
