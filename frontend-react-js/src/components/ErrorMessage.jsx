/** A server or network error, in words, announced to screen readers. */
export default function ErrorMessage({ error }) {
  if (!error) return null;
  const messages = error.messages?.length ? error.messages : [error.message || String(error)];
  return (
    <div className="error" role="alert">
      {messages.map((message) => (
        <p key={message}>{message}</p>
      ))}
    </div>
  );
}
