import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApi } from './api.js';
import { activity, startStandIn } from './test/standIn.js';
import { initTracing, tracingUrls } from './tracing.js';

describe('tracingUrls', () => {
  const urls = tracingUrls('http://127.0.0.1:4567/');

  it('propagates to the backend API only', () => {
    expect(urls.propagateTo.test('http://127.0.0.1:4567/api/activities/home')).toBe(true);
    expect(urls.propagateTo.test('http://127.0.0.1:45670/api/activities/home')).toBe(false);
    expect(urls.propagateTo.test('https://api.honeycomb.io/v1/traces')).toBe(false);
  });

  it("ignores the exporter's own requests", () => {
    expect(urls.exportUrl).toBe('http://127.0.0.1:4567/api/telemetry/v1/traces');
    expect(urls.ignore.test(urls.exportUrl)).toBe(true);
    expect(urls.ignore.test('http://127.0.0.1:4567/api/activities/home')).toBe(false);
  });
});

describe('initTracing against a loopback backend', () => {
  let standIn;
  let tracing;
  afterEach(async () => {
    await tracing?.stop();
    await standIn?.close();
  });

  it('sends traceparent with API calls and exports the fetch span to the relay, not its own', async () => {
    standIn = await startStandIn({
      'GET /api/activities/home': () => [200, [activity()]],
      'POST /api/telemetry/v1/traces': () => [204, undefined],
    });
    tracing = initTracing(standIn.url);
    expect(tracing).not.toBeNull();

    await createApi(standIn.url).homeActivities();
    const apiCall = standIn.requests.find((r) => r.path === '/api/activities/home');
    const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(apiCall.headers.traceparent);
    expect(match, `traceparent: ${apiCall.headers.traceparent}`).not.toBeNull();
    // X-Ray-compatible: the first 8 hex digits are the Unix time the trace started.
    const startedAt = parseInt(match[1].slice(0, 8), 16);
    expect(Math.abs(startedAt - Date.now() / 1000)).toBeLessThan(60);

    // The fetch span ends a moment after the response (it waits for resource timing).
    const relayed = () => standIn.requests.filter((r) => r.path === '/api/telemetry/v1/traces');
    await vi.waitFor(
      async () => {
        await tracing.provider.forceFlush();
        expect(relayed().length).toBeGreaterThan(0);
      },
      { timeout: 5000, interval: 100 },
    );
    const exports = relayed();
    expect(exports[0].headers['content-type']).toMatch(/^application\/json/);
    expect(exports[0].headers.traceparent).toBeUndefined();
    const resourceSpans = exports.flatMap((e) => e.body.resourceSpans);
    const service = resourceSpans[0].resource.attributes.find((a) => a.key === 'service.name');
    expect(service.value.stringValue).toBe('frontend-react-js');
    const spans = resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    const fetchSpan = spans.find((span) => span.spanId === match[2]);
    expect(fetchSpan, 'the span named in traceparent is exported').toBeDefined();
    expect(fetchSpan.traceId).toBe(match[1]);
    const urlsTraced = spans.flatMap((span) =>
      span.attributes.filter((a) => a.key === 'http.url' || a.key === 'url.full').map((a) => a.value.stringValue),
    );
    expect(urlsTraced.some((url) => url.endsWith('/api/activities/home'))).toBe(true);
    expect(urlsTraced.some((url) => url.includes('/api/telemetry/'))).toBe(false);
  });

  it('keeps spans within the limits the relay accepts', async () => {
    standIn = await startStandIn({ 'POST /api/telemetry/v1/traces': () => [204, undefined] });
    tracing = initTracing(standIn.url);
    const span = tracing.provider.getTracer('limits').startSpan('long', {
      attributes: Object.fromEntries([['url.full', 'é'.repeat(5000)], ...Array.from({ length: 99 }, (_, i) => [`a${i}`, i])]),
    });
    span.end();
    expect(Object.keys(span.attributes)).toHaveLength(64);
    expect(new TextEncoder().encode(span.attributes['url.full']).length).toBeLessThanOrEqual(4096);
  });
});
