import { useCallback, useEffect, useState } from 'react';

/** Run `load` when `key` changes; keeps the last result, the error to show, and whether it is running. */
export function useLoad(load, key) {
  const [state, setState] = useState({ data: null, error: null, loading: true });

  const run = useCallback(() => {
    let current = true;
    setState((previous) => ({ ...previous, error: null, loading: true }));
    load().then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error) => current && setState({ data: null, error, loading: false }),
    );
    return () => {
      current = false;
    };
    // `key` names what is loaded; `load` is a fresh closure each render.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  useEffect(run, [run]);

  const setData = useCallback(
    (update) => setState((previous) => ({ ...previous, data: update(previous.data) })),
    [],
  );
  return { ...state, reload: run, setData };
}
