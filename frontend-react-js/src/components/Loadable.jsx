import ErrorMessage from './ErrorMessage.jsx';

/** Shows loading, the error in words with a retry, or the children once data is there. */
export default function Loadable({ state, children }) {
  if (state.error) {
    return (
      <div>
        <ErrorMessage error={state.error} />
        <button type="button" className="secondary" onClick={state.reload}>
          Try again
        </button>
      </div>
    );
  }
  if (state.loading && state.data == null) return <p className="loading">Loading…</p>;
  if (state.data == null) return null;
  return children(state.data);
}
