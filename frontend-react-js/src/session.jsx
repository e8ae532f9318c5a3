// Who is signed in, for every component: `useSession()`. The provider follows Amplify's sign-in,
// sign-out and refresh events, so the UI changes as soon as the session does.
import { createContext, useContext, useEffect, useMemo, useState } from 'react';
import { Link, useLocation } from 'react-router-dom';

const SIGN_IN_OFF = { status: 'off', user: null, auth: null };
const SessionContext = createContext(SIGN_IN_OFF);

/**
 * `status` is `off` (no user pool configured: the backend decides who acts), `checking`, `signedIn` or
 * `signedOut`; `user` is `{ username, sub }` when signed in.
 */
export function SessionProvider({ auth, children }) {
  const [user, setUser] = useState(undefined);

  useEffect(() => {
    if (!auth?.enabled) return undefined;
    let current = true;
    const check = () => auth.currentUser().then((found) => current && setUser(found));
    check();
    const unsubscribe = auth.listen(check);
    return () => {
      current = false;
      unsubscribe();
    };
  }, [auth]);

  const session = useMemo(() => {
    if (!auth?.enabled) return { ...SIGN_IN_OFF, auth };
    const status = user === undefined ? 'checking' : user ? 'signedIn' : 'signedOut';
    return { status, user: user ?? null, auth };
  }, [auth, user]);

  return <SessionContext.Provider value={session}>{children}</SessionContext.Provider>;
}

export function useSession() {
  return useContext(SessionContext);
}

/** Whether the UI offers what needs a user: signed in, or sign-in off (the backend's acting user). */
export function canAct(session) {
  return session.status === 'signedIn' || session.status === 'off';
}

/** A link to the sign-in page that comes back here afterwards. */
export function SignInLink({ children = 'Sign in' }) {
  const { pathname, search } = useLocation();
  const next = encodeURIComponent(`${pathname}${search}`);
  return <Link to={`/signin?next=${next}`}>{children}</Link>;
}

/** `children` for a user; otherwise an invitation to sign in to do `what` (nothing is fetched). */
export function RequireUser({ what, children }) {
  const session = useSession();
  if (canAct(session)) return children;
  if (session.status === 'checking') return <p className="loading">Loading…</p>;
  return (
    <p className="signin-prompt">
      <SignInLink /> or <Link to="/signup">create an account</Link> to {what}.
    </p>
  );
}
