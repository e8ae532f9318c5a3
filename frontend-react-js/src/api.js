// Every request to the backend goes through here, so error bodies become sentences in one place.
import { createContext, useContext } from 'react';
import { ACTIVITY_MAX_CHARS, BACKEND_URL, MESSAGE_MAX_CHARS } from './config.js';

/** Sentences for the 422 codes the API answers with; `limit` is the character limit of the form sent. */
export function describeErrorCode(code, { limit } = {}) {
  switch (code) {
    case 'message_blank':
      return 'Write something first: the message is blank.';
    case 'message_exceed_max_chars':
      return limit
        ? `That message is too long: the limit is ${limit} characters.`
        : 'That message is too long.';
    case 'ttl_blank':
      return 'Choose how long the crud should last.';
    case 'search_term_blank':
      return 'Type something to search for.';
    case 'search_term_too_long':
      return 'That search is too long: use at most 20 words and 280 characters.';
    case 'sign_in_required':
      return 'Sign in to do that.';
    case 'invalid_token':
      return 'Your sign-in is no longer valid: sign out and sign in again.';
    case 'auth_unavailable':
      return 'Sign-in is unavailable right now: please try again in a moment.';
    default:
      return `The server refused it (${code}).`;
  }
}

/** An error whose `message` is fit to show a person; `status` is 0 when the server was never reached. */
export class ApiError extends Error {
  constructor(message, { status = 0, codes = [], messages = [message] } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.codes = codes;
    this.messages = messages;
  }
}

function errorFromResponse(status, body, { notFound, limit }) {
  if (status === 422 && body && Array.isArray(body.errors) && body.errors.length) {
    const messages = body.errors.map((code) => describeErrorCode(code, { limit }));
    return new ApiError(messages.join(' '), { status, codes: body.errors, messages });
  }
  if ((status === 401 || status === 503) && body && Array.isArray(body.errors) && body.errors.length) {
    return new ApiError(body.errors.map((code) => describeErrorCode(code)).join(' '), { status, codes: body.errors });
  }
  if (status === 401) return new ApiError(describeErrorCode('sign_in_required'), { status });
  if (status === 404) return new ApiError(notFound || 'Not found.', { status });
  if (status === 413) return new ApiError('That is too large for the server to accept.', { status });
  if (status === 429) return new ApiError('Too many requests: wait a moment and try again.', { status });
  if (status >= 500) {
    return new ApiError(`The server had a problem (HTTP ${status}). Please try again.`, { status });
  }
  const detail = body && typeof body.message === 'string' && body.message ? `: ${body.message}` : '.';
  return new ApiError(`The server refused the request (HTTP ${status})${detail}`, { status });
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const path = encodeURIComponent;

/** The bearer token to send, or none when there is none or it cannot be had (the server then says why). */
async function bearer(accessToken) {
  try {
    const token = await accessToken();
    return token ? `Bearer ${token}` : null;
  } catch {
    return null;
  }
}

/**
 * Build the API client for one backend; `fetchImpl` is looked up per call so tracing's patch applies.
 * `accessToken()` (auth.js) gives the signed-in user's access token, sent as `Authorization: Bearer`.
 */
export function createApi(
  baseUrl = BACKEND_URL,
  fetchImpl = (...args) => globalThis.fetch(...args),
  { accessToken = async () => null } = {},
) {
  const base = baseUrl.replace(/\/+$/, '');

  async function request(route, { method = 'GET', body, notFound, limit } = {}) {
    const init = { method, headers: { Accept: 'application/json' } };
    const authorization = await bearer(accessToken);
    if (authorization) init.headers.Authorization = authorization;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetchImpl(`${base}${route}`, init);
    } catch {
      throw new ApiError(
        `Cannot reach the Cruddur server at ${base}. Check your connection and that the backend is running.`,
      );
    }
    const data = await readBody(response);
    if (!response.ok) throw errorFromResponse(response.status, data, { notFound, limit });
    return data;
  }

  return {
    baseUrl: base,
    homeActivities: () => request('/api/activities/home'),
    notifications: () => request('/api/activities/notifications'),
    userActivities: (handle) =>
      request(`/api/activities/@${path(handle)}`, { notFound: `There is no user @${handle}.` }),
    search: (term) => request(`/api/activities/search?term=${path(term)}`),
    activity: (uuid) =>
      request(`/api/activities/${path(uuid)}`, {
        notFound: 'That crud does not exist (it may have expired).',
      }),
    createActivity: ({ message, ttl }) =>
      request('/api/activities', { method: 'POST', body: { message, ttl }, limit: ACTIVITY_MAX_CHARS }),
    reply: (uuid, message) =>
      request(`/api/activities/${path(uuid)}/reply`, {
        method: 'POST',
        body: { message },
        limit: ACTIVITY_MAX_CHARS,
        notFound: 'That crud does not exist any more, so it cannot be replied to.',
      }),
    messageGroups: () => request('/api/message_groups'),
    messages: (handle) =>
      request(`/api/messages/@${path(handle)}`, { notFound: `There is no user @${handle}.` }),
    sendMessage: ({ handle, message }) =>
      request('/api/messages', {
        method: 'POST',
        body: { message, user_receiver_handle: handle },
        limit: MESSAGE_MAX_CHARS,
        notFound: `There is no user @${handle} to send a message to.`,
      }),
  };
}

export const ApiContext = createContext(null);

/** The API client of the nearest provider, else one for the configured backend. */
let defaultApi = null;
export function useApi() {
  const provided = useContext(ApiContext);
  if (provided) return provided;
  defaultApi ??= createApi();
  return defaultApi;
}
