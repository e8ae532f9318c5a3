import { relativeTime } from '../time.js';

export default function TimeAgo({ iso, className }) {
  if (!iso) return null;
  return (
    <time className={className} dateTime={iso} title={new Date(iso).toLocaleString()}>
      {relativeTime(iso)}
    </time>
  );
}
