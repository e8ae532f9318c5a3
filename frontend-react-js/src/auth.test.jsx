// Sign-in through Amplify against a Cognito stand-in on loopback, and the API client against a backend
// stand-in: the token that reaches the backend is the one Cognito issued, refreshed in time.
import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryRouter } from 'react-router-dom';
import { ApiContext, createApi } from './api.js';
import App from './App.jsx';
import { createAuth, describeAuthError, REFRESH_MARGIN_MS } from './auth.js';
import { SessionProvider } from './session.jsx';
import { startCognitoStandIn } from './test/cognitoStandIn.js';
import { activity, startStandIn } from './test/standIn.js';

const PASSWORD = 'Dev-password-1';
// No pause between keystrokes: these tests type whole forms.
const user = userEvent.setup({ delay: null });
let cognito;
let backend;

afterEach(async () => {
  vi.useRealTimers();
  localStorage.clear();
  await cognito?.close();
  await backend?.close();
  cognito = null;
  backend = null;
});

async function startPool(options) {
  cognito = await startCognitoStandIn({ users: [{ username: 'andrewbrown', password: PASSWORD }], ...options });
  return createAuth({ userPoolId: cognito.userPoolId, clientId: cognito.clientId, endpoint: cognito.endpoint });
}

async function startBackend() {
  backend = await startStandIn({
    'GET /api/activities/home': () => [200, [activity()]],
    'GET /api/message_groups': () => [200, []],
    'GET /api/activities/notifications': () => [200, []],
    'POST /api/activities': (body) => [200, activity({ message: body.message })],
  });
  return backend;
}

const authorizationOf = (request) => request.headers.authorization;

describe('API calls and the access token', () => {
  it('carry no Authorization while signed out, then the access token Cognito issued', async () => {
    const auth = await startPool();
    await startBackend();
    const api = createApi(backend.url, undefined, { accessToken: auth.accessToken });

    await api.homeActivities();
    expect(authorizationOf(backend.requests[0])).toBeUndefined();

    await expect(auth.signIn('andrewbrown', PASSWORD)).resolves.toEqual({ signedIn: true });
    await api.createActivity({ message: 'Hello', ttl: '1-hour' });
    expect(cognito.issued).toHaveLength(1);
    expect(authorizationOf(backend.requests[1])).toBe(`Bearer ${cognito.issued[0]}`);
    expect(await auth.currentUser()).toMatchObject({ username: 'andrewbrown' });

    await auth.signOut();
    await api.homeActivities();
    expect(authorizationOf(backend.requests[2])).toBeUndefined();
    expect(cognito.actions()).toEqual(['InitiateAuth', 'RevokeToken']);
  });

  it('a wrong password or an unknown user is one sentence, and nobody is signed in', async () => {
    const auth = await startPool();
    await expect(auth.signIn('andrewbrown', 'wrong')).rejects.toSatisfy(
      (error) => describeAuthError(error) === 'Incorrect username or password.',
    );
    await expect(auth.signIn('nobody', PASSWORD)).rejects.toSatisfy(
      (error) => describeAuthError(error) === 'Incorrect username or password.',
    );
    expect(await auth.accessToken()).toBeNull();
  });
});

describe("the backend's refusals", () => {
  it('are sentences: sign in, sign in again, try again later', async () => {
    backend = await startStandIn({
      'POST /api/activities': () => [401, { errors: ['sign_in_required'] }],
      'GET /api/message_groups': () => [401, { errors: ['invalid_token'] }],
      'GET /api/activities/notifications': () => [503, { errors: ['auth_unavailable'] }],
    });
    const api = createApi(backend.url);
    await expect(api.createActivity({ message: 'x', ttl: '1-hour' })).rejects.toMatchObject({
      status: 401,
      codes: ['sign_in_required'],
      message: 'Sign in to do that.',
    });
    await expect(api.messageGroups()).rejects.toMatchObject({
      status: 401,
      message: 'Your sign-in is no longer valid: sign out and sign in again.',
    });
    await expect(api.notifications()).rejects.toMatchObject({
      status: 503,
      message: 'Sign-in is unavailable right now: please try again in a moment.',
    });
  });
});

describe('refreshing the access token', { timeout: 20_000 }, () => {
  it('sends a token with more than the margin left as it is, without asking Cognito', async () => {
    const auth = await startPool({ accessTokenSeconds: 3600 });
    await auth.signIn('andrewbrown', PASSWORD);
    expect(await auth.accessToken()).toBe(cognito.issued[0]);
    expect(cognito.actions()).toEqual(['InitiateAuth']);
  });

  it('refreshes a token once less than the margin is left, before it is sent', async () => {
    const margin = REFRESH_MARGIN_MS / 1000;
    const auth = await startPool({ accessTokenSeconds: margin + 30 });
    await startBackend();
    const api = createApi(backend.url, undefined, { accessToken: auth.accessToken });
    await auth.signIn('andrewbrown', PASSWORD);
    cognito.accessTokenSeconds = 3600; // what the refresh hands out

    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 25_000 });
    await api.homeActivities();
    expect(cognito.actions()).toEqual(['InitiateAuth']);
    expect(authorizationOf(backend.requests[0])).toBe(`Bearer ${cognito.issued[0]}`);

    vi.setSystemTime(Date.now() + 10_000); // 25 s left of the first token: inside the margin
    await api.homeActivities();
    expect(cognito.actions()).toEqual(['InitiateAuth', 'GetTokensFromRefreshToken']);
    expect(cognito.issued).toHaveLength(2);
    expect(authorizationOf(backend.requests[1])).toBe(`Bearer ${cognito.issued[1]}`);

    await api.homeActivities(); // the new token lasts an hour: no second refresh
    expect(cognito.actions()).toEqual(['InitiateAuth', 'GetTokensFromRefreshToken']);
    expect(authorizationOf(backend.requests[2])).toBe(`Bearer ${cognito.issued[1]}`);
  });

  it('sends no token when the refresh is refused, so the backend can say sign in again', async () => {
    const auth = await startPool({ accessTokenSeconds: 10 });
    await startBackend();
    const api = createApi(backend.url, undefined, { accessToken: auth.accessToken });
    await auth.signIn('andrewbrown', PASSWORD);
    await cognito.close(); // Cognito unreachable
    cognito = null;
    await api.homeActivities();
    expect(authorizationOf(backend.requests[0])).toBeUndefined();
  });
});

