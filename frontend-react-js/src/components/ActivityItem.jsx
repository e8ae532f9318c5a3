import { Link } from 'react-router-dom';
import Avatar from './Avatar.jsx';
import TimeAgo from './TimeAgo.jsx';

/** One crud: who, when, what, and its counts; links to its own page. */
export default function ActivityItem({ activity }) {
  const { uuid, handle, display_name: name, message, created_at, expires_at } = activity;
  return (
    <article className="activity" data-uuid={uuid}>
      <Avatar handle={handle} name={name} />
      <div className="activity-body">
        <header className="activity-meta">
          <Link to={`/@${handle}`} className="who">
            <strong>{name}</strong> <span className="handle">@{handle}</span>
          </Link>
          <TimeAgo iso={created_at} className="when" />
        </header>
        <p className="message">{message}</p>
        <footer className="activity-actions">
          <Link to={`/@${handle}/status/${uuid}`} aria-label={`Replies to ${name}'s crud`}>
            <span aria-hidden="true">↩</span> {activity.replies_count ?? 0}
          </Link>
          <span title="Reposts">
            <span aria-hidden="true">⇄</span> {activity.reposts_count ?? 0}
          </span>
          <span title="Likes">
            <span aria-hidden="true">♥</span> {activity.likes_count ?? 0}
          </span>
          {expires_at && (
            <span className="expires">
              expires <TimeAgo iso={expires_at} />
            </span>
          )}
        </footer>
      </div>
    </article>
  );
}
