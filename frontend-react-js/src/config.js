// Read at build time by Vite; each REACT_APP_ name is the bootcamp's name for the same setting.
const env = import.meta.env;
const setting = (name) => env[`VITE_${name}`] || env[`REACT_APP_${name}`] || '';

export const BACKEND_URL = (setting('BACKEND_URL') || 'http://localhost:4567').replace(/\/+$/, '');

/**
 * The Cognito user pool the app signs in to. Sign-in is on when both ids are set; `endpoint` is another
 * Cognito endpoint (a local one), else AWS's for the pool's region.
 */
export const COGNITO = {
  userPoolId: setting('AWS_USER_POOLS_ID'),
  clientId: setting('CLIENT_ID'),
  endpoint: setting('AWS_COGNITO_ENDPOINT').replace(/\/+$/, ''),
};

export const ACTIVITY_MAX_CHARS = 280;
export const MESSAGE_MAX_CHARS = 1024;

export const TTL_CHOICES = [
  { value: '30-days', label: '30 days' },
  { value: '7-days', label: '7 days' },
  { value: '3-days', label: '3 days' },
  { value: '1-day', label: '1 day' },
  { value: '12-hours', label: '12 hours' },
  { value: '3-hours', label: '3 hours' },
  { value: '1-hour', label: '1 hour' },
];
export const DEFAULT_TTL = '7-days';