function renderApp(path, auth) {
  const api = createApi(backend.url, undefined, { accessToken: auth.accessToken });
  return render(
    <SessionProvider auth={auth}>
      <ApiContext.Provider value={api}>
        <MemoryRouter initialEntries={[path]}>
          <App />
        </MemoryRouter>
      </ApiContext.Provider>
    </SessionProvider>,
  );
}

const main = () => within(screen.getByRole('navigation', { name: 'Main' }));

describe('what the UI offers', { timeout: 20_000 }, () => {
  it('signed out: the feed, but no composer, messages or notifications, and nothing fetched for them', async () => {
    const auth = await startPool();
    await startBackend();
    renderApp('/', auth);
    await screen.findByText('Cloud is fun!');
    expect(await screen.findByText(/to post a crud/)).toBeInTheDocument();
    expect(screen.queryByLabelText('New crud')).not.toBeInTheDocument();
    expect(main().queryByRole('link', { name: 'Messages' })).not.toBeInTheDocument();
    expect(main().queryByRole('link', { name: 'Notifications' })).not.toBeInTheDocument();
    const sidebar = within(screen.getByRole('navigation', { name: 'Account' }));
    expect(sidebar.getByRole('link', { name: 'Sign up' })).toBeInTheDocument();

    await user.click(sidebar.getByRole('link', { name: 'Sign in' }));
    await user.type(screen.getByLabelText('Username'), 'andrewbrown');
    await user.type(screen.getByLabelText('Password'), PASSWORD);
    await user.click(screen.getByRole('button', { name: 'Sign in' }));

    expect(await screen.findByLabelText('New crud')).toBeInTheDocument();
    expect(main().getByRole('link', { name: 'Messages' })).toBeInTheDocument();
    expect(screen.getByText('@andrewbrown')).toBeInTheDocument();
    await user.type(screen.getByLabelText('New crud'), 'Signed in');
    await user.click(screen.getByRole('button', { name: 'Crud' }));
    await waitFor(() => expect(backend.requests.filter((r) => r.method === 'POST')).toHaveLength(1));
    const post = backend.requests.find((r) => r.method === 'POST');
    expect(authorizationOf(post)).toBe(`Bearer ${cognito.issued[0]}`);
    expect(backend.requests.some((r) => r.path === '/api/message_groups')).toBe(false);
  });

  it('signed out, the messages page asks for sign-in instead of fetching', async () => {
    const auth = await startPool();
    await startBackend();
    renderApp('/messages', auth);
    expect(await screen.findByText(/to read and send messages/)).toBeInTheDocument();
    expect(screen.queryByLabelText('Message a handle')).not.toBeInTheDocument();
    expect(backend.requests).toEqual([]);
  });

  it('signed in, the messages page loads with the token', async () => {
    const auth = await startPool();
    await startBackend();
    await auth.signIn('andrewbrown', PASSWORD);
    renderApp('/messages', auth);
    expect(await screen.findByLabelText('Message a handle')).toBeInTheDocument();
    await waitFor(() => expect(backend.requests.map((r) => r.path)).toContain('/api/message_groups'));
    expect(authorizationOf(backend.requests.find((r) => r.path === '/api/message_groups'))).toBe(
      `Bearer ${cognito.issued[0]}`,
    );
  });

  it('sign-up asks for the code; a wrong code is refused; the right one leads to sign-in', async () => {
    const auth = await startPool();
    await startBackend();
    renderApp('/signup', auth);
    await user.type(await screen.findByLabelText('Name'), 'Ezri Dax');
    await user.type(screen.getByLabelText('Email'), 'ezri@cruddur.invalid');
    await user.type(screen.getByLabelText('Username'), 'ezri');
    await user.type(screen.getByLabelText('Password'), PASSWORD);
    await user.click(screen.getByRole('button', { name: 'Sign up' }));

    expect(await screen.findByText('Enter the code sent to e***@c***.')).toBeInTheDocument();
    expect(screen.getByLabelText('Username')).toHaveValue('ezri');
    await user.type(screen.getByLabelText('Confirmation code'), '000000');
    await user.click(screen.getByRole('button', { name: 'Confirm' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('That confirmation code is wrong');

    await user.clear(screen.getByLabelText('Confirmation code'));
    await user.type(screen.getByLabelText('Confirmation code'), cognito.confirmationCode);
    await user.click(screen.getByRole('button', { name: 'Confirm' }));
    expect(await screen.findByText('Your account is confirmed: sign in with your password.')).toBeInTheDocument();
    expect(screen.getByLabelText('Username')).toHaveValue('ezri');
    await user.type(screen.getByLabelText('Password'), PASSWORD);
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByLabelText('New crud')).toBeInTheDocument();
    expect(screen.getByText('@ezri')).toBeInTheDocument();
    expect(cognito.actions()).toEqual(['SignUp', 'ConfirmSignUp', 'ConfirmSignUp', 'InitiateAuth']);
  });
});
