import { useCallback, useEffect, useMemo, useState } from 'react';

/** Run `load` when `key` changes; keeps the last result, the error to show, and whether it is running. */
export function useLoad(load, key) {
  const [attempt, setAttempt] = useState(0);
  // One object per load asked for: a result belongs to it or to an earlier one (still loading).
  const request = useMemo(() => ({ key, attempt }), [key, attempt]);
  const [result, setResult] = useState({ request: null, data: null, error: null });

  useEffect(() => {
    let current = true;
    load().then(
      (data) => current && setResult({ request, data, error: null }),
      (error) => current && setResult({ request, data: null, error }),
    );
    return () => {
      current = false;
    };
    // `request` names what is loaded; `load` is a fresh closure each render.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [request]);

  const loading = result.request !== request;
  const reload = useCallback(() => setAttempt((n) => n + 1), []);
  const setData = useCallback(
    (update) => setResult((previous) => ({ ...previous, data: update(previous.data) })),
    [],
  );
  return { data: result.data, error: loading ? null : result.error, loading, reload, setData };
}
