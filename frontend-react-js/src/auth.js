// Sign-in with Amazon Cognito through Amplify v6 (its fetch-based Cognito client, which takes a
// `userPoolEndpoint` for a local endpoint). Passwords go to Cognito with USER_PASSWORD_AUTH over
// HTTPS: the app client must allow that flow (ALLOW_USER_PASSWORD_AUTH, plus ALLOW_REFRESH_TOKEN_AUTH).
import { Amplify } from 'aws-amplify';
import {
  confirmSignUp,
  fetchAuthSession,
  resendSignUpCode,
  signIn,
  signOut,
  signUp,
} from 'aws-amplify/auth';
import { Hub } from 'aws-amplify/utils';

// An access token that expires sooner than this is refreshed before it is sent, so it cannot expire on
// the way to the backend (which allows only a few seconds of leeway).
export const REFRESH_MARGIN_MS = 60_000;

const SENTENCES = {
  NotAuthorizedException: 'Incorrect username or password.',
  UserNotFoundException: 'Incorrect username or password.',
  UsernameExistsException: 'That username is taken: choose another.',
  InvalidPasswordException:
    'That password is too weak: use at least 8 characters with upper and lower case letters, a digit and a symbol.',
  CodeMismatchException: 'That confirmation code is wrong: check it and try again.',
  ExpiredCodeException: 'That confirmation code has expired: ask for a new one.',
  LimitExceededException: 'Too many attempts: wait a while and try again.',
  TooManyRequestsException: 'Too many attempts: wait a while and try again.',
  NetworkError: 'Cannot reach the sign-in service. Check your connection and try again.',
};

/** A sentence for a Cognito or Amplify error, fit to show a person. */
export function describeAuthError(error) {
  return SENTENCES[error?.name] || error?.message || 'Sign-in failed.';
}

/** Who is signed in, from an access token: its `username` (the Cruddur handle) and `sub`. */
function userFrom(accessToken) {
  const payload = accessToken?.payload;
  if (!payload?.username) return null;
  return { username: String(payload.username), sub: String(payload.sub ?? '') };
}

/**
 * Sign-in for one user pool (`{ userPoolId, clientId, endpoint }`). Amplify keeps one configuration per
 * page, so there is one of these per page. Without both ids sign-in is off (`enabled` false): nothing is
 * configured and `accessToken()` is always null.
 */
export function createAuth({ userPoolId, clientId, endpoint } = {}, { refreshMarginMs = REFRESH_MARGIN_MS } = {}) {
  const enabled = Boolean(userPoolId && clientId);
  if (enabled) {
    Amplify.configure({
      Auth: {
        Cognito: {
          userPoolId,
          userPoolClientId: clientId,
          ...(endpoint ? { userPoolEndpoint: endpoint } : {}),
          loginWith: { username: true },
          signUpVerificationMethod: 'code',
        },
      },
    });
  }

  /** The current session's tokens, refreshed first when the access token is about to expire. */
  async function tokens() {
    let { tokens: current } = await fetchAuthSession();
    const expiresAt = (current?.accessToken?.payload?.exp ?? 0) * 1000;
    if (current && expiresAt - Date.now() < refreshMarginMs) {
      ({ tokens: current } = await fetchAuthSession({ forceRefresh: true }));
    }
    return current ?? null;
  }

  return {
    enabled,

    /** The access token to send as `Authorization: Bearer`, or null when nobody is signed in. */
    async accessToken() {
      if (!enabled) return null;
      return (await tokens())?.accessToken?.toString() ?? null;
    },

    /** `{ username, sub }` of the signed-in user, or null. */
    async currentUser() {
      if (!enabled) return null;
      try {
        return userFrom((await fetchAuthSession()).tokens?.accessToken);
      } catch {
        return null;
      }
    },

    /** Resolves `{ signedIn: true }`, or `{ confirm: true }` when the account still needs its code. */
    async signIn(username, password) {
      const input = { username, password, options: { authFlowType: 'USER_PASSWORD_AUTH' } };
      let result;
      try {
        result = await signIn(input);
      } catch (error) {
        // Tokens that can no longer be refreshed are still stored: the app already shows "signed out",
        // so forget them and sign in as asked.
        if (error?.name !== 'UserAlreadyAuthenticatedException') throw error;
        await signOut();
        result = await signIn(input);
      }
      const { isSignedIn, nextStep } = result;
      if (isSignedIn) return { signedIn: true };
      if (nextStep?.signInStep === 'CONFIRM_SIGN_UP') return { confirm: true };
      throw new Error(`This account needs a sign-in step the app does not offer (${nextStep?.signInStep}).`);
    },

    /** Create an account; resolves `{ confirm, destination }` (where the code was sent, if anywhere). */
    async signUp({ username, password, email, name }) {
      const { isSignUpComplete, nextStep } = await signUp({
        username,
        password,
        options: { userAttributes: { email, ...(name ? { name } : {}) } },
      });
      return {
        confirm: !isSignUpComplete,
        destination: nextStep?.codeDeliveryDetails?.destination ?? null,
      };
    },

    async confirmSignUp(username, code) {
      await confirmSignUp({ username, confirmationCode: code });
    },

    async resendCode(username) {
      const details = await resendSignUpCode({ username });
      return details?.destination ?? null;
    },

    /** Forget this browser's tokens (and revoke the refresh token where the pool supports it). */
    async signOut() {
      await signOut();
    },

    /** Call `listener()` whenever someone signs in or out or a refresh fails; returns the unsubscribe. */
    listen(listener) {
      if (!enabled) return () => {};
      return Hub.listen('auth', ({ payload }) => {
        if (['signedIn', 'signedOut', 'tokenRefresh', 'tokenRefresh_failure'].includes(payload.event)) listener();
      });
    },
  };
}
