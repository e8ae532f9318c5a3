// A Cognito user pool on loopback that speaks Cognito's wire protocol (AWS JSON 1.1: POST / with
// `X-Amz-Target: AWSCognitoIdentityProviderService.<Action>`), so auth.js is tested through Amplify and
// fetch exactly as in the browser. As strict as Cognito on what the tests rely on:
// - the Content-Type must be application/x-amz-json-1.1 and the target a known action;
// - the app client must exist (ResourceNotFoundException) and allow the flow (InvalidParameterException);
// - a wrong password is NotAuthorizedException, an unconfirmed user UserNotConfirmedException, a wrong
//   confirmation code CodeMismatchException, a taken username UsernameExistsException;
// - a refresh token is only good for the client it was issued to;
// - tokens are RS256 JWTs with Cognito's claims (access: client_id, token_use "access", username, scope;
//   id: aud, token_use "id", cognito:username), signed with a key of this pool.
// https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_InitiateAuth.html
// https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_GetTokensFromRefreshToken.html
// https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html
import crypto from 'node:crypto';
import http from 'node:http';

const REGION = 'us-east-1';
const TARGET_PREFIX = 'AWSCognitoIdentityProviderService.';

class CognitoError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/**
 * Start a pool with `users` (`{ username, password, confirmed = true, sub? }`). `accessTokenSeconds`
 * is how long each access token (and ID token) lives; change it on the returned object between calls.
 * Returns `{ endpoint, userPoolId, clientId, calls, issued, accessTokenSeconds, confirmationCode, close }`:
 * `calls` lists every action received, `issued` every access token handed out.
 */
export async function startCognitoStandIn({ users = [], accessTokenSeconds = 3600 } = {}) {
  const userPoolId = `${REGION}_StandIn${crypto.randomBytes(3).toString('hex')}`;
  const clientId = crypto.randomBytes(13).toString('hex');
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = crypto.randomBytes(8).toString('hex');
  const issuer = `https://cognito-idp.${REGION}.amazonaws.com/${userPoolId}`;
  const accounts = new Map(
    users.map((user) => [user.username, { confirmed: true, sub: crypto.randomUUID(), ...user }]),
  );
  const refreshTokens = new Map();
  const pool = {
    userPoolId,
    clientId,
    calls: [],
    issued: [],
    accessTokenSeconds,
    confirmationCode: '482916',
  };

  function sign(payload) {
    const input = `${base64url({ kid, alg: 'RS256' })}.${base64url(payload)}`;
    const signature = crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url');
    return `${input}.${signature}`;
  }

  function tokensFor(account, originJti) {
    const now = Math.floor(Date.now() / 1000);
    const exp = now + pool.accessTokenSeconds;
    const common = { sub: account.sub, iss: issuer, origin_jti: originJti, auth_time: now, iat: now, exp };
    const accessToken = sign({
      ...common,
      client_id: clientId,
      token_use: 'access',
      scope: 'aws.cognito.signin.user.admin',
      jti: crypto.randomUUID(),
      username: account.username,
    });
    const idToken = sign({
      ...common,
      aud: clientId,
      token_use: 'id',
      'cognito:username': account.username,
      ...(account.email ? { email: account.email } : {}),
    });
    pool.issued.push(accessToken);
    return { AccessToken: accessToken, IdToken: idToken, ExpiresIn: pool.accessTokenSeconds, TokenType: 'Bearer' };
  }

  function requireClient(body) {
    if (body.ClientId !== clientId) throw new CognitoError('ResourceNotFoundException', 'User pool client does not exist.');
  }

  const actions = {
    InitiateAuth(body) {
      requireClient(body);
      if (body.AuthFlow !== 'USER_PASSWORD_AUTH') {
        throw new CognitoError('InvalidParameterException', `${body.AuthFlow} flow not enabled for this client`);
      }
      const { USERNAME: username, PASSWORD: password } = body.AuthParameters || {};
      const account = accounts.get(username);
      if (!account || account.password !== password) {
        throw new CognitoError('NotAuthorizedException', 'Incorrect username or password.');
      }
      if (!account.confirmed) throw new CognitoError('UserNotConfirmedException', 'User is not confirmed.');
      const originJti = crypto.randomUUID();
      const refreshToken = crypto.randomBytes(48).toString('base64url');
      refreshTokens.set(refreshToken, { username, originJti });
      return { AuthenticationResult: { ...tokensFor(account, originJti), RefreshToken: refreshToken }, ChallengeParameters: {} };
    },
    GetTokensFromRefreshToken(body) {
      requireClient(body);
      const known = refreshTokens.get(body.RefreshToken);
      if (!known) throw new CognitoError('NotAuthorizedException', 'Invalid Refresh Token');
      return { AuthenticationResult: tokensFor(accounts.get(known.username), known.originJti) };
    },
    RevokeToken(body) {
      requireClient(body);
      refreshTokens.delete(body.Token);
      return {};
    },
    SignUp(body) {
      requireClient(body);
      if (accounts.has(body.Username)) throw new CognitoError('UsernameExistsException', 'User already exists');
      if (!/^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)(?=.*[^\w\s]).{8,}$/.test(body.Password || '')) {
        throw new CognitoError('InvalidPasswordException', 'Password did not conform with policy');
      }
      const attributes = Object.fromEntries((body.UserAttributes || []).map((a) => [a.Name, a.Value]));
      const sub = crypto.randomUUID();
      accounts.set(body.Username, {
        username: body.Username,
        password: body.Password,
        email: attributes.email,
        confirmed: false,
        sub,
      });
      return {
        UserConfirmed: false,
        UserSub: sub,
        CodeDeliveryDetails: { DeliveryMedium: 'EMAIL', AttributeName: 'email', Destination: 'e***@c***' },
      };
    },
    ConfirmSignUp(body) {
      requireClient(body);
      const account = accounts.get(body.Username);
      if (!account) throw new CognitoError('UserNotFoundException', 'Username/client id combination not found.');
      if (body.ConfirmationCode !== pool.confirmationCode) {
        throw new CognitoError('CodeMismatchException', 'Invalid verification code provided, please try again.');
      }
      account.confirmed = true;
      return {};
    },
  };

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] || '');
      const action = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
      let status = 200;
      let reply;
      try {
        if (req.method !== 'POST' || req.headers['content-type'] !== 'application/x-amz-json-1.1') {
          throw new CognitoError('UnknownOperationException', 'Expected POST application/x-amz-json-1.1');
        }
        const handler = Object.hasOwn(actions, action) ? actions[action] : null;
        if (!handler) throw new CognitoError('UnknownOperationException', `Unknown operation ${target}`);
        const body = JSON.parse(raw || '{}');
        pool.calls.push({ action, body });
        reply = handler(body);
      } catch (error) {
        status = 400;
        const type = error instanceof CognitoError ? error.type : 'SerializationException';
        reply = { __type: type, message: error.message };
        res.setHeader('x-amzn-ErrorType', type);
      }
      res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-RequestId': crypto.randomUUID() });
      res.end(JSON.stringify(reply));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  pool.endpoint = `http://127.0.0.1:${server.address().port}`;
  pool.close = () => new Promise((resolve) => server.close(resolve));
  /** The actions received, in order. */
  pool.actions = () => pool.calls.map((call) => call.action);
  return pool;
}
