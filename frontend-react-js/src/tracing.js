// Browser tracing: spans go to the backend's relay, which adds any vendor key server-side,
// so no secret ever ships in this bundle. Trace ids are X-Ray-compatible (their first 8 hex digits are
// the Unix time): X-Ray refuses ids dated more than 30 days ago, and a request the browser starts is
// continued by the backend's X-Ray segment under the same id.
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { AWSXRayIdGenerator } from '@opentelemetry/id-generator-aws-xray';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { DocumentLoadInstrumentation } from '@opentelemetry/instrumentation-document-load';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, WebTracerProvider } from '@opentelemetry/sdk-trace-web';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export const SERVICE_NAME = 'frontend-react-js';
export const RELAY_PATH = '/api/telemetry/v1/traces';
// Within what the relay accepts (64 attributes, 4 KiB per value), so one long URL never costs a
// whole batch: 1,024 UTF-16 units are at most 3 KiB of UTF-8.
export const SPAN_LIMITS = { attributeCountLimit: 64, attributeValueLengthLimit: 1024, attributePerEventCountLimit: 64 };

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** URL patterns: which requests carry `traceparent`, and which are the exporter's own (never traced). */
export function tracingUrls(backendUrl) {
  const base = backendUrl.replace(/\/+$/, '');
  return {
    exportUrl: `${base}${RELAY_PATH}`,
    propagateTo: new RegExp(`^${escapeRegExp(base)}/`),
    ignore: new RegExp(`^${escapeRegExp(base + RELAY_PATH)}`),
  };
}

/**
 * Start tracing fetches and the page load. Returns `{ provider, stop }`, or null when tracing could not start.
 * Any failure here is logged and swallowed: the app works the same without traces.
 */
export function initTracing(backendUrl) {
  try {
    const { exportUrl, propagateTo, ignore } = tracingUrls(backendUrl);
    const exporter = new OTLPTraceExporter({ url: exportUrl, timeoutMillis: 10000 });
    const provider = new WebTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: SERVICE_NAME }),
      idGenerator: new AWSXRayIdGenerator(),
      spanLimits: SPAN_LIMITS,
      spanProcessors: [
        // Bounded queue: spans beyond it are dropped rather than growing memory.
        new BatchSpanProcessor(exporter, {
          maxQueueSize: 512,
          maxExportBatchSize: 128,
          scheduledDelayMillis: 2000,
        }),
      ],
    });
    provider.register();
    const unregister = registerInstrumentations({
      tracerProvider: provider,
      instrumentations: [
        new DocumentLoadInstrumentation(),
        new FetchInstrumentation({
          propagateTraceHeaderCorsUrls: [propagateTo],
          ignoreUrls: [ignore],
          clearTimingResources: true,
        }),
      ],
    });
    // Spans still queued when the tab goes away are sent then (the exporter uses keepalive fetches).
    const flush = () => {
      provider.forceFlush().catch(() => {});
    };
    window.addEventListener('pagehide', flush);
    return {
      provider,
      /** Undo everything: unpatch fetch, send what is queued, stop the exporter. */
      async stop() {
        window.removeEventListener('pagehide', flush);
        unregister();
        await provider.shutdown();
      },
    };
  } catch (error) {
    console.warn('Cruddur: browser tracing is off because it failed to start:', error);
    return null;
  }
}
