import { Link } from 'react-router-dom';
import Avatar from './Avatar.jsx';
import TimeAgo from './TimeAgo.jsx';

/** Conversations, each with its latest message. */
export default function MessageGroupList({ groups }) {
  if (groups.length === 0) return <p className="empty">No conversations yet.</p>;
  return (
    <ul className="message-groups">
      {groups.map((group) => (
        <li key={group.uuid}>
          <Link to={`/messages/@${group.handle}`} className="message-group">
            <Avatar handle={group.handle} name={group.display_name} />
            <span className="message-group-body">
              <span className="activity-meta">
                <strong>{group.display_name}</strong> <span className="handle">@{group.handle}</span>
                <TimeAgo iso={group.created_at} className="when" />
              </span>
              <span className="preview">{group.message}</span>
            </span>
          </Link>
        </li>
      ))}
    </ul>
  );
}
