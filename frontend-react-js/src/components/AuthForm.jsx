import { useState } from 'react';
import { describeAuthError } from '../auth.js';

/**
 * A sign-in style form: labelled inputs, one submit button, the error in words.
 * `fields` are `{ name, label, type, autoComplete, initial }`; `onSubmit(values)` returns a promise.
 */
export default function AuthForm({ title, fields, submitLabel, busyLabel, onSubmit, children }) {
  const [values, setValues] = useState(() =>
    Object.fromEntries(fields.map((field) => [field.name, field.initial ?? ''])),
  );
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const complete = fields.every((field) => field.optional || values[field.name].trim() !== '');

  async function handleSubmit(event) {
    event.preventDefault();
    if (!complete || busy) return;
    setBusy(true);
    setError(null);
    try {
      await onSubmit(values);
    } catch (err) {
      setError(describeAuthError(err));
      setBusy(false);
    }
  }

  return (
    <form className="auth-form" onSubmit={handleSubmit} aria-label={title}>
      {fields.map((field) => (
        <label key={field.name}>
          <span>{field.label}</span>
          <input
            name={field.name}
            type={field.type || 'text'}
            autoComplete={field.autoComplete}
            value={values[field.name]}
            onChange={(event) => setValues((previous) => ({ ...previous, [field.name]: event.target.value }))}
          />
        </label>
      ))}
      {error && (
        <div className="error" role="alert">
          <p>{error}</p>
        </div>
      )}
      <button type="submit" disabled={!complete || busy}>
        {busy ? busyLabel : submitLabel}
      </button>
      {children}
    </form>
  );
}
