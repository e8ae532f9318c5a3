import { useId, useState } from 'react';
import CharCounter, { countChars } from './CharCounter.jsx';
import ErrorMessage from './ErrorMessage.jsx';

/**
 * A textarea with a live counter and a submit button; refuses blank or over-long text.
 * `onSubmit(message)` returns a promise; its rejection is shown, its success clears the text.
 */
export default function ComposerForm({ label, placeholder, max, submitLabel, onSubmit, children }) {
  const id = useId();
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const [sending, setSending] = useState(false);
  const count = countChars(text);
  const over = count > max;
  const blank = text.trim() === '';

  async function handleSubmit(event) {
    event.preventDefault();
    if (over || blank || sending) return;
    setSending(true);
    setError(null);
    try {
      await onSubmit(text);
      setText('');
    } catch (err) {
      setError(err);
    } finally {
      setSending(false);
    }
  }

  return (
    <form className="composer" onSubmit={handleSubmit} aria-label={`${label} form`}>
      <label htmlFor={id} className="visually-hidden">
        {label}
      </label>
      <textarea
        id={id}
        value={text}
        placeholder={placeholder}
        rows={3}
        aria-invalid={over}
        onChange={(event) => setText(event.target.value)}
      />
      {over && (
        <p className="refusal" role="status">
          Too long: shorten it to {max} characters or fewer.
        </p>
      )}
      <div className="composer-bar">
        <CharCounter count={count} max={max} />
        {children}
        <button type="submit" disabled={over || blank || sending}>
          {sending ? 'Sending…' : submitLabel}
        </button>
      </div>
      <ErrorMessage error={error} />
    </form>
  );
}
