import { useState } from 'react';
import { Link } from 'react-router-dom';
import { useSession } from '../session.jsx';
import { SignInOff } from './SignInPage.jsx';

/** Sign out of this browser; the feed stays readable. */
export default function SignOutPage() {
  const session = useSession();
  const [busy, setBusy] = useState(false);
  if (session.status === 'off') return <SignInOff />;
  if (session.status === 'checking') return <p className="loading">Loading…</p>;
  if (session.status === 'signedOut') {
    return (
      <>
        <h1>Signed out</h1>
        <p>
          You are signed out. <Link to="/signin">Sign in again</Link> or read the <Link to="/">home feed</Link>.
        </p>
      </>
    );
  }

  async function signOut() {
    setBusy(true);
    try {
      await session.auth.signOut();
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <h1>Sign out</h1>
      <p>
        You are signed in as <span className="handle">@{session.user.username}</span>.
      </p>
      <button type="button" onClick={signOut} disabled={busy}>
        {busy ? 'Signing out…' : 'Sign out'}
      </button>
    </>
  );
}
