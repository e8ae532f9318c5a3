import { useState } from 'react';
import { useNavigate, useSearchParams } from 'react-router-dom';
import { describeAuthError } from '../auth.js';
import AuthForm from '../components/AuthForm.jsx';
import { useSession } from '../session.jsx';
import { SignInOff } from './SignInPage.jsx';

/** The confirmation code Cognito sent at sign-up; then on to sign in. */
export default function ConfirmPage() {
  const session = useSession();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [resent, setResent] = useState(null);
  if (session.status === 'off') return <SignInOff />;
  const sentTo = params.get('sent');

  async function confirm({ username, code }) {
    const handle = username.trim();
    await session.auth.confirmSignUp(handle, code.trim());
    navigate(`/signin?username=${encodeURIComponent(handle)}&confirmed=1`);
  }

  async function resend() {
    const username = params.get('username') || '';
    try {
      const destination = await session.auth.resendCode(username);
      setResent(destination ? `A new code is on its way to ${destination}.` : 'A new code is on its way.');
    } catch (error) {
      setResent(describeAuthError(error));
    }
  }

  return (
    <>
      <h1>Confirm your account</h1>
      <p>{sentTo ? `Enter the code sent to ${sentTo}.` : 'Enter the confirmation code you were sent.'}</p>
      <AuthForm
        title="Confirm your account"
        submitLabel="Confirm"
        busyLabel="Confirming…"
        fields={[
          { name: 'username', label: 'Username', autoComplete: 'username', initial: params.get('username') || '' },
          { name: 'code', label: 'Confirmation code', autoComplete: 'one-time-code' },
        ]}
        onSubmit={confirm}
      >
        {params.get('username') && (
          <p>
            <button type="button" className="secondary" onClick={resend}>
              Send a new code
            </button>
          </p>
        )}
        {resent && <p role="status">{resent}</p>}
      </AuthForm>
    </>
  );
}
