import { Link, Navigate, useNavigate, useSearchParams } from 'react-router-dom';
import AuthForm from '../components/AuthForm.jsx';
import { useSession } from '../session.jsx';

/** Where to go after signing in: a path inside the app, never another site. */
export function nextPath(params) {
  const next = params.get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function SignInOff() {
  return (
    <>
      <h1>Sign in</h1>
      <p>Sign-in is not configured for this build: the server decides who acts.</p>
    </>
  );
}

export default function SignInPage() {
  const session = useSession();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  if (session.status === 'off') return <SignInOff />;
  if (session.status === 'signedIn') return <Navigate to={nextPath(params)} replace />;
  const confirmed = params.get('confirmed') === '1';

  async function signIn({ username, password }) {
    const result = await session.auth.signIn(username.trim(), password);
    if (result.confirm) navigate(`/confirm?username=${encodeURIComponent(username.trim())}`);
    else navigate(nextPath(params), { replace: true });
  }

  return (
    <>
      <h1>Sign in</h1>
      {confirmed && <p role="status">Your account is confirmed: sign in with your password.</p>}
      <AuthForm
        title="Sign in"
        submitLabel="Sign in"
        busyLabel="Signing in…"
        fields={[
          { name: 'username', label: 'Username', autoComplete: 'username', initial: params.get('username') || '' },
          { name: 'password', label: 'Password', type: 'password', autoComplete: 'current-password' },
        ]}
        onSubmit={signIn}
      >
        <p>
          New to Cruddur? <Link to="/signup">Create an account</Link>
        </p>
      </AuthForm>
    </>
  );
}
