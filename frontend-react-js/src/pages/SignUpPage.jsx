import { Link, Navigate, useNavigate } from 'react-router-dom';
import AuthForm from '../components/AuthForm.jsx';
import { useSession } from '../session.jsx';
import { SignInOff } from './SignInPage.jsx';

/** A new account: the username becomes the Cruddur handle; a confirmation code follows. */
export default function SignUpPage() {
  const session = useSession();
  const navigate = useNavigate();
  if (session.status === 'off') return <SignInOff />;
  if (session.status === 'signedIn') return <Navigate to="/" replace />;

  async function signUp({ name, email, username, password }) {
    const handle = username.trim();
    const { confirm, destination } = await session.auth.signUp({
      username: handle,
      password,
      email: email.trim(),
      name: name.trim(),
    });
    const query = new URLSearchParams({ username: handle, ...(destination ? { sent: destination } : {}) });
    navigate(confirm ? `/confirm?${query}` : `/signin?username=${encodeURIComponent(handle)}&confirmed=1`);
  }

  return (
    <>
      <h1>Create an account</h1>
      <AuthForm
        title="Create an account"
        submitLabel="Sign up"
        busyLabel="Signing up…"
        fields={[
          { name: 'name', label: 'Name', autoComplete: 'name' },
          { name: 'email', label: 'Email', type: 'email', autoComplete: 'email' },
          { name: 'username', label: 'Username', autoComplete: 'username' },
          { name: 'password', label: 'Password', type: 'password', autoComplete: 'new-password' },
        ]}
        onSubmit={signUp}
      >
        <p>
          Have an account? <Link to="/signin">Sign in</Link>
        </p>
      </AuthForm>
    </>
  );
}
