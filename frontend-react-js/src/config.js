// Read at build time by Vite; REACT_APP_BACKEND_URL is the bootcamp's name for the same setting.
const configured =
  import.meta.env.VITE_BACKEND_URL || import.meta.env.REACT_APP_BACKEND_URL || 'http://localhost:4567';

export const BACKEND_URL = configured.replace(/\/+$/, '');

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
