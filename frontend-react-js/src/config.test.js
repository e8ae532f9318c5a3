import { afterEach, describe, expect, it, vi } from 'vitest';

async function backendUrlWith(env) {
  vi.resetModules();
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  return (await import('./config.js')).BACKEND_URL;
}

describe('BACKEND_URL', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('prefers VITE_BACKEND_URL and drops a trailing slash', async () => {
    expect(
      await backendUrlWith({ VITE_BACKEND_URL: 'https://api.example.test/', REACT_APP_BACKEND_URL: 'http://other' }),
    ).toBe('https://api.example.test');
  });

  it("falls back to the bootcamp's REACT_APP_BACKEND_URL", async () => {
    expect(await backendUrlWith({ VITE_BACKEND_URL: '', REACT_APP_BACKEND_URL: 'http://127.0.0.1:9999' })).toBe(
      'http://127.0.0.1:9999',
    );
  });

  it('defaults to the local backend', async () => {
    expect(await backendUrlWith({ VITE_BACKEND_URL: '', REACT_APP_BACKEND_URL: '' })).toBe('http://localhost:4567');
  });
});

async function cognitoWith(env) {
  vi.resetModules();
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  return (await import('./config.js')).COGNITO;
}

describe('COGNITO', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('reads the VITE_ names first, then the REACT_APP_ ones, and drops a trailing slash from the endpoint', async () => {
    expect(
      await cognitoWith({
        VITE_AWS_USER_POOLS_ID: 'us-east-1_vite',
        REACT_APP_AWS_USER_POOLS_ID: 'us-east-1_cra',
        VITE_CLIENT_ID: '',
        REACT_APP_CLIENT_ID: 'cra-client',
        VITE_AWS_COGNITO_ENDPOINT: '',
        REACT_APP_AWS_COGNITO_ENDPOINT: 'http://127.0.0.1:9229/',
      }),
    ).toEqual({ userPoolId: 'us-east-1_vite', clientId: 'cra-client', endpoint: 'http://127.0.0.1:9229' });
  });

  it('is empty when nothing is set: sign-in is off', async () => {
    const names = ['AWS_USER_POOLS_ID', 'CLIENT_ID', 'AWS_COGNITO_ENDPOINT'];
    const unset = Object.fromEntries(names.flatMap((n) => [[`VITE_${n}`, ''], [`REACT_APP_${n}`, '']]));
    expect(await cognitoWith(unset)).toEqual({ userPoolId: '', clientId: '', endpoint: '' });
  });
});
