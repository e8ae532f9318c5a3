// A real HTTP server on loopback that answers like the backend, so components are tested through
// api.js and fetch exactly as in the browser.
import http from 'node:http';

/**
 * Start a server; `routes` maps "METHOD /path" to (body, url) => [status, json] (json undefined: no body).
 * Returns { url, requests, close }; `requests` records every request's method, path and JSON body.
 */
export async function startStandIn(routes) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      const url = new URL(req.url, 'http://127.0.0.1');
      let body;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
      requests.push({ method: req.method, path: url.pathname, search: url.search, headers: req.headers, body });
      const handler = routes[`${req.method} ${url.pathname}`];
      const [status, json] = handler ? handler(body, url) : [404, { error: 'not_found' }];
      if (json === undefined) {
        res.writeHead(status);
        res.end();
        return;
      }
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A base URL nothing listens on: a port we bound and released. */
export async function closedUrl() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

export function activity(overrides = {}) {
  return {
    uuid: '68f126b0-1ceb-4a33-88be-d90fa7109eee',
    handle: 'andrewbrown',
    display_name: 'Andrew Brown',
    message: 'Cloud is fun!',
    created_at: new Date(Date.now() - 2 * 86400000).toISOString(),
    expires_at: new Date(Date.now() + 5 * 86400000).toISOString(),
    likes_count: 5,
    replies_count: 1,
    reposts_count: 0,
    replies: [],
    ...overrides,
  };
}
