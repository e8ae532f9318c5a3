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
