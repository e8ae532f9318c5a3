import Avatar from './Avatar.jsx';
import TimeAgo from './TimeAgo.jsx';

/** The messages of one conversation, oldest first as the server sent them. */
export default function MessageList({ messages }) {
  if (messages.length === 0) return <p className="empty">No messages yet: say hello.</p>;
  return (
    <ol className="messages">
      {messages.map((item) => (
        <li key={item.uuid} className="message-item">
          <Avatar handle={item.handle} name={item.display_name} />
          <div>
            <div className="activity-meta">
              <strong>{item.display_name}</strong> <span className="handle">@{item.handle}</span>
              <TimeAgo iso={item.created_at} className="when" />
            </div>
            <p className="message">{item.message}</p>
          </div>
        </li>
      ))}
    </ol>
  );
}
